//! Every engine, through the shared trait, against the same hostile inputs: damaged files,
//! bad vectors and arguments, concurrent queries, and a save that fails half-way.
//!
//! One generic suite, instantiated per engine at the bottom, so that the engines cannot drift
//! apart in what they accept and how they fail.

use std::path::Path;
use std::process::Command;

use embed_store::Gallery;
use embed_store::synth::{SynthSpec, generate};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use search_core::{Error, Hit, SearchIndex, Vectors, Warmup};
use search_forest::ForestIndex;
use search_hnsw::{HnswIndex, HnswParams};
use search_linear::LinearIndex;

const DIM: usize = 32;

fn small_gallery(seed: u64) -> Gallery {
    let spec = SynthSpec {
        identities: 10,
        images_per_identity: 3,
        distractors: 150,
        dim: DIM,
        seed,
    };
    generate(&spec, &()).gallery
}

fn build<E: SearchIndex>(gallery: &Gallery, params: &E::Params) -> E {
    E::build(gallery.vectors().view(), params, &()).expect("build a valid gallery")
}

/// Queries a loaded (possibly damaged) index: it may fail, but must not panic, and whatever it
/// returns must name real rows, best first, with scores in range, and threshold hits above τ.
fn query_everything<E: SearchIndex>(index: &E) {
    let q: Vec<f32> = (0..index.dim()).map(|i| (i as f32 * 0.37).sin()).collect();
    let sane = |hits: &[Hit]| {
        assert!(
            hits.iter().all(|h| (h.id as usize) < index.len()),
            "{}: a hit names a row beyond the index's {} rows: {hits:?}",
            E::NAME,
            index.len()
        );
        assert!(hits.windows(2).all(|w| Hit::ranking(&w[0], &w[1]).is_le()));
        assert!(
            hits.iter()
                .all(|h| h.score.is_nan() || h.score.abs() <= 1.0 + 1e-3)
        );
    };
    if let Ok(hits) = index.search(&q, 5) {
        assert!(hits.len() <= 5);
        sane(&hits);
    }
    if let Ok(hits) = index.search_threshold(&q, 0.1) {
        sane(&hits);
        assert!(hits.iter().all(|h| h.score > 0.1), "{}: {hits:?}", E::NAME);
    }
}

/// The answers of `index` to a fixed set of queries, to compare a reloaded file with.
fn answers<E: SearchIndex>(index: &E) -> Vec<(Vec<Hit>, Vec<Hit>)> {
    let queries = small_gallery(9);
    queries
        .vectors()
        .view()
        .rows()
        .map(|q| {
            (
                index.search(q, 5).unwrap_or_default(),
                index.search_threshold(q, 0.2).unwrap_or_default(),
            )
        })
        .collect()
}

/// A file cut short is an error, unless all that was cut is padding the index never reads
/// (then it answers exactly as the whole file).
fn truncations_are_errors<E: SearchIndex>(params: E::Params) {
    let index: E = build(&small_gallery(1), &params);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.idx");
    index.save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.idx");
    // Every offset in the first 4 KiB (headers, tables), then a stride through the body, then
    // the last 256 bytes.
    let offsets = (0..full.len().min(4096))
        .chain((4096..full.len()).step_by(61))
        .chain(full.len().saturating_sub(256)..full.len());
    let want = answers(&E::load(&path).unwrap());
    for len in offsets {
        std::fs::write(&cut, &full[..len]).unwrap();
        if let Ok(loaded) = E::load(&cut) {
            query_everything(&loaded);
            assert!(
                answers(&loaded) == want,
                "{}: the file cut to {len} of {} bytes loaded and answers differently",
                E::NAME,
                full.len()
            );
        }
    }
}

fn flipped_bytes_are_errors_or_valid<E: SearchIndex>(params: E::Params) {
    let index: E = build(&small_gallery(2), &params);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.idx");
    index.save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    let bad = dir.path().join("flipped.idx");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    for round in 0..600 {
        let mut bytes = full.clone();
        // Half the rounds hit the first 512 bytes (headers), half anywhere.
        for _ in 0..rng.random_range(1..=4) {
            let end = if round % 2 == 0 {
                bytes.len().min(512)
            } else {
                bytes.len()
            };
            let at = rng.random_range(0..end);
            bytes[at] ^= 1 << rng.random_range(0..8);
        }
        std::fs::write(&bad, &bytes).unwrap();
        if let Ok(loaded) = E::load(&bad) {
            query_everything(&loaded);
        }
    }
}

fn garbage_files_are_errors<E: SearchIndex>() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.idx");
    for bytes in [&b""[..], b"\0", &[0xffu8; 100], &[0u8; 4096], b"FACESRCH"] {
        std::fs::write(&path, bytes).unwrap();
        assert!(
            E::load(&path).is_err(),
            "{} loaded {} garbage bytes",
            E::NAME,
            bytes.len()
        );
    }
    assert!(matches!(
        E::load(&dir.path().join("missing.idx")),
        Err(Error::Io { .. })
    ));
}

