//! The object-safe face of every engine ([`Engine`]) and what a registry entry says about an
//! engine ([`EngineKind`]): its name, parameters, how to build one and how to open its files.
//!
//! [`SearchIndex`] is the trait an engine implements, with typed parameters; it cannot be a
//! trait object. Every `SearchIndex` is also an [`Engine`] (a blanket impl), and an engine crate
//! exports one `EngineKind` constant. The `search-engines` crate lists them: the bench, the
//! command line and the Python bindings go through that list, so an engine is named in one
//! place.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use crate::engine::{Hit, Knob, SearchIndex};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vectors::VectorView;
use crate::warm::Warmup;

/// An index of any engine, behind one object-safe interface.
///
/// ```
/// # use search_core::{Engine, Hit, SearchIndex};
/// fn best(index: &dyn Engine, q: &[f32]) -> search_core::Result<Option<Hit>> {
///     Ok(index.search(q, 1)?.first().copied())
/// }
/// ```
pub trait Engine: Send + Sync {
    /// The engine's name, as in its [`EngineKind`].
    fn name(&self) -> &'static str;
    /// Number of components per vector.
    fn dim(&self) -> usize;
    /// Number of vectors indexed.
    fn len(&self) -> usize;
    /// True when the index holds no vectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// See [`SearchIndex::search`].
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>>;
    /// See [`SearchIndex::search_threshold`].
    fn search_threshold(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>>;
    /// See [`SearchIndex::search_with`].
    fn search_with(&self, query: &[f32], k: usize, knob: Option<usize>) -> Result<Vec<Hit>>;
    /// See [`SearchIndex::search_batch`].
    fn search_batch(
        &self,
        queries: VectorView<'_>,
        k: usize,
        knob: Option<usize>,
    ) -> Result<Vec<Vec<Hit>>>;
    /// See [`SearchIndex::add`].
    fn add(
        &mut self,
        vectors: VectorView<'_>,
        ids: Option<&[u32]>,
        progress: &dyn Progress,
    ) -> Result<Vec<u32>>;
    /// See [`SearchIndex::set_ids`].
    fn set_ids(&mut self, ids: &[u32]) -> Result<()>;
    /// See [`SearchIndex::delete`].
    fn delete(&mut self, id: u32) -> Result<()>;
    /// See [`SearchIndex::vector`].
    fn vector(&self, id: u32) -> Result<Vec<f32>>;
    /// See [`SearchIndex::save_foreign`].
    fn save_foreign(&self, path: &Path) -> Result<()>;
    /// See [`SearchIndex::id_bound`].
    fn id_bound(&self) -> u64;
    /// See [`SearchIndex::scores_are_cosines`].
    fn scores_are_cosines(&self) -> bool;
    /// See [`SearchIndex::save`].
    fn save(&self, path: &Path) -> Result<()>;
    /// See [`SearchIndex::knob`].
    fn knob(&self) -> Option<Knob>;
    /// See [`SearchIndex::set_knob`].
    fn set_knob(&mut self, value: usize) -> Result<()>;
    /// The concrete index, for what one engine alone offers (HNSW's add and delete).
    fn as_any(&self) -> &dyn Any;
    /// The concrete index, mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl std::fmt::Debug for dyn Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("dim", &self.dim())
            .finish()
    }
}

impl<T: SearchIndex + 'static> Engine for T {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn dim(&self) -> usize {
        SearchIndex::dim(self)
    }
    fn len(&self) -> usize {
        SearchIndex::len(self)
    }
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        SearchIndex::search(self, query, k)
    }
    fn search_threshold(&self, query: &[f32], tau: f32) -> Result<Vec<Hit>> {
        SearchIndex::search_threshold(self, query, tau)
    }
    fn search_with(&self, query: &[f32], k: usize, knob: Option<usize>) -> Result<Vec<Hit>> {
        SearchIndex::search_with(self, query, k, knob)
    }
    fn search_batch(
        &self,
        queries: VectorView<'_>,
        k: usize,
        knob: Option<usize>,
    ) -> Result<Vec<Vec<Hit>>> {
        SearchIndex::search_batch(self, queries, k, knob)
    }
    fn add(
        &mut self,
        vectors: VectorView<'_>,
        ids: Option<&[u32]>,
        progress: &dyn Progress,
    ) -> Result<Vec<u32>> {
        SearchIndex::add(self, vectors, ids, progress)
    }
    fn set_ids(&mut self, ids: &[u32]) -> Result<()> {
        SearchIndex::set_ids(self, ids)
    }
    fn delete(&mut self, id: u32) -> Result<()> {
        SearchIndex::delete(self, id)
    }
    fn vector(&self, id: u32) -> Result<Vec<f32>> {
        SearchIndex::vector(self, id)
    }
    fn save_foreign(&self, path: &Path) -> Result<()> {
        SearchIndex::save_foreign(self, path)
    }
    fn id_bound(&self) -> u64 {
        SearchIndex::id_bound(self)
    }
    fn scores_are_cosines(&self) -> bool {
        SearchIndex::scores_are_cosines(self)
    }
    fn save(&self, path: &Path) -> Result<()> {
        SearchIndex::save(self, path)
    }
    fn knob(&self) -> Option<Knob> {
        SearchIndex::knob(self)
    }
    fn set_knob(&mut self, value: usize) -> Result<()> {
        SearchIndex::set_knob(self, value)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// One build parameter of an engine, as the registry describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name, as in a [`Params`] map (`"m"`, `"ef"`, `"n_trees"`).
    pub name: &'static str,
    /// Its default, as text.
    pub default: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
}

