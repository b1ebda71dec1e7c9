//! Annoy's on-disk node layout, and the checks that make a file safe to serve.
//!
//! An Annoy file has no header: it is `n_nodes` nodes of equal size, native byte order, with
//! `i32` ids and `f32` values (see `FORMATS.md`). We view it as `u32` words: every node is
//! `words` words long, so node `i` starts at word `i * words`.

use std::path::Path;

use search_core::{Error, Result};

/// Annoy's distance metric. It decides the node layout and the split planes; Annoy files do not
/// record it, so the caller must know it (like `AnnoyIndex(f, "angular")` in Python).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Cosine: split planes through the origin; distance `sqrt(2 − 2·cos)`.
    #[default]
    Angular,
    /// Euclidean: split planes with an offset; distance `‖x − y‖`.
    Euclidean,
}

impl Metric {
    /// Annoy's name for the metric (`"angular"`, `"euclidean"`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Angular => "angular",
            Metric::Euclidean => "euclidean",
        }
    }
}

/// Where the fields of a node live, in 4-byte words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub metric: Metric,
    pub dim: usize,
    /// Words per node.
    pub words: usize,
    /// Word offset of `children[0]` (and of a bucket's id list).
    pub children: usize,
    /// Word offset of the vector `v`.
    pub v: usize,
    /// Annoy's `K`: the most ids a bucket node holds (`f + 2`).
    pub max_bucket: usize,
}

impl Layout {
    pub fn new(metric: Metric, dim: usize) -> Self {
        // angular: n_descendants, children[2], v   — euclidean: n_descendants, a, children[2], v
        let (children, v) = match metric {
            Metric::Angular => (1, 3),
            Metric::Euclidean => (2, 4),
        };
        let words = v + dim;
        Layout {
            metric,
            dim,
            words,
            children,
            v,
            max_bucket: words - children,
        }
    }

    /// Bytes per node (Annoy's `_s`).
    pub fn node_bytes(&self) -> usize {
        4 * self.words
    }
}

/// What validation found: the tree roots and the number of items.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    pub n_nodes: usize,
    pub n_items: usize,
    pub roots: Vec<u32>,
}

/// Checks a file (as words) against `layout`: sizes, the roots found the way Annoy finds them,
/// and the roots' own counts, children and ids. Every other tree node is checked by
/// [`check_node`] when a walk reads it (a damaged node fails that query with a format error),
/// so opening costs the same whatever the file's size; [`verify_nodes`] checks them all.
pub(crate) fn validate(words: &[u32], layout: &Layout, path: &Path) -> Result<Shape> {
    let bad = |msg: String| Error::format(path, msg);
    let s = layout.node_bytes();
    let bytes = words.len() * 4;
    if words.is_empty() {
        return Err(bad(
            "empty file: an Annoy index holds at least one node".into()
        ));
    }
    if !words.len().is_multiple_of(layout.words) {
        return Err(bad(format!(
            "{bytes} bytes is not a whole number of {s}-byte nodes: not an Annoy {} index of \
             dimension {}",
            layout.metric.name(),
            layout.dim
        )));
    }
    let n_nodes = words.len() / layout.words;
    if n_nodes > i32::MAX as usize {
        return Err(bad(format!("{n_nodes} nodes exceed Annoy's i32 ids")));
    }
    let n_desc = |i: usize| words[i * layout.words] as i32;

    // Annoy's root scan: walk back from the last node while n_descendants equals the last one's.
    let m = n_desc(n_nodes - 1);
    if m < 1 || m as usize > n_nodes {
        return Err(bad(format!(
            "the last node (a root) claims {m} items, but the file has {n_nodes} nodes"
        )));
    }
    let n_items = m as usize;
    let mut roots = Vec::new();
    for i in (0..n_nodes).rev() {
        if n_desc(i) != m {
            break;
        }
        roots.push(i as u32);
    }
    // Annoy's "hacky fix": the last tree's own root precedes the copies of all roots.
    if roots.len() > 1 {
        let c0 = |i: u32| words[i as usize * layout.words + layout.children];
        if c0(roots[0]) == c0(roots[roots.len() - 1]) {
            roots.pop();
        }
    }

    // Items are the first `n_items` nodes; the node after them is a tree node (a split, or a
    // bucket of at least two items), never another item. A file cut short ends in a tree node
    // that passes for a root claiming fewer items than there are: this catches it.
    if n_items >= 2 && n_items < n_nodes && n_desc(n_items) == 1 {
        return Err(bad(format!(
            "the roots claim {n_items} items but node {n_items} is an item too: the file is cut \
             short or damaged"
        )));
    }

    // The roots themselves (a file cut short can end in item nodes that pass for roots): a sane
    // count, a split root's children before it, a bucket root's ids items. Every other
    // tree node is checked where a walk reads it (`check_node`, from `search::Forest::gather`),
    // or all at once by `verify_nodes`: touching every tree node of a large file costs a page
    // fault per node (about a millisecond on 100k x 512), while the roots cost microseconds.
    for &r in roots.iter().filter(|&&r| r as usize >= n_items) {
        check_node(words, layout, n_items, r as usize).map_err(bad)?;
    }
    Ok(Shape {
        n_nodes,
        n_items,
        roots,
    })
}

