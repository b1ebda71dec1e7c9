//! The linear engine's entry in the engine registry.

use search_core::{EngineKind, Error, ParamSpec, Params};

use crate::index::{KIND_BYTES, LinearIndex, LinearParams};

const PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "compact_codes",
    default: "true",
    about: "keep int8 codes beside the f32 rows: a quarter of the bytes per scan, same answers",
}];

/// The exact engine, for the registry (`search-engines`).
pub const KIND: EngineKind = EngineKind::of::<LinearIndex>(
    "exact cosine search over every row (int8 codes with a proven bound skip most f32 reads)",
    PARAMS,
    None,
    |head| head.len() >= 16 && &head[..8] == b"FACESRCH" && &head[8..16] == KIND_BYTES,
);

impl TryFrom<&Params> for LinearParams {
    type Error = Error;

    fn try_from(p: &Params) -> Result<Self, Error> {
        p.check(PARAMS)?;
        let d = LinearParams::default();
        Ok(LinearParams {
            compact_codes: p.get_or("compact_codes", d.compact_codes)?,
        })
    }
}
