//! Dataset versions through the `dsproc` binary: two overwrite runs make two
//! versions, inspect/versions/diff/rollback, retention with `gc --keep`, racing
//! jobs, runs killed (SIGKILL) at many instants, SIGTERM / SIGINT, commits that
//! fail midway (read-only directory, full disk), lineage output and events, and
//! dataset roots as inputs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::common::*;

fn dsproc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "dsproc failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every shard a manifest lists exists under `out` with its recorded sha256.
fn assert_intact(out: &Path, m: &serde_json::Value) {
    for s in m["shards"].as_array().unwrap() {
        let p = out.join(s["path"].as_str().unwrap());
        let body = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(hex::encode(sha2::Sha256::digest(&body)), s["sha256"].as_str().unwrap(), "{}", p.display());
    }
}

/// A job writing the sample's quickstart steps over `input` to `out`.
fn write_job(dir: &Path, input: &str, out: &Path, extra: &str) -> PathBuf {
    let p = dir.join("j.toml");
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n";
    std::fs::write(&p, format!("{}{extra}", job(input, steps, out, "parquet"))).unwrap();
    p
}

fn sample_input(dir: &Path, files: usize, docs: usize) -> String {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..files {
        synthetic_jsonl(&input.join(format!("p{i}.jsonl")), docs);
    }
    format!("{}/*.jsonl", input.display())
}

