//! IBANs (ISO 13616): the SWIFT IBAN registry's countries with their lengths and
//! BBAN structures, the two printed forms (electronic: one run; paper: groups of
//! four, the last one shorter) and the ISO 7064 mod-97 check.

/// Registry entries: country code, IBAN length and the BBAN structure in the
/// registry's notation (`n` digits, `a` upper-case letters, `c` letters or digits;
/// `4!n`: exactly four). Territories that the registry files under another
/// country and that print their own code are listed beside it (AX with FI; GF, GP,
/// MQ, RE, YT, NC, PF, PM, TF, WF, BL, MF with FR; GG, IM, JE with GB).
pub const REGISTRY: &[(&str, usize, &str)] = &[
    ("AD", 24, "4!n4!n12!c"),
    ("AE", 23, "3!n16!n"),
    ("AL", 28, "8!n16!c"),
    ("AT", 20, "5!n11!n"),
    ("AX", 18, "3!n11!n"),
    ("AZ", 28, "4!a20!c"),
    ("BA", 20, "3!n3!n8!n2!n"),
    ("BE", 16, "3!n7!n2!n"),
    ("BG", 22, "4!a4!n2!n8!c"),
    ("BH", 22, "4!a14!c"),
    ("BI", 27, "5!n5!n11!n2!n"),
    ("BL", 27, "5!n5!n11!c2!n"),
    ("BR", 29, "8!n5!n10!n1!a1!c"),
    ("BY", 28, "4!c4!n16!c"),
    ("CH", 21, "5!n12!c"),
    ("CR", 22, "4!n14!n"),
    ("CY", 28, "3!n5!n16!c"),
    ("CZ", 24, "4!n6!n10!n"),
    ("DE", 22, "8!n10!n"),
    ("DJ", 27, "5!n5!n11!n2!n"),
    ("DK", 18, "4!n9!n1!n"),
    ("DO", 28, "4!c20!n"),
    ("EE", 20, "2!n2!n11!n1!n"),
    ("EG", 29, "4!n4!n17!n"),
    ("ES", 24, "4!n4!n1!n1!n10!n"),
    ("FI", 18, "3!n11!n"),
    ("FK", 18, "2!a12!n"),
    ("FO", 18, "4!n9!n1!n"),
    ("FR", 27, "5!n5!n11!c2!n"),
    ("GB", 22, "4!a6!n8!n"),
    ("GE", 22, "2!a16!n"),
    ("GF", 27, "5!n5!n11!c2!n"),
    ("GG", 22, "4!a6!n8!n"),
    ("GI", 23, "4!a15!c"),
    ("GL", 18, "4!n9!n1!n"),
    ("GP", 27, "5!n5!n11!c2!n"),
    ("GR", 27, "3!n4!n16!c"),
    ("GT", 28, "4!c20!c"),
    ("HN", 28, "4!a20!n"),
    ("HR", 21, "7!n10!n"),
    ("HU", 28, "3!n4!n1!n15!n1!n"),
    ("IE", 22, "4!a6!n8!n"),
    ("IL", 23, "3!n3!n13!n"),
    ("IM", 22, "4!a6!n8!n"),
    ("IQ", 23, "4!a3!n12!n"),
    ("IS", 26, "4!n2!n6!n10!n"),
    ("IT", 27, "1!a5!n5!n12!c"),
    ("JE", 22, "4!a6!n8!n"),
    ("JO", 30, "4!a4!n18!c"),
    ("KW", 30, "4!a22!c"),
    ("KZ", 20, "3!n13!c"),
    ("LB", 28, "4!n20!c"),
    ("LC", 32, "4!a24!c"),
    ("LI", 21, "5!n12!c"),
    ("LT", 20, "5!n11!n"),
    ("LU", 20, "3!n13!c"),
    ("LV", 21, "4!a13!c"),
    ("LY", 25, "3!n3!n15!n"),
    ("MC", 27, "5!n5!n11!c2!n"),
    ("MD", 24, "2!c18!c"),
    ("ME", 22, "3!n13!n2!n"),
    ("MF", 27, "5!n5!n11!c2!n"),
    ("MK", 19, "3!n10!c2!n"),
    ("MN", 20, "4!n12!n"),
    ("MQ", 27, "5!n5!n11!c2!n"),
    ("MR", 27, "5!n5!n11!n2!n"),
    ("MT", 31, "4!a5!n18!c"),
    ("MU", 30, "4!a2!n2!n12!n3!n3!a"),
    ("NC", 27, "5!n5!n11!c2!n"),
    ("NI", 28, "4!a20!n"),
    ("NL", 18, "4!a10!n"),
    ("NO", 15, "4!n6!n1!n"),
    ("OM", 23, "3!n16!c"),
    ("PF", 27, "5!n5!n11!c2!n"),
    ("PK", 24, "4!a16!c"),
    ("PL", 28, "8!n16!n"),
    ("PM", 27, "5!n5!n11!c2!n"),
    ("PS", 29, "4!a21!c"),
    ("PT", 25, "4!n4!n11!n2!n"),
    ("QA", 29, "4!a21!c"),
    ("RE", 27, "5!n5!n11!c2!n"),
    ("RO", 24, "4!a16!c"),
    ("RS", 22, "3!n13!n2!n"),
    ("RU", 33, "9!n5!n15!c"),
    ("SA", 24, "2!n18!c"),
    ("SC", 31, "4!a2!n2!n16!n3!a"),
    ("SD", 18, "2!n12!n"),
    ("SE", 24, "3!n16!n1!n"),
    ("SI", 19, "5!n8!n2!n"),
    ("SK", 24, "4!n6!n10!n"),
    ("SM", 27, "1!a5!n5!n12!c"),
    ("SO", 23, "4!n3!n12!n"),
    ("ST", 25, "4!n4!n11!n2!n"),
    ("SV", 28, "4!a20!n"),
    ("TF", 27, "5!n5!n11!c2!n"),
    ("TL", 23, "3!n14!n2!n"),
    ("TN", 24, "2!n3!n13!n2!n"),
    ("TR", 26, "5!n1!n16!c"),
    ("UA", 29, "6!n19!c"),
    ("VA", 22, "3!n15!n"),
    ("VG", 24, "4!a16!n"),
    ("WF", 27, "5!n5!n11!c2!n"),
    ("XK", 20, "4!n10!n2!n"),
    ("YE", 30, "4!a4!n18!c"),
    ("YT", 27, "5!n5!n11!c2!n"),
];

