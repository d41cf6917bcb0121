//! Pattern detectors for structured PII, with validators that keep false
//! positives out (Luhn for cards, mod-97 for IBANs, SSA rules for SSNs, address
//! parsing for IPs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aho_corasick::AhoCorasick;
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

pub use super::cards::valid_card;
use super::cards::{card_shape_overlaps, find_cards};
pub use super::iban::valid_iban;
use super::iban::{iban_shape_at, iban_shape_overlaps};
use super::{Detector, Kind, Span};

/// One pattern: the kind, the regex, the capture group holding the PII (0: all).
struct Pattern {
    kind: Kind,
    re: Regex,
    src: &'static str,
    group: usize,
}

/// The one pass: a single Aho-Corasick scan over the text finds every anchor
/// (`@`, `://`, token prefixes, key words, and each digit for the numeric kinds).
/// Anchors become candidate windows (digits are grouped into clusters); each
/// kind's patterns and validators then run only inside its windows, so the text
/// is read once by the matcher and the per-kind work is bounded by the candidates.
/// (A `RegexSet` over all patterns was measured slower: its lazy DFA thrashes on
/// code-heavy text; and per-kind scans of the whole text read it once per kind.)
#[derive(Debug)]
pub struct PatternDetector {
    kinds: Vec<Kind>,
    anchors: AhoCorasick,
    /// What each anchor pattern stands for.
    anchor_roles: Vec<Anchor>,
    /// Patterns per kind (indexed by `Kind as usize`).
    patterns: Vec<Vec<Pattern>>,
    /// Whether any numeric kind (phone, ip, card, iban, ssn) is enabled.
    numeric: bool,
    keep_private_ips: bool,
}

/// An anchor: a literal of a text kind with the window around it that holds any
/// match it anchors (bytes before the anchor, `usize::MAX`: back over a URL scheme;
/// bytes after its end, `usize::MAX`: to the end of the text), or a member of a
/// numeric cluster.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    Text { kind: Kind, before: usize, after: usize },
    Numeric,
}

/// Numeric clusters: digits (and `::`) closer than this join one cluster.
const CLUSTER_GAP: usize = 2 * NUMERIC_MARGIN;
/// Bytes around a numeric cluster that a match may reach beyond its first and
/// last digit (IBAN country letters and letter groups, IPv6 hex groups, `+`/`(`).
const NUMERIC_MARGIN: usize = 48;

/// The anchors of a kind: (literal, bytes before, bytes after). At least one
/// occurs in any text holding that kind; numeric kinds are anchored by digits.
fn anchors_for(kind: Kind) -> Vec<(&'static str, usize, usize)> {
    const TOKEN: usize = 300; // longest token body (GitHub tokens: up to 255 characters)
    match kind {
        // 64 bytes of local part before the `@`; a domain name has at most 253.
        Kind::Email => vec![("@", 64, 256)],
        // usize::MAX: back over the scheme (`[a-z][a-z0-9+.-]*`, any length).
        Kind::UrlCredentials => vec![("://", usize::MAX, 256)],
        Kind::Secret => {
            let mut v: Vec<(&'static str, usize, usize)> = [
                "akia",
                "asia",
                "agpa",
                "aida",
                "aroa",
                "anpa",
                "anva",
                "aipa",
                "ghp_",
                "gho_",
                "ghu_",
                "ghs_",
                "ghr_",
                "github_pat_",
                "glpat-",
                "xoxa-",
                "xoxb-",
                "xoxp-",
                "xoxo-",
                "xoxs-",
                "xoxr-",
                "eyj",
            ]
            .into_iter()
            .map(|a| (a, 0, TOKEN))
            .collect();
            // A key block runs to its END line.
            v.push(("-----begin", 0, usize::MAX));
            // Assignments: the key word may carry a prefix (`client_secret`, `access-token`).
            for a in ["password", "passwd", "pwd", "api_key", "api-key", "apikey", "secret", "token"] {
                v.push((a, 8, 64));
            }
            // `aws … secret … = <40 characters>`
            v.push(("aws", 0, 256));
            v
        }
        Kind::Phone | Kind::Ip | Kind::CreditCard | Kind::Iban | Kind::Ssn => vec![],
    }
}

fn is_numeric(kind: Kind) -> bool {
    matches!(kind, Kind::Phone | Kind::Ip | Kind::CreditCard | Kind::Iban | Kind::Ssn)
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.src)
    }
}

