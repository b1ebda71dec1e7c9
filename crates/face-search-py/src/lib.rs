//! `face_search._native`: the engine registry (`search-engines`) for Python.
//!
//! This crate only converts: numpy arrays in (float32 or float64, C- or F-ordered; C-ordered
//! float32 is read in place), numpy arrays out, the one `search_core::Error` mapped to Python
//! exceptions in [`to_py`], and the GIL released around every build and search. Every engine
//! goes through one class, `Engine`, built by name or opened from a file through the
//! registry; the Python package (`python/face_search`) puts the documented API
//! (`LinearIndex`, `HnswIndex`, `ForestIndex`, and the `hnswlib` / `annoy` drop-ins) on top.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use numpy::{
    PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyNotImplementedError, PyOSError, PyValueError};
use pyo3::prelude::*;
use search_core::{Engine, Error, Hit, Params, Progress, VectorView, Vectors, Warmup};

create_exception!(
    face_search,
    FormatError,
    PyValueError,
    "A file is not a valid index or gallery (corrupt, truncated or of another format); the \
     message names the file. A subclass of ValueError."
);

/// Maps the one Rust error type to Python's exceptions.
fn to_py(e: Error) -> PyErr {
    match e {
        Error::Io { path, source } => {
            let msg = source.to_string();
            match source.raw_os_error() {
                // OSError(errno, strerror, filename) becomes FileNotFoundError and friends.
                Some(errno) => PyOSError::new_err((errno, msg, path.display().to_string())),
                None => PyOSError::new_err(format!("{}: {msg}", path.display())),
            }
        }
        e @ (Error::Format { .. } | Error::Damaged { .. }) => FormatError::new_err(e.to_string()),
        Error::Cancelled => PyKeyboardInterrupt::new_err("cancelled"),
        e @ Error::Unsupported { .. } => PyNotImplementedError::new_err(e.to_string()),
        e => PyValueError::new_err(e.to_string()),
    }
}

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// A float array as row-major f32: borrowed when it already is one, else converted.
struct Floats<'py> {
    borrowed: Option<PyReadonlyArrayDyn<'py, f32>>,
    owned: Vec<f32>,
    shape: Vec<usize>,
}

impl Floats<'_> {
    fn slice(&self) -> &[f32] {
        match &self.borrowed {
            Some(a) => a.as_slice().expect("checked contiguous"),
            None => &self.owned,
        }
    }

    fn view(&self) -> PyResult<VectorView<'_>> {
        let dim = *self.shape.last().unwrap_or(&0);
        if dim == 0 {
            return Err(value_err("vectors must have at least one component"));
        }
        VectorView::new(dim, self.slice()).map_err(to_py)
    }
}

/// Reads a numpy array of float32 or float64 with `ndims` dimensions (one of them).
fn floats<'py>(obj: &Bound<'py, PyAny>, ndims: &[usize], what: &str) -> PyResult<Floats<'py>> {
    let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
        return Err(value_err(format!(
            "{what} must be a numpy array of float32 or float64, got {}",
            obj.get_type().name()?
        )));
    };
    if !ndims.contains(&untyped.ndim()) {
        let want = ndims
            .iter()
            .map(|n| format!("{n}-d"))
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(value_err(format!(
            "{what} must be a {want} array, got {} dimensions (shape {:?})",
            untyped.ndim(),
            untyped.shape()
        )));
    }
    let shape = untyped.shape().to_vec();
    if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
        let ro = a.readonly();
        if ro.is_c_contiguous() {
            return Ok(Floats {
                borrowed: Some(ro),
                owned: Vec::new(),
                shape,
            });
        }
        // Logical (row-major) order, whatever the strides.
        let owned = ro.as_array().iter().copied().collect();
        return Ok(Floats {
            borrowed: None,
            owned,
            shape,
        });
    }
    if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
        let ro = a.readonly();
        let owned = ro.as_array().iter().map(|&x| x as f32).collect();
        return Ok(Floats {
            borrowed: None,
            owned,
            shape,
        });
    }
    Err(value_err(format!(
        "{what} must be float32 or float64, got dtype {}",
        untyped.dtype()
    )))
}

/// Progress that asks the work to stop once Ctrl-C was pressed.
struct Interrupt(AtomicBool);

