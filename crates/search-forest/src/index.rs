//! [`ForestIndex`]: build, save, open and query an Annoy forest.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use search_core::{
    Error, Hit, Knob, Progress, Result, SearchIndex, VectorView, Warmup, check_k, check_vector,
    map_file, normalized, write_atomically,
};
use search_kernels::dot_kernel;

use crate::build::{BuildSpec, Split, build_forest};
use crate::layout::{Layout, Metric, Shape, angular_dims, validate, verify_nodes};
use crate::search::{Forest, top_k, with_scratch};

/// Candidates a threshold search gathers per tree when no `search_k` is set: as many as a
/// k-NN search for this many neighbours would (see [`ForestIndex::default_search_k`]).
pub const THRESHOLD_K: usize = 16;

/// Default most items per leaf ([`ForestParams::leaf_size`]).
pub const DEFAULT_LEAF_SIZE: usize = 64;

/// With no `search_k` set, a query examines at least this fraction of the items.
pub const DEFAULT_FRACTION: usize = 20;

/// Build parameters of a forest. `Default` gives the notebook's: 20 angular trees.
#[derive(Clone, Debug, PartialEq)]
pub struct ForestParams {
    /// Number of trees (Annoy's `n_trees`). More trees: better recall per query, bigger file.
    pub n_trees: usize,
    /// Seed of every random choice; the same seed and data give the same file.
    pub seed: u64,
    /// Node layout and split rule. The index answers cosine queries either way: rows are
    /// normalised before building, so euclidean order equals cosine order.
    pub metric: Metric,
    /// How each split plane is chosen.
    pub split: Split,
    /// Points sampled by each two-means run (default 400; Annoy: 200). More samples give
    /// better planes: on the 100k × 512 benchmark, recall@4 at search_k 2000 is 0.70 / 0.77 /
    /// 0.86 / 0.91 for 50 / 200 / 400 / 1000 samples, for more build time.
    pub two_means_iterations: usize,
    /// Most items in a leaf (default 64); `None` is Annoy's own rule, `K = dim + 2` (514 for
    /// 512-d). Smaller leaves give the search finer cells to choose from: on the 100k × 512
    /// benchmark, leaves of 64 reach recall@4 0.95 with about half the candidates Annoy's
    /// leaves need, for a file about 1.7× larger. Split nodes above at most `K` items claim
    /// `K + 1` descendants, so that every Annoy reader (Python annoy, annoy-rs, ours) still
    /// takes them for splits: the file stays an ordinary Annoy file.
    pub leaf_size: Option<usize>,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 20,
            seed: 42,
            metric: Metric::Angular,
            split: Split::TwoMeans,
            two_means_iterations: 400,
            leaf_size: Some(DEFAULT_LEAF_SIZE),
        }
    }
}

/// An Annoy forest in Annoy's own file format, served by this crate.
///
/// Built in memory by [`SearchIndex::build`], or mapped from a file by [`SearchIndex::load`]
/// (angular files; the dimension is read from the file itself) or [`ForestIndex::open`] (any
/// metric and dimension, e.g. files written by Python annoy). Files are checked on opening;
/// the index is `Send + Sync` and answers queries from many threads at once.
#[derive(Debug)]
pub struct ForestIndex {
    storage: Storage,
    layout: Layout,
    shape: Shape,
    search_k: Option<usize>,
    /// The file it was opened from, for error messages.
    source: PathBuf,
    /// Set when opened from a file that may be cold: the next query first asks the kernel to
    /// read all its candidates' rows at once (see [`ForestIndex::read_ahead`]).
    cold: AtomicBool,
}

#[derive(Debug)]
enum Storage {
    Owned(Vec<u32>),
    Mapped(memmap2::Mmap),
}

impl ForestIndex {
    /// Opens an Annoy file of dimension `dim` and metric `metric` (as Python's
    /// `AnnoyIndex(dim, metric).load(path)`). Checks the size, the roots and item 0 (for
    /// [`SearchIndex::load`]); every other tree node is checked when a query reads it
    /// ([`ForestIndex::verify`] checks them all).
    pub fn open(path: &Path, dim: usize, metric: Metric) -> Result<Self> {
        Self::open_with(path, dim, metric, Warmup::default())
    }