fn patterns_for(kind: Kind) -> Vec<(&'static str, usize)> {
    match kind {
        Kind::Email => {
            vec![(
                r"(?i)\b[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?:xn--[a-z0-9\-]{1,59}|[a-z]{2,24})\b",
                0,
            )]
        }
        // A permissive candidate (digits with spaces, dots, dashes, slashes, parentheses,
        // an optional +/00 prefix and extension); `valid_phone` decides by shape.
        Kind::Phone => vec![(
            // (a literal "\n" or "\t" escape before it, or "-Fax" or "- " after it, also delimit)
            r"(?:^|[^\w+.\-/]|\\[nt,])((?:\+|\()?\d[\d \t.\-/()]{4,24}\d(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,6})?)(?:$|[^\w\-/]|-[A-Za-z\s]|-$)",
            1,
        )],
        Kind::Ip => vec![
            (r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b", 0),
            (
                r"(?i)(?:^|[^\w:])((?:[0-9a-f]{1,4}:){1,7}(?::|(?::[0-9a-f]{1,4}){1,7}|[0-9a-f]{1,4})|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})(?:$|[^\w:]|:(?:$|[^\w:]))",
                1,
            ),
        ],
        // Runs of at least 12 digits in groups (one separator between groups); the
        // card shapes inside are read by `cards::find_card`.
        Kind::CreditCard => vec![(r"(?:^|[^\w+/])(\d(?:[ \-.]?\d){11,})", 1)],
        // A country code and check digits; `iban::iban_shape_at` reads the rest.
        Kind::Iban => vec![(r"\b[A-Z]{2}\d{2}", 0)],
        Kind::Ssn => vec![(r"(?:^|[^\w\-])(\d{3}[\- ]\d{2}[\- ]\d{4})(?:$|[^\w\-])", 1)],
        Kind::Secret => vec![
            (r"\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16})\b", 1),
            (r#"(?i)aws.{0,30}?(?:secret|private).{0,20}?[=:]\s*["']?([A-Za-z0-9/+=]{40})\b"#, 1),
            (r"\b(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", 1),
            (r"\b(glpat-[A-Za-z0-9_\-]{20,})", 1),
            (r"\b(xox[abposr]-[A-Za-z0-9\-]{10,})", 1),
            (r"(-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)", 1),
            (r"\b(eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,})", 1),
            (
                r#"(?i)\b(?:password|passwd|pwd|api[_\-]?key|apikey|secret[_\-]?key|access[_\-]?token|auth[_\-]?token|client[_\-]?secret)\b["']?\s*[:=]\s*["']?([^\s"',;]{4,})"#,
                1,
            ),
        ],
        Kind::UrlCredentials => vec![(r"(?i)\b[a-z][a-z0-9+.\-]*://([^\s:/@]+:[^\s@/]+)@[\w.\-]+", 1)],
    }
}

impl PatternDetector {
    pub fn new(kinds: &[Kind], keep_private_ips: bool) -> Self {
        let mut patterns: Vec<Vec<Pattern>> = Kind::ALL.iter().map(|_| Vec::new()).collect();
        let mut lits: Vec<&str> = Vec::new();
        let mut anchor_roles = Vec::new();
        for &kind in kinds {
            for (src, group) in patterns_for(kind) {
                patterns[kind as usize].push(Pattern {
                    kind,
                    re: Regex::new(src).expect("valid PII pattern"),
                    src,
                    group,
                });
            }
            for (lit, before, after) in anchors_for(kind) {
                lits.push(lit);
                anchor_roles.push(Anchor::Text { kind, before, after });
            }
        }
        let numeric = kinds.iter().any(|k| is_numeric(*k));
        if numeric {
            for d in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] {
                lits.push(d);
                anchor_roles.push(Anchor::Numeric);
            }
            if kinds.contains(&Kind::Ip) {
                // IPv6 groups can be hex letters only ("fe80::beef").
                lits.push("::");
                anchor_roles.push(Anchor::Numeric);
            }
        }
        let anchors = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&lits)
            .expect("valid anchors");
        Self { kinds: kinds.to_vec(), anchors, anchor_roles, patterns, numeric, keep_private_ips }
    }

    /// The leftmost-longest run of whole tokens (split at spaces, tabs and dashes)
    /// of `candidate` that validates.
    fn sub_match(&self, kind: Kind, candidate: &str) -> Option<std::ops::Range<usize>> {
        if !matches!(kind, Kind::Phone | Kind::Ssn) {
            return None;
        }
        let mut tokens: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        for (i, c) in candidate.char_indices() {
            let sep = c == ' ' || c == '\t' || c == '-';
            match (sep, start) {
                (true, Some(s)) => {
                    tokens.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            tokens.push((s, candidate.len()));
        }
        let n = tokens.len();
        for width in (1..n).rev() {
            for first in 0..=(n - width) {
                let r = trim_punctuation(candidate, tokens[first].0..tokens[first + width - 1].1);
                if !r.is_empty() && self.valid(kind, &candidate[r.clone()]) {
                    return Some(r);
                }
            }
        }
        None
    }

    fn valid(&self, kind: Kind, value: &str) -> bool {
        match kind {
            Kind::CreditCard => valid_card(value),
            Kind::Iban => valid_iban(value),
            Kind::Ssn => valid_ssn(value),
            Kind::Ip => valid_ip(value, self.keep_private_ips),
            Kind::Phone => valid_phone(value),
            Kind::Email | Kind::Secret | Kind::UrlCredentials => true,
        }
    }
}

impl Detector for PatternDetector {
    fn find(&self, text: &str, out: &mut Vec<Span>) {
        if text.is_empty() {
            return;
        }
        // The one pass: every anchor, in text order. Windows per kind (text kinds)
        // and numeric clusters are merged as they arrive.
        let mut windows: Vec<Vec<(usize, usize)>> = Kind::ALL.iter().map(|_| Vec::new()).collect();
        let mut cluster: Option<(usize, usize)> = None;
        let mut clusters: Vec<(usize, usize)> = Vec::new();
        for m in self.anchors.find_overlapping_iter(text) {
            match self.anchor_roles[m.pattern().as_usize()] {
                Anchor::Numeric => match &mut cluster {
                    Some((_, end)) if m.start() <= *end + CLUSTER_GAP => *end = m.end(),
                    _ => {
                        clusters.extend(cluster.take());
                        cluster = Some((m.start(), m.end()));
                    }
                },
                Anchor::Text { kind, before, after } => {
                    let start = if before == usize::MAX { scheme_start(text, m.start()) } else { m.start() };
                    let before = if before == usize::MAX { 0 } else { before };
                    let w = (start.saturating_sub(before), m.end().saturating_add(after).min(text.len()));
                    push_window(&mut windows[kind as usize], w);
                }
            }
        }
        clusters.extend(cluster);
        if self.numeric {
            let w: Vec<(usize, usize)> = clusters
                .into_iter()
                .map(|(s, e)| (s.saturating_sub(NUMERIC_MARGIN), (e + NUMERIC_MARGIN).min(text.len())))
                .collect();
            for kind in Kind::ALL.into_iter().filter(|k| is_numeric(*k)) {
                windows[kind as usize] = w.clone();
            }
        }
        for kind in &self.kinds {
            let w = &windows[*kind as usize];
            if w.is_empty() {
                continue;
            }
            for p in &self.patterns[*kind as usize] {
                self.search_windows(p, text, w, out);
            }
        }
    }
}

/// A token run without the punctuation at its edges that ends a sentence or opens
/// a bracket ("0678986037." → "0678986037", "(1" → "1"); an area code's `(` stays.
fn trim_punctuation(s: &str, mut r: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let b = s.as_bytes();
    while r.end > r.start && matches!(b[r.end - 1], b'.' | b'/' | b'(' | b')') {
        if b[r.end - 1] == b')' && s[r.clone()].contains('(') {
            break;
        }
        r.end -= 1;
    }
    if r.start < r.end && b[r.start] == b'(' && !s[r.clone()].contains(')') {
        r.start += 1;
    }
    r
}

/// Where the run of URL scheme characters that ends at `end` starts.
fn scheme_start(text: &str, end: usize) -> usize {
    let b = text.as_bytes();
    let mut i = end;
    while i > 0 && (b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'+' | b'.' | b'-')) {
        i -= 1;
    }
    i
}

/// Appends a window, merging it with the last one when they overlap (anchors
/// arrive in text order, so windows of one kind arrive sorted by start).
fn push_window(windows: &mut Vec<(usize, usize)>, w: (usize, usize)) {
    if let Some(last) = windows.last_mut() {
        if w.0 <= last.1 {
            last.1 = last.1.max(w.1);
            return;
        }
    }
    windows.push(w);
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

impl PatternDetector {
    /// Runs one pattern over the windows, left to right and without overlaps, as
    /// one scan of the whole text would; look-around at a window's edges sees the
    /// text beyond it. A match that reaches a window's end is re-run anchored at
    /// its start over the rest of the text, so a long value is never cut.
    fn search_windows(&self, p: &Pattern, text: &str, windows: &[(usize, usize)], out: &mut Vec<Span>) {
        let mut next = 0;
        for &(ws, we) in windows {
            let (ws, we) = (floor_char(text, ws).max(next), ceil_char(text, we));
            if ws >= we {
                continue; // covered by a match that ran past the previous window
            }
            let mut input = Input::new(text).range(ws..we);
            while input.start() < we {
                let Some(mut m) = p.re.search(&input) else { break };
                if m.end() == we && we < text.len() {
                    let whole = Input::new(text).range(m.start()..).anchored(Anchored::Yes);
                    m = p.re.search(&whole).unwrap_or(m);
                }
                next = self.accept(p, text, m.start(), m.end(), out).max(m.start() + 1);
                if next >= we {
                    break;
                }
                input.set_start(next);
            }
        }
    }

    /// Validates one match of a pattern and appends its span (or the valid run
    /// inside it). Returns where the next search starts: the match's end, or for
    /// phones the end of the span found, else the first separator inside the
    /// candidate. A phone candidate does not use up the delimiter after it (a `+`
    /// number right after another number keeps the space it needs before it), and a
    /// candidate that held no phone is searched again from its second token (the
    /// candidate, at most 27 characters, may have started in a neighbouring version
    /// or date and been cut before the phone's end).
    fn accept(&self, p: &Pattern, text: &str, mstart: usize, mend: usize, out: &mut Vec<Span>) -> usize {
        let (start, end) = if p.group == 0 {
            (mstart, mend)
        } else {
            let mut caps = p.re.create_captures();
            p.re.search_captures(&Input::new(text).range(mstart..mend).anchored(Anchored::Yes), &mut caps);
            let Some(g) = caps.get_group(p.group) else { return mend };
            (g.start, g.end)
        };
        if p.kind != Kind::Phone {
            self.accept_value(p, text, start, end, out);
            return mend;
        }
        match self.accept_value(p, text, start, end, out) {
            Some(found_end) => found_end,
            None => text[start..end].find([' ', '\t', '-']).map_or(end, |i| start + i),
        }
    }

    /// [`Self::accept`] for the value at `start..end`: the end of the span it
    /// appended, if any.
    fn accept_value(&self, p: &Pattern, text: &str, start: usize, end: usize, out: &mut Vec<Span>) -> Option<usize> {
        let b = text.as_bytes();
        match p.kind {
            Kind::CreditCard => {
                // Luhn-valid card shapes in the run, unless part of an IBAN-shaped
                // string (valid or not).
                let mut last = None;
                for (s, e) in find_cards(b, start, end) {
                    if !iban_shape_overlaps(b, s, e) {
                        out.push(Span { kind: p.kind, start: s, end: e });
                        last = Some(e);
                    }
                }
                return last;
            }
            Kind::Iban => {
                let Some((e, true)) = iban_shape_at(b, start) else { return None };
                out.push(Span { kind: p.kind, start, end: e });
                return Some(e);
            }
            Kind::Ip if looks_like_version(text, start, end) => return None,
            // A number right after `#` is an issue, bug or order number.
            Kind::Phone if text[..start].ends_with('#') => return None,
            _ => {}
        }
        // An opening parenthesis that no area code closes is punctuation: "(020 7946 0958)".
        let unclosed = text[start..end].starts_with('(') && !text[start..end].contains(')');
        let start = if p.kind == Kind::Phone && unclosed { start + 1 } else { start };
        let value = &text[start..end];
        let ok = match p.kind {
            Kind::Phone => {
                !street_address_follows(text, end)
                    && ((phone_in_context(text, start, end) && !date_or_dotted(without_extension(value)))
                        || (self.valid(p.kind, value)
                            && (phone_grouping(value) || !other_number_in_context(text, start))))
            }
            _ => self.valid(p.kind, value),
        };
        // The pattern ran into a neighbouring number ("4111… 2004"): keep the
        // longest valid run of whole tokens inside the candidate.
        let found =
            if ok { Some(start..end) } else { self.sub_match(p.kind, value).map(|r| start + r.start..start + r.end) };
        let r = found?;
        if p.kind == Kind::Phone && other_number_shape(b, r.start, r.end) {
            return None;
        }
        out.push(Span { kind: p.kind, start: r.start, end: r.end });
        Some(r.end)
    }
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// Whether `start..end` overlaps a number of another kind's shape, whether its
/// check passes or not: a card (issuer range, length and printed grouping), an IBAN
/// (registry country, length and BBAN structure) or a hyphenated ISBN with a valid
/// check digit. None of them is a phone number.
fn other_number_shape(text: &[u8], start: usize, end: usize) -> bool {
    card_shape_overlaps(text, start, end) || iban_shape_overlaps(text, start, end) || isbn_overlaps(text, start, end)
}

/// Whether an ISBN printed in its groups overlaps `start..end`: ISBN-13 (978/979,
/// five groups) or ISBN-10 (four groups, the check character may be `X`), hyphens
/// or spaces between the groups (one kind), and a valid check character.
fn isbn_overlaps(text: &[u8], start: usize, end: usize) -> bool {
    // Tokens of digits (and a final X) around the span, with the separator before each.
    let lo = start.saturating_sub(17);
    let hi = (end + 17).min(text.len());
    let mut toks: Vec<(usize, usize, u8)> = Vec::new();
    let mut i = lo;
    while i < hi {
        if text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_alphanumeric()) {
            let s = i;
            while i < hi && text[i].is_ascii_digit() {
                i += 1;
            }
            if i < hi && matches!(text[i], b'X' | b'x') && text.get(i + 1).is_none_or(|b| !b.is_ascii_alphanumeric()) {
                i += 1;
            }
            let sep = if s > 0 { text[s - 1] } else { 0 };
            toks.push((s, i, sep));
        } else {
            i += 1;
        }
    }
    for n in [4usize, 5] {
        for w in toks.windows(n) {
            let (s, e) = (w[0].0, w[n - 1].1);
            let sep = w[1].2;
            let joined = w.windows(2).all(|p| p[1].0 == p[0].1 + 1 && p[1].2 == sep);
            // The check character is a group of its own; an ISBN-13 starts with a 978/979 group.
            let last_one = w[n - 1].1 - w[n - 1].0 == 1;
            let prefix_group = n == 4 || w[0].1 - w[0].0 == 3;
            if !joined || !last_one || !prefix_group || !matches!(sep, b'-' | b' ') || e <= start || s >= end {
                continue;
            }
            let chars: Vec<u8> = w.iter().flat_map(|t| text[t.0..t.1].iter().copied()).collect();
            if isbn_check(&chars, n) {
                return true;
            }
        }
    }
    false
}

/// The ISBN check: ten characters (mod 11, weights 10..1, `X` = 10) in four groups,
/// or thirteen digits starting 978/979 (weights 1, 3) in five.
fn isbn_check(c: &[u8], groups: usize) -> bool {
    let v = |b: u8| if matches!(b, b'X' | b'x') { 10 } else { u32::from(b - b'0') };
    let x_only_last = c.iter().rev().skip(1).all(u8::is_ascii_digit);
    match (c.len(), groups) {
        (10, 4) if x_only_last => c.iter().enumerate().map(|(i, &b)| (10 - i as u32) * v(b)).sum::<u32>() % 11 == 0,
        (13, 5) if c.iter().all(u8::is_ascii_digit) && (c.starts_with(b"978") || c.starts_with(b"979")) => {
            c.iter().enumerate().map(|(i, &b)| if i % 2 == 0 { v(b) } else { 3 * v(b) }).sum::<u32>() % 10 == 0
        }
        _ => false,
    }
}

/// US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000.
pub fn valid_ssn(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, x| a * 10 + u32::from(*x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Words that announce a phone number ("call", "tel.", "fax:", "mobile", ...).
const PHONE_WORDS: &[&str] = &[
    "phone",
    "tel",
    "fax",
    "mobile",
    "cell",
    "call",
    "desk",
    "office",
    "contact",
    "reach",
    "ring",
    "dial",
    "sms",
    "whatsapp",
    "messages",
    "registered",
];

/// Words that announce some other number ("license number 2676749544").
/// Times count too ("timestamp 1302931845": Unix times are ten digits).
const OTHER_NUMBER_WORDS: &str = "license|licence|account|acct|order|invoice|serial|passport|card|routing|tracking|isbn|zip|postcode|postal|ticket|id|timestamp|epoch|mtime|ctime|atime|jiffies";

/// True when the number is followed by a street name ("46833 1700 Buck Drive").
fn street_address_follows(text: &str, end: usize) -> bool {
    static STREET: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = STREET.get_or_init(|| {
        regex::Regex::new(
            r"^[ \t]+(?:[A-Z][a-z]+[ \t]+){1,2}(?:Street|St|Road|Rd|Avenue|Ave|Drive|Dr|Lane|Ln|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Close|Crescent|Square|Row|Parkway|Highway)\b",
        )
        .expect("valid street pattern")
    });
    let mut hi = (end + 48).min(text.len());
    while !text.is_char_boundary(hi) {
        hi -= 1;
    }
    re.is_match(&text[end..hi])
}

/// True when the words right before `start` name another kind of number: the last
/// word, or the last words "<word> number/no./#/id [is/:]" ("driver's license
/// number is 2676749544", "order #2025550143"), not a word further back.
fn other_number_in_context(text: &str, start: usize) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(&format!(
            r"(?i)\b(?:{OTHER_NUMBER_WORDS})s?\b(?:[ \t]*(?:number|num|no|nr|#|id)\b)?\.?(?:[ \t]*(?:is|was|=|:|#))?[ \t]*[:#=]?[ \t]*[(\[\x22']?$"
        ))
        .expect("valid context pattern")
    });
    let mut lo = start.saturating_sub(32);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    // "in order to" is no order number.
    re.find(&text[lo..start]).is_some_and(|m| {
        let word_before = text[lo..lo + m.start()].trim_end().rsplit(|c: char| !c.is_alphanumeric()).next();
        !(m.as_str().to_ascii_lowercase().starts_with("order")
            && word_before.is_some_and(|w| w.eq_ignore_ascii_case("in")))
    })
}

/// A number of 6 to 15 digits with separators, or 7 to 15 without, next to a word
/// that announces a phone number (within 32 characters before or 16 after).
fn phone_in_context(text: &str, start: usize, end: usize) -> bool {
    let value = &text[start..end];
    let n = value.bytes().filter(u8::is_ascii_digit).count();
    let separated = value.bytes().any(|b| !b.is_ascii_digit());
    if !(6..=15).contains(&n) || (!separated && n < 7) || value.contains('.') && !separated {
        return false;
    }
    let mut lo = start.saturating_sub(32);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (end + 16).min(text.len());
    while !text.is_char_boundary(hi) {
        hi += 1;
    }
    let around = format!("{} {}", &text[lo..start], &text[end..hi]).to_ascii_lowercase();
    // At the start of a word ("Tel.", "telephone", "phones"; not "intel", "string",
    // "syscall", "harrington").
    PHONE_WORDS
        .iter()
        .any(|w| around.match_indices(w).any(|(i, _)| !around[..i].ends_with(|c: char| c.is_alphanumeric())))
}

/// A dotted quad that is part of a longer dotted number, or a package version
/// rather than an address: followed by a
/// version suffix (`2.10.1.0-2`, `1.2.3.4~rc1`, `1.2.3.4+dfsg`), or alone in
/// parentheses with a first number below 10 and no three-digit part (`(2.10.1.3)`), or `x.y.z.0` with x below 10 (a
/// network address at best, a version number far more often).
fn looks_like_version(text: &str, start: usize, end: usize) -> bool {
    let value = &text[start..end];
    if value.contains(':') {
        return false;
    }
    let next = text[end..].chars().next();
    let prev = text[..start].chars().next_back();
    // A version suffix: `-`, `~` or `+` and a letter or digit (not an address range
    // `a.b.c.d-e.f.g.h`).
    let rest = &text[end..];
    if matches!(next, Some('-' | '~' | '+')) && rest[1..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
        static RANGE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let range = RANGE.get_or_init(|| regex::Regex::new(r"^-(?:\d{1,3}\.){3}\d{1,3}").expect("valid range pattern"));
        return !range.is_match(rest);
    }
    // Part of a longer dotted number (03.91.12.17.13, 1.2.840.113549.1).
    let after_dot_digit = text[end..].strip_prefix('.').is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    let before_digit_dot = text[..start].strip_suffix('.').is_some_and(|r| r.ends_with(|c: char| c.is_ascii_digit()));
    if after_dot_digit || before_digit_dot {
        return true;
    }
    // In parentheses, a version's later parts are short ("(2.10.1.3)"); an address
    // with a three-digit octet is an address ("(5.183.22.109)").
    let first: u32 = value.split('.').next().and_then(|o| o.parse().ok()).unwrap_or(255);
    let short_parts = value.split('.').skip(1).all(|o| o.len() <= 2);
    first < 10 && ((prev == Some('(') && next == Some(')') && short_parts) || value.ends_with(".0"))
}

/// A parseable address; private, loopback and link-local ones are skipped when
/// `keep_private` is set.
pub fn valid_ip(s: &str, keep_private: bool) -> bool {
    let ip: IpAddr = if s.contains(':') {
        match s.parse::<Ipv6Addr>() {
            Ok(v6) => IpAddr::V6(v6),
            Err(_) => return false,
        }
    } else {
        match s.parse::<Ipv4Addr>() {
            Ok(v4) => IpAddr::V4(v4),
            Err(_) => return false,
        }
    };
    if let IpAddr::V6(v6) = ip {
        // "::" alone, or short hex-only tokens like "dead:beef" are not addresses in prose.
        if v6.is_unspecified() || s.matches(':').count() < 2 {
            return false;
        }
    }
    if keep_private {
        let private = match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        return !private;
    }
    true
}

/// The digits (and single spaces) of an area code in parentheses at the start of
/// `main` ("(0161)", "(415)", "(06 1)").
fn area_code(main: &str) -> Option<&str> {
    let close = main.find(')')?;
    let area = &main[1..close];
    let spaced = area.split(' ').all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()));
    (!area.is_empty() && spaced).then_some(area)
}