/// The registry entry of a country code (the registry is sorted by code).
pub fn spec(cc: &[u8]) -> Option<(usize, &'static str)> {
    let i = REGISTRY.binary_search_by(|(c, _, _)| c.as_bytes().cmp(cc)).ok()?;
    Some((REGISTRY[i].1, REGISTRY[i].2))
}

/// The BBAN structure as (count, class) pairs: `"4!n4!a"` → `[(4, b'n'), (4, b'a')]`.
pub fn structure(s: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    s.split_inclusive(|c: char| c.is_ascii_lowercase()).filter_map(|part| {
        let class = *part.as_bytes().last()?;
        let count = part.trim_end_matches(|c: char| c.is_ascii_lowercase()).trim_end_matches('!').parse().ok()?;
        Some((count, class))
    })
}

/// Whether a character fits a BBAN class (printed upper-case).
pub fn fits(class: u8, b: u8) -> bool {
    match class {
        b'n' => b.is_ascii_digit(),
        b'a' => b.is_ascii_uppercase(),
        _ => b.is_ascii_digit() || b.is_ascii_uppercase(),
    }
}

/// The ISO 7064 mod-97-10 check of a compact IBAN (upper-case letters and digits).
pub fn mod97_ok(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

/// An IBAN-shaped string at `start` (a country code of the registry, two check
/// digits and the country's BBAN structure, in one run or in groups of four
/// separated by single spaces, and no letter or digit right after): its end and
/// whether its mod-97 check passes. The caller checks the boundary before `start`.
pub fn iban_shape_at(text: &[u8], start: usize) -> Option<(usize, bool)> {
    let head = text.get(start..start + 4)?;
    if !(head[0].is_ascii_uppercase() && head[1].is_ascii_uppercase() && head[2..].iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let (len, bban) = spec(&head[..2])?;
    let grouped = text.get(start + 4) == Some(&b' ');
    let mut compact: Vec<u8> = head.to_vec();
    let mut i = start + 4;
    while compact.len() < len {
        if grouped && compact.len().is_multiple_of(4) {
            if text.get(i) != Some(&b' ') {
                return None;
            }
            i += 1;
        }
        let &b = text.get(i).filter(|b| b.is_ascii_alphanumeric())?;
        compact.push(b);
        i += 1;
    }
    if text.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return None;
    }
    let mut at = 4;
    for (count, class) in structure(bban) {
        if !compact.get(at..at + count)?.iter().all(|&b| fits(class, b)) {
            return None;
        }
        at += count;
    }
    Some((i, mod97_ok(&compact)))
}

/// Whether `start` may begin an IBAN: not right after a letter, digit or `_`.
fn boundary_before(text: &[u8], start: usize) -> bool {
    start == 0 || !(text[start - 1].is_ascii_alphanumeric() || text[start - 1] == b'_')
}

/// Whether an IBAN shape (mod-97-valid or not) overlaps `start..end`. An IBAN is at
/// most 34 characters and 8 spaces long.
pub fn iban_shape_overlaps(text: &[u8], start: usize, end: usize) -> bool {
    (start.saturating_sub(42)..end.min(text.len())).any(|p| {
        text[p].is_ascii_uppercase()
            && boundary_before(text, p)
            && iban_shape_at(text, p).is_some_and(|(e, _)| e > start)
    })
}

/// A valid IBAN printed on its own.
pub fn valid_iban(s: &str) -> bool {
    matches!(iban_shape_at(s.as_bytes(), 0), Some((end, true)) if end == s.len())
}
