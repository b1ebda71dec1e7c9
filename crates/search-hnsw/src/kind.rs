//! The HNSW engine's entry in the engine registry.

use search_core::{EngineKind, Error, ParamSpec, Params};

use crate::index::{HnswIndex, HnswParams, KIND_BYTES, Space};

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "m",
        default: "48",
        about: "links per node on the upper layers (2M on layer 0)",
    },
    ParamSpec {
        name: "ef_construction",
        default: "200",
        about: "candidate list size while building",
    },
    ParamSpec {
        name: "ef",
        default: "100",
        about: "candidate list size while searching (the knob)",
    },
    ParamSpec {
        name: "seed",
        default: "100",
        about: "seed of the levels and the insertion order",
    },
    ParamSpec {
        name: "threads",
        default: "0",
        about: "build threads (0: all cores)",
    },
    ParamSpec {
        name: "quantize",
        default: "true",
        about: "walk on int8 and one-bit codes, re-rank in f32 (cosine only)",
    },
    ParamSpec {
        name: "space",
        default: "cosine",
        about: "cosine, ip (inner product) or l2 (squared distance), as hnswlib's",
    },
];

fn space_of(p: &Params) -> Result<Option<Space>, Error> {
    match p.get::<String>("space")?.as_deref() {
        None => Ok(None),
        Some("cosine") => Ok(Some(Space::Cosine)),
        Some("ip") => Ok(Some(Space::InnerProduct)),
        Some("l2") => Ok(Some(Space::L2)),
        Some(v) => Err(Error::InvalidArgument(format!(
            "parameter space = {v:?}: expected cosine, ip or l2"
        ))),
    }
}

/// The HNSW graph, for the registry (`search-engines`). It also opens hnswlib's files.
pub const KIND: EngineKind = EngineKind {
    // 2: construction screens with ε₀ 0.5 (7a32a65).
    build_revision: 2,
    open_foreign: Some(|path, dim, options| {
        options.check(&PARAMS[6..7])?;
        let space = space_of(options)?.unwrap_or(Space::Cosine);
        Ok(Box::new(HnswIndex::load_hnswlib(path, dim, space)?))
    }),
    ..EngineKind::of::<HnswIndex>(
        "HNSW graph (hnswlib's algorithm, memory-mapped, int8 walk screened by one-bit codes)",
        PARAMS,
        Some("ef"),
        |head| head.len() >= 16 && &head[..8] == b"FACESRCH" && &head[8..16] == KIND_BYTES,
    )
};

impl TryFrom<&Params> for HnswParams {
    type Error = Error;

    fn try_from(p: &Params) -> Result<Self, Error> {
        p.check(PARAMS)?;
        let d = HnswParams::default();
        Ok(HnswParams {
            m: p.get_or("m", d.m)?,
            ef_construction: p.get_or("ef_construction", d.ef_construction)?,
            ef: p.get_or("ef", d.ef)?,
            seed: p.get_or("seed", d.seed)?,
            threads: p.get_or("threads", d.threads)?,
            quantize: p.get_or("quantize", d.quantize)?,
            space: space_of(p)?.unwrap_or(d.space),
        })
    }
}
