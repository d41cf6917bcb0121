//! Property tests: values generated from the specifications (every card issuer
//! range with its lengths and printed groupings, every IBAN registry country with
//! its BBAN structure, phone numbering plans of 31 countries, IPv4/IPv6 address
//! space, SSN ranges, e-mail syntax), embedded at random places of real text (the
//! licence texts in datasets/sample) with random punctuation around them. Each
//! kind's recall must be at least 0.995, and no Luhn- or mod-97-invalid variant may
//! be detected as any kind.
//!
//! The checksums here are computed independently of the detector's (digit-string
//! arithmetic), so a wrong validator cannot agree with a wrong generator.

use std::io::Read;

use super::cards::{printed_groupings, ISSUERS};
use super::iban::{structure, REGISTRY};
use super::patterns::PatternDetector;
use super::{precedence, resolve_overlaps, Detector, Kind, Span};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn digit(&mut self) -> char {
        char::from(b'0' + self.below(10) as u8)
    }
}

/// Real text: paragraphs of the licence sample.
fn real_texts() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/sample/licenses.jsonl.gz");
    let mut raw = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("sample")).read_to_string(&mut raw).expect("gz");
    raw.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["text"].as_str().unwrap_or("").to_string())
        .flat_map(|t| t.split("\n\n").map(str::to_string).collect::<Vec<_>>())
        .filter(|p| p.len() >= 80 && p.matches(' ').count() >= 8)
        .collect()
}

const BEFORE: &[&str] = &["", "", "", "(", "[", "\"", "'", "<", ": ", "= ", "\n", "\t", "*", "«", "“", "—"];
const AFTER: &[&str] = &["", "", "", ")", "]", "\"", "'", ">", ".", ",", ";", ":", "!", "?", "\n", ").", "»", "”"];

