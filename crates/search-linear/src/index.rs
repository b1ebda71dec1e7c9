//! The exact index: normalised f32 rows, scanned in parallel blocks.

use std::path::Path;

use embed_store::container::{Container, write_container};
use embed_store::kernels::dot_kernel;
use embed_store::{
    Error, Hit, Progress, Result, SearchIndex, VectorView, check_k, check_tau, normalized,
    normalized_rows,
};
use rayon::prelude::*;

const KIND: &[u8; 8] = b"linear\0\0";
const VERSION: u32 = 1;
/// Rows per parallel block: large enough to amortise scheduling, small enough to balance.
const BLOCK_ROWS: usize = 8192;

/// Build parameters of the linear engine (it has none to tune).
#[derive(Clone, Debug, Default)]
pub struct LinearParams {}

/// Exact cosine search over unit-normalised rows.
#[derive(Debug)]
pub struct LinearIndex {
    dim: usize,
    len: usize,
    storage: Storage,
}

#[derive(Debug)]
enum Storage {
    Owned(Vec<f32>),
    Mapped(Container),
}

impl LinearIndex {
    /// The unit-normalised rows, row-major.
    pub fn vectors(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
            Storage::Mapped(c) => c.section_as::<f32>("vectors").expect("checked on load"),
        }
    }

    /// Scores of every row against the (normalised) query, in parallel blocks, handing each
    /// block's `(first_row, scores)` to `visit`, which returns that block's hits.
    fn scan(&self, query: &[f32], visit: impl Fn(usize, &[f32]) -> Vec<Hit> + Sync) -> Vec<Hit> {
        let dot = dot_kernel();
        let dim = self.dim;
        self.vectors()
            .par_chunks(BLOCK_ROWS * dim)
            .enumerate()
            .flat_map_iter(|(b, block)| {
                let scores: Vec<f32> = block.chunks_exact(dim).map(|row| dot(row, query)).collect();
                visit(b * BLOCK_ROWS, &scores)
            })
            .collect()
    }
}

/// The best `k` of `hits` in ranking order.
fn top_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, Hit::ranking);
        hits.truncate(k);
    }
    hits.sort_unstable_by(Hit::ranking);
    hits
}

impl SearchIndex for LinearIndex {
    type Params = LinearParams;
    const NAME: &'static str = "linear";

    fn build(
        vectors: VectorView<'_>,
        _params: &LinearParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        progress.set_total(vectors.len() as u64);
        let normalised = normalized_rows(vectors)?;
        progress.advance(vectors.len() as u64);
        if u32::try_from(vectors.len()).is_err() {
            return Err(Error::InvalidArgument(format!(
                "{} rows exceed the u32 id space",
                vectors.len()
            )));
        }
        Ok(LinearIndex {
            dim: vectors.dim(),
            len: vectors.len(),
            storage: Storage::Owned(normalised.into_inner()),
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        let meta = [self.dim as u64, self.len as u64];
        write_container(
            path,
            KIND,
            VERSION,
            &[
                ("meta", bytemuck::cast_slice(&meta)),
                ("vectors", bytemuck::cast_slice(self.vectors())),
            ],
        )
    }

    fn load(path: &Path) -> Result<Self> {
        let c = Container::open(path, KIND, VERSION..=VERSION)?;
        let &[dim, len] = c.section_exact::<u64>("meta", 2)? else {
            unreachable!()
        };
        if dim == 0 || len > u64::from(u32::MAX) {
            return Err(Error::format(
                path,
                format!("impossible shape: {len} rows of {dim} dimensions"),
            ));
        }
        let expected = dim
            .checked_mul(len)
            .filter(|&e| e <= usize::MAX as u64)
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("impossible shape: {len} rows of {dim} dimensions"),
                )
            })?;
        c.section_exact::<f32>("vectors", expected as usize)?;
        Ok(LinearIndex {
            dim: dim as usize,
            len: len as usize,
            storage: Storage::Mapped(c),
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.len
    }

    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        check_k(k)?;
        let q = normalized(query, self.dim, || "query".into())?;
        let candidates = self.scan(&q, |first, scores| {
            let hits = scores
                .iter()
                .enumerate()
                .map(|(i, &s)| Hit {
                    id: (first + i) as u32,
                    score: s,
                })
                .collect();
            top_k(hits, k)
        });
        Ok(top_k(candidates, k))
    }

    fn search_threshold(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        check_tau(tau)?;
        let q = normalized(query, self.dim, || "query".into())?;
        let mut hits = self.scan(&q, |first, scores| {
            scores
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s > tau)
                .map(|(i, &s)| Hit {
                    id: (first + i) as u32,
                    score: s,
                })
                .collect()
        });
        hits.sort_unstable_by(Hit::ranking);
        Ok(hits)
    }
}
