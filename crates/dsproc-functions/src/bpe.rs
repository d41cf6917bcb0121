//! A fast encoder for byte-level BPE `tokenizer.json` files (GPT-2 style,
//! cl100k, o200k, Llama 3, Qwen2/3) whose ids equal the tokenizers crate's.
//!
//! [`FastEncoder::from_json`] accepts a file only when every stage is one this
//! module reproduces exactly, and otherwise says why it refuses (the caller then
//! uses the tokenizers crate):
//! - normalizer: none, or NFC/NFKC/NFD/NFKD (run through the tokenizers crate's
//!   own normalizer, skipped for ASCII text, which they leave unchanged);
//! - pre-tokenizer: `ByteLevel` with its regex (GPT-2 pattern), or
//!   `Sequence[Split(regex), ByteLevel(use_regex=false)]` with the cl100k /
//!   Llama 3 pattern, the Qwen2 one (single digits) or the o200k one; the split
//!   runs as a hand-written scanner (no backtracking engine) that gives the
//!   backtracking engine's pieces, `add_prefix_space` false;
//! - model: BPE without dropout, byte fallback, or subword prefix/suffix, with
//!   all 256 byte symbols in the vocabulary; merge rank = position in `merges`
//!   (a pair listed twice keeps its last rank, as the tokenizers crate's map
//!   does); `ignore_merges` (a piece that is a vocabulary token is one token);
//! - added tokens: split out of the raw text leftmost-longest, as the tokenizers
//!   crate does, when none is `normalized`, `lstrip`, `rstrip` or `single_word`;
//! - post-processor: none, `ByteLevel` (offsets only), or `TemplateProcessing`
//!   (alone or in a `Sequence` after `ByteLevel`) whose single template is
//!   special tokens around the sequence.
//!
//! Pieces are encoded by rank-based merging as tiktoken does (the lowest-rank
//! adjacent pair merged first, leftmost on ties: the same order as the tokenizers
//! crate's priority queue), with a per-thread cache of recent pieces.

use std::cell::RefCell;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde_json::Value;
use tokenizers::{NormalizedString, Normalizer, NormalizerWrapper};

/// Which implementation encodes a tokenizer's texts (recorded in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderPath {
    /// This module's byte-level BPE encoder.
    Fast,
    /// The Hugging Face tokenizers crate.
    HfTokenizers,
}

impl EncoderPath {
    /// The name the manifest records.
    pub fn name(self) -> &'static str {
        match self {
            EncoderPath::Fast => "fast_bpe",
            EncoderPath::HfTokenizers => "hf_tokenizers",
        }
    }
}

/// Why a tokenizer.json is not taken by the fast path (or could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fast BPE path not used: {0}")]
pub struct Refusal(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

/// An error while encoding one text.
#[derive(Debug, thiserror::Error)]
#[error("normalizing text for the fast BPE encoder: {0}")]
pub struct EncodeError(String);

/// The cl100k_base / Llama 3 split pattern.
pub const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2/Qwen3 split pattern (cl100k's with single digits).
pub const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The o200k_base (GPT-4o) split pattern.
pub const O200K_PATTERN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The pattern of the tokenizers crate's `ByteLevel` pre-tokenizer (GPT-2).
pub const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// A split pattern the scanner reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// [`GPT2_PATTERN`].
    Gpt2,
    /// [`CL100K_PATTERN`] (`max_digits` 3) or [`QWEN2_PATTERN`] (1).
    Cl100k {
        /// Digits per number piece.
        max_digits: usize,
    },
    /// [`O200K_PATTERN`].
    O200k,
}

impl Pattern {
    /// The pattern of a `Split` regex, if the scanner reproduces it.
    pub fn from_regex(re: &str) -> Option<Pattern> {
        match re {
            CL100K_PATTERN => Some(Pattern::Cl100k { max_digits: 3 }),
            QWEN2_PATTERN => Some(Pattern::Cl100k { max_digits: 1 }),
            GPT2_PATTERN => Some(Pattern::Gpt2),
            O200K_PATTERN => Some(Pattern::O200k),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- char classes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s` (Unicode White_Space).
    Space,
    /// Everything else.
    Other,
}

/// The classes the o200k pattern tells apart: its letter classes overlap
/// (`[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` and `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`), and
/// marks are in both of them and in `[^\s\p{L}\p{N}]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OClass {
    /// `\p{Lu}`, `\p{Lt}`: upper only.
    Upper,
    /// `\p{Ll}`: lower only.
    Lower,
    /// `\p{Lm}`, `\p{Lo}`: letters in both.
    Both,
    /// `\p{M}`: in both, and not a letter.
    Mark,
    /// `\p{N}`.
    Number,
    /// `\s`.
    Space,
    /// Everything else.
    Other,
}

impl OClass {
    /// In `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
    #[inline]
    fn upper(self) -> bool {
        matches!(self, OClass::Upper | OClass::Both | OClass::Mark)
    }
    /// In `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
    #[inline]
    fn lower(self) -> bool {
        matches!(self, OClass::Lower | OClass::Both | OClass::Mark)
    }
    /// In `[^\s\p{L}\p{N}]`.
    #[inline]
    fn punct(self) -> bool {
        matches!(self, OClass::Other | OClass::Mark)
    }
}

/// Sorted, disjoint ranges of the non-ASCII chars of each class (the rest are
/// `other`), from regex-syntax's Unicode tables: the tables the regex engines
/// behind the tokenizers crate's patterns use.
struct Classes<K: 'static = Class> {
    ascii: [K; 128],
    ranges: Vec<(u32, u32, K)>,
    other: K,
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new().parse(pattern).expect("a valid Unicode class");
    match hir.kind() {
        regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => {
            c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        other => unreachable!("{pattern} is a Unicode class, not {other:?}"),
    }
}

/// The table of disjoint classes given as regex classes.
fn build_classes<K: Copy + PartialEq>(defs: &[(&str, K)], other: K) -> Classes<K> {
    let mut ranges = Vec::new();
    for &(pat, class) in defs {
        ranges.extend(class_ranges(pat).into_iter().map(|(a, b)| (a, b, class)));
    }
    ranges.sort_unstable_by_key(|r| r.0);
    assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "overlapping classes");
    let mut ascii = [other; 128];
    for (i, slot) in ascii.iter_mut().enumerate() {
        let c = i as u32;
        if let Some(&(_, _, k)) = ranges.iter().find(|(a, b, _)| *a <= c && c <= *b) {
            *slot = k;
        }
    }
    Classes { ascii, ranges, other }
}

fn classes() -> &'static Classes {
    static C: std::sync::OnceLock<Classes> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        build_classes(&[(r"\p{L}", Class::Letter), (r"\p{N}", Class::Number), (r"\s", Class::Space)], Class::Other)
    })
}

fn o200k_classes() -> &'static Classes<OClass> {
    static C: std::sync::OnceLock<Classes<OClass>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        build_classes(
            &[
                (r"\p{Lu}", OClass::Upper),
                (r"\p{Lt}", OClass::Upper),
                (r"\p{Ll}", OClass::Lower),
                (r"\p{Lm}", OClass::Both),
                (r"\p{Lo}", OClass::Both),
                (r"\p{M}", OClass::Mark),
                (r"\p{N}", OClass::Number),
                (r"\s", OClass::Space),
            ],
            OClass::Other,
        )
    })
}

