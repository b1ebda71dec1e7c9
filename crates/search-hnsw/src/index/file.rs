//! Our index file: the meta words, the sections `save` writes, and `load_with`'s reading of
//! format versions 1 to 3, which checks the header and every section's size, then maps the file
//! in place (the links are not checked here: searches bounds-check as they go, `verify` checks
//! them all). It does not know how the graph is walked or grown; hnswlib's own file format is
//! in `crate::hnswlib`.

use std::path::Path;
use std::sync::Mutex;

use search_core::container::{Container, write_container};
use search_core::{Access, Error, Result, Warmup};

use super::{HnswIndex, KIND_BYTES, META_LEN, Meta, Space, Store, VERSION, round_up};
use crate::build::MAX_LEVEL;
use crate::quant::code_stride;
use crate::signs;

impl Meta {
    fn words(&self, upper_len: usize, has_labels: bool) -> [u64; META_LEN] {
        [
            self.dim as u64,
            self.stride as u64,
            self.len as u64,
            self.m as u64,
            self.m0 as u64,
            self.ef_construction as u64,
            self.ef as u64,
            self.seed,
            self.space.code(),
            u64::from(self.entry),
            self.max_level.map_or(u64::MAX, u64::from),
            self.deleted as u64,
            upper_len as u64,
            u64::from(has_labels),
            self.code_stride as u64,
            self.sign_words as u64,
        ]
    }
}

impl HnswIndex {
    /// The body of `SearchIndex::save`: writes every section of the view to `path`.
    pub(super) fn write_file(&self, path: &Path) -> Result<()> {
        let v = self.view();
        let meta = v.meta.words(v.upper.len(), v.labels.is_some());
        let mut sections: Vec<(&str, &[u8])> = vec![
            ("meta", bytemuck::cast_slice(&meta)),
            ("vectors", bytemuck::cast_slice(v.vecs)),
            ("links0", bytemuck::cast_slice(v.links0)),
            ("upper", bytemuck::cast_slice(v.upper)),
            ("upper_off", bytemuck::cast_slice(v.upper_off)),
            ("levels", v.levels),
            ("deleted", v.deleted),
        ];
        if let Some(l) = v.labels {
            sections.push(("labels", bytemuck::cast_slice(l)));
        }
        if let Some((codes, scales)) = v.codes {
            sections.push(("codes", bytemuck::cast_slice(codes)));
            sections.push(("scales", bytemuck::cast_slice(scales)));
        }
        if let Some(s) = v.signs {
            sections.push(("rotation", bytemuck::cast_slice(s.frame.flips)));
            sections.push(("mean", bytemuck::cast_slice(s.frame.mean)));
            sections.push(("signs", bytemuck::cast_slice(s.bits)));
            sections.push(("sign_factors", bytemuck::cast_slice(s.factors)));
        }
        write_container(path, KIND_BYTES, VERSION, &sections)
    }

