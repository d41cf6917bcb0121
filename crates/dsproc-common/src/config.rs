//! Namespaced configuration keys and defaults, in one place.

/// Rows per batch (readers and the engine). Documents can be large (the median
/// linux_src file is ~8 KB, some are MBs), so batches stay small enough for a
/// tight memory pool.
pub const DEFAULT_BATCH_ROWS: usize = 256;
/// Bytes per batch produced by the readers (a batch is cut at whichever comes first).
pub const DEFAULT_BATCH_BYTES: usize = 16 << 20;
/// Engine batches that would hold more than this (the engine's operators join
/// small batches up to its batch size in rows, not bytes) make the read stop and
/// the driver rerun the job with fewer rows a batch: see [`BATCH_TOO_LARGE`].
pub const MAX_ENGINE_BATCH_BYTES: u64 = 512 << 20;
/// Marks the reader's error for rows far larger than the batch size sampled
/// before the run; the message goes on `: N bytes a row`.
pub const BATCH_TOO_LARGE: &str = "rows larger than the sampled batch size";
/// Default `input.max_document_bytes`: larger rows are quarantined as `too_large`.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 256 << 20;
/// Rows per write call in the shard writers; fixed so that bytes do not depend on
/// how upstream operators happened to batch rows.
pub const WRITE_SLICE_ROWS: usize = 1024;
/// Default shard size.
pub const DEFAULT_SHARD_SIZE: &str = "256MiB";
/// Name of the committed manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Directory of quarantined rows in an output.
pub const QUARANTINE_DIR: &str = "_quarantine";
/// Inside a version: the incremental state of its dedup steps
/// (`_state/step-NNN/state-*.parquet`), listed in the manifest's `side_files`.
pub const STATE_DIR: &str = "_state";
/// Directory of staged, not yet committed, files in an output.
pub const STAGING_DIR: &str = "_staging";
/// Column holding the shard bucket of a row just before the sink.
pub const SHARD_COLUMN: &str = "__dsproc_shard";
/// Column holding a row's position key within its shard under `shuffle_seed`.
pub const ORDER_COLUMN: &str = "__dsproc_order";

/// Stack size of the threads that plan and run jobs (driver, scheduler,
/// executors). Deep plans are walked recursively by DataFusion's optimizer and
/// the plan codecs; 2 MiB (the default) is not enough for `dedup_minhash`'s
/// unrolled rounds in debug builds.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// Memory each sort reserves for merging its spill files (DataFusion's default
/// is 10 MiB). A `dedup_minhash` plan holds dozens of sorts per partition; under
/// a fair memory pool each gets `limit / sorts`, so the reservation must be small.
pub const SORT_SPILL_RESERVATION_BYTES: usize = 1 << 20;

/// Part size of multipart uploads to object stores; an object smaller than this
/// is sent with one PUT. S3 allows 10,000 parts, so one object may reach ~160 GiB.
pub const UPLOAD_PART_BYTES: usize = 16 << 20;
/// Parts of one upload in flight at once (the writer waits beyond that).
pub const UPLOAD_CONCURRENCY: usize = 4;
/// The commit lock of an output: created with a conditional put by the run that
/// commits, removed when it is done.
pub const COMMIT_LOCK_FILE: &str = "_commit.lock";
/// A run's marker under its staging prefix (`_staging/<run>/_run.json`): who
/// runs it and when it last showed signs of life (`dsproc gc` reads it).
pub const RUN_MARKER_FILE: &str = "_run.json";
/// How often a running driver refreshes its run marker.
pub const RUN_HEARTBEAT_SECS: u64 = 30;
/// Immutable records of committed versions: `_versions/N.json`.
pub const VERSIONS_DIR: &str = "_versions";
/// Append-only log of pointer and status changes: `_history/SEQ.json`.
pub const HISTORY_DIR: &str = "_history";
/// A version number claimed by a running job: `vNNNNN/_claim.json`.
pub const CLAIM_FILE: &str = "_claim.json";
/// How long a commit waits for a live run's commit lock before giving up.
pub const COMMIT_LOCK_WAIT_SECS: u64 = 120;

/// The prefix of version `n`'s shards and side files (`v00002`).
pub fn version_dir(n: u64) -> String {
    format!("v{n:05}")
}

/// The version a `vNNNNN` prefix holds.
pub fn parse_version_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    (digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}
