//! dsproc's plan nodes: the logical nodes the job lowers to, their physical
//! executions, the [`ExtensionPlanner`](datafusion::physical_planner::ExtensionPlanner)
//! that maps one to the other, and the Ballista codecs that carry both to a
//! scheduler and executors.
//!
//! | logical | physical | role |
//! |---|---|---|
//! | [`ReadInputNode`] | [`ReadInputExec`] | read file ranges, quarantine bad rows |
//! | [`StepStatsNode`] | [`StepStatsExec`] | count rows leaving a step |
//! | [`WriteShardsNode`] | [`WriteShardsExec`] | one shard writer per partition |
//! | [`DuplicateIdsNode`] | [`DuplicateIdsExec`] | duplicate ids of a named id column (two phases) |
//!
//! Side outputs (quarantined rows, statistics) are written under the run's
//! staging prefix (on the output's store) with names that a retried task reproduces exactly, so a
//! retry overwrites instead of duplicating.

pub mod codec;
pub mod dup_ids;
pub mod memory;
pub mod nodes;
pub mod planner;
pub mod read_exec;
pub mod stats_exec;
pub mod write_exec;

pub use codec::{DsprocLogicalCodec, DsprocPhysicalCodec};
pub use dup_ids::{DuplicateIdMode, DuplicateIdStats, DuplicateIdsExec, DuplicateIdsNode, DuplicateIdsPhase};
pub use memory::ActiveFairPool;
pub use nodes::{sink_result_schema, KeysOf, ReadInputNode, StepStatsNode, WriteParams, WriteShardsNode};
pub use planner::{DsprocExtensionPlanner, DsprocQueryPlanner};
pub use read_exec::ReadInputExec;
pub use stats_exec::StepStatsExec;
pub use write_exec::WriteShardsExec;

use serde::{Deserialize, Serialize};

/// Statistics of one read range, written as `_stats/read-*.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadStats {
    pub file: String,
    pub start: u64,
    pub rows: u64,
    pub quarantined: u64,
    /// Values of keys outside a declared schema dropped, per key (`extra_columns = "drop"`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra_dropped: std::collections::BTreeMap<String, u64>,
    /// The process that read the range (`pid N@host`): shows where work ran.
    pub worker: String,
}

/// This process as a worker name, `pid N@host`.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("pid {}@{host}", std::process::id())
}

/// Statistics of one partition leaving a step, written as `_stats/step-*.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepStats {
    pub step: usize,
    pub rows: u64,
    /// Sums of the UInt32 fields of the node's `sums_of` struct column (e.g. PII counts).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sums: std::collections::BTreeMap<String, u64>,
}

/// A typed error crossing into DataFusion: `External`, displaying the error's whole
/// chain (DataFusion and Ballista keep only the text; the driver drops the
/// `External error: ` prefix as it does `Execution error: `).
pub(crate) fn external(e: impl Into<dsproc_common::error::BoxError>) -> datafusion::common::DataFusionError {
    datafusion::common::DataFusionError::External(Box::new(dsproc_common::error::Flattened::new(e)))
}

/// A process- and time-unique token for naming task attempts.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = xxhash_rust::xxh3::xxh3_64(format!("{t}-{}-{n}", std::process::id()).as_bytes());
    format!("{h:016x}")
}
