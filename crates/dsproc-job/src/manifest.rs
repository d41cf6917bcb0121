//! `manifest.json`: the commit marker of a dataset, written last.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub dsproc_version: String,
    /// The dataset version this manifest describes (1, 2, …); 0 in manifests
    /// written before versions existed.
    #[serde(default)]
    pub version: u64,
    /// The version that was current when this one was committed (None for the first).
    #[serde(default)]
    pub parent_version: Option<u64>,
    /// `current`, `superseded`, `rejected` or `expired`. `_versions/N.json` records
    /// the status at commit (`current`); later changes are in `_history/`, and
    /// readers report the status derived from both.
    #[serde(default = "default_status")]
    pub status: String,
    pub job_name: String,
    /// sha256 of the effective spec text (after `--set`).
    pub spec_sha256: String,
    /// Content hash of spec + input fingerprints + op versions: equal versions mean
    /// equal data.
    pub dataset_version: String,
    pub created_at: String,
    pub run_id: String,
    /// `local` or `ballista`.
    pub engine: String,
    pub format: String,
    pub inputs: Vec<ManifestInput>,
    pub shards: Vec<ManifestShard>,
    /// Token ids in the whole dataset (datasets with a `tokens` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    pub rows: RowCounts,
    pub steps: Vec<StepReport>,
    /// Quarantine files, relative to the dataset root.
    pub quarantine: Vec<String>,
    /// Hash family of ids → shards and exact dedup.
    pub hash_family: String,
    pub buckets: u32,
    pub elapsed_s: f64,
    /// Processes that read the input (`pid N@host`): the driver in local mode,
    /// the executors on a cluster.
    #[serde(default)]
    pub workers: Vec<String>,
    /// Op versions that went into `dataset_version` (lineage).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub op_versions: BTreeMap<String, u32>,
    /// The dsproc dataset this job read, when `input.uri` named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_dataset: Option<InputDataset>,
    /// Runs with `output.incremental`: how this version was built,
    /// `{"mode": "full", "reason": …}` (with what changed since the parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<serde_json::Value>,
    /// Side files of the version (e.g. `dedup_minhash` saved indexes), relative to
    /// the dataset root; kept and expired with the version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side_files: Vec<String>,
    /// Columns of the shards (lineage schema facets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<Column>,
    /// Columns of the input as read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_schema: Vec<Column>,
    /// Values of input keys outside the declared `[input.schema]` that were
    /// dropped (`input.extra_columns = "drop"`), per key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_columns_dropped: BTreeMap<String, u64>,
    /// Duplicate ids of a named id column (`input.on_duplicate_id`), when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_ids: Option<DuplicateIds>,
    /// `[[checks]]` results: {check, name, severity, passed, values, threshold, …}.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<serde_json::Value>,
}

/// What the duplicate-id check of a named `input.id` column found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DuplicateIds {
    /// `error`, `keep` or `first`.
    pub on_duplicate_id: String,
    /// Distinct ids more than one row has.
    pub ids: u64,
    /// Rows beyond the first of each such id (dropped with `first`).
    pub rows: u64,
    /// Up to 5 of those ids (the smallest), with how many rows have each.
    pub examples: Vec<DuplicateIdExample>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DuplicateIdExample {
    pub id: String,
    pub rows: u64,
}

/// A column name and its Arrow type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

fn default_status() -> String {
    "current".to_string()
}

/// The dsproc dataset a job read (`input.uri` naming a dataset root).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputDataset {
    /// The dataset root as given.
    pub uri: String,
    /// The version read.
    pub version: u64,
    /// That version's `dataset_version` content hash.
    pub dataset_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestInput {
    pub uri: String,
    pub bytes: u64,
    /// etag or mtime.
    pub version: String,
}

impl Manifest {
    /// Shard files holding rows (not Megatron `.idx` companions or MDS `index.json`).
    pub fn data_shards(&self) -> usize {
        let ext = format!(".{}", self.format);
        self.shards.iter().filter(|s| s.path.ends_with(&ext) || s.path.ends_with(&format!("{ext}.zstd"))).count()
    }

    /// Token ids in the dataset, when its rows carry tokens.
    pub fn tokens(&self) -> Option<u64> {
        self.tokens.or_else(|| self.shards.iter().filter_map(|s| s.tokens).reduce(|a, b| a + b))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestShard {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// Token ids in the shard (datasets with a `tokens` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Packed sequences in the shard (`output.pack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<u64>,
    /// Uncompressed size of a compressed shard (zstd MDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RowCounts {
    #[serde(rename = "in")]
    pub rows_in: u64,
    pub out: u64,
    pub quarantined: u64,
    /// `"<step>:<op>:<reason>"` → rows.
    pub dropped: BTreeMap<String, u64>,
    /// Rows a step added, `"<step>:<op>:<reason>"` → rows (e.g. documents split by
    /// `tokenize` with `overflow = "split"`). Invariant: in + added = out + quarantined + dropped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub added: BTreeMap<String, u64>,
    /// Rows of the parent version kept by an incremental version (its shards are
    /// listed, not copied). Absent in full builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<u64>,
    /// Rows of the parent version an incremental version leaves out, by reason
    /// (`file_removed`, `file_changed`). Present with `carried`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<BTreeMap<String, u64>>,
}

impl RowCounts {
    /// `in + sum(added) + carried == out + quarantined + sum(dropped) + sum(removed)`.
    pub fn balanced(&self) -> bool {
        let removed: u64 = self.removed.iter().flat_map(|r| r.values()).sum();
        self.rows_in + self.added.values().sum::<u64>() + self.carried.unwrap_or(0)
            == self.out + self.quarantined + self.dropped.values().sum::<u64>() + removed
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub op: String,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Op counters (e.g. `scrub_pii`: detections per kind).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    /// Op parameters that decide its output (e.g. `dedup_minhash`'s signature
    /// version, hash family, seed, shingling and band layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// Versions of the reader and the shard writer (the ops' own come from the registry).
pub const READ_VERSION: u32 = 2;
pub const WRITE_VERSION: u32 = 1;

/// Versions that go into `dataset_version`: the reader, every registered op (its
/// [`Op::VERSION`](crate::ops::Op::VERSION)), the writer, in that order.
pub fn op_versions() -> Vec<(&'static str, u32)> {
    let mut v = vec![("read", READ_VERSION)];
    v.extend(crate::ops::OPS.iter().map(|o| (o.name, o.version)));
    v.push(("write", WRITE_VERSION));
    v
}
