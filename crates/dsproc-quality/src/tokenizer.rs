//! spaCy 3.8's tokenizer as `spacy.blank("en")` builds it, plus the `sentencizer`:
//! the word and sentence splitting datatrove 0.10.1 uses for English
//! (`datatrove.utils.word_tokenizers.SpaCyTokenizer`).
//!
//! The algorithm follows `spacy/tokenizer.pyx`:
//! 1. the text is cut into runs of non-space and space characters (Python
//!    `str.isspace`); one `' '` after a word is dropped, other space runs are tokens;
//! 2. a run that is a special case (tokenizer exception) becomes its tokens;
//! 3. otherwise prefixes and suffixes are split off in a loop (`_split_affixes`),
//!    stopping when the rest is a special case;
//! 4. the rest is a special case, a URL (`URL_MATCH`), or is split at infixes
//!    (`_attach_tokens`);
//! 5. special cases whose text contains prefix/suffix/infix matches are found again
//!    over the token sequence (the PhraseMatcher pass, `_apply_special_cases`).
//!
//! Tokens are byte spans into the text; no strings are allocated.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use fancy_regex::Regex;

use crate::chars::{is_py_space, CharSet, INFIX_FIRST, PREFIX_FIRST, SENT_PUNCT, SUFFIX_LAST, UNICODE_P};
use crate::tables;

/// One token: a byte span of the text, and whether it is a run of whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub space: bool,
}

impl Token {
    #[inline]
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// FxHash (rustc's hasher): fast for short string keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.hash;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ v).wrapping_mul(FX_SEED);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(FX_SEED);
        }
        self.hash = h;
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.hash = (self.hash.rotate_left(5) ^ i as u64).wrapping_mul(FX_SEED);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.hash = (self.hash.rotate_left(5) ^ i as u64).wrapping_mul(FX_SEED);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxMap<K, V> = HashMap<K, V, FxBuild>;

/// The compiled English tokenizer. Build it once (`english()`); it is `Sync`.
pub struct EnglishTokenizer {
    prefix: Vec<PrefixPart>,
    suffix: Vec<SuffixPart>,
    infix: Vec<InfixPiece>,
    url: Regex,
    specials: FxMap<&'static str, &'static [&'static str]>,
    /// First token of a PhraseMatcher pattern -> indexes into `tables::MATCHER`.
    matcher_first: FxMap<&'static str, Vec<usize>>,
    /// Whether some one-token pattern changes its token (none for English).
    matcher_single: bool,
}

enum PrefixPart {
    Plain(regex::Regex),
    Fancy(Regex),
}

enum InfixMatch {
    Lits(&'static [&'static str]),
    Class(CharSet),
    Run(char, usize),
}

struct InfixPiece {
    behind: Option<CharSet>,
    body: InfixMatch,
    ahead: Option<CharSet>,
}

impl InfixPiece {
    /// The end of this piece's match at byte `i` of `s` (`prev`: the character before).
    #[inline]
    fn match_at(&self, s: &str, i: usize, prev: Option<char>) -> Option<usize> {
        if let Some(b) = &self.behind {
            match prev {
                Some(c) if b.contains(c) => {}
                _ => return None,
            }
        }
        let ahead_ok = |e: usize| match &self.ahead {
            None => true,
            Some(a) => s[e..].chars().next().is_some_and(|c| a.contains(c)),
        };
        let rest = &s[i..];
        match &self.body {
            InfixMatch::Lits(lits) => {
                // alternatives in order, backtracking into the next when the look-ahead fails
                for lit in lits.iter() {
                    if rest.starts_with(lit) && ahead_ok(i + lit.len()) {
                        return Some(i + lit.len());
                    }
                }
                None
            }
            InfixMatch::Class(set) => {
                let c = rest.chars().next()?;
                (set.contains(c) && ahead_ok(i + c.len_utf8())).then(|| i + c.len_utf8())
            }
            InfixMatch::Run(ch, min) => {
                let n = rest.chars().take_while(|c| c == ch).count();
                // generated only without look-ahead, so the greedy run is the match
                (n >= *min).then(|| i + n * ch.len_utf8())
            }
        }
    }
}

