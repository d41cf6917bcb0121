//! The job spec. Parsing keeps positions: an unknown key, a wrong type or a bad
//! value is reported as `file:line:col`, with the key, the step and op, and the
//! nearest valid key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use dsproc_common::error::SpecLocation;
use dsproc_common::DsprocError;
use dsproc_io::read::OnError;
use dsproc_io::{InputFormat, OutputFormat, StorageOptions};

use crate::ops::{OpParseError, OpSpec};

/// `[input]`: the files the rows come from and how to read them.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Path, directory, glob or URL of the input files: `file://`, `s3://`,
    /// `gs://`, `az://`, `http(s)://` (one file; servers do not list).
    pub uri: String,
    /// `jsonl` | `parquet` | `csv` | `text`; default: from the first file's extension.
    #[serde(default)]
    pub format: Option<InputFormat>,
    /// Name of the text column (default `text`).
    #[serde(default = "default_text")]
    pub text: String,
    /// Name of the id column. Default: a stable `"<path relative to the glob root>:<line>"`.
    #[serde(default)]
    pub id: Option<String>,
    /// `quarantine` (default): bad rows go to `OUTPUT/_quarantine/`; `fail`: stop at the first.
    #[serde(default)]
    pub on_error: OnError,
    /// Store settings for `uri` (default: the standard environment variables).
    #[serde(default)]
    pub storage: Option<StorageSpec>,
    /// When `uri` names a dsproc dataset root: the version to read (default: the current one).
    #[serde(default)]
    pub version: Option<u64>,
    /// JSONL: declared column types, column → `string` | `int64` | `float64` |
    /// `bool` | `json` (the recommended way in production). A value that does not
    /// fit its declared type is quarantined with file, line, column and reason,
    /// never coerced. Without it, every line of every file is read once for its
    /// keys and each column gets the narrowest type that holds all its values
    /// (int → float → string; objects and arrays → `json`, kept as JSON text).
    #[serde(default)]
    pub schema: BTreeMap<String, dsproc_io::jsonscan::ColumnType>,
    /// JSONL keys not in `schema`: `keep` (default; their types are inferred from
    /// every file), `drop` (counted per key in the manifest's
    /// `extra_columns_dropped`) or `error` (the job fails naming file, line and key).
    #[serde(default)]
    pub extra_columns: dsproc_io::jsonscan::ExtraColumns,
    /// Largest row (JSONL line, CSV record, text file or text value), e.g.
    /// `"256MiB"` (the default). A larger row is quarantined with reason
    /// `too_large` and its size; its bytes are neither kept in memory nor copied.
    #[serde(default)]
    pub max_document_bytes: Option<String>,
    /// When `id` names a column (or the input is a dsproc dataset): what to do with
    /// rows whose id another row has. `error` (default): fail the job naming the
    /// id, since dedup and shard assignment rely on unique ids; `first`: keep the
    /// first occurrence in input order and drop the others (counted in the
    /// manifest as `0:input:duplicate_id`); `keep`: keep every row and only report.
    /// The manifest's `duplicate_ids` holds the count and up to 5 example ids.
    /// Default ids (`<path>:<line>`) are unique by construction and not checked.
    #[serde(default)]
    pub on_duplicate_id: OnDuplicateId,
    /// How an input file's fingerprint (the manifest's `inputs[].version`, which
    /// incremental rebuilds compare) is taken: `meta` (default: ETag, else
    /// modification time; no read) or `sha256` (the content's hash: every file is
    /// read once more per run, and a file rewritten with the same bytes counts as
    /// unchanged).
    #[serde(default)]
    pub fingerprint: Fingerprint,
}

/// `input.fingerprint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fingerprint {
    /// ETag, else modification time.
    #[default]
    Meta,
    /// sha256 of the content.
    Sha256,
}

