//! Annoy's build algorithm: every tree splits its items recursively by a hyperplane found with
//! two-means on sampled points, until a node holds at most `K` items (a bucket).
//!
//! Each tree is built on its own (in parallel with rayon) into a local node list in which
//! children come before parents, then the lists are concatenated after the item nodes and the
//! roots are copied to the end: exactly the node order Annoy writes.

use embed_store::Progress;
use embed_store::kernels::{DotFn, dot_kernel};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::kernels::{AxpbyFn, Kernels, kernels};
use crate::layout::{Layout, Metric};

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

/// Builds the trees over the item nodes in `words` (one per row: count 1, the row normalised
/// for cosine, as [`item_nodes`] writes them) and appends the tree nodes and root copies:
/// the whole file, as words. Fails only when the node count would exceed Annoy's `i32` ids.
pub(crate) fn build_forest(
    mut words: Vec<u32>,
    layout: Layout,
    spec: &BuildSpec,
    progress: &dyn Progress,
) -> std::result::Result<Vec<u32>, String> {
    let n = words.len() / layout.words;
    progress.set_total((n * spec.n_trees) as u64);

    let trees = build_trees(bytemuck::cast_slice(&words), layout, spec, progress);

    let internal: usize = trees.iter().map(|t| t.nodes.len() / layout.words).sum();
    let n_nodes = n + internal + trees.len();
    if n_nodes > i32::MAX as usize {
        return Err(format!(
            "{n_nodes} nodes exceed Annoy's i32 ids; use fewer trees or items"
        ));
    }
    words.reserve_exact((n_nodes - n) * layout.words);
    let mut roots = Vec::with_capacity(trees.len());
    for tree in &trees {
        let base = words.len() / layout.words;
        let remap = |r: u32| {
            if (r as usize) < n {
                r
            } else {
                (r as usize - n + base) as u32
            }
        };
        for node in tree.nodes.chunks_exact(layout.words) {
            let start = words.len();
            words.extend_from_slice(node);
            if node[0] as usize > layout.max_bucket {
                for c in &mut words[start + layout.children..start + layout.children + 2] {
                    *c = remap(*c);
                }
            }
        }
        roots.push(remap(tree.root) as usize);
    }
    for r in roots {
        words.extend_from_within(r * layout.words..(r + 1) * layout.words);
    }
    debug_assert_eq!(words.len(), n_nodes * layout.words);
    Ok(words)
}

/// Nodes with more items than this are split level by level across all trees at once: one
/// pass over the rows computes every tree's side for every row, so the large top levels read
/// the gallery once per level instead of once per tree and level. Smaller subtrees are then
/// built depth first, each on its own, while their rows sit in cache.
/// 1024 rows of 512-d are 2 MB, the L2 cache of one core here (measured: 4096 left the
/// depth-first subtrees reading memory at every level; 256 made the level pass dearer).
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

/// A split made by the level pass: plane normal and offset, then the two sides' items.
type Parted = (Vec<f32>, f32, Vec<u32>, Vec<u32>);

struct SyncSplit {
    normal: Vec<f32>,
    offset: f32,
    nd: u32,
    children: [Child; 2],
}

