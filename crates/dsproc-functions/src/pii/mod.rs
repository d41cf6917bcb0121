//! PII detection and scrubbing.
//!
//! [`Detector`] is the seam: [`patterns::PatternDetector`] finds structured PII
//! (emails, phones, IPs, cards, IBANs, SSNs, secrets, URL credentials) with one
//! Aho-Corasick pass over the text that yields candidate windows, per-kind
//! patterns inside those windows only, and per-kind validators (Luhn, mod-97,
//! SSN ranges, IP parsing); a model-based detector (names, addresses) can be
//! added beside it. [`scrub_pii::ScrubPiiFunc`] is the UDF.

pub mod patterns;
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

    /// Which kind wins when two matches overlap (higher wins).
    fn priority(self) -> u8 {
        match self {
            Kind::Secret => 8,
            Kind::UrlCredentials => 7,
            Kind::Email => 6,
            Kind::CreditCard => 5,
            Kind::Iban => 4,
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
    /// The kinds this detector can report.
    fn kinds(&self) -> &[Kind];
    /// Appends the spans found in `text` (byte offsets).
    fn find(&self, text: &str, out: &mut Vec<Span>);
}

/// Sorts spans and drops those that overlap a higher-priority (then longer,
/// then earlier) span.
pub fn resolve_overlaps(spans: &mut Vec<Span>) {
    if spans.len() < 2 {
        return;
    }
    spans.sort_by(|a, b| {
        b.kind
            .priority()
            .cmp(&a.kind.priority())
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans.drain(..) {
        if kept.iter().all(|k| s.end <= k.start || s.start >= k.end) {
            kept.push(s);
        }
    }
    kept.sort_by_key(|s| s.start);
    *spans = kept;
}
