//! Shared pieces of dsproc: the error type, byte-size parsing, stable hashes for
//! ids and shard membership, and the namespaced configuration keys.
//!
//! Nothing here depends on DataFusion, so every other crate (executor-side and
//! driver-side) can use it.

pub mod config;
pub mod error;
pub mod hash;
pub mod size;

pub use error::{DsprocError, Result};
