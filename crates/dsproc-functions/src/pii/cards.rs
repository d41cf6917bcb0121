//! Payment card numbers: the issuer ranges in use (ISO/IEC 7812 IINs as the card
//! schemes publish them), the lengths each issues, the groupings cards are printed
//! in, and the Luhn check.

/// One issuer range: IIN prefixes `lo..=hi` (all of `digits` digits) and the card
/// lengths issued there (bit `n` set: `n` digits).
pub struct Issuer {
    pub name: &'static str,
    pub lo: u32,
    pub hi: u32,
    pub digits: u32,
    pub lengths: u32,
}

const fn lens(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

const fn span(lo: u32, hi: u32) -> u32 {
    let mut m = 0;
    let mut n = lo;
    while n <= hi {
        m |= 1 << n;
        n += 1;
    }
    m
}

const fn iss(name: &'static str, lo: u32, hi: u32, lengths: u32) -> Issuer {
    let mut digits = 1;
    let mut x = lo;
    while x >= 10 {
        x /= 10;
        digits += 1;
    }
    Issuer { name, lo, hi, digits, lengths }
}

/// Issuer ranges in use (the card schemes' published IIN tables).
pub const ISSUERS: &[Issuer] = &[
    iss("Visa", 4, 4, lens(&[13, 16, 19])),
    iss("Mastercard", 51, 55, lens(&[16])),
    iss("Mastercard 2-series", 2221, 2720, lens(&[16])),
    iss("American Express", 34, 34, lens(&[15])),
    iss("American Express", 37, 37, lens(&[15])),
    iss("Discover", 6011, 6011, span(16, 19)),
    iss("Discover", 644, 649, span(16, 19)),
    iss("Discover", 65, 65, span(16, 19)),
    iss("Discover (UnionPay co-brand)", 622126, 622925, span(16, 19)),
    iss("Diners Club International", 36, 36, span(14, 19)),
    iss("Diners Club International", 300, 305, span(14, 19)),
    iss("Diners Club International", 3095, 3095, span(14, 19)),
    iss("Diners Club International", 38, 39, span(14, 19)),
    iss("JCB", 3528, 3589, span(15, 19)),
    iss("JCB", 2131, 2131, lens(&[15])),
    iss("JCB", 1800, 1800, lens(&[15])),
    iss("UnionPay", 62, 62, span(16, 19)),
    iss("UnionPay", 81, 81, span(16, 19)),
    iss("Maestro", 5018, 5018, span(12, 19)),
    iss("Maestro", 5020, 5020, span(12, 19)),
    iss("Maestro", 5038, 5038, span(12, 19)),
    iss("Maestro", 5893, 5893, span(12, 19)),
    iss("Maestro", 6304, 6304, span(12, 19)),
    iss("Maestro", 6759, 6763, span(12, 19)),
    iss("Maestro", 50, 50, span(12, 19)),
    iss("Maestro", 56, 58, span(12, 19)),
    iss("Maestro", 639, 639, span(12, 19)),
    iss("Maestro", 67, 67, span(12, 19)),
    iss("Mir", 2200, 2204, span(16, 19)),
    iss("BORICA", 2205, 2205, lens(&[16])),
    iss("RuPay", 60, 60, lens(&[16])),
    iss("RuPay", 652, 653, lens(&[16])),
    iss("RuPay", 81, 82, lens(&[16])),
    iss("RuPay", 508, 508, lens(&[16])),
    iss("RuPay", 353, 353, lens(&[16])),
    iss("RuPay", 356, 356, lens(&[16])),
    iss("Verve", 506099, 506198, lens(&[16, 18, 19])),
    iss("Verve", 507865, 507964, lens(&[16, 18, 19])),
    iss("Verve", 650002, 650027, lens(&[16, 18, 19])),
    iss("Dankort", 5019, 5019, lens(&[16])),
    iss("InterPayment", 636, 636, span(16, 19)),
    iss("InstaPayment", 637, 639, lens(&[16])),
    iss("Troy", 9792, 9792, lens(&[16])),
    iss("UATP", 1, 1, lens(&[15])),
    iss("China T-Union", 31, 31, lens(&[19])),
    iss("UkrCard", 60400100, 60420099, span(16, 19)),
    iss("LankaPay", 357111, 357111, lens(&[16])),
    iss("Uzcard", 8600, 8600, lens(&[16])),
    iss("Uzcard", 5614, 5614, lens(&[16])),
    iss("Humo", 9860, 9860, lens(&[16])),
    iss("GPN", 1946, 1946, lens(&[16, 18, 19])),
    iss("Napas", 9704, 9704, lens(&[16, 19])),
    iss("Elo", 509, 509, lens(&[16])),
    iss("Elo", 6277, 6277, lens(&[16])),
    iss("Elo", 6362, 6363, lens(&[16])),
    iss("Hipercard", 606282, 606282, lens(&[16, 19])),
    iss("Hipercard", 384100, 384100, lens(&[16, 19])),
];

/// How cards of each length are printed (group lengths; a single group: plain).
pub fn printed_groupings(len: usize) -> &'static [&'static [usize]] {
    match len {
        12 => &[&[12], &[4, 4, 4]],
        13 => &[&[13], &[4, 4, 4, 1], &[4, 3, 3, 3]],
        14 => &[&[14], &[4, 6, 4], &[4, 4, 4, 2]],
        15 => &[&[15], &[4, 6, 5], &[4, 4, 4, 3], &[4, 5, 6]],
        16 => &[&[16], &[4, 4, 4, 4]],
        17 => &[&[17], &[4, 4, 4, 4, 1]],
        18 => &[&[18], &[4, 4, 4, 4, 2], &[6, 12]],
        19 => &[&[19], &[4, 4, 4, 4, 3], &[6, 13]],
        _ => &[],
    }
}