impl<K: Copy> Classes<K> {
    #[inline]
    fn of(&self, c: char) -> K {
        let u = c as u32;
        if u < 128 {
            return self.ascii[u as usize];
        }
        match self.ranges.binary_search_by(|(a, b, _)| {
            if *b < u {
                std::cmp::Ordering::Less
            } else if *a > u {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        }) {
            Ok(i) => self.ranges[i].2,
            Err(_) => self.other,
        }
    }
}

// ------------------------------------------------------------------- scanner

/// The char at byte `i` of `s` with its class and length (None at the end).
#[inline]
fn at<K: Copy>(cl: &Classes<K>, s: &str, i: usize) -> Option<(char, K, usize)> {
    let c = s[i..].chars().next()?;
    Some((c, cl.of(c), c.len_utf8()))
}

/// End of the run of chars of class `k` starting at `i`.
#[inline]
fn run_end<K: Copy + PartialEq>(cl: &Classes<K>, s: &str, mut i: usize, k: K) -> usize {
    while let Some((_, c, n)) = at(cl, s, i) {
        if c != k {
            break;
        }
        i += n;
    }
    i
}

/// Length of the contraction after an apostrophe at `i` (`s t re ve m ll d`),
/// case-insensitively when `fold` (Unicode simple folding: `ſ` is an `s`).
fn contraction(s: &str, i: usize, fold: bool) -> Option<usize> {
    let mut it = s[i..].chars();
    let a = it.next()?;
    let lower = |c: char| if fold { c.to_ascii_lowercase() } else { c };
    let a1 = if fold && a == '\u{17F}' { 's' } else { lower(a) };
    match a1 {
        's' | 't' | 'm' | 'd' => return Some(a.len_utf8()),
        _ => {}
    }
    let b = lower(it.next()?);
    match (a1, b) {
        ('r', 'e') | ('v', 'e') | ('l', 'l') => Some(2),
        _ => None,
    }
}

/// Calls `f` with each piece of `s` split by `pattern`, as the regex would.
pub fn split_pieces<'a>(pattern: Pattern, s: &'a str, mut f: impl FnMut(&'a str)) {
    let len = s.len();
    let mut i = 0;
    if pattern == Pattern::O200k {
        let cl = o200k_classes();
        while let Some((c, k, n)) = at(cl, s, i) {
            let end = o200k_piece(cl, s, i, c, k, n);
            debug_assert!(end > i && end <= len);
            f(&s[i..end]);
            i = end;
        }
        return;
    }
    let cl = classes();
    while let Some((c, k, n)) = at(cl, s, i) {
        let end = match pattern {
            Pattern::Gpt2 => gpt2_piece(cl, s, i, c, k, n),
            Pattern::Cl100k { max_digits } => cl100k_piece(cl, s, i, c, k, n, max_digits),
            Pattern::O200k => unreachable!("split above"),
        };
        debug_assert!(end > i && end <= len);
        f(&s[i..end]);
        i = end;
    }
}

/// `\s+(?!\S)|\s+` at a whitespace char `i` (after `\s*[\r\n]+` where the pattern has it).
#[inline]
fn space_piece<K: Copy + PartialEq>(cl: &Classes<K>, s: &str, i: usize, crlf: bool, space: K) -> usize {
    let j = run_end(cl, s, i, space);
    if crlf {
        // `\s*[\r\n]+`: up to the run's last \r or \n.
        if let Some(p) = s[i..j].rfind(['\r', '\n']) {
            return i + p + 1;
        }
    }
    if j == s.len() {
        return j;
    }
    // Give back the last whitespace char to the next piece.
    let last = s[i..j].chars().next_back().map_or(0, char::len_utf8);
    if j - last > i {
        j - last
    } else {
        j
    }
}

fn gpt2_piece(cl: &Classes, s: &str, i: usize, c: char, k: Class, n: usize) -> usize {
    if c == '\'' {
        if let Some(m) = contraction(s, i + 1, false) {
            return i + 1 + m;
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
    let (start, kind) = if c == ' ' {
        match at(cl, s, i + 1) {
            Some((_, k2, _)) if k2 != Class::Space => (i + 1, k2),
            _ => return space_piece(cl, s, i, false, Class::Space),
        }
    } else {
        (i, k)
    };
    if kind == Class::Space {
        return space_piece(cl, s, i, false, Class::Space);
    }
    let _ = n;
    run_end(cl, s, start, kind)
}

fn cl100k_piece(cl: &Classes, s: &str, i: usize, c: char, k: Class, n: usize, max_digits: usize) -> usize {
    if c == '\'' {
        if let Some(m) = contraction(s, i + 1, true) {
            return i + 1 + m;
        }
    }
    // `[^\r\n\p{L}\p{N}]?\p{L}+`
    if k == Class::Letter {
        return run_end(cl, s, i, Class::Letter);
    }
    let next = at(cl, s, i + n);
    if k != Class::Number && c != '\r' && c != '\n' {
        if let Some((_, Class::Letter, _)) = next {
            return run_end(cl, s, i + n, Class::Letter);
        }
    }
    // `\p{N}{1,3}`
    if k == Class::Number {
        return digits_end(cl, s, i, Class::Number, max_digits);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let start = if k == Class::Other {
        Some(i)
    } else if c == ' ' && matches!(next, Some((_, Class::Other, _))) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(st) = start {
        let mut j = run_end(cl, s, st, Class::Other);
        while matches!(s.as_bytes().get(j), Some(b'\r' | b'\n')) {
            j += 1;
        }
        return j;
    }
    space_piece(cl, s, i, true, Class::Space)
}

/// End of `\p{N}{1,max}` at a number char `i`.
#[inline]
fn digits_end<K: Copy + PartialEq>(cl: &Classes<K>, s: &str, i: usize, number: K, max: usize) -> usize {
    let mut j = i;
    for _ in 0..max {
        match at(cl, s, j) {
            Some((_, k, m)) if k == number => j += m,
            _ => break,
        }
    }
    j
}

/// End of the run of `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` chars from `i`.
#[inline]
fn o200k_lower_end(cl: &Classes<OClass>, s: &str, mut i: usize) -> usize {
    while let Some((_, k, n)) = at(cl, s, i) {
        if !k.lower() {
            break;
        }
        i += n;
    }
    i
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` at `i`, as a
/// backtracking engine matches it: the greedy upper run (to `j`) gives back one
/// char at a time until the lower part can start. At `j` itself that needs an
/// `\p{Ll}` (the only lower char that is not upper), and then the lower part runs
/// greedily on. Otherwise the upper run gives back to its last char in both
/// classes (`Lm Lo M`), the lower part is that one char (what follows it in the
/// run is `Lu Lt`, and after the run nothing lower), and it ends after it. A run
/// with no such char, and no `\p{Ll}` after it, fails.
#[inline]
fn o200k_upper_lower(cl: &Classes<OClass>, s: &str, mut j: usize) -> Option<usize> {
    let mut after_both = None;
    while let Some((_, k, n)) = at(cl, s, j) {
        if !k.upper() {
            if k == OClass::Lower {
                return Some(o200k_lower_end(cl, s, j + n));
            }
            break;
        }
        j += n;
        if k != OClass::Upper {
            after_both = Some(j);
        }
    }
    after_both
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` at `i`: both greedy
/// (nothing after them can fail).
#[inline]
fn o200k_upper_then_lower(cl: &Classes<OClass>, s: &str, i: usize) -> Option<usize> {
    let mut j = i;
    while let Some((_, k, n)) = at(cl, s, j) {
        if !k.upper() {
            break;
        }
        j += n;
    }
    (j > i).then(|| o200k_lower_end(cl, s, j))
}

/// `e` extended by `(?i:'s|'t|'re|'ve|'m|'ll|'d)?`.
#[inline]
fn with_contraction(s: &str, e: usize) -> usize {
    if s.as_bytes().get(e) == Some(&b'\'') {
        if let Some(m) = contraction(s, e + 1, true) {
            return e + 1 + m;
        }
    }
    e
}

fn o200k_piece(cl: &Classes<OClass>, s: &str, i: usize, c: char, k: OClass, n: usize) -> usize {
    // The two letter alternatives, each first with its optional
    // `[^\r\n\p{L}\p{N}]` (which a mark is too) and then without it.
    let prefix = match k {
        OClass::Other | OClass::Mark => true,
        OClass::Space => c != '\r' && c != '\n',
        _ => false,
    };
    if prefix {
        if let Some(e) = o200k_upper_lower(cl, s, i + n) {
            return with_contraction(s, e);
        }
    }
    if k.upper() || k.lower() {
        if let Some(e) = o200k_upper_lower(cl, s, i) {
            return with_contraction(s, e);
        }
    }
    if prefix {
        if let Some(e) = o200k_upper_then_lower(cl, s, i + n) {
            return with_contraction(s, e);
        }
    }
    if k.upper() {
        if let Some(e) = o200k_upper_then_lower(cl, s, i) {
            return with_contraction(s, e);
        }
    }
    // `\p{N}{1,3}`
    if k == OClass::Number {
        return digits_end(cl, s, i, OClass::Number, 3);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let start = if k.punct() {
        Some(i)
    } else if c == ' ' && matches!(at(cl, s, i + 1), Some((_, k2, _)) if k2.punct()) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(mut j) = start {
        while let Some((_, k, n)) = at(cl, s, j) {
            if !k.punct() {
                break;
            }
            j += n;
        }
        while matches!(s.as_bytes().get(j), Some(b'\r' | b'\n' | b'/')) {
            j += 1;
        }
        return j;
    }
    space_piece(cl, s, i, true, OClass::Space)
}

// ----------------------------------------------------------------- byte level

/// GPT-2's `bytes_to_unicode`: the char each byte is written as in the vocabulary.
pub fn byte_to_char() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).expect("a Latin-1 char")
        } else {
            n += 1;
            char::from_u32(255 + n).expect("a char above Latin-1")
        };
    }
    out
}

/// The bytes a byte-level vocabulary string stands for (None if it has a char
/// outside the byte alphabet: such a token is never produced from text).
fn token_bytes(tok: &str, rev: &HashMap<char, u8>) -> Option<Vec<u8>> {
    tok.chars().map(|c| rev.get(&c).copied()).collect()
}

// -------------------------------------------------------------------- encoder

/// A byte-level BPE encoder built from a tokenizer.json (see the module docs).
pub struct FastEncoder {
    /// (left id, right id) → (merge rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The id of each single byte.
    byte_ids: [u32; 256],
    /// Byte strings of the vocabulary (for `ignore_merges`).
    vocab: HashMap<Vec<u8>, u32>,
    ignore_merges: bool,
    pattern: Pattern,
    normalizer: Option<NormalizerWrapper>,
    /// Added tokens, matched leftmost-longest in the raw text, and their ids.
    added: Option<(AhoCorasick, Vec<u32>)>,
    /// Ids the post-processor puts before and after the sequence.
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    /// Tells this encoder's entries in the per-thread cache apart.
    id: u64,
}

impl std::fmt::Debug for FastEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastEncoder")
            .field("vocab", &self.vocab.len())
            .field("merges", &self.merges.len())
            .field("pattern", &self.pattern)
            .field("ignore_merges", &self.ignore_merges)
            .finish_non_exhaustive()
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn flag(v: &Value, key: &str, default: bool) -> Result<bool, Refusal> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => refuse(format!("{key} is {other}")),
    }
}

