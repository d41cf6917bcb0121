//! Incremental builds (`output.incremental` / `--incremental`).
//!
//! A run compares each input file's fingerprint (URI, size, ETag or mtime) with
//! the current version's record:
//! - nothing changed: nothing is committed (`up to date: version N`);
//! - files were only added, and the current version was built with incremental
//!   state: only the new files are read. Their rows go through the steps; the
//!   dedup steps compare them with the state the current version keeps (content
//!   hashes; MinHash band keys and shingle sets; ids of a named id column), and a
//!   published row wins. The new version lists the current version's shards (no
//!   copy) beside the new ones, and its state files beside its own;
//! - anything else (spec, op versions, a step's inputs such as the tokenizer
//!   file, removed or changed files, a step that combines rows, new columns)
//!   rebuilds fully, and the manifest says why.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use dsproc_common::config::STATE_DIR;
use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::manifest::{Column, Manifest, ManifestInput};
use dsproc_job::{LoadedSpec, LoweredJob};

/// What an incremental run does.
#[derive(Debug)]
pub enum Plan {
    /// Nothing changed since this (current) version.
    UpToDate(Box<Manifest>),
    /// Rebuild everything, for this reason.
    Full(String),
    /// Read the added files only, on top of the parent.
    Incremental(Box<Parent>),
}

/// The version an incremental build adds to.
#[derive(Debug, Clone)]
pub struct Parent {
    pub manifest: Manifest,
    /// URIs of the files to read (added since the parent).
    pub read: BTreeSet<String>,
    /// Every input file now: the new version's `inputs`.
    pub inputs: Vec<ManifestInput>,
}

/// A step's manifest facts as they decide its output: the encoder a tokenizer
/// runs with is left out (the fast encoder and the tokenizers crate give the
/// same ids, checked at load).
fn comparable(info: Option<serde_json::Value>) -> Option<serde_json::Value> {
    let mut info = info?;
    if let Some(o) = info.as_object_mut() {
        o.remove("encoder");
        o.remove("encoder_fallback_reason");
    }
    Some(info)
}

/// Each step's facts (e.g. the tokenizer file's sha256), in step order.
pub fn step_infos(loaded: &LoadedSpec) -> Vec<Option<serde_json::Value>> {
    loaded.spec.steps.iter().map(|op| comparable(op.info(&loaded.base))).collect()
}

/// The content hash `dataset_version`: spec + input fingerprints + op versions
/// + the steps' facts (a changed tokenizer file changes it).
pub fn dataset_version(spec_sha256: &str, inputs: &[ManifestInput], infos: &[Option<serde_json::Value>]) -> String {
    let mut h = Sha256::new();
    h.update(spec_sha256.as_bytes());
    for i in inputs {
        h.update(format!("{}|{}|{}\n", i.uri, i.bytes, i.version).as_bytes());
    }
    for (op, v) in dsproc_job::manifest::op_versions() {
        h.update(format!("{op}={v}\n").as_bytes());
    }
    for (i, info) in infos.iter().enumerate() {
        if let Some(info) = info {
            h.update(format!("step {}: {info}\n", i + 1).as_bytes());
        }
    }
    hex::encode(h.finalize())
}

pub fn manifest_inputs(store_url: &str, files: &[dsproc_io::InputFile]) -> Vec<ManifestInput> {
    files
        .iter()
        .map(|f| ManifestInput {
            uri: dsproc_io::store::uri_of(store_url, &f.path),
            bytes: f.size,
            version: f.version.clone(),
        })
        .collect()
}

