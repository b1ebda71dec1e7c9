"""face_search.distributed: one gallery sharded over a Ray cluster.

A gallery too large for one machine (or one that must survive the loss of one) is split into
*shards*, each an ordinary face_search index file, and served by Ray actors: one actor per
*replica* of each shard, replicas of one shard on different nodes. A query goes to one replica
of every shard and the per-shard answers are merged into the global top-k, exactly as one index
over the whole gallery would rank them (score descending, ties to the smaller id).

Needs ``ray`` (``pip install ray==2.60.0``; ``scripts/pyenv.sh --package`` installs it). It is
imported only when this module needs it, so ``import face_search`` works without it.

**Sharding** (:func:`build_sharded`): rows are split into ``shards`` contiguous row ranges of
balanced size (``by="range"``; sizes differ by at most one): shard ``i`` holds rows
``[i * n // S, (i + 1) * n // S)``. Each shard's index is built by a Ray task on some node and
written (atomically) into ``folder``, beside a JSON manifest and each shard's labels.

**Global ids** are int64 *offsets*: a shard has a ``base`` (the global id of its row 0) and
global id = ``base + local row``. A gallery built by :func:`build_sharded` therefore answers
with the row numbers of the array it was built from, the same ids one unsharded index gives.
Enrolled faces get the next ids (:meth:`ShardedIndex.add`); ids are never reused.
:meth:`ShardedIndex.labels` maps ids to the labels kept with the gallery.

**The folder** must be readable (and, for enrolment, writable) under the same path by every
node and by the driver: a local folder when the cluster is one machine, shared storage
(an NFS export, a cluster file system, a mounted object-store bucket with POSIX semantics)
mounted at the same path on every node of a real cluster. Actors memory-map their shard
file from it, so the page cache of each node holds what its replicas read.

**Serving** (:meth:`ShardedIndex.open`): one actor per shard replica. Replica ``r`` of shard
``s`` is placed on node ``(s + r) mod N`` of the cluster's N nodes that offer CPUs (sorted by
node id), with a soft node-affinity scheduling strategy: replicas of one shard land on
different nodes when there are at least as many nodes as replicas, shards are spread evenly,
and a restarted actor goes to another node if its node is gone. Actors ask for
``num_cpus=0`` by default (they mostly wait; a 2-core machine holds 4 shards x 2 replicas) and
are restarted by Ray when they die (``max_restarts``).

**Faults**: a replica that dies or does not answer within ``timeout`` seconds while a query is
in flight is given up for that call and its shard's part is sent to another replica; the
query still answers. A shard none of whose replicas answers raises
:class:`ShardUnavailableError` naming the shard, unless ``allow_partial=True``: then the answer
lists the missing shards (:attr:`SearchResult.missing`). A missing or corrupt shard file
raises :class:`ShardFileError` (naming the shard and the file) at :meth:`ShardedIndex.open`,
and is the reason given when an actor cannot load it later.

**Enrolment**: :meth:`ShardedIndex.add` appends to the last shard when its engine supports
adding (HNSW), else builds a new shard from the added rows; :meth:`ShardedIndex.delete`
deletes from the shard holding the id (natively for HNSW, through a tombstone list for the
other engines). Each change writes new files for the changed shard, then the manifest (the
commit point, replaced atomically), then every replica reloads; the change survives
``close()`` and ``open()``. One process at a time may enrol into a folder.

Example (a cluster of two local nodes; on a real cluster call ``ray.init(address=...)``
instead of starting a :class:`LocalCluster`)::

    import numpy as np
    from face_search.distributed import LocalCluster, ShardedIndex, build_sharded

    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20_000, 512)).astype(np.float32)
    labels = [f"person{i}" for i in range(len(gallery))]
    with LocalCluster(nodes=2):
        build_sharded(gallery, labels, "/shared/faces", engine="hnsw", shards=4,
                      params={"m": 16, "ef_construction": 100})
        with ShardedIndex.open("/shared/faces", replicas=2) as index:
            ids, scores = index.search(gallery[:5], k=4)     # (5, 4) int64, float32
            names = index.labels(ids)
            new = index.add(rng.normal(size=(3, 512)), ["ann", "bob", "eve"])
            index.delete(int(new[0]))
"""

from __future__ import annotations

from .build import build_sharded
from .cluster import LocalCluster
from .errors import SearchResult, ShardError, ShardFileError, ShardUnavailableError
from .files import FORMAT, MANIFEST, read_manifest
from .index import ShardedIndex
from .lazy_ray import _ray

# Importable from here beside __all__: FORMAT (scripts/distributed_bench.py), MANIFEST and
# _ray (the tests).

__all__ = [
    "LocalCluster",
    "SearchResult",
    "ShardError",
    "ShardFileError",
    "ShardUnavailableError",
    "ShardedIndex",
    "build_sharded",
    "read_manifest",
]
