//! `embedding_drift`: all-MiniLM-L6-v2 run in Rust equals an independent numpy
//! forward pass of the same safetensors on real documents; a version with 30% of
//! its documents replaced by another corpus's is rejected, another random sample of
//! the same corpus passes; the classifier and its AUC equal scikit-learn's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn dsproc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}

/// The model directory (scripts/fetch-models.sh) and the test venv's python, or
/// None with a SKIP (a failure under CI).
fn prerequisites(what: &str, python: bool) -> Option<(PathBuf, Option<String>)> {
    let Some(models) = std::env::var_os("DSPROC_MODELS") else {
        crate::common::skip(format!("{what}: DSPROC_MODELS is not set (scripts/fetch-models.sh)"));
        return None;
    };
    let dir = PathBuf::from(models).join("all-minilm-l6-v2");
    if !dir.join("model.safetensors").is_file() {
        crate::common::skip(format!("{what}: no {}/model.safetensors (scripts/fetch-models.sh)", dir.display()));
        return None;
    }
    let py = std::env::var("DSPROC_PYTHON").ok();
    if python && py.is_none() {
        crate::common::skip(format!("{what}: DSPROC_PYTHON is not set"));
        return None;
    }
    Some((dir, py))
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_docs(path: &Path, docs: &[(String, String)]) {
    let mut body = String::new();
    for (id, text) in docs {
        body.push_str(&serde_json::json!({"id": id, "text": text}).to_string());
        body.push('\n');
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// `n` of `docs`, chosen by a seeded hash (a random sample without replacement).
fn sample(docs: &[(String, String)], n: usize, seed: u64) -> Vec<(String, String)> {
    let mut keyed: Vec<(u64, &(String, String))> = docs.iter().map(|d| (xxhash_like(seed, &d.0), d)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1 .0.cmp(&b.1 .0)));
    keyed.into_iter().take(n).map(|(_, d)| d.clone()).collect()
}

fn xxhash_like(seed: u64, s: &str) -> u64 {
    // FNV-1a then splitmix64: a seeded order, independent of dsproc's own hashes
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

fn corpus(file: &str) -> Vec<(String, String)> {
    read_jsonl(&crate::common::repo().join(file))
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["text"].as_str().unwrap().to_string()))
        .filter(|(_, t)| !t.trim().is_empty())
        .collect()
}

fn check_toml(model: &Path, extra: &str) -> String {
    format!("[[checks]]\nname = \"embedding_drift\"\nmodel = \"{}\"\n{extra}", model.display())
}

fn spec(input: &str, checks: &str) -> String {
    format!("name = \"drift\"\n[input]\nuri = \"{input}\"\nid = \"id\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\nmode = \"overwrite\"\n{checks}")
}

/// Done-when (1): each document's Rust embedding (the version's
/// `_embeddings/check-001.parquet`) against a numpy forward pass of the same
/// safetensors (`tests/compat/embed_reference.py`: header read by hand, the Python
/// `tokenizers` package, BERT layers in numpy): cosine ≥ 0.9999 for every one of 200
/// real documents (English kernel docs, changelogs, licences, and man pages in 26
/// languages), truncated to 256 tokens.
#[test]
fn embeddings_equal_a_numpy_forward_pass_of_the_same_model() {
    let Some((model, Some(py))) = prerequisites("embedding_drift reference", true) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut docs = sample(&corpus("datasets/quality/sample.jsonl"), 150, 11);
    // man pages in 26 languages: 30 single sections, and 20 documents of 8
    // consecutive sections each (one language per run of the fixture; more than 256
    // tokens, so the check cuts them)
    let multi = corpus("datasets/multilingual/sample.jsonl");
    docs.extend(sample(&multi, 30, 12));
    for (k, run) in multi.chunks(8).step_by(multi.len() / 8 / 20).take(20).enumerate() {
        let text: Vec<&str> = run.iter().map(|(_, t)| t.as_str()).collect();
        docs.push((format!("joined/{k}/{}", run[0].0), text.join("\n\n")));
    }
    write_docs(&d.join("in/a.jsonl"), &docs);
    std::fs::write(d.join("j.toml"), spec("in/*.jsonl", &check_toml(&model, "sample = 1000\n"))).unwrap();
    let o = dsproc(d, &["run", "j.toml", "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &m["manifest"]["checks"][0];
    assert_eq!(c["skipped"], "no baseline version to compare with", "{c}");
    let e = &c["embeddings"];
    assert_eq!((e["rows"].as_u64(), e["dim"].as_u64()), (Some(200), Some(384)), "{e}");
    assert_eq!(e["model_sha256"], dsproc_embed::MINILM_L6_V2_SHA256);
    let path = e["path"].as_str().unwrap();
    assert_eq!(path, "v00001/_embeddings/check-001.parquet");
    assert!(m["manifest"]["side_files"].as_array().unwrap().iter().any(|f| f == path), "{}", m["manifest"]);
    let script = r#"
import json, sys
import numpy as np, pyarrow.parquet as pq
sys.path.insert(0, sys.argv[1])
import embed_reference as ref
model_dir, docs_path, emb_path = sys.argv[2:5]
t = pq.read_table(emb_path)
import pyarrow as pa
vt = t.schema.field("vector").type
assert pa.types.is_fixed_size_list(vt) and vt.list_size == 384 and vt.value_type == pa.float32(), t.schema
assert t.schema.field("id").type == pa.string(), t.schema
ours = dict(zip(t.column("id").to_pylist(), np.array(t.column("vector").to_pylist(), dtype=np.float64)))
rows = [json.loads(l) for l in open(docs_path, encoding="utf-8")]
bert = ref.Bert(model_dir)
tok = ref.Tokenizer.from_file(model_dir + "/tokenizer.json")
tok.no_padding()
tok.enable_truncation(max_length=256)
vecs = ref.embed(bert, tok, [r["text"] for r in rows])
cos = []
for r, v in zip(rows, vecs):
    a = ours[r["id"]]
    v = v.astype(np.float64)
    cos.append(float(a @ v / np.linalg.norm(a) / np.linalg.norm(v)))
long = sum(len(tok.encode(r["text"]).ids) == 256 for r in rows)
print(json.dumps({"n": len(cos), "min": min(cos), "argmin": rows[int(np.argmin(cos))]["id"], "truncated": long}))
"#;
    let o = Command::new(&py)
        .args([
            "-c",
            script,
            crate::common::repo().join("tests/compat").to_str().unwrap(),
            model.to_str().unwrap(),
            d.join("in/a.jsonl").to_str().unwrap(),
            d.join("out").join(path).to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("embedding_drift reference: {r}");
    assert_eq!(r["n"], 200);
    assert!(r["truncated"].as_u64().unwrap() >= 20, "too few documents reach 256 tokens: {r}");
    assert!(r["min"].as_f64().unwrap() >= 0.9999, "an embedding differs from numpy's: {r}");
}

/// Done-when (2): v1 is a random sample of one real corpus (datasets/quality:
/// kernel docs, changelogs, licences). A v2 where 30% of the documents are replaced
/// by another corpus's (translated man pages) is rejected (exit 3, v1 stays
/// current); v2s that are other random samples of the same corpus pass (two seeds
/// here; benches/embed_drift.py runs five). The baseline's stored embeddings are
/// reused.
#[test]
fn embedding_drift_rejects_replaced_documents_and_passes_resamples() {
    let Some((model, _)) = prerequisites("embedding_drift", false) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 200;
    let base_corpus = corpus("datasets/quality/sample.jsonl");
    // translated man pages (the non-English ones of datasets/multilingual)
    let other: Vec<(String, String)> = read_jsonl(&crate::common::repo().join("datasets/multilingual/sample.jsonl"))
        .into_iter()
        .filter(|r| r["source_lang"] != "en" && r["id"].as_str().is_some_and(|i| i.starts_with("man/")))
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["text"].as_str().unwrap().to_string()))
        .collect();
    write_docs(&d.join("in/a.jsonl"), &sample(&base_corpus, n, 1));
    let job = spec("in/*.jsonl", &check_toml(&model, "max_tokens = 64\n"));
    std::fs::write(d.join("j.toml"), &job).unwrap();
    let o = dsproc(d, &["run", "j.toml", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // 30% of another sample replaced by documents of another corpus
    let mut degraded = sample(&base_corpus, n, 2);
    for (k, (_, t)) in sample(&other, n * 3 / 10, 3).into_iter().enumerate() {
        degraded[k * 10 / 3].1 = t;
    }
    write_docs(&d.join("in/a.jsonl"), &degraded);
    let o = dsproc(d, &["run", "j.toml"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("version 2 rejected by its checks") && err.contains("version 1 stays current"), "{err}");
    assert!(err.contains("embedding drift by auc: domain classifier ROC-AUC"), "{err}");
    let v2: Value = serde_json::from_slice(&std::fs::read(d.join("out/_versions/2.json")).unwrap()).unwrap();
    assert_eq!(v2["status"], "rejected");
    let c = &v2["checks"][0];
    eprintln!("degraded: {}", summary(c));
    assert_eq!(c["passed"], false);
    assert!(c["auc"]["value"].as_f64().unwrap() > 0.55, "{c}");
    assert_eq!(c["baseline_embeddings"]["reused"], "v00001/_embeddings/check-001.parquet");
    assert_eq!(c["sample"]["new"], n);
    let current: Value = serde_json::from_slice(&std::fs::read(d.join("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(current["version"], 1);

    // other random samples of the same corpus: no false alarm (each against the
    // current version: v1, then the first resample, v3)
    for (seed, baseline) in [(4, 1), (5, 3)] {
        write_docs(&d.join("in/a.jsonl"), &sample(&base_corpus, n, seed));
        let o = dsproc(d, &["run", "j.toml", "--json", "-q"]);
        assert!(o.status.success(), "seed {seed}: {}", String::from_utf8_lossy(&o.stderr));
        let m: Value = serde_json::from_slice(&o.stdout).unwrap();
        let c = &m["manifest"]["checks"][0];
        eprintln!("same corpus, seed {seed}: {}", summary(c));
        assert_eq!(c["passed"], true, "{c}");
        assert_eq!(c["baseline_version"], baseline);
        assert_eq!(c["baseline_embeddings"]["reused"], format!("v{baseline:05}/_embeddings/check-001.parquet"));
    }
}

fn summary(c: &Value) -> String {
    format!(
        "auc {:.4}, mmd² {:.5}, mean distance {:.4}, ks {:.4}",
        c["auc"]["value"].as_f64().unwrap_or(f64::NAN),
        c["mmd"]["value"].as_f64().unwrap_or(f64::NAN),
        c["mean_distance"]["value"].as_f64().unwrap_or(f64::NAN),
        c["cosine_to_centroid"]["ks_statistic"].as_f64().unwrap_or(f64::NAN)
    )
}

/// The domain classifier equals scikit-learn's `LogisticRegression(C=1)` (lbfgs,
/// tight tolerance) on generated data, and `roc_auc` equals `roc_auc_score`
/// (with ties); MMD² and KS equal direct numpy/scipy computations.
#[test]
fn classifier_auc_mmd_and_ks_equal_scikit_learn_and_scipy() {
    let Some(py) = std::env::var_os("DSPROC_PYTHON") else {
        crate::common::skip("embedding_drift statistics: DSPROC_PYTHON is not set");
        return;
    };
    use dsproc_embed::drift;
    // deterministic data: two overlapping clouds in 16 dimensions
    let mut s: u64 = 7;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let (n, dim) = (300usize, 16usize);
    let x: Vec<Vec<f64>> =
        (0..n).map(|i| (0..dim).map(|k| u() - 0.5 + if i % 2 == 0 && k < 3 { 0.15 } else { 0.0 }).collect()).collect();
    let y: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { 1.0 } else { 0.0 }).collect();
    let rows: Vec<&[f64]> = x.iter().map(|r| r.as_slice()).collect();
    let fit = drift::logistic_regression(&rows, &y, 1.0);
    let scores: Vec<f64> = x.iter().map(|r| fit.decision(r)).collect();
    let labels: Vec<bool> = y.iter().map(|v| *v == 1.0).collect();
    // rounded scores: ties
    let rounded: Vec<f64> = scores.iter().map(|v| (v * 4.0).round() / 4.0).collect();
    let (a, b): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (x[..120].to_vec(), x[120..260].to_vec());
    let (mmd2, sigma) = drift::mmd2_rbf(&a, &b);
    let (ks, _) = drift::ks_2samp(&scores[..150], &scores[150..]);
    let data = serde_json::json!({"x": x, "y": y, "rounded": rounded, "labels": labels});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.json"), data.to_string()).unwrap();
    let script = r#"
import json, sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from scipy.stats import ks_2samp
d = json.load(open(sys.argv[1]))
x, y = np.array(d["x"]), np.array(d["y"])
m = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(x, y)
s = m.decision_function(x)
a, b = x[:120], x[120:260]
p = np.vstack([a, b])
d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
iu = np.triu_indices(len(p), 1)
med = np.median(d2[iu])
k = np.exp(-d2 / (2 * med))
na, nb = len(a), len(b)
kxx = (k[:na, :na].sum() - na) / (na * (na - 1))
kyy = (k[na:, na:].sum() - nb) / (nb * (nb - 1))
kxy = k[:na, na:].mean()
print(json.dumps({"coef": m.coef_[0].tolist(), "intercept": float(m.intercept_[0]), "scores": s.tolist(),
                  "auc": roc_auc_score(y, s), "auc_ties": roc_auc_score(d["labels"], d["rounded"]),
                  "mmd2": kxx + kyy - 2 * kxy, "sigma": float(np.sqrt(med)),
                  "ks": ks_2samp(s[:150], s[150:]).statistic}))
"#;
    let o = Command::new(py).args(["-c", script, dir.path().join("d.json").to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let close =
        |a: f64, b: f64, tol: f64, what: &str| assert!((a - b).abs() <= tol, "{what}: dsproc {a} vs reference {b}");
    for (k, (w, rw)) in fit.weights.iter().zip(r["coef"].as_array().unwrap()).enumerate() {
        close(*w, rw.as_f64().unwrap(), 1e-6, &format!("coefficient {k}"));
    }
    close(fit.intercept, r["intercept"].as_f64().unwrap(), 1e-6, "intercept");
    close(drift::roc_auc(&scores, &labels), r["auc"].as_f64().unwrap(), 1e-12, "auc");
    close(drift::roc_auc(&rounded, &labels), r["auc_ties"].as_f64().unwrap(), 1e-12, "auc with ties");
    close(mmd2, r["mmd2"].as_f64().unwrap(), 1e-10, "mmd2");
    close(sigma, r["sigma"].as_f64().unwrap(), 1e-10, "sigma");
    close(ks, r["ks"].as_f64().unwrap(), 1e-12, "ks");
}

/// A missing model fails the spec (exit 2) naming the key and the fetch script;
/// bad values name their key.
#[test]
fn embedding_drift_option_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_docs(&d.join("in/a.jsonl"), &[("a".into(), "x".into())]);
    let cases = [
        ("model = \"nowhere\"\n", "model: nowhere: no model.safetensors", "scripts/fetch-models.sh"),
        ("sample = 3\n", "sample: at least 10 documents", ""),
        ("max_tokens = 1000\n", "max_tokens: between 2 and 512", ""),
        ("max_auc = 0.3\n", "max_auc: between 0.5 and 1", ""),
        ("method = \"cosine\"\n", "method: \"cosine\": use auc, mmd or mean_distance", ""),
    ];
    for (extra, want, also) in cases {
        let s = spec("in/*.jsonl", &format!("[[checks]]\nname = \"embedding_drift\"\n{extra}"));
        let s = if extra.starts_with("model") {
            s
        } else {
            s.replace("name = \"embedding_drift\"\n", "name = \"embedding_drift\"\nmodel = \"nowhere\"\n")
        };
        std::fs::write(d.join("j.toml"), s).unwrap();
        let o = dsproc(d, &["validate", "j.toml"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(want) && err.contains(also), "{extra}: {err}");
    }
}