/// `value` inside a window of real text at a random space, with random punctuation
/// around it; the value's byte range.
fn embed(rng: &mut Rng, texts: &[String], lead: &str, value: &str) -> (String, usize, usize) {
    let t = rng.pick(texts);
    let spaces: Vec<usize> = t.match_indices(' ').map(|(i, _)| i).collect();
    let at = *rng.pick(&spaces);
    let lo = t[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
    let hi = t[at..].char_indices().nth(200).map_or(t.len(), |(i, _)| at + i);
    let mut s = String::from(&t[lo..at]);
    s.push(' ');
    s.push_str(lead);
    s.push_str(rng.pick::<&str>(BEFORE));
    let start = s.len();
    s.push_str(value);
    let end = s.len();
    s.push_str(rng.pick::<&str>(AFTER));
    s.push_str(&t[at..hi]);
    (s, start, end)
}

fn spans(d: &PatternDetector, text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    d.find(text, &mut out);
    resolve_overlaps(&mut out);
    out
}

/// Recall of `kind` over generated values, and the misses (for the message).
/// `exact`: the span must be the value; otherwise overlapping it is enough.
fn recall(kind: Kind, exact: bool, n: usize, seed: u64, mut gen: impl FnMut(&mut Rng) -> (String, String)) {
    let d = PatternDetector::new(&Kind::ALL, false);
    let texts = real_texts();
    let mut rng = Rng(seed);
    let mut misses = Vec::new();
    for _ in 0..n {
        let (lead, value) = gen(&mut rng);
        let (text, s, e) = embed(&mut rng, &texts, &lead, &value);
        let found = spans(&d, &text)
            .iter()
            .any(|sp| sp.kind == kind && if exact { sp.start == s && sp.end == e } else { sp.start < e && s < sp.end });
        if !found {
            misses.push(text.get(s.saturating_sub(24)..(e + 12).min(text.len())).unwrap_or(&text).to_string());
        }
    }
    let r = 1.0 - misses.len() as f64 / n as f64;
    eprintln!("{kind:?}: recall {r:.4} over {n} generated values");
    assert!(r >= 0.995, "{kind:?} recall {r:.4} < 0.995; misses: {:?}", &misses[..misses.len().min(20)]);
}

/// Invalid-checksum variants: detected as no kind at all.
fn never_detected(n: usize, seed: u64, mut gen: impl FnMut(&mut Rng) -> String) {
    let d = PatternDetector::new(&Kind::ALL, false);
    let texts = real_texts();
    let mut rng = Rng(seed);
    let mut hits = Vec::new();
    for _ in 0..n {
        let value = gen(&mut rng);
        let (text, s, e) = embed(&mut rng, &texts, "", &value);
        for sp in spans(&d, &text) {
            if sp.start < e && s < sp.end {
                hits.push((sp.kind, text[sp.start..sp.end].to_string(), value.clone()));
            }
        }
    }
    assert!(hits.is_empty(), "{} invalid values detected: {:?}", hits.len(), &hits[..hits.len().min(20)]);
}

// --- cards -------------------------------------------------------------------

/// Luhn check digit for `body` (the digits before it), by the textbook rule.
fn luhn_check_digit(body: &str) -> char {
    let mut sum = 0;
    for (i, c) in body.chars().rev().enumerate() {
        let mut v = c.to_digit(10).expect("digit");
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    char::from_digit((10 - sum % 10) % 10, 10).expect("digit")
}

/// A card number of a random issuer range and length it issues, Luhn-valid
/// (or, with `valid` false, with a wrong check digit), in a random printed form.
fn card(rng: &mut Rng, valid: bool) -> String {
    let iss = rng.pick(ISSUERS);
    let lengths: Vec<usize> = (12..=19).filter(|n| iss.lengths & (1 << n) != 0).collect();
    let len = *rng.pick(&lengths);
    let prefix = iss.lo + rng.below((iss.hi - iss.lo + 1) as usize) as u32;
    let mut body = prefix.to_string();
    while body.len() < len - 1 {
        body.push(rng.digit());
    }
    let check = luhn_check_digit(&body);
    let check = if valid {
        check
    } else {
        char::from_digit((check.to_digit(10).expect("d") + 1 + rng.below(9) as u32) % 10, 10).expect("d")
    };
    body.push(check);
    let grouping = rng.pick(printed_groupings(len));
    let sep = *rng.pick(&[' ', '-', '.', ' ']);
    let mut out = String::new();
    let mut at = 0;
    for (i, g) in grouping.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(&body[at..at + g]);
        at += g;
    }
    out
}

#[test]
fn cards_of_every_issuer_are_found() {
    recall(Kind::CreditCard, true, 4000, 0x0c0a_5d11, |rng| (String::new(), card(rng, true)));
}

#[test]
fn every_issuer_length_and_grouping_is_found() {
    // Each issuer range, at its lowest prefix, in every length it issues and every
    // grouping of that length.
    let mut rng = Rng(7);
    let d = PatternDetector::new(&[Kind::CreditCard], false);
    for iss in ISSUERS {
        for len in (12..=19).filter(|n| iss.lengths & (1 << n) != 0) {
            let mut body = iss.lo.to_string();
            while body.len() < len - 1 {
                body.push(rng.digit());
            }
            body.push(luhn_check_digit(&body));
            for grouping in printed_groupings(len) {
                let mut printed = String::new();
                let mut at = 0;
                for g in grouping.iter() {
                    printed.push_str(&body[at..at + g]);
                    printed.push(' ');
                    at += g;
                }
                let text = format!("card {}end", printed);
                let found = spans(&d, &text);
                assert_eq!(found.len(), 1, "{} {len} {grouping:?}: {text:?} {found:?}", iss.name);
            }
        }
    }
}

#[test]
fn luhn_invalid_cards_are_no_kind() {
    never_detected(4000, 0xbad0_ca4d, |rng| card(rng, false));
}

// --- IBANs ---------------------------------------------------------------------

/// The remainder mod 97 of the IBAN's number (letters as 10..35), by long division
/// of the decimal string.
fn iban_remainder(rearranged: &str) -> u32 {
    let digits: String = rearranged
        .chars()
        .map(|c| if c.is_ascii_digit() { c.to_string() } else { (c as u32 - 'A' as u32 + 10).to_string() })
        .collect();
    let mut r: u64 = 0;
    for chunk in digits.as_bytes().chunks(9) {
        let s = std::str::from_utf8(chunk).expect("ascii");
        r = (r * 10u64.pow(s.len() as u32) + s.parse::<u64>().expect("digits")) % 97;
    }
    r as u32
}

fn bban_char(rng: &mut Rng, class: u8) -> char {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char::from(match class {
        b'n' => b'0' + rng.below(10) as u8,
        b'a' => *rng.pick(LETTERS),
        _ => *rng.pick(ALNUM),
    })
}

/// An IBAN of a random registry country with a random BBAN of its structure,
/// mod-97-valid (or, with `valid` false, with a wrong check or one BBAN character
/// changed), plain or in groups of four.
fn iban(rng: &mut Rng, valid: bool) -> String {
    let &(cc, _, spec) = rng.pick(REGISTRY);
    let mut classes = Vec::new();
    for (count, class) in structure(spec) {
        classes.extend(std::iter::repeat_n(class, count));
    }
    let mut bban: String = classes.iter().map(|&c| bban_char(rng, c)).collect();
    let check = 98 - iban_remainder(&format!("{bban}{cc}00"));
    let mut check = format!("{check:02}");
    if !valid {
        if rng.below(2) == 0 {
            let c: u32 = check.parse().expect("check");
            check = format!("{:02}", 2 + (c - 2 + 1 + rng.below(95) as u32) % 97);
        } else {
            let i = rng.below(classes.len());
            let old = bban.as_bytes()[i] as char;
            let mut new = old;
            while new == old {
                new = bban_char(rng, classes[i]);
            }
            bban.replace_range(i..i + 1, &new.to_string());
        }
    }
    let compact = format!("{cc}{check}{bban}");
    // A letter for a digit (or back) can keep the remainder: such a variant is valid.
    if !valid && iban_remainder(&format!("{bban}{cc}{check}")) == 1 {
        return iban(rng, valid);
    }
    if rng.below(2) == 0 {
        compact
    } else {
        compact.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("ascii")).collect::<Vec<_>>().join(" ")
    }
}

