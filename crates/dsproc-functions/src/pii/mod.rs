//! PII detection and scrubbing.
//!
//! [`Detector`] is the seam: [`patterns::PatternDetector`] finds structured PII
//! (emails, phones, IPs, cards, IBANs, SSNs, secrets, URL credentials) with one
//! Aho-Corasick pass over the text that yields candidate windows, per-kind
//! patterns inside those windows only, and per-kind validators (Luhn, mod-97,
//! SSN ranges, IP parsing); a model-based detector (names, addresses) can be
//! added beside it. [`scrub_pii::ScrubPiiFunc`] is the UDF.

pub mod cards;
pub mod iban;
pub mod patterns;
#[cfg(test)]
mod props;
pub mod scrub_pii;

use serde::{Deserialize, Serialize};

/// Kinds of PII, in the order of the `pii_counts` struct fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    Ip,
    CreditCard,
    Iban,
    Ssn,
    Secret,
    UrlCredentials,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Email,
        Kind::Phone,
        Kind::Ip,
        Kind::CreditCard,
        Kind::Iban,
        Kind::Ssn,
        Kind::Secret,
        Kind::UrlCredentials,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Ip => "ip",
            Kind::CreditCard => "credit_card",
            Kind::Iban => "iban",
            Kind::Ssn => "ssn",
            Kind::Secret => "secret",
            Kind::UrlCredentials => "url_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Which kind wins when two matches overlap (higher wins). An IBAN (registry
    /// length and structure, mod-97) outranks a card number found inside it.
    fn priority(self) -> u8 {
        match self {
            Kind::Secret => 8,
            Kind::UrlCredentials => 7,
            Kind::Email => 6,
            Kind::Iban => 5,
            Kind::CreditCard => 4,
            Kind::Ssn => 3,
            Kind::Ip => 2,
            Kind::Phone => 1,
        }
    }
}

/// A detected span, in byte offsets of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// A PII detector. Implementations append the spans they find; the caller
/// resolves overlaps between detectors.
pub trait Detector: Send + Sync + std::fmt::Debug {
    /// Appends the spans found in `text` (byte offsets).
    fn find(&self, text: &str, out: &mut Vec<Span>);
}

/// Which of two overlapping spans is kept: the higher priority, then the longer,
/// then the earlier.
fn precedence(a: &Span, b: &Span) -> std::cmp::Ordering {
    b.kind
        .priority()
        .cmp(&a.kind.priority())
        .then((b.end - b.start).cmp(&(a.end - a.start)))
        .then(a.start.cmp(&b.start))
}

/// Sorts spans and drops those that overlap a higher-priority (then longer,
/// then earlier) span. O(n log n): the kept spans are disjoint, so a span overlaps
/// one of them exactly when it overlaps the kept span that starts last before its end.
pub fn resolve_overlaps(spans: &mut Vec<Span>) {
    if spans.len() < 2 {
        return;
    }
    spans.sort_by(precedence);
    let mut kept: std::collections::BTreeMap<usize, Span> = std::collections::BTreeMap::new();
    for s in spans.drain(..) {
        let before_end = kept.range(..s.end.max(s.start + 1)).next_back();
        if before_end.is_none_or(|(_, k)| k.end <= s.start) {
            kept.insert(s.start, s);
        }
    }
    spans.extend(kept.into_values());
}