fn bad_vectors_and_arguments_are_errors<E: SearchIndex>(params: E::Params) {
    let gallery = small_gallery(3);
    let index: E = build(&gallery, &params);
    let good = gallery.vectors().row(0).to_vec();
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    let mut inf = good.clone();
    inf[0] = f32::INFINITY;
    let zero = vec![0.0; DIM];
    for (what, q) in [("NaN", &nan), ("infinite", &inf), ("zero", &zero)] {
        assert!(
            matches!(index.search(q, 3), Err(Error::BadVector { .. })),
            "{} accepted a {what} query",
            E::NAME
        );
        assert!(matches!(
            index.search_threshold(q, 0.3),
            Err(Error::BadVector { .. })
        ));
    }
    assert!(matches!(
        index.search(&good[..DIM - 1], 3),
        Err(Error::Dimension {
            expected: DIM,
            found: 31
        })
    ));
    assert!(matches!(
        index.search(&[good.clone(), vec![1.0]].concat(), 3),
        Err(Error::Dimension { .. })
    ));
    assert!(matches!(
        index.search(&good, 0),
        Err(Error::InvalidArgument(_))
    ));
    for tau in [1.5, -1.01, f32::NAN, f32::INFINITY] {
        assert!(
            matches!(
                index.search_threshold(&good, tau),
                Err(Error::InvalidArgument(_))
            ),
            "tau {tau}"
        );
    }
    // k larger than the gallery: at most every row, each once.
    let all = index.search(&good, gallery.len() + 10).unwrap();
    assert!(!all.is_empty() && all.len() <= gallery.len());
    let mut ids: Vec<u32> = all.iter().map(|h| h.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "{} returned a row twice", E::NAME);
    assert!(
        all.windows(2).all(|w| Hit::ranking(&w[0], &w[1]).is_le()),
        "{} hits out of order",
        E::NAME
    );
    // τ = 1 matches nothing but the query's own direction; the query is row 0 itself.
    assert!(
        index
            .search_threshold(&good, 1.0)
            .unwrap()
            .iter()
            .all(|h| h.score > 0.999)
    );

    // Galleries that cannot be searched by cosine are refused at build time.
    let mut rows = gallery.vectors().as_slice().to_vec();
    rows[5 * DIM + 1] = f32::NAN;
    let with_nan = Vectors::new(DIM, rows).unwrap();
    assert!(matches!(
        E::build(with_nan.view(), &params, &()),
        Err(Error::BadVector { .. })
    ));
    let mut rows = gallery.vectors().as_slice().to_vec();
    rows[7 * DIM..8 * DIM].fill(0.0);
    let with_zero = Vectors::new(DIM, rows).unwrap();
    match E::build(with_zero.view(), &params, &()) {
        Err(Error::BadVector { what, .. }) => {
            assert!(what.contains('7'), "error names row 7: {what}")
        }
        other => panic!(
            "{} built a gallery with a zero row: {:?}",
            E::NAME,
            other.map(|_| ())
        ),
    }
    let empty = Vectors::with_dim(DIM);
    assert!(
        matches!(
            E::build(empty.view(), &params, &()),
            Err(Error::InvalidArgument(_))
        ),
        "{} built an empty gallery",
        E::NAME
    );
}

fn duplicate_rows_are_both_found<E: SearchIndex>(params: E::Params) {
    let gallery = small_gallery(4);
    let mut rows = gallery.vectors().as_slice().to_vec();
    rows.extend_from_slice(gallery.vectors().row(3));
    let vectors = Vectors::new(DIM, rows).unwrap();
    let index = E::build(vectors.view(), &params, &()).unwrap();
    let hits = index.search(vectors.row(3), 2).unwrap();
    let mut ids: Vec<u32> = hits.iter().map(|h| h.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [3, vectors.len() as u32 - 1], "{}: {hits:?}", E::NAME);
}

fn concurrent_queries_match_sequential<E: SearchIndex>(params: E::Params) {
    let gallery = small_gallery(5);
    let index: E = build(&gallery, &params);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.idx");
    index.save(&path).unwrap();
    let loaded = E::load(&path).unwrap();
    for index in [&index, &loaded] {
        let sequential: Vec<_> = gallery
            .vectors()
            .view()
            .rows()
            .map(|q| {
                (
                    index.search(q, 4).unwrap(),
                    index.search_threshold(q, 0.3).unwrap(),
                )
            })
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (sequential, gallery) = (&sequential, &gallery);
                    s.spawn(move || {
                        // Each thread walks the queries from a different start.
                        let n = gallery.len();
                        for i in (0..n).map(|i| (i + t * n / 4) % n) {
                            let q = gallery.vectors().row(i);
                            assert_eq!(index.search(q, 4).unwrap(), sequential[i].0);
                            assert_eq!(index.search_threshold(q, 0.3).unwrap(), sequential[i].1);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("query thread panicked");
            }
        });
    }
}

/// Env var that turns the ignored `child_*` tests into the half-way-failing writer.
const CHILD_PATH: &str = "FACE_SEARCH_INTERRUPTED_SAVE_PATH";

