//! Input and output for dsproc: object-store locations by URL scheme, input
//! listing with globs, the record readers (JSONL plain/.gz/.zst, Parquet, CSV,
//! text) with per-row quarantine, the shard writers (Parquet, JSONL.zst,
//! Megatron, MDS) and blocking object uploads.
//!
//! Everything here runs on executors as well as in the driver, and every read
//! and write is checked against the process's access policy ([`policy`]).

pub mod error;
pub mod format;
pub mod jsonscan;
pub mod listing;
pub mod policy;
pub mod quarantine;
pub mod read;
pub mod rowsize;
pub mod schema;
pub mod shards;
pub mod store;
pub mod token_shards;
pub mod upload;

#[cfg(test)]
mod fuzz;

pub use error::Error;
pub use format::{Compression, InputFormat, OutputFormat};
pub use listing::InputFile;
pub use policy::AccessPolicy;
pub use store::{Location, StorageOptions};
