"""A Ray cluster of several nodes on this machine (tests, measurements, trying it out)."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Tuple

from .files import PathLike
from .lazy_ray import _ray


def _proc_table() -> Dict[int, Tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, start time, state) of every process, from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        # state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        # cutime cstime priority nice threads itrealvalue starttime
        out[int(name)] = (int(rest[1]), int(rest[2]), int(rest[19]), rest[0])
    return out


class LocalCluster:
    """A Ray cluster of ``nodes`` nodes on this machine, each a ``ray start --block``
    process (the first the head) with its own temp dir, for tests, measurements and trying
    :class:`ShardedIndex` out. :meth:`start` starts them and connects this process
    (``ray.init``); :meth:`stop` (also at exit, and when leaving a ``with`` block)
    disconnects and stops exactly the processes it started and their descendants, by pid:
    SIGTERM, then SIGKILL after ``stop_grace`` seconds.

    Every address given to Ray is 127.0.0.1 (Ray itself advertises the machine's own address
    for its nodes). ``temp_dir`` (default: a new folder under /tmp) gets one sub-folder per
    node, each node's ``--temp-dir`` (``0`` is the head; Ray accepts a temp dir per node), and
    the ``ray start`` logs (``node0.log``...); :meth:`stop` removes them (and ``temp_dir`` if
    :meth:`start` made it) unless ``keep_logs`` or a process survived. Ray's Unix socket paths
    must stay under 107 characters, so a ``temp_dir`` longer than 38 characters is replaced
    by a short folder under /tmp. ``object_store_bytes`` is each node's object store (at
    least 75 MB). The ``ray start`` processes are also asked to end with the thread that
    started them (``PR_SET_PDEATHSIG``), so a killed run leaves no node behind: start the
    cluster from a thread that outlives it (the main thread).

    Example::

        with LocalCluster(nodes=2) as cluster:
            print(cluster.address, cluster.node_ids())
    """

    def __init__(
        self,
        nodes: int = 2,
        *,
        cpus_per_node: int = 2,
        object_store_bytes: int = 200_000_000,
        temp_dir: Optional[PathLike] = None,
        start_timeout: float = 120.0,
        stop_grace: float = 5.0,
        connect: bool = True,
        keep_logs: bool = False,
    ):
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = int(object_store_bytes)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.connect = connect
        self.keep_logs = keep_logs
        self._created_root = False
        self._temp_arg = None if temp_dir is None else os.path.abspath(os.fspath(temp_dir))
        self.temp_dir: Optional[str] = None
        self.port: Optional[int] = None
        self._procs: List[subprocess.Popen] = []
        self._logs: List[str] = []
        self._known: Dict[int, int] = {}  # pid -> start time
        self._connected = False
        self._stopped = False
        self.survivors: List[int] = []

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` of the head, for ``ray.init(address=...)``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pids(self) -> List[int]:
        """Every pid recorded so far: the ``ray start`` processes and their descendants."""
        self._record()
        return sorted(self._known)

    def _ray_command(self) -> List[str]:
        ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        if os.access(ray_bin, os.X_OK):
            return [ray_bin]
        return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]

    def start(self) -> "LocalCluster":
        """Starts the head, waits for it, starts the other nodes, connects (``ray.init``)
        and waits until every node is alive. On any failure it stops what it started and
        raises, quoting the end of the failing node's log."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        root = self._temp_arg
        if root is None or len(root) > 38:
            root = tempfile.mkdtemp(prefix="fsray", dir="/tmp")
        self._created_root = self._created_root or not os.path.exists(root)
        os.makedirs(root, exist_ok=True)
        self.temp_dir = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        atexit.register(self.stop)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        common = [
            "--node-ip-address=127.0.0.1",
            "--block",
            f"--num-cpus={self.cpus_per_node}",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
        ]
        preexec = _parent_death_signal()
        for i in range(self.nodes):
            if i == 0:
                args = ["start", "--head", f"--port={self.port}", "--include-dashboard=false"]
            else:
                args = ["start", f"--address={self.address}"]
            node_dir = os.path.join(root, str(i))
            os.makedirs(node_dir, exist_ok=True)
            log = os.path.join(root, f"node{i}.log")
            self._logs.append(log)
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    self._ray_command() + args + common + [f"--temp-dir={node_dir}"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            self._procs.append(proc)
            self._record()
            if i == 0:
                self._wait_for_port()
        if self.connect:
            ray = _ray()
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=True)
            self._connected = True
            deadline = time.monotonic() + self.start_timeout
            while len(self.node_ids()) < self.nodes:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"only {len(self.node_ids())} of {self.nodes} Ray nodes alive after "
                        f"{self.start_timeout:g} s; logs in {root}"
                    )
                time.sleep(0.2)
        self._record()

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray head did not listen on {self.address} within {self.start_timeout:g} s")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for i, p in enumerate(self._procs):
            if p.poll() is not None:
                tail = ""
                try:
                    with open(self._logs[i], "rb") as f:
                        tail = f.read()[-3000:].decode(errors="replace")
                except OSError:
                    pass
                raise RuntimeError(f"ray start (node {i}) exited with {p.returncode}:\n{tail}")

    def node_ids(self) -> List[str]:
        """Node ids of the cluster's alive nodes (needs the connection)."""
        ray = _ray()
        return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))

    def _record(self) -> None:
        """Adds the started processes, their descendants and the members of their process
        groups to the pids to stop."""
        table = _proc_table()
        roots = {p.pid for p in self._procs}
        children: Dict[int, List[int]] = {}
        for pid, (ppid, _, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        seen = set()
        todo = [p for p in roots if p in table]
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo += children.get(pid, [])
        seen |= {pid for pid, (_, pgid, _, _) in table.items() if pgid in roots}
        seen.discard(os.getpid())
        for pid in seen:
            if table[pid][3] != "Z":
                self._known.setdefault(pid, table[pid][2])

    def alive_pids(self) -> List[int]:
        """The recorded pids still running (checked by pid and start time; zombies count
        as gone). Empty after :meth:`stop`."""
        return sorted(self._living())

    def _living(self) -> List[int]:
        """Recorded pids still running (same pid and start time, not a zombie)."""
        for p in self._procs:
            p.poll()  # reaps our direct children
        table = _proc_table()
        return [
            pid
            for pid, started in self._known.items()
            if pid in table and table[pid][2] == started and table[pid][3] != "Z"
        ]

    def _signal(self, pids: Iterable[int], sig: int) -> None:
        table = _proc_table()
        for pid in pids:
            if pid in table and table[pid][2] == self._known.get(pid):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def stop(self) -> List[int]:
        """Disconnects and stops every recorded process: SIGTERM, then SIGKILL to those left
        after ``stop_grace`` seconds. Returns (and keeps in :attr:`survivors`) the pids still
        alive afterwards, which should be none. Idempotent."""
        if self._stopped:
            return self.survivors
        self._stopped = True
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass
        if self._connected:
            try:
                _ray().shutdown()
            except Exception:
                pass
            self._connected = False
        self._record()
        self._signal(self._living(), signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while self._living() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self._living()
        if left:
            self._signal(left, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while self._living() and time.monotonic() < deadline:
                time.sleep(0.05)
        for p in self._procs:
            try:
                p.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        self.survivors = self._living()
        if self.survivors:
            print(f"LocalCluster: pids still alive after SIGKILL: {self.survivors}", file=sys.stderr)
        elif not self.keep_logs:
            self._remove_temp()
        return self.survivors

    def _remove_temp(self) -> None:
        """Removes what :meth:`start` made in the temp dir: the nodes' folders and logs, and
        the temp dir itself when it made it."""
        if not self.temp_dir:
            return
        for i in range(self.nodes):
            shutil.rmtree(os.path.join(self.temp_dir, str(i)), ignore_errors=True)
        for log in self._logs:
            try:
                os.unlink(log)
            except OSError:
                pass
        if self._created_root:
            try:
                os.rmdir(self.temp_dir)
            except OSError:
                pass

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _parent_death_signal():
    """A function for Popen's preexec_fn setting PR_SET_PDEATHSIG to SIGTERM (the child gets
    SIGTERM when the thread that started it ends, so a killed test run leaves no Ray node
    behind), made in the parent: after fork only the prepared libc call runs."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