/// The pattern a pre-tokenizer amounts to.
fn pre_tokenizer(v: &Value) -> Result<Pattern, Refusal> {
    let byte_level = |b: &Value, want_regex: bool| -> Result<(), Refusal> {
        if flag(b, "add_prefix_space", true)? {
            return refuse("ByteLevel add_prefix_space is true");
        }
        if flag(b, "use_regex", true)? != want_regex {
            return refuse("ByteLevel use_regex is not as expected");
        }
        Ok(())
    };
    match str_field(v, "type") {
        Some("ByteLevel") => {
            byte_level(v, true)?;
            Ok(Pattern::Gpt2)
        }
        Some("Sequence") => {
            let Some([split, bl]) = v.get("pretokenizers").and_then(Value::as_array).map(Vec::as_slice) else {
                return refuse("pre_tokenizer Sequence is not [Split, ByteLevel]");
            };
            if str_field(split, "type") != Some("Split") || str_field(bl, "type") != Some("ByteLevel") {
                return refuse("pre_tokenizer Sequence is not [Split, ByteLevel]");
            }
            byte_level(bl, false)?;
            let Some(re) = split.get("pattern").and_then(|p| str_field(p, "Regex")) else {
                return refuse("Split pattern is not a regex");
            };
            let Some(pattern) = Pattern::from_regex(re) else {
                return refuse(format!("Split regex {re:?} is not one the scanner reproduces"));
            };
            // The patterns cover every char: matches are the pieces either way.
            match (str_field(split, "behavior"), flag(split, "invert", false)?) {
                (Some("Isolated"), false) | (Some("Removed"), true) => Ok(pattern),
                (b, i) => refuse(format!("Split behavior {b:?} invert {i}")),
            }
        }
        other => refuse(format!("pre_tokenizer {other:?}")),
    }
}

