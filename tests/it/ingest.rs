//! Nothing silently lost or changed on the way in (issue 15): outputs that
//! overlap inputs, dsproc datasets never read back by accident, Unicode paths,
//! bad storage settings, the panic hook, text that a step makes null or
//! non-string, duplicate ids. Every probe checks what a user sees (exit code,
//! message naming file/line/key/step, manifest counts), that the row accounting
//! balances, and that nothing panicked.

use std::path::Path;
use std::process::{Command, Output};

use dsproc_runtime::Engine;

use crate::common::*;

fn dsproc_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).envs(env.iter().copied()).output().unwrap()
}

fn dsproc(dir: &Path, args: &[&str]) -> Output {
    dsproc_env(dir, args, &[])
}

/// stdout and stderr together.
fn said(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// No probe may reach a panic (Rust's own message or dsproc's panic hook).
fn assert_no_panic(o: &Output) {
    let t = said(o);
    assert!(!t.contains("panicked") && !t.contains("bug in dsproc"), "a probe reached a panic:\n{t}");
    assert_ne!(o.status.code(), Some(101), "{t}");
}

/// Exit code `code`, no panic, and the output, for messages.
fn expect(o: &Output, code: i32) -> String {
    assert_no_panic(o);
    assert_eq!(o.status.code(), Some(code), "{}", said(o));
    said(o)
}

/// The manifest of a successful `--json` run.
fn manifest(o: &Output) -> serde_json::Value {
    expect(o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = v["manifest"].clone();
    assert_balanced(&m);
    m
}

/// `in + added = out + quarantined + dropped`.
fn assert_balanced(m: &serde_json::Value) {
    let r = &m["rows"];
    let sum = |k: &str| r[k].as_object().map_or(0, |o| o.values().map(|v| v.as_u64().unwrap()).sum::<u64>());
    let n = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(n("in") + sum("added"), n("out") + n("quarantined") + sum("dropped"), "unbalanced: {r}");
}

fn write_docs(path: &Path, n: usize, tag: &str) {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&serde_json::json!({"text": format!("{tag} document number {i}")}).to_string());
        s.push('\n');
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, s).unwrap();
}

fn spec_file(dir: &Path, spec: &str) -> &'static str {
    std::fs::write(dir.join("j.toml"), spec).unwrap();
    "j.toml"
}