impl InputSpec {
    /// `max_document_bytes` in bytes.
    pub fn max_document_bytes(&self) -> u64 {
        self.max_document_bytes
            .as_deref()
            .and_then(|s| dsproc_common::size::parse_size(s).ok())
            .unwrap_or(dsproc_common::config::DEFAULT_MAX_DOCUMENT_BYTES)
    }
}

/// `input.on_duplicate_id`: rows sharing an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicateId {
    /// Fail the job at the first duplicate id (the default).
    #[default]
    Error,
    /// Keep every row; only report the duplicates in the manifest.
    Keep,
    /// Keep the first occurrence in input order; drop the others as `duplicate_id`.
    First,
}

/// `[input.storage]` / `[output.storage]`: settings of an object store that
/// override the standard environment variables for this job. Secrets are never
/// written here: `env` names the environment variables that hold them, and each
/// process that opens the store (driver, executors) reads its own environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// Endpoint of an S3-compatible server, e.g. `"http://127.0.0.1:8333"`
    /// (default: `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (default: `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints (default: `AWS_ALLOW_HTTP`, else false).
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// Other non-secret object_store settings, e.g. `{ virtual_hosted_style_request = "true" }`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Settings read from environment variables: setting → variable name, e.g.
    /// `{ access_key_id = "PROD_S3_KEY", secret_access_key = "PROD_S3_SECRET" }`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl StorageSpec {
    /// The settings as carried in plans (values of `env` stay names).
    pub fn options(&self) -> StorageOptions {
        let mut options = self.options.clone();
        if let Some(e) = &self.endpoint {
            options.insert("endpoint".into(), e.clone());
        }
        if let Some(r) = &self.region {
            options.insert("region".into(), r.clone());
        }
        if let Some(a) = self.allow_http {
            options.insert("allow_http".into(), a.to_string());
        }
        StorageOptions { options, env: self.env.clone() }
    }

    /// Refuses literal secrets and `env` values that are not variable names.
    fn check(&self) -> Result<(), (String, String)> {
        for k in self.options.keys() {
            if dsproc_io::store::is_secret_key(k) {
                return Err((
                    format!("options.{k}"),
                    format!(
                        "secrets may not be written in a job spec; put the value in an environment variable and name it: env = {{ {k} = \"MY_VAR\" }}"
                    ),
                ));
            }
        }
        for (k, var) in &self.env {
            let name_like = !var.is_empty()
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !var.starts_with(|c: char| c.is_ascii_digit());
            if !name_like {
                return Err((
                    format!("env.{k}"),
                    "must be the NAME of an environment variable (letters, digits, _), not a value".into(),
                ));
            }
        }
        Ok(())
    }
}

impl StorageSpec {
    /// Checks every setting against the store `uri` names (see
    /// [`dsproc_io::store::check_setting`]): unknown keys, endpoints that are not
    /// http(s) URLs, bad region names. Returns the key (`endpoint`,
    /// `options.NAME`, `env.NAME`) and what is wrong.
    fn check_settings(&self, uri: &str) -> Result<(), (String, String)> {
        use dsproc_io::store::{check_endpoint, check_setting};
        let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_else(|| "file".into());
        if let Some(e) = &self.endpoint {
            check_endpoint(e).map_err(|m| ("endpoint".to_string(), m))?;
        }
        if let Some(r) = &self.region {
            check_setting("s3", "region", Some(r)).map_err(|m| ("region".to_string(), m))?;
        }
        for (k, v) in &self.options {
            check_setting(&scheme, k, Some(v)).map_err(|m| (format!("options.{k}"), m))?;
        }
        for k in self.env.keys() {
            check_setting(&scheme, k, None).map_err(|m| (format!("env.{k}"), m))?;
        }
        Ok(())
    }
}

/// The storage settings of an optional `storage` table.
pub fn storage_options(s: &Option<StorageSpec>) -> StorageOptions {
    s.as_ref().map(StorageSpec::options).unwrap_or_default()
}

