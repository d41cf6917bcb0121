//! Tests with the real lid.176.ftz (scripts/fetch-models.sh): `$DSPROC_MODELS/lid.176.ftz`,
//! default `~/.cache/dsproc-ground/models/lid.176.ftz`. The agreement test runs the C++
//! fastText through fasttext-predict (tests/compat/langid_reference.py) with
//! `$DSPROC_LANGID_PYTHON`, else `$DSPROC_PYTHON`, else `~/.cache/dsproc-langid-venv/bin/python`.
//! Outside CI a missing prerequisite skips (SKIP on stderr); with `CI` set it fails.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use dsproc_langid::{Model, LID176_FTZ_SHA256};

fn missing<T>(why: String) -> Option<T> {
    assert!(std::env::var_os("CI").is_none(), "missing prerequisite under CI: {why}");
    eprintln!("SKIP {why}");
    None
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DSPROC_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/dsproc-ground/models"));
    let p = dir.join("lid.176.ftz");
    if p.exists() {
        Some(p)
    } else {
        missing(format!("{} is missing (run scripts/fetch-models.sh)", p.display()))
    }
}

fn python() -> Option<PathBuf> {
    let py = std::env::var_os("DSPROC_LANGID_PYTHON")
        .or_else(|| std::env::var_os("DSPROC_PYTHON"))
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/dsproc-langid-venv/bin/python"));
    let ok = Command::new(&py).args(["-c", "import fasttext"]).output().is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        missing(format!("{} cannot import fasttext (pip install fasttext-predict==0.9.2.4)", py.display()))
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn lid176_loads_with_its_known_shape_and_hash() {
    let Some(path) = model_path() else { return };
    let m = Model::load(&path).unwrap();
    assert_eq!(m.sha256(), LID176_FTZ_SHA256);
    assert_eq!(m.labels().len(), 176);
    assert_eq!(&m.labels()[..3], ["en", "ru", "de"]);
    let a = m.args();
    assert_eq!((a.dim, a.minn, a.maxn, a.word_ngrams, a.bucket), (16, 2, 4, 1, 2_000_000));
    assert_eq!(a.loss, dsproc_langid::format::LossName::HierarchicalSoftmax);
    assert_eq!(m.nwords(), 7235);
    for (text, lang) in [
        ("The quick brown fox jumps over the lazy dog", "en"),
        ("Der schnelle braune Fuchs springt über den faulen Hund", "de"),
        ("Le renard brun rapide saute par-dessus le chien paresseux", "fr"),
        ("Быстрая коричневая лиса прыгает через ленивую собаку", "ru"),
        ("这是一个关于中国历史的简短介绍，它讲述了很多朝代的故事。", "zh"),
        ("素早い茶色の狐がのろまな犬を飛び越える", "ja"),
    ] {
        let p = m.predict(text, 1, 0.0);
        assert_eq!(p[0].0, lang, "{text}: {p:?}");
        assert!(p[0].1 > 0.5, "{text}: {p:?}");
    }
    // Short unsegmented Chinese is English to C++ fastText too (p = 0.1245); kept equal.
    let p = m.predict("敏捷的棕色狐狸跳过了懒狗", 1, 0.0);
    assert_eq!((p[0].0.as_str(), p[0].1), ("en", 0.124_504_18));
    // A document's newlines are spaces; a line ends at its first newline.
    let doc = "Der schnelle braune Fuchs\nspringt über den faulen Hund";
    assert_eq!(m.predict_document(doc, 3, 0.0), m.predict(&doc.replace('\n', " "), 3, 0.0));
    assert_eq!(m.predict(doc, 3, 0.0), m.predict("Der schnelle braune Fuchs", 3, 0.0));
}

/// datasets/multilingual/sample.jsonl (~1000 real documents, 26 languages): the top-5
/// labels equal the C++ fastText's and the probabilities equal them to 1e-6 (observed:
/// bit-identical float32 values).
#[test]
fn lid176_agrees_with_the_cpp_fasttext_on_the_multilingual_sample() {
    let (Some(path), Some(py)) = (model_path(), python()) else { return };
    let root = repo_root();
    let sample = root.join("datasets/multilingual/sample.jsonl");
    let out = std::env::temp_dir().join(format!("dsproc-langid-ref-{}.jsonl", std::process::id()));
    let status = Command::new(&py)
        .arg(root.join("tests/compat/langid_reference.py"))
        .args([path.as_os_str(), sample.as_os_str(), out.as_os_str()])
        .arg("5")
        .status()
        .unwrap();
    assert!(status.success(), "langid_reference.py failed");
    let reference: HashMap<String, serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    std::fs::remove_file(&out).ok();

    let m = Model::load(&path).unwrap();
    let mut langs = BTreeMap::new();
    let (mut docs, mut top1, mut max_diff) = (0, 0, 0f64);
    for line in std::fs::read_to_string(&sample).unwrap().lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        *langs.entry(d["source_lang"].as_str().unwrap().to_string()).or_insert(0) += 1;
        let r = &reference[d["id"].as_str().unwrap()];
        let ours = m.predict_document(d["text"].as_str().unwrap(), 5, 0.0);
        let labels: Vec<&str> = r["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let scores: Vec<f64> = r["scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), labels, "{}", d["id"]);
        for (o, s) in ours.iter().zip(&scores) {
            max_diff = max_diff.max((o.1 as f64 - s).abs());
        }
        docs += 1;
        top1 += (ours[0].0 == labels[0]) as usize;
    }
    eprintln!("{docs} docs, {} languages {langs:?}: top-1 {top1}/{docs}, max |score diff| {max_diff:e}", langs.len());
    assert!(docs >= 900 && langs.len() >= 10, "{docs} docs in {} languages", langs.len());
    assert!(max_diff <= 1e-6, "max |score diff| {max_diff:e}");
}