/// The ids a post-processor adds around a single sequence.
fn post_processor(v: &Value) -> Result<(Vec<u32>, Vec<u32>), Refusal> {
    match str_field(v, "type") {
        None if v.is_null() => Ok((Vec::new(), Vec::new())),
        Some("ByteLevel") => Ok((Vec::new(), Vec::new())),
        Some("Sequence") => {
            let mut out = (Vec::new(), Vec::new());
            let mut templates = 0;
            for p in v.get("processors").and_then(Value::as_array).into_iter().flatten() {
                let (pre, suf) = post_processor(p)?;
                if str_field(p, "type") == Some("TemplateProcessing") {
                    templates += 1;
                    out = (pre, suf);
                }
            }
            if templates > 1 {
                return refuse("more than one TemplateProcessing");
            }
            Ok(out)
        }
        Some("TemplateProcessing") => {
            let Some(single) = v.get("single").and_then(Value::as_array) else {
                return refuse("TemplateProcessing without a single template");
            };
            let specials = v.get("special_tokens");
            let (mut pre, mut suf) = (Vec::new(), Vec::new());
            let mut seen_seq = false;
            for item in single {
                if let Some(seq) = item.get("Sequence") {
                    if seen_seq || str_field(seq, "id") != Some("A") {
                        return refuse("TemplateProcessing single template is not specials around A");
                    }
                    seen_seq = true;
                } else if let Some(sp) = item.get("SpecialToken") {
                    let name = str_field(sp, "id").unwrap_or_default();
                    let Some(ids) =
                        specials.and_then(|s| s.get(name)).and_then(|t| t.get("ids")).and_then(Value::as_array)
                    else {
                        return refuse(format!("TemplateProcessing special token {name:?} has no ids"));
                    };
                    let target = if seen_seq { &mut suf } else { &mut pre };
                    for id in ids {
                        let Some(id) = id.as_u64().and_then(|i| u32::try_from(i).ok()) else {
                            return refuse("TemplateProcessing id is not a u32");
                        };
                        target.push(id);
                    }
                } else {
                    return refuse("TemplateProcessing item is not Sequence or SpecialToken");
                }
            }
            if !seen_seq {
                return refuse("TemplateProcessing single template has no sequence");
            }
            Ok((pre, suf))
        }
        other => refuse(format!("post_processor {other:?}")),
    }
}

