//! Laying the built forest out in Annoy's file: each tree's nodes, children before parents, in
//! its own region, and the item nodes (the rows scaled to unit length). It knows the node
//! layout and nothing of how the trees were built: it only reads a finished [`Forest`].

use rayon::prelude::*;
use search_kernels::dot_kernel;

use super::{Child, Forest, Node};
use crate::codes::decode_plane;
use crate::layout::{Layout, Metric};

impl Forest {
    /// Writes the subtree of tree `t` at `child` into `out` from node `*used` on (children
    /// first) and returns its ref; `first` is the id of `out`'s first node in the file.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
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
pub(super) fn item_nodes(rows: &[f32], norms: &[f64], items: &mut [u32], layout: Layout) {
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
