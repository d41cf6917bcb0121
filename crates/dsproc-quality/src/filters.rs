//! The four filters, step for step as datatrove 0.10.1 writes them.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::chars::{PUNCTUATION_SET, TERMINAL_PUNCTUATION};
use crate::names;
use crate::options::{FineWeb, GopherQuality, GopherRepetition, C4};
use crate::pystr::{count, lstrip, py_len, rstrip, split_ws, splitlines, strip};
use crate::tokenizer::{count_sentences, english, split_into_sentences, FxBuild, FxHasher, FxMap, Token};

/// What one preset decided.
pub(crate) enum Verdict {
    Keep,
    /// Kept, with a new text (c4).
    Rewrite(String),
    Drop(&'static str),
}

#[inline]
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

// ---------------------------------------------------------------- gopher_quality

pub(crate) const GQ_METRICS: [&str; 8] = [
    "gopher_quality_non_symbol_words",
    "gopher_quality_avg_word_length",
    "gopher_quality_hash_ratio",
    "gopher_quality_ellipsis_ratio",
    "gopher_quality_bullet_lines_ratio",
    "gopher_quality_end_ellipsis_lines_ratio",
    "gopher_quality_alpha_words_ratio",
    "gopher_quality_stop_words",
];

pub(crate) const GQ_RULES: [&str; 10] = [
    "gopher_short_doc",
    "gopher_long_doc",
    "gopher_below_avg_threshold",
    "gopher_above_avg_threshold",
    "gopher_too_many_hashes",
    "gopher_too_many_ellipsis",
    "gopher_too_many_bullets",
    "gopher_too_many_end_ellipsis",
    "gopher_below_alpha_threshold",
    "gopher_enough_stop_words",
];

pub(crate) struct GqParams {
    o: GopherQuality,
    stop: FxMap<String, usize>,
}

impl GqParams {
    pub(crate) fn new(o: GopherQuality) -> Self {
        let mut stop = FxMap::default();
        for w in &o.stop_words {
            let n = stop.len();
            stop.entry(w.clone()).or_insert(n);
        }
        GqParams { o, stop }
    }
}

pub(crate) fn gopher_quality(p: &GqParams, text: &str, base: &str, words: &[Token], m: &mut [f64]) -> Verdict {
    let o = &p.o;
    let n_words = words.len();
    let mut n_ns = 0usize;
    let mut len_sum = 0usize;
    for w in words {
        let s = w.text(base);
        if s.chars().any(|c| !PUNCTUATION_SET.contains(c)) {
            n_ns += 1;
            len_sum += py_len(s);
        }
    }
    m[0] = n_ns as f64;
    if o.min_doc_words != 0 && (n_ns as u64) < o.min_doc_words {
        return Verdict::Drop(GQ_RULES[0]);
    }
    if o.max_doc_words != 0 && (n_ns as u64) > o.max_doc_words {
        return Verdict::Drop(GQ_RULES[1]);
    }
    // np.mean of ints: the float sum (exact here) over the count
    let avg = ratio(len_sum, n_ns);
    m[1] = avg;
    if o.min_avg_word_length != 0.0 && avg < o.min_avg_word_length {
        return Verdict::Drop(GQ_RULES[2]);
    }
    if o.max_avg_word_length != 0.0 && avg > o.max_avg_word_length {
        return Verdict::Drop(GQ_RULES[3]);
    }
    let hashes = ratio(count(text, "#"), n_words);
    m[2] = hashes;
    if o.max_symbol_word_ratio != 0.0 && hashes > o.max_symbol_word_ratio {
        return Verdict::Drop(GQ_RULES[4]);
    }
    let ellipsis = ratio(count(text, "...") + count(text, "\u{2026}"), n_words);
    m[3] = ellipsis;
    if o.max_symbol_word_ratio != 0.0 && ellipsis > o.max_symbol_word_ratio {
        return Verdict::Drop(GQ_RULES[5]);
    }
    let (mut n_lines, mut bullets, mut end_ell) = (0usize, 0usize, 0usize);
    for line in splitlines(text) {
        n_lines += 1;
        let l = lstrip(line);
        if l.starts_with('\u{2022}') || l.starts_with('-') {
            bullets += 1;
        }
        let r = rstrip(line);
        if r.ends_with("...") || r.ends_with('\u{2026}') {
            end_ell += 1;
        }
    }
    let bullet_ratio = ratio(bullets, n_lines);
    m[4] = bullet_ratio;
    if o.max_bullet_lines_ratio != 0.0 && bullet_ratio > o.max_bullet_lines_ratio {
        return Verdict::Drop(GQ_RULES[6]);
    }
    let end_ratio = ratio(end_ell, n_lines);
    m[5] = end_ratio;
    if o.max_ellipsis_lines_ratio != 0.0 && end_ratio > o.max_ellipsis_lines_ratio {
        return Verdict::Drop(GQ_RULES[7]);
    }
    let alpha = words.iter().filter(|w| w.text(base).chars().any(crate::chars::is_py_alpha)).count();
    let alpha_ratio = ratio(alpha, n_words);
    m[6] = alpha_ratio;
    if o.max_non_alpha_words_ratio != 0.0 && alpha_ratio < o.max_non_alpha_words_ratio {
        return Verdict::Drop(GQ_RULES[8]);
    }
    let mut found = vec![false; p.stop.len()];
    let mut n_found = 0usize;
    for w in words {
        if let Some(&i) = p.stop.get(w.text(base)) {
            if !found[i] {
                found[i] = true;
                n_found += 1;
            }
        }
    }
    m[7] = n_found as f64;
    if o.min_stop_words != 0 && (n_found as u64) < o.min_stop_words {
        return Verdict::Drop(GQ_RULES[9]);
    }
    Verdict::Keep
}

// ---------------------------------------------------------------- gopher_repetition

pub(crate) const GR_FIXED_METRICS: [&str; 4] = [
    "gopher_repetition_dup_para_frac",
    "gopher_repetition_dup_para_char_frac",
    "gopher_repetition_dup_line_frac",
    "gopher_repetition_dup_line_char_frac",
];

pub(crate) const GR_FIXED_RULES: [&str; 5] = [
    "gopher_repetition_empty",
    "gopher_repetition_dup_para_frac",
    "gopher_repetition_dup_para_char_frac",
    "gopher_repetition_dup_line_frac",
    "gopher_repetition_dup_line_char_frac",
];

const POLY: u64 = 0x9E37_79B9_7F4A_7C15 | 1;

#[inline]
fn pow(mut b: u64, mut e: u64) -> u64 {
    let mut r = 1u64;
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    r
}

/// splitmix64's finalizer: spreads a polynomial hash over all bits.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An n-gram: its text and a precomputed hash.
#[derive(Clone, Copy)]
struct Gram<'a> {
    s: &'a str,
    h: u64,
}