fn build_trees(
    data: &[f32],
    layout: Layout,
    spec: &BuildSpec,
    progress: &dyn Progress,
) -> Vec<Tree> {
    let n = data.len() / layout.words;
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
        let planes: Vec<(Vec<f32>, f32)> = big
            .par_iter()
            .map(|task| {
                let mut b = TreeBuilder::new(data, layout, spec, task.serial, progress);
                b.two_means_plane(&task.members)
            })
            .collect();
        // One pass over the rows: every tree's side for every row (row-major: T per row).
        slot_of.clear();
        slot_of.resize(n * t_count, u32::MAX);
        for (k, task) in big.iter().enumerate() {
            for &m in &task.members {
                slot_of[m as usize * t_count + task.tree] = k as u32;
            }
        }
        side_of.clear();
        side_of.resize(n * t_count, 0u8);
        const ROWS: usize = 256;
        let dot = dot_kernel();
        let dot4 = kernels().dot4;
        let side = |m: f32| {
            if m > 0.0 {
                1
            } else if m < 0.0 {
                0
            } else {
                2
            }
        };
        side_of
            .par_chunks_mut(ROWS * t_count)
            .zip(slot_of.par_chunks(ROWS * t_count))
            .enumerate()
            .for_each(|(c, (sides, slots))| {
                // (tree, plane) pairs of the current row, four planes per pass over the row.
                let mut active: Vec<(usize, usize)> = Vec::with_capacity(t_count);
                for (r, (sides, slots)) in sides
                    .chunks_mut(t_count)
                    .zip(slots.chunks(t_count))
                    .enumerate()
                {
                    let i = c * ROWS + r;
                    let x = &data[i * layout.words + layout.v..(i + 1) * layout.words];
                    active.clear();
                    active.extend(
                        slots
                            .iter()
                            .enumerate()
                            .filter(|&(_, &k)| k != u32::MAX)
                            .map(|(t, &k)| (t, k as usize)),
                    );
                    let mut groups = active.chunks_exact(4);
                    for g in &mut groups {
                        let ys = [0, 1, 2, 3].map(|j| planes[g[j].1].0.as_slice());
                        let ms = dot4(x, ys);
                        for (&(t, k), m) in g.iter().zip(ms) {
                            sides[t] = side(planes[k].1 + m);
                        }
                    }
                    for &(t, k) in groups.remainder() {
                        let (normal, offset) = &planes[k];
                        sides[t] = side(offset + dot(normal, x));
                    }
                }
            });
        // Partition each task; a poor split is redone on the task's own rows.
        let parts: Vec<Parted> = big
            .par_iter()
            .zip(planes)
            .map(|(task, (normal, offset))| {
                let mut b = TreeBuilder::new(data, layout, spec, mix(task.serial, 7), progress);
                b.sides.clear();
                for &m in &task.members {
                    let s = side_of[m as usize * t_count + task.tree];
                    let s = if s == 2 {
                        b.rng.random::<bool>()
                    } else {
                        s == 1
                    };
                    b.sides.push(s);
                }
                let ones = b.sides.iter().filter(|&&s| s).count();
                let (normal, offset) = if split_imbalance(task.members.len() - ones, ones) < 0.95 {
                    (normal, offset)
                } else {
                    b.choose_split(&task.members)
                };
                let (mut left, mut right) = (Vec::new(), Vec::new());
                for (&m, &s) in task.members.iter().zip(&b.sides) {
                    if s { right.push(m) } else { left.push(m) }
                }
                (normal, offset, left, right)
            })
            .collect();
        for (task, (normal, offset, left, right)) in big.into_iter().zip(parts) {
            let nd = if task.is_root {
                n
            } else {
                task.members.len().max(layout.max_bucket + 1)
            };
            let a = splits[task.tree].len();
            splits[task.tree].push(SyncSplit {
                normal,
                offset,
                nd: nd as u32,
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
            let mut b = TreeBuilder::new(data, layout, spec, task.serial, progress);
            let root = b.make_tree(&mut task.members, task.is_root);
            Tree {
                nodes: b.nodes,
                root,
            }
        })
        .collect();

    // Each tree in Annoy's order: children before parents.
    (0..t_count)
        .into_par_iter()
        .map(|t| {
            let mut out = Vec::new();
            let root = emit(roots[t], &splits[t], &built, layout, n, &mut out);
            Tree { nodes: out, root }
        })
        .collect()
}

/// Appends the subtree at `child` to `out` (children first) and returns its ref.
fn emit(
    child: Child,
    splits: &[SyncSplit],
    built: &[Tree],
    layout: Layout,
    n: usize,
    out: &mut Vec<u32>,
) -> u32 {
    match child {
        Child::Pending => unreachable!("every slot is filled"),
        Child::Sub(s) => {
            let tree = &built[s];
            let base = out.len() / layout.words;
            let remap = |r: u32| if (r as usize) < n { r } else { r + base as u32 };
            for node in tree.nodes.chunks_exact(layout.words) {
                let start = out.len();
                out.extend_from_slice(node);
                if node[0] as usize > layout.max_bucket {
                    for c in &mut out[start + layout.children..start + layout.children + 2] {
                        *c = remap(*c);
                    }
                }
            }
            remap(tree.root)
        }
        Child::Split(a) => {
            let split = &splits[a];
            let c0 = emit(split.children[0], splits, built, layout, n, out);
            let c1 = emit(split.children[1], splits, built, layout, n, out);
            let start = out.len();
            out.resize(start + layout.words, 0);
            let node = &mut out[start..];
            node[0] = split.nd;
            node[layout.children] = c0;
            node[layout.children + 1] = c1;
            if layout.metric == Metric::Euclidean {
                node[1] = split.offset.to_bits();
            }
            node[layout.v..].copy_from_slice(bytemuck::cast_slice(&split.normal));
            (n + start / layout.words) as u32
        }
    }
}

/// Item nodes for `rows` (checked already): count 1, the row scaled to unit length (cosine is
/// what the index answers, whatever the metric), and for angular its squared norm in the
/// children slot, as Annoy keeps it.
pub(crate) fn item_nodes(rows: &[f32], layout: Layout) -> Vec<u32> {
    let n = rows.len() / layout.dim;
    let mut words = vec![0u32; n * layout.words];
    let dot = dot_kernel();
    words
        .par_chunks_mut(layout.words)
        .zip(rows.par_chunks(layout.dim))
        .for_each(|(node, row)| {
            let norm = row
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            node[0] = 1;
            let v: &mut [f32] = bytemuck::cast_slice_mut(&mut node[layout.v..]);
            for (v, &x) in v.iter_mut().zip(row) {
                *v = (f64::from(x) / norm) as f32;
            }
            if layout.metric == Metric::Angular {
                node[1] = dot(v, v).to_bits();
            }
        });
    words
}

struct Tree {
    /// Local nodes, children before parents. Child refs below `n` are items; `n + j` is local
    /// node `j`.
    nodes: Vec<u32>,
    root: u32,
}

struct TreeBuilder<'a> {
    data: &'a [f32],
    layout: Layout,
    n: usize,
    iterations: usize,
    split: Split,
    leaf: usize,
    rng: Xoshiro256PlusPlus,
    dot: DotFn,
    progress: &'a dyn Progress,
    nodes: Vec<u32>,
    /// Scratch: one side per index of the node being split.
    sides: Vec<bool>,
    best_sides: Vec<bool>,
    right: Vec<u32>,
}

