//! Pattern detectors for structured PII, with validators that keep false
//! positives out (Luhn for cards, mod-97 for IBANs, SSA rules for SSNs, address
//! parsing for IPs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aho_corasick::AhoCorasick;
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

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
            vec![(r"(?i)\b[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b", 0)]
        }
        // A permissive candidate (digits with spaces, dots, dashes, slashes, parentheses,
        // an optional +/00 prefix and extension); `valid_phone` decides by shape.
        Kind::Phone => vec![(
            // (a literal "\n" or "\t" escape before it, or "-Fax" after it, also delimit)
            r"(?:^|[^\w+.\-/(]|\\[nt,])((?:\+|\()?\d[\d \t.\-/()]{4,24}\d(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,6})?)(?:$|[^\w\-/]|-[A-Za-z])",
            1,
        )],
        Kind::Ip => vec![
            (r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b", 0),
            (
                r"(?i)(?:^|[^\w:])((?:[0-9a-f]{1,4}:){1,7}(?::|(?::[0-9a-f]{1,4}){1,7}|[0-9a-f]{1,4})|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})(?:$|[^\w:])",
                1,
            ),
        ],
        Kind::CreditCard => vec![(r"(?:^|[^\w])(\d(?:[ \-]?\d){12,18})\b", 1)],
        Kind::Iban => vec![(r"\b([A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30})\b", 1)],
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
        if !matches!(kind, Kind::Phone | Kind::CreditCard | Kind::Iban | Kind::Ssn) {
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
                let r = tokens[first].0..tokens[first + width - 1].1;
                if self.valid(kind, &candidate[r.clone()]) {
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
    fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

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
                next = m.end().max(m.start() + 1);
                self.accept(p, text, m.start(), m.end(), out);
                if next >= we {
                    break;
                }
                input.set_start(next);
            }
        }
    }

    /// Validates one match of a pattern and appends its span (or the valid run
    /// inside it).
    fn accept(&self, p: &Pattern, text: &str, mstart: usize, mend: usize, out: &mut Vec<Span>) {
        let (start, end) = if p.group == 0 {
            (mstart, mend)
        } else {
            let mut caps = p.re.create_captures();
            p.re.search_captures(&Input::new(text).range(mstart..mend).anchored(Anchored::Yes), &mut caps);
            let Some(g) = caps.get_group(p.group) else { return };
            (g.start, g.end)
        };
        if p.kind == Kind::Ip && looks_like_version(text, start, end) {
            return;
        }
        let value = &text[start..end];
        let ok = match p.kind {
            Kind::Phone => {
                !street_address_follows(text, end)
                    && (phone_in_context(text, start, end)
                        || (self.valid(p.kind, value)
                            && (value.starts_with('+') || !other_number_in_context(text, start))))
            }
            _ => self.valid(p.kind, value),
        };
        if ok {
            out.push(Span { kind: p.kind, start, end });
        } else if let Some(r) = self.sub_match(p.kind, value) {
            // The pattern ran into a neighbouring number ("4111… 2004"): keep the
            // longest valid run of whole tokens inside the candidate.
            out.push(Span { kind: p.kind, start: start + r.start, end: start + r.end });
        }
    }
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// Luhn checksum, a known issuer prefix, 13-19 digits, and when separated, one
/// separator character and a printed grouping (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3,
/// 4-4-4-3, 4-4-4-1), so digit runs inside other numbers are not taken for cards.
pub fn valid_card(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let seps: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    if let Some(&first) = seps.first() {
        if seps.iter().any(|c| *c != first) {
            return false;
        }
        let groups: Vec<usize> = s.split(first).map(str::len).collect();
        let printed: &[&[usize]] =
            &[&[4, 4, 4, 4], &[4, 6, 5], &[4, 6, 4], &[4, 4, 4, 4, 3], &[4, 4, 4, 3], &[4, 4, 4, 1]];
        if !printed.contains(&groups.as_slice()) {
            return false;
        }
    }
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |a, x| a * 10 + u32::from(*x));
    let issuer = match d[0] {
        4 => true,                                                    // Visa
        5 => (50..=58).contains(&prefix(2)),                          // Mastercard 51-55, Maestro 50, 56-58
        2 => (2221..=2720).contains(&prefix(4)) || prefix(4) == 2131, // Mastercard 2-series, JCB 2131
        3 => matches!(prefix(2), 34 | 37 | 35 | 36 | 38 | 30),        // Amex, JCB, Diners
        // Discover, UnionPay, Maestro
        6 => prefix(4) == 6011 || matches!(prefix(2), 62 | 63 | 65 | 67) || (644..=649).contains(&prefix(3)),
        1 => prefix(4) == 1800, // JCB 15-digit
        _ => false,
    };
    if !issuer {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry, common countries).