impl Hash for Gram<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.h);
    }
}

impl PartialEq for Gram<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.h == other.h && self.s == other.s
    }
}

impl Eq for Gram<'_> {}

/// Passes a precomputed `u64` hash through.
#[derive(Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(POLY);
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type PassBuild = BuildHasherDefault<PassHasher>;

/// `find_duplicates`: (repeated elements, their characters).
fn find_duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize) {
    let mut seen: HashSet<&str, FxBuild> = HashSet::default();
    let (mut n, mut chars) = (0usize, 0usize);
    for x in items {
        if !seen.insert(x) {
            n += 1;
            chars += py_len(x);
        }
    }
    (n, chars)
}

/// `re.compile(r"\n{2,}").split(s)`.
fn split_paragraphs(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' && i + 1 < b.len() && b[i + 1] == b'\n' {
            let mut j = i + 2;
            while j < b.len() && b[j] == b'\n' {
                j += 1;
            }
            out.push(&s[start..i]);
            start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// `re.compile("\n+").split(s)`.
fn split_lines_nl(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            let mut j = i + 1;
            while j < b.len() && b[j] == b'\n' {
                j += 1;
            }
            out.push(&s[start..i]);
            start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

pub(crate) fn gr_validate(o: &GopherRepetition) -> Result<(), String> {
    for &(n, _) in o.top_n_grams.iter().chain(o.dup_n_grams.iter()) {
        if n == 0 || n > names::MAX_N {
            return Err(format!("n-gram size {n} is outside 1..={}", names::MAX_N));
        }
    }
    Ok(())
}

pub(crate) fn gopher_repetition(
    o: &GopherRepetition,
    text: &str,
    words: &mut Words,
    m: &mut [f64],
    top_slots: &[usize],
    dup_slots: &[usize],
) -> Verdict {
    if text.is_empty() {
        return Verdict::Drop(GR_FIXED_RULES[0]);
    }
    let text_len = py_len(text);
    let paragraphs = split_paragraphs(strip(text));
    let (pd, pc) = find_duplicates(paragraphs.iter().copied());
    let f = ratio(pd, paragraphs.len());
    m[0] = f;
    if o.dup_para_frac != 0.0 && f > o.dup_para_frac {
        return Verdict::Drop(GR_FIXED_RULES[1]);
    }
    let f = ratio(pc, text_len);
    m[1] = f;
    if o.dup_para_char_frac != 0.0 && f > o.dup_para_char_frac {
        return Verdict::Drop(GR_FIXED_RULES[2]);
    }
    let lines = split_lines_nl(text);
    let (ld, lc) = find_duplicates(lines.iter().copied());
    let f = ratio(ld, lines.len());
    m[2] = f;
    if o.dup_line_frac != 0.0 && f > o.dup_line_frac {
        return Verdict::Drop(GR_FIXED_RULES[3]);
    }
    let f = ratio(lc, text_len);
    m[3] = f;
    if o.dup_line_char_frac != 0.0 && f > o.dup_line_char_frac {
        return Verdict::Drop(GR_FIXED_RULES[4]);
    }
    if o.top_n_grams.is_empty() && o.dup_n_grams.is_empty() {
        return Verdict::Keep;
    }
    let (base, toks) = words.get(text);
    let nw = toks.len();
    // Words joined with " " (for top n-grams) and with "" (for duplicated n-grams),
    // so every n-gram is a slice of one of the two strings. N-grams are hashed in O(1)
    // from prefix hashes: over word hashes for the spaced join (words hold no spaces,
    // so equal spaced strings are equal word sequences), over bytes for the plain
    // join (equal concatenations of different words must collide, as in Python).
    // Keys compare their text, so hash collisions cannot change a result.
    let total: usize = toks.iter().map(|t| t.end - t.start).sum();
    let mut spaced = String::with_capacity(total + nw);
    let mut joined = String::with_capacity(total);
    let mut sp_start = Vec::with_capacity(nw + 1);
    let mut jn_start = Vec::with_capacity(nw + 1);
    let mut clen = Vec::with_capacity(nw + 1); // cumulative code points
    let mut word_prefix = Vec::with_capacity(nw + 1);
    let mut byte_prefix = Vec::with_capacity(nw + 1);
    let (mut acc, mut wh, mut bh) = (0usize, 0u64, 0u64);
    for (i, t) in toks.iter().enumerate() {
        let w = t.text(base);
        if i > 0 {
            spaced.push(' ');
        }
        sp_start.push(spaced.len());
        jn_start.push(joined.len());
        clen.push(acc);
        word_prefix.push(wh);
        byte_prefix.push(bh);
        spaced.push_str(w);
        joined.push_str(w);
        acc += py_len(w);
        let mut fx = FxHasher::default();
        fx.write(w.as_bytes());
        wh = wh.wrapping_mul(POLY).wrapping_add(mix(fx.finish()));
        for &b in w.as_bytes() {
            bh = bh.wrapping_mul(POLY).wrapping_add(b as u64 + 1);
        }
    }
    sp_start.push(spaced.len() + 1);
    jn_start.push(joined.len());
    clen.push(acc);
    word_prefix.push(wh);
    byte_prefix.push(bh);

    for (k, &(n, frac)) in o.top_n_grams.iter().enumerate() {
        if nw < n {
            continue;
        }
        let pn = pow(POLY, n as u64);
        // Counter.most_common(1): the highest count, the first seen among equals
        let mut counts: HashMap<Gram<'_>, (u32, u32), PassBuild> = HashMap::default();
        counts.reserve(nw - n + 1);
        for i in 0..=(nw - n) {
            let h = word_prefix[i + n].wrapping_sub(word_prefix[i].wrapping_mul(pn));
            let g = Gram { s: &spaced[sp_start[i]..sp_start[i + n] - 1], h: mix(h) };
            let e = counts.entry(g).or_insert((0, i as u32));
            e.0 += 1;
        }
        let mut best: Option<(u32, u32)> = None;
        for &(c, first) in counts.values() {
            let better = match best {
                None => true,
                Some((bc, bf)) => c > bc || (c == bc && first < bf),
            };
            if better {
                best = Some((c, first));
            }
        }
        let (c, first) = best.expect("at least one n-gram");
        let i = first as usize;
        let glen = clen[i + n] - clen[i] + (n - 1);
        let f = ratio(glen * c as usize, text_len);
        m[top_slots[k]] = f;
        if f > frac {
            return Verdict::Drop(names::TOP_RULE[n - 1]);
        }
    }
    let mut unique: HashSet<Gram<'_>, PassBuild> = HashSet::default();
    for (k, &(n, frac)) in o.dup_n_grams.iter().enumerate() {
        unique.clear();
        let mut repeated = 0usize;
        let mut idx = 0usize;
        while nw >= n && idx < nw - n + 1 {
            let (a, b) = (jn_start[idx], jn_start[idx + n]);
            let h = byte_prefix[idx + n].wrapping_sub(byte_prefix[idx].wrapping_mul(pow(POLY, (b - a) as u64)));
            let g = Gram { s: &joined[a..b], h: mix(h) };
            if !unique.insert(g) {
                repeated += clen[idx + n] - clen[idx];
                idx += n;
            } else {
                idx += 1;
            }
        }
        let f = ratio(repeated, text_len);
        m[dup_slots[k]] = f;
        if f > frac {
            return Verdict::Drop(names::DUP_RULE[n - 1]);
        }
    }
    Verdict::Keep
}

// ---------------------------------------------------------------- c4

pub(crate) const C4_METRICS: [&str; 3] = ["c4_lines", "c4_kept_lines", "c4_num_sentences"];
pub(crate) const C4_RULES: [&str; 3] = ["c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences"];

const END_PUNCTUATION: [char; 5] = ['.', '?', '!', '"', '\''];
const POLICY_SUBSTRINGS: [&str; 6] =
    ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];

pub(crate) struct C4Params {
    o: C4,
    citation: regex::Regex,
}

impl C4Params {
    pub(crate) fn new(o: C4) -> Self {
        // CITATION_REGEX = r"\[\d*]|\[edit]|\[citation needed]" (\d: Python's Unicode digits)
        let digits = crate::chars::class_body(crate::tables::PY_DIGIT);
        let pat = format!(r"\[[{digits}]*\]|\[edit\]|\[citation needed\]");
        C4Params { o, citation: regex::Regex::new(&pat).expect("citation regex") }
    }
}

/// The words of a text, tokenized on first use and shared by the presets that read
/// the same text.
pub(crate) struct Words {
    /// The text without "IS_ALPHA" when datatrove would tokenize that (see
    /// `EnglishTokenizer::tokenize_datatrove`).
    base: Option<String>,
    toks: Option<Vec<Token>>,
}

impl Words {
    pub(crate) fn new() -> Self {
        Words { base: None, toks: None }
    }

    pub(crate) fn reset(&mut self) {
        self.base = None;
        self.toks = None;
    }

    /// datatrove's `split_into_words(text)`: the non-whitespace spaCy tokens, as spans
    /// of the returned text.
    pub(crate) fn get<'s>(&'s mut self, text: &'s str) -> (&'s str, &'s [Token]) {
        if self.toks.is_none() {
            let (base, mut v) = english().tokenize_datatrove(text);
            v.retain(|t| !t.space);
            if let std::borrow::Cow::Owned(b) = base {
                self.base = Some(b);
            }
            self.toks = Some(v);
        }
        let base = self.base.as_deref().unwrap_or(text);
        (base, self.toks.as_deref().unwrap_or(&[]))
    }
}

