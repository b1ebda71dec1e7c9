//! `hnswlib-rs` 0.10.0 behind [`SearchIndex`]: its `Hnsw<u32, Cosine>` graph (key = gallery
//! row) over its `InMemoryVectorStore<f32>`, built on every core with rayon.
//!
//! hnswlib-rs saves the graph and the vectors separately (both bincode, sequential): our file is
//! a small header, then `Hnsw::save_to`, then `InMemoryVectorStore::save_to`. Loading parses
//! both back with hnswlib-rs's own readers (nothing is mapped), after checking the header
//! fields that size its allocations.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use search_core::{
    Error, Hit, Knob, Progress, Result, SearchIndex, VectorView, Warmup, check_gallery_len,
    check_k, check_tau, check_vector, write_atomically,
};
use hnswlib_rs::{Cosine, Hnsw, HnswConfig, InMemoryVectorStore};
use rayon::prelude::*;

/// Build parameters; `Default` is the notebook's (as Python hnswlib's peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HnswlibRsParams {
    /// Links per node (hnswlib's M).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching.
    pub ef: usize,
    /// Seed of the level generator.
    pub seed: u64,
}

/// The peer is measured with its defaults only: any parameter given is refused.
impl TryFrom<&search_core::Params> for HnswlibRsParams {
    type Error = search_core::Error;

    fn try_from(p: &search_core::Params) -> Result<Self, Self::Error> {
        p.check(&[])?;
        Ok(HnswlibRsParams::default())
    }
}

impl Default for HnswlibRsParams {
    fn default() -> Self {
        HnswlibRsParams {
            m: 48,
            ef_construction: 200,
            ef: 100,
            seed: 42,
        }
    }
}

const MAGIC: &[u8; 8] = b"HNSWLRS1";
/// Magic, dim, n, graph bytes, vector bytes.
const HEADER_BYTES: u64 = 8 + 4 * 8;
/// hnswlib-rs's graph header (bincode 1, fixed-width little-endian): version u32, dtype u32,
/// then `HnswConfig` (dim, max_nodes, m, ef_construction, ef_search, seed,
/// label_operation_locks: u64 each).
const GRAPH_HEADER_BYTES: usize = 8 + 7 * 8;
/// Its vector store's header: version, dtype, dim, max_nodes, node_count (u32 each).
const STORE_HEADER_BYTES: usize = 5 * 4;
/// Largest M a file may claim: hnswlib-rs allocates `max_nodes × (2M + 1)` words up front.
const MAX_M: u64 = 1024;

type Graph = Hnsw<u32, Cosine<f32>>;

/// hnswlib-rs's HNSW over cosine distance, as a peer of our engines.
pub struct HnswlibRs {
    graph: Graph,
    vectors: InMemoryVectorStore<f32>,
    dim: usize,
    len: usize,
}

fn lib_err(what: &str, e: hnswlib_rs::Error) -> Error {
    Error::InvalidArgument(format!("hnswlib-rs {what}: {e}"))
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into())
}