impl Progress for Interrupt {
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `work` without the GIL on a helper thread while this thread watches for signals: on
/// Ctrl-C the work is asked to stop (it sees `Progress::cancelled`) and the signal's
/// exception (KeyboardInterrupt) is raised once it has.
fn interruptible<R: Send>(
    py: Python<'_>,
    work: impl FnOnce(&dyn Progress) -> search_core::Result<R> + Send,
) -> PyResult<R> {
    let stop = Interrupt(AtomicBool::new(false));
    let (result, signal) = py.detach(|| {
        std::thread::scope(|s| {
            let handle = s.spawn(|| work(&stop));
            let mut signal = None;
            while !handle.is_finished() {
                std::thread::park_timeout(Duration::from_millis(20));
                if signal.is_none()
                    && let Err(e) = Python::attach(|py| py.check_signals())
                {
                    signal = Some(e);
                    stop.0.store(true, Ordering::Relaxed);
                }
            }
            let result = handle
                .join()
                .unwrap_or_else(|_| Err(Error::InvalidArgument("the build panicked".into())));
            (result, signal)
        })
    });
    match (result, signal) {
        (_, Some(e)) => Err(e),
        (r, None) => r.map_err(to_py),
    }
}

/// A rayon pool of `threads` threads (0: the global pool, every core), made once per size.
fn pool(threads: usize) -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    if threads == 0 {
        return Ok(None);
    }
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(Some(p.clone()));
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| value_err(format!("cannot start {threads} threads: {e}")))?,
    );
    pools.insert(threads, p.clone());
    Ok(Some(p))
}

fn params_of(map: Option<HashMap<String, String>>) -> Params {
    Params::from_pairs(map.unwrap_or_default())
}

type Answer<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);