pub(crate) fn c4(p: &C4Params, text: &str, m: &mut [f64]) -> Verdict {
    let o = &p.o;
    let tok = english();
    let lines: Vec<&str> = if o.split_paragraph { splitlines(text).collect() } else { split_into_sentences(tok, text) };
    m[0] = lines.len() as f64;
    let mut num_sentences: i64 = 0;
    let mut kept: Vec<std::borrow::Cow<'_, str>> = Vec::new();
    let mut lower = String::new();
    for raw in lines {
        let line = strip(raw);
        let mut n_words: i64 = 0;
        let mut too_long = false;
        for w in split_ws(line) {
            n_words += 1;
            if o.max_word_length != -1 && (py_len(w) as i64) > o.max_word_length {
                too_long = true;
            }
        }
        if too_long {
            continue;
        }
        let line: std::borrow::Cow<'_, str> = if o.remove_citations && line.contains('[') {
            p.citation.replace_all(line, "")
        } else {
            std::borrow::Cow::Borrowed(line)
        };
        if o.filter_no_terminal_punct && (!line.ends_with(END_PUNCTUATION) || line.ends_with("...")) {
            continue;
        }
        if n_words < o.min_words_per_line {
            continue;
        }
        lower.clear();
        if line.is_ascii() {
            lower.push_str(&line);
            lower.make_ascii_lowercase();
        } else {
            lower.push_str(&line.to_lowercase());
        }
        if o.filter_lorem_ipsum && lower.contains("lorem ipsum") {
            m[1] = kept.len() as f64;
            return Verdict::Drop(C4_RULES[0]);
        }
        if o.filter_javascript && lower.contains("javascript") {
            continue;
        }
        if o.filter_curly_bracket && line.contains('{') {
            m[1] = kept.len() as f64;
            return Verdict::Drop(C4_RULES[1]);
        }
        if o.filter_policy && POLICY_SUBSTRINGS.iter().any(|n| lower.contains(n)) {
            continue;
        }
        if o.min_num_sentences != -1 {
            num_sentences += if o.split_paragraph {
                let (base, toks) = tok.tokenize_datatrove(&line);
                count_sentences(&base, &toks).max(1) as i64
            } else {
                1
            };
        }
        kept.push(line);
    }
    m[1] = kept.len() as f64;
    m[2] = num_sentences as f64;
    if num_sentences < o.min_num_sentences {
        return Verdict::Drop(C4_RULES[2]);
    }
    let sep = if o.split_paragraph { "\n" } else { " " };
    let mut out = String::with_capacity(text.len());
    for (i, l) in kept.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(l);
    }
    let stripped = strip(&out);
    if stripped == text {
        Verdict::Keep
    } else if stripped.len() == out.len() {
        Verdict::Rewrite(out)
    } else {
        Verdict::Rewrite(stripped.to_string())
    }
}

