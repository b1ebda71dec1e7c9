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
}

/// Builds the whole file (item nodes, trees, root copies) as words.
///
/// `data` holds `n` rows of `layout.dim` components, already checked (and, for cosine,
/// normalised). Fails only when the node count would exceed Annoy's `i32` ids.
pub(crate) fn build_forest(
    data: &[f32],
    layout: Layout,
    spec: &BuildSpec,
    progress: &dyn Progress,
) -> std::result::Result<Vec<u32>, String> {
    let dim = layout.dim;
    let n = data.len() / dim;
    progress.set_total((n * spec.n_trees) as u64);

    let trees: Vec<Tree> = (0..spec.n_trees)
        .into_par_iter()
        .map(|t| {
            let seed = spec
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(t as u64);
            let mut b = TreeBuilder::new(data, layout, spec, seed, progress);
            let mut idx: Vec<u32> = (0..n as u32).collect();
            let root = b.make_tree(&mut idx, true);
            Tree {
                nodes: b.nodes,
                root,
            }
        })
        .collect();

    let internal: usize = trees.iter().map(|t| t.nodes.len() / layout.words).sum();
    let n_nodes = n + internal + trees.len();
    if n_nodes > i32::MAX as usize {
        return Err(format!(
            "{n_nodes} nodes exceed Annoy's i32 ids; use fewer trees or items"
        ));
    }
    let mut words = Vec::with_capacity(n_nodes * layout.words);
    for row in data.chunks_exact(dim) {
        let start = words.len();
        words.resize(start + layout.words, 0);
        let node = &mut words[start..];
        node[0] = 1;
        if layout.metric == Metric::Angular {
            // Annoy keeps the squared norm in the children slot of item nodes.
            node[1] = dot_kernel()(row, row).to_bits();
        }
        node[layout.v..].copy_from_slice(bytemuck::cast_slice(row));
    }
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
    rng: Xoshiro256PlusPlus,
    dot: DotFn,
    progress: &'a dyn Progress,
    nodes: Vec<u32>,
    /// Scratch: one side per index of the node being split.
    sides: Vec<bool>,
    best_sides: Vec<bool>,
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
            n: data.len() / layout.dim,
            iterations: spec.iterations,
            split: spec.split,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            dot: dot_kernel(),
            progress,
            nodes: Vec::new(),
            sides: Vec::new(),
            best_sides: Vec::new(),
        }
    }

    fn row(&self, i: u32) -> &'a [f32] {
        let d = self.layout.dim;
        &self.data[i as usize * d..(i as usize + 1) * d]
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
        if idx.len() <= l.max_bucket && (!is_root || self.n <= l.max_bucket || idx.len() == 1) {
            self.progress.advance(idx.len() as u64);
            let nd = if is_root { self.n } else { idx.len() } as u32;
            return self.push_node(|node| {
                node[0] = nd;
                node[l.children..l.children + idx.len()].copy_from_slice(idx);
            });
        }

        let (normal, offset) = self.choose_split(idx);
        // Partition: side 0 first, side 1 after (sides computed by choose_split).
        let mut left = 0;
        let mut right = idx.len();
        while left < right {
            if !self.sides[left] {
                left += 1;
            } else {
                right -= 1;
                idx.swap(left, right);
                self.sides.swap(left, right);
            }
        }
        let nd = if is_root { self.n } else { idx.len() } as u32;
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
        for &i in idx {
            let m = offset + (self.dot)(normal, self.row(i));
            let side = if m != 0.0 {
                m > 0.0
            } else {
                self.rng.random::<bool>()
            };
            ones += side as usize;
            self.sides.push(side);
        }
        split_imbalance(idx.len() - ones, ones)
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
        for _ in 0..self.iterations {
            let pick = idx[self.rng.random_range(0..count)];
            let x = self.row(pick);
            let (di, dj, norm) = if cosine {
                let xx = dot(x, x);
                let dist = |c: &[f32], cc: f32| {
                    let d = cc * xx;
                    if d > 0.0 {
                        2.0 - 2.0 * dot(c, x) / d.sqrt()
                    } else {
                        2.0
                    }
                };
                (ic * dist(&p, pp), jc * dist(&q, qq), xx.sqrt())
            } else {
                (ic * sq_dist(&p, x), jc * sq_dist(&q, x), 1.0)
            };
            if norm.is_nan() || norm <= 0.0 {
                continue;
            }
            if di < dj {
                update_mean(&mut p, x, norm, ic);
                pp = dot(&p, &p);
                ic += 1.0;
            } else if dj < di {
                update_mean(&mut q, x, norm, jc);
                qq = dot(&q, &q);
                jc += 1.0;
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

fn update_mean(mean: &mut [f32], x: &[f32], norm: f32, c: f32) {
    for (m, &v) in mean.iter_mut().zip(x) {
        *m = (*m * c + v / norm) / (c + 1.0);
    }
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
