//! Annoy's build algorithm: every tree splits its items recursively by a hyperplane found with
//! two-means on sampled points, until a node holds at most `K` items (a bucket).
//!
//! The trees are built on int8 codes of the rows ([`RowCodes`]): their top levels one level at
//! a time across all trees, the subtrees below [`SYNC_MIN`] items depth first, in parallel.
//! Then the file is written once, in Annoy's node order: the item nodes, each tree's nodes
//! (children before parents) in its own region, and a copy of every root at the end.

use rand::rngs::Xoshiro256PlusPlus;
use rayon::prelude::*;
use search_core::{Error, Progress, Result, VectorView};
use search_kernels::Aligned;
use search_kernels::planes::Kernels;

use crate::codes::{PlaneCode, RowCodes};
use crate::layout::Layout;

mod emit;
mod levels;
mod tree;
mod two_means;

use emit::item_nodes;
use levels::build_trees;

/// How a tree chooses each split plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Split {
    /// Annoy's: one two-means run on sampled points (retried up to 3 times when the split is
    /// worse than 95/5).
    #[default]
    TwoMeans,
    /// Several two-means runs; keeps the plane that splits the node most evenly.
    BestOf(u8),
}

/// Build settings shared by every tree.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BuildSpec {
    pub n_trees: usize,
    pub seed: u64,
    pub iterations: usize,
    pub split: Split,
    /// Most items in a leaf (at most Annoy's `K`).
    pub leaf: usize,
}

/// Builds the forest over `vectors` (`layout.dim` wide) and returns the whole file, as words:
/// the item nodes (count 1, the row scaled to unit length), then every tree's nodes (children
/// before parents), then a copy of every root. Fails on a row that is not finite or is zero
/// (the error names the first), or when the node count would exceed Annoy's `i32` ids.
///
/// The trees are built on the rows' int8 codes ([`RowCodes`]), made in the same pass over the
/// rows that checks them; the file is written once, in parallel, into a buffer of its final
/// size.
pub(crate) fn build_forest(
    vectors: VectorView<'_>,
    layout: Layout,
    spec: &BuildSpec,
    progress: &dyn Progress,
) -> Result<Vec<u32>> {
    let rows = vectors.as_slice();
    let n = vectors.len();
    progress.set_total((n * spec.n_trees) as u64);
    let (codes, norms) = RowCodes::new(rows, layout.dim);
    // A norm that is not finite or is zero marks a bad row: let the gallery's own check name
    // the first one (its norm is summed in f64 like these, so the two agree).
    if norms.par_iter().any(|&x| !(x.is_finite() && x > 0.0)) {
        vectors.check_all()?;
        return Err(Error::InvalidArgument(
            "a gallery row has a zero or non-finite norm".into(),
        ));
    }
    let forest = build_trees(&codes, layout, spec, progress);
    drop(codes);

    let tree_nodes = &forest.node_counts;
    let n_nodes = n + tree_nodes.iter().sum::<usize>() + spec.n_trees;
    if n_nodes > i32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{n_nodes} nodes exceed Annoy's i32 ids; use fewer trees or items"
        )));
    }
    let w = layout.words;
    let mut words = vec![0u32; n_nodes * w];
    let (items, rest) = words.split_at_mut(n * w);
    let trees = &mut rest[..(n_nodes - n - spec.n_trees) * w];
    let mut regions = Vec::with_capacity(spec.n_trees);
    let (mut left, mut first) = (trees, n);
    for &count in tree_nodes {
        let (region, tail) = left.split_at_mut(count * w);
        regions.push((first, region));
        (left, first) = (tail, first + count);
    }
    let (_, roots): ((), Vec<u32>) = rayon::join(
        || item_nodes(rows, &norms, items, layout),
        || {
            regions
                .into_par_iter()
                .enumerate()
                .map(|(t, (first, region))| {
                    let mut used = 0;
                    let root = forest.emit(t, forest.roots[t], layout, n, first, region, &mut used);
                    debug_assert_eq!(used * w, region.len());
                    root
                })
                .collect()
        },
    );
    // Annoy finds the roots at the end of the file: a copy of each.
    for (t, &root) in roots.iter().enumerate() {
        let root = root as usize;
        words.copy_within(root * w..(root + 1) * w, (n_nodes - spec.n_trees + t) * w);
    }
    Ok(words)
}

/// Nodes with more items than this are split level by level across all trees at once: one
/// pass over the rows computes every tree's side for every row, so the large top levels read
/// the gallery once per level instead of once per tree and level. Smaller subtrees are then
/// built depth first, each on its own, while their rows sit in cache.
/// 1024 rows of 512-d are 2 MB, the L2 cache of one core here (measured: 4096 left the
/// depth-first subtrees reading memory at every level). The level pass stops at twice Annoy's
/// `K` at least (1028 at 512-d); taken by hand below that, to 512 / 256 items, builds got
/// slower (1.14 / 1.25 s against 1.07 s, medians of 5).
const SYNC_MIN: usize = 1024;