impl HnswlibRs {
    /// Top `k` hits by hnswlib-rs, best first.
    fn top(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let found = self
            .graph
            .search(&self.vectors, query, k, None)
            .map_err(|e| lib_err("search", e))?;
        let mut hits: Vec<Hit> = found
            .into_iter()
            .map(|h| Hit {
                id: h.key,
                score: 1.0 - h.distance,
            })
            .collect();
        hits.sort_by(Hit::ranking);
        Ok(hits)
    }
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

impl SearchIndex for HnswlibRs {
    type Params = HnswlibRsParams;
    const NAME: &'static str = "hnswlib-rs";

    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &HnswlibRsParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let (n, dim) = (vectors.len(), vectors.dim());
        check_gallery_len(n)?;
        vectors.check_all()?;
        if params.m < 2 || params.m as u64 > MAX_M {
            return Err(Error::InvalidArgument(format!(
                "M must be in [2, {MAX_M}], got {}",
                params.m
            )));
        }
        if params.ef == 0 {
            return Err(Error::InvalidArgument("ef must be at least 1".into()));
        }
        let cfg = HnswConfig::new(dim, n)
            .m(params.m)
            .ef_construction(params.ef_construction)
            .ef_search(params.ef)
            .seed(params.seed);
        let graph: Graph = Hnsw::new(Cosine::new(), cfg);
        let store = InMemoryVectorStore::<f32>::new(dim, n);
        progress.set_total(n as u64);
        (0..n)
            .into_par_iter()
            .try_for_each(|i| {
                let row = vectors.row(i);
                graph.insert(&store, i as u32, row)?;
                progress.advance(1);
                Ok::<(), hnswlib_rs::Error>(())
            })
            .map_err(|e| lib_err("insert", e))?;
        Ok(HnswlibRs {
            graph,
            vectors: store,
            dim,
            len: n,
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut graph = Vec::new();
        self.graph
            .save_to(&mut graph)
            .map_err(|e| lib_err("save_to (graph)", e))?;
        let mut store = Vec::new();
        self.vectors
            .save_to(&mut store, self.graph.len())
            .map_err(|e| lib_err("save_to (vectors)", e))?;
        write_atomically(path, |w| {
            w.write_all(MAGIC)?;
            for v in [
                self.dim as u64,
                self.len as u64,
                graph.len() as u64,
                store.len() as u64,
            ] {
                w.write_all(&v.to_le_bytes())?;
            }
            w.write_all(&graph)?;
            w.write_all(&store)
        })
    }

    /// Reads the file with hnswlib-rs's own readers; `warmup` does not apply (everything is
    /// parsed and copied into memory).
    fn load_with(path: &Path, _warmup: Warmup) -> Result<Self> {
        let io = |e| Error::io(path, e);
        let bad = |m: String| Error::format(path, m);
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; HEADER_BYTES as usize];
        r.read_exact(&mut head).map_err(|_| {
            bad(format!(
                "{file_len} bytes: too short for a hnswlib-rs peer file"
            ))
        })?;
        if &head[..8] != MAGIC {
            return Err(bad("not a hnswlib-rs peer file (bad magic)".into()));
        }
        let (dim, n, graph_len, store_len) = (
            le_u64(&head, 8),
            le_u64(&head, 16),
            le_u64(&head, 24),
            le_u64(&head, 32),
        );
        let expected = HEADER_BYTES
            .checked_add(graph_len)
            .and_then(|x| x.checked_add(store_len));
        if expected != Some(file_len) {
            return Err(bad(format!(
                "the header claims {graph_len} + {store_len} bytes of sections, the file has {file_len}"
            )));
        }
        let row_bytes = dim.checked_mul(4);
        let rows_bytes = row_bytes.and_then(|b| b.checked_mul(n));
        if dim == 0
            || n == 0
            || n > u64::from(u32::MAX)
            || rows_bytes.and_then(|b| b.checked_add(STORE_HEADER_BYTES as u64)) != Some(store_len)
            || graph_len < GRAPH_HEADER_BYTES as u64 + 11 * n
        {
            return Err(bad(format!(
                "inconsistent header: dim {dim}, {n} vectors, graph {graph_len} bytes, vectors \
                 {store_len} bytes"
            )));
        }
        let (dim, n) = (dim as usize, n as usize);
        // Read the graph section whole, then check the fields hnswlib-rs allocates from.
        let mut graph_bytes = vec![0u8; graph_len as usize];
        r.read_exact(&mut graph_bytes).map_err(io)?;
        let (g_dim, g_max, g_m, g_locks) = (
            le_u64(&graph_bytes, 8),
            le_u64(&graph_bytes, 16),
            le_u64(&graph_bytes, 24),
            le_u64(&graph_bytes, 56),
        );
        if g_dim != dim as u64
            || g_max != n as u64
            || !(2..=MAX_M).contains(&g_m)
            || g_locks > 1 << 24
        {
            return Err(bad(format!(
                "graph header: dim {g_dim}, max_nodes {g_max}, M {g_m}, {g_locks} key locks \
                 (expected dim {dim}, {n} nodes, M in [2, {MAX_M}])"
            )));
        }
        let mut store_head = [0u8; STORE_HEADER_BYTES];
        r.read_exact(&mut store_head).map_err(io)?;
        let (s_dim, s_max, s_count) = (
            le_u32(&store_head, 8),
            le_u32(&store_head, 12),
            le_u32(&store_head, 16),
        );
        if s_dim as usize != dim || s_max as usize != n || s_count as usize != n {
            return Err(bad(format!(
                "vector store header: dim {s_dim}, max_nodes {s_max}, {s_count} vectors \
                 (expected dim {dim}, {n} vectors)"
            )));
        }
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            let graph = Graph::load_from(Cosine::new(), &mut graph_bytes.as_slice());
            let mut rest = (&store_head[..]).chain(&mut r);
            let vectors = InMemoryVectorStore::<f32>::load_from(&mut rest);
            (graph, vectors)
        }))
        .map_err(|p| {
            bad(format!(
                "hnswlib-rs panicked while loading: {}",
                panic_message(p)
            ))
        })?;
        let graph = loaded
            .0
            .map_err(|e| bad(format!("hnswlib-rs graph: {e}")))?;
        let (vectors, count) = loaded
            .1
            .map_err(|e| bad(format!("hnswlib-rs vectors: {e}")))?;
        if graph.len() != n || count != n || graph.dim() != dim {
            return Err(bad(format!(
                "hnswlib-rs read {} nodes and {count} vectors of dim {}, the header says {n} of {dim}",
                graph.len(),
                graph.dim()
            )));
        }
        // Keys are gallery rows: n distinct keys (hnswlib-rs refuses duplicates), all below n.
        if let Some(key) = graph.keys().into_iter().find(|&k| k as usize >= n) {
            return Err(bad(format!("key {key} is not a row of a {n}-row gallery")));
        }
        Ok(HnswlibRs {
            graph,
            vectors,
            dim,
            len: n,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.len
    }

    fn search_unchecked(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        check_k(k)?;
        check_vector(query, self.dim, || "query".into())?;
        self.top(query, k)
    }

    /// Top-k searches with k growing ×4 (hnswlib-rs searches with `max(ef, k + 1)`) until the
    /// last hit is at or below `tau` or the whole index came back.
    fn search_threshold_unchecked(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        check_tau(tau)?;
        check_vector(query, self.dim, || "query".into())?;
        let mut k = 64.min(self.len);
        loop {
            let mut hits = self.top(query, k)?;
            let done =
                hits.len() < k || k >= self.len || hits.last().is_some_and(|h| h.score <= tau);
            if done {
                hits.retain(|h| h.score > tau);
                return Ok(hits);
            }
            k = k.saturating_mul(4).min(self.len);
        }
    }

    fn knob(&self) -> Option<Knob> {
        Some(Knob {
            name: "ef",
            value: self.graph.ef_search(),
        })
    }

    fn set_knob(&mut self, value: usize) -> Result<()> {
        if value == 0 {
            return Err(Error::InvalidArgument("ef must be at least 1".into()));
        }
        self.graph.set_ef_search(value);
        Ok(())
    }
}
