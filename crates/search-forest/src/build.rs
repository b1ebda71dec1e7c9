//! Annoy's build algorithm: every tree splits its items recursively by a hyperplane found with
//! two-means on sampled points, until a node holds at most `K` items (a bucket).
//!
//! The trees are built on int8 codes of the rows ([`RowCodes`]): their top levels one level at
//! a time across all trees, the subtrees below [`SYNC_MIN`] items depth first, in parallel.
//! Then the file is written once, in Annoy's node order: the item nodes, each tree's nodes
//! (children before parents) in its own region, and a copy of every root at the end.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use search_core::{Error, Progress, Result, VectorView};
use search_kernels::dot_kernel;

use crate::codes::{PlaneCode, RowCodes, decode_plane, sum_code_max};
use crate::layout::{Layout, Metric};
use search_kernels::Aligned;
use search_kernels::planes::{AddFn, Kernels, kernels};

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

fn build_trees(
    data: &RowCodes,
    layout: Layout,
    spec: &BuildSpec,
    progress: &dyn Progress,
) -> Forest {
    let n = data.len();
    let t_count = spec.n_trees;
    let sync_min = SYNC_MIN.max(2 * layout.max_bucket);
    let mut splits: Vec<Vec<SyncSplit>> = (0..t_count).map(|_| Vec::new()).collect();
    let mut roots = vec![Child::Pending; t_count];
    let mut subtrees: Vec<Task> = Vec::new();
    let mut tasks: Vec<Task> = (0..t_count)
        .map(|t| Task {
            tree: t,
            members: (0..n as u32).collect(),
            is_root: true,
            serial: mix(spec.seed, t as u64),
            slot: Slot::Root,
        })
        .collect();
    let mut slot_of = Vec::new();
    let mut side_of = Vec::new();
    let attach = |splits: &mut Vec<Vec<SyncSplit>>,
                  roots: &mut Vec<Child>,
                  tree: usize,
                  slot: Slot,
                  child: Child| match slot {
        Slot::Root => roots[tree] = child,
        Slot::Child(a, side) => splits[tree][a].children[side] = child,
    };
    while !tasks.is_empty() {
        let (big, small): (Vec<Task>, Vec<Task>) =
            tasks.drain(..).partition(|t| t.members.len() > sync_min);
        for task in small {
            attach(
                &mut splits,
                &mut roots,
                task.tree,
                task.slot,
                Child::Sub(subtrees.len()),
            );
            subtrees.push(task);
        }
        if big.is_empty() {
            break;
        }
        // Planes, one per task.
        let planes: Vec<(PlaneCode, f32)> = big
            .par_iter()
            .map(|task| {
                let mut b = TreeBuilder::new(data, layout, spec, task.serial, progress);
                let offset = b.two_means_plane(&task.members);
                (b.plane, offset)
            })
            .collect();
        // Which task (plane) holds each row, per tree (tree-major: n per tree), filled per tree
        // in parallel.
        let mut tasks_of_tree = vec![Vec::new(); t_count];
        for (k, task) in big.iter().enumerate() {
            tasks_of_tree[task.tree].push(k);
        }
        slot_of.resize(n * t_count, u32::MAX);
        slot_of
            .par_chunks_mut(n)
            .zip(&tasks_of_tree)
            .for_each(|(slots, tasks)| {
                slots.fill(u32::MAX);
                for &k in tasks {
                    for &m in &big[k].members {
                        slots[m as usize] = k as u32;
                    }
                }
            });
        // One pass over the rows: every tree's side for every row. Stored by chunks of ROWS rows,
        // tree-major within a chunk, so that a task reads its sides from few cache lines.
        side_of.resize(n * t_count, 0u8);
        const ROWS: usize = 256;
        let side_index = |i: usize, t: usize| {
            let c = i / ROWS;
            let rows = ROWS.min(n - c * ROWS);
            c * ROWS * t_count + t * rows + (i - c * ROWS)
        };
        let Kernels {
            side_dot4,
            side_row8,
            ..
        } = kernels();
        let side = |m: f32| {
            if m > 0.0 {
                1
            } else if m < 0.0 {
                0
            } else {
                2
            }
        };
        let slot_of = &slot_of;
        // An angular plane's offset is 0: its product's sign places a row.
        let scaled = layout.metric != Metric::Angular;
        side_of
            .par_chunks_mut(ROWS * t_count)
            .enumerate()
            .for_each(|(c, sides)| {
                // (tree, plane) pairs of the current row, eight (then four) planes per pass
                // over the row.
                let mut active: Vec<(usize, usize)> = Vec::with_capacity(t_count);
                let rows = sides.len() / t_count;
                for r in 0..rows {
                    let i = c * ROWS + r;
                    active.clear();
                    active.extend((0..t_count).filter_map(|t| {
                        let k = slot_of[t * n + i];
                        (k != u32::MAX).then_some((t, k as usize))
                    }));
                    let i = i as u32;
                    let mut eights = active.chunks_exact(8);
                    for g in &mut eights {
                        let k8 = [0, 1, 2, 3, 4, 5, 6, 7].map(|j| g[j].1);
                        let planes8 = k8.map(|k| &planes[k].0);
                        let margins = data.margins8(side_row8, i, planes8, scaled);
                        for (&(t, k), m) in g.iter().zip(margins) {
                            sides[t * rows + r] = side(planes[k].1 + m);
                        }
                    }
                    for g in eights.remainder().chunks(4) {
                        // A short last group repeats its first plane.
                        let k4 = [0, 1, 2, 3].map(|j| g.get(j).unwrap_or(&g[0]).1);
                        let planes4 = k4.map(|k| &planes[k].0);
                        let margins = data.margins4(side_dot4, [i; 4], planes4, scaled);
                        for (&(t, k), m) in g.iter().zip(margins) {
                            sides[t * rows + r] = side(planes[k].1 + m);
                        }
                    }
                }
            });
        // Partition each task; a poor split is redone on the task's own rows.
        let parts: Vec<Parted> = big
            .par_iter()
            .zip(planes)
            .map(|(task, (plane, offset))| {
                let mut b = TreeBuilder::new(data, layout, spec, mix(task.serial, 7), progress);
                let members = &task.members;
                // Without a branch on the side (a coin toss): each member is written to both
                // sides and only its side's cursor moves on.
                let mut left = vec![0u32; members.len()];
                let mut right = vec![0u32; members.len()];
                let (mut l, mut r) = (0, 0);
                for &m in members {
                    let s = match side_of[side_index(m as usize, task.tree)] {
                        2 => b.rng.random::<bool>(),
                        s => s == 1,
                    };
                    let s = usize::from(s);
                    left[l] = m;
                    right[r] = m;
                    l += 1 - s;
                    r += s;
                }
                left.truncate(l);
                right.truncate(r);
                if split_imbalance(left.len(), right.len()) < 0.95 {
                    return (plane, offset, left, right);
                }
                let offset = b.choose_split(members);
                left.clear();
                right.clear();
                for (&m, &s) in members.iter().zip(&b.sides) {
                    if s { right.push(m) } else { left.push(m) }
                }
                (b.plane, offset, left, right)
            })
            .collect();
        for (task, (plane, offset, left, right)) in big.into_iter().zip(parts) {
            let a = splits[task.tree].len();
            splits[task.tree].push(SyncSplit {
                plane,
                offset,
                nd: split_count(layout, n, task.members.len(), task.is_root),
                children: [Child::Pending; 2],
            });
            attach(
                &mut splits,
                &mut roots,
                task.tree,
                task.slot,
                Child::Split(a),
            );
            for (side, members) in [left, right].into_iter().enumerate() {
                tasks.push(Task {
                    tree: task.tree,
                    members,
                    is_root: false,
                    serial: mix(task.serial, side as u64 + 1),
                    slot: Slot::Child(a, side),
                });
            }
        }
    }

    // The small subtrees, depth first, in parallel.
    let built: Vec<Tree> = subtrees
        .par_iter_mut()
        .map(|task| {
            TreeBuilder::new(data, layout, spec, task.serial, progress)
                .build(&mut task.members, task.is_root)
        })
        .collect();

    let mut node_counts: Vec<usize> = splits.iter().map(Vec::len).collect();
    for (task, tree) in subtrees.iter().zip(&built) {
        node_counts[task.tree] += tree.nodes.len();
    }
    Forest {
        splits,
        roots,
        subtrees: built,
        node_counts,
        stride: data.stride,
    }
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

impl Forest {
    /// Writes the subtree of tree `t` at `child` into `out` from node `*used` on (children
    /// first) and returns its ref; `first` is the id of `out`'s first node in the file.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        t: usize,
        child: Child,
        layout: Layout,
        n: usize,
        first: usize,
        out: &mut [u32],
        used: &mut usize,
    ) -> u32 {
        let w = layout.words;
        match child {
            Child::Pending => unreachable!("every slot is filled"),
            Child::Sub(s) => {
                let tree = &self.subtrees[s];
                // Local node j of the subtree becomes node `base + j` of the file.
                let base = first + *used;
                let remap = |r: u32| {
                    if (r as usize) < n {
                        r
                    } else {
                        (r as usize - n + base) as u32
                    }
                };
                let stride = self.stride;
                for node in &tree.nodes {
                    let dst = &mut out[*used * w..(*used + 1) * w];
                    match *node {
                        Node::Bucket { nd, start, len } => {
                            let ids = &tree.ids[start as usize..(start + len) as usize];
                            dst[0] = nd;
                            dst[layout.children..layout.children + ids.len()].copy_from_slice(ids);
                        }
                        Node::Split {
                            nd,
                            children,
                            plane,
                            scale,
                            offset,
                        } => {
                            let codes = &tree.planes[plane as usize * stride..][..stride];
                            let children = children.map(remap);
                            write_split(dst, layout, nd, children, codes, scale, offset);
                        }
                    }
                    *used += 1;
                }
                remap(tree.root)
            }
            Child::Split(a) => {
                let split = &self.splits[t][a];
                let c0 = self.emit(t, split.children[0], layout, n, first, out, used);
                let c1 = self.emit(t, split.children[1], layout, n, first, out, used);
                let node = &mut out[*used * w..(*used + 1) * w];
                let plane = &split.plane;
                write_split(
                    node,
                    layout,
                    split.nd,
                    [c0, c1],
                    &plane.codes,
                    plane.scale,
                    split.offset,
                );
                *used += 1;
                (first + *used - 1) as u32
            }
        }
    }
}

