//! Quarantined rows: what was rejected, where it came from and why.

use serde::{Deserialize, Serialize};

/// One rejected input row, written as a JSON line under `OUTPUT/_quarantine/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// Input file (path inside its store).
    pub file: String,
    /// 1-based line (JSONL/CSV/text) or row (Parquet) number.
    pub line: u64,
    /// Why the row was rejected.
    pub reason: String,
    /// The raw bytes, decoded lossily as UTF-8 (invalid bytes become U+FFFD).
    pub raw: String,
    /// The raw bytes in hex when they were not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_hex: Option<String>,
}

impl QuarantineRecord {
    pub fn new(file: &str, line: u64, reason: impl Into<String>, raw: &[u8]) -> Self {
        let (raw_s, raw_hex) = match std::str::from_utf8(raw) {
            Ok(s) => (s.to_string(), None),
            Err(_) => (String::from_utf8_lossy(raw).into_owned(), Some(hex::encode(raw))),
        };
        Self { file: file.to_string(), line, reason: reason.into(), raw: raw_s, raw_hex }
    }

    /// The message used when `on_error = "fail"`.
    pub fn as_error(&self) -> String {
        format!("{}:{}: {}", self.file, self.line, self.reason)
    }
}
