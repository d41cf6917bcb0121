//! Incremental rebuilds through the `dsproc` binary: a rebuild after files were
//! added reads only the new files, carries the current version's shards by
//! reference and deduplicates the new rows (exact and MinHash) against the state
//! the current version keeps; removals, spec changes and steps that combine rows
//! rebuild fully and say why; token formats (Megatron, MDS) carry their shards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

fn dsproc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "dsproc failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A document of `words` random lowercase words.
fn random_text(next: &mut impl FnMut() -> u64, words: usize) -> String {
    (0..words)
        .map(|_| (0..3 + next() % 6).map(|_| (b'a' + (next() % 26) as u8) as char).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text with one word in the middle replaced: word 5-gram Jaccard ≈ 0.92
/// for 120 words (5 of ~116 shingles change).
fn near_copy(text: &str) -> String {
    let mut words: Vec<&str> = text.split(' ').collect();
    let mid = words.len() / 2;
    words[mid] = "qqchangedqq";
    words.join(" ")
}

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn write_jsonl(path: &Path, rows: &[(String, String)]) {
    let mut body = String::new();
    for (id, text) in rows {
        body.push_str(&serde_json::json!({"id": id, "text": text}).to_string());
        body.push('\n');
    }
    std::fs::write(path, body).unwrap();
}

/// Every (id, text) a committed JSONL dataset's current version holds.
fn rows_of(out: &Path) -> BTreeMap<String, String> {
    let m: dsproc_job::manifest::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let mut rows = BTreeMap::new();
    for r in read_jsonl_dataset(out, &m) {
        let id = r["id"].as_str().unwrap().to_string();
        assert!(rows.insert(id.clone(), r["text"].as_str().unwrap().to_string()).is_none(), "id {id} twice");
    }
    rows
}

/// No two rows with equal text, and no pair at or above `threshold` (word
/// 5-gram Jaccard, the step's shingling).
fn assert_no_duplicates(rows: &BTreeMap<String, String>, threshold: f64) {
    use dsproc_functions::minhash::{jaccard, shingles, Shingle};
    let texts: BTreeSet<&str> = rows.values().map(|t| t.trim()).collect();
    assert_eq!(texts.len(), rows.len(), "exact duplicates in the version");
    let sets: Vec<(&String, Vec<u64>)> = rows
        .iter()
        .map(|(id, t)| {
            let mut s = Vec::new();
            shingles(t, 5, Shingle::Word, &mut s);
            (id, s)
        })
        .collect();
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            let (mut a, mut b) = (sets[i].1.clone(), sets[j].1.clone());
            let jac = jaccard(&mut a, &mut b);
            assert!(jac < threshold, "{} and {} are near-duplicates (Jaccard {jac:.3})", sets[i].0, sets[j].0);
        }
    }
}

fn spec(input: &Path, out: &Path, format: &str, extra_steps: &str) -> String {
    format!(
        "name = \"inc\"\n[input]\nuri = \"{}/*.jsonl\"\nid = \"id\"\n\n[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n[[steps]]\nop = \"dedup_minhash\"\nthreshold = 0.8\n{extra_steps}\n[output]\nuri = \"{}\"\nformat = \"{format}\"\nshard_size = \"32KiB\"\nmode = \"overwrite\"\nincremental = true\n",
        input.display(),
        out.display()
    )
}