struct SuffixPart {
    re: regex::Regex,
    /// Width (characters) of the look-behind matched as text at the start.
    behind: usize,
    last: CharSet,
    /// One of these must occur in the string for the part to match.
    need: CharSet,
}

fn plain(pattern: &str) -> regex::Regex {
    regex::RegexBuilder::new(pattern)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .expect("generated spaCy pattern compiles")
}

fn compile(pattern: &str) -> Regex {
    fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(50_000_000)
        .build()
        .expect("generated spaCy pattern compiles")
}

/// The process-wide English tokenizer (compiled on first use).
pub fn english() -> &'static EnglishTokenizer {
    static TOK: OnceLock<EnglishTokenizer> = OnceLock::new();
    TOK.get_or_init(EnglishTokenizer::new)
}

impl EnglishTokenizer {
    fn new() -> Self {
        let mut specials = FxMap::default();
        for &(k, v) in tables::SPECIALS {
            specials.insert(k, v);
        }
        // One-token patterns whose special case is that one token are no-ops, and being
        // the shortest they never keep a longer match out, so they are left out.
        let mut matcher_first: FxMap<&'static str, Vec<usize>> = FxMap::default();
        let mut matcher_single = false;
        for (i, &(k, pat)) in tables::MATCHER.iter().enumerate() {
            if pat.len() == 1 && specials.get(k).is_some_and(|p: &&[&str]| p.len() == 1) {
                continue;
            }
            if pat.len() == 1 {
                matcher_single = true;
            }
            if let Some(first) = pat.first() {
                matcher_first.entry(*first).or_default().push(i);
            }
        }
        EnglishTokenizer {
            prefix: tables::PREFIX_PARTS
                .iter()
                .map(|&(p, fancy)| if fancy { PrefixPart::Fancy(compile(p)) } else { PrefixPart::Plain(plain(p)) })
                .collect(),
            suffix: tables::SUFFIX_PARTS
                .iter()
                .map(|&(p, behind, last, need)| SuffixPart {
                    re: plain(p),
                    behind,
                    last: CharSet::new(last),
                    need: CharSet::new(need),
                })
                .collect(),
            infix: tables::INFIX_PIECES
                .iter()
                .map(|(behind, body, ahead)| InfixPiece {
                    behind: behind.map(CharSet::new),
                    body: match body {
                        tables::InfixBody::Lits(l) => InfixMatch::Lits(l),
                        tables::InfixBody::Class(c) => InfixMatch::Class(CharSet::new(c)),
                        tables::InfixBody::Run(ch, n) => InfixMatch::Run(*ch, *n),
                    },
                    ahead: ahead.map(CharSet::new),
                })
                .collect(),
            url: compile(tables::URL_RE),
            specials,
            matcher_first,
            matcher_single,
        }
    }

    /// Every token of `text` (spaCy's `Doc`), whitespace runs included, into `out`.
    pub fn tokenize_into(&self, text: &str, out: &mut Vec<Token>) {
        out.clear();
        if text.is_empty() {
            return;
        }
        let mut start = 0usize;
        let mut in_ws = text.chars().next().map(is_py_space).unwrap_or(false);
        let mut prefixes = Vec::new();
        let mut suffixes = Vec::new();
        for (i, c) in text.char_indices() {
            let sp = is_py_space(c);
            if sp != in_ws {
                if start < i {
                    self.tokenize_span(text, start, i, in_ws, out, &mut prefixes, &mut suffixes);
                }
                start = if c == ' ' { i + 1 } else { i };
                in_ws = !in_ws;
            }
        }
        if start < text.len() {
            self.tokenize_span(text, start, text.len(), in_ws, out, &mut prefixes, &mut suffixes);
        }
        self.apply_matcher(text, out);
    }

    /// Tokens of `text` as a new vector.
    pub fn tokenize(&self, text: &str) -> Vec<Token> {
        let mut v = Vec::new();
        self.tokenize_into(text, &mut v);
        v
    }