fn answer(py: Python<'_>, hits: Vec<Hit>) -> Answer<'_> {
    let ids = hits.iter().map(|h| i64::from(h.id)).collect();
    let scores = hits.iter().map(|h| h.score).collect();
    (PyArray1::from_vec(py, ids), PyArray1::from_vec(py, scores))
}

/// An index of any engine of the registry (`linear`, `hnsw`, `forest`). The Python classes
/// of `face_search` wrap it; methods release the GIL while they work, and many threads may
/// query one index at once.
#[pyclass(module = "face_search._native", name = "Engine", frozen)]
struct PyEngine {
    inner: RwLock<Box<dyn Engine>>,
}

impl PyEngine {
    fn new(engine: Box<dyn Engine>) -> Self {
        PyEngine {
            inner: RwLock::new(engine),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Box<dyn Engine>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Box<dyn Engine>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyEngine {
    /// Builds an index of engine `engine` over the rows of `vectors` (2-d float32/float64)
    /// with `params` (names to text values; unknown names are a ValueError).
    #[staticmethod]
    #[pyo3(signature = (engine, vectors, params=None))]
    fn build(
        py: Python<'_>,
        engine: &str,
        vectors: &Bound<'_, PyAny>,
        params: Option<HashMap<String, String>>,
    ) -> PyResult<Self> {
        let rows = floats(vectors, &[2], "vectors")?;
        let view = rows.view()?;
        let params = params_of(params);
        let built = interruptible(py, |progress| {
            search_engines::build(engine, view, &params, progress)
        })?;
        Ok(PyEngine::new(built))
    }

    /// Opens an index file of ours (the engine is read from its header; an Annoy file opens
    /// as a forest), memory-mapped; `warmup` is auto, lazy, background or eager.
    #[staticmethod]
    #[pyo3(signature = (path, warmup="auto"))]
    fn open(py: Python<'_>, path: PathBuf, warmup: &str) -> PyResult<Self> {
        let warmup: Warmup = warmup.parse().map_err(value_err)?;
        let e = py
            .detach(|| search_engines::open(&path, warmup))
            .map_err(to_py)?;
        Ok(PyEngine::new(e))
    }

    /// Opens a file of the library engine `engine` mirrors (hnswlib's for hnsw, Annoy's for
    /// forest), for vectors of `dim` components; `options` name its metric (`space` for
    /// hnsw, `metric` for forest).
    #[staticmethod]
    #[pyo3(signature = (engine, path, dim, options=None))]
    fn open_foreign(
        py: Python<'_>,
        engine: &str,
        path: PathBuf,
        dim: usize,
        options: Option<HashMap<String, String>>,
    ) -> PyResult<Self> {
        let options = params_of(options);
        let e = py
            .detach(|| search_engines::open_foreign(engine, &path, dim, &options))
            .map_err(to_py)?;
        Ok(PyEngine::new(e))
    }

    /// The engine's name.
    #[getter]
    fn name(&self) -> &'static str {
        self.read().name()
    }

    /// Components per vector.
    #[getter]
    fn dim(&self) -> usize {
        self.read().dim()
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    /// One past the largest id a hit may carry.
    #[getter]
    fn id_bound(&self) -> u64 {
        self.read().id_bound()
    }

    /// True when scores are cosine similarities (false for hnswlib's ip and l2 spaces).
    #[getter]
    fn scores_are_cosines(&self) -> bool {
        self.read().scores_are_cosines()
    }

    /// The knob's name (`ef`, `search_k`) or None.
    #[getter]
    fn knob_name(&self) -> Option<&'static str> {
        self.read().knob().map(|k| k.name)
    }

    /// The knob's value, or None for an engine without one.
    #[getter]
    fn get_knob(&self) -> Option<usize> {
        self.read().knob().map(|k| k.value)
    }

    /// Sets the knob.
    #[setter]
    fn set_knob(&self, value: usize) -> PyResult<()> {
        self.write().set_knob(value).map_err(to_py)
    }

    /// The `k` best rows for `query`: a 1-d query gives `(ids, scores)` 1-d arrays, best
    /// first; a 2-d batch gives `(n, min(k, len))` arrays (padded with -1 and NaN where an
    /// index finds fewer), on `threads` threads (0: every core). `knob` overrides the index's
    /// knob for this call.
    #[pyo3(signature = (query, k, knob=None, threads=0))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        k: i64,
        knob: Option<usize>,
        threads: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if k <= 0 {
            return Err(value_err(format!("k must be at least 1, got {k}")));
        }
        let k = k as usize;
        let q = floats(query, &[1, 2], "query")?;
        if q.shape.len() == 1 {
            let slice = q.slice();
            let hits = py
                .detach(|| self.read().search_with(slice, k, knob))
                .map_err(to_py)?;
            let (ids, scores) = answer(py, hits);
            return Ok((ids.into_any(), scores.into_any()));
        }
        let n = q.shape[0];
        let view = q.view()?;
        let pool = pool(threads)?;
        let lists = py
            .detach(|| {
                let engine = self.read();
                match &pool {
                    Some(p) => p.install(|| engine.search_batch(view, k, knob)),
                    None => engine.search_batch(view, k, knob),
                }
            })
            .map_err(to_py)?;
        let cols = k.min(self.read().len()).max(1);
        let mut ids = vec![-1i64; n * cols];
        let mut scores = vec![f32::NAN; n * cols];
        for (i, hits) in lists.iter().enumerate() {
            for (j, h) in hits.iter().take(cols).enumerate() {
                ids[i * cols + j] = i64::from(h.id);
                scores[i * cols + j] = h.score;
            }
        }
        let ids = PyArray1::from_vec(py, ids).reshape([n, cols])?;
        let scores = PyArray1::from_vec(py, scores).reshape([n, cols])?;
        Ok((ids.into_any(), scores.into_any()))
    }

    /// Seconds one search of the 1-d `query` takes inside Rust, the median of `repeats`
    /// timed calls: what `search` costs without Python, so that a benchmark can tell the
    /// binding's overhead (scripts/python_speed.py).
    #[pyo3(signature = (query, k, repeats=100))]
    fn time_search(
        &self,
        py: Python<'_>,
        query: &Bound<'_, PyAny>,
        k: usize,
        repeats: usize,
    ) -> PyResult<f64> {
        let q = floats(query, &[1], "query")?;
        let slice = q.slice();
        py.detach(|| {
            let engine = self.read();
            let mut times = Vec::with_capacity(repeats.max(1));
            for _ in 0..repeats.max(1) {
                let start = std::time::Instant::now();
                std::hint::black_box(engine.search_with(slice, k, None)?);
                times.push(start.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            Ok(times[times.len() / 2])
        })
        .map_err(to_py)
    }

    /// Every row whose cosine similarity to `query` exceeds `tau` (in [-1, 1]), best first.
    fn search_threshold<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        tau: f32,
    ) -> PyResult<Answer<'py>> {
        let q = floats(query, &[1], "query")?;
        let slice = q.slice();
        let hits = py
            .detach(|| self.read().search_threshold(slice, tau))
            .map_err(to_py)?;
        Ok(answer(py, hits))
    }

    /// Adds rows (2-d) after the build, under `ids` when given; returns the ids they got.
    #[pyo3(signature = (vectors, ids=None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        ids: Option<Vec<u32>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let rows = floats(vectors, &[2], "vectors")?;
        let view = rows.view()?;
        let got = py
            .detach(|| self.write().add(view, ids.as_deref(), &()))
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(
            py,
            got.into_iter().map(i64::from).collect(),
        ))
    }

    /// Gives the rows new ids (one per row, distinct), where the engine keeps ids.
    fn set_ids(&self, py: Python<'_>, ids: Vec<u32>) -> PyResult<()> {
        py.detach(|| self.write().set_ids(&ids)).map_err(to_py)
    }

    /// Marks item `id` deleted.
    fn delete(&self, py: Python<'_>, id: u32) -> PyResult<()> {
        py.detach(|| self.write().delete(id)).map_err(to_py)
    }

    /// The stored vectors of items `ids`, as a `(len(ids), dim)` float32 array.
    fn vectors<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let engine = self.read();
        let dim = engine.dim();
        let mut out = Vec::with_capacity(ids.len() * dim);
        for id in &ids {
            out.extend(engine.vector(*id).map_err(to_py)?);
        }
        PyArray1::from_vec(py, out).reshape([ids.len(), dim])
    }

    /// Writes the index in our own format (atomically: a failed write leaves the old file).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.read().save(&path)).map_err(to_py)
    }

    /// Writes the index in the mirrored library's format (hnswlib's, Annoy's), atomically.
    fn save_foreign(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.read().save_foreign(&path)).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        let e = self.read();
        format!("<Engine {} len={} dim={}>", e.name(), e.len(), e.dim())
    }
}

