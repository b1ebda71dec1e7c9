//! The depth-first builder: one subtree at a time, split recursively (Annoy's `_make_tree`)
//! until each node holds at most a leaf's worth of items, with Annoy's retries and random
//! fallback. It chooses between planes but does not compute them (two-means is in
//! `two_means`), and it does not know the file layout: it produces a [`Tree`].

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use search_core::Progress;
use search_kernels::Aligned;
use search_kernels::planes::kernels;

use super::{BuildSpec, Node, Split, Tree, TreeBuilder, leaf_size, split_count, split_imbalance};
use crate::codes::{PlaneCode, RowCodes};
use crate::layout::{Layout, Metric};

impl<'a> TreeBuilder<'a> {
    pub(super) fn new(
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
    pub(super) fn build(mut self, idx: &mut [u32], is_root: bool) -> Tree {
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
    pub(super) fn choose_split(&mut self, idx: &[u32]) -> f32 {
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
}