/// Two-means samples per item of the node, at most: a node of 100 items converges with 100
/// samples instead of the configured 400 (most split nodes are small: half have at most
/// `2 × leaf` items). Measured on 100k × 512, leaf 64: build −25 to −30% CPU, recall@4 at
/// search_k 5000 0.92 (cap 1) vs 0.94 (no cap).
const SAMPLES_PER_ITEM: usize = 1;

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a subtree hangs: a tree's root, or one side of a split made by the level pass.
#[derive(Clone, Copy)]
enum Slot {
    Root,
    Child(usize, usize),
}

/// What a slot points to once everything is built.
#[derive(Clone, Copy)]
enum Child {
    Pending,
    Split(usize),
    Sub(usize),
}

struct Task {
    tree: usize,
    members: Vec<u32>,
    is_root: bool,
    serial: u64,
    slot: Slot,
}

/// A split made by the level pass: plane and offset, then the two sides' items.
type Parted = (PlaneCode, f32, Vec<u32>, Vec<u32>);

struct SyncSplit {
    plane: PlaneCode,
    offset: f32,
    nd: u32,
    children: [Child; 2],
}

/// The trees, before they are laid out: per tree, the splits made by the level pass (each
/// child a split or a subtree) and the root; the subtrees built depth first.
struct Forest {
    splits: Vec<Vec<SyncSplit>>,
    roots: Vec<Child>,
    subtrees: Vec<Tree>,
    /// Nodes per tree.
    node_counts: Vec<usize>,
    /// Codes per plane.
    stride: usize,
}

/// A subtree built depth first, before it is laid out.
#[derive(Default)]
struct Tree {
    /// Its nodes, children before parents. Child refs below `n` are items; `n + j` is node `j`.
    nodes: Vec<Node>,
    /// The split nodes' plane codes, `stride` each, in the order the planes were chosen.
    planes: Vec<u8>,
    /// The bucket nodes' ids.
    ids: Vec<u32>,
    root: u32,
}

/// A node of a [`Tree`], without the dead weight of a file node (a bucket of 64 ids fills an
/// eighth of one).
#[derive(Clone, Copy)]
enum Node {
    /// A split: its descendant count, children, and plane: codes `plane` of [`Tree::planes`]
    /// (normal `scale · codes`) and offset.
    Split {
        nd: u32,
        children: [u32; 2],
        plane: u32,
        scale: f32,
        offset: f32,
    },
    /// A bucket: its descendant count and ids `start..start + len` of [`Tree::ids`].
    Bucket { nd: u32, start: u32, len: u32 },
}

struct TreeBuilder<'a> {
    data: &'a RowCodes,
    layout: Layout,
    /// Items in the gallery.
    n: usize,
    iterations: usize,
    split: Split,
    leaf: usize,
    rng: Xoshiro256PlusPlus,
    kernels: Kernels,
    progress: &'a dyn Progress,
    tree: Tree,
    /// The plane chosen last (by [`Self::two_means_plane`] or [`Self::choose_split`]).
    plane: PlaneCode,
    /// Scratch: the best plane of several runs, the unit normal, the centroids' sums.
    best_plane: PlaneCode,
    normal: Vec<f32>,
    sums: [Aligned<i16>; 2],
    /// Scratch: one side per index of the node being split.
    sides: Vec<bool>,
    best_sides: Vec<bool>,
    right: Vec<u32>,
    /// Whether the rows may not be in cache yet: true until the first split of a subtree has
    /// read them all (prefetching rows already in L2 made the sides ~13% slower).
    cold: bool,
}

/// The most items in a leaf below the root for a gallery of `n` items.
fn leaf_size(layout: Layout, leaf: usize, n: usize) -> usize {
    // With n = K + 1 items, a split below the root would claim K + 1 = n descendants like a
    // root, and Annoy's root scan would count it as one: keep Annoy's leaves.
    if n > layout.max_bucket + 1 {
        leaf.clamp(1, layout.max_bucket)
    } else {
        layout.max_bucket
    }
}

/// The descendant count a split node of `len` items claims in a gallery of `n`: a root claims
/// every item (that is how readers find roots); any other split at least K + 1, since one with
/// at most K would read as a bucket (readers use a split's count only to tell it from one).
fn split_count(layout: Layout, n: usize, len: usize, is_root: bool) -> u32 {
    if is_root {
        n as u32
    } else {
        len.max(layout.max_bucket + 1) as u32
    }
}

fn split_imbalance(left: usize, right: usize) -> f64 {
    let (ls, rs) = (left as f64, right as f64);
    let f = ls / (ls + rs + 1e-9);
    f.max(1.0 - f)
}