/// Writes a split node into `node` (zeroed): its descendant count, children, plane normal
/// `scale · codes` and (euclidean) offset.
fn write_split(
    node: &mut [u32],
    layout: Layout,
    nd: u32,
    children: [u32; 2],
    codes: &[u8],
    scale: f32,
    offset: f32,
) {
    node[0] = nd;
    node[layout.children..layout.children + 2].copy_from_slice(&children);
    if layout.metric == Metric::Euclidean {
        node[1] = offset.to_bits();
    }
    decode_plane(
        codes,
        scale,
        bytemuck::cast_slice_mut(&mut node[layout.v..]),
    );
}

/// Writes the item node of every row into `items`: count 1, the row scaled to unit length
/// (cosine is what the index answers, whatever the metric), and for angular its squared norm
/// in the children slot, as Annoy keeps it. `norms` are the rows' norms.
fn item_nodes(rows: &[f32], norms: &[f64], items: &mut [u32], layout: Layout) {
    let dot = dot_kernel();
    let scale_into = search_kernels::rows::kernels().scale_into;
    items
        .par_chunks_mut(layout.words)
        .zip(rows.par_chunks(layout.dim))
        .zip(norms)
        .for_each(|((node, row), &norm)| {
            node[0] = 1;
            let v: &mut [f32] = bytemuck::cast_slice_mut(&mut node[layout.v..]);
            // One division a row, and a kernel compiled for the CPU (in code built for any
            // x86-64, dividing each entry cost ~0.4 µs a row of 512).
            scale_into(row, 1.0 / norm, v);
            if layout.metric == Metric::Angular {
                node[1] = dot(v, v).to_bits();
            }
        });
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

impl<'a> TreeBuilder<'a> {
    fn new(
        data: &'a RowCodes,
        layout: Layout,
        spec: &BuildSpec,
        seed: u64,
        progress: &'a dyn Progress,
    ) -> Self {
        let n = data.len();
        TreeBuilder {
            data,
            layout,
            n,
            iterations: spec.iterations,
            split: spec.split,
            leaf: leaf_size(layout, spec.leaf, n),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            kernels: kernels(),
            progress,
            tree: Tree::default(),
            plane: PlaneCode::zero(data.stride),
            best_plane: PlaneCode::zero(data.stride),
            normal: Vec::with_capacity(layout.dim),
            sums: [Aligned::zeroed(data.stride), Aligned::zeroed(data.stride)],
            sides: Vec::new(),
            best_sides: Vec::new(),
            right: Vec::new(),
            cold: true,
        }
    }

    /// Builds the subtree holding `idx` (Annoy's `_make_tree`).
    fn build(mut self, idx: &mut [u32], is_root: bool) -> Tree {
        // About two nodes per leaf's worth of items, half of them splits.
        let splits = 2 * idx.len() / self.leaf.max(1) + 1;
        self.tree.nodes.reserve(2 * splits);
        self.tree.planes.reserve(splits * self.data.stride);
        self.tree.ids.reserve(idx.len());
        self.tree.root = self.make_tree(idx, is_root);
        // Every item lands in one leaf: one progress update per subtree.
        self.progress.advance(idx.len() as u64);
        self.tree
    }

    /// Appends a node and returns its local ref.
    fn push_node(&mut self, node: Node) -> u32 {
        self.tree.nodes.push(node);
        (self.n + self.tree.nodes.len() - 1) as u32
    }

    /// Annoy's `_make_tree`: returns the ref of the subtree holding `idx`.
    fn make_tree(&mut self, idx: &mut [u32], is_root: bool) -> u32 {
        let l = self.layout;
        if idx.len() == 1 && !is_root {
            return idx[0];
        }
        // Roots must claim every item (that is how readers find them), so a root is a bucket
        // exactly when Annoy's would be: when all items fit in one.
        let bucket = if is_root {
            idx.len() <= l.max_bucket
        } else {
            idx.len() <= self.leaf
        };
        if bucket {
            let nd = if is_root { self.n } else { idx.len() } as u32;
            let start = self.tree.ids.len() as u32;
            self.tree.ids.extend_from_slice(idx);
            return self.push_node(Node::Bucket {
                nd,
                start,
                len: idx.len() as u32,
            });
        }

        let offset = self.choose_split(idx);
        self.cold = false;
        let plane = (self.tree.planes.len() / self.data.stride) as u32;
        self.tree.planes.extend_from_slice(&self.plane.codes);
        let scale = self.plane.scale;
        // Stable partition: side 0 first, side 1 after (sides computed by choose_split), each
        // in increasing id order, so that the next level reads rows in address order.
        // Without a branch on the side (a coin toss): each index is written to both
        // places and only its side's cursor moves on. `idx[left]` was read already.
        self.right.resize(idx.len(), 0);
        let (mut left, mut right) = (0, 0);
        for j in 0..idx.len() {
            let (x, side) = (idx[j], usize::from(self.sides[j]));
            idx[left] = x;
            self.right[right] = x;
            left += 1 - side;
            right += side;
        }
        idx[left..].copy_from_slice(&self.right[..right]);
        let nd = split_count(l, self.n, idx.len(), is_root);
        let (side0, side1) = idx.split_at_mut(left);
        // Smaller side first, as Annoy does.
        let children = if side0.len() <= side1.len() {
            let c0 = self.make_tree(side0, false);
            [c0, self.make_tree(side1, false)]
        } else {
            let c1 = self.make_tree(side1, false);
            [self.make_tree(side0, false), c1]
        };
        self.push_node(Node::Split {
            nd,
            children,
            plane,
            scale,
            offset,
        })
    }

    /// Finds a split plane for `idx`, leaving it in `self.plane` and each index's side in
    /// `self.sides`; returns the plane's offset.
    fn choose_split(&mut self, idx: &[u32]) -> f32 {
        let runs = match self.split {
            Split::TwoMeans => 1,
            Split::BestOf(r) => r.max(1) as usize,
        };
        let mut best: Option<(f64, f32)> = None;
        for _ in 0..runs {
            let mut plane = None;
            for _attempt in 0..3 {
                let offset = self.two_means_plane(idx);
                let imbalance = self.assign_sides(idx, offset);
                plane = Some((imbalance, offset));
                if imbalance < 0.95 {
                    break;
                }
            }
            let plane = plane.expect("at least one attempt");
            if best.is_none_or(|b| plane.0 < b.0) {
                std::mem::swap(&mut self.sides, &mut self.best_sides);
                std::mem::swap(&mut self.plane, &mut self.best_plane);
                best = Some(plane);
            }
        }
        let (mut imbalance, mut offset) = best.expect("at least one run");
        std::mem::swap(&mut self.sides, &mut self.best_sides);
        std::mem::swap(&mut self.plane, &mut self.best_plane);
        // No usable plane (e.g. duplicate points): split at random, as Annoy does.
        while imbalance > 0.99 {
            self.plane.clear();
            offset = 0.0;
            self.sides.clear();
            let rng = &mut self.rng;
            self.sides
                .extend((0..idx.len()).map(|_| rng.random::<bool>()));
            let ones = self.sides.iter().filter(|&&s| s).count();
            imbalance = split_imbalance(idx.len() - ones, ones);
        }
        offset
    }

    /// Computes every index's side of `self.plane` (with `offset`) into `self.sides`; returns
    /// the imbalance.
    fn assign_sides(&mut self, idx: &[u32], offset: f32) -> f64 {
        self.sides.clear();
        let side_dot4 = self.kernels.side_dot4;
        // An angular plane's offset is 0: its product's sign places a row.
        let scaled = self.layout.metric != Metric::Angular;
        let mut ones = 0;
        // One plane against four rows at a time; a short last group repeats its first row.
        // While the rows are cold, those of two groups ahead are fetched meanwhile (a node's
        // rows are scattered).
        let ahead = if self.cold { 4 } else { 0 };
        for (k, g) in idx.chunks(4).enumerate() {
            for &i in idx.iter().skip(4 * k + 8).take(ahead) {
                self.data.prefetch(i);
            }
            let rows = [0, 1, 2, 3].map(|j| *g.get(j).unwrap_or(&g[0]));
            let margins = self
                .data
                .margins4(side_dot4, rows, [&self.plane; 4], scaled);
            for m in &margins[..g.len()] {
                let m = offset + m;
                let side = if m != 0.0 {
                    m > 0.0
                } else {
                    self.rng.random::<bool>()
                };
                ones += side as usize;
                self.sides.push(side);
            }
        }
        split_imbalance(idx.len() - ones, ones)
    }

    /// Two-means samples for a node of `count` items: the configured number, but at most
    /// [`SAMPLES_PER_ITEM`]` × count` (deep nodes converge with fewer).
    fn samples(&self, count: usize) -> usize {
        self.iterations.min(SAMPLES_PER_ITEM.saturating_mul(count))
    }

    /// Annoy's `two_means` + `create_split`, computed on the rows' codes: leaves the plane
    /// between the two centroids in `self.plane` (its unit normal, coded) and returns its
    /// offset (0 for angular).
    fn two_means_plane(&mut self, idx: &[u32]) -> f32 {
        let Kernels { dot2, add, .. } = self.kernels;
        let cosine = self.layout.metric == Metric::Angular;
        let count = idx.len();
        let i = self.rng.random_range(0..count);
        let mut j = self.rng.random_range(0..count - 1);
        j += (j >= i) as usize;
        let [p_sum, q_sum] = std::mem::take(&mut self.sums);
        let mut p = Centroid::new(p_sum, self.data, idx[i]);
        let mut q = Centroid::new(q_sum, self.data, idx[j]);
        let samples = self.samples(count);
        // Draw the samples AHEAD iterations early and prefetch their rows (random rows of a
        // node are scattered in memory). Same draws, same order.
        const AHEAD: usize = 4;
        let mut ring = [0u32; AHEAD];
        for (s, slot) in ring.iter_mut().enumerate().take(samples) {
            *slot = idx[self.rng.random_range(0..count)];
            if s > 0 {
                self.data.prefetch(*slot);
            }
        }
        for s in 0..samples {
            let x = ring[s % AHEAD];
            if s + AHEAD < samples {
                let next = idx[self.rng.random_range(0..count)];
                ring[s % AHEAD] = next;
                self.data.prefetch(next);
            }
            let (codes, scale) = (self.data.row(x), self.data.scale(x));
            let (px, qx) = dot2(&p.sum, &q.sum, codes);
            // Annoy's distances, weighted by the centroids' counts.
            let (di, dj) = if cosine {
                (
                    p.count * p.cosine_distance(px, scale),
                    q.count * q.cosine_distance(qx, scale),
                )
            } else {
                (
                    p.count * p.squared_distance(px, scale),
                    q.count * q.squared_distance(qx, scale),
                )
            };
            if di < dj {
                p.add(add, self.data, x, px);
            } else if dj < di {
                q.add(add, self.data, x, qx);
            }
        }
        // The unit normal of the plane between the means, and for euclidean the plane's
        // offset (through the midpoint of the means).
        let (up, uq) = (p.unit(), q.unit());
        let dim = self.layout.dim;
        self.normal.clear();
        self.normal.extend(
            p.sum[..dim]
                .iter()
                .zip(&q.sum[..dim])
                .map(|(&a, &b)| (up * f64::from(a) - uq * f64::from(b)) as f32),
        );
        search_kernels::normalise(&mut self.normal);
        let offset = if cosine {
            0.0
        } else {
            -self
                .normal
                .iter()
                .zip(p.sum.iter().zip(&q.sum))
                .map(|(&n, (&a, &b))| f64::from(n) * (up * f64::from(a) + uq * f64::from(b)) / 2.0)
                .sum::<f64>() as f32
        };
        self.plane.encode(&self.normal);
        self.sums = [p.sum, q.sum];
        offset
    }
}

/// A two-means centroid: the mean of the unit rows assigned to it, kept as the sum of their
/// codes (`i16`, halved whenever it could outgrow [`sum_code_max`]) so that each step is an
/// exact integer dot product and an integer add. With each row `x ≈ s · c`, the mean is
/// `Σ x / count ≈ (Σ s / count) · (Σ c / count)`: rows' scales differ by a few percent, which
/// weights the rows of a centroid unevenly by as much, and no more.
struct Centroid {
    /// `Σ c / 2^shift`.
    sum: Aligned<i16>,
    /// `‖sum‖²`.
    sq: f64,
    /// `1 / ‖sum‖` (0 for a zero sum).
    inv_norm: f64,
    /// At least the largest `|sumᵢ|`; `sum` is halved when the next row could take an entry
    /// over `limit` (the [`sum_code_max`], which keeps the dot products exact).
    bound: i32,
    limit: i32,
    /// Rows in the mean (Annoy's `ic`, `jc`).
    count: f32,
    /// `Σ s` over the rows in the mean.
    weight: f64,
    /// Times `sum` was halved.
    shift: u32,
}

impl Centroid {
    /// The centroid of row `i` alone, its sum kept in `sum` (whatever it held).
    fn new(mut sum: Aligned<i16>, data: &RowCodes, i: u32) -> Centroid {
        for (s, &c) in sum.iter_mut().zip(data.row(i)) {
            *s = i16::from(c);
        }
        // The row's `‖codes‖²` is kept with its codes, and no code exceeds 127.
        let mut c = Centroid {
            sum,
            sq: data.square(i) as f64,
            inv_norm: 0.0,
            bound: 127,
            limit: i32::from(sum_code_max(data.stride)),
            count: 1.0,
            weight: f64::from(data.scale(i)),
            shift: 0,
        };
        c.set_inv_norm();
        c.make_room();
        c
    }

    /// Recomputes `sq` and `bound` from `sum`.
    fn measure(&mut self) {
        let (mut sq, mut top) = (0i64, 0i32);
        for &v in &self.sum {
            sq += i64::from(v) * i64::from(v);
            top = top.max(i32::from(v).abs());
        }
        (self.sq, self.bound) = (sq as f64, top);
        self.set_inv_norm();
    }

    fn set_inv_norm(&mut self) {
        self.inv_norm = if self.sq > 0.0 {
            1.0 / self.sq.sqrt()
        } else {
            0.0
        };
    }

    /// `mean = unit · sum`.
    fn unit(&self) -> f64 {
        let count = f64::from(self.count);
        self.weight * f64::from(1u32 << self.shift) / (count * count)
    }

    /// Annoy's angular distance `2 − 2 cos` to the row `x = scale · codes` (a unit row, so
    /// `‖codes‖ ≈ 1 / scale`), given `dot = sum · codes`.
    fn cosine_distance(&self, dot: i32, scale: f32) -> f32 {
        (2.0 - 2.0 * f64::from(dot) * f64::from(scale) * self.inv_norm) as f32
    }

    /// `‖mean − x‖²` to the unit row `x = scale · codes`, given `dot = sum · codes`.
    fn squared_distance(&self, dot: i32, scale: f32) -> f32 {
        let u = self.unit();
        (u * u * self.sq - 2.0 * u * f64::from(scale) * f64::from(dot) + 1.0) as f32
    }

    /// Adds row `x` of `data` to the mean, given `dot = sum · codes`.
    fn add(&mut self, add: AddFn, data: &RowCodes, x: u32, dot: i32) {
        let (codes, scale) = (data.row(x), data.scale(x));
        self.count += 1.0;
        self.weight += f64::from(scale);
        if self.bound + (127 >> self.shift) > self.limit {
            // `bound` grows by the largest code at each row: find the true largest entry
            // before halving the sum (rows much alike, e.g. duplicates, make it large).
            self.measure();
            self.make_room();
        }
        if self.shift == 0 {
            add(&mut self.sum, codes);
            // ‖sum + c‖² = ‖sum‖² + 2 sum · c + ‖c‖², exactly.
            self.sq += 2.0 * f64::from(dot) + data.square(x) as f64;
            self.set_inv_norm();
            self.bound += 127;
        } else {
            let m = 1i16 << self.shift;
            for (v, &c) in self.sum.iter_mut().zip(codes) {
                *v += i16::from(c) / m;
            }
            self.measure();
        }
    }

    /// Halves `sum` until one more row (adding at most `127 >> shift` to an entry) keeps every
    /// entry within `limit`; it stops at shift 7, where a row's codes divided by 128 add
    /// nothing. Every entry stays within `limit` throughout.
    fn make_room(&mut self) {
        while self.bound + (127 >> self.shift) > self.limit && self.shift < 7 {
            self.sum.iter_mut().for_each(|v| *v /= 2);
            self.shift += 1;
            self.measure();
        }
    }

    /// The mean, `dim` wide.
    #[cfg(test)]
    fn mean(&self, dim: usize) -> Vec<f64> {
        let u = self.unit();
        self.sum[..dim].iter().map(|&v| u * f64::from(v)).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows coded like the gallery's: `n` unit rows of `dim`, row `r` with entries `f(r, i)`.
    fn codes(n: usize, dim: usize, f: impl Fn(usize, usize) -> f32) -> RowCodes {
        let rows: Vec<f32> = (0..n * dim).map(|k| f(k / dim, k % dim)).collect();
        RowCodes::new(&rows, dim).0
    }

    #[test]
    fn a_centroid_of_one_row_many_times_stays_exact_and_points_at_it() {
        // Duplicates make the code sum grow by 127 a row: it must halve, not overflow.
        let dim = 512;
        let data = codes(1, dim, |_, i| ((i * 7919 % 211) as f32 - 105.0) / 50.0);
        let limit = i32::from(sum_code_max(data.stride));
        let mut c = Centroid::new(Aligned::zeroed(data.stride), &data, 0);
        let add = kernels().add;
        for _ in 0..2000 {
            let dot = (kernels().dot2)(&c.sum, &c.sum, data.row(0)).0;
            c.add(add, &data, 0, dot);
            assert!(c.sum.iter().all(|&v| i32::from(v).abs() <= limit));
        }
        assert!(c.shift > 0, "the sum was halved");
        assert_eq!(c.count, 2001.0);
        // The mean is the row itself (a unit row), and its cosine distance to it is 0.
        let mean = c.mean(dim);
        let x: Vec<f64> = data.row(0)[..dim]
            .iter()
            .map(|&v| f64::from(data.scale(0)) * f64::from(v))
            .collect();
        for (m, x) in mean.iter().zip(&x) {
            assert!((m - x).abs() < 0.01, "{m} vs {x}");
        }
        let dot = (kernels().dot2)(&c.sum, &c.sum, data.row(0)).0;
        assert!(c.cosine_distance(dot, data.scale(0)).abs() < 1e-3);
        assert!(c.squared_distance(dot, data.scale(0)).abs() < 1e-2);
    }

    #[test]
    fn a_centroid_tracks_its_norm_and_mean_incrementally() {
        let dim = 100;
        let data = codes(50, dim, |r, i| {
            (((r * 131 + i * 17) % 97) as f32 - 48.0) / 7.0
        });
        let mut c = Centroid::new(Aligned::zeroed(data.stride), &data, 0);
        let dot2 = kernels().dot2;
        for r in 1..50 {
            let dot = dot2(&c.sum, &c.sum, data.row(r)).0;
            c.add(kernels().add, &data, r, dot);
        }
        let exact: i64 = c.sum.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
        assert_eq!(c.sq, exact as f64);
        // The mean of the 50 unit rows, within the codes' error.
        let mean = c.mean(dim);
        for (i, &m) in mean.iter().enumerate() {
            let want: f64 = (0..50u32)
                .map(|r| f64::from(data.scale(r)) * f64::from(data.row(r)[i]))
                .sum::<f64>()
                / 50.0;
            assert!((m - want).abs() < 0.01, "{i}: {m} vs {want}");
        }
    }
}