#[test]
fn ibans_of_every_registry_country_are_found() {
    let leads = ["", "", "IBAN ", "IBAN: ", "account ", "Account no. ", "Konto ", "on account "];
    recall(Kind::Iban, true, 4000, 0x1ba4_0001, |rng| (rng.pick(&leads).to_string(), iban(rng, true)));
}

#[test]
fn mod97_invalid_ibans_are_no_kind() {
    never_detected(4000, 0x1ba4_bad0, |rng| iban(rng, false));
}

#[test]
fn registry_structures_add_up() {
    for (cc, len, spec) in REGISTRY {
        let bban: usize = structure(spec).map(|(n, _)| n).sum();
        assert_eq!(bban + 4, *len, "{cc}: {spec}");
    }
    assert!(REGISTRY.len() >= 89);
    assert!(REGISTRY.windows(2).all(|w| w[0].0 < w[1].0), "sorted by country code");
}

// --- phones --------------------------------------------------------------------

/// How a country's numbers are printed at home: after a trunk prefix, bare (the
/// national number is dialled as printed), or (closed plans without a trunk
/// prefix: any 8-10 digit group would do) only with a word saying it is a phone.
#[derive(Clone, Copy)]
enum National {
    Trunk(&'static str),
    Bare,
    Area,
    InContext,
}

/// Numbering plans (ITU-T E.164 country codes, national significant numbers as
/// printed: `N` a digit 2-9, `D` any digit).
const PLANS: &[(&str, &str, National, &[&str])] = &[
    ("US", "1", National::Bare, &["NDD NDD DDDD", "NDD-NDD-DDDD", "NDD.NDD.DDDD", "(NDD) NDD-DDDD"]),
    ("GB", "44", National::Trunk("0"), &["20 NDDD DDDD", "7DDD DDDDDD", "161 NDD DDDD", "1632 NDDDDD"]),
    ("DE", "49", National::Trunk("0"), &["30 NDDDDDDD", "89 NDDD DDDD", "151 NDDDDDDD", "40 NDDDDDD"]),
    ("FR", "33", National::Trunk("0"), &["N DD DD DD DD", "N.DD.DD.DD.DD", "6 DD DD DD DD"]),
    ("IT", "39", National::Bare, &["0N DDDD DDDD", "3DD DDD DDDD"]),
    ("ES", "34", National::InContext, &["9DD DDD DDD", "6DD DDD DDD", "9DD DD DD DD"]),
    ("NL", "31", National::Trunk("0"), &["20 NDD DDDD", "6 DDDD DDDD", "10 NDD DDDD"]),
    ("BE", "32", National::Trunk("0"), &["2 NDD DD DD", "4DD DD DD DD"]),
    ("CH", "41", National::Trunk("0"), &["44 NDD DD DD", "7D NDD DD DD"]),
    ("AT", "43", National::Trunk("0"), &["1 NDD DDDD", "664 NDD DDDD"]),
    ("SE", "46", National::Trunk("0"), &["8 NDD DDD DD", "7D NDD DD DD"]),
    ("NO", "47", National::InContext, &["ND DD DD DD", "4DD DD DDD"]),
    ("DK", "45", National::InContext, &["ND DD DD DD"]),
    ("PL", "48", National::InContext, &["ND DDD DD DD", "5DD DDD DDD"]),
    ("PT", "351", National::InContext, &["2DD DDD DDD", "9DD DDD DDD"]),
    ("IE", "353", National::Trunk("0"), &["1 NDD DDDD", "8D NDD DDDD"]),
    ("AU", "61", National::Trunk("0"), &["2 NDDD DDDD", "4DD DDD DDD"]),
    ("NZ", "64", National::Trunk("0"), &["9 NDD DDDD", "21 NDD DDDD"]),
    ("IN", "91", National::Trunk("0"), &["9DDDD DDDDD", "11 NDDD DDDD"]),
    ("JP", "81", National::Trunk("0"), &["3-NDDD-DDDD", "90-NDDD-DDDD", "6-NDDD-DDDD"]),
    ("CN", "86", National::Trunk("0"), &["10 NDDD DDDD", "21 NDDD DDDD"]),
    ("CN", "86", National::InContext, &["13D DDDD DDDD", "18D DDDD DDDD"]),
    ("BR", "55", National::Area, &["11 9DDDD-DDDD", "21 NDDD-DDDD"]),
    ("MX", "52", National::InContext, &["55 NDDD DDDD", "33 NDDD DDDD"]),
    ("ZA", "27", National::Trunk("0"), &["21 NDD DDDD", "82 NDD DDDD"]),
    ("RU", "7", National::InContext, &["495 NDD-DD-DD", "9DD NDD-DD-DD"]),
    ("KR", "82", National::Trunk("0"), &["2-NDD-DDDD", "10-NDDD-DDDD"]),
    ("SG", "65", National::InContext, &["6DDD DDDD", "9DDD DDDD"]),
    ("GR", "30", National::InContext, &["21 DDDD DDDD", "69D DDD DDDD"]),
    ("AR", "54", National::Trunk("0"), &["11 NDDD-DDDD"]),
    ("TR", "90", National::Trunk("0"), &["212 NDD DD DD", "5DD NDD DD DD"]),
    ("IL", "972", National::Trunk("0"), &["2-NDD-DDDD", "5D-NDD-DDDD"]),
];

fn fill(rng: &mut Rng, format: &str) -> String {
    format
        .chars()
        .map(|c| match c {
            'N' => char::from(b'2' + rng.below(8) as u8),
            'D' => rng.digit(),
            c => c,
        })
        .collect()
}

const PHONE_WORDS: &[&str] = &["Tel. ", "tel: ", "Phone: ", "phone ", "call ", "Mobile: ", "Fax: "];

/// A phone number of a random plan, in a random printed form: international
/// (`+CC`, `00CC`, `+CC (0)`) or national; national numbers of closed plans come
/// with a phone word before them.
fn phone(rng: &mut Rng) -> (String, String) {
    let &(_, cc, national, formats) = rng.pick(PLANS);
    let format = *rng.pick(formats);
    let nsn = fill(rng, format);
    let intl_nsn = nsn.replace(['(', ')'], "");
    let lead = |rng: &mut Rng| rng.pick(PHONE_WORDS).to_string();
    match rng.below(4) {
        0 => (String::new(), format!("+{cc} {intl_nsn}")),
        1 => (String::new(), format!("00{cc} {intl_nsn}")),
        2 if matches!(national, National::Trunk(_)) => (String::new(), format!("+{cc} (0){intl_nsn}")),
        _ => match national {
            National::Trunk(t) if rng.below(2) == 0 && nsn.contains([' ', '-']) => {
                let (first, rest) = nsn.split_once([' ', '-']).expect("groups");
                (String::new(), format!("({t}{first}) {rest}"))
            }
            National::Trunk(t) => (String::new(), format!("{t}{nsn}")),
            National::Bare => (String::new(), nsn),
            National::Area => {
                let (area, rest) = nsn.split_once(' ').expect("area");
                (String::new(), format!("({area}) {rest}"))
            }
            National::InContext => (lead(rng), nsn),
        },
    }
}

#[test]
fn phones_of_31_numbering_plans_are_found() {
    recall(Kind::Phone, false, 4000, 0x9407_e000, phone);
}

// --- the other kinds -----------------------------------------------------------

#[test]
fn ip_addresses_are_found() {
    recall(Kind::Ip, true, 3000, 0x1b00_0004, |rng| {
        let v = if rng.below(2) == 0 {
            std::net::Ipv4Addr::from(rng.next() as u32).to_string()
        } else {
            let a = std::net::Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
            // Compressed (with runs of zero groups) or all eight groups.
            if rng.below(2) == 0 {
                let mut seg = a.segments();
                let z = rng.below(6);
                for s in seg.iter_mut().skip(z).take(1 + rng.below(3)) {
                    *s = 0;
                }
                std::net::Ipv6Addr::from(seg).to_string()
            } else {
                a.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":")
            }
        };
        (String::new(), v)
    });
}