fn iban_length(cc: &str) -> Option<usize> {
    Some(match cc {
        "AD" => 24,
        "AE" => 23,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// Country length and the ISO 7064 mod-97 check.
pub fn valid_iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 || !compact.is_ascii() {
        return false;
    }
    match iban_length(&compact[..2]) {
        Some(n) if n == compact.len() => {}
        _ => return false,
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
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
const OTHER_NUMBER_WORDS: &[&str] = &[
    "license", "licence", "account", "acct", "order", "invoice", "serial", "passport", "card", "routing", "tracking",
    "isbn", "zip", "postcode", "postal", "ticket", "id:", "id#",
];

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

/// True when the 24 characters before `start` name another kind of number.
fn other_number_in_context(text: &str, start: usize) -> bool {
    let mut lo = start.saturating_sub(24);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let before = text[lo..start].to_ascii_lowercase();
    OTHER_NUMBER_WORDS.iter().any(|w| before.contains(w))
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
    PHONE_WORDS.iter().any(|w| around.contains(w))
}

/// A dotted quad that is part of a longer dotted number, or a package version
/// rather than an address: followed by a
/// version suffix (`2.10.1.0-2`, `1.2.3.4~rc1`, `1.2.3.4+dfsg`), or in parentheses
/// with a first number below 10 (`(2.10.1.0)`), or `x.y.z.0` with x below 10 (a
/// network address at best, a version number far more often).
fn looks_like_version(text: &str, start: usize, end: usize) -> bool {
    let value = &text[start..end];
    if value.contains(':') {
        return false;
    }
    let next = text[end..].chars().next();
    let prev = text[..start].chars().next_back();
    if matches!(next, Some('-' | '~' | '+')) {
        return true;
    }
    // Part of a longer dotted number (03.91.12.17.13, 1.2.840.113549.1).
    let after_dot_digit = text[end..].strip_prefix('.').is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    let before_digit_dot = text[..start].strip_suffix('.').is_some_and(|r| r.ends_with(|c: char| c.is_ascii_digit()));
    if after_dot_digit || before_digit_dot {
        return true;
    }
    let first: u32 = value.split('.').next().and_then(|o| o.parse().ok()).unwrap_or(255);
    first < 10 && (prev == Some('(') || value.ends_with(".0"))
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

/// Phone shapes: international (`+CC…` or `00CC…`, 8-15 digits), national with a
/// trunk `0` or an area code in parentheses (9-12 digits), or NANP `3-3-4` with one
/// separator style. Dates, version numbers and dotted identifiers are rejected.
pub fn valid_phone(s: &str) -> bool {
    // Drop an extension.
    let main = match s.find(['x', 'e']) {
        Some(i) => s[..i].trim_end(),
        None => s,
    };
    let n = main.bytes().filter(u8::is_ascii_digit).count();
    let groups: Vec<&str> = main.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let seps: Vec<char> = main.chars().filter(|c| !c.is_ascii_digit() && *c != ' ').collect();
    // Dates and year ranges: 2004-11-23, 23/11/2004, 1999-2004.
    let is_year = |g: &str| g.len() == 4 && (g.starts_with("19") || g.starts_with("20"));
    if groups.len() <= 3 && groups.iter().any(|g| is_year(g)) && lens.iter().all(|l| *l <= 4) {
        return false;
    }
    // Dotted numbers are versions or OIDs unless shaped like 3.3.4 or 2.2.2.2.2.
    if !seps.is_empty() && seps.iter().all(|c| *c == '.') && lens != [3, 3, 4] && lens != [2, 2, 2, 2, 2] {
        return false;
    }
    if let Some(rest) = main.strip_prefix('+') {
        return (8..=15).contains(&n) && !rest.starts_with('0');
    }
    if main.starts_with("00") {
        return (10..=17).contains(&n);
    }
    if main.starts_with('(') {
        // An area code in parentheses: "(0161) 4960066", "(415) 555-0132".
        let close = main.find(')').unwrap_or(0);
        let area = &main[1..close.max(1)];
        return close > 1 && area.bytes().all(|b| b.is_ascii_digit()) && (9..=12).contains(&n);
    }
    if main.starts_with('0') {
        return (9..=12).contains(&n);
    }
    // Ten digits without separators: an Indian mobile (6-9…) or a NANP number.
    if lens == [10] {
        let d = main.as_bytes();
        return d[0] >= b'6' || (d[0] >= b'2' && d[3] >= b'2');
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
                for m in p.re.find_iter(text) {
                    d.accept(p, text, m.start(), m.end(), &mut out);
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

    #[test]
    fn no_false_hits_on_invalid_numbers() {
        let t = "order 4111 1111 1111 1112 and IBAN DE89 3704 0044 0532 0130 01, version 1.2.3.4.5";
        let f = found(t, &[Kind::CreditCard, Kind::Iban]);
        assert!(f.is_empty(), "{f:?}");
    }
}
