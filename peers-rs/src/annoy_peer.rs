//! `annoy-rs` 0.1.0 behind [`SearchIndex`]: it only loads and serves Annoy files, so the file
//! is built by our `search_forest::ForestIndex` (Annoy's exact format) and annoy-rs serves it.
//!
//! annoy-rs's `AnnoyIndex` holds an `Rc<Mmap>`: it is neither `Send` nor `Sync`. The index
//! type here holds only the file's path and shape; each thread that queries it opens its own
//! `AnnoyIndex` (an mmap and a scan for the roots) on its first query and keeps it in a
//! thread-local map keyed by the instance.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use annoy_rs::{AnnoyIndex, AnnoyIndexSearchApi, IndexType};
use search_core::{
    Error, Hit, Knob, Progress, Result, SearchIndex, VectorView, Warmup, check_k, check_tau,
    check_vector,
};
use search_forest::{ForestIndex, ForestParams};

/// Candidates per tree of a threshold search when no `search_k` is set: Annoy's default
/// (`n × n_trees`) for this many neighbours (as `search_forest::THRESHOLD_K`).
const THRESHOLD_K: usize = search_forest::THRESHOLD_K;

/// An Annoy file served by annoy-rs; built by our forest (annoy-rs cannot build).
pub struct AnnoyRs {
    state: State,
}

enum State {
    /// Just built in memory by our forest: it can be saved, not searched (annoy-rs serves
    /// files only).
    Built(ForestIndex),
    /// A file annoy-rs serves.
    Loaded(Served),
}

struct Served {
    /// Key of this instance in every thread's map of open `AnnoyIndex`es.
    id: u64,
    path: PathBuf,
    dim: usize,
    len: usize,
    n_trees: usize,
    /// `None`: Annoy's default, `k × n_trees` (annoy-rs's `search_k = -1`).
    search_k: Option<i32>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Instances not yet dropped: a thread's map drops the others' `AnnoyIndex`es when it adds one.
static LIVE: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

thread_local! {
    static OPEN: RefCell<HashMap<u64, AnnoyIndex>> = RefCell::new(HashMap::new());
}

fn live<T>(f: impl FnOnce(&mut HashSet<u64>) -> T) -> T {
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashSet::new))
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into())
}

impl Served {
    /// Opens the file with annoy-rs and checks that it sees what our reader saw.
    fn open_annoy(&self) -> Result<AnnoyIndex> {
        let bad = |m: String| Error::format(&self.path, m);
        let name = self
            .path
            .to_str()
            .ok_or_else(|| bad("annoy-rs takes UTF-8 paths only".into()))?;
        let index = catch_unwind(|| AnnoyIndex::load(self.dim, name, IndexType::Angular))
            .map_err(|p| {
                bad(format!(
                    "annoy-rs panicked loading it: {}",
                    panic_message(p)
                ))
            })?
            .map_err(|e| bad(format!("annoy-rs: {e}")))?;
        // (annoy-rs keeps its roots private: the item count is what it shows of its scan.)
        if index.size != self.len {
            return Err(bad(format!(
                "annoy-rs sees {} items, our reader {}",
                index.size, self.len
            )));
        }
        Ok(index)
    }

    /// Runs `f` on this thread's `AnnoyIndex` for this instance, opening it if needed.
    fn with_index<T>(&self, f: impl FnOnce(&AnnoyIndex) -> T) -> Result<T> {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if !open.contains_key(&self.id) {
                let index = self.open_annoy()?;
                live(|ids| open.retain(|id, _| ids.contains(id)));
                open.insert(self.id, index);
            }
            let index = &open[&self.id];
            catch_unwind(AssertUnwindSafe(|| f(index))).map_err(|p| {
                Error::format(
                    &self.path,
                    format!("annoy-rs panicked on a query: {}", panic_message(p)),
                )
            })
        })
    }

    /// annoy-rs's `get_nearest`, as hits (score = cosine = 1 − d²/2 from Annoy's angular
    /// distance d = sqrt(2 − 2·cos)), best first.
    ///
    /// annoy-rs takes that square root without clamping: for a query equal to an item (up to
    /// rounding), 2 − 2·cos comes out a hair below zero and the distance is NaN (Python annoy
    /// clamps it at 0). A NaN distance is read as 0, i.e. cosine 1.
    fn nearest(&self, query: &[f32], n: usize, search_k: i32) -> Result<Vec<Hit>> {
        check_vector(query, self.dim, || "query".into())?;
        let found = self.with_index(|index| index.get_nearest(query, n, search_k, true))?;
        let mut hits = Vec::with_capacity(found.id_list.len());
        for (&id, &d) in found.id_list.iter().zip(&found.distance_list) {
            let id = u32::try_from(id)
                .ok()
                .filter(|&i| (i as usize) < self.len)
                .ok_or_else(|| Error::format(&self.path, format!("annoy-rs returned item {id}")))?;
            let d2 = if d.is_nan() { 0.0 } else { d * d };
            hits.push(Hit {
                id,
                score: (1.0 - d2 / 2.0).clamp(-1.0, 1.0),
            });
        }
        hits.sort_by(Hit::ranking);
        Ok(hits)
    }
}