fn default_text() -> String {
    "text".into()
}

/// What to do when the output already holds a committed dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Refuse to run (the default, like Spark's `errorifexists`).
    #[default]
    Error,
    /// Commit a new version on top of the current one (earlier versions stay, see `dsproc versions`).
    Overwrite,
}

/// `[output]`: where the dataset is committed and in which shard format.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Directory the dataset is committed to: a path, `file://`, `s3://`,
    /// `gs://` or `az://` URL.
    pub uri: String,
    /// `parquet` (zstd) | `jsonl` (zstd-compressed `.jsonl.zst`) | `megatron` (`.bin`/`.idx`
    /// pairs) | `mds` (MosaicML streaming); the last two store token ids and need a
    /// `tokenize` step.
    #[serde(default = "default_output_format")]
    pub format: OutputFormat,
    /// Target size of one shard file (B, KiB, MiB, GiB, KB, MB, GB), or tokens per
    /// shard: `"200M tokens"`.
    #[serde(default = "default_shard_size")]
    pub shard_size: String,
    /// Deterministic global shuffle: documents go to shards, and are ordered within a
    /// shard, by seeded hashes of their ids instead of by id. The same seed gives
    /// byte-identical shards; another seed another order of the same documents.
    #[serde(default)]
    pub shuffle_seed: Option<u64>,
    /// Pack documents into fixed-length sequences: `pack = { seq_len = 2048 }`.
    #[serde(default)]
    pub pack: Option<PackSpec>,
    /// `mds` only: `"zstd"` or `"zstd:LEVEL"` compresses each shard (`.mds.zstd`;
    /// streaming decompresses it on read). Default: uncompressed.
    #[serde(default)]
    pub compression: Option<String>,
    /// `error` (default) | `overwrite`: what to do if OUTPUT already has a dataset.
    #[serde(default)]
    pub mode: WriteMode,
    /// Incremental rebuilds (needs `mode = "overwrite"`): a run whose spec, input
    /// fingerprints and op versions equal the current version's commits nothing
    /// (`up to date: version N`); when files were only added, only they are read,
    /// deduplicated against the rows the current version keeps (a published row
    /// wins), and the new version lists the current one's shards beside its own;
    /// anything else rebuilds fully. The manifest's `incremental` says which and why.
    /// Each version also keeps its dedup steps' state (`vNNNNN/_state/`).
    #[serde(default)]
    pub incremental: bool,
    /// Store settings for `uri` (default: the standard environment variables).
    #[serde(default)]
    pub storage: Option<StorageSpec>,
}

fn default_output_format() -> OutputFormat {
    OutputFormat::Parquet
}
fn default_shard_size() -> String {
    dsproc_common::config::DEFAULT_SHARD_SIZE.into()
}

/// The top level of a spec file as deserialized; steps are checked per op.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    input: InputSpec,
    #[serde(default)]
    steps: Vec<toml::Table>,
    output: OutputSpec,
    #[serde(default)]
    schedule: Option<crate::schedule::ScheduleSpec>,
    #[serde(default)]
    checks: Vec<crate::checks::CheckSpec>,
}

/// A validated spec.
#[derive(Debug, Clone, Serialize)]
pub struct JobSpec {
    pub name: String,
    pub input: InputSpec,
    pub steps: Vec<OpSpec>,
    pub output: OutputSpec,
    /// `[schedule]`: when `dsproc schedule` rebuilds the job (`dsproc run` ignores it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::ScheduleSpec>,
    /// `[[checks]]`: what the new version must pass before it may become current.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::checks::CheckSpec>,
}

/// `output.pack`: documents (each ending in its EOS) are concatenated in shard
/// order and cut into sequences of `seq_len` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    /// Tokens per sequence.
    pub seq_len: u32,
}