impl<'a> TreeBuilder<'a> {
    fn new(
        data: &'a [f32],
        layout: Layout,
        spec: &BuildSpec,
        seed: u64,
        progress: &'a dyn Progress,
    ) -> Self {
        TreeBuilder {
            data,
            layout,
            n: data.len() / layout.words,
            iterations: spec.iterations,
            split: spec.split,
            // With n = K + 1 items, a split below the root would claim K + 1 = n descendants
            // like a root, and Annoy's root scan would count it as one: keep Annoy's leaves.
            leaf: if data.len() / layout.words > layout.max_bucket + 1 {
                spec.leaf.clamp(1, layout.max_bucket)
            } else {
                layout.max_bucket
            },
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            dot: dot_kernel(),
            progress,
            nodes: Vec::new(),
            sides: Vec::new(),
            best_sides: Vec::new(),
            right: Vec::new(),
        }
    }

    fn row(&self, i: u32) -> &'a [f32] {
        let w = self.layout.words;
        &self.data[i as usize * w + self.layout.v..(i as usize + 1) * w]
    }

    /// Appends a node and returns its local ref.
    fn push_node(&mut self, fill: impl FnOnce(&mut [u32])) -> u32 {
        let j = self.nodes.len() / self.layout.words;
        let start = self.nodes.len();
        self.nodes.resize(start + self.layout.words, 0);
        fill(&mut self.nodes[start..]);
        (self.n + j) as u32
    }

    /// Annoy's `_make_tree`: returns the ref of the subtree holding `idx`.
    fn make_tree(&mut self, idx: &mut [u32], is_root: bool) -> u32 {
        let l = self.layout;
        if idx.len() == 1 && !is_root {
            self.progress.advance(1);
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
            self.progress.advance(idx.len() as u64);
            let nd = if is_root { self.n } else { idx.len() } as u32;
            return self.push_node(|node| {
                node[0] = nd;
                node[l.children..l.children + idx.len()].copy_from_slice(idx);
            });
        }

        let (normal, offset) = self.choose_split(idx);
        // Stable partition: side 0 first, side 1 after (sides computed by choose_split), each
        // in increasing id order, so that the next level reads rows in address order.
        self.right.clear();
        let mut left = 0;
        for j in 0..idx.len() {
            if self.sides[j] {
                self.right.push(idx[j]);
            } else {
                idx[left] = idx[j];
                left += 1;
            }
        }
        idx[left..].copy_from_slice(&self.right);
        // A split node with at most K items would read as a bucket: it claims K + 1 (readers use
        // a split node's count only to tell it from a bucket).
        let nd = if is_root {
            self.n
        } else {
            idx.len().max(l.max_bucket + 1)
        } as u32;
        let (side0, side1) = idx.split_at_mut(left);
        // Smaller side first, as Annoy does.
        let (c0, c1) = if side0.len() <= side1.len() {
            let c0 = self.make_tree(side0, false);
            (c0, self.make_tree(side1, false))
        } else {
            let c1 = self.make_tree(side1, false);
            (self.make_tree(side0, false), c1)
        };
        self.push_node(|node| {
            node[0] = nd;
            node[l.children] = c0;
            node[l.children + 1] = c1;
            if l.metric == Metric::Euclidean {
                node[1] = offset.to_bits();
            }
            node[l.v..].copy_from_slice(bytemuck::cast_slice(&normal));
        })
    }

    /// Finds a split plane for `idx`, leaving each index's side in `self.sides`.
    fn choose_split(&mut self, idx: &[u32]) -> (Vec<f32>, f32) {
        let runs = match self.split {
            Split::TwoMeans => 1,
            Split::BestOf(r) => r.max(1) as usize,
        };
        let mut best: Option<(f64, Vec<f32>, f32)> = None;
        for _ in 0..runs {
            let mut plane = None;
            for _attempt in 0..3 {
                let (normal, offset) = self.two_means_plane(idx);
                let imbalance = self.assign_sides(idx, &normal, offset);
                plane = Some((imbalance, normal, offset));
                if imbalance < 0.95 {
                    break;
                }
            }
            let plane = plane.expect("at least one attempt");
            if best.as_ref().is_none_or(|b| plane.0 < b.0) {
                std::mem::swap(&mut self.sides, &mut self.best_sides);
                best = Some(plane);
            }
        }
        let (mut imbalance, mut normal, mut offset) = best.expect("at least one run");
        std::mem::swap(&mut self.sides, &mut self.best_sides);
        // No usable plane (e.g. duplicate points): split at random, as Annoy does.
        while imbalance > 0.99 {
            normal.iter_mut().for_each(|x| *x = 0.0);
            offset = 0.0;
            self.sides.clear();
            let rng = &mut self.rng;
            self.sides
                .extend((0..idx.len()).map(|_| rng.random::<bool>()));
            let ones = self.sides.iter().filter(|&&s| s).count();
            imbalance = split_imbalance(idx.len() - ones, ones);
        }
        (normal, offset)
    }

    /// Computes every index's side of the plane into `self.sides`; returns the imbalance.
    fn assign_sides(&mut self, idx: &[u32], normal: &[f32], offset: f32) -> f64 {
        self.sides.clear();
        let mut ones = 0;
        let dot4 = kernels().dot4;
        // One plane against four rows at a time (the plane is read once per four rows).
        let mut chunks = idx.chunks_exact(4);
        for c in &mut chunks {
            let ys = [
                self.row(c[0]),
                self.row(c[1]),
                self.row(c[2]),
                self.row(c[3]),
            ];
            ones += self.push_sides(&dot4(normal, ys), offset);
        }
        for &i in chunks.remainder() {
            let m = (self.dot)(normal, self.row(i));
            ones += self.push_sides(&[m], offset);
        }
        split_imbalance(idx.len() - ones, ones)
    }

    /// Appends the sides for these margins (before `offset`); returns how many are on side 1.
    fn push_sides(&mut self, margins: &[f32], offset: f32) -> usize {
        let mut ones = 0;
        for &m in margins {
            let m = offset + m;
            let side = if m != 0.0 {
                m > 0.0
            } else {
                self.rng.random::<bool>()
            };
            ones += side as usize;
            self.sides.push(side);
        }
        ones
    }

    /// Two-means samples for a node of `count` items: the configured number, but at most
    /// [`SAMPLES_PER_ITEM`]` × count` (deep nodes converge with fewer).
    fn samples(&self, count: usize) -> usize {
        self.iterations.min(SAMPLES_PER_ITEM.saturating_mul(count))
    }

    /// Annoy's `two_means` + `create_split`: the unit normal of the plane between two centroids
    /// (and, for euclidean, the plane's offset).
    fn two_means_plane(&mut self, idx: &[u32]) -> (Vec<f32>, f32) {
        let dot = self.dot;
        let cosine = self.layout.metric == Metric::Angular;
        let count = idx.len();
        let i = self.rng.random_range(0..count);
        let mut j = self.rng.random_range(0..count - 1);
        j += (j >= i) as usize;
        let mut p = self.row(idx[i]).to_vec();
        let mut q = self.row(idx[j]).to_vec();
        if cosine {
            normalize(&mut p, dot);
            normalize(&mut q, dot);
        }
        let mut pp = dot(&p, &p);
        let mut qq = dot(&q, &q);
        let (mut ic, mut jc) = (1f32, 1f32);
        let Kernels { dot2, axpby, .. } = kernels();
        let l2 = embed_store::kernels::kernel_set().l2_squared;
        let samples = self.samples(count);
        // Draw the samples AHEAD iterations early and prefetch their rows (random rows of a
        // large node come from memory). Same draws, same order.
        const AHEAD: usize = 4;
        let mut ring = [0u32; AHEAD];
        for (s, slot) in ring.iter_mut().enumerate().take(samples) {
            *slot = idx[self.rng.random_range(0..count)];
            if s > 0 {
                prefetch(self.row(*slot));
            }
        }
        for s in 0..samples {
            let x = self.row(ring[s % AHEAD]);
            if s + AHEAD < samples {
                let next = idx[self.rng.random_range(0..count)];
                ring[s % AHEAD] = next;
                prefetch(self.row(next));
            }
            if cosine {
                // Annoy's update, with the squared norms of the means kept up to date from the
                // dot products already at hand instead of recomputed.
                // Rows arrive normalised (see `build_forest`): |x| = 1.
                let (xx, norm) = (1.0f32, 1.0f32);
                let (px, qx) = dot2(&p, &q, x);
                let dist = |cx: f32, cc: f32| {
                    let d = cc * xx;
                    if d > 0.0 {
                        2.0 - 2.0 * cx / d.sqrt()
                    } else {
                        2.0
                    }
                };
                let (di, dj) = (ic * dist(px, pp), jc * dist(qx, qq));
                if di < dj {
                    pp = update_mean(axpby, &mut p, x, norm, ic, pp, px / norm, 1.0);
                    ic += 1.0;
                } else if dj < di {
                    qq = update_mean(axpby, &mut q, x, norm, jc, qq, qx / norm, 1.0);
                    jc += 1.0;
                }
            } else {
                let (di, dj) = (ic * l2(&p, x), jc * l2(&q, x));
                if di < dj {
                    update_mean(axpby, &mut p, x, 1.0, ic, 0.0, 0.0, 0.0);
                    ic += 1.0;
                } else if dj < di {
                    update_mean(axpby, &mut q, x, 1.0, jc, 0.0, 0.0, 0.0);
                    jc += 1.0;
                }
            }
        }
        let mut normal: Vec<f32> = p.iter().zip(&q).map(|(a, b)| a - b).collect();
        normalize(&mut normal, dot);
        let offset = if cosine {
            0.0
        } else {
            -normal
                .iter()
                .zip(p.iter().zip(&q))
                .map(|(n, (a, b))| n * (a + b) / 2.0)
                .sum::<f32>()
        };
        (normal, offset)
    }
}

