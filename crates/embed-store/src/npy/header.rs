//! A strict, linear-time reader for `.npy` array headers.
//!
//! The header is a Python dict literal such as
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (100, 512), }`. `npyz` parses it with a
//! general Python-literal grammar (`py_literal`, built on `pest`) that backtracks: a crafted
//! 1 KiB header kept it busy for more than ten minutes under the fuzzer, it takes about 100 µs on
//! an ordinary header, and it multiplies the shape unchecked. A loader of untrusted files needs
//! neither, so reading uses this parser, which accepts exactly the three keys numpy writes (any
//! order, either quote style, optional trailing comma) and nothing else; `npyz` still writes.

/// Byte order of an array's items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ByteOrder {
    Little,
    Big,
}

/// The kinds of item a gallery file can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `f4` / `f8`.
    Float,
    /// `U{n}`: `n` UTF-32 code units.
    Unicode,
    /// `S{n}`: `n` bytes.
    Bytes,
}

/// What a header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub descr: String,
    pub order: ByteOrder,
    pub kind: Kind,
    /// Bytes per item.
    pub item_bytes: u64,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Offset of the data, from the start of the array.
    pub data_offset: usize,
}

/// Parses the array header at the start of `bytes`; the message says what is wrong.
pub(crate) fn parse(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (no \\x93NUMPY magic)".into());
    }
    let (len, text_start) = match bytes[6] {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
            12,
        ),
        2 | 3 => return Err("truncated .npy header".into()),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let text = bytes
        .get(text_start..text_start.saturating_add(len))
        .ok_or_else(|| format!("the .npy header claims {len} bytes, more than the file holds"))?;
    let text = std::str::from_utf8(text).map_err(|_| "the .npy header is not text".to_string())?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => {
                descr = Some(
                    p.string()
                        .map_err(|e| format!("descr: {e} (structured dtypes are not supported)"))?,
                )
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key {other:?} in the .npy header")),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_space();
    if p.i != p.s.len() {
        return Err("text after the header's closing brace".into());
    }
    let descr = descr.ok_or("the .npy header has no 'descr'")?;
    let (order, kind, item_bytes) = parse_descr(&descr)?;
    Ok(Header {
        descr,
        order,
        kind,
        item_bytes,
        fortran_order: fortran.ok_or("the .npy header has no 'fortran_order'")?,
        shape: shape.ok_or("the .npy header has no 'shape'")?,
        data_offset: text_start + len,
    })
}

fn parse_descr(descr: &str) -> Result<(ByteOrder, Kind, u64), String> {
    let unsupported = || {
        format!(
            "unsupported dtype {descr:?} (float32/float64 vectors, unicode or byte-string labels)"
        )
    };
    let mut chars = descr.chars();
    let order = match chars.next() {
        Some('<' | '|' | '=') => ByteOrder::Little, // '=' is native: this crate reads little-endian machines' files
        Some('>') => ByteOrder::Big,
        _ => return Err(unsupported()),
    };
    let kind = match chars.next() {
        Some('f') => Kind::Float,
        Some('U') => Kind::Unicode,
        Some('S') => Kind::Bytes,
        _ => return Err(unsupported()),
    };
    let count: u64 = chars.as_str().parse().map_err(|_| unsupported())?;
    let item_bytes = match kind {
        Kind::Float if count == 4 || count == 8 => count,
        Kind::Float => return Err(unsupported()),
        Kind::Unicode => count.checked_mul(4).ok_or_else(unsupported)?,
        Kind::Bytes => count,
    };
    Ok((order, kind, item_bytes))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at byte {} of the .npy header",
                c as char, self.i
            ))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(format!(
                    "expected a string at byte {} of the .npy header",
                    self.i
                ));
            }
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote || c == b'\\')
            .ok_or("unterminated string in the .npy header")?;
        if self.s[start + len] == b'\\' {
            return Err("escapes are not supported in .npy header strings".into());
        }
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(value);
            }
        }
        Err(format!(
            "expected True or False at byte {} of the .npy header",
            self.i
        ))
    }

    /// A tuple of non-negative integers, e.g. `()`, `(5,)`, `(100, 512)`; the element count
    /// must fit in 64 bits.
    fn tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        let mut count: u64 = 1;
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            self.skip_space();
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
            let d: u64 = digits
                .parse()
                .map_err(|_| format!("expected a dimension at byte {start} of the .npy header"))?;
            self.eat(b'L'); // Python 2 long literals
            count = count
                .checked_mul(d)
                .ok_or("the shape has more elements than fit in 64 bits")?;
            if dims.len() == 32 {
                return Err("the shape has more than 32 dimensions".into());
            }
            dims.push(d);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_magic(text: &str) -> Vec<u8> {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(text.len() as u16).to_le_bytes());
        v.extend_from_slice(text.as_bytes());
        v
    }

    #[test]
    fn reads_what_numpy_writes() {
        let text = "{'descr': '<f8', 'fortran_order': False, 'shape': (100, 512), }          \n";
        let h = parse(&with_magic(text)).unwrap();
        assert_eq!(
            (h.kind, h.item_bytes, h.order, h.fortran_order),
            (Kind::Float, 8, ByteOrder::Little, false)
        );
        assert_eq!(h.shape, [100, 512]);
        assert_eq!(h.data_offset, 10 + text.len());
        let h = parse(&with_magic(
            "{\"shape\": (7,), \"fortran_order\": True, \"descr\": \"<U20\"}",
        ))
        .unwrap();
        assert_eq!(
            (h.kind, h.item_bytes, h.shape.as_slice()),
            (Kind::Unicode, 80, &[7][..])
        );
        assert_eq!(
            parse(&with_magic(
                "{'descr': '|S3', 'fortran_order': False, 'shape': ()}"
            ))
            .unwrap()
            .shape,
            Vec::<u64>::new()
        );
    }

    #[test]
    fn rejects_the_rest_quickly() {
        for text in [
            "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}",
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,)}",
            "{'descr': '<f8', 'fortran_order': False}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
            "{'descr': '<f8', 'fortran_order': Fals, 'shape': (1,)}",
            "{'descr': '<f8' 'fortran_order': False, 'shape': (1,)}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} x",
        ] {
            assert!(parse(&with_magic(text)).is_err(), "accepted {text}");
        }
        // Deep nesting, the kind of input that made a backtracking parser hang, fails at once.
        let nested = format!("{{'shape': {}", "(".repeat(60_000));
        assert!(parse(&with_magic(&nested)).is_err());
        assert!(parse(b"\x93NUMPY\x01\x00\xff\xff{").is_err());
    }
}
