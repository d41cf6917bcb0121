//! Each op, local vs Ballista standalone: identical shards; plus determinism
//! across runs and partition counts.

use dsproc_runtime::Engine;

use crate::common::*;

const STEPS: &[(&str, &str)] = &[
    ("normalize", "[[steps]]\nop = \"normalize\"\nform = \"nfkc\"\n"),
    ("filter", "[[steps]]\nop = \"filter\"\nwhere = \"length(text) >= 30 AND n % 2 = 0\"\n"),
    (
        "sql",
        "[[steps]]\nop = \"sql\"\nquery = \"SELECT id, upper(text) AS text, source FROM input WHERE source <> 's1'\"\n",
    ),
    ("dedup_exact", "[[steps]]\nop = \"dedup_exact\"\n"),
    ("scrub_pii", "[[steps]]\nop = \"scrub_pii\"\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_op_local_equals_ballista_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    synthetic_jsonl(&input.join("a.jsonl"), 400);
    synthetic_jsonl(&input.join("b.jsonl"), 300);
    for (name, steps) in STEPS {
        for format in ["parquet", "jsonl"] {
            let out_local = dir.path().join(format!("{name}-{format}-local"));
            let out_ballista = dir.path().join(format!("{name}-{format}-ballista"));
            let glob = format!("{}/*.jsonl", input.display());
            let local = run(&load(dir.path(), &job(&glob, steps, &out_local, format)), Engine::Local, 3).await.unwrap();
            let decoded_before = dsproc_exec::codec::decoded_nodes();
            let ballista =
                run(&load(dir.path(), &job(&glob, steps, &out_ballista, format)), Engine::Standalone, 3).await.unwrap();
            // The plan really crossed the codecs: scheduler and executor decoded our nodes.
            assert!(dsproc_exec::codec::decoded_nodes() >= decoded_before + 3, "{name}: plan was not serialised");
            assert_eq!(ballista.engine, "ballista-standalone");
            assert!(local.rows.out > 0, "{name}: no rows out");
            assert_eq!(
                shard_digests(&local),
                shard_digests(&ballista),
                "{name}/{format}: local and Ballista shards differ"
            );
            assert_eq!(local.rows, ballista.rows, "{name}/{format}: counts differ");
            assert!(local.rows.balanced());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedup_keeps_smallest_id_and_accounts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines = [
        r#"{"id":"b","text":"same  text"}"#,
        r#"{"id":"a","text":"same text"}"#,
        r#"{"id":"c","text":"other"}"#,
        r#"{"id":"d","text":"same text\n"}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let spec = job(&input.display().to_string(), "[[steps]]\nop = \"dedup_exact\"\n", &out, "jsonl")
        .replace("[input]\n", "[input]\nid = \"id\"\n");
    let m = run(&load(dir.path(), &spec), Engine::Local, 2).await.unwrap();
    let rows = read_jsonl_dataset(&out, &m);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // "same text" and "same text\n" are equal after trim; "same  text" is not (trim keeps inner spaces).
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(m.rows.dropped.get("1:dedup_exact:duplicate"), Some(&1));
    assert!(m.rows.balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_job_twice_and_1_vs_4_partitions_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..3 {
        synthetic_jsonl(&input.join(format!("p{i}.jsonl")), 900);
    }
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"filter\"\nwhere = \"length(text) > 10\"\n[[steps]]\nop = \"dedup_exact\"\n";
    let glob = format!("{}/*.jsonl", input.display());
    let mut digests = Vec::new();
    for (i, partitions) in [1usize, 4, 4, 2].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let m = run(&load(dir.path(), &job(&glob, steps, &out, "parquet")), Engine::Local, *partitions).await.unwrap();
        assert!(m.shards.len() > 1, "want several shards, got {}", m.shards.len());
        digests.push(shard_digests(&m));
    }
    for d in &digests[1..] {
        assert_eq!(&digests[0], d);
    }
}

/// The real consumer: pyarrow reads our Parquet shards and sees exactly the rows
/// of the same job written as JSONL. Skipped (with a printed reason) when no
/// Python with pyarrow is configured (`DSPROC_PYTHON`, set by `.ci/run`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pyarrow_reads_parquet_shards() {
    let Some(python) = std::env::var_os("DSPROC_PYTHON") else {
        skip("pyarrow_reads_parquet_shards: DSPROC_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    synthetic_jsonl(&input, 3000);
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n";
    let pq = dir.path().join("pq");
    let js = dir.path().join("js");
    let m_pq = run(&load(dir.path(), &job(&input.display().to_string(), steps, &pq, "parquet")), Engine::Local, 2)
        .await
        .unwrap();
    let m_js = run(&load(dir.path(), &job(&input.display().to_string(), steps, &js, "jsonl")), Engine::Local, 2)
        .await
        .unwrap();
    assert!(m_pq.shards.len() > 1);
    let script = r#"
import json, sys, pyarrow.parquet as pq
m = json.load(open(sys.argv[1] + "/manifest.json"))
rows = []
for s in m["shards"]:
    t = pq.read_table(sys.argv[1] + "/" + s["path"])
    assert t.num_rows == s["rows"], (s, t.num_rows)
    rows += [[r["id"], r["text"], r["n"]] for r in t.to_pylist()]
print(json.dumps(rows))
"#;
    let o = std::process::Command::new(python).args(["-c", script, pq.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let from_pyarrow: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let expected: Vec<serde_json::Value> =
        read_jsonl_dataset(&js, &m_js).into_iter().map(|r| serde_json::json!([r["id"], r["text"], r["n"]])).collect();
    assert_eq!(from_pyarrow.len() as u64, m_pq.rows.out);
    assert_eq!(from_pyarrow, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_pii_masks_counts_and_drops_in_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pii.jsonl");
    let docs = [
        "Write to Zoë at zoe@example.org or +1 415-555-0132.",
        "no personal data here at all",
        "card 4111 1111 1111 1111 but 4111 1111 1111 1112 is not a card",
        "server 93.184.216.34 and local 10.0.0.1; token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ];
    let body: String = docs.iter().map(|d| serde_json::json!({ "text": d }).to_string() + "\n").collect();
    std::fs::write(&input, body).unwrap();
    let uri = input.display().to_string();
    let mut results = Vec::new();
    for engine in [Engine::Local, Engine::Standalone] {
        let out = dir.path().join(format!("mask-{}", engine.name()));
        let steps = "[[steps]]\nop = \"scrub_pii\"\nkeep_private_ips = true\n";
        let m = run(&load(dir.path(), &job(&uri, steps, &out, "jsonl")), engine.clone(), 2).await.unwrap();
        let rows = read_jsonl_dataset(&out, &m);
        let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
        assert!(texts.contains(&"Write to Zoë at <EMAIL> or <PHONE>."), "{texts:?}");
        assert!(texts.contains(&"card <CREDIT_CARD> but 4111 1111 1111 1112 is not a card"), "{texts:?}");
        assert!(texts.contains(&"server <IP> and local 10.0.0.1; token <SECRET>"), "{texts:?}");
        let zoe = rows.iter().find(|r| r["text"].as_str().unwrap().starts_with("Write")).unwrap();
        assert_eq!(zoe["pii_counts"]["email"], 1);
        // character offsets into the original text (Zoë has a 2-byte char before the email)
        let email = zoe["pii_spans"].as_array().unwrap().iter().find(|s| s["kind"] == "email").unwrap();
        let start = email["start"].as_u64().unwrap() as usize;
        let end = email["end"].as_u64().unwrap() as usize;
        let original: String = docs[0].chars().skip(start).take(end - start).collect();
        assert_eq!(original, "zoe@example.org");
        let stats = &m.steps[0].stats;
        assert_eq!(stats.get("email"), Some(&1));
        assert_eq!(stats.get("credit_card"), Some(&1));
        assert_eq!(stats.get("ip"), Some(&1));
        results.push(shard_digests(&m));

        let out = dir.path().join(format!("drop-{}", engine.name()));
        let steps = "[[steps]]\nop = \"scrub_pii\"\naction = \"drop_document\"\n";
        let m = run(&load(dir.path(), &job(&uri, steps, &out, "jsonl")), engine, 2).await.unwrap();
        assert_eq!(m.rows.out, 1);
        assert_eq!(m.rows.dropped.get("1:scrub_pii:pii"), Some(&3));
        assert!(m.rows.balanced());
    }
    assert_eq!(results[0], results[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrub_pii_hash_needs_salt_and_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pii.jsonl");
    std::fs::write(&input, "{\"text\":\"a@b.example.com and a@b.example.com\"}\n").unwrap();
    let steps = "[[steps]]\nop = \"scrub_pii\"\naction = \"hash\"\nsalt_env = \"DSPROC_TEST_SALT_UNSET\"\n";
    let e = run(
        &load(dir.path(), &job(&input.display().to_string(), steps, &dir.path().join("o"), "jsonl")),
        Engine::Local,
        1,
    )
    .await
    .unwrap_err();
    assert!(e.contains("DSPROC_TEST_SALT_UNSET"), "{e}");
    std::env::set_var("DSPROC_TEST_SALT", "pepper-value");
    let steps = steps.replace("DSPROC_TEST_SALT_UNSET", "DSPROC_TEST_SALT");
    let out = dir.path().join("h");
    let m = run(&load(dir.path(), &job(&input.display().to_string(), &steps, &out, "jsonl")), Engine::Local, 1)
        .await
        .unwrap();
    let text = read_jsonl_dataset(&out, &m)[0]["text"].as_str().unwrap().to_string();
    let parts: Vec<&str> = text.split(" and ").collect();
    assert!(parts[0].starts_with("<EMAIL:") && parts[0] == parts[1], "{text}");
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(!manifest.contains("pepper-value"));
}

/// Multi-step plans read their input once: every step that reads its rows more
/// than once (dedup_exact twice, dedup_minhash three times) shares one execution
/// of its upstream plan, so `explain` shows one input scan and the shards equal
/// Ballista's (where each reference re-executes the upstream plan).
#[test]
fn multi_step_plans_scan_the_input_once() {
    big_stack_runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        synthetic_jsonl(&input, 900);
        let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n\
                 [[steps]]\nop = \"dedup_minhash\"\nthreshold = 0.5\nngram = 2\n[[steps]]\nop = \"scrub_pii\"\n";
        let spec =
            |out: &str| load(dir.path(), &job(&input.display().to_string(), steps, &dir.path().join(out), "parquet"));
        let opts = dsproc_runtime::EngineOptions { target_partitions: 3, memory_limit: None, batch_rows: None };
        let plan = dsproc_runtime::explain_job(&spec("explained"), &opts).await.unwrap();
        let physical = &plan[plan.find("== physical plan").unwrap()..];
        assert_eq!(physical.matches("ReadInputExec").count(), 1, "{physical}");
        assert_eq!(physical.matches("-- shared subplan").count(), 2, "{physical}");
        let local = run(&spec("local"), Engine::Local, 3).await.unwrap();
        let ballista = run(&spec("ballista"), Engine::Standalone, 3).await.unwrap();
        assert!(local.rows.dropped.get("2:dedup_exact:duplicate").is_some_and(|n| *n > 0), "{:?}", local.rows);
        assert!(local.rows.dropped.get("3:dedup_minhash:near_duplicate").is_some_and(|n| *n > 0), "{:?}", local.rows);
        assert_eq!(local.rows, ballista.rows);
        assert_eq!(shard_digests(&local), shard_digests(&ballista));
    });
}