/// Hints the CPU to fetch `row` into cache (never faults).
#[inline]
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in row.chunks(16) {
            // SAFETY: prefetching is a hint that never faults; the address is in `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
        }
    }
}

fn split_imbalance(left: usize, right: usize) -> f64 {
    let (ls, rs) = (left as f64, right as f64);
    let f = ls / (ls + rs + 1e-9);
    f.max(1.0 - f)
}

fn normalize(v: &mut [f32], dot: DotFn) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Annoy's running mean: `mean = (mean·c + x/norm) / (c + 1)`. Returns the new squared norm
/// of the mean from the old one, `mean·x/norm` and `‖x/norm‖²` (exact up to rounding).
#[allow(clippy::too_many_arguments)]
fn update_mean(
    axpby: AxpbyFn,
    mean: &mut [f32],
    x: &[f32],
    norm: f32,
    c: f32,
    mm: f32,
    mx: f32,
    xx: f32,
) -> f32 {
    let (a, b) = (c / (c + 1.0), 1.0 / (norm * (c + 1.0)));
    axpby(mean, x, a, b);
    let a2 = c / (c + 1.0);
    let b2 = 1.0 / (c + 1.0);
    a2 * a2 * mm + 2.0 * a2 * b2 * mx + b2 * b2 * xx
}
