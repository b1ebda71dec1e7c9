//! The forest engine's entry in the engine registry.

use search_core::{EngineKind, Error, ParamSpec, Params};

use crate::build::Split;
use crate::index::{ForestIndex, ForestParams};
use crate::layout::Metric;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "n_trees",
        default: "20",
        about: "number of trees (annoy's n_trees)",
    },
    ParamSpec {
        name: "seed",
        default: "42",
        about: "seed of every random choice",
    },
    ParamSpec {
        name: "metric",
        default: "angular",
        about: "angular or euclidean node layout",
    },
    ParamSpec {
        name: "split",
        default: "two_means",
        about: "two_means, or best_of_N two-means runs",
    },
    ParamSpec {
        name: "two_means_iterations",
        default: "400",
        about: "points sampled per two-means run",
    },
    ParamSpec {
        name: "leaf_size",
        default: "64",
        about: "most items per leaf, or annoy for dim + 2",
    },
];

/// The Annoy forest, for the registry (`search-engines`). Its files are Annoy's; an angular
/// file's dimension is read from the file, other files open with `open_foreign`.
pub const KIND: EngineKind = EngineKind {
    open_foreign: Some(|path, dim, options| {
        options.check(&PARAMS[2..3])?;
        let metric = metric_of(options)?.unwrap_or(Metric::Angular);
        Ok(Box::new(ForestIndex::open(path, dim, metric)?))
    }),
    ..EngineKind::of::<ForestIndex>(
        "Annoy random-projection forest, in Annoy's own file format",
        PARAMS,
        Some("search_k"),
        // Annoy files have no magic: anything that is not one of our containers may be one.
        |head| !head.starts_with(b"FACESRCH"),
    )
};

fn metric_of(p: &Params) -> Result<Option<Metric>, Error> {
    match p.get::<String>("metric")?.as_deref() {
        None => Ok(None),
        Some("angular") => Ok(Some(Metric::Angular)),
        Some("euclidean") => Ok(Some(Metric::Euclidean)),
        Some(v) => Err(Error::InvalidArgument(format!(
            "parameter metric = {v:?}: expected angular or euclidean"
        ))),
    }
}

impl TryFrom<&Params> for ForestParams {
    type Error = Error;

    fn try_from(p: &Params) -> Result<Self, Error> {
        p.check(PARAMS)?;
        let d = ForestParams::default();
        let bad = |name: &str, v: &str, want: &str| {
            Error::InvalidArgument(format!("parameter {name} = {v:?}: expected {want}"))
        };
        let metric = metric_of(p)?.unwrap_or(d.metric);
        let split = match p.get::<String>("split")?.as_deref() {
            None => d.split,
            Some("two_means") => Split::TwoMeans,
            Some(v) => match v.strip_prefix("best_of_").and_then(|n| n.parse().ok()) {
                Some(n) => Split::BestOf(n),
                None => return Err(bad("split", v, "two_means or best_of_N")),
            },
        };
        let leaf_size = match p.get::<String>("leaf_size")?.as_deref() {
            None => d.leaf_size,
            Some("annoy") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| bad("leaf_size", v, "a count or annoy"))?,
            ),
        };
        Ok(ForestParams {
            n_trees: p.get_or("n_trees", d.n_trees)?,
            seed: p.get_or("seed", d.seed)?,
            metric,
            split,
            two_means_iterations: p.get_or("two_means_iterations", d.two_means_iterations)?,
            leaf_size,
        })
    }
}