    /// [`ForestIndex::open`], bringing the split nodes (which every query walks) into memory
    /// as `warmup` says; item vectors are read as the queries pick them.
    pub fn open_with(path: &Path, dim: usize, metric: Metric, warmup: Warmup) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument(
                "dimension must be at least 1".into(),
            ));
        }
        let map = map_file(path)?;
        let layout = Layout::new(metric, dim);
        let shape = validate(words_of(&map, path)?, &layout, path)?;
        Ok(Self::mapped(map, layout, shape, path, warmup))
    }

    /// A checked, mapped file as an index, its split nodes brought in as `warmup` says.
    fn mapped(
        map: memmap2::Mmap,
        layout: Layout,
        shape: Shape,
        path: &Path,
        warmup: Warmup,
    ) -> Self {
        warm_split_nodes(&map, &layout, &shape, warmup);
        ForestIndex {
            storage: Storage::Mapped(map),
            layout,
            shape,
            search_k: None,
            source: path.to_path_buf(),
            cold: AtomicBool::new(warmup != Warmup::Lazy),
        }
    }

    /// Checks the parts of the file that opening leaves to the readers: every tree node's
    /// count, children and bucket ids (a query that meets a damaged node fails with
    /// [`Error::Format`] anyway). Reads every tree node in full, so it costs milliseconds on a
    /// large index, where opening costs microseconds.
    pub fn verify(&self) -> Result<()> {
        verify_nodes(self.words(), &self.layout, &self.shape, &self.source)
    }

    fn damaged(&self, msg: String) -> Error {
        Error::format(&self.source, msg)
    }

    /// The file's bytes, exactly as [`SearchIndex::save`] writes them.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.words())
    }

    /// The metric the file was built with.
    pub fn metric(&self) -> Metric {
        self.layout.metric
    }

    /// Number of trees, as Annoy counts them (its `get_n_trees`).
    pub fn n_trees(&self) -> usize {
        self.shape.roots.len()
    }

    /// Number of nodes in the file.
    pub fn n_nodes(&self) -> usize {
        self.shape.n_nodes
    }

    /// The vector stored for item `i` (Annoy's `get_item_vector`): for a forest built by this
    /// crate, the row scaled to unit length. `None` when `i` is not an item of the file.
    pub fn item_vector(&self, i: usize) -> Option<&[f32]> {
        let forest = self.forest();
        forest.is_item(i).then(|| forest.vector(i))
    }

    /// The `search_k` set with [`ForestIndex::set_search_k`] (or the knob), if any.
    pub fn search_k(&self) -> Option<usize> {
        self.search_k
    }

    /// The `search_k` a query for `k` neighbours uses when none is set: Annoy's `k × n_trees`,
    /// but at least `n / 20` (5% of the items). Annoy's rule alone examines a single leaf or
    /// two in high dimensions (recall@4 about 0.2 on the 100k × 512 benchmark); a twentieth of
    /// the items gives recall@4 about 0.9 there at a few milliseconds. Pass `search_k`
    /// explicitly (or set the knob) to choose another trade-off.
    pub fn default_search_k(&self, k: usize) -> usize {
        k.saturating_mul(self.n_trees())
            .max(self.shape.n_items.div_ceil(DEFAULT_FRACTION))
    }

    /// Sets how many candidates each query gathers; `None` restores the default
    /// ([`ForestIndex::default_search_k`]).
    pub fn set_search_k(&mut self, search_k: Option<usize>) {
        self.search_k = search_k.filter(|&s| s > 0);
    }

    /// Annoy's `get_nns_by_vector(query, n, search_k, include_distances=True)`: the `n` nearest
    /// items by the file's metric with their Annoy distances (angular: `sqrt(2 − 2·cos)`),
    /// nearest first, ties by lower id. `search_k = None` means Annoy's default, `n × n_trees`.
    /// Gathers the same candidates as Annoy for the same file, query and `search_k`.
    pub fn nns_by_vector(
        &self,
        query: &[f32],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<(u32, f32)>> {
        check_k(n)?;
        check_vector(query, self.layout.dim, || "query".into())?;
        let forest = self.forest();
        let dot = dot_kernel();
        let search_k = search_k.unwrap_or(n.saturating_mul(self.n_trees()));
        let qq = dot(query, query);
        with_scratch(|s| {
            forest
                .gather(query, search_k, dot, s)
                .map_err(|msg| self.damaged(msg))?;
            self.read_ahead(&mut s.cands);
            let mut scored: Vec<(f32, u32)> = s
                .cands
                .iter()
                .filter(|&&i| forest.is_item(i as usize))
                .map(|&i| (forest.annoy_distance(query, qq, i as usize, dot), i))
                .collect();
            let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if scored.len() > n {
                scored.select_nth_unstable_by(n - 1, cmp);
                scored.truncate(n);
            }
            scored.sort_unstable_by(cmp);
            Ok(scored
                .into_iter()
                .map(|(d, i)| (i, d.max(0.0).sqrt()))
                .collect())
        })
    }

    /// On the first query after opening a file that may be cold, asks the kernel to read
    /// every candidate's item row at once: thousands of rows scattered over the file arrive
    /// in parallel instead of one page fault after another. Sorts `cands` (the scores do not
    /// depend on their order).
    fn read_ahead(&self, cands: &mut [u32]) {
        if !self.cold.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Storage::Mapped(map) = &self.storage {
            let node = self.layout.node_bytes();
            cands.sort_unstable();
            let rows: Vec<std::ops::Range<usize>> = cands
                .iter()
                .map(|&i| i as usize * node..(i as usize + 1) * node)
                .collect();
            search_core::read_ahead(map, &rows);
        }
    }

    fn words(&self) -> &[u32] {
        match &self.storage {
            Storage::Owned(w) => w,
            // Checked on opening: 4-aligned (page-aligned map) and a whole number of words.
            Storage::Mapped(m) => bytemuck::cast_slice(&m[..]),
        }
    }

    fn forest(&self) -> Forest<'_> {
        Forest {
            words: self.words(),
            layout: self.layout,
            n_items: self.shape.n_items,
            n_nodes: self.shape.n_nodes,
            roots: &self.shape.roots,
        }
    }

    /// Gathers candidates for `search_k` and scores them by cosine into the scratch hit list,
    /// then hands that list to `finish`.
    fn scored<R>(
        &self,
        query: &[f32],
        search_k: usize,
        finish: impl FnOnce(&mut Vec<Hit>) -> R,
    ) -> Result<R> {
        let q = normalized(query, self.layout.dim, || "query".into())?;
        let forest = self.forest();
        let dot = dot_kernel();
        with_scratch(|s| {
            forest
                .gather(&q, search_k, dot, s)
                .map_err(|msg| self.damaged(msg))?;
            self.read_ahead(&mut s.cands);
            s.hits.clear();
            const AHEAD: usize = 6;
            for (n, &i) in s.cands.iter().enumerate() {
                if let Some(&next) = s.cands.get(n + AHEAD) {
                    forest.prefetch(next as usize);
                }
                let i = i as usize;
                if forest.is_item(i)
                    && let Some(score) = forest.cosine(&q, i, dot)
                {
                    s.hits.push(Hit {
                        id: i as u32,
                        score,
                    });
                }
            }
            Ok(finish(&mut s.hits))
        })
    }
}

