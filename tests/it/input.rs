//! Readers and bad input.

use std::io::Write;

use dsproc_runtime::Engine;

use crate::common::*;

/// The quarantined rows of the current version (the files its manifest lists).
fn quarantined(out: &std::path::Path) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let Ok(bytes) = std::fs::read(out.join("manifest.json")) else {
        return rows;
    };
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for q in m["quarantine"].as_array().unwrap() {
        let text = std::fs::read_to_string(out.join(q.as_str().unwrap())).unwrap();
        rows.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
    }
    rows.sort_by_key(|r| r["line"].as_u64());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_lines_are_quarantined_with_line_numbers_in_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, r#"{{"text":"good one"}}"#).unwrap(); // 1
    writeln!(f, r#"{{"text":"broken""#).unwrap(); // 2 malformed
    writeln!(f, r#"{{"text":"good two"}}"#).unwrap(); // 3
    f.write_all(b"{\"text\":\"bad \xff\xfe utf8\"}\n").unwrap(); // 4 invalid UTF-8
    writeln!(f, r#"{{"text":null}}"#).unwrap(); // 5 null text
    writeln!(f, r#"not json at all"#).unwrap(); // 6 malformed
    writeln!(f).unwrap(); // 7 blank: not a row
    writeln!(f, r#"{{"text":"good three", "extra": 1}}"#).unwrap(); // 8
    writeln!(f, r#"{{"text": 12}}"#).unwrap(); // 9 not a string
    writeln!(f, r#"[1,2]"#).unwrap(); // 10 not an object
    writeln!(f, r#"{{"text":"good four"}}"#).unwrap(); // 11
    drop(f);
    for engine in [Engine::Local, Engine::Standalone] {
        let out = dir.path().join(format!("out-{}", engine.name()));
        let m = run(&load(dir.path(), &job(&input.display().to_string(), "", &out, "jsonl")), engine, 2).await.unwrap();
        assert_eq!(m.rows.rows_in, 10);
        assert_eq!(m.rows.out, 4);
        assert_eq!(m.rows.quarantined, 6);
        assert!(m.rows.balanced());
        let q = quarantined(&out);
        let lines: Vec<u64> = q.iter().map(|r| r["line"].as_u64().unwrap()).collect();
        assert_eq!(lines, [2, 4, 5, 6, 9, 10]);
        assert!(q[0]["reason"].as_str().unwrap().contains("malformed JSON"), "{}", q[0]);
        assert!(q[1]["reason"].as_str().unwrap().contains("invalid UTF-8"), "{}", q[1]);
        assert!(q[1]["raw_hex"].as_str().is_some());
        assert!(q[2]["reason"].as_str().unwrap().contains("null"), "{}", q[2]);
        assert!(q[4]["reason"].as_str().unwrap().contains("not a string"), "{}", q[4]);
        assert!(q.iter().all(|r| r["file"].as_str().unwrap().ends_with("bad.jsonl")));
        let ids: Vec<String> =
            read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ["bad.jsonl:1", "bad.jsonl:11", "bad.jsonl:3", "bad.jsonl:8"]);
    }
    // on_error = "fail" stops at the first bad line and names it.
    let out = dir.path().join("out-fail");
    let spec =
        job(&input.display().to_string(), "", &out, "jsonl").replace("[input]\n", "[input]\non_error = \"fail\"\n");
    let e = run(&load(dir.path(), &spec), Engine::Local, 1).await.unwrap_err();
    assert!(e.contains("bad.jsonl:2") && e.contains("malformed JSON"), "{e}");
    assert!(!out.join("manifest.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compressed_csv_parquet_and_text_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = (0..50).map(|i| format!("document number {i}, with a comma")).collect();
    // JSONL .gz and .zst
    let plain: String = docs.iter().map(|d| serde_json::json!({"text": d}).to_string() + "\n").collect();
    let gz = dir.path().join("gz");
    std::fs::create_dir_all(&gz).unwrap();
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(gz.join("a.jsonl.gz")).unwrap(), Default::default());
    enc.write_all(plain.as_bytes()).unwrap();
    enc.finish().unwrap();
    std::fs::write(gz.join("b.jsonl.zst"), zstd::encode_all(plain.as_bytes(), 3).unwrap()).unwrap();
    let out = dir.path().join("o1");
    let m = run(&load(dir.path(), &job(&format!("{}/*", gz.display()), "", &out, "jsonl")), Engine::Local, 2)
        .await
        .unwrap();
    assert_eq!(m.rows.out, 100);
    let ids: std::collections::BTreeSet<String> =
        read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert!(ids.contains("a.jsonl.gz:50") && ids.contains("b.jsonl.zst:1"));

    // CSV with a header, quoted commas and one short row.
    let csv_dir = dir.path().join("csv");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let mut csv = String::from("title,text\n");
    for (i, d) in docs.iter().enumerate() {
        csv.push_str(&format!("t{i},\"{d}\"\n"));
    }
    csv.push_str("only-one-field\n");
    std::fs::write(csv_dir.join("d.csv"), csv).unwrap();
    let out = dir.path().join("o2");
    let m =
        run(&load(dir.path(), &job(&format!("{}/d.csv", csv_dir.display()), "", &out, "jsonl")), Engine::Standalone, 2)
            .await
            .unwrap();
    assert_eq!((m.rows.out, m.rows.quarantined), (50, 1));
    let rows = read_jsonl_dataset(&out, &m);
    assert!(rows.iter().any(|r| r["title"] == "t3" && r["text"] == docs[3].as_str()));

    // Text files: one document per file, id = relative path.
    let txt = dir.path().join("txt");
    std::fs::create_dir_all(txt.join("sub")).unwrap();
    std::fs::write(txt.join("one.txt"), "first file\nwith two lines").unwrap();
    std::fs::write(txt.join("sub/two.txt"), "second").unwrap();
    let out = dir.path().join("o3");
    let m = run(&load(dir.path(), &job(&format!("{}/**/*.txt", txt.display()), "", &out, "jsonl")), Engine::Local, 2)
        .await
        .unwrap();
    let rows = read_jsonl_dataset(&out, &m);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["one.txt:1", "sub/two.txt:1"]);

    // Parquet in, with an id column; null text quarantined.
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Int64, false),
        Field::new("body", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(Int64Array::from(vec![7, 3, 5])),
            std::sync::Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
        ],
    )
    .unwrap();
    let pq = dir.path().join("in.parquet");
    let mut w =
        datafusion::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out = dir.path().join("o4");
    let spec = job(&pq.display().to_string(), "", &out, "jsonl")
        .replace("[input]\n", "[input]\ntext = \"body\"\nid = \"doc_id\"\n");
    let m = run(&load(dir.path(), &spec), Engine::Standalone, 2).await.unwrap();
    let rows = read_jsonl_dataset(&out, &m);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["5", "7"]);
    assert_eq!(m.rows.quarantined, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn big_file_split_into_ranges_keeps_line_ids() {
    // > 8 MiB so the reader splits it into ranges read in parallel.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let mut s = String::new();
    let filler = "x".repeat(200);
    for i in 1..=60_000u64 {
        s.push_str(&serde_json::json!({"text": format!("{i} {filler}"), "line": i}).to_string());
        s.push('\n');
    }
    std::fs::write(&input, s).unwrap();
    let mut digests = Vec::new();
    for p in [1, 3, 4] {
        let out = dir.path().join(format!("o{p}"));
        let m = run(&load(dir.path(), &job(&input.display().to_string(), "", &out, "jsonl")), Engine::Local, p)
            .await
            .unwrap();
        assert_eq!(m.rows.out, 60_000);
        for r in read_jsonl_dataset(&out, &m) {
            assert_eq!(r["id"].as_str().unwrap(), format!("big.jsonl:{}", r["line"]));
        }
        digests.push(shard_digests(&m));
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], digests[2]);
}

/// `input.uri = "http://…"`: one file read through object_store from a real HTTP
/// server on 127.0.0.1 (python's http.server, which ignores Range requests, so
/// ranges after the first are read by skipping) gives the same shards as the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_over_http_reads_like_the_local_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = d.join("www");
    std::fs::create_dir_all(&serve).unwrap();
    // > 2 × 8 MiB: split into several ranges.
    let mut body = String::new();
    for i in 0..60_000 {
        body.push_str(&serde_json::json!({"text": format!("line {i} {}", "http range read ".repeat(20))}).to_string());
        body.push('\n');
    }
    std::fs::write(serve.join("docs.jsonl"), body).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(&serve)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed().as_secs() < 20, "http.server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let steps = "[[steps]]\nop = \"normalize\"\n";
    let local = load(d, &job(&format!("{}/docs.jsonl", serve.display()), steps, &d.join("local"), "parquet"));
    let remote = load(d, &job(&format!("http://127.0.0.1:{port}/docs.jsonl"), steps, &d.join("http"), "parquet"));
    let (a, b) = (run(&local, Engine::Local, 4).await, run(&remote, Engine::Local, 4).await);
    let _ = server.kill();
    let _ = server.wait();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.rows.out, 60_000);
    assert_eq!(shard_digests(&a), shard_digests(&b), "shards read over HTTP differ from the local file's");
    assert_eq!(b.inputs[0].uri, format!("http://127.0.0.1:{port}/docs.jsonl"));
}
