//! `dsproc schedule`: fire times against croniter, and a scheduler running a job
//! every 2 s while input files appear: incremental versions, no overlapping
//! runs (one scheduler or two), kill -9 mid-run and restart, retries with
//! backoff, webhook events. No test waits on wall-clock minutes.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// `dsproc schedule next` gives croniter's fire times for 90 (expression, zone,
/// start) cases: 5- and 6-field lines, aliases, names, lists, ranges, steps,
/// DOM-or-DOW, Feb 29, and starts just before DST transitions in New York,
/// Berlin, Lord Howe (30-minute DST), São Paulo, Kolkata and UTC.
#[test]
fn schedule_next_agrees_with_croniter_across_dst_transitions() {
    let Some(py) = std::env::var_os("DSPROC_PYTHON") else {
        skip("schedule_next_agrees_with_croniter: DSPROC_PYTHON is not set");
        return;
    };
    let exprs = [
        "* * * * *",
        "*/5 * * * *",
        "0 * * * *",
        "30 2 * * *",
        "30 1 * * *",
        "0 0 * * *",
        "0 0 1 * *",
        "0 0 * * 0",
        "0 0 * * 1-5",
        "15 14 1 * *",
        "0 22 * * 1-5",
        "23 0-20/2 * * *",
        "5 4 * * sun",
        "0 0,12 1 */2 *",
        "0 4 8-14 * *",
        "0 0 1,15 * 3",
        "*/15 9-17 * * mon-fri",
        "0 9 * * sat,sun",
        "59 23 31 12 *",
        "0 0 29 2 *",
        "45 1,2,3 * * *",
        "0 2 * 3 0",
        "0 1-3 * 11 0",
        "*/10 2 * * *",
        "0 3 * * *",
        "0 */3 * * *",
        "10,40 1-4 * * *",
        "0 0 * jan,jul *",
        "0 6 1-7 * 1",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "* * * * * */2",
        "30 2 * * * 15",
        "0 0 * * * 0",
        "*/7 * * * * 30",
        "0 12 * * 7",
        "30 */2 * * *",
        "0 0 1 1 *",
        "15,45 */4 * * 2,4",
        "0 8-18/2 * * *",
        "1 1 1 * *",
        "0 5 * * 6",
    ];
    let zones = [
        ("America/New_York", "2026-03-08T04:00:00+00:00"),
        ("America/New_York", "2026-11-01T03:00:00+00:00"),
        ("Europe/Berlin", "2026-03-29T00:00:00+00:00"),
        ("Europe/Berlin", "2026-10-24T23:00:00+00:00"),
        ("Australia/Lord_Howe", "2026-04-04T13:00:00+00:00"),
        ("UTC", "2026-02-27T00:00:00+00:00"),
        ("Asia/Kolkata", "2026-06-01T00:00:00+00:00"),
        ("America/Sao_Paulo", "2026-01-01T00:00:00+00:00"),
    ];
    let mut cases = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        for j in [i % zones.len(), (i + 3) % zones.len()] {
            cases.push(serde_json::json!({"cron": e, "tz": zones[j].0, "after": zones[j].1, "n": 8}));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = r#"
import json, sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from croniter import croniter
out = []
for c in json.load(open(sys.argv[1])):
    it = croniter(c["cron"], datetime.fromisoformat(c["after"]).astimezone(ZoneInfo(c["tz"])))
    out.append([it.get_next(datetime).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for _ in range(c["n"])])
json.dump(out, sys.stdout)
"#;
    let o = Command::new(py).args(["-c", script, file.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "croniter: {}", String::from_utf8_lossy(&o.stderr));
    let reference: Vec<Vec<String>> = serde_json::from_slice(&o.stdout).unwrap();
    for (c, want) in cases.iter().zip(&reference) {
        let args = [
            "schedule",
            "next",
            "--json",
            "--cron",
            c["cron"].as_str().unwrap(),
            "--timezone",
            c["tz"].as_str().unwrap(),
            "--after",
            c["after"].as_str().unwrap(),
            "-n",
            "8",
        ];
        let o = Command::new(env!("CARGO_BIN_EXE_dsproc")).args(args).output().unwrap();
        assert!(o.status.success(), "{c}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let ours: Vec<String> = v["next"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap())
                    .unwrap()
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            })
            .collect();
        assert_eq!(&ours, want, "{c}: dsproc and croniter disagree");
    }
    assert!(cases.len() >= 50);
}

/// A webhook receiver on 127.0.0.1: every POST body, in order.
struct Hooks {
    url: String,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn hooks() -> Hooks {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push(v);
                }
            }
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Hooks { url, events }
}