/// Builds an index of one engine from vectors and a parameter map.
pub type BuildFn = fn(VectorView<'_>, &Params, &dyn Progress) -> Result<Box<dyn Engine>>;
/// Opens a file of the library an engine mirrors, given the vectors' dimension and the
/// options that library's constructor takes (hnswlib's `space`, annoy's `metric`), as text.
pub type OpenForeignFn = fn(&Path, usize, &Params) -> Result<Box<dyn Engine>>;

/// What the registry knows of an engine: one constant per engine crate.
#[derive(Clone, Copy)]
pub struct EngineKind {
    /// Short name: `"linear"`, `"hnsw"`, `"forest"`.
    pub name: &'static str,
    /// What it is, in one line.
    pub about: &'static str,
    /// Its build parameters.
    pub params: &'static [ParamSpec],
    /// The name of its speed/accuracy knob, if it has one.
    pub knob: Option<&'static str>,
    /// True when `head` (a file's first bytes, up to 64) looks like one of its files.
    pub recognises: fn(head: &[u8]) -> bool,
    /// Builds an index from `vectors` with `params` (unknown names are an error).
    pub build: BuildFn,
    /// Opens one of its files.
    pub open: fn(&Path, Warmup) -> Result<Box<dyn Engine>>,
    /// Opens a file of the library this engine mirrors (hnswlib's, annoy's), which does not
    /// record the dimension: vectors of `dim` components; the parameters name the metric
    /// (none: cosine).
    pub open_foreign: Option<OpenForeignFn>,
    /// Which version of its build algorithm made an index: raised whenever a build from the
    /// same vectors and parameters makes a different index (a changed graph construction), so
    /// that a build cached on disk by an older version is built again, not compared as if it
    /// were today's (`bench_runner` keys its cache with it). 1 unless the engine says more.
    pub build_revision: u32,
}

impl EngineKind {
    /// The [`EngineKind`] of a [`SearchIndex`] whose parameters come from a [`Params`] map.
    pub const fn of<T>(
        about: &'static str,
        params: &'static [ParamSpec],
        knob: Option<&'static str>,
        recognises: fn(&[u8]) -> bool,
    ) -> EngineKind
    where
        T: SearchIndex + 'static,
        T::Params: for<'a> TryFrom<&'a Params, Error = Error>,
    {
        EngineKind {
            name: T::NAME,
            about,
            params,
            knob,
            recognises,
            build: |vectors, params, progress| {
                let p = T::Params::try_from(params)?;
                Ok(Box::new(T::build(vectors, &p, progress)?))
            },
            open: |path, warmup| Ok(Box::new(T::load_with(path, warmup)?)),
            open_foreign: None,
            build_revision: 1,
        }
    }
}

impl std::fmt::Debug for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineKind")
            .field("name", &self.name)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Build parameters by name, as text: what a command line, a JSON file or Python keyword
/// arguments give. An engine reads the names it knows and refuses the others.
///
/// ```
/// use search_core::{ParamSpec, Params};
/// const SPECS: &[ParamSpec] = &[ParamSpec { name: "m", default: "48", about: "links" }];
/// let p = Params::from_pairs([("m", "16")]);
/// p.check(SPECS)?;
/// assert_eq!(p.get::<usize>("m")?, Some(16));
/// assert!(Params::from_pairs([("M", "16")]).check(SPECS).is_err());
/// # Ok::<(), search_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// No parameters: every default.
    pub fn new() -> Self {
        Params::default()
    }

    /// Parameters from `(name, value)` pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl ToString) -> &mut Self {
        self.0.insert(name.into(), value.to_string());
        self
    }

    /// The value of `name`, parsed; `None` when it is not set, an error naming the parameter
    /// when it does not parse.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .get(name)
            .map(|v| {
                v.parse()
                    .map_err(|e| Error::InvalidArgument(format!("parameter {name} = {v:?}: {e}")))
            })
            .transpose()
    }

    /// The value of `name`, parsed, or `default` when it is not set.
    pub fn get_or<T: FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// Fails when a name is not among `specs`, listing the names that are.
    pub fn check(&self, specs: &[ParamSpec]) -> Result<()> {
        match self.0.keys().find(|k| !specs.iter().any(|s| s.name == *k)) {
            None => Ok(()),
            Some(unknown) => Err(Error::InvalidArgument(format!(
                "unknown parameter {unknown:?}; this engine takes {}",
                specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl std::fmt::Display for Params {
    /// `name=value` pairs sorted by name, separated by spaces: a stable text for cache keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}