#[test]
fn an_incremental_rebuild_reads_only_new_files_and_leaves_no_duplicate_of_the_published_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut next = rng(11);
    let a: Vec<(String, String)> = (0..150).map(|i| (format!("a-{i:04}"), random_text(&mut next, 120))).collect();
    let mut b: Vec<(String, String)> = (0..150).map(|i| (format!("b-{i:04}"), random_text(&mut next, 120))).collect();
    // v1 deduplicates too: B holds exact and near copies of A.
    for i in 0..10 {
        b.push((format!("b-exact-{i}"), a[i].1.clone()));
        b.push((format!("b-near-{i}"), near_copy(&a[10 + i].1)));
    }
    write_jsonl(&input.join("a.jsonl"), &a);
    write_jsonl(&input.join("b.jsonl"), &b);
    let out = d.join("out");
    std::fs::write(d.join("j.toml"), spec(&input, &out, "jsonl", "")).unwrap();
    let run = |extra: &[&str]| json(&dsproc(d, &[&["run", "j.toml", "--json", "-q"], extra].concat()));
    let v1 = run(&[])["manifest"].clone();
    assert_eq!(v1["incremental"]["mode"], "full");
    assert_eq!(v1["rows"]["out"], 300, "{}", v1["rows"]);
    let published = rows_of(&out);

    // C: new documents, exact and near copies of A's, and copies among themselves.
    let new: Vec<(String, String)> = (0..60).map(|i| (format!("c-new-{i:04}"), random_text(&mut next, 120))).collect();
    let mut c = new.clone();
    for i in 0..20 {
        c.push((format!("c-exact-{i}"), a[40 + i].1.clone()));
        c.push((format!("c-near-{i}"), near_copy(&a[60 + i].1)));
    }
    for i in 0..10 {
        c.push((format!("c-copy-{i}"), new[i].1.clone()));
        c.push((format!("c-nearself-{i}"), near_copy(&new[20 + i].1)));
    }
    write_jsonl(&input.join("c.jsonl"), &c);
    let o = dsproc(d, &["run", "j.toml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("incremental: read 1 new files, carried 2 files (300 rows) from version 1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v2: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(v2["version"], 2);
    let inc = &v2["incremental"];
    assert_eq!(inc["mode"], "incremental", "{inc}");
    assert_eq!(
        (inc["files_read"].as_u64(), inc["files_carried"].as_u64(), inc["files_removed"].as_u64()),
        (Some(1), Some(2), Some(0))
    );
    // Only C was read; v1's rows are carried, and its shards listed as they are.
    assert_eq!(v2["rows"]["in"], c.len() as u64);
    assert_eq!(v2["rows"]["carried"], 300);
    assert_eq!(v2["rows"]["removed"], serde_json::json!({}));
    assert_eq!(v2["rows"]["out"], 360, "{}", v2["rows"]);
    assert_eq!(v2["inputs"].as_array().unwrap().len(), 3);
    let shards = |m: &serde_json::Value| -> BTreeSet<(String, String)> {
        m["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["path"].as_str().unwrap().to_string(), s["sha256"].as_str().unwrap().to_string()))
            .collect()
    };
    assert!(shards(&v1).is_subset(&shards(&v2)), "v2 does not list v1's shards as they are");
    let rows = rows_of(&out);
    // v2 = v1's rows + C's rows that duplicate neither v1 nor each other: the
    // published rows all stay (they win), and each new text once.
    for (id, text) in &published {
        assert_eq!(rows.get(id), Some(text), "published row {id} changed or lost");
    }
    let added: BTreeSet<&str> =
        rows.iter().filter(|(id, _)| !published.contains_key(*id)).map(|(_, t)| t.as_str()).collect();
    let want: BTreeSet<&str> = new.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(added.len(), 60);
    for (_, t) in new.iter().skip(30) {
        assert!(added.contains(t.as_str()), "a new document was lost");
    }
    assert!(added.iter().all(|t| want.contains(t) || new.iter().any(|(_, n)| near_copy(n) == *t)));
    assert_no_duplicates(&rows, 0.8);
    // The same final input rebuilt fully keeps as many rows.
    let full =
        run(&["--set", &format!("output.uri={}", d.join("full").display()), "--set", "output.incremental=false"]);
    assert_eq!(full["manifest"]["rows"]["out"], 360);

    // Nothing changed: nothing committed.
    let again = run(&[]);
    assert_eq!((again["up_to_date"].as_bool(), again["version"].as_u64()), (Some(true), Some(2)));

    // An incremental version on an incremental one: E repeats C's new documents
    // (exactly and nearly) and adds 5 more; v3 dedups against v1's and v2's state.
    let mut e: Vec<(String, String)> = (0..5).map(|i| (format!("e-new-{i}"), random_text(&mut next, 120))).collect();
    for (i, (_, t)) in new.iter().skip(30).take(10).enumerate() {
        e.push((format!("e-exact-{i}"), t.clone()));
        e.push((format!("e-near-{i}"), near_copy(t)));
    }
    write_jsonl(&input.join("e.jsonl"), &e);
    let v3 = run(&[])["manifest"].clone();
    assert_eq!(v3["incremental"]["mode"], "incremental", "{}", v3["incremental"]);
    assert_eq!((v3["rows"]["carried"].as_u64(), v3["rows"]["out"].as_u64()), (Some(360), Some(365)), "{}", v3["rows"]);
    assert!(shards(&v2).is_subset(&shards(&v3)));
    assert_no_duplicates(&rows_of(&out), 0.8);
    std::fs::remove_file(input.join("e.jsonl")).unwrap();
    // Back to C's input: the removal rebuilds fully (v4), equal to v2's rows.
    let v4 = run(&[])["manifest"].clone();
    assert_eq!(v4["incremental"]["mode"], "full");
    assert_eq!(v4["rows"]["out"], 360);

    // A new file repeating a published id: the build fails naming it.
    write_jsonl(&input.join("d.jsonl"), &[(a[0].0.clone(), "a different text for a published id".into())]);
    let o = dsproc(d, &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a-0000"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(input.join("d.jsonl")).unwrap();

    // B removed: a full rebuild, saying why; nothing of B is left.
    std::fs::remove_file(input.join("b.jsonl")).unwrap();
    let v5 = run(&[])["manifest"].clone();
    assert_eq!(v5["version"], 5);
    assert_eq!(v5["incremental"]["mode"], "full");
    let reason = v5["incremental"]["reason"].as_str().unwrap();
    assert!(reason.contains("0 added, 1 removed") && reason.contains("b.jsonl"), "{reason}");
    let rows = rows_of(&out);
    assert!(rows.keys().all(|id| !id.starts_with("b-")), "rows of the removed file are left");
    assert!(rows.keys().filter(|id| id.starts_with("a-")).count() == 150);
    assert_no_duplicates(&rows, 0.8);

    // Another step parameter: a full rebuild because the spec changed.
    std::fs::write(d.join("j.toml"), spec(&input, &out, "jsonl", "ngram = 4")).unwrap();
    let v6 = run(&[])["manifest"].clone();
    assert_eq!(v6["incremental"]["mode"], "full");
    assert!(v6["incremental"]["reason"].as_str().unwrap().contains("the spec changed since version 5"));

    // A version listing another's shards keeps them through retention: expiring
    // v1 leaves every file v2 lists in place.
    let o = dsproc(d, &["gc", out.to_str().unwrap(), "--keep", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (p, _) in shards(&v2) {
        assert!(out.join(&p).exists(), "{p}, listed by the kept version 2, was removed");
    }
}

/// Steps that combine rows, and new columns, cannot build on the parent: the
/// rebuild is full and the manifest says why.
#[test]
fn rebuilds_that_cannot_carry_rows_are_full_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut next = rng(5);
    write_jsonl(
        &input.join("a.jsonl"),
        &(0..50).map(|i| (format!("a{i}"), random_text(&mut next, 40))).collect::<Vec<_>>(),
    );
    let out = d.join("out");
    let agg = "[[steps]]\nop = \"sql\"\nquery = \"SELECT id, text FROM input WHERE length(text) > (SELECT avg(length(text)) / 2 FROM input)\"\n";
    std::fs::write(d.join("j.toml"), spec(&input, &out, "parquet", agg)).unwrap();
    let run = || json(&dsproc(d, &["run", "j.toml", "--json", "-q"]))["manifest"].clone();
    run();
    write_jsonl(
        &input.join("b.jsonl"),
        &(0..20).map(|i| (format!("b{i}"), random_text(&mut next, 40))).collect::<Vec<_>>(),
    );
    let v2 = run();
    assert_eq!(v2["incremental"]["mode"], "full", "{}", v2["incremental"]);
    let reason = v2["incremental"]["reason"].as_str().unwrap();
    assert!(reason.contains("step 4 (sql) combines rows"), "{reason}");
    assert!(v2["rows"].get("carried").is_none());

    // A new file with a column the published shards lack.
    std::fs::write(d.join("j.toml"), spec(&input, &out, "parquet", "")).unwrap();
    run();
    std::fs::write(
        input.join("c.jsonl"),
        "{\"id\": \"c1\", \"text\": \"a text with a new column\", \"lang\": \"en\"}\n",
    )
    .unwrap();
    let v = run();
    assert_eq!(v["incremental"]["mode"], "full");
    assert!(v["incremental"]["reason"].as_str().unwrap().contains("other columns"), "{}", v["incremental"]);
}

/// `input.fingerprint = "sha256"`: a file rewritten with the same bytes is
/// unchanged (up to date); with the default (mtime) it counts as changed.
#[test]
fn content_fingerprints_see_through_a_rewrite_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut next = rng(9);
    let rows: Vec<(String, String)> = (0..30).map(|i| (format!("a{i}"), random_text(&mut next, 30))).collect();
    write_jsonl(&input.join("a.jsonl"), &rows);
    let base = spec(&input, &d.join("meta"), "parquet", "");
    std::fs::write(d.join("meta.toml"), &base).unwrap();
    let hashed = spec(&input, &d.join("hashed"), "parquet", "")
        .replace("id = \"id\"\n", "id = \"id\"\nfingerprint = \"sha256\"\n");
    std::fs::write(d.join("hashed.toml"), hashed).unwrap();
    let run = |job: &str| json(&dsproc(d, &["run", job, "--json", "-q"]));
    run("meta.toml");
    let h1 = run("hashed.toml")["manifest"].clone();
    let body = std::fs::read(input.join("a.jsonl")).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    assert_eq!(h1["inputs"][0]["version"], format!("sha256:{digest}"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(input.join("a.jsonl"), &body).unwrap();
    assert_eq!(run("hashed.toml")["up_to_date"], true);
    let m = run("meta.toml")["manifest"].clone();
    assert!(
        m["incremental"]["reason"].as_str().unwrap().contains("0 added, 0 removed, 1 changed"),
        "{}",
        m["incremental"]
    );
}

/// Token formats carry their shards too: a Megatron version lists the parent's
/// `.bin/.idx` prefixes beside its own; an MDS version's `index.json` names the
/// parent's shards relative to itself (`../v00001/…`), every entry resolving to a
/// file of its recorded size, and the samples add up to the rows.
#[test]
fn token_formats_carry_the_parents_shards() {
    let Some(dir) = std::env::var_os("DSPROC_TOKENIZERS") else {
        skip("token_formats_carry_the_parents_shards: DSPROC_TOKENIZERS is not set");
        return;
    };
    let tok = Path::new(&dir).join("bpe/tokenizer.json");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let input = d.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut next = rng(21);
    let a: Vec<(String, String)> = (0..80).map(|i| (format!("a{i:03}"), random_text(&mut next, 60))).collect();
    write_jsonl(&input.join("a.jsonl"), &a);
    let step = format!("[[steps]]\nop = \"tokenize\"\ntokenizer = \"{}\"\nappend_eos = true\n", tok.display());
    for format in ["megatron", "mds"] {
        let out = d.join(format);
        std::fs::write(d.join("j.toml"), spec(&input, &out, format, &step).replace("32KiB", "8KiB")).unwrap();
        let run = || json(&dsproc(d, &["run", "j.toml", "--json", "-q"]))["manifest"].clone();
        let v1 = run();
        let b: Vec<(String, String)> = (0..40).map(|i| (format!("b{i:03}"), random_text(&mut next, 60))).collect();
        write_jsonl(&input.join("b.jsonl"), &b);
        let v2 = run();
        std::fs::remove_file(input.join("b.jsonl")).unwrap();
        assert_eq!(v2["incremental"]["mode"], "incremental", "{format}: {}", v2["incremental"]);
        assert_eq!((v2["rows"]["carried"].as_u64(), v2["rows"]["out"].as_u64()), (Some(80), Some(120)), "{format}");
        let paths = |m: &serde_json::Value| -> Vec<String> {
            m["shards"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect()
        };
        let tokens = |m: &serde_json::Value| m["tokens"].as_u64().unwrap();
        assert!(tokens(&v2) > tokens(&v1), "{format}: token count not per version");
        if format == "megatron" {
            for p in paths(&v1) {
                assert!(paths(&v2).contains(&p), "{format}: v2 does not list {p}");
            }
            assert!(paths(&v2).iter().any(|p| p.starts_with("v00002/") && p.ends_with(".idx")));
            continue;
        }
        let index_dir = out.join("v00002");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(index_dir.join("index.json")).unwrap()).unwrap();
        let entries = index["shards"].as_array().unwrap();
        let mut samples = 0;
        let mut parents = 0;
        for e in entries {
            let name = e["raw_data"]["basename"].as_str().unwrap();
            parents += name.starts_with("../v00001/") as usize;
            let file = index_dir.join(name);
            assert_eq!(std::fs::metadata(&file).unwrap().len(), e["raw_data"]["bytes"].as_u64().unwrap(), "{name}");
            samples += e["samples"].as_u64().unwrap();
        }
        assert!(parents > 0, "the MDS index names none of the parent's shards");
        assert_eq!(samples, 120);
    }
}