    /// datatrove's `split_into_words` for English: the non-whitespace tokens.
    pub fn words(&self, text: &str) -> Vec<String> {
        let (base, toks) = self.tokenize_datatrove(text);
        toks.into_iter().filter(|t| !t.space).map(|t| t.text(&base).to_string()).collect()
    }

    /// Tokens as datatrove gets them. `SpaCyTokenizer._do_tokenize` retries with
    /// `text.replace("IS_ALPHA", "")` when spaCy raises and the text holds "IS_ALPHA";
    /// spaCy 3.8 raises (an `AssertionError` in `memory_zone`) for a token "IS_ALPHA"
    /// once that token has been seen before in the process. This does what datatrove
    /// does from the second such document on; the tokens are spans of the returned text.
    pub fn tokenize_datatrove<'a>(&self, text: &'a str) -> (Cow<'a, str>, Vec<Token>) {
        let toks = self.tokenize(text);
        if text.contains("IS_ALPHA") && toks.iter().any(|t| !t.space && t.text(text) == "IS_ALPHA") {
            let replaced = text.replace("IS_ALPHA", "");
            let toks = self.tokenize(&replaced);
            return (Cow::Owned(replaced), toks);
        }
        (Cow::Borrowed(text), toks)
    }

    #[allow(clippy::too_many_arguments)]
    fn tokenize_span(
        &self,
        text: &str,
        start: usize,
        end: usize,
        ws: bool,
        out: &mut Vec<Token>,
        prefixes: &mut Vec<(usize, usize)>,
        suffixes: &mut Vec<(usize, usize)>,
    ) {
        if ws {
            // Whitespace runs are never split by the English rules (no affix or infix
            // pattern matches whitespace); each is one token.
            out.push(Token { start, end, space: true });
            return;
        }
        let span = &text[start..end];
        if let Some(pieces) = self.specials.get(span) {
            push_pieces(out, start, pieces);
            return;
        }
        prefixes.clear();
        suffixes.clear();
        // _split_affixes
        let (mut s, mut e) = (start, end);
        let mut last_size = 0usize;
        let mut first = true;
        while s < e && e - s != last_size {
            let string = &text[s..e];
            // (the whole span was looked up above)
            if !first && self.specials.contains_key(string) {
                break;
            }
            first = false;
            last_size = e - s;
            let pre_len = self.find_prefix(string);
            if pre_len != 0 {
                let minus_pre = &string[pre_len..];
                if !minus_pre.is_empty() && self.specials.contains_key(minus_pre) {
                    prefixes.push((s, s + pre_len));
                    s += pre_len;
                    break;
                }
            }
            let suf_len = self.find_suffix(&string[pre_len..]);
            if suf_len != 0 {
                let minus_suf = &string[..string.len() - suf_len];
                if !minus_suf.is_empty() && self.specials.contains_key(minus_suf) {
                    suffixes.push((e - suf_len, e));
                    e -= suf_len;
                    break;
                }
            }
            if pre_len != 0 && suf_len != 0 && pre_len + suf_len <= string.len() {
                prefixes.push((s, s + pre_len));
                suffixes.push((e - suf_len, e));
                s += pre_len;
                e -= suf_len;
            } else if pre_len != 0 {
                prefixes.push((s, s + pre_len));
                s += pre_len;
            } else if suf_len != 0 {
                suffixes.push((e - suf_len, e));
                e -= suf_len;
            }
        }
        // _attach_tokens
        for &(a, b) in prefixes.iter() {
            out.push(Token { start: a, end: b, space: false });
        }
        if s < e {
            let string = &text[s..e];
            if let Some(pieces) = self.specials.get(string) {
                push_pieces(out, s, pieces);
            } else if self.url_match(string) {
                out.push(Token { start: s, end: e, space: false });
            } else {
                self.split_infixes(string, s, out);
            }
        }
        for &(a, b) in suffixes.iter().rev() {
            out.push(Token { start: a, end: b, space: false });
        }
    }

    #[inline]
    fn find_prefix(&self, s: &str) -> usize {
        match s.chars().next() {
            Some(c) if PREFIX_FIRST.contains(c) => {}
            _ => return 0,
        }
        for part in &self.prefix {
            let end = match part {
                PrefixPart::Plain(re) => re.find(s).map(|m| m.end()),
                PrefixPart::Fancy(re) => re.find(s).ok().flatten().map(|m| m.end()),
            };
            if let Some(end) = end {
                return end;
            }
        }
        0
    }

    #[inline]
    fn find_suffix(&self, s: &str) -> usize {
        let last = match s.chars().next_back() {
            Some(c) if SUFFIX_LAST.contains(c) => c,
            _ => return 0,
        };
        // The suffix runs from the leftmost position where any piece matches to the end.
        let mut best = s.len();
        for part in &self.suffix {
            if !part.last.contains(last) || !s.chars().any(|c| part.need.contains(c)) {
                continue;
            }
            if let Some(m) = part.re.find(s) {
                let mut p = m.start();
                if part.behind > 0 {
                    p += s[p..].chars().take(part.behind).map(char::len_utf8).sum::<usize>();
                }
                best = best.min(p);
            }
        }
        s.len() - best
    }

    /// The prefix length by the one regex spaCy compiles (for tests).
    #[cfg(test)]
    fn find_prefix_reference(&self, s: &str) -> usize {
        static RE: OnceLock<Regex> = OnceLock::new();
        let re = RE.get_or_init(|| compile(tables::PREFIX_RE));
        re.find(s).ok().flatten().map(|m| m.end() - m.start()).unwrap_or(0)
    }

    /// The suffix length by the one regex spaCy compiles (for tests).
    #[cfg(test)]
    fn find_suffix_reference(&self, s: &str) -> usize {
        static RE: OnceLock<Regex> = OnceLock::new();
        let re = RE.get_or_init(|| compile(tables::SUFFIX_RE));
        re.find(s).ok().flatten().map(|m| m.end() - m.start()).unwrap_or(0)
    }

    #[inline]
    fn url_match(&self, s: &str) -> bool {
        // Both alternatives of the host part (dotted IP, domain + TLD) need a '.'.
        if !s.contains('.') {
            return false;
        }
        matches!(self.url.is_match(s), Ok(true))
    }

    fn split_infixes(&self, string: &str, base: usize, out: &mut Vec<Token>) {
        if !string.chars().any(|c| INFIX_FIRST.contains(c)) {
            out.push(Token { start: base, end: base + string.len(), space: false });
            return;
        }
        let mut start = 0usize;
        for (is, ie) in self.infixes(string) {
            if is == 0 {
                continue;
            }
            if is != start {
                out.push(Token { start: base + start, end: base + is, space: false });
            }
            if is != ie {
                out.push(Token { start: base + is, end: base + ie, space: false });
            }
            start = ie;
        }
        if start < string.len() {
            out.push(Token { start: base + start, end: base + string.len(), space: false });
        }
    }

    /// `infix_finditer`: non-overlapping matches, leftmost first, pieces in order.
    fn infixes(&self, s: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut prev: Option<char> = None;
        let mut iter = s.char_indices().peekable();
        while let Some((i, c)) = iter.next() {
            if INFIX_FIRST.contains(c) {
                if let Some(e) = self.infix.iter().find_map(|p| p.match_at(s, i, prev)) {
                    out.push((i, e));
                    // continue after the match
                    let mut last = c;
                    while let Some(&(j, cj)) = iter.peek() {
                        if j >= e {
                            break;
                        }
                        last = cj;
                        iter.next();
                    }
                    prev = Some(last);
                    continue;
                }
            }
            prev = Some(c);
        }
        out
    }

    /// The infix matches by the one regex spaCy compiles (for tests).
    #[cfg(test)]
    fn infixes_reference(&self, s: &str) -> Vec<(usize, usize)> {
        static RE: OnceLock<Regex> = OnceLock::new();
        let re = RE.get_or_init(|| compile(tables::INFIX_RE));
        re.find_iter(s).map(|m| m.unwrap()).map(|m| (m.start(), m.end())).collect()
    }

    /// The PhraseMatcher pass of `Tokenizer._apply_special_cases`.
    fn apply_matcher(&self, text: &str, toks: &mut Vec<Token>) {
        let n = toks.len();
        let mut matches: Vec<(usize, usize)> = Vec::new();
        for i in 0..n {
            // A match of 2+ tokens needs a next token (all the patterns that are left
            // have 2+ tokens unless `matcher_single`).
            if !self.matcher_single && i + 1 == n {
                continue;
            }
            let Some(pats) = self.matcher_first.get(toks[i].text(text)) else {
                continue;
            };
            for &pi in pats {
                let pat = tables::MATCHER[pi].1;
                if i + pat.len() <= n && pat.iter().enumerate().all(|(j, p)| toks[i + j].text(text) == *p) {
                    matches.push((i, i + pat.len()));
                }
            }
        }
        if matches.is_empty() {
            return;
        }
        matches.sort_unstable();
        matches.dedup();
        // longest first, then leftmost (len_start_cmp, walked from the back)
        matches.sort_by(|a, b| (b.1 - b.0).cmp(&(a.1 - a.0)).then(a.0.cmp(&b.0)));
        let mut seen = vec![false; n];
        let mut filtered: Vec<(usize, usize)> = Vec::new();
        for &(s, e) in &matches {
            if !seen[s] && !seen[e - 1] {
                filtered.push((s, e));
            }
            for x in seen.iter_mut().take(e).skip(s) {
                *x = true;
            }
        }
        filtered.sort_unstable();
        let mut replaced: Vec<(usize, usize, &'static [&'static str])> = Vec::new();
        for &(s, e) in &filtered {
            let span = &text[toks[s].start..toks[e - 1].end];
            if let Some(pieces) = self.specials.get(span) {
                replaced.push((s, e, pieces));
            }
        }
        if replaced.is_empty() {
            return;
        }
        let old = std::mem::take(toks);
        let mut i = 0;
        for (s, e, pieces) in replaced {
            toks.extend_from_slice(&old[i..s]);
            push_pieces(toks, old[s].start, pieces);
            i = e;
        }
        toks.extend_from_slice(&old[i..]);
    }
}

