//! The error type of dsproc-io.
//!
//! A variant with a `context` names the operation and the file (`cannot open input
//! /d/a.jsonl`, `x.parquet: cannot read Parquet`) and keeps the cause as its source;
//! callers that must turn it into text use [`dsproc_common::error::Chain`], which
//! prints `context: cause` as the messages always read.

use datafusion::arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;
use dsproc_common::error::BoxError;

/// Errors of the readers, schema inference, shard writers and uploads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing bytes failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Arrow could not decode, cast or assemble a batch.
    #[error("{context}")]
    Arrow {
        context: String,
        #[source]
        source: ArrowError,
    },
    /// A Parquet file could not be read or written.
    #[error("{context}")]
    Parquet {
        context: String,
        #[source]
        source: ParquetError,
    },
    /// A CSV header could not be read.
    #[error("{context}")]
    Csv {
        context: String,
        #[source]
        source: csv::Error,
    },
    /// Writing a shard failed; the source says how.
    #[error("writing shard {shown}")]
    Shard {
        shown: String,
        #[source]
        source: BoxError,
    },
    /// An Arrow failure with nothing to add (the caller names the file).
    #[error(transparent)]
    Batch(#[from] ArrowError),
    /// A write to a shard's sink failed (the shard writer names the file).
    #[error(transparent)]
    Write(#[from] std::io::Error),
    /// A JSON value could not be encoded.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A row, column or value that does not fit: names the file and line or the
    /// column and what was expected.
    #[error("{0}")]
    Data(String),
    /// The access policy refuses the read or write (see [`crate::policy`]): names
    /// the location as given, where it resolves to and the flag that allows it.
    #[error("{0}")]
    AccessDenied(String),
    /// An access-policy prefix that cannot be used (a relative path, a malformed URL).
    #[error("{0}")]
    Policy(String),
    /// An object-store operation failed (the store's redacted message:
    /// operation, URL, status).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Error {
    /// An I/O failure; a policy refusal inside it is returned as itself.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        match crate::policy::denial(&source) {
            Some(m) => Self::AccessDenied(m),
            None => Self::Io { context: context.into(), source },
        }
    }
    pub(crate) fn arrow(context: impl Into<String>, source: ArrowError) -> Self {
        Self::Arrow { context: context.into(), source }
    }
    /// A Parquet failure; a policy refusal inside it is returned as itself.
    pub(crate) fn parquet(context: impl Into<String>, source: ParquetError) -> Self {
        match crate::policy::denial(&source) {
            Some(m) => Self::AccessDenied(m),
            None => Self::Parquet { context: context.into(), source },
        }
    }
    pub(crate) fn csv(context: impl Into<String>, source: csv::Error) -> Self {
        Self::Csv { context: context.into(), source }
    }
    pub(crate) fn data(message: impl Into<String>) -> Self {
        Self::Data(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsproc_common::error::Chain;

    #[test]
    fn context_and_cause_print_once() {
        let e = Error::io("cannot open input /d/a.jsonl", std::io::Error::other("No such file or directory"));
        assert_eq!(e.to_string(), "cannot open input /d/a.jsonl");
        assert_eq!(Chain(&e).to_string(), "cannot open input /d/a.jsonl: No such file or directory");
        let shard = Error::Shard { shown: "/o/s.parquet".into(), source: Box::new(e) };
        assert_eq!(
            Chain(&shard).to_string(),
            "writing shard /o/s.parquet: cannot open input /d/a.jsonl: No such file or directory"
        );
    }
}
