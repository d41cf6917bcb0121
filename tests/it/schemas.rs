//! Nothing lost or changed on the way in (issue 15): the input schema covers
//! every row, values are never coerced, formats are decided per file, odd files
//! (BOM, blank, huge lines) read right, and oversized rows are quarantined.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use dsproc_runtime::Engine;

use crate::common::*;

/// The quarantined rows of the current version, in line order.
fn quarantined(out: &Path) -> Vec<serde_json::Value> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let mut rows = Vec::new();
    for q in m["quarantine"].as_array().unwrap() {
        let text = std::fs::read_to_string(out.join(q.as_str().unwrap())).unwrap();
        rows.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
    }
    rows.sort_by_key(|r| (r["file"].as_str().unwrap_or("").to_string(), r["line"].as_u64()));
    rows
}

/// Rows of a JSONL.zst dataset by id.
fn by_id(out: &Path, m: &dsproc_job::manifest::Manifest) -> std::collections::BTreeMap<String, serde_json::Value> {
    read_jsonl_dataset(out, m).into_iter().map(|r| (r["id"].as_str().unwrap().to_string(), r)).collect()
}

fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// 1,500 lines: a column that first appears at line 1,201, a float at line 1,301
/// in a column of integers, an object and a string in one column near the top.
fn late_columns(path: &Path) {
    let lines: Vec<serde_json::Value> = (0..1500)
        .map(|i| {
            let mut d = serde_json::json!({"text": format!("doc {i}"), "n": i});
            if i >= 1200 {
                d["late"] = format!("x{i}").into();
            }
            if i == 1300 {
                d["n"] = 1.5.into();
            }
            if i == 5 {
                d["meta"] = serde_json::json!({"a": [1, 2]});
            }
            if i == 7 {
                d["meta"] = "plain".into();
            }
            d
        })
        .collect();
    write_lines(path, &lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_row_shapes_the_schema_and_values_widen_never_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("late.jsonl");
    late_columns(&input);
    let mut digests = Vec::new();
    for engine in [Engine::Local, Engine::Standalone] {
        let out = dir.path().join(format!("out-{}", engine.name()));
        let m = run(&load(dir.path(), &job(&input.display().to_string(), "", &out, "jsonl")), engine.clone(), 3)
            .await
            .unwrap();
        assert_eq!((m.rows.rows_in, m.rows.out, m.rows.quarantined), (1500, 1500, 0));
        assert!(m.rows.balanced());
        let types: Vec<(String, String)> =
            m.input_schema.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect();
        assert!(types.contains(&("late".into(), "Utf8".into())), "{types:?}");
        assert!(types.contains(&("n".into(), "Float64".into())), "{types:?}");
        assert!(types.contains(&("meta".into(), "Utf8".into())), "{types:?}");
        let rows = by_id(&out, &m);
        assert_eq!(rows["late.jsonl:1301"]["n"], serde_json::json!(1.5), "never truncated to 1");
        assert_eq!(rows["late.jsonl:1301"]["late"], "x1300");
        assert_eq!(rows["late.jsonl:1500"]["late"], "x1499");
        assert_eq!(rows["late.jsonl:6"]["meta"], r#"{"a":[1,2]}"#, "objects are kept as their JSON text");
        assert_eq!(rows["late.jsonl:8"]["meta"], "plain");
        digests.push(shard_digests(&m));
    }
    assert_eq!(digests[0], digests[1], "local vs Ballista");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declared_schema_quarantines_what_does_not_fit_and_handles_extra_keys() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("late.jsonl");
    late_columns(&input);
    let with = |mode: &str, out: &Path| {
        job(&input.display().to_string(), "", out, "jsonl").replace(
            "[input]\n",
            &format!("[input]\nextra_columns = \"{mode}\"\nschema = {{ text = \"string\", n = \"int64\", meta = \"json\" }}\n"),
        )
    };
    for engine in [Engine::Local, Engine::Standalone] {
        // keep: the undeclared `late` is kept with its inferred type.
        let out = dir.path().join(format!("keep-{}", engine.name()));
        let m = run(&load(dir.path(), &with("keep", &out)), engine.clone(), 2).await.unwrap();
        assert_eq!((m.rows.rows_in, m.rows.out, m.rows.quarantined), (1500, 1499, 1));
        assert!(m.rows.balanced());
        let q = quarantined(&out);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0]["line"], 1301);
        assert!(q[0]["file"].as_str().unwrap().ends_with("late.jsonl"));
        let reason = q[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("column \"n\"") && reason.contains("expected int64") && reason.contains("1.5"),
            "{reason}"
        );
        let rows = by_id(&out, &m);
        assert_eq!(rows["late.jsonl:1201"]["late"], "x1200");
        assert_eq!(rows["late.jsonl:1300"]["n"], 1299);
        // drop: counted per key in the manifest.
        let out = dir.path().join(format!("drop-{}", engine.name()));
        let m = run(&load(dir.path(), &with("drop", &out)), engine.clone(), 2).await.unwrap();
        assert_eq!(m.extra_columns_dropped.get("late"), Some(&299), "{:?}", m.extra_columns_dropped);
        assert!(!m.input_schema.iter().any(|c| c.name == "late"));
        assert!(m.rows.balanced());
        // error: names file, line and key.
        let out = dir.path().join(format!("error-{}", engine.name()));
        let e = run(&load(dir.path(), &with("error", &out)), engine.clone(), 2).await.unwrap_err();
        assert!(e.contains("late.jsonl:1201") && e.contains("key \"late\""), "{e}");
        assert!(!out.join("manifest.json").exists());
    }
}

