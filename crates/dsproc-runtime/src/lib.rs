//! Wiring: sessions for the local engine and for Ballista (standalone or a
//! remote scheduler) with every dsproc function, plan node and codec installed,
//! and the driver that runs a job, checks its row accounting and commits it.

pub mod agreement;
pub mod checks;
pub mod cluster;
pub mod commit;
pub mod driver;
pub mod embedding_drift;
pub mod incremental;
pub mod lineage;
pub mod report;
pub mod schedule;
pub mod security;
pub mod session;
pub mod versions;

pub use driver::{explain_job, run_job, RunOptions, RunSummary};
pub use dsproc_io::store::redact;
pub use session::{make_context, Engine, EngineOptions};
