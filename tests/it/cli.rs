//! The `dsproc` binary: exit codes, validate, --json, kill safety.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

fn dsproc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn quickstart_runs_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qs");
    let job = repo().join("jobs/quickstart.toml");
    let o =
        dsproc(&repo(), &["run", job.to_str().unwrap(), "--json", "--set", &format!("output.uri={}", out.display())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    let rows = &v["manifest"]["rows"];
    let dropped: u64 = rows["dropped"].as_object().unwrap().values().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(
        rows["in"].as_u64().unwrap(),
        rows["out"].as_u64().unwrap() + rows["quarantined"].as_u64().unwrap() + dropped
    );
    assert!(out.join("manifest.json").exists());
    let o = dsproc(dir.path(), &["inspect", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("dedup_exact"));
    // A second run without overwrite is refused before any data moves.
    let o = dsproc(
        &repo(),
        &[
            "run",
            job.to_str().unwrap(),
            "--set",
            &format!("output.uri={}", out.display()),
            "--set",
            "output.mode=error",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("already holds a committed dataset"));
    // explain prints both plans with our nodes.
    let o = dsproc(&repo(), &["explain", job.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("ReadInputExec") && text.contains("WriteShardsExec"), "{text}");
}

#[test]
fn validate_reports_misspelled_key_with_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        std::fs::read_to_string(repo().join("jobs/quickstart.toml")).unwrap().replace("whitespace = ", "whitespce = ");
    let line = spec.lines().position(|l| l.starts_with("whitespce")).unwrap() + 1;
    std::fs::write(dir.path().join("bad.toml"), spec).unwrap();
    let o = dsproc(dir.path(), &["validate", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains(&format!("bad.toml:{line}:1")), "{e}");
    assert!(e.contains("`whitespce`") && e.contains("did you mean `whitespace`"), "{e}");
    // A good spec validates (inputs are checked too).
    let o = dsproc(&repo(), &["validate", "jobs/quickstart.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn input_errors_exit_2_before_data_moves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), "{\"body\":\"x\"}\n").unwrap();
    let out = dir.path().join("out");
    std::fs::write(dir.path().join("j.toml"), job("a.jsonl", "", &out, "parquet")).unwrap();
    let o = dsproc(dir.path(), &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("text column \"text\" not found") && stderr(&o).contains("body"), "{}", stderr(&o));
    assert!(!out.exists());
    std::fs::write(dir.path().join("j.toml"), job("nothing/*.jsonl", "", &out, "parquet")).unwrap();
    let o = dsproc(dir.path(), &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("matches no files"), "{}", stderr(&o));
    let o = dsproc(dir.path(), &["run", "missing.toml"]);
    assert_eq!(o.status.code(), Some(2));
    // A failing job (bad SQL at run time is a spec error; a data error with on_error=fail is exit 1).
    std::fs::write(dir.path().join("b.jsonl"), "{\"text\":\"x\"}\n{oops\n").unwrap();
    let spec = job("b.jsonl", "", &out, "parquet").replace("[input]\n", "[input]\non_error = \"fail\"\n");
    std::fs::write(dir.path().join("j.toml"), spec).unwrap();
    let o = dsproc(dir.path(), &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("b.jsonl:2"), "{}", stderr(&o));
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn killed_run_leaves_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..4 {
        synthetic_jsonl(&input.join(format!("p{i}.jsonl")), 60_000);
    }
    let out = dir.path().join("out");
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n";
    std::fs::write(dir.path().join("j.toml"), job("in/*.jsonl", steps, &out, "parquet")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir.path())
        .args(["run", "j.toml", "--partitions", "2"])
        .spawn()
        .unwrap();
    // Wait until the run is under way (its staging directory exists), then SIGKILL it.
    let start = Instant::now();
    while !out.join("_staging").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "run never started");
        assert!(child.try_wait().unwrap().is_none(), "run finished before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!out.join("manifest.json").exists(), "a killed run committed a manifest");
    let o = dsproc(dir.path(), &["inspect", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no committed dataset"));
    // gc removes the dead run's staging, and nothing of the user's directories
    // (given the job spec: its output.uri).
    let o = dsproc(dir.path(), &["gc", "j.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed staging of run"), "{o:?}");
    assert!(!out.join("_staging").exists(), "gc left the staging directory");
    assert!(dir.path().join("in").is_dir() && dir.path().is_dir());
    // A rerun commits one complete dataset, and leaves only the dataset behind
    // (its version: shards under v00001/, the version record and the history).
    let o = dsproc(dir.path(), &["run", "j.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("manifest.json").exists());
    assert_only_versions(&out);
    // A live run's staging is kept.
    let live = out.join("_staging/20990101T000000Z-live");
    std::fs::create_dir_all(&live).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let now = chrono_now();
    std::fs::write(
        live.join("_run.json"),
        serde_json::json!({"run_id": "20990101T000000Z-live", "host": host, "pid": std::process::id(),
            "started_at": now, "heartbeat_at": now})
        .to_string(),
    )
    .unwrap();
    let o = dsproc(dir.path(), &["gc", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("kept staging of live run"), "{o:?}");
    assert!(live.join("_run.json").exists());
}

/// Now as RFC 3339 (UTC), without a date crate in the tests.
fn chrono_now() -> String {
    let o = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn every_example_job_validates_and_explains() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let p = path.to_str().unwrap();
        let Some(extra) = crate::common::example_job_args(&path) else { continue };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = dsproc(&repo(), &[&["validate", p], extra.as_slice()].concat());
        assert!(o.status.success(), "{p}: {}", stderr(&o));
        let o = dsproc(&repo(), &[&["explain", p], extra.as_slice()].concat());
        assert!(o.status.success(), "{p}: {}", stderr(&o));
    }
    assert!(n >= 2);
}
