//! Interchange with Python annoy: we open the files it writes (fixtures made by
//! `fixtures/scripts/make_annoy_fixtures.py`, with its answers) and it opens ours, and both
//! readers return the same neighbours for the same query and `search_k`.

use search_core::{SearchIndex, Vectors};
use search_forest::{ForestIndex, ForestParams, Metric};
use search_linear::LinearIndex;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

/// Checks our answers against annoy's answers (a JSON list of {query, n, search_k, ids,
/// distances}); returns how many lists were compared.
fn same_as_annoy(index: &ForestIndex, queries: &[Vec<f32>], answers: &Value) -> usize {
    let mut compared = 0;
    for a in answers.as_array().unwrap() {
        let q = &queries[a["query"].as_u64().unwrap() as usize];
        let n = a["n"].as_u64().unwrap() as usize;
        let search_k = a["search_k"].as_i64().unwrap();
        let search_k = (search_k > 0).then_some(search_k as usize);
        let got = index.nns_by_vector(q, n, search_k).unwrap();
        let ids: Vec<u32> = a["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let dists = floats(&a["distances"]);
        let got_ids: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            got_ids, ids,
            "query {} n {n} search_k {search_k:?}",
            a["query"]
        );
        for (g, d) in got.iter().zip(&dists) {
            assert!(
                (g.1 - d).abs() < 1e-5,
                "item {}: distance {} vs annoy's {d}",
                g.0,
                g.1
            );
        }
        compared += 1;
    }
    compared
}

#[test]
fn we_open_files_python_annoy_wrote_and_answer_like_it() {
    for (metric, name) in [
        (Metric::Angular, "angular"),
        (Metric::Euclidean, "euclidean"),
    ] {
        let dir = test_support::fixture("forest");
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("python_{name}.json"))).unwrap(),
        )
        .unwrap();
        let dim = json["dim"].as_u64().unwrap() as usize;
        let path = dir.join(format!("python_{name}.ann"));
        let index = ForestIndex::open(&path, dim, metric).unwrap();
        assert_eq!(index.len() as u64, json["n_items"].as_u64().unwrap());
        assert_eq!(index.n_trees() as u64, json["n_trees"].as_u64().unwrap());
        let items = rows(&json["items"]);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(index.item_vector(i).unwrap(), &item[..]);
        }
        assert!(index.item_vector(items.len()).is_none());
        let queries = rows(&json["queries"]);
        assert_eq!(same_as_annoy(&index, &queries, &json["answers"]), 48);

        if metric == Metric::Angular {
            // The dimension is found from the file alone, and cosine search with every item a
            // candidate is exact.
            let mut loaded = ForestIndex::load(&path).unwrap();
            assert_eq!(loaded.dim(), dim);
            loaded.set_knob(items.len() * loaded.n_trees()).unwrap();
            let flat: Vec<f32> = items.iter().flatten().copied().collect();
            let linear = LinearIndex::build(
                Vectors::new(dim, flat).unwrap().view(),
                &Default::default(),
                &(),
            )
            .unwrap();
            for q in &queries {
                let got = loaded.search(q, 10).unwrap();
                let want = linear.search(q, 10).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.score - w.score).abs() < 1e-5, "{g:?} vs {w:?}");
                }
            }
        }
    }
}

#[test]
fn python_annoy_opens_our_files_and_answers_like_us() {
    let dir = tempfile::tempdir().unwrap();
    // More than 4096 items: the top levels are built by the all-trees level pass.
    let (dim, n, n_trees) = (24, 6000, 8);
    let gallery = crate::common::gallery(n, dim, 31);
    let queries = crate::common::gallery(15, dim, 32);
    let queries: Vec<Vec<f32>> = queries
        .as_slice()
        .chunks_exact(dim)
        .map(<[f32]>::to_vec)
        .collect();
    let cases = [
        (4, -1),
        (10, 40),
        (10, 400),
        (10, 4000),
        (10, (n * n_trees) as i64),
    ];
    let spec = dir.path().join("queries.json");
    std::fs::write(
        &spec,
        serde_json::json!({"queries": queries, "cases": cases}).to_string(),
    )
    .unwrap();
    for (metric, name) in [
        (Metric::Angular, "angular"),
        (Metric::Euclidean, "euclidean"),
    ] {
        let forest = ForestIndex::build(
            gallery.view(),
            &ForestParams {
                n_trees,
                metric,
                ..Default::default()
            },
            &(),
        )
        .unwrap();
        let path = dir.path().join(format!("ours_{name}.ann"));
        forest.save(&path).unwrap();
        let out = test_support::run_python(
            "fixtures/scripts/check_annoy_interchange.py",
            [
                path.to_str().unwrap(),
                &dim.to_string(),
                name,
                spec.to_str().unwrap(),
            ],
        );
        let theirs: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(theirs["n_items"].as_u64().unwrap() as usize, n);
        assert_eq!(theirs["n_trees"].as_u64().unwrap() as usize, n_trees);
        for (i, item) in rows(&theirs["items"]).iter().enumerate() {
            assert_eq!(forest.item_vector(i).unwrap(), &item[..]);
        }
        assert_eq!(
            same_as_annoy(&forest, &queries, &theirs["answers"]),
            15 * cases.len()
        );
    }
}