/// Checks tree node `i` (`n_items <= i < n_nodes`): a count in `1..=n_items`; a split's
/// children come before it (so every walk ends); a bucket lists only items. The message says
/// what is wrong.
#[inline]
pub(crate) fn check_node(
    words: &[u32],
    layout: &Layout,
    n_items: usize,
    i: usize,
) -> std::result::Result<(), String> {
    let base = i * layout.words;
    let nd = words[base] as i32;
    if nd < 1 || nd as usize > n_items {
        return Err(format!(
            "node {i} claims {nd} descendants (expected 1 to {n_items})"
        ));
    }
    let nd = nd as usize;
    if nd > layout.max_bucket {
        for &c in &words[base + layout.children..base + layout.children + 2] {
            if c as usize >= i {
                return Err(format!(
                    "split node {i} points to node {} (children must come before their parent)",
                    c as i32
                ));
            }
        }
    } else {
        let ids = &words[base + layout.children..base + layout.children + nd];
        let max = ids.iter().copied().max().unwrap_or(0);
        if max as usize >= n_items {
            return Err(format!(
                "bucket node {i} lists item {} but the index has {n_items} items (is the file \
                 cut short?)",
                max as i32
            ));
        }
    }
    Ok(())
}

/// Checks every tree node with [`check_node`] (the part of the file [`validate`] leaves to the
/// readers).
pub(crate) fn verify_nodes(
    words: &[u32],
    layout: &Layout,
    shape: &Shape,
    path: &Path,
) -> Result<()> {
    for i in shape.n_items..shape.n_nodes {
        check_node(words, layout, shape.n_items, i).map_err(|msg| Error::format(path, msg))?;
    }
    Ok(())
}

/// Guesses the dimension of an angular Annoy file from its contents alone: the node size must
/// divide the file, and item 0's stored squared norm must equal its vector's. Returns every
/// dimension that fits (normally exactly one).
pub(crate) fn angular_dims(words: &[u32]) -> Vec<usize> {
    let n = words.len();
    let mut sizes = Vec::new();
    let mut d = 1usize;
    while d * d <= n {
        if n.is_multiple_of(d) {
            sizes.push(d);
            sizes.push(n / d);
        }
        d += 1;
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter(|&w| w > 3)
        .map(|w| w - 3)
        .filter(|&dim| {
            let layout = Layout::new(Metric::Angular, dim);
            let node = &words[..layout.words];
            // Item 0, then at least one tree node and its root copy; the last node's count is
            // the item count.
            let n_nodes = n / layout.words;
            let m = words[n - layout.words] as usize;
            if node[0] != 1 || node[2] != 0 || m == 0 || m + 2 > n_nodes {
                return false;
            }
            let stored = f64::from(f32::from_bits(node[1]));
            if !stored.is_finite() {
                return false;
            }
            // Sum of squares, stopping as soon as it passes the stored value (a wrong, larger
            // dimension runs into the next nodes' values quickly).
            let v: &[f32] = bytemuck::cast_slice(&node[layout.v..]);
            let limit = stored * (1.0 + 1e-4) + 1e-30;
            let mut norm = 0f64;
            for chunk in v.chunks(256) {
                norm += chunk
                    .iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>();
                if norm > limit {
                    return false;
                }
            }
            (stored - norm).abs() <= 1e-4 * norm.max(1e-30)
        })
        .collect()
}