#[test]
fn ssns_are_found() {
    recall(Kind::Ssn, true, 2000, 0x0555_0001, |rng| {
        let area = loop {
            let a = 1 + rng.below(899);
            if a != 666 {
                break a;
            }
        };
        let sep = if rng.below(4) == 0 { ' ' } else { '-' };
        (String::new(), format!("{area:03}{sep}{:02}{sep}{:04}", 1 + rng.below(99), 1 + rng.below(9999)))
    });
}

#[test]
fn emails_are_found() {
    const LOCAL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._%+-";
    const LABEL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    const TLDS: &[&str] = &["com", "org", "net", "de", "co.uk", "io", "info", "museum", "xn--p1ai"];
    recall(Kind::Email, true, 2000, 0xe0a1_0001, |rng| {
        let alnum = |rng: &mut Rng| char::from(LOCAL[rng.below(36)]);
        let mut local = String::from(alnum(rng));
        for _ in 0..rng.below(20) {
            local.push(char::from(*rng.pick(LOCAL)));
        }
        local.push(alnum(rng));
        let mut domain = String::new();
        for _ in 0..1 + rng.below(3) {
            domain.push(alnum(rng));
            for _ in 0..rng.below(12) {
                domain.push(char::from(*rng.pick(LABEL)));
            }
            domain.push(alnum(rng));
            domain.push('.');
        }
        domain.push_str(rng.pick::<&str>(TLDS));
        (String::new(), format!("{local}@{domain}"))
    });
}

// --- overlap resolution ----------------------------------------------------------

/// The quadratic reference: keep a span when it overlaps no kept one.
fn resolve_naive(spans: &mut Vec<Span>) {
    spans.sort_by(precedence);
    let mut kept: Vec<Span> = Vec::new();
    for s in spans.drain(..) {
        if kept.iter().all(|k| s.end <= k.start || s.start >= k.end) {
            kept.push(s);
        }
    }
    kept.sort_by_key(|s| s.start);
    *spans = kept;
}

#[test]
fn overlap_resolution_matches_the_quadratic_reference() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..500 {
        let spans: Vec<Span> = (0..rng.below(200))
            .map(|_| {
                let start = rng.below(4 + round);
                Span { kind: *rng.pick(&Kind::ALL), start, end: start + 1 + rng.below(12) }
            })
            .collect();
        let (mut a, mut b) = (spans.clone(), spans);
        resolve_overlaps(&mut a);
        resolve_naive(&mut b);
        assert_eq!(a, b);
    }
}
