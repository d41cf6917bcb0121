//! Character classes with Python 3.11 / Unicode 14 semantics (tables generated from
//! Python's `str` methods and datatrove's constants, see `gen/gen_tables.py`).

use crate::tables;

/// A sorted table of inclusive code-point ranges with a 128-entry ASCII bitmap.
pub(crate) struct CharSet {
    ascii: u128,
    ranges: &'static [(u32, u32)],
}

impl CharSet {
    pub(crate) const fn new(ranges: &'static [(u32, u32)]) -> Self {
        let mut ascii: u128 = 0;
        let mut i = 0;
        while i < ranges.len() {
            let (lo, hi) = ranges[i];
            let mut c = lo;
            while c <= hi && c < 128 {
                ascii |= 1u128 << c;
                c += 1;
            }
            i += 1;
        }
        CharSet { ascii, ranges }
    }

    #[inline]
    pub(crate) fn contains(&self, c: char) -> bool {
        let cp = c as u32;
        if cp < 128 {
            return (self.ascii >> cp) & 1 == 1;
        }
        self.ranges
            .binary_search_by(|&(lo, hi)| {
                if hi < cp {
                    std::cmp::Ordering::Less
                } else if lo > cp {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

pub(crate) static PY_SPACE: CharSet = CharSet::new(tables::PY_SPACE);
pub(crate) static PY_ALPHA: CharSet = CharSet::new(tables::PY_ALPHA);
pub(crate) static UNICODE_P: CharSet = CharSet::new(tables::UNICODE_P);
pub(crate) static PUNCTUATION_SET: CharSet = CharSet::new(tables::PUNCTUATION_SET);
pub(crate) static TERMINAL_PUNCTUATION: CharSet = CharSet::new(tables::TERMINAL_PUNCTUATION);
pub(crate) static SENT_PUNCT: CharSet = CharSet::new(tables::SENT_PUNCT);
pub(crate) static PREFIX_FIRST: CharSet = CharSet::new(tables::PREFIX_FIRST);
pub(crate) static SUFFIX_LAST: CharSet = CharSet::new(tables::SUFFIX_LAST);
pub(crate) static INFIX_FIRST: CharSet = CharSet::new(tables::INFIX_FIRST);

/// Python `str.isspace()` for one character.
#[inline]
pub fn is_py_space(c: char) -> bool {
    PY_SPACE.contains(c)
}

/// Python `str.isalpha()` for one character.
#[inline]
pub fn is_py_alpha(c: char) -> bool {
    PY_ALPHA.contains(c)
}

/// datatrove's `TERMINAL_PUNCTUATION` (the FineWeb filter's default `stop_chars`).
pub fn terminal_punctuation() -> Vec<String> {
    let mut v = Vec::new();
    for &(lo, hi) in tables::TERMINAL_PUNCTUATION {
        for cp in lo..=hi {
            if let Some(c) = char::from_u32(cp) {
                v.push(c.to_string());
            }
        }
    }
    v
}

/// A regex character-class body (`\x{..}-\x{..}` items) for a range table.
pub(crate) fn class_body(ranges: &[(u32, u32)]) -> String {
    let mut s = String::new();
    for &(a, b) in ranges {
        if a == b {
            s.push_str(&format!("\\x{{{a:X}}}"));
        } else {
            s.push_str(&format!("\\x{{{a:X}}}-\\x{{{b:X}}}"));
        }
    }
    s
}