/// The engines' names and their parameters: `{name: [(param, default, about), ...]}`.
type ParamRow = (&'static str, &'static str, &'static str);

#[pyfunction]
fn engines() -> Vec<(&'static str, &'static str, Vec<ParamRow>)> {
    search_engines::ENGINES
        .iter()
        .map(|k| {
            (
                k.name,
                k.about,
                k.params
                    .iter()
                    .map(|p| (p.name, p.default, p.about))
                    .collect(),
            )
        })
        .collect()
}

/// Reads the notebook's gallery file: `(vectors, labels)`, float32 `(n, d)` and a list of str.
#[pyfunction]
fn read_gallery(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(Bound<'_, PyArray2<f32>>, Vec<String>)> {
    let gallery = py
        .detach(|| embed_store::npy::read_gallery(&path))
        .map_err(to_py)?;
    let (vectors, labels) = gallery.into_parts();
    let (n, d) = (vectors.len(), vectors.dim());
    let array = PyArray1::from_vec(py, vectors.into_inner()).reshape([n, d])?;
    Ok((array, labels))
}

/// Writes the notebook's gallery file (vectors, then labels), atomically.
#[pyfunction]
fn write_gallery(
    py: Python<'_>,
    path: PathBuf,
    vectors: &Bound<'_, PyAny>,
    labels: Vec<String>,
) -> PyResult<()> {
    let rows = floats(vectors, &[2], "vectors")?;
    let view = rows.view()?;
    let gallery = embed_store::Gallery::new(
        Vectors::new(view.dim(), view.as_slice().to_vec()).map_err(to_py)?,
        labels,
    )
    .map_err(to_py)?;
    py.detach(|| embed_store::npy::write_gallery(&path, &gallery))
        .map_err(to_py)
}

/// The native half of `face_search`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add_function(wrap_pyfunction!(engines, m)?)?;
    m.add_function(wrap_pyfunction!(read_gallery, m)?)?;
    m.add_function(wrap_pyfunction!(write_gallery, m)?)?;
    m.add("FormatError", m.py().get_type::<FormatError>())?;
    Ok(())
}
