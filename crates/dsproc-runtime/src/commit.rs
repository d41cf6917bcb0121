//! Reading a run's side outputs (statistics) on any store (local directory or
//! object store), the run markers and the commit lock, and collecting what
//! crashed runs left under `_staging/` (`dsproc gc`). The version commit itself
//! is in [`crate::versions`].

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use dsproc_common::config::{COMMIT_LOCK_FILE, MANIFEST_FILE, RUN_MARKER_FILE, STAGING_DIR};
use dsproc_common::DsprocError;
use dsproc_exec::{ReadStats, StepStats};
use dsproc_io::Location;
use dsproc_job::manifest::Manifest;

/// Concurrent object-store requests of the driver's commit and stats reads.
const DRIVER_IO_CONCURRENCY: usize = 16;

/// Totals of a run's statistics files.
#[derive(Debug, Default)]
pub struct RunStats {
    pub read_rows: u64,
    pub quarantined: u64,
    /// step → rows leaving it.
    pub step_rows: BTreeMap<usize, u64>,
    pub ranges: usize,
    /// Shard writers (partitions of the last stage) that finished.
    pub writers_done: usize,
    /// step → summed counters (e.g. PII kinds).
    pub step_sums: BTreeMap<usize, BTreeMap<String, u64>>,
    /// Processes that read input (`pid N@host`), sorted.
    pub workers: BTreeSet<String>,
    /// Dropped values of keys outside a declared schema, per key.
    pub extra_dropped: BTreeMap<String, u64>,
    /// Duplicate ids found by the check of a named id column.
    pub duplicate_ids: dsproc_exec::DuplicateIdStats,
}

fn parse_stats<T: serde::de::DeserializeOwned>(bytes: &[u8], loc: &Location) -> Result<T, DsprocError> {
    serde_json::from_slice(bytes).map_err(|e| DsprocError::job(format!("bad stats file {}: {e}", loc.shown())))
}

/// Sums the statistics files under `staging/_stats`.
pub async fn read_stats(staging: &Location) -> Result<RunStats, DsprocError> {
    read_stats_cached(staging, &mut BTreeMap::new()).await
}

/// [`read_stats`] that fetches only files not in `seen` (name → body) and adds
/// them there: progress polls a store once a second without re-reading every file.
pub async fn read_stats_cached(
    staging: &Location,
    seen: &mut BTreeMap<String, bytes::Bytes>,
) -> Result<RunStats, DsprocError> {
    let dir = staging.join("_stats");
    let mut stats = RunStats::default();
    let mut names = Vec::new();
    for (name, _) in dir.list().await.map_err(DsprocError::job)? {
        if name.contains('/') || !name.ends_with(".json") {
            continue;
        }
        if name.starts_with("write-") {
            stats.writers_done += 1; // a marker: its body is not needed
        } else {
            names.push(name);
        }
    }
    let wanted: Vec<String> = names.iter().filter(|n| !seen.contains_key(*n)).cloned().collect();
    let bodies: Vec<_> = futures::stream::iter(wanted)
        .map(|name| {
            let loc = dir.join(&name);
            async move { (name, loc.get_opt().await) }
        })
        .buffer_unordered(DRIVER_IO_CONCURRENCY)
        .collect()
        .await;
    for (name, body) in bodies {
        if let Some(bytes) = body.map_err(DsprocError::job)? {
            seen.insert(name, bytes);
        }
    }
    for name in names {
        let Some(bytes) = seen.get(&name) else { continue };
        let loc = dir.join(&name);
        if name.starts_with("read-") {
            let s: ReadStats = parse_stats(bytes, &loc)?;
            stats.read_rows += s.rows;
            stats.quarantined += s.quarantined;
            stats.ranges += 1;
            stats.workers.insert(s.worker);
            for (k, v) in s.extra_dropped {
                *stats.extra_dropped.entry(k).or_default() += v;
            }
        } else if name.starts_with("step-") {
            let s: StepStats = parse_stats(bytes, &loc)?;
            *stats.step_rows.entry(s.step).or_default() += s.rows;
        } else if name.starts_with("dups-") {
            let s: dsproc_exec::DuplicateIdStats = parse_stats(bytes, &loc)?;
            stats.duplicate_ids.merge(&s);
        } else if name.starts_with("sums-") {
            let s: StepStats = parse_stats(bytes, &loc)?;
            let sums = stats.step_sums.entry(s.step).or_default();
            for (k, v) in s.sums {
                *sums.entry(k).or_default() += v;
            }
        }
    }
    Ok(stats)
}

