//! Dataset versions: immutable version records, an atomic current pointer, an
//! append-only history, rollback, retention and diffs, on any store.
//!
//! Layout of a dataset root (`OUTPUT`):
//! - `manifest.json`: the current version's manifest (shard paths relative to OUTPUT);
//! - `_versions/N.json`: every committed version's manifest, created once, never rewritten;
//! - `_history/SEQ.json`: pointer changes (`commit`, `rollback`) and status changes
//!   (`expire`), each created once with a conditional put;
//! - `vNNNNN/`: the shards and side files of version N, written there by the run
//!   that claimed N (`vNNNNN/_claim.json`, created if absent), never moved;
//! - `_staging/<run>/`: a running job's statistics and marker.
//!
//! Commit (under `_commit.lock`): every listed shard is checked (size), the
//! version record is created if absent, then `manifest.json` is replaced (a
//! rename locally, a conditional put on the previous ETag on object stores).
//! A crash at any instant leaves the previous version current and its files
//! intact: nothing before the pointer swap touches them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use dsproc_common::config::{
    parse_version_dir, version_dir, CLAIM_FILE, HISTORY_DIR, MANIFEST_FILE, QUARANTINE_DIR, VERSIONS_DIR,
};
use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::manifest::Manifest;

use crate::commit::{acquire_lock, for_each_io, left_by_dead_run, release_lock, RunMarker};
use dsproc_io::store::StoreError;