fn dsproc(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}

#[test]
fn formats_are_decided_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("mixed")).unwrap();
    write_lines(&d.join("mixed/a.jsonl"), &[serde_json::json!({"text": "one"})]);
    // A real Parquet file: the shard of a first run.
    std::fs::write(d.join("p.toml"), job("mixed/a.jsonl", "", &d.join("pq"), "parquet")).unwrap();
    let o = dsproc(d, &["run", "p.toml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shard = std::fs::read_dir(d.join("pq/v00001"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .unwrap()
        .path();
    std::fs::copy(&shard, d.join("mixed/b.parquet")).unwrap();

    // A glob over two formats: a spec error naming two files.
    std::fs::write(d.join("m.toml"), job("mixed/*", "", &d.join("out"), "jsonl")).unwrap();
    for cmd in ["validate", "run"] {
        let o = dsproc(d, &[cmd, "m.toml"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("a.jsonl") && err.contains("b.parquet") && err.contains("mixes formats"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A Parquet file named .jsonl: refused naming it, not read as garbage lines.
    std::fs::copy(&shard, d.join("mixed/c.jsonl")).unwrap();
    std::fs::write(d.join("c.toml"), job("mixed/*.jsonl", "", &d.join("out"), "jsonl")).unwrap();
    let o = dsproc(d, &["run", "c.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("c.jsonl") && err.contains("Parquet"), "{err}");
    assert!(!d.join("out/manifest.json").exists());
    // With `format` given, a file whose name says otherwise is refused.
    let spec = job("mixed/*", "", &d.join("out"), "jsonl").replace("[input]\n", "[input]\nformat = \"parquet\"\n");
    std::fs::write(d.join("f.toml"), spec).unwrap();
    let o = dsproc(d, &["validate", "f.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("a.jsonl") && err.contains("input.format"), "{err}");
    // The Parquet file alone reads its one row.
    std::fs::write(d.join("b.toml"), job("mixed/*.parquet", "", &d.join("outb"), "jsonl")).unwrap();
    let o = dsproc(d, &["run", "b.toml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bom_blank_files_and_huge_first_lines_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("in");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a-bom.jsonl"), b"\xEF\xBB\xBF{\"text\":\"first\"}\n{\"text\":\"second\"}\n").unwrap();
    std::fs::write(d.join("b-blank.jsonl"), "\n\n   \n\r\n").unwrap();
    // A 6 MB first line: more than any sample of the first lines holds.
    let big = "y".repeat(6 << 20);
    std::fs::write(d.join("c-big.jsonl"), format!("{{\"text\":\"{big}\",\"k\":1}}\n{{\"text\":\"small\",\"k\":2}}\n"))
        .unwrap();
    for engine in [Engine::Local, Engine::Standalone] {
        let out = dir.path().join(format!("out-{}", engine.name()));
        let m =
            run(&load(dir.path(), &job(&d.display().to_string(), "", &out, "jsonl")), engine.clone(), 2).await.unwrap();
        assert_eq!((m.rows.rows_in, m.rows.out, m.rows.quarantined), (4, 4, 0));
        let rows = by_id(&out, &m);
        assert_eq!(rows["a-bom.jsonl:1"]["text"], "first", "the BOM is stripped, the row kept");
        assert_eq!(rows["c-big.jsonl:1"]["text"].as_str().unwrap().len(), 6 << 20);
        assert_eq!(rows["c-big.jsonl:2"]["k"], 2);
        // Blank-only files are empty inputs; a blank-only input is an empty dataset.
        let blank = dir.path().join(format!("blank-{}", engine.name()));
        let spec = job(&d.join("b-blank.jsonl").display().to_string(), "", &blank, "jsonl");
        let m = run(&load(dir.path(), &spec), engine.clone(), 1).await.unwrap();
        assert_eq!((m.rows.rows_in, m.rows.out), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_over_max_document_bytes_are_quarantined_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = "z".repeat(3 << 20);
    std::fs::write(d.join("in.jsonl"), format!("{{\"text\":\"{big}\"}}\n{{\"text\":\"ok\"}}\n")).unwrap();
    std::fs::create_dir_all(d.join("txt")).unwrap();
    std::fs::write(d.join("txt/big.txt"), &big).unwrap();
    std::fs::write(d.join("txt/small.txt"), "fine").unwrap();
    // CSV: a quoted 3 MB field holding a line end, skipped without being read whole;
    // the next record's line number counts the skipped lines.
    std::fs::write(d.join("in.csv"), format!("text,n\n\"{}\n{}\",1\nok,2\n", &big[..1 << 20], &big[1 << 20..]))
        .unwrap();
    for engine in [Engine::Local, Engine::Standalone] {
        for (input, small) in [("in.jsonl", "in.jsonl:2"), ("txt", "small.txt:1"), ("in.csv", "in.csv:4")] {
            let out = d.join(format!("out-{input}-{}", engine.name()));
            let spec = job(&d.join(input).display().to_string(), "", &out, "jsonl")
                .replace("[input]\n", "[input]\nmax_document_bytes = \"1MiB\"\n");
            let m = run(&load(d, &spec), engine.clone(), 2).await.unwrap();
            assert_eq!((m.rows.rows_in, m.rows.out, m.rows.quarantined), (2, 1, 1), "{input}");
            assert!(m.rows.balanced());
            let q = quarantined(&out);
            let reason = q[0]["reason"].as_str().unwrap();
            assert!(reason.starts_with("too_large: 31457"), "the size is recorded: {reason}");
            assert!(reason.contains("input.max_document_bytes (1048576)"), "{reason}");
            assert_eq!(q[0]["raw"], "", "the bytes are not copied");
            assert!(by_id(&out, &m).contains_key(small));
        }
    }
    // CR-only and CRLF CSV files larger than the cap: every record is its own row
    // (the cap applies per record, not to a file without "\n"). Without input.id,
    // CR-only records would share line-number ids: that is an error naming the file.
    let body: String = std::iter::once("text,n\r".to_string()).chain((0..3).map(|i| format!("doc{i},{i}\r"))).collect();
    std::fs::write(d.join("cr-noid.csv"), body).unwrap();
    let spec = job(&d.join("cr-noid.csv").display().to_string(), "", &d.join("out-cr-noid"), "jsonl");
    let e = run(&load(d, &spec), Engine::Local, 2).await.unwrap_err();
    assert!(e.contains("cr-noid.csv") && e.contains("lone \\r") && e.contains("input.id"), "{e}");
    for (name, end, id) in [("cr.csv", "\r", "id = \"n\"\n"), ("crlf.csv", "\r\n", "")] {
        let body: String =
            std::iter::once(format!("text,n{end}")).chain((0..120_000).map(|i| format!("doc{i},{i}{end}"))).collect();
        assert!(body.len() > 1 << 20);
        std::fs::write(d.join(name), body).unwrap();
        let out = d.join(format!("out-{name}"));
        let spec = job(&d.join(name).display().to_string(), "", &out, "jsonl")
            .replace("[input]\n", &format!("[input]\n{id}max_document_bytes = \"1MiB\"\n"));
        let m = run(&load(d, &spec), Engine::Local, 2).await.unwrap();
        assert_eq!((m.rows.rows_in, m.rows.out, m.rows.quarantined), (120_000, 120_000, 0), "{name}");
        let rows = by_id(&out, &m);
        assert_eq!(rows.len(), 120_000, "{name}: ids repeat");
        assert!(rows.values().any(|r| r["text"] == "doc119999"), "{name}: the last record is missing");
    }
    // A bad size is a spec error at its key.
    let spec = job("in.jsonl", "", &d.join("o"), "jsonl")
        .replace("[input]\n", "[input]\nmax_document_bytes = \"9 parsecs\"\n");
    std::fs::write(d.join("bad.toml"), spec).unwrap();
    let o = dsproc(d, &["validate", "bad.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:") && err.contains("max_document_bytes"), "{err}");
}