#[test]
fn an_output_overlapping_its_input_is_a_spec_error_and_datasets_are_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_docs(&data.join("a.jsonl"), 40, "a");
    let shown = |p: &Path| p.display().to_string();

    // The reported case: the output inside the input directory. Refused by every
    // command before anything is written (no 40 → 80 → 120 on reruns).
    let inside = data.join("out");
    let j = spec_file(d, &job("data", "", &inside, "jsonl"));
    for cmd in ["validate", "run", "submit"] {
        let e = expect(&dsproc(d, &[cmd, j]), 2);
        assert!(e.contains(&shown(&inside)) && e.contains(&format!("{} (input.uri", shown(&data))), "{cmd}: {e}");
        assert!(e.contains("inside the input"), "{e}");
        // at the output.uri line of the spec
        let at = spec_file(d, &job("data", "", &inside, "jsonl"));
        let line = std::fs::read_to_string(d.join(at))
            .unwrap()
            .lines()
            .position(|l| l.starts_with("uri = \"") && l.contains("/out\""))
            .unwrap()
            + 1;
        assert!(e.contains(&format!("j.toml:{line}:")), "{cmd}: no spec location: {e}");
    }
    // An output.uri from --set is not reported at the file's (other) output.uri line.
    let j = spec_file(d, &job("data", "", &d.join("elsewhere-set"), "jsonl"));
    let e = expect(&dsproc(d, &["validate", j, "--set", &format!("output.uri={}", inside.display())]), 2);
    assert!(e.contains("inside the input") && !e.contains("j.toml:"), "{e}");
    assert!(!inside.exists(), "a refused run left {}", inside.display());
    // Equal to the input directory, or containing the input file.
    let e = expect(&dsproc(d, &["run", spec_file(d, &job("data", "", &data, "jsonl"))]), 2);
    assert!(e.contains("is the input location"), "{e}");
    let e = expect(&dsproc(d, &["validate", spec_file(d, &job("data/a.jsonl", "", d, "jsonl"))]), 2);
    assert!(e.contains(&format!("contains the input file {}", shown(&data.join("a.jsonl")))), "{e}");
    // A glob that could match files below the output overlaps it too.
    let e = expect(&dsproc(d, &["validate", spec_file(d, &job("data/**/*.jsonl*", "", &inside, "jsonl"))]), 2);
    assert!(e.contains(&shown(&inside)), "{e}");

    // A glob that cannot reach the output's files may write beside its input;
    // reruns read the same 40 rows (never the dataset's own shards).
    let j = spec_file(d, &job("data/*.jsonl", "", &inside, "jsonl"));
    for run in 1..=3 {
        let m = manifest(&dsproc(d, &["run", j, "--json"]));
        assert_eq!((m["rows"]["in"].as_u64(), m["version"].as_u64()), (Some(40), Some(run)), "run {run}");
    }
    // Listing a directory skips a dsproc dataset inside it (with a warning): 40, not 40 + its shards.
    let elsewhere = d.join("elsewhere");
    let o = dsproc(d, &["run", spec_file(d, &job("data", "", &elsewhere, "jsonl")), "--json"]);
    let m = manifest(&o);
    assert_eq!(m["rows"]["in"], 40);
    assert_eq!(m["inputs"].as_array().unwrap().len(), 1, "{}", m["inputs"]);
    assert!(said(&o).contains(&format!("skipping the dsproc dataset at {}", shown(&inside))), "{}", said(&o));
    // A glob rooted in a dataset matches nothing, and says how to read it.
    let e =
        expect(&dsproc(d, &["validate", spec_file(d, &job("data/out/**/*.jsonl.zst", "", &elsewhere, "jsonl"))]), 2);
    assert!(e.contains("matches no files") && e.contains(&format!("set input.uri to {}", shown(&inside))), "{e}");
    // Naming the dataset root reads its current version, and writing the next
    // version to the same root is allowed (versions are immutable).
    let m = manifest(&dsproc(d, &["run", spec_file(d, &job("data/out", "", &inside, "jsonl")), "--json"]));
    assert_eq!((m["rows"]["in"].as_u64(), m["version"].as_u64()), (Some(40), Some(4)));
    assert_eq!(m["input_dataset"]["version"], 3);

    // Through symlinks: an output reached by a link into the input folder, and an
    // input named by a link to the output's folder, are the same directories.
    let link = d.join("link-to-data");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let e = expect(&dsproc(d, &["validate", spec_file(d, &job("data", "", &link.join("out2"), "jsonl"))]), 2);
    assert!(e.contains("inside the input") && e.contains("after resolving symlinks"), "{e}");
    let e = expect(&dsproc(d, &["validate", spec_file(d, &job("link-to-data", "", &data.join("out2"), "jsonl"))]), 2);
    assert!(e.contains("inside the input") && e.contains("after resolving symlinks"), "{e}");
    assert!(!data.join("out2").exists());
}

#[test]
fn paths_with_spaces_and_unicode_work_for_input_output_and_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input_dir = d.join("données été");
    std::fs::create_dir_all(&input_dir).unwrap();
    std::fs::write(
        input_dir.join("日本 語.jsonl"),
        "{\"text\":\"un\"}\n{\"text\":\"deux\"}\nnot json\n{\"text\":\"trois\"}\n",
    )
    .unwrap();
    let out = d.join("sortie é").join("データ 1");
    for input in ["données été/日本 語.jsonl", "données été/*.jsonl", "données été"] {
        let m = manifest(&dsproc(d, &["run", spec_file(d, &job(input, "", &out, "jsonl")), "--json"]));
        assert_eq!((m["rows"]["in"].as_u64(), m["rows"]["out"].as_u64()), (Some(4), Some(3)), "{input}");
        assert_eq!(m["rows"]["quarantined"], 1, "{input}");
        for f in m["shards"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()) {
            assert!(out.join(f).is_file(), "{input}: {f} is missing");
        }
        let q = m["quarantine"].as_array().unwrap();
        assert_eq!(q.len(), 1, "{input}");
        let rec = std::fs::read_to_string(out.join(q[0].as_str().unwrap())).unwrap();
        assert!(rec.contains("日本 語.jsonl") && rec.contains("\"line\":3"), "{rec}");
        assert!(m["inputs"][0]["uri"].as_str().unwrap().contains("données été/日本 語.jsonl"), "{}", m["inputs"]);
    }
    let o = dsproc(d, &["inspect", out.to_str().unwrap()]);
    assert!(expect(&o, 0).contains("out 3"));
}

