//! Diagnostics: every node's level-0 list and `verify`, the O(size) check of the graph (every
//! link in range, counts within bounds, levels consistent). They only read the
//! `View`; they do not know how the graph was built, stored or searched.

use search_core::{Error, Result};

use super::HnswIndex;
use crate::search::Links;

impl HnswIndex {
    /// Every node's level-0 neighbour list (diagnostics).
    #[doc(hidden)]
    pub fn level0_lists(&self) -> Vec<Vec<u32>> {
        let v = self.view();
        let mut buf = Vec::new();
        (0..v.meta.len as u32)
            .map(|i| {
                v.neighbours(i, 0, &mut buf);
                buf.clone()
            })
            .collect()
    }

    /// Checks the whole graph (every link in range, counts within bounds, levels consistent):
    /// O(size of the index). `load` does not do this, because searches bounds-check as they go.
    pub fn verify(&self) -> Result<()> {
        let v = self.view();
        let bad = |m: String| Err(Error::InvalidArgument(format!("corrupt graph: {m}")));
        let n = v.meta.len;
        for id in 0..n {
            let l0 = &v.links0[id * (v.meta.m0 + 1)..(id + 1) * (v.meta.m0 + 1)];
            if l0[0] as usize > v.meta.m0 || l0[1..=l0[0] as usize].iter().any(|&x| x as usize >= n)
            {
                return bad(format!("node {id} has a bad level-0 list"));
            }
            let level = usize::from(v.levels[id]);
            if level > 0 {
                let b = v.upper_off[id] as usize;
                let Some(block) = v.upper.get(b..b + level * (v.meta.m + 1)) else {
                    return bad(format!("node {id}'s upper lists lie outside the file"));
                };
                for l in block.chunks_exact(v.meta.m + 1) {
                    if l[0] as usize > v.meta.m
                        || l[1..=l[0] as usize].iter().any(|&x| x as usize >= n)
                    {
                        return bad(format!("node {id} has a bad upper list"));
                    }
                }
            }
        }
        if let Some(max) = v.meta.max_level
            && v.levels.get(v.meta.entry as usize) != Some(&max)
        {
            return bad("the entry point is not on the top level".into());
        }
        Ok(())
    }
}