#[test]
fn overwrite_commits_new_versions_and_old_ones_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 1, 3000);
    let out = dir.path().join("out");
    write_job(dir.path(), &input, &out, "");
    let m1 = json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q"]))["manifest"].clone();
    assert_eq!((m1["version"].as_u64(), m1["parent_version"].as_u64()), (Some(1), None));
    assert!(m1["shards"][0]["path"].as_str().unwrap().starts_with("v00001/"), "{}", m1["shards"]);
    // A second run with another filter: version 2 on top of 1.
    let m2 =
        json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q", "--set", "steps.0.form=nfkc"]))["manifest"].clone();
    let current = read_json(&out.join("manifest.json"));
    assert_eq!((current["version"].as_u64(), current["parent_version"].as_u64()), (Some(2), Some(1)));
    assert_eq!(current["status"], "current");
    assert_eq!(current["run_id"], m2["run_id"]);
    // Version 1 is recorded, immutable, and every shard it lists is intact.
    let v1 = read_json(&out.join("_versions/1.json"));
    assert_eq!(v1["run_id"], m1["run_id"]);
    assert_intact(&out, &v1);
    assert_intact(&out, &current);
    assert_eq!(read_json(&out.join("_versions/2.json"))["run_id"], m2["run_id"]);
    // inspect --version 1 shows version 1 (superseded now).
    let o = dsproc(dir.path(), &["inspect", out.to_str().unwrap(), "--version", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("version 1 (superseded), parent none"), "{text}");
    let o = dsproc(dir.path(), &["inspect", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("version 2 (current), parent 1"));
    let o = dsproc(dir.path(), &["inspect", out.to_str().unwrap(), "--version", "7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no version 7"), "{}", stderr(&o));
    // versions --json lists both.
    let v = json(&dsproc(dir.path(), &["versions", out.to_str().unwrap(), "--json"]));
    let rows = v["versions"].as_array().unwrap();
    let got: Vec<(u64, &str)> =
        rows.iter().map(|r| (r["version"].as_u64().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(got, vec![(1, "superseded"), (2, "current")]);
    assert_eq!(rows[1]["parent"], 1);
    assert_eq!(rows[0]["rows_out"], m1["rows"]["out"]);
    // diff: the spec changed, the inputs did not.
    let d = json(&dsproc(dir.path(), &["diff", out.to_str().unwrap(), "1", "2", "--json"]));
    assert_eq!(d["spec"]["same"], false);
    assert_eq!(d["inputs"]["changed"].as_array().unwrap().len(), 0);
    assert_eq!(d["rows"]["out"]["a"], m1["rows"]["out"]);
    // rollback makes 1 current again, recorded as a pointer change.
    let o = dsproc(dir.path(), &["rollback", out.to_str().unwrap(), "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let current = read_json(&out.join("manifest.json"));
    assert_eq!((current["version"].as_u64(), current["run_id"].clone()), (Some(1), m1["run_id"].clone()));
    let history: Vec<serde_json::Value> = {
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(out.join("_history")).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        names.iter().map(|p| read_json(p)).collect()
    };
    let actions: Vec<(&str, u64)> =
        history.iter().map(|e| (e["action"].as_str().unwrap(), e["version"].as_u64().unwrap())).collect();
    assert_eq!(actions, vec![("commit", 1), ("commit", 2), ("rollback", 1)]);
    // mode = "error" refuses while any version exists.
    let o = dsproc(dir.path(), &["run", "j.toml", "--set", "output.mode=error"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already holds a committed dataset"), "{}", stderr(&o));
    assert_only_versions(&out);
}

#[test]
fn gc_keep_one_leaves_only_the_current_version_and_rollback_refuses_expired() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 1, 2000);
    let out = dir.path().join("out");
    write_job(dir.path(), &input, &out, "");
    for form in ["nfc", "nfkc", "none"] {
        json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q", "--set", &format!("steps.0.form={form}")]));
    }
    let o = dsproc(dir.path(), &["gc", out.to_str().unwrap(), "--keep", "1", "--dry-run", "--json"]);
    let r = json(&o);
    assert_eq!(r["expired"], serde_json::json!([1, 2]));
    assert!(out.join("v00001").is_dir(), "a dry run removed files");
    let r = json(&dsproc(dir.path(), &["gc", out.to_str().unwrap(), "--keep", "1", "--json"]));
    assert_eq!(r["expired"], serde_json::json!([1, 2]));
    assert_eq!(r["kept"], serde_json::json!([3]));
    let current = read_json(&out.join("manifest.json"));
    assert_eq!(current["version"], 3);
    assert_intact(&out, &current);
    // Only the current version's files are left (and the records and history).
    assert!(!out.join("v00001").exists() && !out.join("v00002").exists());
    let files: Vec<String> = walk(&out).into_iter().filter(|p| p.starts_with("v0")).collect();
    let listed: Vec<String> =
        current["shards"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(files, listed);
    let v = json(&dsproc(dir.path(), &["versions", out.to_str().unwrap(), "--json"]));
    let st: Vec<&str> = v["versions"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(st, vec!["expired", "expired", "current"]);
    let o = dsproc(dir.path(), &["rollback", out.to_str().unwrap(), "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("version 1 is expired"), "{}", stderr(&o));
    assert_eq!(read_json(&out.join("manifest.json"))["version"], 3);
    // --older-than keeps versions younger than the cutoff.
    json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q"]));
    let r = json(&dsproc(dir.path(), &["gc", out.to_str().unwrap(), "--keep", "1", "--older-than", "1d", "--json"]));
    assert_eq!(r["expired"], serde_json::json!([]));
    assert!(out.join("v00003").is_dir());
}

/// Files below `dir`, relative to it, sorted (tolerating a run that removes
/// directories while they are walked).
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let Ok(e) = e else { continue };
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn racing_overwrite_jobs_both_commit_with_distinct_versions() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 2, 3000);
    let out = dir.path().join("out");
    write_job(dir.path(), &input, &out, "");
    let spawn = |form: &str| {
        Command::new(env!("CARGO_BIN_EXE_dsproc"))
            .current_dir(dir.path())
            .args(["run", "j.toml", "--json", "-q", "--partitions", "1", "--set", &format!("steps.0.form={form}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("nfc"), spawn("nfkc"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ma, mb) = (json(&a)["manifest"].clone(), json(&b)["manifest"].clone());
    let mut versions = [ma["version"].as_u64().unwrap(), mb["version"].as_u64().unwrap()];
    versions.sort();
    assert_eq!(versions, [1, 2], "two runs must commit two distinct versions");
    let current = read_json(&out.join("manifest.json"));
    assert!(current["run_id"] == ma["run_id"] || current["run_id"] == mb["run_id"]);
    for m in [&ma, &mb] {
        let rec = read_json(&out.join(format!("_versions/{}.json", m["version"])));
        assert_eq!(rec["run_id"], m["run_id"]);
        assert_intact(&out, &rec);
    }
    assert_only_versions(&out);
}

/// A dataset root as the kill tests see it: a local directory or an S3 prefix.
pub(crate) trait Root {
    /// The object at `rel`.
    fn get(&self, rel: &str) -> Option<Vec<u8>>;
    /// Keys below `rel`, relative to it, sorted (empty when there are none).
    fn keys(&self, rel: &str) -> Vec<String>;
    /// Nothing but committed versions is there.
    fn assert_only_versions(&self);
}

struct LocalRoot(PathBuf);

impl Root for LocalRoot {
    fn get(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.join(rel)).ok()
    }
    fn keys(&self, rel: &str) -> Vec<String> {
        walk(&self.0.join(rel))
    }
    fn assert_only_versions(&self) {
        assert_only_versions(&self.0)
    }
}

/// The current version as a reader sees it: one complete version (its record
/// names the same run), every shard there with its sha256.
pub(crate) fn assert_one_complete_version(root: &dyn Root) -> Option<u64> {
    let m: serde_json::Value = serde_json::from_slice(&root.get("manifest.json")?).unwrap();
    let v = m["version"].as_u64().unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&root.get(&format!("_versions/{v}.json")).unwrap()).unwrap();
    assert_eq!(rec["run_id"], m["run_id"]);
    for s in m["shards"].as_array().unwrap() {
        let path = s["path"].as_str().unwrap();
        let body = root.get(path).unwrap_or_else(|| panic!("{path} is listed but missing"));
        assert_eq!(hex::encode(sha2::Sha256::digest(&body)), s["sha256"].as_str().unwrap(), "{path}");
    }
    Some(v)
}

fn spawn_run(dir: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir)
        .args(["run", "j.toml", "-q", "--partitions", "2"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(120), "never reached: {what}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts the job with extra environment variables.
pub(crate) type SpawnRun<'a> = dyn Fn(&[(&str, &str)]) -> Child + 'a;

/// Runs the job (`run(env)` starts it, `dsproc(args)` runs a command to the end)
/// and sends it `signal` (`KILL`, or `TERM`: then it must exit 143 within 5 s) at 22 instants spread over the whole run and at the three commit
/// steps (before the lock, between the version record and the pointer, after the
/// pointer). After every kill one complete version is current with every shard
/// intact, `gc` removes what the killed run left, and every few kills a rerun
/// commits the next version. `target` names the dataset root for `gc`.
pub(crate) fn kill_at_many_instants(
    root: &dyn Root,
    target: &str,
    run: &SpawnRun,
    dsproc: &dyn Fn(&[&str]) -> Output,
    signal: &str,
) {
    let finish = |c: Child| {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    finish(run(&[]));
    // How long a whole run takes here: the kills are spread over it.
    let t0 = Instant::now();
    finish(run(&[]));
    let whole = t0.elapsed();
    let mut current = assert_one_complete_version(root).unwrap();
    assert_eq!(current, 2);
    let mut kills = 0;
    // (the last at 85% of the measured run: runs on a busy machine vary in speed)
    // (fractions of the run; a run that finishes before its instant shrinks the
    // scale and the instant is tried again: runs on a busy machine vary in speed)
    let mut plan: Vec<(Option<&str>, f64)> = (0..22).map(|i| (None, 0.85 * i as f64 / 21.0)).collect();
    for point in ["before-lock", "after-record", "after-pointer"] {
        plan.push((Some(point), 0.0));
    }
    let (mut scale, mut retries) = (whole, 0);
    let mut i = 0;
    while i < plan.len() {
        let (point, frac) = plan[i];
        let env: Vec<(&str, &str)> =
            point.map(|p| vec![("DSPROC_PAUSE_AT", p), ("DSPROC_PAUSE_MS", "5000")]).unwrap_or_default();
        let started = Instant::now();
        let mut child = run(&env);
        match point {
            None => {
                let delay = scale.mul_f64(frac);
                while started.elapsed() < delay && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if child.try_wait().unwrap().is_some() && retries < 20 {
                    scale = scale.min(started.elapsed()).mul_f64(0.8);
                    retries += 1;
                    plan.insert(i + 1, (None, frac));
                }
            }
            Some("before-lock") => {
                wait_for(&mut child, "the commit", || root.keys("_staging").iter().any(|p| p.contains("_stats/write-")))
            }
            Some("after-record") => {
                let before = root.keys("_versions").len();
                wait_for(&mut child, "the version record", || root.keys("_versions").len() > before)
            }
            Some(_) => {
                let before = root.keys("_history").len();
                wait_for(&mut child, "the pointer swap", || root.keys("_history").len() > before)
            }
        }
        let finished = child.try_wait().unwrap();
        let sent = Instant::now();
        if signal == "KILL" {
            child.kill().unwrap();
        } else {
            // (the run may end by itself just before the signal: then `kill` finds no process)
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            while child.try_wait().unwrap().is_none() {
                assert!(sent.elapsed() < Duration::from_secs(5), "SIG{signal} {i}: still running after 5 s");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let o = child.wait_with_output().unwrap();
        let finished = finished.or(Some(o.status).filter(|st| st.success()));
        match finished {
            None => {
                kills += 1;
                if signal == "TERM" {
                    // 143, or (signalled before main installed its handler) the
                    // default action, which shells report as 143 too
                    use std::os::unix::process::ExitStatusExt;
                    let ok = o.status.code() == Some(143) || o.status.signal() == Some(15);
                    assert!(ok, "SIGTERM {i}: {:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
                }
            }
            Some(st) => assert!(st.success(), "run {i} failed by itself: {}", String::from_utf8_lossy(&o.stderr)),
        }
        // After every kill: one complete version is current, every shard intact.
        let now = assert_one_complete_version(root).unwrap();
        assert!(now >= current, "kill {i}: the current version went from {current} to {now}");
        current = now;
        // gc removes what the killed run left (its staging, its uncommitted version).
        let o = dsproc(&["gc", target]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(root.keys("_staging"), Vec::<String>::new(), "kill {i}: gc left staging");
        root.assert_only_versions();
        if i % 6 == 5 {
            // The rerun commits the next version.
            let before = root.keys("_versions").len();
            finish(run(&[]));
            current = assert_one_complete_version(root).unwrap();
            let records: Vec<u64> =
                root.keys("_versions").iter().map(|n| n.trim_end_matches(".json").parse().unwrap()).collect();
            assert_eq!(records.len(), before + 1);
            assert_eq!(current, *records.iter().max().unwrap(), "the rerun is the newest version");
        }
        i += 1;
    }
    assert!(kills >= 20, "only {kills} runs were killed mid-run (the run takes {whole:?})");
    finish(run(&[]));
    assert!(assert_one_complete_version(root).unwrap() > current);
    root.assert_only_versions();
}

#[test]
fn runs_killed_at_any_instant_leave_the_previous_version_current_and_intact() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 4, 10_000);
    for signal in ["KILL", "TERM"] {
        let spawn = |env: &[(&str, &str)]| spawn_run(dir.path(), env);
        let out_dir = dir.path().join(format!("out-{signal}"));
        write_job(dir.path(), &input, &out_dir, "");
        kill_at_many_instants(
            &LocalRoot(out_dir.clone()),
            out_dir.to_str().unwrap(),
            &spawn,
            &|args| dsproc(dir.path(), args),
            signal,
        );
    }
}

#[test]
fn sigterm_and_sigint_stop_cleanly_with_143_and_130() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 4, 20_000);
    let out = dir.path().join("out");
    write_job(dir.path(), &input, &out, "");
    let o = dsproc(dir.path(), &["run", "j.toml", "-q", "--partitions", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = read_json(&out.join("manifest.json"));
    for (signal, code, point) in [
        ("TERM", 143, None),
        ("INT", 130, None),
        ("TERM", 143, Some("before-lock")),
        ("TERM", 143, Some("after-record")),
    ] {
        let env: Vec<(&str, &str)> =
            point.map(|p| vec![("DSPROC_PAUSE_AT", p), ("DSPROC_PAUSE_MS", "20000")]).unwrap_or_default();
        let mut child = spawn_run(dir.path(), &env);
        let records = walk(&out.join("_versions")).len();
        match point {
            None => wait_for(&mut child, "reading", || walk(&out).iter().any(|p| p.contains("_stats/read-"))),
            Some("after-record") => wait_for(&mut child, "the record", || walk(&out.join("_versions")).len() > records),
            Some(_) => wait_for(&mut child, "the commit", || walk(&out).iter().any(|p| p.contains("_stats/write-"))),
        }
        if point == Some("before-lock") {
            std::thread::sleep(Duration::from_millis(500));
        }
        let sent = Instant::now();
        let st = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(sent.elapsed() < Duration::from_secs(5), "SIG{signal} at {point:?}: still running after 5 s");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal} at {point:?}: {err}");
        assert!(err.contains(&format!("interrupted by SIG{signal}")), "{err}");
        let now = read_json(&out.join("manifest.json"));
        assert_eq!(now["run_id"], before["run_id"], "SIG{signal} at {point:?} changed the current version");
        assert_one_complete_version(&LocalRoot(out.clone()));
        assert_intact(&out, &now);
        // The interrupted run's staging is gone; its version prefix too unless its
        // record was created (a complete version, never current).
        assert!(!out.join("_staging").exists(), "SIG{signal} at {point:?} left staging");
        let o = dsproc(dir.path(), &["gc", out.to_str().unwrap()]);
        assert!(o.status.success());
        assert_only_versions(&out);
    }
}

/// Mounts a tmpfs of `size` at `at` (root only); None when this machine cannot.
fn mount_tmpfs(at: &Path, size: &str, read_only: bool) -> Option<Mount> {
    std::fs::create_dir_all(at).unwrap();
    let opts = format!("size={size}{}", if read_only { ",ro" } else { "" });
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs", at.to_str().unwrap()]).status();
    if !ok.is_ok_and(|s| s.success()) {
        crate::common::skip(format!("cannot mount a tmpfs at {} (needs root)", at.display()));
        return None;
    }
    Some(Mount(at.to_path_buf()))
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn commits_that_fail_midway_leave_the_previous_version_current() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 1, 3000);
    // A full disk: the output on a 3 MiB tmpfs holds version 1, not version 2's bigger shards.
    let out = dir.path().join("small");
    let Some(_disk) = mount_tmpfs(&out, "3m", false) else { return };
    write_job(dir.path(), &input, &out, "");
    json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q"]));
    let before = read_json(&out.join("manifest.json"));
    let big = dir.path().join("big.jsonl");
    std::fs::write(&big, random_docs(5000, 300, 7)).unwrap();
    let big = big.display().to_string();
    let o = dsproc(dir.path(), &["run", "j.toml", "-q", "--set", &format!("input.uri={big}")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left on device"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&out.display().to_string()), "the error names no file: {}", stderr(&o));
    let now = read_json(&out.join("manifest.json"));
    assert_eq!(now, before);
    assert_intact(&out, &now);
    assert_only_versions(&out);

    // A read-only directory: the version records cannot be written (after the shards were).
    let out = dir.path().join("ro");
    write_job(dir.path(), &input, &out, "");
    json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q"]));
    let before = read_json(&out.join("manifest.json"));
    let saved = std::fs::read(out.join("_versions/1.json")).unwrap();
    let Some(_ro) = mount_tmpfs(&out.join("_versions"), "1m", true) else { return };
    let o = dsproc(dir.path(), &["run", "j.toml", "-q"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("_versions/2.json") && err.contains("Read-only file system"), "{err}");
    assert_eq!(read_json(&out.join("manifest.json")), before);
    assert_intact(&out, &before);
    assert!(!out.join("v00002").exists(), "the failed run left its shards");
    drop(_ro);
    assert_eq!(std::fs::read(out.join("_versions/1.json")).unwrap(), saved);
}

#[test]
fn a_dataset_root_is_an_input_at_its_current_or_a_named_version() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 1, 2000);
    let base = dir.path().join("base");
    write_job(dir.path(), &input, &base, "");
    let v1 = json(&dsproc(dir.path(), &["run", "j.toml", "--json", "-q"]))["manifest"].clone();
    std::fs::write(
        dir.path().join("f.toml"),
        job(&base.display().to_string(), "[[steps]]\nop = \"filter\"\nwhere = \"n % 2 = 0\"\n", &base, "parquet"),
    )
    .unwrap();
    // version 2 of base: version 1 filtered (a job may read its own output's current version)
    let v2 = json(&dsproc(dir.path(), &["run", "f.toml", "--json", "-q"]))["manifest"].clone();
    assert_eq!(v2["input_dataset"]["version"], 1);
    assert_eq!(v2["input_dataset"]["dataset_version"], v1["dataset_version"]);
    assert!(v2["rows"]["out"].as_u64().unwrap() < v1["rows"]["out"].as_u64().unwrap());
    assert_eq!(v2["rows"]["in"], v1["rows"]["out"]);
    // Chained: the current version (2) by default, version 1 when named.
    let chained = dir.path().join("chained");
    std::fs::write(dir.path().join("c.toml"), job(&base.display().to_string(), "", &chained, "jsonl")).unwrap();
    let c = json(&dsproc(dir.path(), &["run", "c.toml", "--json", "-q"]))["manifest"].clone();
    assert_eq!(
        (c["input_dataset"]["version"].as_u64(), c["rows"]["out"].clone()),
        (Some(2), v2["rows"]["out"].clone())
    );
    let c1 =
        json(&dsproc(dir.path(), &["run", "c.toml", "--json", "-q", "--set", "input.version=1"]))["manifest"].clone();
    assert_eq!(
        (c1["input_dataset"]["version"].as_u64(), c1["rows"]["out"].clone()),
        (Some(1), v1["rows"]["out"].clone())
    );
    // ids are the dataset's own, not file:line positions
    let rows = read_jsonl_dataset(&chained, &serde_json::from_value(c1).unwrap());
    assert!(rows.iter().all(|r| !r["id"].as_str().unwrap().contains("v00001")), "{:?}", rows[0]);
    let o = dsproc(dir.path(), &["run", "c.toml", "--set", "input.version=9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no version 9"), "{}", stderr(&o));
}

/// The venv's python with `module`, or None (with a printed SKIP).
fn python_with(module: &str) -> Option<std::ffi::OsString> {
    let Some(py) = std::env::var_os("DSPROC_PYTHON") else {
        crate::common::skip("DSPROC_PYTHON is not set (scripts/test.sh sets it)");
        return None;
    };
    let ok = Command::new(&py).args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success());
    if !ok {
        crate::common::skip(format!("{module} is not installed in {py:?} (scripts/test.sh installs it)"));
        return None;
    }
    Some(py)
}

#[test]
fn lineage_round_trips_through_openlineage_classes_and_events_reach_a_server() {
    let Some(py) = python_with("openlineage.client") else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 2, 1000);
    let out = dir.path().join("out");
    write_job(dir.path(), &input, &out, "");
    // A lineage server on 127.0.0.1 that records every POST body.
    let log = dir.path().join("events.jsonl");
    let server = r#"
import http.server, sys
log = open(sys.argv[1], "ab", buffering=0)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        log.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(201); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut srv = Command::new(&py).args(["-c", server, log.to_str().unwrap()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(srv.stdout.take().unwrap()), &mut line).unwrap();
    let url = format!("http://127.0.0.1:{}/api/v1/lineage", line.trim());
    let o = dsproc(dir.path(), &["run", "j.toml", "-q", "--lineage-url", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a failing job: START then FAIL
    std::fs::write(dir.path().join("bad.jsonl"), "{\"text\":\"x\"}\n{oops\n").unwrap();
    let o = dsproc(
        dir.path(),
        &["run", "j.toml", "-q", "--lineage-url", &url, "--set", "input.uri=bad.jsonl", "--set", "input.on_error=fail"],
    );
    assert_eq!(o.status.code(), Some(1));
    srv.kill().unwrap();
    srv.wait().unwrap();
    let events: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["START", "COMPLETE", "START", "FAIL"]);
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    assert_ne!(events[0]["run"]["runId"], events[2]["run"]["runId"]);
    assert!(events[3]["run"]["facets"]["errorMessage"]["message"].as_str().unwrap().contains("bad.jsonl:2"));

    // `dsproc lineage` prints the same COMPLETE event; it round-trips through the
    // openlineage-python classes (generated from the 2-0-2 spec, with its validators).
    let o = dsproc(dir.path(), &["lineage", out.to_str().unwrap(), "--format", "openlineage"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ev["run"]["runId"], events[1]["run"]["runId"]);
    assert_eq!(
        ev["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"],
        read_json(&out.join("manifest.json"))["rows"]["out"]
    );
    let check = repo().join("tests/compat/check_openlineage.py");
    for doc in [o.stdout.clone(), serde_json::to_vec(&events[0]).unwrap(), serde_json::to_vec(&events[3]).unwrap()] {
        let f = dir.path().join("ev.json");
        std::fs::write(&f, &doc).unwrap();
        let r = Command::new(&py).arg(&check).arg(&f).output().unwrap();
        assert!(r.status.success(), "{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    }
    // The MLflow dataset record.
    let o = dsproc(dir.path(), &["lineage", out.to_str().unwrap(), "--format", "mlflow"]);
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["source_type"], "local");
    let profile: serde_json::Value = serde_json::from_str(rec["profile"].as_str().unwrap()).unwrap();
    assert_eq!(profile["num_rows"], read_json(&out.join("manifest.json"))["rows"]["out"]);
    let schema: serde_json::Value = serde_json::from_str(rec["schema"].as_str().unwrap()).unwrap();
    assert!(schema["mlflow_colspec"].as_array().unwrap().iter().any(|c| c["name"] == "text" && c["type"] == "string"));
    let source: serde_json::Value = serde_json::from_str(rec["source"].as_str().unwrap()).unwrap();
    assert!(source["uri"].as_str().unwrap().starts_with("file:///"));
}

/// `--incremental` / `output.incremental`: a rerun with the same spec, input files
/// and op versions commits nothing ("up to date"); an added, changed or removed
/// file, or another spec, rebuilds and the manifest says why.
#[test]
fn incremental_reruns_are_up_to_date_until_an_input_or_the_spec_changes() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input(dir.path(), 2, 500);
    let out = dir.path().join("out");
    write_job(dir.path(), &input, &out, "");
    let run = |extra: &[&str]| json(&dsproc(dir.path(), &[&["run", "j.toml", "--json", "-q"], extra].concat()));
    let v1 = run(&["--incremental"]);
    assert_eq!(v1["manifest"]["version"], 1);
    assert_eq!(v1["manifest"]["incremental"]["mode"], "full");
    assert_eq!(v1["manifest"]["incremental"]["reason"], "no current version");
    // Nothing changed: nothing committed, the current version reported.
    let before = std::fs::read(out.join("manifest.json")).unwrap();
    let again = run(&["--incremental"]);
    assert_eq!(again["up_to_date"], true);
    assert_eq!(again["version"], 1);
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), before);
    assert!(!out.join("_versions/2.json").exists());
    let o = dsproc(dir.path(), &["run", "j.toml", "--incremental"]);
    assert!(stderr(&o).contains("up to date: version 1"), "{}", stderr(&o));
    // Without --incremental the same run commits a new version.
    assert_eq!(run(&[])["manifest"]["version"], 2);
    assert_eq!(run(&["--incremental"])["up_to_date"], true);
    // A new input file: rebuilt, and why.
    synthetic_jsonl(&dir.path().join("in/p9.jsonl"), 50);
    let v3 = run(&["--incremental"]);
    assert_eq!(v3["manifest"]["version"], 3);
    let reason = v3["manifest"]["incremental"]["reason"].as_str().unwrap();
    assert!(reason.contains("1 added, 0 removed, 0 changed"), "{reason}");
    assert!(v3["manifest"]["rows"]["in"].as_u64().unwrap() > v1["manifest"]["rows"]["in"].as_u64().unwrap());
    // A removed file.
    std::fs::remove_file(dir.path().join("in/p9.jsonl")).unwrap();
    let v4 = run(&["--incremental"]);
    assert!(v4["manifest"]["incremental"]["reason"].as_str().unwrap().contains("0 added, 1 removed"));
    assert_eq!(v4["manifest"]["rows"], v1["manifest"]["rows"]);
    // Another step parameter: a full rebuild because the spec changed.
    let v5 = run(&["--incremental", "--set", "steps.0.form=nfkc"]);
    assert_eq!(v5["manifest"]["version"], 5);
    assert!(v5["manifest"]["incremental"]["reason"].as_str().unwrap().contains("the spec changed"));
    // Incremental needs overwrite.
    write_job(dir.path(), &input, &out, "");
    let spec =
        std::fs::read_to_string(dir.path().join("j.toml")).unwrap().replace("mode = \"overwrite\"", "mode = \"error\"");
    std::fs::write(dir.path().join("j.toml"), spec).unwrap();
    let o = dsproc(dir.path(), &["run", "j.toml", "--incremental"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("overwrite"), "{}", stderr(&o));
}