/// Test hook: `DSPROC_PAUSE_AT=<point>` with `DSPROC_PAUSE_MS=<ms>` sleeps at that
/// point of the commit (`before-lock`, `after-record`, `after-pointer`), so tests can
/// kill a run at an exact instant. Unset, it costs one env lookup.
pub async fn pause_point(point: &str) {
    if std::env::var("DSPROC_PAUSE_AT").ok().as_deref() == Some(point) {
        let ms = std::env::var("DSPROC_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        tracing::info!(point, ms, "pausing (DSPROC_PAUSE_AT)");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// One entry of `_history/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEvent {
    pub seq: u64,
    pub at: String,
    /// `commit`, `rollback` (pointer changes) or `expire` (status change).
    pub action: String,
    pub version: u64,
    /// The version current before a pointer change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn record_loc(out: &Location, n: u64) -> Location {
    out.join(&format!("{VERSIONS_DIR}/{n}.json"))
}

fn parse_manifest(bytes: &[u8], loc: &Location) -> Result<Manifest, DsprocError> {
    serde_json::from_slice(bytes).map_err(|e| DsprocError::job(format!("invalid manifest {}: {e}", loc.shown())))
}

fn manifest_body(m: &Manifest) -> Result<Vec<u8>, DsprocError> {
    let mut body = serde_json::to_vec_pretty(m).map_err(|e| DsprocError::job(format!("manifest: {e}")))?;
    body.push(b'\n');
    Ok(body)
}

/// Version numbers with a record under `_versions/`.
pub async fn committed(out: &Location) -> Result<BTreeSet<u64>, DsprocError> {
    let (_, objects) = out.join(VERSIONS_DIR).list_dir().await.map_err(DsprocError::job)?;
    Ok(objects
        .iter()
        .filter_map(|m| {
            let p = dsproc_io::store::decode_path(&m.location);
            p.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
        })
        .collect())
}

/// The record of version `n`.
pub async fn read_version(out: &Location, n: u64) -> Result<Option<Manifest>, DsprocError> {
    let loc = record_loc(out, n);
    match loc.get_opt().await.map_err(DsprocError::job)? {
        Some(b) => parse_manifest(&b, &loc).map(Some),
        None => Ok(None),
    }
}

/// The current manifest and its ETag.
async fn read_current(out: &Location) -> Result<Option<(Manifest, Option<String>)>, DsprocError> {
    let loc = out.join(MANIFEST_FILE);
    match loc.get_with_etag().await.map_err(DsprocError::job)? {
        Some((b, tag)) => Ok(Some((parse_manifest(&b, &loc)?, tag))),
        None => Ok(None),
    }
}

/// True when a dataset (any version, or a manifest from before versions) is committed at `out`.
pub async fn any_committed(out: &Location) -> Result<bool, DsprocError> {
    Ok(out.join(MANIFEST_FILE).exists().await.map_err(DsprocError::job)? || !committed(out).await?.is_empty())
}

/// Claims the next free version number for a run: `vNNNNN/_claim.json` is
/// created if absent, so two runs never get the same N. A number whose prefix
/// exists (claimed by a live run, or left by a dead one until `dsproc gc`) is skipped.
pub async fn claim(out: &Location, marker: &RunMarker) -> Result<u64, DsprocError> {
    for _ in 0..1000 {
        let done = committed(out).await?;
        let (dirs, _) = out.list_dir().await.map_err(DsprocError::job)?;
        let current = crate::commit::read_manifest(out).await?.map(|m| m.version).unwrap_or(0);
        let highest = dirs.iter().filter_map(|d| parse_version_dir(d)).chain(done).chain([current]).max().unwrap_or(0);
        let n = highest + 1;
        let claim = out.join(&format!("{}/{CLAIM_FILE}", version_dir(n)));
        if claim.put_if_absent(marker.body()).await.map_err(DsprocError::job)? {
            return Ok(n);
        }
    }
    Err(DsprocError::job(format!("{}: could not claim a version number (too many concurrent runs)", out.shown())))
}

/// Refreshes a run's claim (its heartbeat), so `gc` keeps a live run's prefix.
pub async fn refresh_claim(out: &Location, n: u64, marker: &RunMarker) -> Result<(), StoreError> {
    out.join(&format!("{}/{CLAIM_FILE}", version_dir(n))).put(marker.body()).await
}

/// Removes what an uncommitted run wrote under its version prefix. A prefix whose
/// version record exists is a committed version and is left alone.
pub async fn abandon(out: &Location, n: u64) -> Result<(), DsprocError> {
    if record_loc(out, n).exists().await.map_err(DsprocError::job)? {
        return Ok(());
    }
    out.join(&version_dir(n)).delete_all().await.map_err(DsprocError::job)?;
    Ok(())
}

/// Removes what a run wrote under its claimed version prefix so far, keeping the
/// claim (for a rerun within the same run).
pub async fn clear_prefix(out: &Location, n: u64) -> Result<(), DsprocError> {
    let prefix = out.join(&version_dir(n));
    for (rel, _) in prefix.list().await.map_err(DsprocError::job)? {
        if rel != CLAIM_FILE {
            prefix.join(&rel).delete().await.map_err(DsprocError::job)?;
        }
    }
    Ok(())
}

/// Appends an event to `_history/` (sequence numbers taken with conditional puts).
async fn append_event(out: &Location, mut ev: HistoryEvent) -> Result<(), DsprocError> {
    for _ in 0..100 {
        let seq = history(out).await?.last().map(|e| e.seq).unwrap_or(0) + 1;
        ev.seq = seq;
        let body = serde_json::to_vec_pretty(&ev).map_err(|e| DsprocError::job(format!("history: {e}")))?;
        if out.join(&format!("{HISTORY_DIR}/{seq:08}.json")).put_if_absent(body).await.map_err(DsprocError::job)? {
            return Ok(());
        }
    }
    Err(DsprocError::job(format!("{}/{HISTORY_DIR}: could not append an event", out.shown())))
}

fn event(action: &str, version: u64, previous: Option<u64>, run_id: Option<&str>) -> HistoryEvent {
    HistoryEvent {
        seq: 0,
        at: chrono::Utc::now().to_rfc3339(),
        action: action.into(),
        version,
        previous,
        run_id: run_id.map(String::from),
        reason: None,
    }
}

/// Every history event, in order.
pub async fn history(out: &Location) -> Result<Vec<HistoryEvent>, DsprocError> {
    let dir = out.join(HISTORY_DIR);
    let (_, objects) = dir.list_dir().await.map_err(DsprocError::job)?;
    let mut names: Vec<String> = objects
        .iter()
        .filter_map(|m| dsproc_io::store::decode_path(&m.location).rsplit('/').next().map(String::from))
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut events = Vec::new();
    for n in names {
        let loc = dir.join(&n);
        if let Some(b) = loc.get_opt().await.map_err(DsprocError::job)? {
            let ev: HistoryEvent = serde_json::from_slice(&b)
                .map_err(|e| DsprocError::job(format!("invalid history entry {}: {e}", loc.shown())))?;
            events.push(ev);
        }
    }
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

/// The status of every recorded version: `current` (the pointer), `expired` and
/// `rejected` (from history), else `superseded`.
pub fn status_of(n: u64, current: Option<u64>, events: &[HistoryEvent]) -> &'static str {
    if events.iter().any(|e| e.version == n && e.action == "expire") {
        "expired"
    } else if current == Some(n) {
        "current"
    } else if events.iter().any(|e| e.version == n && e.action == "reject") {
        "rejected"
    } else {
        "superseded"
    }
}

/// Files a manifest lists, relative to the dataset root.
fn listed_files(m: &Manifest) -> impl Iterator<Item = &String> {
    m.shards.iter().map(|s| &s.path).chain(m.quarantine.iter()).chain(m.side_files.iter())
}

/// Commits version `n` (claimed by this run; its shards are already under
/// `vNNNNN/`). With `refuse_existing` (`mode = "error"`), a version committed
/// while the job ran stops the commit. Returns the manifest as committed.
pub async fn commit_version(
    out: &Location,
    n: u64,
    manifest: &Manifest,
    refuse_existing: bool,
) -> Result<Manifest, DsprocError> {
    commit_version_as(out, n, manifest, refuse_existing, false).await
}

/// [`commit_version`]; with `rejected`, the version is recorded (`_versions/N.json`
/// with status `rejected`, a `reject` history event) but `manifest.json` is not
/// touched: the current version stays current.
pub async fn commit_version_as(
    out: &Location,
    n: u64,
    manifest: &Manifest,
    refuse_existing: bool,
    rejected: bool,
) -> Result<Manifest, DsprocError> {
    pause_point("before-lock").await;
    let me = RunMarker::new(&manifest.run_id, &manifest.job_name);
    let lock = acquire_lock(out, &me).await?;
    let result = commit_locked(out, n, manifest, refuse_existing, rejected).await;
    release_lock(&lock).await;
    result
}

async fn commit_locked(
    out: &Location,
    n: u64,
    manifest: &Manifest,
    refuse_existing: bool,
    rejected: bool,
) -> Result<Manifest, DsprocError> {
    let current = read_current(out).await?;
    if refuse_existing && (current.is_some() || !committed(out).await?.is_empty()) {
        return Err(DsprocError::job(format!(
            "{} appeared while the job ran (another job committed a version there); this run is not committed",
            out.join(MANIFEST_FILE).shown()
        )));
    }
    // The version's quarantine files, as the readers wrote them.
    let qdir = out.join(&format!("{}/{QUARANTINE_DIR}", version_dir(n)));
    let mut quarantine: Vec<String> = qdir
        .list()
        .await
        .map_err(DsprocError::job)?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !name.contains('/') && name.ends_with(".jsonl"))
        .map(|name| format!("{}/{QUARANTINE_DIR}/{name}", version_dir(n)))
        .collect();
    quarantine.sort();
    let mut m = manifest.clone();
    m.version = n;
    m.parent_version = current.as_ref().map(|(c, _)| c.version).filter(|v| *v > 0);
    m.status = if rejected { "rejected" } else { "current" }.into();
    m.quarantine = quarantine;
    // Every shard the manifest lists is in place with its size (a retried task
    // rewrote the same bytes; anything else is refused here, before any record).
    let checks: Vec<(Location, u64)> = m.shards.iter().map(|s| (out.join(&s.path), s.bytes)).collect();
    for_each_io(checks, |(loc, bytes)| async move {
        match loc.size().await? {
            Some(b) if b == bytes => Ok(()),
            Some(b) => Err(format!("{}: {b} bytes, but its writer reported {bytes}; not committing", loc.shown())),
            None => Err(format!("{}: missing; not committing", loc.shown())),
        }
    })
    .await?;
    let body = manifest_body(&m)?;
    let record = record_loc(out, n);
    if !record.put_if_absent(body.clone()).await.map_err(DsprocError::job)? {
        return Err(DsprocError::job(format!(
            "{} already exists: version {n} was committed by another run; this run is not committed",
            record.shown()
        )));
    }
    pause_point("after-record").await;
    if rejected {
        append_event(out, event("reject", n, m.parent_version, Some(&m.run_id))).await?;
        if let Err(e) = out.join(&format!("{}/{CLAIM_FILE}", version_dir(n))).delete().await {
            tracing::warn!(error = %e, "could not remove the version claim");
        }
        return Ok(m);
    }
    swap_pointer(out, body, current.map(|(_, tag)| tag)).await?;
    pause_point("after-pointer").await;
    if let Err(e) = append_event(out, event("commit", n, m.parent_version, Some(&m.run_id))).await {
        tracing::warn!(error = %e, version = n, "committed, but could not append to the history");
    }
    if let Err(e) = out.join(&format!("{}/{CLAIM_FILE}", version_dir(n))).delete().await {
        tracing::warn!(error = %e, "could not remove the version claim");
    }
    Ok(m)
}

/// Replaces `manifest.json` (atomically; on object stores only if it is still
/// the one read, `previous`: `None` = there was none).
async fn swap_pointer(out: &Location, body: Vec<u8>, previous: Option<Option<String>>) -> Result<(), DsprocError> {
    let loc = out.join(MANIFEST_FILE);
    let swapped = match previous {
        None => loc.put_if_absent(body).await,
        Some(tag) => loc.put_if_match(body, tag).await,
    }
    .map_err(|e| DsprocError::job(format!("cannot replace the current pointer: {e}")))?;
    if !swapped {
        return Err(DsprocError::job(format!(
            "{} changed during the commit (another writer ignored the commit lock); this run is not current",
            loc.shown()
        )));
    }
    Ok(())
}

/// One row of `dsproc versions`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub version: u64,
    pub status: String,
    pub created_at: String,
    pub job: String,
    pub run_id: String,
    pub rows_out: u64,
    pub shards: usize,
    pub bytes: u64,
    pub tokens: Option<u64>,
    pub parent: Option<u64>,
    pub spec_sha256: String,
    pub dataset_version: String,
}