/// A trunk prefix `0` followed by an area code (a digit 1-9; `00` is an
/// international prefix).
fn trunk_area(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() == Some(&b'0') && b.get(1).is_some_and(|d| (b'1'..=b'9').contains(d))
}

/// Groupings only phone numbers are printed in: an international prefix (`+`), an
/// area code in parentheses, NANP `3-3-4` with one separator character (dash or
/// dot), or a trunk `0` and three or more groups ("04 23 49 96 60", "020 7946
/// 0958"). A word before such a number that names another kind of number does not
/// make it one.
fn phone_grouping(value: &str) -> bool {
    let main = without_extension(value);
    if main.starts_with('+') || (main.starts_with('(') && area_code(main).is_some()) {
        return true;
    }
    let groups: Vec<&str> = main.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let seps: Vec<char> = main.chars().filter(|c| !c.is_ascii_digit()).collect();
    let nanp = lens == [3, 3, 4] && seps.len() == 2 && seps[0] == seps[1] && matches!(seps[0], '-' | '.');
    nanp || (trunk_area(main) && groups.len() >= 3)
}

fn without_extension(s: &str) -> &str {
    match s.find(['x', 'e']) {
        Some(i) => s[..i].trim_end(),
        None => s,
    }
}

/// Dates and year ranges (2004-11-23, 23/11/2004, 1999-2004), and dotted numbers
/// (versions, OIDs, addresses) unless shaped like 3.3.4 or 2.2.2.2.2: no phone, even
/// next to a phone word.
fn date_or_dotted(main: &str) -> bool {
    let groups: Vec<&str> = main.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let is_year = |g: &str| g.len() == 4 && (g.starts_with("19") || g.starts_with("20"));
    if groups.len() <= 3 && groups.iter().any(|g| is_year(g)) && groups.iter().all(|g| g.len() <= 2 || is_year(g)) {
        return true;
    }
    // A YYYYMMDD date, alone (20210714) or as a snapshot version's part
    // (2.23.52.20130612-1).
    let is_date = |g: &str| {
        let d = g.as_bytes();
        let two = |i: usize| (d[i] - b'0') * 10 + (d[i + 1] - b'0');
        g.len() == 8 && is_year(&g[..4]) && (1..=12).contains(&two(4)) && (1..=31).contains(&two(6))
    };
    if !main.starts_with('+') && groups.iter().any(|g| is_date(g)) && (groups.len() == 1 || main.contains('.')) {
        return true;
    }
    // An international prefix ("+33 4.57…", "0033 4.57…") marks a phone.
    let intl = main.starts_with('+')
        || (main.starts_with("00")
            && main.split_once(' ').is_some_and(|(cc, _)| cc.bytes().all(|b| b.is_ascii_digit())));
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let mut seps = main.chars().filter(|c| !c.is_ascii_digit() && *c != ' ').peekable();
    !intl && seps.peek().is_some() && seps.all(|c| c == '.') && lens != [3, 3, 4] && lens != [2, 2, 2, 2, 2]
}