/// A spec with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: JobSpec,
    /// Path of the spec file.
    pub path: String,
    /// Directory relative input/output paths are resolved against (the current directory).
    pub base: std::path::PathBuf,
    /// sha256 of the effective spec text (after `--set`).
    pub sha256: String,
}

impl LoadedSpec {
    /// Reads, applies `--set KEY=VALUE` overrides and validates a spec file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, DsprocError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path)
            .map_err(|e| DsprocError::usage(format!("cannot read job spec {file}: {e}")))?;
        let src = apply_overrides(&file, &src, overrides)?;
        let spec = parse(&file, &src)?;
        use sha2::Digest;
        let sha256 = hex::encode(sha2::Sha256::digest(src.as_bytes()));
        let base = std::env::current_dir().map_err(|e| DsprocError::usage(format!("current directory: {e}")))?;
        Ok(Self { spec, path: file, base, sha256 })
    }
}

/// Applies `KEY=VALUE` overrides (dotted paths; `steps.N.key` addresses step N,
/// counting from 0). VALUE is read as a TOML value when it parses as one, else
/// as a string.
pub fn apply_overrides(file: &str, src: &str, overrides: &[String]) -> Result<String, DsprocError> {
    if overrides.is_empty() {
        return Ok(src.to_string());
    }
    let mut doc: toml_edit::DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| syntax_error(file, src, &e))?;
    for o in overrides {
        let Some((key, value)) = o.split_once('=') else {
            return Err(DsprocError::usage(format!("--set {o:?}: expected KEY=VALUE")));
        };
        let value: toml_edit::Value = match format!("v = {value}").parse::<toml_edit::DocumentMut>() {
            Ok(d) => d["v"].as_value().cloned().unwrap_or_else(|| value.into()),
            Err(_) => value.into(),
        };
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(DsprocError::usage(format!("--set {key}: empty path component")));
        }
        set_table(doc.as_table_mut(), &parts, value)
            .map_err(|e| DsprocError::usage_source(format!("--set {key}"), e))?;
    }
    Ok(doc.to_string())
}

/// Why `--set` could not place a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("{0} is a list: index it with a number")]
    NotAnIndex(String),
    #[error("{key} has only {len} entries")]
    OutOfRange { key: String, len: usize },
    #[error("cannot replace a whole table")]
    WholeTable,
    #[error("{0} is not a table")]
    NotATable(String),
}

