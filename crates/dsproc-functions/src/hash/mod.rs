//! Hash functions.
pub mod content_hash;
pub mod shard_of;