impl FastEncoder {
    /// Builds the encoder from a tokenizer.json's bytes, or says why the fast
    /// path does not reproduce this file.
    pub fn from_json(bytes: &[u8]) -> Result<FastEncoder, Refusal> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| Refusal(format!("not JSON: {e}")))?;
        // Normalizer.
        let normalizer = match v.get("normalizer") {
            None | Some(Value::Null) => None,
            Some(n) => match str_field(n, "type") {
                Some("NFC" | "NFKC" | "NFD" | "NFKD") => Some(
                    serde_json::from_value::<NormalizerWrapper>(n.clone())
                        .map_err(|e| Refusal(format!("normalizer: {e}")))?,
                ),
                other => return refuse(format!("normalizer {other:?}")),
            },
        };
        let pattern = pre_tokenizer(v.get("pre_tokenizer").unwrap_or(&Value::Null))?;
        let (prefix, suffix) = post_processor(v.get("post_processor").unwrap_or(&Value::Null))?;
        // Model.
        let Some(model) = v.get("model") else { return refuse("no model") };
        if str_field(model, "type").is_some_and(|t| t != "BPE") {
            return refuse(format!("model {:?}", str_field(model, "type")));
        }
        if model.get("dropout").is_some_and(|d| !d.is_null()) {
            return refuse("BPE dropout");
        }
        if flag(model, "byte_fallback", false)? {
            return refuse("BPE byte_fallback");
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if str_field(model, key).is_some_and(|s| !s.is_empty()) {
                return refuse(format!("BPE {key}"));
            }
        }
        let ignore_merges = flag(model, "ignore_merges", false)?;
        let Some(vocab_json) = model.get("vocab").and_then(Value::as_object) else {
            return refuse("BPE vocab is not a map");
        };
        let b2c = byte_to_char();
        let rev: HashMap<char, u8> = b2c.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        let mut str_ids: HashMap<&str, u32> = HashMap::with_capacity(vocab_json.len());
        let mut vocab: HashMap<Vec<u8>, u32> = HashMap::with_capacity(vocab_json.len());
        for (tok, id) in vocab_json {
            let Some(id) = id.as_u64().and_then(|i| u32::try_from(i).ok()) else {
                return refuse(format!("vocab id of {tok:?} is not a u32"));
            };
            str_ids.insert(tok.as_str(), id);
            if let Some(b) = token_bytes(tok, &rev) {
                vocab.insert(b, id);
            }
        }
        let mut byte_ids = [0u32; 256];
        for (b, c) in b2c.iter().enumerate() {
            let Some(&id) = str_ids.get(c.to_string().as_str()) else {
                return refuse(format!("byte {b} ({c:?}) is not in the vocabulary"));
            };
            byte_ids[b] = id;
        }
        let Some(merges_json) = model.get("merges").and_then(Value::as_array) else {
            return refuse("BPE merges is not a list");
        };
        let mut merges = HashMap::with_capacity(merges_json.len());
        for (rank, m) in merges_json.iter().enumerate() {
            let (a, b) = match m {
                Value::String(s) => match s.split_once(' ') {
                    Some(p) => p,
                    None => return refuse(format!("merge {s:?} has no space")),
                },
                Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return refuse("merge pair is not two strings"),
                },
                _ => return refuse("merge is not a string or a pair"),
            };
            let (Some(&ia), Some(&ib)) = (str_ids.get(a), str_ids.get(b)) else {
                return refuse(format!("merge {a:?} {b:?} has a token outside the vocabulary"));
            };
            let Some(&im) = str_ids.get(format!("{a}{b}").as_str()) else {
                return refuse(format!("merge {a:?} {b:?} makes a token outside the vocabulary"));
            };
            let Ok(rank) = u32::try_from(rank) else { return refuse("too many merges") };
            merges.insert((ia, ib), (rank, im));
        }
        // Added tokens.
        let mut patterns = Vec::new();
        let mut ids = Vec::new();
        for t in v.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            let Some(content) = str_field(t, "content") else { return refuse("added token without content") };
            for key in ["lstrip", "rstrip", "single_word", "normalized"] {
                if flag(t, key, false)? {
                    return refuse(format!("added token {content:?} has {key}"));
                }
            }
            let Some(id) = t.get("id").and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()) else {
                return refuse(format!("added token {content:?} has no u32 id"));
            };
            if content.is_empty() {
                continue;
            }
            patterns.push(content.to_string());
            ids.push(id);
        }
        let added = if patterns.is_empty() {
            None
        } else {
            let ac = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .map_err(|e| Refusal(format!("added tokens: {e}")))?;
            Some((ac, ids))
        };
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Ok(FastEncoder {
            merges,
            byte_ids,
            vocab,
            ignore_merges,
            pattern,
            normalizer,
            added,
            prefix,
            suffix,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Appends the ids of `text` to `out`, with the post-processor's special
    /// tokens when `add_special_tokens` (as the tokenizers crate's `encode`).
    pub fn encode(&self, text: &str, add_special_tokens: bool, out: &mut Vec<u32>) -> Result<(), EncodeError> {
        if add_special_tokens {
            out.extend_from_slice(&self.prefix);
        }
        match &self.added {
            None => self.encode_segment(text, out)?,
            Some((ac, ids)) => {
                let mut last = 0;
                for m in ac.find_iter(text) {
                    self.encode_segment(&text[last..m.start()], out)?;
                    out.push(ids[m.pattern().as_usize()]);
                    last = m.end();
                }
                self.encode_segment(&text[last..], out)?;
            }
        }
        if add_special_tokens {
            out.extend_from_slice(&self.suffix);
        }
        Ok(())
    }

    /// A text between added tokens: normalized, split, and each piece merged.
    fn encode_segment(&self, text: &str, out: &mut Vec<u32>) -> Result<(), EncodeError> {
        if text.is_empty() {
            return Ok(());
        }
        let normalized;
        let text = match &self.normalizer {
            Some(n) if !text.is_ascii() => {
                let mut ns = NormalizedString::from(text);
                n.normalize(&mut ns).map_err(|e| EncodeError(e.to_string()))?;
                normalized = ns.get().to_string();
                normalized.as_str()
            }
            _ => text,
        };
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != self.id {
                c.0 = self.id;
                c.1.clear();
            }
            split_pieces(self.pattern, text, |piece| self.encode_piece(piece.as_bytes(), &mut c.1, out));
        });
        Ok(())
    }

    fn encode_piece(&self, piece: &[u8], cache: &mut PieceCache, out: &mut Vec<u32>) {
        if piece.len() == 1 {
            out.push(self.byte_ids[piece[0] as usize]);
            return;
        }
        if self.ignore_merges {
            if let Some(&id) = self.vocab.get(piece) {
                out.push(id);
                return;
            }
        }
        if piece.len() <= MAX_CACHED {
            if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
                return;
            }
        }
        let start = out.len();
        if piece.len() <= 64 {
            self.merge_small(piece, out);
        } else {
            self.merge_heap(piece, out);
        }
        if piece.len() <= MAX_CACHED {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(piece.into(), out[start..].into());
        }
    }

    #[inline]
    fn rank(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        self.merges.get(&(a, b)).copied()
    }

    /// Quadratic merging (tiktoken's) for short pieces.
    fn merge_small(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = piece.iter().map(|b| self.byte_ids[*b as usize]).collect();
        // ranks[i]: the merge of ids[i], ids[i+1].
        let mut ranks: Vec<Option<(u32, u32)>> = ids.windows(2).map(|w| self.rank(w[0], w[1])).collect();
        loop {
            let mut best: Option<(usize, u32, u32)> = None;
            for (i, r) in ranks.iter().enumerate() {
                if let Some((rank, id)) = *r {
                    if best.is_none_or(|(_, br, _)| rank < br) {
                        best = Some((i, rank, id));
                    }
                }
            }
            let Some((i, _, id)) = best else { break };
            ids[i] = id;
            ids.remove(i + 1);
            ranks.remove(i);
            if i + 1 < ids.len() {
                ranks[i] = self.rank(ids[i], ids[i + 1]);
            }
            if i > 0 {
                ranks[i - 1] = self.rank(ids[i - 1], ids[i]);
            }
        }
        out.extend_from_slice(&ids);
    }

    /// Priority-queue merging (the tokenizers crate's order) for long pieces.
    fn merge_heap(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        let mut ids: Vec<u32> = piece.iter().map(|b| self.byte_ids[*b as usize]).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some((rank, id)) = self.rank(ids[i], ids[i + 1]) {
                heap.push(std::cmp::Reverse((rank, i, ids[i + 1], id)));
            }
        }
        while let Some(std::cmp::Reverse((_, i, right_id, new_id))) = heap.pop() {
            if !alive[i] || next[i] >= n {
                continue;
            }
            let j = next[i];
            // Stale entry: either side changed since it was pushed.
            if ids[j] != right_id || self.rank(ids[i], ids[j]).is_none_or(|(_, m)| m != new_id) {
                continue;
            }
            ids[i] = new_id;
            alive[j] = false;
            next[i] = next[j];
            if next[j] < n {
                prev[next[j]] = i;
            }
            if prev[i] < n {
                let p = prev[i];
                if let Some((rank, id)) = self.rank(ids[p], ids[i]) {
                    heap.push(std::cmp::Reverse((rank, p, ids[i], id)));
                }
            }
            if next[i] < n {
                let q = next[i];
                if let Some((rank, id)) = self.rank(ids[i], ids[q]) {
                    heap.push(std::cmp::Reverse((rank, i, ids[q], id)));
                }
            }
        }
        let mut i = 0;
        while i < n {
            out.push(ids[i]);
            i = next[i];
        }
    }
}