/// Every recorded version with its status, oldest first.
pub async fn list(out: &Location) -> Result<Vec<VersionRow>, DsprocError> {
    let current = crate::commit::read_manifest(out).await?.map(|m| m.version);
    let events = history(out).await?;
    let mut rows = Vec::new();
    for n in committed(out).await? {
        let Some(m) = read_version(out, n).await? else { continue };
        rows.push(VersionRow {
            version: n,
            status: status_of(n, current, &events).into(),
            created_at: m.created_at.clone(),
            job: m.job_name.clone(),
            run_id: m.run_id.clone(),
            rows_out: m.rows.out,
            shards: m.data_shards(),
            bytes: m.shards.iter().map(|s| s.bytes).sum(),
            tokens: m.tokens(),
            parent: m.parent_version,
            spec_sha256: m.spec_sha256.clone(),
            dataset_version: m.dataset_version.clone(),
        });
    }
    Ok(rows)
}

/// Version `n`'s manifest with its status as of now.
pub async fn inspect_version(out: &Location, n: u64) -> Result<Manifest, DsprocError> {
    let mut m = read_version(out, n).await?.ok_or_else(|| {
        DsprocError::usage(format!("{}: no version {n} (no {})", out.shown(), record_loc(out, n).shown()))
    })?;
    let current = crate::commit::read_manifest(out).await?.map(|m| m.version);
    m.status = status_of(n, current, &history(out).await?).into();
    Ok(m)
}

