//! Test helpers.

use std::path::{Path, PathBuf};

use dsproc_job::manifest::Manifest;
use dsproc_job::LoadedSpec;
use dsproc_runtime::{Engine, EngineOptions, RunOptions};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Writes `spec` to `dir/job.toml` and loads it.
pub fn load(dir: &Path, spec: &str) -> LoadedSpec {
    let p = dir.join("job.toml");
    std::fs::write(&p, spec).unwrap();
    LoadedSpec::load(&p, &[]).unwrap()
}

pub async fn run(loaded: &LoadedSpec, engine: Engine, partitions: usize) -> Result<Manifest, String> {
    let opts = RunOptions {
        engine,
        engine_opts: EngineOptions { target_partitions: partitions, memory_limit: None, batch_rows: None },
        progress: false,
        timeout: Some(std::time::Duration::from_secs(300)),
        lineage_url: None,
        incremental: false,
    };
    dsproc_runtime::run_job(loaded, &opts).await.map(|s| s.manifest).map_err(|e| e.to_string())
}

/// (path, sha256) of every shard: equal lists mean byte-identical datasets.
pub fn shard_digests(m: &Manifest) -> Vec<(String, String)> {
    m.shards.iter().map(|s| (s.path.clone(), s.sha256.clone())).collect()
}

/// A job over `input` with `steps` (TOML `[[steps]]` blocks) writing to `out`.
pub fn job(input: &str, steps: &str, out: &Path, format: &str) -> String {
    format!(
        "name = \"t\"\n[input]\nuri = \"{input}\"\n\n{steps}\n[output]\nuri = \"{}\"\nformat = \"{format}\"\nshard_size = \"64KiB\"\nmode = \"overwrite\"\n",
        out.display()
    )
}

/// Reads every row of a committed JSONL.zst dataset as JSON values, in shard order.
pub fn read_jsonl_dataset(out: &Path, m: &Manifest) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for s in &m.shards {
        let bytes = std::fs::read(out.join(&s.path)).unwrap();
        let text = zstd::decode_all(bytes.as_slice()).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            rows.push(serde_json::from_slice(line).unwrap());
        }
    }
    rows
}

/// Writes a JSONL file of `n` synthetic docs with some duplicates and short ones.
pub fn synthetic_jsonl(path: &Path, n: usize) {
    use std::fmt::Write;
    let mut s = String::new();
    for i in 0..n {
        let text = match i % 7 {
            0 => "short".to_string(),
            1 | 2 => format!("duplicated document body number {} with enough length to pass filters", i % 5),
            3 => format!(
                "Caf\u{e9} cafe\u{301}  \r\n document {i} with trailing spaces   \nand more text to be long enough"
            ),
            _ => format!("document {i}: {}", "lorem ipsum dolor sit amet ".repeat(1 + i % 4)),
        };
        writeln!(s, "{}", serde_json::json!({"text": text, "source": format!("s{}", i % 3), "n": i})).unwrap();
    }
    std::fs::write(path, s).unwrap();
}

/// A multi-threaded runtime whose threads have dsproc's stack size: plans with
/// many rounds (dedup_minhash) are walked recursively. Futures are spawned, not
/// run on the (small-stack) test thread.
pub struct BigStack(tokio::runtime::Runtime);

pub fn big_stack_runtime() -> BigStack {
    BigStack(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_stack_size(dsproc_common::config::THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .unwrap(),
    )
}

impl BigStack {
    pub fn block_on<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        self.0.block_on(self.0.spawn(f)).unwrap()
    }
}

/// A test's prerequisite is missing: printed as SKIP on a developer's machine, a
/// failure under CI (`CI` set), where `scripts/test.sh` provides everything but
/// the optional torch-based readers.
pub fn skip(what: impl std::fmt::Display) {
    assert!(std::env::var_os("CI").is_none(), "missing prerequisite under CI (scripts/test.sh provides it): {what}");
    eprintln!("SKIP {what}");
}

/// `--set` overrides an example job in jobs/ needs on this machine: a `tokenize`
/// step's tokenizer comes from `DSPROC_TOKENIZERS` (scripts/fetch-tokenizers.sh),
/// a `langid` step's model from `DSPROC_MODELS` (scripts/fetch-models.sh).
/// None (with a printed SKIP) when the job cannot run here.
pub fn example_job_args(job: &Path) -> Option<Vec<String>> {
    let spec: toml::Table = std::fs::read_to_string(job).unwrap().parse().unwrap();
    let steps = spec.get("steps").and_then(|s| s.as_array()).cloned().unwrap_or_default();
    let mut args = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.get("op").and_then(|o| o.as_str()) == Some("tokenize") {
            let Some(dir) = std::env::var_os("DSPROC_TOKENIZERS") else {
                skip(format!("{}: DSPROC_TOKENIZERS is not set (scripts/test.sh sets it)", job.display()));
                return None;
            };
            let kind = if step.get("tokenizer").and_then(|t| t.as_str()).is_some_and(|t| t.contains("wordpiece")) {
                "wordpiece"
            } else {
                "bpe"
            };
            let tok = Path::new(&dir).join(kind).join("tokenizer.json");
            args.push("--set".to_string());
            args.push(format!("steps.{i}.tokenizer={}", tok.display()));
        }
        if step.get("op").and_then(|o| o.as_str()) == Some("langid") {
            let model = models_dir().join("lid.176.ftz");
            if !model.exists() {
                skip(format!("{}: {} is missing (scripts/fetch-models.sh)", job.display(), model.display()));
                return None;
            }
            args.push("--set".to_string());
            args.push(format!("steps.{i}.model={}", model.display()));
        }
    }
    Some(args)
}

/// Where scripts/fetch-models.sh put the model files (`DSPROC_MODELS`).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("DSPROC_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dsproc-ground/models"),
    }
}

/// Asserts that a local dataset root holds only committed versions: every file is
/// `manifest.json`, a version record, a history entry, or listed by a version
/// record; and every file the current manifest lists exists.
pub fn assert_only_versions(out: &Path) {
    let mut listed = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(out.join("_versions")).unwrap() {
        let m: Manifest = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        listed.extend(m.shards.iter().map(|s| s.path.clone()).chain(m.quarantine.iter().cloned()));
        listed.extend(m.side_files.iter().cloned());
    }
    let current: Manifest = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    for s in &current.shards {
        assert!(out.join(&s.path).is_file(), "{} is listed but missing", s.path);
    }
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(out).unwrap().to_string_lossy().into_owned();
            let known = rel == "manifest.json"
                || (rel.starts_with("_versions/") || rel.starts_with("_history/") || rel.starts_with("_runs/"))
                    && rel.ends_with(".json")
                || listed.contains(&rel);
            assert!(known, "{} holds {rel}, which no version lists", out.display());
        }
    }
}

/// JSONL documents of random lowercase words (compressible only to ~60%), so
/// the shard is large enough for a multipart upload.
pub fn random_docs(n: usize, words_per_doc: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..n {
        let mut text = String::new();
        for _ in 0..words_per_doc {
            let len = 3 + next() % 7;
            for _ in 0..len {
                text.push((b'a' + (next() % 26) as u8) as char);
            }
            text.push(' ');
        }
        out.extend_from_slice(
            serde_json::json!({"id": format!("doc-{seed}-{i:06}"), "text": text}).to_string().as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

/// Runs the dsproc binary in `dir`.
pub fn dsproc_at(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}