#[test]
fn paths_with_spaces_and_unicode_work_on_s3() {
    let Some(s) = crate::s3::s3("ingest_unicode") else { return };
    let dir = tempfile::tempdir().unwrap();
    s.put(
        "données été/日本 語.jsonl",
        b"{\"text\":\"un\"}\n{\"text\":\"deux\"}\nnot json\n{\"text\":\"trois\"}\n".to_vec(),
    );
    for (i, input) in ["données été/日本 語.jsonl", "données été/*.jsonl", "données été"].iter().enumerate()
    {
        let out = format!("sortie é/データ {i}");
        let spec = format!(
            "name = \"t\"\n[input]\nuri = \"{}\"\n[output]\nuri = \"{}\"\nformat = \"jsonl\"\n",
            s.uri(input),
            s.uri(&out)
        );
        std::fs::write(dir.path().join("j.toml"), spec).unwrap();
        let o = s.dsproc(dir.path(), &["run", "j.toml", "--json"], &[]);
        let m = manifest(&o);
        assert_eq!((m["rows"]["in"].as_u64(), m["rows"]["out"].as_u64()), (Some(4), Some(3)), "{input}");
        let keys = s.keys(&out);
        for f in m["shards"].as_array().unwrap().iter().chain(m["quarantine"].as_array().unwrap()) {
            let f = f.get("path").unwrap_or(f).as_str().unwrap();
            assert!(keys.iter().any(|k| k == f), "{input}: {f} not in {keys:?}");
        }
        let q = m["quarantine"][0].as_str().unwrap();
        let rec = String::from_utf8(s.get(&format!("{out}/{q}")).unwrap()).unwrap();
        assert!(rec.contains("日本 語.jsonl") && rec.contains("\"line\":3"), "{rec}");
        let o = s.dsproc(dir.path(), &["inspect", &s.uri(&out)], &[]);
        assert!(expect(&o, 0).contains("out 3"));
    }
}

#[test]
fn bad_storage_settings_are_spec_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        ("input", "endpoint = \"127.0.0.1:9000\"", "has no scheme"),
        ("input", "endpoint = \"ftp://127.0.0.1:9000\"", "http:// or https://"),
        ("output", "endpoint = \"http://\"", "endpoint"),
        ("input", "region = \"us east 1\"", "is not a region name"),
        ("output", "options = { no_such_option = \"1\" }", "unknown storage setting `no_such_option` for s3://"),
        ("input", "env = { access_key_idd = \"MY_KEY\" }", "unknown storage setting `access_key_idd`"),
        ("output", "options = { endpoint = \"127.0.0.1:9000\" }", "has no scheme"),
    ];
    for (table, setting, needle) in cases {
        let (input_storage, output_storage) = if table == "input" { (setting, "") } else { ("", setting) };
        let spec = format!(
            "name = \"t\"\n[input]\nuri = \"s3://bucket/in/*.jsonl\"\n[input.storage]\n{input_storage}\n[output]\nuri = \"s3://bucket/out\"\n[output.storage]\n{output_storage}\n"
        );
        let line = spec.lines().position(|l| l == setting).unwrap() + 1;
        let j = spec_file(d, &spec);
        for cmd in ["validate", "run"] {
            let e = expect(&dsproc(d, &[cmd, j]), 2);
            assert!(e.contains(&format!("j.toml:{line}:")), "{cmd} {setting}: {e}");
            assert!(e.contains(&format!("{table}.storage.")) && e.contains(needle), "{cmd} {setting}: {e}");
        }
    }
    // The same endpoint from the environment fails the run with a message, not a panic.
    let j = spec_file(d, "name = \"t\"\n[input]\nuri = \"s3://bucket/in/*.jsonl\"\n[output]\nuri = \"out\"\n");
    let env = [("AWS_ENDPOINT_URL", "127.0.0.1:9000"), ("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")];
    let e = expect(&dsproc_env(d, &["run", j], &env), 1);
    assert!(e.contains("\"127.0.0.1:9000\" has no scheme") && e.contains("AWS_ENDPOINT_URL"), "{e}");
}