fn set_table(t: &mut toml_edit::Table, parts: &[&str], value: toml_edit::Value) -> Result<(), SetError> {
    if parts.len() == 1 {
        t[parts[0]] = toml_edit::Item::Value(value);
        return Ok(());
    }
    let child = t.entry(parts[0]).or_insert(toml_edit::Item::Table(toml_edit::Table::new()));
    match child {
        toml_edit::Item::Table(c) => set_table(c, &parts[1..], value),
        toml_edit::Item::ArrayOfTables(a) => {
            let idx: usize = parts[1].parse().map_err(|_| SetError::NotAnIndex(parts[0].to_string()))?;
            let len = a.len();
            let t = a.get_mut(idx).ok_or_else(|| SetError::OutOfRange { key: parts[0].to_string(), len })?;
            if parts.len() < 3 {
                return Err(SetError::WholeTable);
            }
            set_table(t, &parts[2..], value)
        }
        _ => Err(SetError::NotATable(parts[0].to_string())),
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn loc(file: &str, src: &str, span: Option<std::ops::Range<usize>>) -> SpecLocation {
    match span {
        Some(s) => {
            let (line, col) = line_col(src, s.start);
            SpecLocation { file: file.to_string(), line: Some(line), col: Some(col) }
        }
        None => SpecLocation { file: file.to_string(), line: None, col: None },
    }
}

impl LoadedSpec {
    /// Where `[table] key = "value"` is written in the spec file, for errors found
    /// after parsing. None when the file no longer parses, or holds another value
    /// (the effective one came from `--set`).
    pub fn key_location(&self, table: &str, key: &str, value: &str) -> Option<SpecLocation> {
        let src = std::fs::read_to_string(&self.path).ok()?;
        let doc = toml_edit::ImDocument::parse(src.as_str()).ok()?;
        let written = doc.as_table().get(table)?.as_table_like()?.get(key)?.as_str()?;
        if written != value {
            return None;
        }
        let span = key_span(&doc, &[table.to_string()], key)?;
        Some(loc(&self.path, &src, Some(span)))
    }
}

fn syntax_error(file: &str, src: &str, e: &toml_edit::TomlError) -> DsprocError {
    DsprocError::spec(loc(file, src, e.span()), format!("invalid TOML: {}", e.message()))
}

/// The nearest candidate to `word`, when it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" / "expected `a`".
fn unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.split("unknown field `").nth(1)?;
    let (field, tail) = rest.split_once('`')?;
    let expected: Vec<String> = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((field.to_string(), expected))
}

/// Parses serde's "unknown variant `x`, expected one of `a`, `b`" / "expected `a`".
fn unknown_variant(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.split("unknown variant `").nth(1)?;
    let (value, tail) = rest.split_once('`')?;
    let expected: Vec<String> = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((value.to_string(), expected))
}

/// The span of `key` inside the table at `path` (e.g. `["input"]`).
fn key_span(doc: &toml_edit::ImDocument<&str>, path: &[String], key: &str) -> Option<std::ops::Range<usize>> {
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    for p in path {
        table = table.get(p)?.as_table_like()?;
    }
    let (k, v) = table.get_key_value(key)?;
    k.span().or_else(|| v.span())
}

fn step_key_span(doc: &toml_edit::ImDocument<&str>, step: usize, key: &str) -> Option<std::ops::Range<usize>> {
    let steps = doc.as_table().get("steps")?.as_array_of_tables()?;
    let t = steps.get(step)?;
    match t.get_key_value(key) {
        Some((k, v)) => k.span().or_else(|| v.span()),
        None => t.span(),
    }
}

fn check_key_span(doc: &toml_edit::ImDocument<&str>, check: usize, key: &str) -> Option<std::ops::Range<usize>> {
    let t = doc.as_table().get("checks")?.as_array_of_tables()?.get(check)?;
    match t.get_key_value(key) {
        Some((k, v)) => k.span().or_else(|| v.span()),
        None => t.span(),
    }
}

/// Parses and validates spec text.
pub fn parse(file: &str, src: &str) -> Result<JobSpec, DsprocError> {
    let doc = toml_edit::ImDocument::parse(src).map_err(|e| syntax_error(file, src, &e))?;
    let raw: RawSpec = toml::from_str(src).map_err(|e| {
        let msg = e.message().to_string();
        let mut span = e.span();
        let mut message = msg.clone();
        if let Some((field, expected)) = unknown_field(&msg) {
            // Find the key: at the top level or in [input]/[output].
            let tables = [
                vec![],
                vec!["input".to_string()],
                vec!["output".to_string()],
                vec!["input".to_string(), "storage".to_string()],
                vec!["output".to_string(), "storage".to_string()],
                vec!["schedule".to_string()],
            ];
            for path in tables {
                if let Some(s) = key_span(&doc, &path, &field) {
                    span = Some(s);
                    let table =
                        if path.is_empty() { "the top level".to_string() } else { format!("[{}]", path.join(".")) };
                    message = format!("unknown key `{field}` in {table}");
                    break;
                }
            }
            if let Some(n) = nearest(&field, expected.iter().map(String::as_str)) {
                message.push_str(&format!("; did you mean `{n}`?"));
            } else if !expected.is_empty() {
                message.push_str(&format!("; valid keys: {}", expected.join(", ")));
            }
        } else if let Some((value, expected)) = unknown_variant(&msg) {
            // A bad value of an [input]/[output] setting (a schema type, a format).
            if let Some(n) = nearest(&value, expected.iter().map(String::as_str)) {
                message = format!("{value:?} is not valid; did you mean `{n}`? valid: {}", expected.join(", "));
            }
        }
        DsprocError::spec(loc(file, src, span), message)
    })?;
    if raw.name.is_empty()
        || !raw.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        let span = key_span(&doc, &[], "name");
        return Err(DsprocError::spec(loc(file, src, span), format!("name {:?} must match [a-z0-9_-]+", raw.name)));
    }
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, table) in raw.steps.into_iter().enumerate() {
        let at = |key: &str| loc(file, src, step_key_span(&doc, i, key));
        let op = match table.get("op") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(DsprocError::spec(at("op"), format!("step {}: `op` must be a string", i + 1))),
            None => return Err(DsprocError::spec(at("op"), format!("step {}: missing key `op`", i + 1))),
        };
        let bad_value_key = |value: &str| {
            table.iter().find_map(|(k, v)| {
                let hit = match v {
                    toml::Value::String(s) => s == value,
                    toml::Value::Array(a) => a.iter().any(|x| x.as_str() == Some(value)),
                    _ => false,
                };
                hit.then(|| k.clone())
            })
        };
        let table_copy = table.clone();
        let step = OpSpec::from_table(&op, table_copy).map_err(|e| match e {
            OpParseError::UnknownOp { valid } => {
                let hint = nearest(&op, valid.iter().copied())
                    .map(|n| format!("did you mean `{n}`?"))
                    .unwrap_or_else(|| format!("valid ops: {}", valid.join(", ")));
                DsprocError::spec(at("op"), format!("step {} : unknown op `{op}`; {hint}", i + 1))
            }
            OpParseError::Serde(msg) => {
                if let Some((field, expected)) = unknown_field(&msg) {
                    let hint = nearest(&field, expected.iter().map(String::as_str))
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_else(|| format!("; valid keys: op, {}", expected.join(", ")));
                    DsprocError::spec(at(&field), format!("step {} ({op}): unknown key `{field}`{hint}", i + 1))
                } else if let Some((value, expected)) = unknown_variant(&msg) {
                    let key = bad_value_key(&value).unwrap_or_else(|| "op".into());
                    let hint = nearest(&value, expected.iter().map(String::as_str))
                        .map(|n| format!("did you mean `{n}`? "))
                        .unwrap_or_default();
                    DsprocError::spec(
                        at(&key),
                        format!(
                            "step {} ({op}): {key}: {value:?} is not valid; {hint}valid: {}",
                            i + 1,
                            expected.join(", ")
                        ),
                    )
                } else {
                    let key = msg.split("for key `").nth(1).and_then(|r| r.split('`').next()).unwrap_or("op");
                    DsprocError::spec(at(key), format!("step {} ({op}): {msg}", i + 1))
                }
            }
            OpParseError::Invalid { key, message } => {
                DsprocError::spec(at(&key), format!("step {} ({op}): {key}: {message}", i + 1))
            }
        })?;
        steps.push(step);
    }
    let spec = JobSpec {
        name: raw.name,
        input: raw.input,
        steps,
        output: raw.output,
        schedule: raw.schedule,
        checks: raw.checks,
    };
    for (i, c) in spec.checks.iter().enumerate() {
        if let Err((key, message)) = c.check() {
            let span = check_key_span(&doc, i, &key);
            return Err(DsprocError::spec(
                loc(file, src, span),
                format!("check {} ({}): {key}: {message}", i + 1, c.kind()),
            ));
        }
    }
    if let Some(Err((key, message))) = spec.schedule.as_ref().map(crate::schedule::ScheduleSpec::check) {
        let span = key_span(&doc, &["schedule".to_string()], &key);
        return Err(DsprocError::spec(loc(file, src, span), format!("schedule.{key}: {message}")));
    }
    for (table, storage) in [("input", &spec.input.storage), ("output", &spec.output.storage)] {
        if let Some(Err((key, message))) = storage.as_ref().map(StorageSpec::check) {
            let (sub, leaf) = key.split_once('.').unwrap_or(("", key.as_str()));
            let path = vec![table.to_string(), "storage".to_string(), sub.to_string()];
            let span = key_span(&doc, &path, leaf).or_else(|| key_span(&doc, &path[..2], sub));
            return Err(DsprocError::spec(loc(file, src, span), format!("{table}.storage.{key}: {message}")));
        }
    }
    for (table, uri, storage) in
        [("input", &spec.input.uri, &spec.input.storage), ("output", &spec.output.uri, &spec.output.storage)]
    {
        let Some(storage) = storage else { continue };
        if let Err((key, message)) = storage.check_settings(uri) {
            let (sub, leaf) = key.split_once('.').unwrap_or(("", key.as_str()));
            let path: Vec<String> =
                [table, "storage", sub].iter().filter(|p| !p.is_empty()).map(|p| p.to_string()).collect();
            let span = key_span(&doc, &path, leaf)
                .or_else(|| key_span(&doc, &path[..2], sub))
                .or_else(|| key_span(&doc, &[table.to_string()], "storage"));
            return Err(DsprocError::spec(loc(file, src, span), format!("{table}.storage.{key}: {message}")));
        }
    }
    if spec
        .output
        .uri
        .split_once("://")
        .is_some_and(|(s, _)| matches!(s.to_ascii_lowercase().as_str(), "http" | "https"))
    {
        let span = key_span(&doc, &["output".to_string()], "uri");
        return Err(DsprocError::spec(
            loc(file, src, span),
            "output.uri: http(s):// is read-only; write to a path, s3://, gs:// or az://".to_string(),
        ));
    }
    if let Err(e) = dsproc_common::size::parse_shard_size(&spec.output.shard_size) {
        let span = key_span(&doc, &["output".to_string()], "shard_size");
        return Err(DsprocError::spec(loc(file, src, span), format!("output.shard_size: {e}")));
    }
    if let Some(Err(e)) = spec.input.max_document_bytes.as_deref().map(dsproc_common::size::parse_size) {
        let span = key_span(&doc, &["input".to_string()], "max_document_bytes");
        return Err(DsprocError::spec(loc(file, src, span), format!("input.max_document_bytes: {e}")));
    }
    if let Some(t) = spec.input.schema.get(&spec.input.text).filter(|t| **t != dsproc_io::jsonscan::ColumnType::String)
    {
        let span = key_span(&doc, &["input".to_string(), "schema".to_string()], &spec.input.text);
        return Err(DsprocError::spec(
            loc(file, src, span),
            format!("input.schema.{}: the text column is declared {t}; it must be \"string\"", spec.input.text),
        ));
    }
    if !spec.input.schema.is_empty() && matches!(spec.input.format, Some(f) if f != InputFormat::Jsonl) {
        let span = key_span(&doc, &["input".to_string()], "schema");
        return Err(DsprocError::spec(
            loc(file, src, span),
            "input.schema: only JSONL inputs take a declared schema (Parquet files carry theirs; CSV columns are strings)"
                .to_string(),
        ));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "t"
[input]
uri = "x/*.jsonl"
[[steps]]
op = "normalize"
[[steps]]
op = "filter"
where = "length(text) > 3"
[output]
uri = "out"
"#;

    #[test]
    fn parses_a_good_spec() {
        let s = parse("j.toml", GOOD).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.input.text, "text");
    }

    #[test]
    fn misspelled_step_key_names_line_key_and_suggestion() {
        let src = GOOD.replace("where =", "wher =");
        let e = parse("j.toml", &src).unwrap_err().to_string();
        assert!(e.starts_with("j.toml:8:1:"), "{e}");
        assert!(e.contains("`wher`") && e.contains("did you mean `where`"), "{e}");
    }

    #[test]
    fn misspelled_input_key() {
        let src = GOOD.replace("uri = \"x/", "url = \"x/");
        let e = parse("j.toml", &src).unwrap_err().to_string();
        assert!(e.starts_with("j.toml:3:1:"), "{e}");
        assert!(e.contains("`url`") && e.contains("did you mean `uri`"), "{e}");
        let e = parse("j.toml", &GOOD.replace("[input]\n", "[input.schema]\ntext = \"strin\"\n[input]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"strin\" is not valid; did you mean `string`?") && e.contains("int64"), "{e}");
    }

    #[test]
    fn unknown_op_and_bad_type() {
        let e = parse("j.toml", &GOOD.replace("\"normalize\"", "\"normalise\"")).unwrap_err().to_string();
        assert!(e.contains("j.toml:5:") && e.contains("did you mean `normalize`"), "{e}");
        let e = parse("j.toml", &GOOD.replace("uri = \"out\"", "uri = 3")).unwrap_err().to_string();
        assert!(e.contains("j.toml:10:"), "{e}");
    }

    #[test]
    fn unknown_option_value_names_line_key_and_nearest_value() {
        let src = GOOD.replace("op = \"normalize\"\n", "op = \"normalize\"\nform = \"nfkd\"\n");
        let e = parse("j.toml", &src).unwrap_err().to_string();
        assert!(e.starts_with("j.toml:6:1:"), "{e}");
        assert!(e.contains("step 1 (normalize): form:") && e.contains("did you mean `nfkc`"), "{e}");
        let src = GOOD.replace("op = \"normalize\"\n", "op = \"scrub_pii\"\nkinds = [\"email\", \"iabn\"]\n");
        let e = parse("j.toml", &src).unwrap_err().to_string();
        assert!(e.starts_with("j.toml:6:1:") && e.contains("kinds:") && e.contains("did you mean `iban`"), "{e}");
        let src = GOOD.replace("op = \"normalize\"\n", "op = \"dedup_minhash\"\nshingle = \"words\"\n");
        let e = parse("j.toml", &src).unwrap_err().to_string();
        assert!(e.contains("shingle:") && e.contains("did you mean `word`") && e.contains("valid: word, char"), "{e}");
    }

    #[test]
    fn storage_secrets_are_named_not_written() {
        let with = |t: &str| format!("{GOOD}[output.storage]\n{t}\n");
        let ok = parse(
            "j.toml",
            &with("endpoint = \"http://127.0.0.1:8333\"\nallow_http = true\nenv = { access_key_id = \"MY_KEY\" }"),
        )
        .unwrap();
        let o = storage_options(&ok.output.storage);
        assert_eq!(o.options["endpoint"], "http://127.0.0.1:8333");
        assert_eq!(o.env["access_key_id"], "MY_KEY");
        let e = parse("j.toml", &with("options = { secret_access_key = \"abc\" }")).unwrap_err().to_string();
        assert!(e.starts_with("j.toml:12:") && e.contains("may not be written"), "{e}");
        let e =
            parse("j.toml", &with("env = { secret_access_key = \"wJalr/XUtnFEMI+K7MDENG\" }")).unwrap_err().to_string();
        assert!(e.contains("output.storage.env.secret_access_key") && e.contains("NAME"), "{e}");
        let e = parse("j.toml", &with("endpont = \"x\"")).unwrap_err().to_string();
        assert!(e.contains("[output.storage]") && e.contains("did you mean `endpoint`"), "{e}");
    }

    #[test]
    fn overrides() {
        let src =
            apply_overrides("j", GOOD, &["output.uri=/tmp/o".into(), "steps.1.where=length(text) > 9".into()]).unwrap();
        let s = parse("j", &src).unwrap();
        assert_eq!(s.output.uri, "/tmp/o");
        assert!(format!("{:?}", s.steps[1]).contains("length(text) > 9"));
    }
}