/// Makes version `n` current again (a new pointer change in history). Refused for
/// expired versions and versions with missing shards.
pub async fn rollback(out: &Location, n: u64) -> Result<Manifest, DsprocError> {
    let me = RunMarker::new(&format!("rollback-{n}"), "rollback");
    let lock = acquire_lock(out, &me).await?;
    let result = rollback_locked(out, n).await;
    release_lock(&lock).await;
    result
}

async fn rollback_locked(out: &Location, n: u64) -> Result<Manifest, DsprocError> {
    let mut m = read_version(out, n).await?.ok_or_else(|| {
        DsprocError::usage(format!("{}: no version {n} to roll back to (see `dsproc versions`)", out.shown()))
    })?;
    let events = history(out).await?;
    if events.iter().any(|e| e.version == n && e.action == "expire") {
        return Err(DsprocError::usage(format!(
            "{}: version {n} is expired (its files were removed by `dsproc gc`); it cannot be made current",
            out.shown()
        )));
    }
    if m.status == "rejected" || events.iter().any(|e| e.version == n && e.action == "reject") {
        return Err(DsprocError::usage(format!(
            "{}: version {n} was rejected by its checks (see `dsproc inspect {} --version {n}`); it cannot be made current",
            out.shown(),
            out.uri
        )));
    }
    let current = read_current(out).await?;
    let previous = current.as_ref().map(|(c, _)| c.version);
    if previous == Some(n) {
        return Ok(m);
    }
    let checks: Vec<(Location, u64)> = m.shards.iter().map(|s| (out.join(&s.path), s.bytes)).collect();
    for_each_io(checks, |(loc, bytes)| async move {
        match loc.size().await? {
            Some(b) if b == bytes => Ok(()),
            _ => Err(format!("{} is missing or changed; version {n} cannot be made current", loc.shown())),
        }
    })
    .await?;
    m.status = "current".into();
    swap_pointer(out, manifest_body(&m)?, Some(current.and_then(|(_, tag)| tag))).await?;
    append_event(out, event("rollback", n, previous, None)).await?;
    Ok(m)
}

