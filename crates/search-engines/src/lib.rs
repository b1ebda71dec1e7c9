//! The one list of engines. The bench, the command line and the Python bindings see engines
//! only through it: adding an engine is one crate that exports an [`EngineKind`] and one line
//! in [`ENGINES`].
//!
//! ```
//! use search_core::{Params, Vectors, Warmup};
//! let rows = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8])?;
//! let index = search_engines::build("hnsw", rows.view(), &Params::from_pairs([("m", "8")]), &())?;
//! assert_eq!(index.name(), "hnsw");
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("faces.idx");
//! index.save(&path)?;
//! let opened = search_engines::open(&path, Warmup::default())?; // recognised by its header
//! assert_eq!(opened.search(&[0.6, 0.8], 1)?[0].id, 2);
//! assert!(search_engines::build("hnws", rows.view(), &Params::new(), &()).is_err());
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

use std::io::Read;
use std::path::Path;

use search_core::{Engine, EngineKind, Error, Params, Progress, Result, VectorView, Warmup};

/// Every engine, in the order the bench runs them.
pub const ENGINES: &[EngineKind] = &[search_linear::KIND, search_hnsw::KIND, search_forest::KIND];

/// The engine called `name`; the error lists the names there are.
pub fn kind(name: &str) -> Result<&'static EngineKind> {
    ENGINES.iter().find(|k| k.name == name).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no engine called {name:?}; the engines are {}",
            names().join(", ")
        ))
    })
}

/// The engines' names.
pub fn names() -> Vec<&'static str> {
    ENGINES.iter().map(|k| k.name).collect()
}

/// Builds an index of engine `name` over `vectors` with `params` (unset ones take the
/// engine's defaults; unknown ones are an error).
pub fn build(
    name: &str,
    vectors: VectorView<'_>,
    params: &Params,
    progress: &dyn Progress,
) -> Result<Box<dyn Engine>> {
    (kind(name)?.build)(vectors, params, progress)
}

/// Opens any index file of ours (or an Annoy file), picking the engine by the file's header.
/// When several engines could read it, the first that opens it without error wins; the error
/// of the last one tried is returned otherwise.
pub fn open(path: &Path, warmup: Warmup) -> Result<Box<dyn Engine>> {
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    let mut last = None;
    for kind in ENGINES.iter().filter(|k| (k.recognises)(&head)) {
        match (kind.open)(path, warmup) {
            Ok(index) => return Ok(index),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::format(
            path,
            "not an index file of any engine (linear, hnsw, forest)",
        )
    }))
}

/// Opens a file for engine `kind`: one of ours, else one of the library the engine mirrors
/// (hnswlib's, annoy's: vectors of `dim` components, cosine). The error is the one from our
/// own format when neither opens it.
pub fn open_any(
    kind: &EngineKind,
    path: &Path,
    dim: usize,
    warmup: Warmup,
) -> Result<Box<dyn Engine>> {
    match (kind.open)(path, warmup) {
        Ok(index) => Ok(index),
        Err(ours) => match kind.open_foreign {
            Some(open) => open(path, dim).map_err(|_| ours),
            None => Err(ours),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use search_core::Vectors;

    fn rows() -> Vectors {
        let data = (0..200 * 8)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        Vectors::new(8, data).unwrap()
    }

    #[test]
    fn every_engine_builds_saves_and_reopens_through_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        for kind in ENGINES {
            let index = build(kind.name, rows.view(), &Params::new(), &()).unwrap();
            let path = dir.path().join(kind.name);
            index.save(&path).unwrap();
            let opened = open(&path, Warmup::Lazy).unwrap();
            assert_eq!(opened.name(), kind.name);
            assert_eq!((opened.len(), opened.dim()), (200, 8));
            let q = rows.row(17);
            assert_eq!(
                opened.search(q, 3).unwrap(),
                index.search(q, 3).unwrap(),
                "{}",
                kind.name
            );
            assert_eq!(opened.knob().map(|k| k.name), kind.knob, "{}", kind.name);
            for spec in kind.params {
                let p = Params::from_pairs([(spec.name, spec.default)]);
                assert!(
                    build(kind.name, rows.view(), &p, &()).is_ok(),
                    "{} {}",
                    kind.name,
                    spec.name
                );
            }
        }
    }

    #[test]
    fn unknown_engines_parameters_and_files_are_errors() {
        let rows = rows();
        let err = build("annoy", rows.view(), &Params::new(), &())
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear, hnsw, forest"), "{err}");
        let err = build("hnsw", rows.view(), &Params::from_pairs([("M", "16")]), &())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ef_construction"), "{err}");
        let err = build(
            "hnsw",
            rows.view(),
            &Params::from_pairs([("m", "many")]),
            &(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("m = \"many\""), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, b"FACESRCHjunk\0\0\0\0 and more").unwrap();
        assert!(open(&path, Warmup::Lazy).is_err());
        assert!(open(&dir.path().join("missing"), Warmup::Lazy).is_err());
    }
}

/// The workspace README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