/// Decides what an incremental run does, from the current version's manifest
/// and a listing of the input (no file is read).
pub async fn decide(loaded: &LoadedSpec, out: &Location) -> Result<Plan, DsprocError> {
    let Some(current) = crate::commit::read_manifest(out).await? else {
        return Ok(Plan::Full("no current version".into()));
    };
    let (location, files, _) = dsproc_job::lower::fingerprinted_input_files(loaded, None).await?;
    let inputs = manifest_inputs(&location.store_url, &files);
    let infos = step_infos(loaded);
    if dataset_version(&loaded.sha256, &inputs, &infos) == current.dataset_version {
        return Ok(Plan::UpToDate(Box::new(current)));
    }
    let v = current.version;
    if loaded.sha256 != current.spec_sha256 {
        return Ok(Plan::Full(format!("the spec changed since version {v}")));
    }
    let ops: BTreeMap<String, u32> =
        dsproc_job::manifest::op_versions().iter().map(|(op, v)| (op.to_string(), *v)).collect();
    if !current.op_versions.is_empty() && ops != current.op_versions {
        return Ok(Plan::Full(format!("op versions changed since version {v}")));
    }
    for (i, info) in infos.iter().enumerate() {
        let before = current.steps.get(i).and_then(|s| comparable(s.info.clone()));
        if &before != info {
            let op = loaded.spec.steps[i].name();
            return Ok(Plan::Full(format!(
                "step {} ({op}) changed since version {v} (its inputs, e.g. a tokenizer file, differ)",
                i + 1
            )));
        }
    }
    let before: BTreeMap<&str, &ManifestInput> = current.inputs.iter().map(|i| (i.uri.as_str(), i)).collect();
    let now: BTreeMap<&str, &ManifestInput> = inputs.iter().map(|i| (i.uri.as_str(), i)).collect();
    let added: Vec<&str> = now.keys().filter(|u| !before.contains_key(*u)).copied().collect();
    let removed: Vec<&str> = before.keys().filter(|u| !now.contains_key(*u)).copied().collect();
    let changed: Vec<&str> =
        now.iter().filter(|(u, i)| before.get(*u).is_some_and(|b| b != *i)).map(|(u, _)| *u).collect();
    let what = format!(
        "input files changed since version {v}: {} added, {} removed, {} changed",
        added.len(),
        removed.len(),
        changed.len()
    );
    if !removed.is_empty() || !changed.is_empty() {
        let names: Vec<&str> = removed.iter().chain(&changed).take(3).copied().collect();
        return Ok(Plan::Full(format!(
            "{what} ({}{}): their rows are spread over version {v}'s shards, and a removed survivor's dropped duplicates would come back, so everything is rebuilt",
            names.join(", "),
            if removed.len() + changed.len() > 3 { ", …" } else { "" }
        )));
    }
    if added.is_empty() {
        return Ok(Plan::Full(format!("the dataset version differs from version {v}'s")));
    }
    if current.incremental.is_none() {
        return Ok(Plan::Full(format!(
            "{what}; version {v} keeps no incremental state (it was built without incremental)"
        )));
    }
    let read = added.iter().map(|u| u.to_string()).collect();
    Ok(Plan::Incremental(Box::new(Parent { manifest: current, read, inputs })))
}

/// The state files a version lists (its own and those it carried), by step.
pub fn state_files(out: &Location, m: &Manifest) -> BTreeMap<usize, Vec<Location>> {
    let mut by_step: BTreeMap<usize, Vec<Location>> = BTreeMap::new();
    for f in &m.side_files {
        let Some((_, rest)) = f.split_once(&format!("/{STATE_DIR}/step-")) else { continue };
        let Some((step, name)) = rest.split_once('/') else { continue };
        let (Ok(step), true) = (step.parse::<usize>(), name.ends_with(".parquet")) else { continue };
        by_step.entry(step).or_default().push(out.join(f));
    }
    by_step
}

/// Why a lowered incremental build cannot stand on `parent` (then the run
/// rebuilds fully), if so.
pub fn blocker(job: &LoweredJob, parent: &Manifest, columns: &[Column]) -> Option<String> {
    if let Some(why) = &job.incremental_blocker {
        return Some(why.clone());
    }
    if parent.schema.is_empty() || parent.schema.as_slice() == columns {
        return None;
    }
    let shown = |c: &[Column]| c.iter().map(|c| format!("{} {}", c.name, c.data_type)).collect::<Vec<_>>().join(", ");
    Some(format!(
        "the new files' rows have other columns than version {}'s shards (now: {}; version {}: {})",
        parent.version,
        shown(columns),
        parent.version,
        shown(&parent.schema)
    ))
}

/// The state files this run wrote into its version, relative to the dataset root.
pub async fn written_state(version_dir: &Location, version_rel: &str) -> Result<Vec<String>, DsprocError> {
    let dir = version_dir.join(STATE_DIR);
    let mut files: Vec<String> = dir
        .list()
        .await
        .map_err(DsprocError::job)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("step-") && n.ends_with(".parquet"))
        .map(|n| format!("{version_rel}/{STATE_DIR}/{n}"))
        .collect();
    files.sort();
    Ok(files)
}