/// Recent pieces' ids (piece bytes → ids).
type PieceCache = HashMap<Box<[u8]>, Box<[u32]>>;

/// Pieces up to this many bytes are cached.
const MAX_CACHED: usize = 64;
/// The per-thread cache is cleared when it holds this many pieces.
const CACHE_ENTRIES: usize = 1 << 16;

thread_local! {
    static CACHE: RefCell<(u64, PieceCache)> = RefCell::new((0, HashMap::new()));
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use super::*;

    /// `DSPROC_TOKENIZERS/<kind>/tokenizer.json`; None (SKIP) outside CI when absent.
    fn tokenizer_file(kind: &str) -> Option<PathBuf> {
        let missing = |why: String| {
            assert!(std::env::var_os("CI").is_none(), "missing prerequisite under CI: {why}");
            eprintln!("SKIP {why}");
            None
        };
        let Some(dir) = std::env::var_os("DSPROC_TOKENIZERS") else {
            return missing(format!("{kind}: DSPROC_TOKENIZERS is not set (scripts/fetch-tokenizers.sh)"));
        };
        let p = Path::new(&dir).join(kind).join("tokenizer.json");
        if !p.exists() {
            return missing(format!("{kind}: {} is missing (run scripts/fetch-tokenizers.sh)", p.display()));
        }
        Some(p)
    }

    /// The load-time self-check passes for an encoder built from the same file as
    /// the crate's tokenizer and catches one whose ids differ (built from another file).
    #[test]
    fn the_load_self_check_accepts_the_same_file_and_catches_different_ids() {
        let (Some(gpt2), Some(cl100k)) = (tokenizer_file("bpe"), tokenizer_file("cl100k")) else { return };
        let fast = FastEncoder::from_json(&std::fs::read(&gpt2).unwrap()).unwrap();
        let same = tokenizers::Tokenizer::from_file(&gpt2).unwrap();
        assert_eq!(crate::tokenize::fast_agrees(&fast, &same), Ok(()));
        let other = tokenizers::Tokenizer::from_file(&cl100k).unwrap();
        let why = crate::tokenize::fast_agrees(&fast, &other).unwrap_err();
        assert!(why.contains("differ from the tokenizers crate"), "{why}");
    }

    /// Hand-made texts for the scanner's corners.
    fn tricky() -> Vec<String> {
        let mut v: Vec<String> = [
            "Hello world! It's, we'LL, they'RE, I'M, she'd, 'S 'T 'Ve 'll 'x '' ſ 'ſ don'ſ",
            "  leading and trailing spaces   ",
            "tabs\t\tand\t \tmixed \t\nlines\r\nCRLF\r\n\r\n  \r\n\tend\n",
            "digits 1 12 123 1234 12345678901234567890 ١٢٣٤٥ ⅣⅫ ½¾ 3.14159 0x1F",
            "中文文本，测试。日本語のテキスト、カタカナ。한국어 텍스트입니다.",
            "emoji 😀😃🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ text",
            "العربية نص تجريبي مع أرقام ٣٤٥ and mixed",
            "combining e\u{301} a\u{308}\u{304} \u{300}\u{301}x Zalgo: Z̴̡̢a̵l̷g̸o̶",
            "NFKC: ﬁ ﬂ ① ² ｆｕｌｌｗｉｄｔｈ Å Ω ㍿ ...",
            "control \u{0}\u{1}\u{7f}\u{85}\u{a0}\u{2028}\u{2029}\u{3000}\u{feff} chars",
            "punct!!!\n\n???...---///\r\n(a)[b]{c} <tag attr=\"x\">&amp;</tag> // comment\n",
            "\n\n\n\n",
            "                                                                        x",
            "a\u{a0}\u{a0}b \u{3000}c",
            "",
            " ",
            "'",
            "x'",
            // o200k's letter classes: Lt, Georgian (Mtavruli Lu, Mkhedruli Ll), kana
            // with marks, combining accents, Devanagari (Lo with Mn/Mc), Lm.
            "ǅemal ǅEMAL Džungla DžUNGLA ǈ ǋx ᾈᾀ ᾈΑ",
            "ქართული ენა ᲥᲐᲠᲗᲣᲚᲘ Ⴕართ ᲥართულI",
            "カ\u{3099}キ\u{309A} がぎ ハ゜ ーーー カタカナー's ｶﾞｷﾞ 々ゝ ABCカナ カナABC ABCカナDEF",
            "e\u{301}E\u{301} E\u{301}LLO Ce\u{301}\u{301}st \u{301}\u{301}A !\u{301} !!\u{301}x  \u{301}X \u{301}",
            "\u{301}ABC \u{301}ABCdef A\u{301}B's ABC\u{301}DEF'LL \u{20DD}\u{488}A \u{93E}x",
            "हिन्दी नमस्ते क्षत्रिय हिन्दी's ८९०१२",
            "ʰABC AʰBʰC AʰB'S ABCʰdef ABCʰ ABCʰDEF ʰ ʰʰ'd Aあ'LL ǅ'D カ's 1's !'s",
            "IT'S THEY'RE WE'VE I'M YOU'LL HE'D it'S it'Re they'rE we'Ve I'm you'LL he'D 'S'T 'RE'VE ABC'ſ abc'Ll",
            "1 12 123 1234 12345 1234567 ١٢٣٤ a1b2 x12y A123B ½¾ ①②③④",
            "a/b // ///x !/\n/ ?\r\n/\r\n// .\n\n/ x;\r\n\r\n y -/-/ \n/ <br/>\n ! /\n",
            "a  \n  b\t\n\tc \r\n d   \n\n   e\u{a0}\n\u{3000}\r\n \u{85}x\u{2028}\u{b}\u{c}",
            "end   ",
            "end\t \t",
            "x \u{a0}",
            "\r\n\r\n",
            "'S",
            "'re",
            "\u{301}",
            "ABC",
            "ABC's",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(" ".repeat(5000) + "y" + &"\n".repeat(300) + &"\t ".repeat(400));
        v.push("ab".repeat(3000));
        v.push("!".repeat(2000) + "\r\n");
        v
    }

    /// Real documents: /usr/share/doc (text and .gz), /usr/include headers,
    /// up to `budget` bytes.
    fn corpus(budget: usize) -> Vec<String> {
        let mut files = Vec::new();
        for root in ["/usr/share/doc", "/usr/include"] {
            let mut stack = vec![PathBuf::from(root)];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else { continue };
                let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for p in entries {
                    let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
                    if m.is_dir() {
                        stack.push(p);
                    } else if m.is_file() {
                        files.push(p);
                    }
                }
            }
        }
        let mut docs = Vec::new();
        let mut total = 0;
        for p in files {
            let mut bytes = Vec::new();
            let Ok(f) = std::fs::File::open(&p) else { continue };
            let ok = if p.extension().is_some_and(|e| e == "gz") {
                flate2::read::GzDecoder::new(f).take(1 << 20).read_to_end(&mut bytes).is_ok()
            } else {
                f.take(1 << 20).read_to_end(&mut bytes).is_ok()
            };
            let Ok(text) = String::from_utf8(bytes) else { continue };
            if !ok || text.is_empty() {
                continue;
            }
            total += text.len();
            docs.push(text);
            if total >= budget {
                break;
            }
        }
        docs
    }

    fn budget() -> usize {
        std::env::var("DSPROC_BPE_TEST_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(4 << 20)
    }

    /// Ids of the fast path equal the tokenizers crate's on every text.
    fn same_ids(kind: &str) {
        let Some(path) = tokenizer_file(kind) else { return };
        let bytes = std::fs::read(&path).unwrap();
        let fast = FastEncoder::from_json(&bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let mut hf = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
        hf.with_padding(None);
        hf.with_truncation(None).unwrap();
        let mut texts = tricky();
        // Every added token, alone, glued to text and twice in a row.
        let added: Vec<String> = hf.get_added_tokens_decoder().values().map(|t| t.content.clone()).collect();
        for a in &added {
            texts.push(format!("x{a}y {a}{a}\n{a} z"));
        }
        let docs = corpus(budget());
        let n_docs = docs.len();
        texts.extend(docs);
        let (mut n_tokens, mut n_bytes) = (0usize, 0usize);
        let mut out = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            for special in [false, true] {
                out.clear();
                fast.encode(t, special, &mut out).unwrap();
                let want = hf.encode_fast(t.as_str(), special).unwrap();
                if out != want.get_ids() {
                    let at =
                        out.iter().zip(want.get_ids()).position(|(a, b)| a != b).unwrap_or(out.len().min(want.len()));
                    panic!(
                        "{kind}: text {i} (special {special}) differs at token {at}: fast {:?} hf {:?}; text near: {:?}",
                        &out[at.saturating_sub(3)..(at + 5).min(out.len())],
                        &want.get_ids()[at.saturating_sub(3)..(at + 5).min(want.len())],
                        want.get_offsets().get(at).map(|(a, b)| &t[*a.min(b)..(*b).min(t.len())])
                    );
                }
            }
            n_tokens += out.len();
            n_bytes += t.len();
        }
        eprintln!(
            "{kind}: {} texts ({n_docs} real documents, {n_bytes} bytes), {n_tokens} tokens: ids equal",
            texts.len()
        );
        assert!(n_docs > 0, "{kind}: no real documents found under /usr/share/doc or /usr/include");
    }

    #[test]
    fn gpt2_style_bpe_ids_equal_hf() {
        same_ids("bpe");
    }

    #[test]
    fn cl100k_ids_equal_hf() {
        same_ids("cl100k");
    }

    #[test]
    fn llama3_ids_equal_hf() {
        same_ids("llama3");
    }

    #[test]
    fn qwen3_ids_equal_hf() {
        same_ids("qwen3");
    }

    #[test]
    fn o200k_ids_equal_hf() {
        let Some(path) = tokenizer_file("o200k") else { return };
        let bytes = std::fs::read(&path).unwrap();
        let fast = FastEncoder::from_json(&bytes).unwrap();
        assert_eq!(fast.pattern, Pattern::O200k);
        let hf = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
        assert_eq!(crate::tokenize::fast_agrees(&fast, &hf), Ok(()));
        same_ids("o200k");
    }

    #[test]
    fn refuses_what_it_does_not_reproduce() {
        if let Some(p) = tokenizer_file("wordpiece") {
            assert!(FastEncoder::from_json(&std::fs::read(p).unwrap()).is_err());
        }
        let base = r#"{"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},
            "post_processor":null,"added_tokens":[],"model":{"type":"BPE","vocab":{},"merges":[]}}"#;
        let mut v: Value = serde_json::from_str(base).unwrap();
        // No byte symbols in the vocabulary.
        assert!(FastEncoder::from_json(v.to_string().as_bytes()).unwrap_err().0.contains("byte 0"));
        let vocab: serde_json::Map<String, Value> =
            byte_to_char().iter().enumerate().map(|(i, c)| (c.to_string(), Value::from(i))).collect();
        v["model"]["vocab"] = Value::Object(vocab);
        assert!(FastEncoder::from_json(v.to_string().as_bytes()).is_ok());
        for (ptr, val) in [
            ("/model/dropout", Value::from(0.1)),
            ("/model/byte_fallback", Value::from(true)),
            ("/model/continuing_subword_prefix", Value::from("##")),
            ("/pre_tokenizer/add_prefix_space", Value::from(true)),
            ("/normalizer", serde_json::json!({"type": "Lowercase"})),
            ("/post_processor", serde_json::json!({"type": "BertProcessing"})),
            ("/added_tokens", serde_json::json!([{"id": 1, "content": "x", "normalized": true}])),
        ] {
            let mut w = v.clone();
            let (parent, key) = ptr.rsplit_once('/').unwrap();
            let target = if parent.is_empty() { &mut w } else { w.pointer_mut(parent).unwrap() };
            target[key] = val;
            assert!(FastEncoder::from_json(w.to_string().as_bytes()).is_err(), "{ptr} accepted");
        }
        assert!(FastEncoder::from_json(b"not json").is_err());
        // Split regexes: the known ones (either behavior that keeps every match as
        // a piece), and not another one.
        for (re, behavior, invert, ok) in [
            (O200K_PATTERN, "Isolated", false, true),
            (O200K_PATTERN, "Removed", true, true),
            (CL100K_PATTERN, "Isolated", false, true),
            (O200K_PATTERN, "Isolated", true, false),
            (O200K_PATTERN, "MergedWithPrevious", false, false),
            (&O200K_PATTERN.replace("[\\r\\n/]*", "[\\r\\n]*"), "Isolated", false, false),
            (r"\w+|\s+", "Isolated", false, false),
        ] {
            let mut w = v.clone();
            w["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": re}, "behavior": behavior, "invert": invert},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
            ]});
            let got = FastEncoder::from_json(w.to_string().as_bytes());
            assert_eq!(got.is_ok(), ok, "{re} {behavior} {invert}: {got:?}");
        }
    }

    /// Throughput of the fast path and the tokenizers crate on the same real text
    /// (`cargo test --release -p dsproc-functions --lib bpe::tests::speed -- --ignored --nocapture`;
    /// `DSPROC_BPE_SPEED_KIND` names the file, cl100k by default).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn speed_vs_hf() {
        let kind = std::env::var("DSPROC_BPE_SPEED_KIND").unwrap_or_else(|_| "cl100k".to_string());
        let Some(path) = tokenizer_file(&kind) else { return };
        let bytes = std::fs::read(&path).unwrap();
        let fast = FastEncoder::from_json(&bytes).unwrap();
        let hf = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
        let docs = corpus(budget());
        let mb = docs.iter().map(String::len).sum::<usize>() as f64 / 1e6;
        let mut out = Vec::new();
        let t = std::time::Instant::now();
        let mut n_fast = 0;
        for d in &docs {
            out.clear();
            fast.encode(d, false, &mut out).unwrap();
            n_fast += out.len();
        }
        let tf = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut n_hf = 0;
        for d in &docs {
            n_hf += hf.encode_fast(d.as_str(), false).unwrap().len();
        }
        let th = t.elapsed().as_secs_f64();
        assert_eq!(n_fast, n_hf);
        eprintln!(
            "{kind} on {mb:.1} MB, {} docs, {n_fast} tokens: fast {:.2} MB/s, hf {:.2} MB/s, ratio {:.2}x",
            docs.len(),
            mb / tf,
            mb / th,
            th / tf
        );
    }

    const PATTERNS: [(&str, Pattern); 4] = [
        (GPT2_PATTERN, Pattern::Gpt2),
        (CL100K_PATTERN, Pattern::Cl100k { max_digits: 3 }),
        (QWEN2_PATTERN, Pattern::Cl100k { max_digits: 1 }),
        (O200K_PATTERN, Pattern::O200k),
    ];

    /// Panics unless the scanner's pieces of every text are fancy-regex's matches
    /// (the engine the tokenizers crate runs split patterns with); the number of pieces.
    fn same_pieces(texts: &[String]) -> usize {
        let mut n = 0;
        for (re, pattern) in PATTERNS {
            let r = fancy_regex::Regex::new(re).unwrap();
            for t in texts {
                let want: Vec<&str> = r.find_iter(t).map(|m| m.unwrap().as_str()).collect();
                let mut got = Vec::new();
                split_pieces(pattern, t, |p| got.push(p));
                if got != want {
                    let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
                    panic!(
                        "{pattern:?} on {t:?}: piece {at}: scanner {:?} regex {:?}",
                        &got[at..(at + 3).min(got.len())],
                        &want[at..(at + 3).min(want.len())]
                    );
                }
                n += got.len();
            }
        }
        n
    }

    /// The scanner's pieces equal fancy-regex's matches of each pattern.
    #[test]
    fn scanner_matches_fancy_regex() {
        let mut texts = tricky();
        texts.extend(corpus(1 << 20));
        let n = same_pieces(&texts);
        eprintln!("{} texts, {n} pieces over {} patterns: equal", texts.len(), PATTERNS.len());
    }

    /// Chars of every category the patterns tell apart, grouped by category.
    const ALPHABET: &[&str] = &[
        "AZÉΩДႠᲐ",                                     // Lu
        "azéωдßſაk",                                   // Ll
        "ǅǈǋᾈᾼ",                                       // Lt
        "ʰˆᵃー々ゝ",                                   // Lm
        "あカ中กאاहᄀ",                                // Lo
        "\u{301}\u{308}\u{94D}\u{3099}\u{E31}\u{5B7}", // Mn
        "\u{93E}\u{903}\u{94C}",                       // Mc
        "\u{20DD}\u{488}",                             // Me
        "079٣९",                                       // Nd
        "½²Ⅳ①",                                        // No, Nl
        "!.,-()\"«、。…_#%&*@[]{}:;?",                 // P*
        "$+<=^`|~€©😀°",                               // S*
        " \u{a0}\u{3000}\u{2003}",                     // Zs
        "\t\r\n\u{b}\u{c}\u{85}\u{2028}",              // other \s
        "\0\u{200d}\u{feff}\u{7}",                     // Cc, Cf
        "/",
        "'",
        "stremvldSTREMVLD", // contraction letters
    ];

    /// 20,000 seeded random strings over [`ALPHABET`] (spaces, apostrophes and
    /// newlines often next to every class): the scanner's pieces equal fancy-regex's.
    #[test]
    fn scanner_matches_fancy_regex_on_random_strings() {
        let groups: Vec<Vec<char>> = ALPHABET.iter().map(|g| g.chars().collect()).collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let texts: Vec<String> = (0..20_000)
            .map(|_| {
                let len = (next() % 24) as usize;
                (0..len)
                    .map(|_| {
                        let g = &groups[(next() % groups.len() as u64) as usize];
                        g[(next() % g.len() as u64) as usize]
                    })
                    .collect()
            })
            .collect();
        let n = same_pieces(&texts);
        eprintln!("{} random strings, {n} pieces over {} patterns: equal", texts.len(), PATTERNS.len());
    }
}