/// Saves over `path` in a child process whose file-size limit (`ulimit -f`) makes the write
/// fail part-way, then checks the previous index is intact.
fn interrupted_save_keeps_the_previous_index<E: SearchIndex>(params: E::Params, child_test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.idx");
    let gallery = small_gallery(6);
    let index: E = build(&gallery, &params);
    index.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let q = gallery.vectors().row(2);
    let expected = index.search(q, 4).unwrap();

    // 16 KiB limit: the child's (larger) index cannot be written whole. SIGXFSZ is ignored so
    // that the write returns EFBIG instead of killing the child.
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 16; exec "$0" --exact "$1" --ignored --nocapture"#)
        .arg(std::env::current_exe().unwrap())
        .arg(child_test)
        .env(CHILD_PATH, &path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the child save did not fail cleanly: {status}"
    );

    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "{}: the previous index changed",
        E::NAME
    );
    let reloaded = E::load(&path).unwrap();
    assert_eq!(reloaded.search(q, 4).unwrap(), expected);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "{}: temporary files left behind: {leftovers:?}",
        E::NAME
    );
}

/// The child side: build a larger index and save it over the parent's; the save must fail
/// with an error (not a panic, not a success).
fn child_save_fails<E: SearchIndex>(params: E::Params) {
    let path =
        std::env::var_os(CHILD_PATH).expect("run by interrupted_save_keeps_the_previous_index");
    let spec = SynthSpec {
        identities: 10,
        images_per_identity: 3,
        distractors: 2000,
        dim: DIM,
        seed: 9,
    };
    let index: E = build(&generate(&spec, &()).gallery, &params);
    let result = index.save(Path::new(&path));
    assert!(
        matches!(result, Err(Error::Io { .. })),
        "{}: save under a 16 KiB limit gave {result:?}",
        E::NAME
    );
}

/// An index opened from a cold file (evicted from the page cache), in every warm-up mode,
/// answers every query exactly as the index that was saved, and as the same file opened warm.
fn cold_files_answer_as_warm_ones<E: SearchIndex>(params: E::Params) {
    let gallery = small_gallery(4);
    let built: E = build(&gallery, &params);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.idx");
    built.save(&path).unwrap();
    let queries = small_gallery(5);
    let answers = |index: &E| -> Vec<(Vec<Hit>, Vec<Hit>)> {
        queries
            .vectors()
            .view()
            .rows()
            .map(|q| {
                (
                    index.search(q, 7).unwrap(),
                    index.search_threshold(q, 0.3).unwrap(),
                )
            })
            .collect()
    };
    let want = answers(&built);
    for warmup in [Warmup::Lazy, Warmup::Background, Warmup::Eager] {
        bench_runner::cache::evict(&path).unwrap();
        let cold = E::load_with(&path, warmup).unwrap();
        assert_eq!(answers(&cold), want, "{} opened cold, {warmup}", E::NAME);
        drop(cold);
        bench_runner::cache::make_warm(&path).unwrap();
        let warm = E::load_with(&path, warmup).unwrap();
        assert_eq!(answers(&warm), want, "{} opened warm, {warmup}", E::NAME);
    }
}

macro_rules! conformance {
    ($module:ident, $engine:ty, $params:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn truncated_files() {
                truncations_are_errors::<$engine>($params);
            }
            #[test]
            fn flipped_bytes() {
                flipped_bytes_are_errors_or_valid::<$engine>($params);
            }
            #[test]
            fn garbage_files() {
                garbage_files_are_errors::<$engine>();
            }
            #[test]
            fn bad_vectors_and_arguments() {
                bad_vectors_and_arguments_are_errors::<$engine>($params);
            }
            #[test]
            fn duplicate_rows() {
                duplicate_rows_are_both_found::<$engine>($params);
            }
            #[test]
            fn cold_files() {
                cold_files_answer_as_warm_ones::<$engine>($params);
            }
            #[test]
            fn concurrent_queries() {
                concurrent_queries_match_sequential::<$engine>($params);
            }
            #[test]
            fn interrupted_save() {
                interrupted_save_keeps_the_previous_index::<$engine>(
                    $params,
                    concat!(stringify!($module), "::child_save"),
                );
            }
            #[test]
            #[ignore = "run as a child process by interrupted_save"]
            fn child_save() {
                child_save_fails::<$engine>($params);
            }
        }
    };
}

conformance!(linear, LinearIndex, Default::default());
conformance!(
    hnsw,
    HnswIndex,
    HnswParams {
        m: 12,
        ef_construction: 100,
        ..Default::default()
    }
);
conformance!(forest, ForestIndex, Default::default());

#[test]
fn duplicate_labels_are_allowed_and_rows_stay_distinct() {
    let vectors = Vectors::new(2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let g = Gallery::new(vectors, vec!["ann".into(), "ann".into()]).unwrap();
    assert_eq!(g.labels(), ["ann", "ann"]);
    assert_eq!(g.vectors().row(1), &[0.0, 1.0]);
}