/// What retention (`gc --keep`) found and did.
#[derive(Debug, Default, Serialize)]
pub struct RetentionReport {
    /// Versions kept (the current one always).
    pub kept: Vec<u64>,
    /// Versions marked expired now.
    pub expired: Vec<u64>,
    /// Files removed (or that would be, with --dry-run).
    pub removed_files: usize,
    /// Uncommitted version prefixes of dead runs removed: version → objects.
    pub removed_claims: BTreeMap<u64, usize>,
    /// Uncommitted version prefixes of live runs, left alone.
    pub live_claims: Vec<u64>,
}

/// Removes uncommitted version prefixes of dead runs (no record; the claim's
/// run is gone or silent past `grace_secs`) and, with `keep`, expires versions
/// beyond the newest `keep` (the current one always kept; with `older_than`,
/// only those created before it) and removes their files, except any file a
/// kept version lists.
pub async fn gc_versions(
    out: &Location,
    grace_secs: u64,
    keep: Option<usize>,
    older_than: Option<chrono::Duration>,
    dry_run: bool,
) -> Result<RetentionReport, DsprocError> {
    let mut report = RetentionReport::default();
    let done = committed(out).await?;
    let (dirs, _) = out.list_dir().await.map_err(DsprocError::job)?;
    for (n, dir) in dirs.iter().filter_map(|d| Some((parse_version_dir(d)?, d))) {
        let prefix = out.join(dir);
        let claim = prefix
            .join(CLAIM_FILE)
            .get_opt()
            .await
            .map_err(DsprocError::job)?
            .and_then(|b| serde_json::from_slice::<RunMarker>(&b).ok());
        if done.contains(&n) {
            // A committed version whose run died between its record and the end of
            // the commit: only the claim is left to remove.
            if claim.as_ref().is_some_and(|m| m.stale(grace_secs)) && !dry_run {
                prefix.join(CLAIM_FILE).delete().await.map_err(DsprocError::job)?;
            }
            continue;
        }
        if !left_by_dead_run(&prefix, claim.as_ref(), grace_secs).await? {
            report.live_claims.push(n);
            continue;
        }
        let count = if dry_run {
            prefix.list().await.map_err(DsprocError::job)?.len()
        } else {
            prefix.delete_all().await.map_err(DsprocError::job)?
        };
        report.removed_claims.insert(n, count);
    }
    let Some(keep) = keep else { return Ok(report) };
    let me = RunMarker::new("gc", "gc");
    let lock = if dry_run { None } else { Some(acquire_lock(out, &me).await?) };
    let result = expire_locked(out, keep, older_than, dry_run, &mut report).await;
    if let Some(lock) = lock {
        release_lock(&lock).await;
    }
    result.map(|_| report)
}