/// The issuer whose range holds the number's prefix and who issues its length.
pub fn issuer(d: &[u8]) -> Option<&'static Issuer> {
    let n = d.len();
    ISSUERS.iter().find(|i| {
        let k = i.digits as usize;
        n >= k && i.lengths & (1 << n) != 0 && {
            let p = d[..k].iter().fold(0u32, |a, x| a * 10 + u32::from(*x));
            (i.lo..=i.hi).contains(&p)
        }
    })
}

/// The Luhn sum of digit values is a multiple of ten.
pub fn luhn_ok(d: &[u8]) -> bool {
    luhn_sum(d).is_multiple_of(10)
}

/// The Luhn sum (the last digit is the check digit).
pub fn luhn_sum(d: &[u8]) -> u32 {
    d.iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                y - if y > 9 { 9 } else { 0 }
            } else {
                x
            }
        })
        .sum()
}

/// A digit group run inside a text: groups of digits each followed by one
/// separator byte (0 after the last group).
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    sep: u8,
}

/// Groups of ASCII digits from `from`, joined by single separators of ` `, `-`, `.`.
fn groups(text: &[u8], from: usize, max: usize) -> Vec<Group> {
    let mut out = Vec::new();
    let mut i = from;
    while out.len() < max && i < text.len() && text[i].is_ascii_digit() {
        let s = i;
        while i < text.len() && text[i].is_ascii_digit() {
            i += 1;
        }
        let sep = match text.get(i) {
            Some(&b) if matches!(b, b' ' | b'-' | b'.') && text.get(i + 1).is_some_and(u8::is_ascii_digit) => b,
            _ => 0,
        };
        out.push(Group { start: s, end: i, sep });
        if sep == 0 {
            break;
        }
        i += 1;
    }
    out
}

/// A card-shaped number at `start` (the first digit of a group, not preceded by
/// a word character, `+` or `/`): its printed groups match a grouping of a
/// card length with one separator character, and the digits fall in an issuer
/// range of that length. The end of the longest such shape, and whether its Luhn
/// check passes (a shorter shape inside a longer one is not a card on its own:
/// `4111 1111 1111 1111 123` is one 19-digit number). A text position that starts
/// no shape gives None.
pub fn card_shape_at(text: &[u8], start: usize) -> Option<(usize, bool)> {
    if start > 0 {
        let p = text[start - 1];
        if p.is_ascii_alphanumeric() || matches!(p, b'_' | b'+' | b'/') {
            return None;
        }
    }
    let gs = groups(text, start, 5);
    let mut best: Option<(usize, bool)> = None;
    for take in 1..=gs.len() {
        let sel = &gs[..take];
        if take > 1 && sel[..take - 1].iter().any(|g| g.sep != sel[0].sep) {
            continue;
        }
        let lens: Vec<usize> = sel.iter().map(|g| g.end - g.start).collect();
        let n: usize = lens.iter().sum();
        if !printed_groupings(n).contains(&lens.as_slice()) {
            continue;
        }
        let end = sel[take - 1].end;
        // The number ends there: no letter or digit follows.
        if text.get(end).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            continue;
        }
        let d: Vec<u8> = text[start..end].iter().filter(|b| b.is_ascii_digit()).map(|b| b - b'0').collect();
        if issuer(&d).is_some() {
            best = Some((end, luhn_ok(&d)));
        }
    }
    best
}

/// A valid card number printed on its own: issuer range and length, printed
/// grouping with one separator, Luhn.
pub fn valid_card(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(card_shape_at(b, 0), Some((end, true)) if end == b.len())
}

/// Where digit groups start in `text[from..to]`: digits not preceded by a digit.
fn group_starts(text: &[u8], from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
    (from..to.min(text.len())).filter(move |&i| text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_digit()))
}

/// The Luhn-valid cards in `start..end`, reading card shapes leftmost-longest (a
/// group inside a shape starts no other shape).
pub fn find_cards(text: &[u8], start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut next = start;
    let mut out = Vec::new();
    for p in group_starts(text, start, end) {
        if p < next {
            continue;
        }
        if let Some((e, ok)) = card_shape_at(text, p) {
            if ok {
                out.push((p, e));
            }
            next = e;
        }
    }
    out
}

/// Whether a card shape (Luhn-valid or not) overlaps `start..end`. A shape is at
/// most 19 digits and 4 separators long, so it starts at most 23 bytes before `end`.
pub fn card_shape_overlaps(text: &[u8], start: usize, end: usize) -> bool {
    group_starts(text, start.saturating_sub(23), end).any(|p| card_shape_at(text, p).is_some_and(|(e, _)| e > start))
}