#[inline]
fn push_pieces(out: &mut Vec<Token>, mut pos: usize, pieces: &[&str]) {
    for p in pieces {
        // pieces of special cases never contain spaces except " " itself
        let space = p.chars().all(is_py_space);
        out.push(Token { start: pos, end: pos + p.len(), space });
        pos += p.len();
    }
}

/// spaCy's `Lexeme.is_punct`: every character is in a Unicode `P*` category.
#[inline]
pub fn is_punct(s: &str) -> bool {
    s.chars().all(|c| UNICODE_P.contains(c))
}

#[inline]
fn is_sent_punct(s: &str) -> bool {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) => SENT_PUNCT.contains(c),
        _ => false,
    }
}

/// Token indexes where the sentencizer starts a sentence (empty for no tokens).
pub fn sentence_starts(text: &str, toks: &[Token]) -> Vec<usize> {
    let mut starts = Vec::new();
    if toks.is_empty() {
        return starts;
    }
    starts.push(0);
    let mut seen_period = false;
    for (i, t) in toks.iter().enumerate() {
        let s = t.text(text);
        let in_punct = !t.space && is_sent_punct(s);
        if seen_period && !in_punct && (t.space || !is_punct(s)) {
            starts.push(i);
            seen_period = false;
        } else if in_punct {
            seen_period = true;
        }
    }
    starts
}

