//! Integration tests: one binary (faster links). Every op runs in local mode
//! and in Ballista standalone mode (plans serialised through our codecs) and the
//! shards must be byte-identical.

mod checks;
mod cli;
mod cluster;
mod common;
mod embedding_drift;
mod incremental;
mod ingest;
mod input;
mod minhash;
mod ops;
mod proxy;
mod quality;
mod registry;
mod report;
mod s3;
mod schedule;
mod schemas;
mod security;
mod tokenize;
mod versions;
