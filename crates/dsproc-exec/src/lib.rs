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
//! | [`SharedNode`] | [`SharedExec`] | a subplan several readers share, executed once |
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
pub mod shared;
pub mod stats_exec;
pub mod write_exec;

pub use codec::{DsprocLogicalCodec, DsprocPhysicalCodec};
pub use dup_ids::{DuplicateIdMode, DuplicateIdStats, DuplicateIdsExec, DuplicateIdsNode, DuplicateIdsPhase};
pub use memory::ActiveFairPool;
pub use nodes::{sink_result_schema, KeysOf, ReadInputNode, StepStatsNode, WriteParams, WriteShardsNode};
pub use planner::{DsprocExtensionPlanner, DsprocQueryPlanner};
pub use read_exec::ReadInputExec;
pub use shared::{display_with_shared, ShareSubplans, SharedExec, SharedNode};
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

/// Whether the run that owns a staging prefix still goes on. The driver removes
/// the staging prefix, run marker included, when a run is interrupted, cancelled
/// or stopped for a rerun; a task that keeps running after that (Ballista's
/// shuffle writers run detached from the task the scheduler cancels) would go on
/// writing files no run will ever commit or clean. Writers call [`Self::check`]
/// before each file: once the marker is gone it fails, and the task stops.
///
/// The watch is armed when the marker exists as the task starts (a driver writes
/// it before it executes anything); plans executed without a driver's marker
/// (unit tests of a single node) are never stopped by it.
#[derive(Debug, Clone)]
pub struct RunLiveness {
    marker: dsproc_io::Location,
    armed: std::sync::Arc<tokio::sync::OnceCell<bool>>,
}

impl RunLiveness {
    /// Starts watching the run of `staging`; the first look at its marker is
    /// issued now, when the task starts.
    pub fn start(staging: &dsproc_io::Location) -> Self {
        let this = Self { marker: staging.join(dsproc_common::config::RUN_MARKER_FILE), armed: Default::default() };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let probe = this.clone();
            handle.spawn(async move {
                probe.armed().await;
            });
        }
        this
    }

    async fn armed(&self) -> bool {
        *self.armed.get_or_init(|| async { self.marker.exists().await.unwrap_or(false) }).await
    }

    /// Fails once the run's marker is gone (when it existed as the task started).
    /// A store error while looking is no reason to stop: the write that follows
    /// reports it if the store is really down.
    pub async fn check(&self) -> std::result::Result<(), dsproc_io::Error> {
        if !self.armed().await || self.marker.exists().await.unwrap_or(true) {
            return Ok(());
        }
        Err(dsproc_io::Error::Data(format!(
            "the run was stopped ({} is gone: interrupted, cancelled or rerun); this task writes nothing more",
            self.marker.shown()
        )))
    }

    /// [`Self::check`] from a blocking thread.
    pub fn check_blocking(&self, handle: &tokio::runtime::Handle) -> std::result::Result<(), dsproc_io::Error> {
        handle.block_on(self.check())
    }
}