    /// The body of `SearchIndex::load_with`: maps `path` and checks it.
    pub(super) fn read_file(path: &Path, warmup: Warmup) -> Result<HnswIndex> {
        let c = Container::open(path, KIND_BYTES, 1..=VERSION)?;
        let mut w = [0u64; META_LEN];
        let words = match c.version() {
            1 => META_LEN - 2,
            2 => META_LEN - 1,
            _ => META_LEN,
        };
        w[..words].copy_from_slice(c.section_exact::<u64>("meta", words)?);
        let bad = |m: String| Error::format(path, m);
        let [
            dim,
            stride,
            len,
            m,
            m0,
            efc,
            ef,
            seed,
            space,
            entry,
            max_level,
            deleted,
            upper_len,
            has_labels,
            code_stride_w,
            sign_words,
        ] = w;
        let space =
            Space::from_code(space).ok_or_else(|| bad(format!("unknown space code {space}")))?;
        if dim == 0 || dim > 1 << 20 || stride != round_up(dim as usize) as u64 {
            return Err(bad(format!(
                "impossible dimension {dim} (row stride {stride})"
            )));
        }
        if len > u64::from(u32::MAX) || !(2..=10_000).contains(&m) || m0 < m || m0 > 20_000 {
            return Err(bad(format!(
                "impossible shape: {len} items, M = {m}, M0 = {m0}"
            )));
        }
        if upper_len > u64::from(u32::MAX) || has_labels > 1 || deleted > len || ef == 0 {
            return Err(bad("corrupt header".into()));
        }
        let max_level = match max_level {
            u64::MAX if len == 0 => None,
            l if l <= u64::from(MAX_LEVEL) && entry < len => Some(l as u8),
            _ => {
                return Err(bad(format!(
                    "bad entry point {entry} / top level {max_level}"
                )));
            }
        };
        let (dim, stride, len, m, m0) = (
            dim as usize,
            stride as usize,
            len as usize,
            m as usize,
            m0 as usize,
        );
        let vec_len = len.checked_mul(stride);
        let l0_len = len.checked_mul(m0 + 1);
        let (Some(vec_len), Some(l0_len)) = (vec_len, l0_len) else {
            return Err(bad("sizes overflow".into()));
        };
        c.section_exact::<f32>("vectors", vec_len)?;
        c.section_exact::<u32>("links0", l0_len)?;
        c.section_exact::<u32>("upper", upper_len as usize)?;
        c.section_exact::<u32>("upper_off", len)?;
        c.section_exact::<u8>("levels", len)?;
        let del = c.section_exact::<u8>("deleted", len)?;
        let counted = del.iter().filter(|&&d| d != 0).count();
        if counted as u64 != deleted {
            return Err(bad(format!(
                "header says {deleted} deleted items, the file marks {counted}"
            )));
        }
        if code_stride_w != 0 {
            if code_stride_w != code_stride(dim) as u64 || space != Space::Cosine {
                return Err(bad(format!("bad int8 row size {code_stride_w}")));
            }
            let code_len = len
                .checked_mul(code_stride_w as usize)
                .ok_or_else(|| bad("sizes overflow".into()))?;
            c.section_exact::<u8>("codes", code_len)?;
            c.section_exact::<f32>("scales", len)?;
        }
        if sign_words != 0 {
            if sign_words != signs::words(dim) as u64 || space != Space::Cosine {
                return Err(bad(format!("bad sign code row size {sign_words}")));
            }
            let bits = len
                .checked_mul(sign_words as usize)
                .ok_or_else(|| bad("sizes overflow".into()))?;
            c.section_exact::<u64>("rotation", signs::ROUNDS * sign_words as usize)?;
            c.section_exact::<f32>("mean", dim)?;
            c.section_exact::<u64>("signs", bits)?;
            c.section_exact::<f32>("sign_factors", 4 * len)?;
        }
        if has_labels == 1 {
            c.section_exact::<u32>("labels", len)?;
        } else if c.section("labels").is_ok() {
            return Err(bad(
                "has a labels section the header does not announce".into()
            ));
        }
        let meta = Meta {
            dim,
            stride,
            len,
            m,
            m0,
            ef_construction: efc as usize,
            ef: ef as usize,
            seed,
            space,
            entry: entry as u32,
            max_level,
            deleted: counted,
            code_stride: code_stride_w as usize,
            sign_words: sign_words as usize,
        };
        let mut hot = [
            "links0",
            "upper",
            "upper_off",
            "levels",
            "deleted",
            "labels",
            "codes",
            "scales",
            "rotation",
            "mean",
            "signs",
            "sign_factors",
        ]
        .map(|name| (name, Access::Random))
        .to_vec();
        if meta.code_stride == 0 {
            hot.push(("vectors", Access::Random));
        }
        c.warm(&hot, warmup);
        Ok(HnswIndex {
            meta,
            store: Store::Mapped(c),
            pool: Mutex::new(Vec::new()),
        })
    }
}