/// The number of sentences the sentencizer finds.
pub fn count_sentences(text: &str, toks: &[Token]) -> usize {
    if toks.is_empty() {
        return 0;
    }
    let mut n = 1;
    let mut seen_period = false;
    for t in toks {
        if t.space {
            if seen_period {
                n += 1;
                seen_period = false;
            }
            continue;
        }
        let s = t.text(text);
        let in_punct = is_sent_punct(s);
        if seen_period && !in_punct && !is_punct(s) {
            n += 1;
            seen_period = false;
        } else if in_punct {
            seen_period = true;
        }
    }
    n
}

/// datatrove's `split_into_sentences` (spans from `span_tokenize`): the text cut at the
/// end of every sentence but the last; one piece for a text without tokens.
pub fn split_into_sentences<'a>(tok: &EnglishTokenizer, text: &'a str) -> Vec<&'a str> {
    let (base, toks) = tok.tokenize_datatrove(text);
    let starts = sentence_starts(&base, &toks);
    let mut ends: Vec<usize> = Vec::with_capacity(starts.len());
    for k in 0..starts.len() {
        let last = if k + 1 < starts.len() { starts[k + 1] - 1 } else { toks.len() - 1 };
        ends.push(toks[last].end);
    }
    if let Cow::Owned(b) = &base {
        // offsets of the "IS_ALPHA"-less text applied to the original text, by
        // character position, as Python slices it
        let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
        for e in ends.iter_mut() {
            let chars = b[..*e].chars().count();
            *e = idx[chars.min(idx.len() - 1)];
        }
    }
    let mut out = Vec::with_capacity(ends.len().max(1));
    let mut a = 0usize;
    if ends.is_empty() {
        out.push(text);
        return out;
    }
    for (k, &b) in ends.iter().enumerate() {
        let b = if k + 1 == ends.len() { text.len() } else { b };
        out.push(&text[a..b]);
        a = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        english().words(s)
    }

    #[test]
    fn spacy_examples() {
        assert_eq!(
            words("foo:) a--b don't foo-don't e.g., x-e.g. :-) US$5 5km (e.g.)"),
            [
                "foo", ":)", "a", "--", "b", "do", "n't", "foo", "-", "don't", "e.g.", ",", "x", "-", "e.g.", ":-)",
                "US$", "5", "5", "km", "(", "e.g.", ")"
            ]
        );
        assert_eq!(words("Visit https://example.com/a?b=c."), ["Visit", "https://example.com/a?b=c", "."]);
        assert!(words("").is_empty());
        assert!(words("  \n\t ").is_empty());
        // datatrove's retry without "IS_ALPHA"
        assert_eq!(words("x IS_ALPHA yIS_ALPHA"), ["x", "y"]);
        assert_eq!(words("x yIS_ALPHA"), ["x", "yIS_ALPHA"]);
    }

    /// The split prefix/suffix matchers agree with spaCy's single regexes on strings
    /// built from the characters the rules look at.
    #[test]
    fn affix_parts_equal_full_regexes() {
        let t = english();
        let alphabet: Vec<char> = "aZ09.+-'\"$%°FkmUS€()[]…,:;!?#*&_<>=/~^é£°xKB²—–“”‘’«»«".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..60_000 {
            let len = 1 + (next() % 8) as usize;
            let s: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            assert_eq!(t.find_prefix(&s), t.find_prefix_reference(&s), "prefix of {s:?}");
            assert_eq!(t.find_suffix(&s), t.find_suffix_reference(&s), "suffix of {s:?}");
            assert_eq!(t.infixes(&s), t.infixes_reference(&s), "infixes of {s:?}");
        }
        for s in ["5km", "10US$", "5°C.", "ABC.", "abc.", "x+", "5+", "+5", "+a", "...", "……", "A.B."] {
            assert_eq!(t.find_prefix(s), t.find_prefix_reference(s), "prefix of {s:?}");
            assert_eq!(t.find_suffix(s), t.find_suffix_reference(s), "suffix of {s:?}");
        }
    }

    #[test]
    fn sentences() {
        let t = english();
        let s = "Hello world. This is it!  Yes... no";
        let toks = t.tokenize(s);
        assert_eq!(count_sentences(s, &toks), 3);
        assert_eq!(sentence_starts(s, &toks).len(), 3);
        assert_eq!(split_into_sentences(t, s), ["Hello world.", " This is it!", "  Yes... no"]);
    }
}
