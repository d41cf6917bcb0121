//! Python `str` operations the filters use, with Python's definitions of whitespace
//! and line boundaries.

use crate::chars::is_py_space;

/// `str.strip()`.
#[inline]
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `str.lstrip()`.
#[inline]
pub fn lstrip(s: &str) -> &str {
    s.trim_start_matches(is_py_space)
}

/// `str.rstrip()`.
#[inline]
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// `str.split()` without arguments.
pub fn split_ws(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// `len(s)`: the number of code points.
#[inline]
pub fn py_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// `s.count(sub)` (non-overlapping, `sub` non-empty).
#[inline]
pub fn count(s: &str, sub: &str) -> usize {
    s.matches(sub).count()
}

#[inline]
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `str.splitlines()`: lines without their breaks; `\r\n` is one break; no empty
/// line after a final break.
pub fn splitlines(s: &str) -> SplitLines<'_> {
    SplitLines { s, pos: 0 }
}

pub struct SplitLines<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.s.len() {
            return None;
        }
        let rest = &self.s[self.pos..];
        let bytes = rest.as_bytes();
        // fast scan: ASCII breaks are bytes < 0x20; others start with 0xC2 or 0xE2
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\n' || b == b'\r' || b == 0x0b || b == 0x0c || (0x1c..=0x1e).contains(&b) {
                let line = &rest[..i];
                let mut brk = 1;
                if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    brk = 2;
                }
                self.pos += i + brk;
                return Some(line);
            }
            if b == 0xC2 || b == 0xE2 {
                if let Some(c) = rest[i..].chars().next() {
                    if is_line_break(c) {
                        let line = &rest[..i];
                        self.pos += i + c.len_utf8();
                        return Some(line);
                    }
                }
            }
            i += 1;
        }
        self.pos = self.s.len();
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_like_python() {
        let v: Vec<&str> = splitlines("a\r\nb\rc\n\nd\u{2028}e\x0bf\n").collect();
        assert_eq!(v, ["a", "b", "c", "", "d", "e", "f"]);
        assert_eq!(splitlines("").count(), 0);
        assert_eq!(splitlines("\n").collect::<Vec<_>>(), [""]);
        assert_eq!(splitlines("x").collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn strip_like_python() {
        assert_eq!(strip("\x1c a \u{a0}\u{3000}"), "a");
        assert_eq!(split_ws(" a\x1fb  c ").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(count("......", "..."), 2);
        assert_eq!(count("....", "..."), 1);
    }
}