impl Drop for AnnoyRs {
    fn drop(&mut self) {
        if let State::Loaded(s) = &self.state {
            live(|ids| ids.remove(&s.id));
            let _ = OPEN.try_with(|open| {
                if let Ok(mut open) = open.try_borrow_mut() {
                    open.remove(&s.id);
                }
            });
        }
    }
}

impl AnnoyRs {
    fn served(&self) -> Result<&Served> {
        match &self.state {
            State::Loaded(s) => Ok(s),
            State::Built(_) => Err(Error::InvalidArgument(
                "annoy-rs only serves Annoy files: save this index and load it to query it".into(),
            )),
        }
    }
}

impl SearchIndex for AnnoyRs {
    type Params = ForestParams;
    const NAME: &'static str = "annoy-rs";

    /// Builds the forest with our `ForestIndex` (annoy-rs has no build).
    fn build_unchecked(
        vectors: VectorView<'_>,
        params: &ForestParams,
        progress: &dyn Progress,
    ) -> Result<Self> {
        Ok(AnnoyRs {
            state: State::Built(ForestIndex::build(vectors, params, progress)?),
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        match &self.state {
            State::Built(forest) => forest.save(path),
            State::Loaded(s) => {
                std::fs::copy(&s.path, path).map_err(|e| Error::io(path, e))?;
                Ok(())
            }
        }
    }

    /// Checks the file with our reader (size, roots, item 0, the dimension: microseconds, no
    /// warm-up), then opens it with annoy-rs on this thread. `warmup` does not apply: annoy-rs
    /// maps the file and reads what queries touch.
    fn load_with(path: &Path, _warmup: Warmup) -> Result<Self> {
        let checked = ForestIndex::load_with(path, Warmup::Lazy)?;
        let served = Served {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
            dim: checked.dim(),
            len: checked.len(),
            n_trees: checked.n_trees(),
            search_k: None,
        };
        drop(checked);
        live(|ids| ids.insert(served.id));
        let index = AnnoyRs {
            state: State::Loaded(served),
        };
        // Open it on this thread now, so that loading is timed as loading.
        index.served()?.with_index(|_| ())?;
        Ok(index)
    }

    fn dim(&self) -> usize {
        match &self.state {
            State::Built(f) => f.dim(),
            State::Loaded(s) => s.dim,
        }
    }

    fn len(&self) -> usize {
        match &self.state {
            State::Built(f) => f.len(),
            State::Loaded(s) => s.len,
        }
    }

    fn search_unchecked(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        check_k(k)?;
        let s = self.served()?;
        s.nearest(query, k, s.search_k.unwrap_or(-1))
    }

    /// Every candidate of Annoy's walk (`search_k` set, else Annoy's default for
    /// [`THRESHOLD_K`] neighbours) above `tau`.
    fn search_threshold_unchecked(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        check_tau(tau)?;
        let s = self.served()?;
        let search_k = s.search_k.unwrap_or_else(|| {
            i32::try_from(THRESHOLD_K.saturating_mul(s.n_trees)).unwrap_or(i32::MAX)
        });
        let mut hits = s.nearest(query, s.len, search_k)?;
        hits.retain(|h| h.score > tau);
        Ok(hits)
    }

    /// `search_k`; 0 = Annoy's default (`k × n_trees`, annoy-rs's -1).
    fn knob(&self) -> Option<Knob> {
        let value = match &self.state {
            State::Loaded(s) => s.search_k.map_or(0, |v| v as usize),
            State::Built(_) => 0,
        };
        Some(Knob {
            name: "search_k",
            value,
        })
    }

    fn set_knob(&mut self, value: usize) -> Result<()> {
        let v = i32::try_from(value).map_err(|_| {
            Error::InvalidArgument(format!(
                "annoy-rs takes search_k up to {}, got {value}",
                i32::MAX
            ))
        })?;
        match &mut self.state {
            State::Loaded(s) => s.search_k = (v > 0).then_some(v),
            State::Built(_) => {
                return Err(Error::InvalidArgument(
                    "annoy-rs only serves Annoy files: save this index and load it first".into(),
                ));
            }
        }
        Ok(())
    }
}
