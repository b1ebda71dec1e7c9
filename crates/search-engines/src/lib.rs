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
            Some(open) => open(path, dim, &Params::new()).map_err(|_| ours),
            None => Err(ours),
        },
    }
}

/// Opens a file of the library engine `name` mirrors (hnswlib's for `hnsw`, Annoy's for
/// `forest`) for vectors of `dim` components; `options` name that library's metric (`space`
/// = cosine, ip or l2 for hnsw; `metric` = angular or euclidean for forest). Fails for an
/// engine that mirrors no library.
pub fn open_foreign(
    name: &str,
    path: &Path,
    dim: usize,
    options: &Params,
) -> Result<Box<dyn Engine>> {
    let kind = kind(name)?;
    match kind.open_foreign {
        Some(open) => open(path, dim, options),
        None => Err(Error::Unsupported {
            engine: kind.name,
            what: "open another library's files",
        }),
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
    fn every_engine_answers_batches_stored_vectors_and_knobs_through_the_registry() {
        let rows = rows();
        for kind in ENGINES {
            let index = build(kind.name, rows.view(), &Params::new(), &()).unwrap();
            let queries = Vectors::new(8, [rows.row(3), rows.row(150)].concat()).unwrap();
            let batch = index.search_batch(queries.view(), 5, None).unwrap();
            for (q, hits) in queries.view().rows().zip(&batch) {
                let one = index.search(q, 5).unwrap();
                let ids = |h: &[search_core::Hit]| h.iter().map(|h| h.id).collect::<Vec<_>>();
                assert_eq!(ids(hits), ids(&one), "{}", kind.name);
            }
            let wrong = Vectors::new(4, vec![1.0; 8]).unwrap();
            assert!(index.search_batch(wrong.view(), 5, None).is_err());
            // A knob as large as the gallery makes every engine exact.
            let exact = build("linear", rows.view(), &Params::new(), &()).unwrap();
            let q = rows.row(42);
            let want = exact.search(q, 10).unwrap();
            let got = index.search_with(q, 10, Some(200 * 20)).unwrap();
            assert_eq!(
                got.iter().map(|h| h.id).collect::<Vec<_>>(),
                want.iter().map(|h| h.id).collect::<Vec<_>>(),
                "{}",
                kind.name
            );
            // Stored vectors are the rows scaled to unit length.
            let v = index.vector(42).unwrap();
            let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            for (a, b) in v.iter().zip(q) {
                assert!((a - b / norm).abs() < 1e-5, "{}", kind.name);
            }
            assert!(index.vector(200).is_err(), "{}", kind.name);
        }
    }

    #[test]
    fn add_delete_and_foreign_files_where_the_engine_has_them() {
        let rows = rows();
        let dir = tempfile::tempdir().unwrap();
        let more = Vectors::new(8, rows.row(5).iter().map(|x| -x).collect()).unwrap();
        for kind in ENGINES {
            let mut index = build(kind.name, rows.view(), &Params::new(), &()).unwrap();
            let path = dir.path().join(format!("{}.foreign", kind.name));
            match kind.name {
                "hnsw" => {
                    assert_eq!(index.add(more.view(), None, &()).unwrap(), [200]);
                    assert_eq!(index.add(more.view(), Some(&[900]), &()).unwrap(), [900]);
                    assert!(index.add(more.view(), Some(&[900]), &()).is_err());
                    index.delete(900).unwrap();
                    let mut relabelled = build("hnsw", rows.view(), &Params::new(), &()).unwrap();
                    let ids: Vec<u32> = (0..200).map(|i| 1000 + 2 * i).collect();
                    assert!(relabelled.set_ids(&ids[..10]).is_err());
                    relabelled.set_ids(&ids).unwrap();
                    assert_eq!(relabelled.search(rows.row(7), 1).unwrap()[0].id, 1014);
                    assert_eq!(relabelled.vector(1014).unwrap(), index.vector(7).unwrap());
                    let hits = index.search(more.row(0), 2).unwrap();
                    assert_eq!(hits[0].id, 200);
                    assert_ne!(hits[1].id, 900);
                    assert!(index.vector(900).is_err());
                    index.save_foreign(&path).unwrap();
                    let back = open_foreign("hnsw", &path, 8, &Params::new()).unwrap();
                    assert_eq!(back.search(more.row(0), 1).unwrap()[0].id, 200);
                    let bad = Params::from_pairs([("space", "hamming")]);
                    assert!(open_foreign("hnsw", &path, 8, &bad).is_err());
                }
                _ => {
                    let err = index.add(more.view(), None, &()).unwrap_err();
                    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
                    assert!(matches!(index.delete(0), Err(Error::Unsupported { .. })));
                    assert!(matches!(
                        index.set_ids(&[1]),
                        Err(Error::Unsupported { .. })
                    ));
                }
            }
            if kind.name == "forest" {
                index.save_foreign(&path).unwrap();
                let back = open_foreign("forest", &path, 8, &Params::new()).unwrap();
                assert_eq!(back.len(), 200);
            }
            if kind.name == "linear" {
                assert!(index.save_foreign(&path).is_err());
                assert!(open_foreign("linear", &path, 8, &Params::new()).is_err());
            }
        }
    }

    #[test]
    fn hnsw_builds_in_hnswlibs_ip_and_l2_spaces() {
        let rows = rows();
        let q = [0.3, -0.2, 0.9, 0.1, -0.5, 0.2, 0.4, -0.1];
        for space in ["ip", "l2"] {
            let p = Params::from_pairs([("space", space), ("ef", "400")]);
            let index = build("hnsw", rows.view(), &p, &()).unwrap();
            assert!(!index.scores_are_cosines());
            // Brute force in that space: ip = dot, l2 = -squared distance.
            let mut want: Vec<(f32, u32)> = (0..200)
                .map(|i| {
                    let r = rows.row(i);
                    let s = match space {
                        "ip" => r.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(),
                        _ => -r
                            .iter()
                            .zip(&q)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>(),
                    };
                    (s, i as u32)
                })
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            let got = index.search(&q, 5).unwrap();
            for (h, w) in got.iter().zip(&want) {
                assert_eq!(h.id, w.1, "{space}");
                assert!(
                    (h.score - w.0).abs() < 1e-4,
                    "{space}: {} vs {}",
                    h.score,
                    w.0
                );
            }
        }
    }

    /// Asks every build to stop as soon as it reports progress.
    struct Stop;
    impl Progress for Stop {
        fn set_total(&self, _: u64) {}
        fn advance(&self, _: u64) {}
        fn cancelled(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_cancelled_build_fails_with_cancelled() {
        let rows = rows();
        for kind in ENGINES {
            let err = build(kind.name, rows.view(), &Params::new(), &Stop).unwrap_err();
            assert!(matches!(err, Error::Cancelled), "{}: {err}", kind.name);
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