struct Scheduler(Child);

impl Scheduler {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log =
            std::fs::File::create(dir.join(format!("scheduler-{}.log", Instant::now().elapsed().as_nanos()))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dsproc"))
            .current_dir(dir)
            .args(["schedule", "j.toml"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self(child)
    }
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
    fn term(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc_kill(self.0.id() as i32, 15) };
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(s)) = self.0.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
        None
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.kill9();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn current(out: &Path) -> Option<serde_json::Value> {
    std::fs::read(out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn run_records(out: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = std::fs::read_dir(out.join("_runs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name() != "lock.json")
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|r: &serde_json::Value| r["started_at"].as_str().unwrap_or("").to_string());
    v
}

/// No two attempts ran at once: each started after the previous one ended.
fn assert_no_overlap(out: &Path) {
    let recs = run_records(out);
    let t = |s: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap();
    for w in recs.windows(2) {
        let Some(end) = w[0]["ended_at"].as_str() else { continue };
        assert!(t(&w[1]["started_at"]) >= t(&serde_json::Value::from(end)), "two runs at once: {} and {}", w[0], w[1]);
    }
}

fn docs(path: &Path, tag: &str, n: usize) {
    let body: String = (0..n)
        .map(|i| serde_json::json!({"id": format!("{tag}{i}"), "text": format!("document {tag} {i} {}", "word ".repeat(i % 7 + 3))}).to_string() + "\n")
        .collect();
    std::fs::write(path, body).unwrap();
}

#[test]
fn a_scheduler_rebuilds_incrementally_every_2s_and_survives_kill_9_retries_and_a_rival() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir_all(&input).unwrap();
    docs(&input.join("a.jsonl"), "a", 40);
    let out: PathBuf = d.join("out");
    let hooks = hooks();
    std::fs::write(
        d.join("j.toml"),
        format!(
            "name = \"sched\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\non_error = \"fail\"\n[[steps]]\nop = \"dedup_exact\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\nmode = \"overwrite\"\nincremental = true\n[schedule]\ncron = \"* * * * * */2\"\nretries = 1\nretry_backoff = \"1s\"\nlease = \"3s\"\nnotify = [\"{}\"]\n",
            hooks.url
        ),
    )
    .unwrap();
    // Committing runs pause 3 s before their commit: longer than the 2 s interval.
    let slow = [("DSPROC_PAUSE_AT", "before-lock"), ("DSPROC_PAUSE_MS", "3000")];
    let mut a = Scheduler::start(d, &slow);
    wait_for("version 1", 60, || current(&out).filter(|m| m["version"] == 1));
    docs(&input.join("b.jsonl"), "b", 10);
    let v2 = wait_for("version 2", 60, || current(&out).filter(|m| m["version"] == 2));
    assert_eq!(v2["incremental"]["mode"], "incremental", "{}", v2["incremental"]);
    assert_eq!(v2["incremental"]["files_read"], 1);
    assert_no_overlap(&out);

    // kill -9 of the scheduler while a run waits before its commit: the run dies
    // with it and commits nothing; a restarted scheduler takes the expired lease,
    // catches up (latest) and commits the change once.
    // A run that started after the new file was written lists it, so it commits
    // (and pauses 3 s first). A run that started just before may list it too and
    // commit it before the kill: then there is nothing left to interrupt, so the
    // next file is written and the wait starts again (versions counted from `base`).
    let started =
        |r: &serde_json::Value| r["started_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let version = || current(&out).and_then(|m| m["version"].as_u64()).unwrap_or(0);
    let mut base = 2u64;
    for k in 0.. {
        assert!(k < 5, "every new file was committed by a run that started before it was written");
        docs(&input.join(format!("c{k}.jsonl")), &format!("c{k}x"), 10);
        let written = chrono::Utc::now();
        let ours = wait_for("a run of the new tick", 60, || {
            if version() > base {
                return Some(false);
            }
            run_records(&out)
                .into_iter()
                .rev()
                .find(|r| r["status"] == "running" && started(r).is_some_and(|t| t > written))
                .map(|_| true)
        });
        if ours {
            std::thread::sleep(Duration::from_millis(500));
            if version() == base {
                break;
            }
        }
        wait_for("the earlier run's commit", 60, || (version() > base).then_some(()));
        base = version();
    }
    a.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(version(), base, "the killed scheduler's run committed");
    assert!(!out.join(format!("_versions/{}.json", base + 1)).exists());
    let mut b = Scheduler::start(d, &[]);
    let v3 = wait_for("the next version after the restart", 60, || current(&out).filter(|m| m["version"] == base + 1));
    assert_eq!(v3["incremental"]["files_read"], 1);
    let recs = run_records(&out);
    assert!(
        recs.iter().any(|r| r["status"] == "interrupted"),
        "the killed run is not recorded as interrupted: {recs:#?}"
    );
    assert_only_versions(&out);
    assert_eq!(b.term(), Some(143), "the scheduler does not exit 143 on SIGTERM");

    // Two schedulers on the same dataset: never two runs at once.
    let mut s1 = Scheduler::start(d, &slow);
    let mut s2 = Scheduler::start(d, &slow);
    docs(&input.join("d.jsonl"), "d", 10);
    wait_for("the rivals' version", 60, || current(&out).filter(|m| m["version"] == base + 2));
    std::thread::sleep(Duration::from_secs(3));
    s2.term();
    s1.term();
    assert_no_overlap(&out);
    assert!(
        !out.join(format!("_versions/{}.json", base + 3)).exists(),
        "the rival schedulers built the same change twice"
    );

    // A failing run (a bad line with on_error = "fail") is retried after the
    // backoff, then reported; fixed, the next tick succeeds (up to date).
    let mut s = Scheduler::start(d, &[]);
    std::fs::write(input.join("e.jsonl"), "{\"id\": \"e1\", \"text\": \"ok\"}\n{not json\n").unwrap();
    wait_for("a failure event", 60, || hooks.events.lock().unwrap().iter().find(|e| e["event"] == "failure").cloned());
    std::fs::remove_file(input.join("e.jsonl")).unwrap();
    let seen = hooks.events.lock().unwrap().len();
    wait_for("a success event after the failure", 60, || {
        hooks.events.lock().unwrap()[seen..].iter().find(|e| e["event"] == "success").cloned()
    });
    s.term();
    let recs = run_records(&out);
    let failed: Vec<&serde_json::Value> = recs.iter().filter(|r| r["status"] == "failed").collect();
    let tick = failed[0]["scheduled_for"].clone();
    let attempts: Vec<&&serde_json::Value> = failed.iter().filter(|r| r["scheduled_for"] == tick).collect();
    assert_eq!(attempts.len(), 2, "a failed run is not retried once: {failed:?}");
    let t = |r: &serde_json::Value, k: &str| chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap();
    assert!(
        t(attempts[1], "started_at") - t(attempts[0], "ended_at") >= chrono::Duration::milliseconds(900),
        "no backoff"
    );
    assert_eq!(attempts[0]["exit"], 1);
    assert!(attempts[0]["reason"].as_str().unwrap_or("").contains("e.jsonl"), "{}", attempts[0]);
    let events = hooks.events.lock().unwrap().clone();
    let first_failure = events.iter().position(|e| e["event"] == "failure").unwrap();
    assert!(events[first_failure + 1..].iter().any(|e| e["event"] == "success"));
    assert!(events.iter().all(|e| e["job"] == "sched"));
    assert_no_overlap(&out);
    assert_only_versions(&out);

    // status lists the runs and the next due time.
    let o = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(d)
        .args(["schedule", "status", "j.toml", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(st["jobs"][0]["next"].is_string());
    assert_eq!(
        st["jobs"][0]["last_success"]["status"].as_str().map(|s| s == "committed" || s == "up_to_date"),
        Some(true)
    );
}

/// The Prefect flow in docs/orchestrators, run for real (Prefect 3, its
/// temporary local server): success hands the committed version and digest to
/// the training task; exit 1 (a malformed line with on_error = "fail") is
/// retried 3 times; exit 2 (no input files) fails at once.
#[test]
fn the_prefect_flow_pins_the_version_and_retries_only_exit_1() {
    let Some(py) = std::env::var_os("DSPROC_PREFECT_PYTHON") else {
        skip("the_prefect_flow: DSPROC_PREFECT_PYTHON is not set (scripts/test.sh installs prefect)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    docs(&d.join("in/a.jsonl"), "a", 20);
    std::fs::write(
        d.join("j.toml"),
        "name = \"pf\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\non_error = \"fail\"\n[[steps]]\nop = \"dedup_exact\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\nmode = \"overwrite\"\n",
    )
    .unwrap();
    let flow = repo().join("docs/orchestrators/prefect_flow.py");
    let run = |job: &str| {
        let o = Command::new(&py)
            .current_dir(d)
            .args([flow.to_str().unwrap(), job])
            .env("DSPROC_BIN", env!("CARGO_BIN_EXE_dsproc"))
            .env("PREFECT_HOME", d.join(".prefect"))
            .env("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
            .env("DSPROC_RETRY_DELAY", "0")
            .output()
            .unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (ok, log) = run("j.toml");
    assert!(ok, "{log}");
    let line = log.lines().find_map(|l| l.strip_prefix("DATASET ")).unwrap_or_else(|| panic!("{log}"));
    let ds: serde_json::Value = serde_json::from_str(line).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(ds["version"], m["version"]);
    assert_eq!(ds["dataset_version"], m["dataset_version"]);
    assert!(log.contains(&format!("version {}", m["version"])), "{log}");

    std::fs::write(d.join("in/bad.jsonl"), "{not json\n").unwrap();
    let (ok, log) = run("j.toml");
    assert!(!ok);
    assert!(log.contains("Retry 3/3") && log.contains("Retries are exhausted"), "exit 1 not retried: {log}");
    assert!(log.contains("dsproc exited 1"), "{log}");
    std::fs::remove_file(d.join("in/bad.jsonl")).unwrap();

    let spec = std::fs::read_to_string(d.join("j.toml")).unwrap().replace("in/*.jsonl", "none/*.jsonl");
    std::fs::write(d.join("k.toml"), spec).unwrap();
    let (ok, log) = run("k.toml");
    assert!(!ok);
    assert!(log.contains("dsproc exited 2") && !log.contains("Retry 1/3"), "exit 2 retried: {log}");
}

/// `max_runtime` stops a run that is still going (a failure, exit 1, with the
/// reason), and `ready_by` deadlines with no good version since the previous
/// one warn and notify `ready_by_missed`.
#[test]
fn max_runtime_stops_a_run_and_ready_by_reports_a_missed_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    docs(&d.join("in/a.jsonl"), "a", 20);
    let hooks = hooks();
    std::fs::write(
        d.join("j.toml"),
        format!(
            "name = \"slow\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\n[[steps]]\nop = \"dedup_exact\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\nmode = \"overwrite\"\n[schedule]\ncron = \"* * * * * */3\"\nmax_runtime = \"1s\"\nready_by = \"* * * * * */2\"\nlease = \"3s\"\nnotify = [\"{}\"]\n",
            hooks.url
        ),
    )
    .unwrap();
    let out = d.join("out");
    let mut s = Scheduler::start(d, &[("DSPROC_PAUSE_AT", "before-lock"), ("DSPROC_PAUSE_MS", "5000")]);
    let failure = wait_for("a failure event", 60, || {
        hooks.events.lock().unwrap().iter().find(|e| e["event"] == "failure").cloned()
    });
    assert!(failure["reason"].as_str().unwrap_or("").contains("max_runtime"), "{failure}");
    assert_eq!(failure["exit"], 1);
    wait_for("a ready_by_missed event", 30, || {
        hooks.events.lock().unwrap().iter().find(|e| e["event"] == "ready_by_missed").cloned()
    });
    s.term();
    assert!(current(&out).is_none(), "a run stopped by max_runtime committed");
}