async fn expire_locked(
    out: &Location,
    keep: usize,
    older_than: Option<chrono::Duration>,
    dry_run: bool,
    report: &mut RetentionReport,
) -> Result<(), DsprocError> {
    let current = crate::commit::read_manifest(out).await?.map(|m| m.version);
    let events = history(out).await?;
    let mut records = BTreeMap::new();
    for n in committed(out).await? {
        if let Some(m) = read_version(out, n).await? {
            records.insert(n, m);
        }
    }
    let already: BTreeSet<u64> =
        records.keys().copied().filter(|n| status_of(*n, current, &events) == "expired").collect();
    let live: Vec<u64> = records.keys().copied().filter(|n| !already.contains(n)).collect();
    let mut kept: BTreeSet<u64> = live.iter().rev().take(keep).copied().collect();
    kept.extend(current);
    let cutoff = older_than.map(|d| chrono::Utc::now() - d);
    for n in &live {
        if kept.contains(n) {
            continue;
        }
        let young = cutoff.is_some_and(|c| {
            chrono::DateTime::parse_from_rfc3339(&records[n].created_at)
                .is_ok_and(|t| t.with_timezone(&chrono::Utc) > c)
        });
        if young {
            kept.insert(*n);
        } else {
            report.expired.push(*n);
        }
    }
    report.kept = kept.iter().copied().collect();
    let protected: BTreeSet<&String> = kept.iter().flat_map(|n| listed_files(&records[n])).collect();
    // Marked expired first: a gc that dies midway leaves versions that are
    // expired (and never current again), never a current one with files missing.
    if !dry_run {
        for n in &report.expired {
            append_event(out, event("expire", *n, None, None)).await?;
        }
    }
    let mut doomed: BTreeSet<String> = BTreeSet::new();
    for n in report.expired.iter().chain(already.iter()) {
        doomed.extend(listed_files(&records[n]).filter(|p| !protected.contains(p)).cloned());
        let dir = version_dir(*n);
        for (rel, _) in out.join(&dir).list().await.map_err(DsprocError::job)? {
            let p = format!("{dir}/{rel}");
            if !protected.contains(&p) {
                doomed.insert(p);
            }
        }
    }
    // Only files that exist count as removed.
    let mut present = Vec::new();
    for p in doomed {
        if out.join(&p).exists().await.map_err(DsprocError::job)? {
            present.push(p);
        }
    }
    report.removed_files = present.len();
    if dry_run {
        return Ok(());
    }
    let locs: Vec<Location> = present.iter().map(|p| out.join(p)).collect();
    for_each_io(locs, |l| async move { l.delete().await }).await?;
    // Emptied local version directories go too.
    if let Some(root) = out.local.as_ref() {
        for n in report.expired.iter().chain(already.iter()) {
            remove_empty_dirs(&root.join(version_dir(*n)));
        }
    }
    Ok(())
}