/// Phone shapes: international (`+CC…` or `00CC…`, 8-15 digits), national with a
/// trunk `0` or an area code in parentheses (9-12 digits), or NANP `3-3-4` with one
/// separator style. Dates, version numbers and dotted identifiers are rejected.
pub fn valid_phone(s: &str) -> bool {
    let main = without_extension(s);
    if date_or_dotted(main) {
        return false;
    }
    let n = main.bytes().filter(u8::is_ascii_digit).count();
    let groups: Vec<&str> = main.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let seps: Vec<char> = main.chars().filter(|c| !c.is_ascii_digit() && *c != ' ').collect();
    if let Some(rest) = main.strip_prefix('+') {
        return (8..=15).contains(&n) && !rest.starts_with('0');
    }
    // A run of digits ending in five zeros is a quantity (1000000000, 1989000000 Hz).
    if lens.len() == 1 && main.ends_with("00000") {
        return false;
    }
    if let Some(rest) = main.strip_prefix("00") {
        // E.164 country codes start with 1-9 ("0000 0438" is no phone).
        return (10..=17).contains(&n) && rest.trim_start().starts_with(|c: char| ('1'..='9').contains(&c));
    }
    if main.starts_with('(') {
        // An area code in parentheses: "(0161) 4960066", "(415) 555-0132", "(06 1) 234
        // 5678" (HU: trunk 06, then the area code). After a trunk 0, national numbers
        // of 8 digits exist (IE "(022) 12345": NSNs of 7-9 digits).
        let Some(area) = area_code(main) else { return false };
        let min = if trunk_area(area) { 8 } else { 9 };
        return (min..=13).contains(&n);
    }
    if main.starts_with('0') {
        // After a trunk 0, 9-13 digits (AR mobile "011 15-2345-6789": 13), or 8 in three
        // or more groups (SE "08-12 34 56", IE "022 12345"'s grouped forms).
        return (9..=13).contains(&n) || (n == 8 && trunk_area(main) && groups.len() >= 3);
    }
    // Ten digits without separators: the national significant number length of
    // NANP (area codes 2-9) and of India (mobiles 6-9, fixed lines 1-5: STD codes 11
    // Delhi, 22 Mumbai, 33 Kolkata, 44 Chennai, 120, 141, ...); a leading 0 is a
    // trunk prefix, taken above.
    if lens == [10] {
        return true;
    }
    // NANP: 3-3-4 with one separator character (or none between the groups).
    if lens == [3, 3, 4] && n == 10 {
        let mut distinct: Vec<char> = seps.clone();
        distinct.dedup();
        let spaces = main.matches(' ').count();
        return distinct.len() <= 1 && (seps.len() == 2 || (seps.is_empty() && spaces == 2));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, kinds: &[Kind]) -> Vec<(Kind, String)> {
        let d = PatternDetector::new(kinds, false);
        let mut spans = Vec::new();
        d.find(text, &mut spans);
        super::super::resolve_overlaps(&mut spans);
        spans.into_iter().map(|s| (s.kind, text[s.start..s.end].to_string())).collect()
    }

    /// Every pattern over the whole text, as a matcher without windows would run it.
    fn full_scan(d: &PatternDetector, text: &str) -> Vec<Span> {
        let mut out = Vec::new();
        for kind in &d.kinds {
            for p in &d.patterns[*kind as usize] {
                let mut at = 0;
                while at < text.len() {
                    let Some(m) = p.re.search(&Input::new(text).range(at..)) else { break };
                    at = d.accept(p, text, m.start(), m.end(), &mut out).max(m.start() + 1);
                }
            }
        }
        out.sort_by_key(|s| (s.start, s.end, s.kind));
        out
    }

    fn windowed(d: &PatternDetector, text: &str) -> Vec<Span> {
        let mut out = Vec::new();
        d.find(text, &mut out);
        out.sort_by_key(|s| (s.start, s.end, s.kind));
        out
    }

    /// The windows hold every match a whole-text scan finds: real licence texts
    /// and generated text dense with values, separators and multi-byte characters.
    #[test]
    fn windows_find_what_a_full_scan_finds() {
        use std::io::Read;
        let d = PatternDetector::new(&Kind::ALL, false);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/sample/licenses.jsonl.gz");
        let mut raw = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).expect("sample")).read_to_string(&mut raw).expect("gz");
        let mut texts: Vec<String> = raw
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["text"].as_str().unwrap_or("").into())
            .collect();
        let values = [
            "jane.doe@example.com",
            "+44 20 7946 0958",
            "(415) 555-0132",
            "4111 1111 1111 1111",
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "123-45-6789",
            "93.184.216.34",
            "2001:db8:abcd:ef::1",
            "fe80::beef",
            "AKIAIOSFODNN7EXAMPLE",
            "postgres://admin:hunter2@db.local/x",
            "password=s3cretpw",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789AB",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
            "eyJhbGciOi.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4fw",
            "version 2.10.1.0-2",
            "é",
            "日本",
            "x",
            " ",
            "-",
            ".",
            "::",
            "7",
            "\n",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..400 {
            let mut t = String::new();
            for _ in 0..60 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = values[(state % values.len() as u64) as usize];
                t.push_str(v);
                // Long fillers push values apart and across the window margins.
                for _ in 0..(state >> 32) % 90 {
                    t.push(if (state >> 40).is_multiple_of(3) { '1' } else { 'a' });
                }
                if (state >> 20).is_multiple_of(2) {
                    t.push(' ');
                }
            }
            texts.push(t);
        }
        let mut hits = 0;
        for t in &texts {
            let (a, b) = (full_scan(&d, t), windowed(&d, t));
            assert_eq!(a, b, "in {t:?}");
            hits += a.len();
        }
        assert!(hits > 1000, "the texts hold values: {hits}");
    }

    #[test]
    fn validators() {
        assert!(valid_card("4111 1111 1111 1111"));
        assert!(valid_card("5500-0000-0000-0004"));
        assert!(!valid_card("4111 1111 1111 1112")); // Luhn-invalid
        assert!(valid_iban("GB82 WEST 1234 5698 7654 32"));
        assert!(valid_iban("DE89370400440532013000"));
        assert!(!valid_iban("DE89370400440532013001")); // mod-97-invalid
        assert!(valid_ssn("123-45-6789"));
        assert!(!valid_ssn("666-45-6789") && !valid_ssn("123-00-6789") && !valid_ssn("900-12-3456"));
        assert!(valid_ip("8.8.8.8", true) && !valid_ip("10.1.2.3", true) && valid_ip("10.1.2.3", false));
        assert!(valid_ip("2001:db8::1", false));
    }

    #[test]
    fn versions_are_not_ips_or_phones() {
        let t = "binutils (2.10.1.0-2) and (2.21.0.20110327) gcc (12-20220106-1), server at 93.184.216.34.";
        let f = found(t, &[Kind::Ip, Kind::Phone]);
        assert_eq!(f, [(Kind::Ip, "93.184.216.34".to_string())]);
        let f = found("call me at 03.91.12.17.13 please", &[Kind::Ip, Kind::Phone]);
        assert_eq!(f, [(Kind::Phone, "03.91.12.17.13".to_string())]);
    }

    #[test]
    fn finds_each_kind() {
        let all = Kind::ALL;
        let t = "mail jane.doe@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111, \
                 IBAN DE89 3704 0044 0532 0130 00, ssn 123-45-6789, host 93.184.216.34, \
                 key AKIAIOSFODNN7EXAMPLE, db postgres://admin:hunter2@db.local/x, password=s3cretpw";
        let f = found(t, &all);
        let kinds: Vec<Kind> = f.iter().map(|x| x.0).collect();
        for k in [
            Kind::Email,
            Kind::Phone,
            Kind::CreditCard,
            Kind::Iban,
            Kind::Ssn,
            Kind::Ip,
            Kind::Secret,
            Kind::UrlCredentials,
        ] {
            assert!(kinds.contains(&k), "{k:?} not found in {f:?}");
        }
        assert!(f.contains(&(Kind::UrlCredentials, "admin:hunter2".into())));
        assert!(f.contains(&(Kind::Secret, "s3cretpw".into())));
        assert!(f.contains(&(Kind::CreditCard, "4111 1111 1111 1111".into())));
        let f = found("office is at 46833 1700 Buck Drive; in order to +918921560593", &[Kind::Phone]);
        assert_eq!(f, [(Kind::Phone, "+918921560593".to_string())]);
        let f = found("driver's license number is 2676749544, order #2025550143", &[Kind::Phone]);
        assert!(f.is_empty(), "{f:?}");
        let f = found(r"Phone:\n07700 864492-Office", &[Kind::Phone]);
        assert_eq!(f, [(Kind::Phone, "07700 864492".to_string())]);
        let us = found("call (415) 555-0132 or 415.555.0199 today", &[Kind::Phone]);
        assert_eq!(us.len(), 2, "{us:?}");
        // Neighbouring numbers do not hide a valid value.
        let f = found("gcc-12 30533788161135 (12.2.0-4), 0519628288 (2.29.1-4)", &[Kind::CreditCard, Kind::Phone]);
        assert!(f.contains(&(Kind::CreditCard, "30533788161135".into())), "{f:?}");
        assert!(f.contains(&(Kind::Phone, "0519628288".into())), "{f:?}");
        let f = found("from trunk GB97ZXYG36008888016268 20110409.", &[Kind::Iban]);
        assert_eq!(f, [(Kind::Iban, "GB97ZXYG36008888016268".to_string())]);
    }

    #[test]
    fn clause_numbers_and_versions_are_not_phones() {
        let f = found("Clause 252.227-7013 (c) (1) of DFARs; version 2.6.32-5-amd64; 1999-2004", &[Kind::Phone]);
        assert!(f.is_empty(), "{f:?}");
    }

    /// The issue-22 shapes: 14-digit Diners Club cards printed 4-6-4 and 4-4-4-2,
    /// 27-character FR/IT IBANs in groups of four after "account"/"IBAN", and grouped
    /// digits of invalid cards/IBANs, ISBNs and dates that are not phones.
    #[test]
    fn issuer_groupings_ibans_in_context_and_non_phones() {
        let all = Kind::ALL;
        for card in ["3056 930902 5904", "3056 9309 0259 04", "3852-000002-3237", "3622.7206.2716.67", "30569309025904"]
        {
            let f = found(&format!("pay with {card}, thanks"), &all);
            assert_eq!(f, [(Kind::CreditCard, card.to_string())], "{card}");
        }
        for (lead, iban) in [
            ("account ", "FR76 3000 6000 0112 3456 7890 189"),
            ("IBAN ", "IT60 X054 2811 1010 0000 0123 456"),
            ("account no.", "FR7630006000011234567890189"),
            ("IBAN:", "IT60X0542811101000000123456"),
        ] {
            let f = found(&format!("Transfer to {lead}{iban} 2004 by Friday."), &all);
            assert_eq!(f, [(Kind::Iban, iban.to_string())], "{lead}{iban}");
        }
        // Mod-97 and Luhn failures are no kind at all (their digit groups are no phones).
        for bad in [
            "FR77 3000 6000 0112 3456 7890 189",
            "IT60 X054 2811 1010 0000 0123 457",
            "5500 0000 0000 0005",
            "3056 930902 5905",
            "0-306-40615-2",
            "978-3-16-148410-0",
            "2004-11-23",
        ] {
            let f = found(&format!("call {bad} today"), &all);
            assert!(f.is_empty(), "{bad}: {f:?}");
        }
        // A real phone next to them still is one.
        let f = found("IBAN FR77 3000 6000 0112 3456 7890 189, phone 020 7946 0958", &all);
        assert_eq!(f, [(Kind::Phone, "020 7946 0958".to_string())]);
    }

    /// Printed shapes of the numbering plans that issue 22's eval found missed: ten
    /// digits of any NANP/Indian first digit, HU "(06 1) …", IE 8-digit "(022) …", SE
    /// "08-12 34 56", AR mobiles of 13 digits, a `+` number right after another
    /// number, a phone after a version that filled the candidate, and a phone-shaped
    /// number after a word naming another number.
    #[test]
    fn numbering_plan_shapes_and_neighbours() {
        for (lead, phone) in [
            ("the value ", "1302931845"),
            ("the value ", "5641830092"),
            ("see ", "(06 1) 234 3915"),
            ("on ", "(022) 10427"),
            ("seen ", "08-12 70 96"),
            ("at ", "011 15-2345-1458"),
            ("Closes: #311975 ", "+351212340722"),
            ("Closes: #458853 ", "+351 21 234 7664"),
            ("binutils (2.24.51.20140918-1) ", "02 43 20 89 47"),
            ("binutils (2.25.1-6) (", "(0306)9990032"),
            ("$id: = ", "04 23 49 96 60"),
            ("in order [", "5879567177"),
        ] {
            let t = format!("{lead}{phone}, done");
            assert_eq!(found(&t, &[Kind::Phone]), [(Kind::Phone, phone.to_string())], "{t}");
        }
        // Quantities, E.164's country code 0, dates, issue numbers and time stamps are
        // not phones; context words count at a word's start only ("string", "harrington").
        for t in [
            "opp-hz = <1989000000> and 1000000000 Hz",
            "dump 00000438 00000001 0000004000000000",
            "call : 212 or git 20210714 from the branch",
            "tel: snapshot (2.23.52.20130612-1) unstable",
            "binutils (2.18.50.20080803-1) <harringtonmichael@example.org>",
            "Closes: #1302931845",
            "timestamp 1302931845",
        ] {
            assert!(found(t, &[Kind::Phone]).is_empty(), "{t}: {:?}", found(t, &[Kind::Phone]));
        }
        // An address in parentheses with a three-digit octet is an address.
        assert_eq!(found("host (5.183.22.109) up", &[Kind::Ip]), [(Kind::Ip, "5.183.22.109".to_string())]);
        assert!(found("binutils (2.10.1.3) up", &[Kind::Ip]).is_empty());
    }

    #[test]
    fn no_false_hits_on_invalid_numbers() {
        let t = "order 4111 1111 1111 1112 and IBAN DE89 3704 0044 0532 0130 01, version 1.2.3.4.5";
        let f = found(t, &[Kind::CreditCard, Kind::Iban]);
        assert!(f.is_empty(), "{f:?}");
    }
}