// ---------------------------------------------------------------- fineweb

pub(crate) const FW_METRICS: [&str; 4] =
    ["fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio", "fineweb_list_ratio"];
pub(crate) const FW_RULES: [&str; 5] = [
    "fineweb_empty",
    "fineweb_line_punct_ratio",
    "fineweb_short_line_ratio",
    "fineweb_char_dup_ratio",
    "fineweb_list_ratio",
];

pub(crate) enum StopChars {
    /// datatrove's TERMINAL_PUNCTUATION.
    Terminal,
    Strings(Vec<String>),
}

pub(crate) struct FwParams {
    o: FineWeb,
    stop: StopChars,
}

impl FwParams {
    pub(crate) fn new(o: FineWeb) -> Self {
        let stop = match &o.stop_chars {
            None => StopChars::Terminal,
            Some(v) => StopChars::Strings(v.clone()),
        };
        FwParams { o, stop }
    }

    #[inline]
    fn ends_with_stop(&self, line: &str) -> bool {
        match &self.stop {
            StopChars::Terminal => line.chars().next_back().is_some_and(|c| TERMINAL_PUNCTUATION.contains(c)),
            StopChars::Strings(v) => v.iter().any(|s| line.ends_with(s.as_str())),
        }
    }
}

pub(crate) fn fineweb(p: &FwParams, text: &str, words: &mut Words, m: &mut [f64]) -> Verdict {
    let o = &p.o;
    let lines: Vec<&str> = text.split('\n').filter(|l| !strip(l).is_empty()).collect();
    if lines.is_empty() {
        return Verdict::Drop(FW_RULES[0]);
    }
    let n = lines.len();
    let r = ratio(lines.iter().filter(|l| p.ends_with_stop(l)).count(), n);
    m[0] = r;
    if r < o.line_punct_thr && !(r == 0.0 && o.line_punct_exclude_zero) {
        return Verdict::Drop(FW_RULES[1]);
    }
    let short = o.short_line_length as usize;
    let r = ratio(lines.iter().filter(|l| py_len(l) <= short).count(), n);
    m[1] = r;
    if r > o.short_line_thr {
        return Verdict::Drop(FW_RULES[2]);
    }
    let (_, dup_chars) = find_duplicates(lines.iter().copied());
    let r = ratio(dup_chars, py_len(text) - count(text, "\n"));
    m[2] = r;
    if r > o.char_duplicates_ratio {
        return Verdict::Drop(FW_RULES[3]);
    }
    let r = ratio(count(text, "\n"), words.get(text).1.len());
    m[3] = r;
    if r > o.new_line_ratio {
        return Verdict::Drop(FW_RULES[4]);
    }
    Verdict::Keep
}