/// The split nodes (after the item nodes, up to the end) are what every query walks.
fn warm_split_nodes(map: &memmap2::Mmap, layout: &Layout, shape: &Shape, warmup: Warmup) {
    let start = shape.n_items.saturating_mul(layout.node_bytes());
    search_core::warm(
        map,
        &[(start..map.len(), search_core::Access::Random)],
        warmup,
    );
}

fn words_of<'m>(map: &'m memmap2::Mmap, path: &Path) -> Result<&'m [u32]> {
    bytemuck::try_cast_slice(&map[..]).map_err(|_| {
        Error::format(
            path,
            format!(
                "{} bytes is not a whole number of 4-byte words: not an Annoy index",
                map.len()
            ),
        )
    })
}

impl SearchIndex for ForestIndex {
    type Params = ForestParams;
    const NAME: &'static str = "forest";

    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &ForestParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        if params.n_trees == 0 {
            return Err(Error::InvalidArgument(
                "a forest needs at least one tree (n_trees = 0)".into(),
            ));
        }
        if vectors.len() >= i32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "{} rows exceed Annoy's i32 ids",
                vectors.len()
            )));
        }
        if vectors.dim() > crate::codes::MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "dimension {} is above the forest's limit of {}",
                vectors.dim(),
                crate::codes::MAX_DIM
            )));
        }
        let layout = Layout::new(params.metric, vectors.dim());
        let spec = BuildSpec {
            n_trees: params.n_trees,
            seed: params.seed,
            iterations: params.two_means_iterations,
            split: params.split,
            leaf: params.leaf_size.unwrap_or(usize::MAX),
        };
        // Checks every row (finite, non-zero) as it codes them.
        let words = build_forest(vectors, layout, &spec, progress)?;
        let source = PathBuf::from("<built forest>");
        let shape = validate(&words, &layout, &source)?;
        // The builder's own output: checked in full in debug builds (and tests) only.
        if cfg!(debug_assertions) {
            verify_nodes(&words, &layout, &shape, &source)?;
        }
        Ok(ForestIndex {
            storage: Storage::Owned(words),
            layout,
            shape,
            search_k: None,
            source,
            cold: AtomicBool::new(false),
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, |w| w.write_all(self.as_bytes()))
    }

    /// Opens an angular Annoy file, reading its dimension from the file itself (the node size
    /// must divide the file and item 0's stored squared norm must match its vector). Use
    /// [`ForestIndex::open`] to give the dimension and metric explicitly.
    fn load_with(path: &Path, warmup: Warmup) -> Result<Self> {
        let map = map_file(path)?;
        let words = words_of(&map, path)?;
        if words.is_empty() {
            return Err(Error::format(path, "empty file: not an Annoy index"));
        }
        let mut found = None;
        let mut last_err = None;
        for dim in angular_dims(words) {
            let layout = Layout::new(Metric::Angular, dim);
            match validate(words, &layout, path) {
                Ok(shape) if found.is_none() => found = Some((layout, shape)),
                Ok(_) => {
                    return Err(Error::format(
                        path,
                        "the dimension is ambiguous; open it with ForestIndex::open(path, dim, \
                         metric)",
                    ));
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((layout, shape)) = found else {
            return Err(last_err.unwrap_or_else(|| {
                Error::format(
                    path,
                    "not an angular Annoy index of any dimension (item 0 is not a stored \
                     vector with its squared norm)",
                )
            }));
        };
        Ok(Self::mapped(map, layout, shape, path, warmup))
    }

    fn dim(&self) -> usize {
        self.layout.dim
    }

    fn len(&self) -> usize {
        self.shape.n_items
    }

    fn search_unchecked(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let search_k = self.search_k.unwrap_or_else(|| self.default_search_k(k));
        self.scored(query, search_k, |hits| {
            top_k(hits, k);
            hits.clone()
        })
    }

    fn search_threshold_unchecked(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        let search_k = self
            .search_k
            .unwrap_or_else(|| self.default_search_k(THRESHOLD_K));
        self.scored(query, search_k, |hits| {
            let mut above: Vec<Hit> = hits.iter().filter(|h| h.score > tau).copied().collect();
            above.sort_unstable_by(Hit::ranking);
            above
        })
    }

    /// The knob is `search_k`; 0 means the default ([`ForestIndex::default_search_k`]).
    fn search_knob_unchecked(&self, query: &[f32], k: usize, knob: usize) -> Result<Vec<Hit>> {
        let search_k = if knob == 0 {
            self.default_search_k(k)
        } else {
            knob
        };
        self.scored(query, search_k, |hits| {
            top_k(hits, k);
            hits.clone()
        })
    }

    /// The stored row ([`ForestIndex::item_vector`]).
    fn vector(&self, id: u32) -> Result<Vec<f32>> {
        self.item_vector(id as usize)
            .map(<[f32]>::to_vec)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "no item with id {id} in the index ({} items)",
                    self.shape.n_items
                ))
            })
    }

    /// The forest's own file is Annoy's.
    fn save_foreign(&self, path: &Path) -> Result<()> {
        SearchIndex::save(self, path)
    }

    fn knob(&self) -> Option<Knob> {
        Some(Knob {
            name: "search_k",
            value: self.search_k.unwrap_or(0),
        })
    }

    /// Sets `search_k`; 0 restores the default ([`ForestIndex::default_search_k`]).
    fn set_knob(&mut self, value: usize) -> Result<()> {
        self.set_search_k(Some(value));
        Ok(())
    }
}