/// Who holds a commit lock or runs a staging prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMarker {
    pub run_id: String,
    #[serde(default)]
    pub job: String,
    pub host: String,
    pub pid: u32,
    pub started_at: String,
    /// Refreshed every `RUN_HEARTBEAT_SECS` while the run is alive.
    pub heartbeat_at: String,
}

impl RunMarker {
    pub fn new(run_id: &str, job: &str) -> Self {
        let now = chrono::Utc::now().to_rfc3339();
        Self {
            run_id: run_id.to_string(),
            job: job.to_string(),
            host: hostname(),
            pid: std::process::id(),
            started_at: now.clone(),
            heartbeat_at: now,
        }
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Seconds since the last heartbeat.
    fn silent_secs(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.heartbeat_at)
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
            .unwrap_or(i64::MAX)
    }

    /// True when the process is certainly gone: it ran on this host and its pid is dead.
    fn dead_here(&self) -> bool {
        self.host == hostname() && !pid_alive(self.pid)
    }

    /// Dead for sure, or silent for longer than `grace_secs`.
    pub fn stale(&self, grace_secs: u64) -> bool {
        self.dead_here() || self.silent_secs() > grace_secs as i64
    }
}

/// The process `pid` of this host runs (a zombie, exited but not yet reaped by
/// its parent, does not).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the command name's closing parenthesis
        Ok(stat) => {
            !matches!(stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()), Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// The staging prefix of run `run_id` under `out`.
pub fn staging_of(out: &Location, run_id: &str) -> Location {
    out.join(&format!("{STAGING_DIR}/{run_id}"))
}

/// Writes (or refreshes) a run's marker under its staging prefix.
pub async fn write_run_marker(staging: &Location, marker: &RunMarker) -> Result<(), DsprocError> {
    staging.join(RUN_MARKER_FILE).put(marker.body()).await.map_err(DsprocError::job)
}

/// Takes the output's commit lock (`OUTPUT/_commit.lock`, a conditional put).
/// While a live run holds it, waits up to `COMMIT_LOCK_WAIT_SECS`; a lock left by
/// a dead run (or held past the wait) fails cleanly, naming the holder.
pub async fn acquire_lock(out: &Location, me: &RunMarker) -> Result<Location, DsprocError> {
    let lock = out.join(COMMIT_LOCK_FILE);
    let started = std::time::Instant::now();
    loop {
        if lock.put_if_absent(me.body()).await.map_err(DsprocError::job)? {
            return Ok(lock);
        }
        let body = lock.get_opt().await.map_err(DsprocError::job)?;
        let Some(body) = body else {
            // The holder released the lock between our put and this read: try again.
            continue;
        };
        let holder = serde_json::from_slice::<RunMarker>(&body).ok();
        let live = holder.as_ref().is_some_and(|m| !m.stale(dsproc_common::config::RUN_HEARTBEAT_SECS * 20));
        if live && started.elapsed().as_secs() < dsproc_common::config::COMMIT_LOCK_WAIT_SECS {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        let holder = holder
            .map(|m| format!("run {} (pid {} on {}, since {})", m.run_id, m.pid, m.host, m.started_at))
            .unwrap_or_else(|| "another run".into());
        return Err(DsprocError::job(format!(
            "{} is being committed by {holder}; this run is not committed (if no such job is running, `dsproc gc {}` removes the stale lock)",
            out.shown(),
            out.uri
        )));
    }
}

/// Removes the commit lock taken by [`acquire_lock`].
pub async fn release_lock(lock: &Location) {
    if let Err(e) = lock.delete().await {
        tracing::warn!(error = %e, "could not remove the commit lock");
    }
}

/// Runs `f` over `items` with bounded concurrency; the first error wins.
pub(crate) async fn for_each_io<T, F, Fut, E>(items: Vec<T>, f: F) -> Result<(), DsprocError>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: Into<String>,
{
    let results: Vec<Result<(), E>> =
        futures::stream::iter(items.into_iter().map(f)).buffer_unordered(DRIVER_IO_CONCURRENCY).collect().await;
    results.into_iter().collect::<Result<(), E>>().map_err(DsprocError::job)
}

/// Reads the manifest of a committed dataset.
pub async fn read_manifest(out: &Location) -> Result<Option<Manifest>, DsprocError> {
    let loc = out.join(MANIFEST_FILE);
    match loc.get_opt().await.map_err(DsprocError::job)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DsprocError::job(format!("invalid manifest {}: {e}", loc.shown()))),
        None => Ok(None),
    }
}