#[test]
fn a_panic_is_reported_as_a_bug_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = dsproc_env(dir.path(), &["validate", "j.toml"], &[("DSPROC_TEST_PANIC", "1")]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let e = said(&o);
    assert!(e.contains("this is a bug in dsproc") && e.contains("DSPROC_TEST_PANIC is set"), "{e}");
    assert!(e.contains("main.rs:") && e.contains("please report it"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn a_step_that_makes_text_non_string_or_null_never_commits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_docs(&d.join("a.jsonl"), 5, "a");
    let input = d.join("a.jsonl").display().to_string();
    let out = d.join("out");
    let sql = |q: &str| format!("[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"sql\"\nquery = \"{q}\"\n");
    // The type is known when the plan is made: a spec error naming the step.
    for (q, ty) in
        [("SELECT id, NULL AS text FROM input", "Null"), ("SELECT id, length(text) AS text FROM input", "Int")]
    {
        let j = spec_file(d, &job(&input, &sql(q), &out, "jsonl"));
        for cmd in ["validate", "run"] {
            let e = expect(&dsproc(d, &[cmd, j]), 2);
            assert!(
                e.contains("step 2 (sql)") && e.contains(&format!("type {ty}")) && e.contains("not a string"),
                "{e}"
            );
        }
    }
    // A null in a string column is seen as rows leave the step: the job fails
    // naming the step and the row, and nothing is committed.
    let q = "SELECT id, CASE WHEN id = 'a.jsonl:3' THEN NULL ELSE text END AS text FROM input";
    let j = spec_file(d, &job(&input, &sql(q), &out, "jsonl"));
    let e = expect(&dsproc(d, &["run", j]), 1);
    assert!(e.contains("step 2 (sql): row id \"a.jsonl:3\" has a null text"), "{e}");
    assert!(!out.join("manifest.json").exists());
    // The same in Ballista standalone mode (the check runs on the executor).
    let loaded = load(d, &job(&input, &sql(q), &out, "jsonl"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(run(&loaded, Engine::Standalone, 2)).unwrap_err();
    assert!(e.contains("step 2 (sql): row id \"a.jsonl:3\" has a null text"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn duplicate_ids_fail_by_default_and_are_kept_or_reduced_to_the_first_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = |r: &[(&str, &str)]| -> String {
        r.iter().map(|(id, text)| format!("{}\n", serde_json::json!({"id": id, "text": text}))).collect()
    };
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::write(
        d.join("in/d1.jsonl"),
        rows(&[("x", "x in d1"), ("a", "a first"), ("b", "b only"), ("a", "a second")]),
    )
    .unwrap();
    std::fs::write(d.join("in/d2.jsonl"), rows(&[("a", "a third"), ("c", "c only"), ("x", "x in d2")])).unwrap();
    let out = d.join("out");
    let glob = format!("{}/in/*.jsonl", d.display());
    let spec = |mode: Option<&str>| {
        let set = mode.map(|m| format!("on_duplicate_id = \"{m}\"\n")).unwrap_or_default();
        job(&glob, "", &out, "jsonl").replace("[input]\n", &format!("[input]\nid = \"id\"\n{set}"))
    };

    // Default: the job fails naming a duplicate id and the setting; nothing committed.
    let e = expect(&dsproc(d, &["run", spec_file(d, &spec(None))]), 1);
    assert!(e.contains("duplicate id \"a\"") || e.contains("duplicate id \"x\""), "{e}");
    assert!(e.contains("on_duplicate_id"), "{e}");
    assert!(!out.join("manifest.json").exists());
    // A misspelled mode is a spec error with its line.
    let e = expect(&dsproc(d, &["validate", spec_file(d, &spec(Some("frist")))]), 2);
    assert!(e.contains("j.toml:") && e.contains("frist"), "{e}");

    // keep: every row, duplicates reported.
    let m = manifest(&dsproc(d, &["run", spec_file(d, &spec(Some("keep"))), "--json"]));
    assert_eq!(m["rows"]["out"], 7);
    assert_eq!(
        m["duplicate_ids"],
        serde_json::json!({"on_duplicate_id": "keep", "ids": 2, "rows": 3,
            "examples": [{"id": "a", "rows": 3}, {"id": "x", "rows": 2}]})
    );

    // first: the first occurrence in input order stays, the others are dropped and
    // counted; the same shards locally (1 and 3 partitions) and in Ballista standalone mode.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut digests = Vec::new();
    for (engine, partitions) in [(Engine::Local, 1), (Engine::Local, 3), (Engine::Standalone, 2)] {
        let out_e = d.join(format!("out-{}-{partitions}", engine.name()));
        let loaded = load(d, &spec(Some("first")).replace(&out.display().to_string(), &out_e.display().to_string()));
        let m = rt.block_on(run(&loaded, engine, partitions)).unwrap();
        assert!(m.rows.balanced());
        assert_eq!((m.rows.rows_in, m.rows.out), (7, 4));
        assert_eq!(m.rows.dropped.get("0:input:duplicate_id"), Some(&3), "{:?}", m.rows.dropped);
        let dups = m.duplicate_ids.as_ref().unwrap();
        assert_eq!((dups.ids, dups.rows, dups.examples.len()), (2, 3, 2));
        let mut texts: Vec<String> =
            read_jsonl_dataset(&out_e, &m).iter().map(|r| r["text"].as_str().unwrap().to_string()).collect();
        texts.sort();
        assert_eq!(texts, ["a first", "b only", "c only", "x in d1"]);
        assert_eq!(m.steps.len(), 0);
        digests.push(shard_digests(&m).into_iter().map(|(_, h)| h).collect::<Vec<_>>());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    // Through the binary: the drop is in the manifest's counts.
    let m = manifest(&dsproc(d, &["run", spec_file(d, &spec(Some("first"))), "--json"]));
    assert_eq!(m["rows"]["dropped"]["0:input:duplicate_id"], 3);

    // Default ids (<file>:<line>) are unique by construction: no check, no report.
    let m = manifest(&dsproc(d, &["run", spec_file(d, &job("in/*.jsonl", "", &out, "jsonl")), "--json"]));
    assert_eq!(m["rows"]["out"], 7);
    assert!(m["duplicate_ids"].is_null(), "{}", m["duplicate_ids"]);
}

/// Small documents first, large ones later: the batch size sampled at the start
/// is far too many rows for the large ones (the engine joins batches by rows). The
/// read stops, the job reruns with smaller batches and commits every row once:
/// nothing of the stopped attempts stays. (The cap is lowered so that a test-sized
/// input reaches it; the default is 512 MiB a batch.)
#[test]
fn rows_far_larger_than_the_sample_rerun_with_smaller_batches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s = String::new();
    for i in 0..600 {
        s.push_str(&serde_json::json!({"text": format!("small {i}")}).to_string());
        s.push('\n');
    }
    let filler = "lorem ipsum dolor sit amet ".repeat(64 << 10 >> 5);
    for i in 0..400 {
        s.push_str(&serde_json::json!({"text": format!("large {i} {filler}")}).to_string());
        s.push('\n');
    }
    std::fs::write(d.join("mixed.jsonl"), s).unwrap();
    let out = d.join("out");
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n";
    let spec = spec_file(d, &job("mixed.jsonl", steps, &out, "jsonl"));
    let o = dsproc_env(d, &["run", spec, "--json"], &[("DSPROC_ENGINE_BATCH_BYTES", "2097152")]);
    let text = said(&o);
    let m = manifest(&o);
    assert!(text.contains("rerunning with"), "no rerun: {text}");
    assert_eq!((m["rows"]["in"].as_u64(), m["rows"]["out"].as_u64()), (Some(1000), Some(1000)), "{}", m["rows"]);
    assert_eq!(m["version"], 1);
    let loaded: dsproc_job::manifest::Manifest = serde_json::from_value(m).unwrap();
    let rows = read_jsonl_dataset(&out, &loaded);
    let mut ids: Vec<String> = rows.iter().map(|r| r["text"].as_str().unwrap().split(' ').take(2).collect()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "every document once");
    assert_only_versions(&out);
    assert!(!out.join("_staging").exists() || std::fs::read_dir(out.join("_staging")).unwrap().next().is_none());
}
