//! The level pass: the top levels of every tree, split one level at a time across all trees so
//! that each level reads the gallery once, then the subtrees below [`SYNC_MIN`] items handed to
//! the depth-first builder, in parallel. It returns a [`Forest`] of splits and subtrees; it does
//! not know how nodes are laid out in the file, nor how a plane is found (that is
//! [`TreeBuilder`]'s).

use rand::RngExt;
use rayon::prelude::*;
use search_core::Progress;
use search_kernels::planes::{Kernels, kernels};

use super::{
    BuildSpec, Child, Forest, Parted, SYNC_MIN, Slot, SyncSplit, Task, Tree, TreeBuilder, mix,
    split_count, split_imbalance,
};
use crate::codes::{PlaneCode, RowCodes};
use crate::layout::{Layout, Metric};

pub(super) fn build_trees(
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