/// What `dsproc gc` found (and removed, unless it was a dry run).
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Staging prefixes of dead runs: run id → objects.
    pub removed_runs: BTreeMap<String, usize>,
    /// Runs still alive (heartbeat within the grace period), left alone.
    pub live_runs: Vec<String>,
    /// A stale commit lock was removed.
    pub removed_lock: bool,
    /// Half-written local files (`NAME#N`) of a killed committer, relative to the output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_partial_files: Vec<String>,
}

/// object_store's local puts write `NAME#N` and then rename it to `NAME`; a process
/// killed in between leaves `NAME#N` behind (object_store never lists it). The
/// metadata files (manifest, version records, history) are written only under the
/// commit lock, so with no lock held such leftovers in those directories are garbage.
fn local_partial_files(out: &Location) -> Vec<std::path::PathBuf> {
    let Some(root) = out.local.as_ref().filter(|_| out.is_local()) else { return Vec::new() };
    let mut found = Vec::new();
    for dir in
        [root.clone(), root.join(dsproc_common::config::VERSIONS_DIR), root.join(dsproc_common::config::HISTORY_DIR)]
    {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let partial = name
                .rsplit_once('#')
                .is_some_and(|(stem, n)| !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if partial && entry.file_type().is_ok_and(|t| t.is_file()) {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Whether the prefix a run left (its staging, or the version it claimed) belongs
/// to a dead run: by its marker when it has one, else by the age of its newest
/// object (an empty prefix is dead).
pub async fn left_by_dead_run(
    prefix: &Location,
    marker: Option<&RunMarker>,
    grace_secs: u64,
) -> Result<bool, DsprocError> {
    Ok(match marker {
        Some(m) => m.stale(grace_secs),
        None => {
            let objects = prefix.list().await.map_err(DsprocError::job)?;
            let newest = objects.iter().map(|(_, m)| m.last_modified).max();
            newest.is_none_or(|t| (chrono::Utc::now() - t).num_seconds() > grace_secs as i64)
        }
    })
}

/// Removes the staging prefixes of runs that are dead (same host, pid gone) or
/// silent for more than `grace_secs`, and a commit lock such a run left.
pub async fn gc(out: &Location, grace_secs: u64, dry_run: bool) -> Result<GcReport, DsprocError> {
    let mut report = GcReport::default();
    let root = out.join(STAGING_DIR);
    let (runs, _) = root.list_dir().await.map_err(DsprocError::job)?;
    for run in runs {
        let staging = root.join(&run);
        let marker = staging
            .join(RUN_MARKER_FILE)
            .get_opt()
            .await
            .map_err(DsprocError::job)?
            .and_then(|b| serde_json::from_slice::<RunMarker>(&b).ok());
        if !left_by_dead_run(&staging, marker.as_ref(), grace_secs).await? {
            report.live_runs.push(run);
            continue;
        }
        let n = if dry_run {
            staging.list().await.map_err(DsprocError::job)?.len()
        } else {
            staging.delete_all().await.map_err(DsprocError::job)?
        };
        report.removed_runs.insert(run, n);
    }
    let lock = out.join(COMMIT_LOCK_FILE);
    if let Some(body) = lock.get_opt().await.map_err(DsprocError::job)? {
        let stale = serde_json::from_slice::<RunMarker>(&body).map(|m| m.stale(grace_secs)).unwrap_or(true);
        if stale {
            if !dry_run {
                lock.delete().await.map_err(DsprocError::job)?;
            }
            report.removed_lock = true;
        }
    }
    if report.removed_lock || lock.get_opt().await.map_err(DsprocError::job)?.is_none() {
        for path in local_partial_files(out) {
            if !dry_run {
                std::fs::remove_file(&path)
                    .map_err(|e| DsprocError::job(format!("cannot remove {}: {e}", path.display())))?;
            }
            let root = out.local.as_deref().unwrap_or(std::path::Path::new(""));
            report.removed_partial_files.push(path.strip_prefix(root).unwrap_or(&path).display().to_string());
        }
    }
    Ok(report)
}

/// Uncommitted runs left under `out/_staging` (for `dsproc inspect`).
pub async fn staged_runs(out: &Location) -> Result<Vec<String>, DsprocError> {
    Ok(out.join(STAGING_DIR).list_dir().await.map_err(DsprocError::job)?.0)
}

/// Records a `dedup_minhash` step's saved index in its version: lists the key
/// files the workers uploaded to `vNNNNN/_index/step-NNN/` (through object_store:
/// the driver never looks for them on its own disk) and writes `index.json` there.
/// Returns the index's files relative to the dataset root (the version's side files).
pub async fn commit_index(
    version_dir: &Location,
    version_rel: &str,
    step: usize,
    info: Option<&serde_json::Value>,
    manifest: &Manifest,
) -> Result<Vec<String>, DsprocError> {
    use dsproc_job::ops::dedup_minhash::{index_dir, INDEX_FILE};
    let dir = index_dir(version_dir, step);
    let prefix = format!("keys-{step:03}-");
    let mut files: Vec<String> = dir
        .list()
        .await
        .map_err(DsprocError::job)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.contains('/') && n.starts_with(&prefix) && n.ends_with(".parquet"))
        .collect();
    files.sort();
    let index = saved_index(info, files.clone(), manifest)?;
    let body = serde_json::to_vec_pretty(&index).map_err(|e| DsprocError::job(format!("index: {e}")))?;
    dir.join(INDEX_FILE).put(body).await.map_err(DsprocError::job)?;
    let rel = format!("{version_rel}/_index/step-{step:03}");
    Ok(files.iter().chain([&INDEX_FILE.to_string()]).map(|f| format!("{rel}/{f}")).collect())
}

/// Writes `save_index = DIR`'s `DIR/index.json` after the version is committed
/// (a local directory or an object-store prefix): the same index, naming the key
/// files by their URIs inside the version.
pub async fn write_index_pointer(
    output: &Location,
    version_dir: &Location,
    step: usize,
    dir: &Location,
    info: Option<&serde_json::Value>,
    manifest: &Manifest,
    side_files: &[String],
) -> Result<(), DsprocError> {
    use dsproc_job::ops::dedup_minhash::{index_dir, INDEX_FILE};
    let idx = index_dir(version_dir, step);
    let files: Vec<String> = side_files
        .iter()
        .filter_map(|f| f.rsplit('/').next())
        .filter(|n| n.starts_with(&format!("keys-{step:03}-")))
        .map(|n| idx.join(n).canonical())
        .collect();
    let mut index = saved_index(info, files, manifest)?;
    index.dataset = Some(output.canonical());
    index.version = Some(manifest.version);
    let body = serde_json::to_vec_pretty(&index).map_err(|e| DsprocError::job(format!("index: {e}")))?;
    // Local: write + rename (Location::put), so a reader never sees half a pointer.
    dir.join(INDEX_FILE)
        .put(body)
        .await
        .map_err(|e| DsprocError::job(format!("save_index: cannot write {}: {e}", dir.join(INDEX_FILE).shown())))
}

fn saved_index(
    info: Option<&serde_json::Value>,
    files: Vec<String>,
    manifest: &Manifest,
) -> Result<dsproc_job::ops::dedup_minhash::SavedIndex, DsprocError> {
    let info = info.ok_or_else(|| DsprocError::job("internal: save_index without step info"))?;
    let params: dsproc_functions::minhash::MinHashParams = serde_json::from_value(serde_json::json!({
        "num_perm": info["num_perm"], "bands": info["bands"], "rows": info["rows"],
        "ngram": info["ngram"], "shingle": info["shingle"], "seed": info["seed"],
    }))
    .map_err(|e| DsprocError::job(format!("internal: index parameters: {e}")))?;
    Ok(dsproc_job::ops::dedup_minhash::SavedIndex {
        signature_version: dsproc_functions::minhash::SIGNATURE_VERSION.to_string(),
        params,
        files,
        job: manifest.job_name.clone(),
        run_id: manifest.run_id.clone(),
        created_at: manifest.created_at.clone(),
        dataset: None,
        version: None,
    })
}