/// Removes `dir` and its subdirectories when they hold no files.
fn remove_empty_dirs(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// `dsproc diff OUTPUT A B`: what changed from version A to version B.
pub async fn diff(out: &Location, a: u64, b: u64) -> Result<serde_json::Value, DsprocError> {
    let (ma, mb) = (inspect_version(out, a).await?, inspect_version(out, b).await?);
    Ok(diff_manifests(&ma, &mb))
}

/// The differences between two manifests (rows, shards, inputs, spec, steps).
pub fn diff_manifests(a: &Manifest, b: &Manifest) -> serde_json::Value {
    use serde_json::json;
    let pair = |x: u64, y: u64| json!({"a": x, "b": y, "change": y as i128 - x as i128});
    let mut dropped = serde_json::Map::new();
    let keys: BTreeSet<&String> = a.rows.dropped.keys().chain(b.rows.dropped.keys()).collect();
    for k in keys {
        let (x, y) = (a.rows.dropped.get(k).copied().unwrap_or(0), b.rows.dropped.get(k).copied().unwrap_or(0));
        if x != y {
            dropped.insert(k.clone(), pair(x, y));
        }
    }
    let sha = |m: &Manifest| m.shards.iter().map(|s| s.sha256.clone()).collect::<BTreeSet<_>>();
    let (sa, sb) = (sha(a), sha(b));
    let inputs = |m: &Manifest| {
        m.inputs.iter().map(|i| (i.uri.clone(), (i.bytes, i.version.clone()))).collect::<BTreeMap<_, _>>()
    };
    let (ia, ib) = (inputs(a), inputs(b));
    let added: Vec<&String> = ib.keys().filter(|k| !ia.contains_key(*k)).collect();
    let removed: Vec<&String> = ia.keys().filter(|k| !ib.contains_key(*k)).collect();
    let changed: Vec<&String> =
        ia.iter().filter(|(k, v)| ib.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k).collect();
    let mut steps = Vec::new();
    for i in 0..a.steps.len().max(b.steps.len()) {
        let (x, y) = (a.steps.get(i), b.steps.get(i));
        let same = match (x, y) {
            (Some(x), Some(y)) => {
                x.op == y.op && x.rows_in == y.rows_in && x.rows_out == y.rows_out && x.stats == y.stats
            }
            _ => false,
        };
        if same {
            continue;
        }
        let mut stats = serde_json::Map::new();
        let empty = BTreeMap::new();
        let (xs, ys) = (x.map(|s| &s.stats).unwrap_or(&empty), y.map(|s| &s.stats).unwrap_or(&empty));
        for k in xs.keys().chain(ys.keys()).collect::<BTreeSet<_>>() {
            let (p, q) = (xs.get(k).copied().unwrap_or(0), ys.get(k).copied().unwrap_or(0));
            if p != q {
                stats.insert(k.clone(), pair(p, q));
            }
        }
        steps.push(json!({
            "step": i + 1,
            "op": {"a": x.map(|s| s.op.clone()), "b": y.map(|s| s.op.clone())},
            "rows_out": {"a": x.map(|s| s.rows_out), "b": y.map(|s| s.rows_out)},
            "stats": stats,
        }));
    }
    json!({
        "a": a.version,
        "b": b.version,
        "rows": {
            "in": pair(a.rows.rows_in, b.rows.rows_in),
            "out": pair(a.rows.out, b.rows.out),
            "quarantined": pair(a.rows.quarantined, b.rows.quarantined),
            "dropped": dropped,
        },
        "shards": {
            "a": a.data_shards(),
            "b": b.data_shards(),
            "bytes": pair(a.shards.iter().map(|s| s.bytes).sum(), b.shards.iter().map(|s| s.bytes).sum()),
            "same_content": sa.intersection(&sb).count(),
            "only_a": sa.difference(&sb).count(),
            "only_b": sb.difference(&sa).count(),
        },
        "inputs": {"added": added, "removed": removed, "changed": changed},
        "spec": {"a": a.spec_sha256, "b": b.spec_sha256, "same": a.spec_sha256 == b.spec_sha256},
        "dataset_version": {"a": a.dataset_version, "b": b.dataset_version, "same": a.dataset_version == b.dataset_version},
        "steps": steps,
    })
}

pub use dsproc_common::size::DurationError;

/// Parses a duration such as `30d`, `12h`, `90m`, `45s` or `2w`.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, DurationError> {
    let secs = dsproc_common::size::parse_duration_secs(s)?;
    Ok(chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, version: u64) -> HistoryEvent {
        event(action, version, None, None)
    }

    #[test]
    fn status_comes_from_the_pointer_and_history() {
        let events = vec![ev("commit", 1), ev("commit", 2), ev("commit", 3), ev("expire", 1)];
        assert_eq!(status_of(3, Some(3), &events), "current");
        assert_eq!(status_of(2, Some(3), &events), "superseded");
        assert_eq!(status_of(1, Some(3), &events), "expired");
        assert_eq!(status_of(2, Some(2), &events), "current");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_duration("90m").unwrap(), chrono::Duration::minutes(90));
        assert_eq!(parse_duration("2w").unwrap(), chrono::Duration::days(14));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn version_prefixes_round_trip() {
        assert_eq!(version_dir(2), "v00002");
        assert_eq!(parse_version_dir("v00002"), Some(2));
        assert_eq!(parse_version_dir("v123456"), Some(123456));
        assert_eq!(parse_version_dir("v12"), None);
        assert_eq!(parse_version_dir("vault"), None);
    }

    #[tokio::test]
    async fn claims_never_share_a_number_and_history_appends_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = Location::parse(dir.path().to_str().unwrap(), None).unwrap();
        let m = RunMarker::new("r", "j");
        let (a, b) = tokio::join!(claim(&out, &m), claim(&out, &m));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a, b);
        assert_eq!(BTreeSet::from([a, b]), BTreeSet::from([1, 2]));
        append_event(&out, ev("commit", 1)).await.unwrap();
        append_event(&out, ev("expire", 1)).await.unwrap();
        let h = history(&out).await.unwrap();
        assert_eq!(
            h.iter().map(|e| (e.seq, e.action.as_str())).collect::<Vec<_>>(),
            vec![(1, "commit"), (2, "expire")]
        );
        abandon(&out, a).await.unwrap();
        assert!(!dir.path().join(version_dir(a)).exists());
    }
}
