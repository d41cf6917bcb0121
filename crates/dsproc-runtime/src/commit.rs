//! Reading a run's side outputs (statistics, quarantine) and committing it:
//! staged files are moved into place, then `manifest.json` is created, last and
//! only if absent. A run that dies before that leaves no manifest.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dsproc_common::config::{MANIFEST_FILE, QUARANTINE_DIR};
use dsproc_common::DsprocError;
use dsproc_exec::{ReadStats, StepStats};
use dsproc_job::manifest::Manifest;

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
    pub workers: std::collections::BTreeSet<String>,
}

fn job_err(what: &str, path: &Path, e: impl std::fmt::Display) -> DsprocError {
    DsprocError::job(format!("{what} {}: {e}", path.display()))
}

fn parse_stats<T: serde::de::DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<T, DsprocError> {
    serde_json::from_slice(bytes).map_err(|e| job_err("bad stats file", path, e))
}

/// Sums the statistics files under `staging/_stats`.
pub fn read_stats(staging: &Path) -> Result<RunStats, DsprocError> {
    let dir = staging.join("_stats");
    let mut stats = RunStats::default();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stats),
        Err(e) => return Err(job_err("cannot read", &dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| job_err("cannot read", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = fs::read(entry.path()).map_err(|e| job_err("cannot read", &entry.path(), e))?;
        if name.starts_with("read-") {
            let s: ReadStats = parse_stats(&bytes, &entry.path())?;
            stats.read_rows += s.rows;
            stats.quarantined += s.quarantined;
            stats.ranges += 1;
            stats.workers.insert(s.worker);
        } else if name.starts_with("step-") {
            let s: StepStats = parse_stats(&bytes, &entry.path())?;
            *stats.step_rows.entry(s.step).or_default() += s.rows;
        } else if name.starts_with("write-") {
            stats.writers_done += 1;
        } else if name.starts_with("sums-") {
            let s: StepStats = parse_stats(&bytes, &entry.path())?;
            let sums = stats.step_sums.entry(s.step).or_default();
            for (k, v) in s.sums {
                *sums.entry(k).or_default() += v;
            }
        }
    }
    Ok(stats)
}

/// A staged shard and its committed name.
#[derive(Debug, Clone)]
pub struct StagedShard {
    pub staged: PathBuf,
    pub name: String,
}

/// Moves staged shards and quarantine files into `out`, then creates the
/// manifest. With `overwrite`, a previous dataset's manifest is removed first
/// (so readers never see a manifest over mixed files), then its files.
pub fn commit(
    out: &Path,
    staging: &Path,
    shards: &[StagedShard],
    manifest: &Manifest,
    overwrite: bool,
) -> Result<Vec<String>, DsprocError> {
    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        if !overwrite {
            return Err(DsprocError::job(format!(
                "{} appeared while the job ran (another job committed there); this run is not committed",
                manifest_path.display()
            )));
        }
        fs::remove_file(&manifest_path).map_err(|e| job_err("cannot remove", &manifest_path, e))?;
    }
    // Remove files of any earlier dataset (they are not referenced by a manifest any more).
    if let Ok(entries) = fs::read_dir(out) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("part-") || name == "index.json" {
                fs::remove_file(entry.path()).map_err(|e| job_err("cannot remove", &entry.path(), e))?;
            }
        }
    }
    let qdir = out.join(QUARANTINE_DIR);
    if qdir.exists() {
        fs::remove_dir_all(&qdir).map_err(|e| job_err("cannot remove", &qdir, e))?;
    }
    for s in shards {
        let to = out.join(&s.name);
        fs::rename(&s.staged, &to).map_err(|e| job_err("cannot move shard into place", &to, e))?;
    }
    let mut quarantine = Vec::new();
    let staged_q = staging.join(QUARANTINE_DIR);
    if let Ok(entries) = fs::read_dir(&staged_q) {
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        fs::create_dir_all(&qdir).map_err(|e| job_err("cannot create", &qdir, e))?;
        for n in names.into_iter().filter(|n| n.ends_with(".jsonl")) {
            fs::rename(staged_q.join(&n), qdir.join(&n)).map_err(|e| job_err("cannot move", &qdir.join(&n), e))?;
            quarantine.push(format!("{QUARANTINE_DIR}/{n}"));
        }
    }
    let mut manifest = manifest.clone();
    manifest.quarantine = quarantine.clone();
    write_manifest(out, &manifest)?;
    let _ = fs::remove_dir_all(staging);
    // The staging root is removed when no other run is using it.
    if let Some(root) = staging.parent() {
        let _ = fs::remove_dir(root);
    }
    Ok(quarantine)
}

/// Creates `manifest.json` atomically and only if it does not exist.
fn write_manifest(out: &Path, manifest: &Manifest) -> Result<(), DsprocError> {
    let path = out.join(MANIFEST_FILE);
    let tmp = out.join(format!(".{MANIFEST_FILE}.{}", manifest.run_id));
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| DsprocError::job(format!("manifest: {e}")))?;
    {
        let mut f = fs::File::create(&tmp).map_err(|e| job_err("cannot write", &tmp, e))?;
        f.write_all(&body)
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(|e| job_err("cannot write", &tmp, e))?;
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DsprocError::job(format!("{} already exists: another job committed first", path.display()))
        } else {
            job_err("cannot write", &path, e)
        }
    })
}

/// Reads the manifest of a committed dataset.
pub fn read_manifest(out: &Path) -> Result<Option<Manifest>, DsprocError> {
    let path = out.join(MANIFEST_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| job_err("invalid manifest", &path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(job_err("cannot read", &path, e)),
    }
}

/// Moves a `dedup_minhash` step's saved band keys (`staging/_index/keys-STEP-*`)
/// into `dir` and writes `dir/index.json` naming them; key files of an earlier
/// index there are removed after the new `index.json` is in place.
pub fn commit_index(
    staging: &Path,
    step: usize,
    dir: &Path,
    info: Option<&serde_json::Value>,
    manifest: &Manifest,
) -> Result<(), DsprocError> {
    use dsproc_job::ops::dedup_minhash::{SavedIndex, INDEX_FILE};
    let info = info.ok_or_else(|| DsprocError::job("internal: save_index without step info"))?;
    let params: dsproc_functions::minhash::MinHashParams = serde_json::from_value(serde_json::json!({
        "num_perm": info["num_perm"], "bands": info["bands"], "rows": info["rows"],
        "ngram": info["ngram"], "shingle": info["shingle"], "seed": info["seed"],
    }))
    .map_err(|e| DsprocError::job(format!("internal: index parameters: {e}")))?;
    fs::create_dir_all(dir).map_err(|e| job_err("cannot create", dir, e))?;
    let prefix = format!("keys-{step:03}-");
    let mut files = Vec::new();
    if let Ok(entries) = fs::read_dir(staging.join("_index")) {
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for n in names.into_iter().filter(|n| n.starts_with(&prefix) && n.ends_with(".parquet")) {
            let to = dir.join(&n);
            fs::rename(staging.join("_index").join(&n), &to).map_err(|e| job_err("cannot move index file", &to, e))?;
            files.push(n);
        }
    }
    let index = SavedIndex {
        signature_version: dsproc_functions::minhash::SIGNATURE_VERSION.to_string(),
        params,
        files: files.clone(),
        job: manifest.job_name.clone(),
        run_id: manifest.run_id.clone(),
        created_at: manifest.created_at.clone(),
    };
    let body = serde_json::to_vec_pretty(&index).map_err(|e| DsprocError::job(format!("index: {e}")))?;
    let path = dir.join(INDEX_FILE);
    let tmp = dir.join(format!(".{INDEX_FILE}.{}", manifest.run_id));
    fs::write(&tmp, body).and_then(|_| fs::rename(&tmp, &path)).map_err(|e| job_err("cannot write", &path, e))?;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("keys-") && n.ends_with(".parquet") && !files.contains(&n) {
                fs::remove_file(e.path()).map_err(|err| job_err("cannot remove", &e.path(), err))?;
            }
        }
    }
    Ok(())
}
