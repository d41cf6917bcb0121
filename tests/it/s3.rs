//! Object storage against a real S3 server (SeaweedFS on 127.0.0.1, started by
//! `.ci/run` through `scripts/s3-server.sh`): whole jobs from s3:// to s3://,
//! locally and on a two-executor cluster, read back by pyarrow from the server;
//! a job killed mid-run; wrong credentials; two jobs racing for one output.
//!
//! Without `DSPROC_TEST_S3_ENDPOINT` these tests print SKIP (and fail under CI,
//! where scripts/test.sh starts the server).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dsproc_io::{Location, StorageOptions};

use crate::cluster::{worker_pids, Cluster};
use crate::common::{random_docs, repo};

/// The test server and a prefix of the bucket that belongs to one test.
pub(crate) struct S3 {
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
    key: String,
    secret: String,
    prefix: String,
    /// One runtime for every test: dsproc_io caches one client per store and
    /// settings per process, and a client's connections die with the runtime they
    /// were opened on (a per-test runtime dropped by one test broke another's GETs).
    rt: &'static tokio::runtime::Runtime,
}

pub(crate) fn s3(test: &str) -> Option<S3> {
    let Ok(endpoint) = std::env::var("DSPROC_TEST_S3_ENDPOINT") else {
        crate::common::skip(format!(
            "{test}: no S3 server, DSPROC_TEST_S3_ENDPOINT is not set (scripts/s3-server.sh start DIR && source DIR/env)"
        ));
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with DSPROC_TEST_S3_ENDPOINT"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    Some(S3 {
        endpoint,
        bucket: var("DSPROC_TEST_S3_BUCKET"),
        key: var("DSPROC_TEST_S3_KEY"),
        secret: var("DSPROC_TEST_S3_SECRET"),
        prefix: format!("{test}-{}-{nanos}", std::process::id()),
        rt: {
            static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
            RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
        },
    })
}

impl S3 {
    pub(crate) fn uri(&self, rel: &str) -> String {
        format!("s3://{}/{}/{rel}", self.bucket, self.prefix)
    }

    /// The standard variables a dsproc process reads its credentials from.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The test's own access to the server (not through dsproc's environment).
    pub(crate) fn loc(&self, rel: &str) -> Location {
        let mut options = std::collections::BTreeMap::new();
        for (k, v) in [
            ("endpoint", self.endpoint.as_str()),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("access_key_id", self.key.as_str()),
            ("secret_access_key", self.secret.as_str()),
        ] {
            options.insert(k.to_string(), v.to_string());
        }
        Location::parse(&self.uri(rel), None).unwrap().with_storage(StorageOptions { options, env: Default::default() })
    }

    pub(crate) fn secret_for_tests(&self) -> String {
        self.secret.clone()
    }

    pub(crate) fn put(&self, rel: &str, bytes: Vec<u8>) {
        self.rt.block_on(self.loc(rel).put(bytes)).unwrap();
    }

    pub(crate) fn get(&self, rel: &str) -> Option<Vec<u8>> {
        self.rt.block_on(self.loc(rel).get_opt()).unwrap().map(|b| b.to_vec())
    }

    /// Keys below `rel`, relative to it, sorted.
    pub(crate) fn keys(&self, rel: &str) -> Vec<String> {
        let mut k: Vec<String> = self.rt.block_on(self.loc(rel).list()).unwrap().into_iter().map(|(n, _)| n).collect();
        k.sort();
        k
    }

    pub(crate) fn dsproc(&self, cwd: &Path, args: &[&str], env: &[(String, String)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dsproc"))
            .current_dir(cwd)
            .args(args)
            .envs(self.env())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// pyarrow reads the dataset at `rel` back from the server (and compares it
    /// with the local run in `local`, when given).
    fn pyarrow_reads_back(&self, rel: &str, local: Option<&Path>) {
        let Some(python) = std::env::var_os("DSPROC_PYTHON") else {
            crate::common::skip(format!(
                "pyarrow read-back of {rel}: DSPROC_PYTHON is not set (scripts/test.sh sets it)"
            ));
            return;
        };
        let mut cmd = Command::new(python);
        cmd.arg(repo().join("tests/compat/read_s3.py")).arg(self.uri(rel));
        if let Some(l) = local {
            cmd.arg(l);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "pyarrow could not read {rel} back: {}", String::from_utf8_lossy(&o.stderr));
        eprintln!("pyarrow read {rel}: {}", String::from_utf8_lossy(&o.stdout).trim());
    }
}

pub(crate) fn json_manifest(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "job failed: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["manifest"].clone()
}

fn shards(m: &serde_json::Value) -> Vec<(String, String)> {
    m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap().to_string(), s["sha256"].as_str().unwrap().to_string()))
        .collect()
}

fn upload_sample(s: &S3) {
    for f in std::fs::read_dir(repo().join("datasets/sample")).unwrap() {
        let p = f.unwrap().path();
        s.put(&format!("in/{}", p.file_name().unwrap().to_str().unwrap()), std::fs::read(&p).unwrap());
    }
}

/// After a commit only the dataset is left: manifest, shards, nothing staged, no lock.
/// `out` holds only committed versions: manifest.json, version records, history
/// entries and files some version lists; every file of `m` (a committed version) is there.
fn assert_only_dataset(s: &S3, out: &str, m: &serde_json::Value) {
    let keys = s.keys(out);
    let mut listed = std::collections::BTreeSet::new();
    for k in keys.iter().filter(|k| k.starts_with("_versions/")) {
        let v: serde_json::Value = serde_json::from_slice(&s.get(&format!("{out}/{k}")).unwrap()).unwrap();
        listed.extend(shards(&v).into_iter().map(|(p, _)| p));
        listed.extend(v["quarantine"].as_array().unwrap().iter().map(|q| q.as_str().unwrap().to_string()));
        listed.extend(v["side_files"].as_array().into_iter().flatten().map(|f| f.as_str().unwrap().to_string()));
    }
    for (p, _) in shards(m) {
        assert!(keys.contains(&p), "{out}/{p} is missing");
    }
    assert!(keys.contains(&format!("_versions/{}.json", m["version"])), "{out}: no record of version {}", m["version"]);
    let extra: Vec<&String> = keys
        .iter()
        .filter(|k| *k != "manifest.json" && !k.starts_with("_versions/") && !k.starts_with("_history/"))
        .filter(|k| !listed.contains(*k))
        .collect();
    assert!(extra.is_empty(), "{out} holds more than its committed versions: {extra:?}");
}

#[test]
fn a_job_runs_from_s3_to_s3_locally_and_on_a_two_executor_cluster() {
    let Some(s) = s3("s3_to_s3") else { return };
    let dir = tempfile::tempdir().unwrap();
    upload_sample(&s);
    let job = repo().join("jobs/quickstart.toml");
    let job = job.to_str().unwrap();
    let input = format!("input.uri={}", s.uri("in/*.jsonl.*"));

    // The reference: the same job from and to the local filesystem.
    let reference = dir.path().join("ref");
    let o =
        s.dsproc(&repo(), &["run", job, "--json", "-q", "--set", &format!("output.uri={}", reference.display())], &[]);
    let expected = json_manifest(&o);

    let o = s.dsproc(
        &repo(),
        &["run", job, "--json", "-q", "--set", &input, "--set", &format!("output.uri={}", s.uri("local"))],
        &[],
    );
    let local = json_manifest(&o);
    assert_eq!(shards(&local), shards(&expected), "s3 → s3 shards differ from the local-filesystem run");
    assert_eq!(local["rows"], expected["rows"]);
    assert!(local["inputs"][0]["uri"].as_str().unwrap().starts_with("s3://"), "{}", local["inputs"]);
    assert_only_dataset(&s, "local", &local);

    let cluster = Cluster::start_with_env(dir.path(), 2, 30, &s.env());
    let o = s.dsproc(
        &repo(),
        &[
            "submit",
            job,
            "--cluster",
            &cluster.url,
            "--json",
            "-q",
            "--set",
            &input,
            "--set",
            &format!("output.uri={}", s.uri("cluster")),
        ],
        &crate::cluster::client_env(),
    );
    let on_cluster = json_manifest(&o);
    assert_eq!(on_cluster["engine"], "ballista");
    assert_eq!(shards(&on_cluster), shards(&expected), "cluster s3 → s3 shards differ from local");
    assert_eq!(on_cluster["rows"], expected["rows"]);
    let workers = worker_pids(&on_cluster);
    assert!(!workers.is_empty());
    for w in workers {
        assert!(cluster.executor_pids().contains(&w), "input read by pid {w}, not by an executor");
    }
    assert_only_dataset(&s, "cluster", &on_cluster);

    s.pyarrow_reads_back("local", Some(&reference));
    s.pyarrow_reads_back("cluster", Some(&reference));
    let o = s.dsproc(&repo(), &["inspect", &s.uri("cluster")], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("out {}", expected["rows"]["out"])));
}

#[test]
fn a_job_killed_during_upload_leaves_no_dataset_and_a_rerun_commits_one() {
    let Some(s) = s3("killed") else { return };
    let dir = tempfile::tempdir().unwrap();
    // ~40 MB of input in two files; one bucket, so one writer uploads one ~25 MB shard
    // in 16 MiB parts.
    s.put("in/a.jsonl", random_docs(4000, 900, 7));
    s.put("in/b.jsonl", random_docs(4000, 900, 11));
    let job = dir.path().join("big.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"big\"\n[input]\nuri = \"{}\"\n[[steps]]\nop = \"normalize\"\n[output]\nuri = \"{}\"\nshard_size = \"1GiB\"\n",
            s.uri("in/*.jsonl"),
            s.uri("out")
        ),
    )
    .unwrap();
    let filer = std::env::var("DSPROC_TEST_S3_FILER").ok();
    let before = filer.as_deref().map_or(0, |f| open_uploads(f, &s.bucket));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir.path())
        .args(["run", job.to_str().unwrap(), "-q", "--partitions", "2"])
        .envs(s.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it while its shard's multipart upload is in progress: SeaweedFS's filer
    // shows open uploads under /buckets/BUCKET/.uploads. (Another S3 server: once
    // every step has finished reading, i.e. while the shard is written.)
    let start = Instant::now();
    loop {
        let ready = match &filer {
            Some(f) => open_uploads(f, &s.bucket) > before,
            None => s.keys("out/_staging").iter().filter(|k| k.contains("_stats/step-")).count() >= 2,
        };
        if ready {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the job ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(120), "the job never started its upload");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();

    assert_eq!(s.get("out/manifest.json"), None, "a killed job left a manifest");
    let staged = s.keys("out/_staging");
    eprintln!("killed after {:?}; staged: {staged:?}", start.elapsed());
    assert!(!staged.is_empty(), "the killed run's staging should still be there");
    let o = s.dsproc(dir.path(), &["inspect", &s.uri("out")], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no committed dataset") && err.contains("dsproc gc"), "{err}");

    // gc: the run's process is gone, so its staging goes.
    let o = s.dsproc(dir.path(), &["gc", &s.uri("out")], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed staging of run"));
    assert_eq!(s.keys("out/_staging"), Vec::<String>::new(), "gc left staged objects");

    let o = s.dsproc(dir.path(), &["run", job.to_str().unwrap(), "--json", "-q", "--partitions", "2"], &[]);
    let m = json_manifest(&o);
    assert_eq!(m["rows"]["out"], 8000);
    assert_eq!(m["rows"]["in"], 8000);
    let big = m["shards"].as_array().unwrap().iter().map(|s| s["bytes"].as_u64().unwrap()).max().unwrap();
    assert!(big > 16 << 20, "the shard ({big} bytes) should need a multipart upload");
    assert_only_dataset(&s, "out", &m);
    s.pyarrow_reads_back("out", None);
}

#[test]
fn wrong_credentials_name_the_bucket_and_operation_and_print_no_secret() {
    let Some(s) = s3("creds") else { return };
    let dir = tempfile::tempdir().unwrap();
    upload_sample(&s);
    let job = repo().join("jobs/quickstart.toml");
    let job = job.to_str().unwrap();
    let bad_secret = "wrong-secret-Zq8xK2";
    let bad = vec![("AWS_SECRET_ACCESS_KEY".to_string(), bad_secret.to_string())];
    let no_secret = |o: &Output| {
        for stream in [&o.stdout, &o.stderr] {
            let t = String::from_utf8_lossy(stream);
            assert!(!t.contains(bad_secret) && !t.contains(&s.secret), "a secret was printed: {t}");
        }
    };

    // Reading: the listing of the input is refused.
    let input = format!("input.uri={}", s.uri("in/*.jsonl.*"));
    let out = format!("output.uri={}", dir.path().join("o").display());
    let o = s.dsproc(&repo(), &["run", job, "--set", &input, "--set", &out], &bad);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("bucket \"{}\"", s.bucket)) && err.contains("LIST"), "{err}");
    assert!(err.contains("access denied") && err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    no_secret(&o);

    // Writing: the first request to the output is refused (also with --json).
    let out = format!("output.uri={}", s.uri("out"));
    let o = s.dsproc(&repo(), &["run", job, "--json", "--set", &out, "--set", "output.mode=error"], &bad);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("bucket \"{}\"", s.bucket)) && err.contains("HEAD"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"exit_code\":1"));
    no_secret(&o);
    assert_eq!(s.keys("out"), Vec::<String>::new());

    // The job's own storage settings (endpoint, and the names of other variables,
    // which hold the right keys) override the process's wrong ones.
    let storage = format!(
        "endpoint = \"{}\"\nallow_http = true\nenv = {{ access_key_id = \"JOB_S3_KEY\", secret_access_key = \"JOB_S3_SECRET\" }}\n",
        s.endpoint
    );
    let spec = dir.path().join("named.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"named\"\n[input]\nuri = \"{}\"\n[input.storage]\n{storage}[output]\nuri = \"{}\"\n[output.storage]\n{storage}",
            s.uri("in/*.jsonl.*"),
            s.uri("named"),
        ),
    )
    .unwrap();
    let mut env = bad.clone();
    env.push(("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()));
    env.push(("JOB_S3_KEY".into(), s.key.clone()));
    env.push(("JOB_S3_SECRET".into(), s.secret.clone()));
    let o = s.dsproc(dir.path(), &["run", spec.to_str().unwrap(), "--json", "-q"], &env);
    let m = json_manifest(&o);
    assert_eq!(m["rows"]["in"], 760);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&s.secret), "the manifest carries a secret");
    // inspect given the spec reads the dataset with the job's own storage settings.
    let o = s.dsproc(dir.path(), &["inspect", spec.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("in 760"), "{}", String::from_utf8_lossy(&o.stdout));
    // A variable the spec names but the process lacks is a clear error too.
    let o = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir.path())
        .args(["run", spec.to_str().unwrap(), "-q"])
        .envs(s.env())
        .env_remove("JOB_S3_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("JOB_S3_KEY") && err.contains("not set"), "{err}");
}

#[test]
fn two_jobs_racing_for_one_output_commit_one_whole_dataset() {
    let Some(s) = s3("race") else { return };
    upload_sample(&s);
    let job = repo().join("jobs/quickstart.toml");
    let job = job.to_str().unwrap();
    let input = format!("input.uri={}", s.uri("in/*.jsonl.*"));
    let out = format!("output.uri={}", s.uri("out"));
    // Two different datasets (different filters) for the same output, at once.
    let spawn = |min_len: u32| {
        Command::new(env!("CARGO_BIN_EXE_dsproc"))
            .current_dir(repo())
            .args(["run", job, "--json", "-q", "--set", &input, "--set", &out, "--set", "output.mode=error"])
            .args(["--set", &format!("steps.1.where=length(text) >= {min_len}")])
            .envs(s.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(200), spawn(1000));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (won, lost) = match (a.status.success(), b.status.success()) {
        (true, false) => (a, b),
        (false, true) => (b, a),
        _ => panic!(
            "exactly one job must commit: {:?} {} / {:?} {}",
            a.status,
            String::from_utf8_lossy(&a.stderr),
            b.status,
            String::from_utf8_lossy(&b.stderr)
        ),
    };
    let err = String::from_utf8_lossy(&lost.stderr);
    assert!(
        err.contains("already holds a committed dataset")
            || err.contains("appeared while")
            || err.contains("being committed"),
        "{err}"
    );
    let m = json_manifest(&won);
    // The committed manifest is the winner's, and every shard is the winner's bytes.
    let committed: serde_json::Value = serde_json::from_slice(&s.get("out/manifest.json").unwrap()).unwrap();
    assert_eq!(committed["run_id"], m["run_id"]);
    for (path, sha) in shards(&committed) {
        use sha2::Digest;
        let body = s.get(&format!("out/{path}")).unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&body)), sha, "{path} is not the committed run's shard");
    }
    assert_only_dataset(&s, "out", &committed);

    // A lock left by a dead committer: the next run fails cleanly, gc clears it.
    let dead = serde_json::json!({"run_id": "20000101T000000Z-dead", "host": hostname(), "pid": 999_999_999u32,
        "started_at": "2000-01-01T00:00:00Z", "heartbeat_at": "2000-01-01T00:00:00Z"});
    s.put("out/_commit.lock", dead.to_string().into_bytes());
    let o =
        s.dsproc(&repo(), &["run", job, "-q", "--set", &input, "--set", &out, "--set", "output.mode=overwrite"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("being committed by run 20000101T000000Z-dead") && err.contains("dsproc gc"), "{err}");
    let still: serde_json::Value = serde_json::from_slice(&s.get("out/manifest.json").unwrap()).unwrap();
    assert_eq!(still["run_id"], m["run_id"], "a refused commit changed the dataset");
    let o = s.dsproc(&repo(), &["gc", &s.uri("out")], &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed a stale commit lock"), "{o:?}");
    let o = s.dsproc(
        &repo(),
        &["run", job, "--json", "-q", "--set", &input, "--set", &out, "--set", "output.mode=overwrite"],
        &[],
    );
    let m = json_manifest(&o);
    assert_only_dataset(&s, "out", &m);
}

/// Multipart uploads in progress in `bucket`, from SeaweedFS's filer listing.
fn open_uploads(filer: &str, bucket: &str) -> usize {
    use std::io::{Read, Write};
    let host = filer.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut conn) = std::net::TcpStream::connect(host) else { return 0 };
    let req = format!("GET /buckets/{bucket}/.uploads/ HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n");
    let mut body = String::new();
    if conn.write_all(req.as_bytes()).is_err() || conn.read_to_string(&mut body).is_err() {
        return 0;
    }
    body.matches("\"FullPath\"").count()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn bad_rows_are_quarantined_on_the_store_and_parquet_reads_back_from_it() {
    let Some(s) = s3("quarantine") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut bad = b"{\"id\":\"a\",\"text\":\"first good document\"}\n{\"id\":\"b\",\"text\": oops}\n".to_vec();
    bad.extend_from_slice(
        b"{\"id\":\"c\",\"text\":\"bad \xff byte\"}\n{\"id\":\"d\",\"text\":\"second good document\"}\n",
    );
    s.put("in/part.jsonl", bad);
    let job = dir.path().join("q.toml");
    std::fs::write(
        &job,
        format!("name = \"q\"\n[input]\nuri = \"{}\"\n[output]\nuri = \"{}\"\n", s.uri("in/part.jsonl"), s.uri("out")),
    )
    .unwrap();
    let m = json_manifest(&s.dsproc(dir.path(), &["run", job.to_str().unwrap(), "--json", "-q"], &[]));
    assert_eq!(
        (m["rows"]["in"].as_u64(), m["rows"]["out"].as_u64(), m["rows"]["quarantined"].as_u64()),
        (Some(4), Some(2), Some(2))
    );
    let q = m["quarantine"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    let body = String::from_utf8(s.get(&format!("out/{}", q[0].as_str().unwrap())).unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let at: Vec<(String, u64)> =
        lines.iter().map(|l| (l["file"].as_str().unwrap().to_string(), l["line"].as_u64().unwrap())).collect();
    let file = s.uri("in/part.jsonl");
    assert_eq!(at, vec![(file.clone(), 2), (file, 3)], "{body}");

    // The committed Parquet shards are an input too (ranged reads of the footer and
    // chunks): the dataset root names its current version's shards.
    let job2 = dir.path().join("p.toml");
    std::fs::write(
        &job2,
        format!(
            "name = \"p\"\n[input]\nuri = \"{}\"\nid = \"id\"\n[output]\nuri = \"{}\"\nformat = \"jsonl\"\n",
            s.uri("out"),
            s.uri("again")
        ),
    )
    .unwrap();
    let m2 = json_manifest(&s.dsproc(dir.path(), &["run", job2.to_str().unwrap(), "--json", "-q"], &[]));
    assert_eq!((m2["rows"]["in"].as_u64(), m2["rows"]["out"].as_u64()), (Some(2), Some(2)));
    assert_only_dataset(&s, "again", &m2);
}

#[test]
fn a_tokenizer_on_s3_and_megatron_shards_on_s3_equal_the_local_files() {
    let Some(s) = s3("tokenize") else { return };
    let Some(toks) = std::env::var_os("DSPROC_TOKENIZERS") else {
        crate::common::skip("a_tokenizer_on_s3: DSPROC_TOKENIZERS is not set (scripts/test.sh sets it)");
        return;
    };
    let tok = Path::new(&toks).join("bpe/tokenizer.json");
    let dir = tempfile::tempdir().unwrap();
    s.put("tok/tokenizer.json", std::fs::read(&tok).unwrap());
    let job = repo().join("jobs/tokenize.toml");
    let job = job.to_str().unwrap();
    let local_tok = format!("steps.1.tokenizer={}", tok.display());
    let reference = dir.path().join("ref");
    let expected = json_manifest(&s.dsproc(
        &repo(),
        &["run", job, "--json", "-q", "--set", &local_tok, "--set", &format!("output.uri={}", reference.display())],
        &[],
    ));
    let remote_tok = format!("steps.1.tokenizer={}", s.uri("tok/tokenizer.json"));
    let m = json_manifest(&s.dsproc(
        &repo(),
        &["run", job, "--json", "-q", "--set", &remote_tok, "--set", &format!("output.uri={}", s.uri("out"))],
        &[],
    ));
    assert_eq!(shards(&m), shards(&expected), "Megatron shards on S3 differ from the local run's");
    assert_eq!(m["steps"][1]["info"]["tokenizer_sha256"], expected["steps"][1]["info"]["tokenizer_sha256"]);
    for (path, _) in shards(&m) {
        assert_eq!(s.get(&format!("out/{path}")).unwrap(), std::fs::read(reference.join(&path)).unwrap(), "{path}");
    }
    assert_only_dataset(&s, "out", &m);
}

/// A dataset root on the test server, for the shared kill test.
struct S3Root<'a> {
    s: &'a S3,
    out: String,
}

impl crate::versions::Root for S3Root<'_> {
    fn get(&self, rel: &str) -> Option<Vec<u8>> {
        self.s.get(&format!("{}/{rel}", self.out))
    }
    fn keys(&self, rel: &str) -> Vec<String> {
        self.s.keys(&format!("{}/{rel}", self.out))
    }
    fn assert_only_versions(&self) {
        let m: serde_json::Value = serde_json::from_slice(&self.get("manifest.json").unwrap()).unwrap();
        assert_only_dataset(self.s, &self.out, &m);
    }
}

#[test]
fn jobs_killed_at_any_instant_on_s3_leave_the_previous_version_current_and_intact() {
    let Some(s) = s3("kill_versions") else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..4 {
        crate::common::synthetic_jsonl(&input.join(format!("p{i}.jsonl")), 6000);
    }
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n";
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_dsproc"))
            .current_dir(dir.path())
            .args(["run", "j.toml", "-q", "--partitions", "2"])
            .envs(s.env())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for signal in ["KILL", "TERM"] {
        let out = format!("out-{signal}");
        let spec = crate::common::job("in/*.jsonl", steps, Path::new("OUT"), "parquet")
            .replace("\"OUT\"", &format!("\"{}\"", s.uri(&out)));
        std::fs::write(dir.path().join("j.toml"), spec).unwrap();
        let root = S3Root { s: &s, out: out.clone() };
        crate::versions::kill_at_many_instants(
            &root,
            &s.uri(&out),
            &run,
            &|args| s.dsproc(dir.path(), args, &[]),
            signal,
        );
    }
}

#[test]
fn commits_that_s3_refuses_midway_leave_the_previous_version_current_and_intact() {
    let Some(s) = s3("refused_writes") else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..2 {
        crate::common::synthetic_jsonl(&input.join(format!("p{i}.jsonl")), 3000);
    }
    let spec = crate::common::job("in/*.jsonl", "[[steps]]\nop = \"dedup_exact\"\n", Path::new("OUT"), "parquet")
        .replace("\"OUT\"", &format!("\"{}\"", s.uri("out")));
    std::fs::write(dir.path().join("j.toml"), spec).unwrap();
    let proxy = crate::proxy::RefusingProxy::start(&s.endpoint);
    let through_proxy = [("AWS_ENDPOINT_URL".to_string(), proxy.url.clone())];
    // Not -q: what failed after the commit is a warning.
    let run = |extra: &[&str]| s.dsproc(dir.path(), &[&["run", "j.toml", "--json"], extra].concat(), &through_proxy);
    let first = json_manifest(&run(&[]));
    // The writes of a whole run on top of a committed version.
    proxy.allow();
    let second = json_manifest(&run(&[]));
    let writes = proxy.log();
    let total = writes.len();
    assert!(total >= 8, "a run made only {total} writes: {writes:?}");
    assert_eq!(second["version"], 2);
    let pointer = writes.iter().position(|w| w.contains("/out/manifest.json ")).expect("no pointer write");
    let root = S3Root { s: &s, out: "out".into() };
    // Refused at instants spread over the whole run (claiming the version, stats,
    // shards, the lock, the version record), at the pointer, and after it.
    let mut points: Vec<usize> = (0..8).map(|k| k * pointer / 8).collect();
    points.extend([pointer.saturating_sub(2), pointer - 1, pointer, pointer + 1, total - 1]);
    points.sort();
    points.dedup();
    for n in points {
        let before = s.get("out/manifest.json").unwrap();
        proxy.refuse_after(n);
        let o = run(&[]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let what = writes.get(n).map(String::as_str).unwrap_or("?");
        assert!(proxy.refused() > 0, "refusing from write {n} ({what}): nothing was refused");
        assert!(!err.contains(&s.secret_for_tests()), "the error shows the secret key");
        proxy.allow();
        let now = s.get("out/manifest.json").unwrap();
        if n <= pointer {
            assert_eq!(o.status.code(), Some(1), "refusing from write {n} ({what}): {err}");
            assert!(err.contains("403") || err.contains("Forbidden") || err.contains("AccessDenied"), "{what}: {err}");
            assert_eq!(now, before, "refusing from write {n} ({what}) changed the current version");
        } else {
            // Committed (the pointer is the commit): what failed after it is named.
            assert!(o.status.success(), "refusing from write {n} ({what}), after the commit: {err}");
            assert_ne!(now, before, "refusing from write {n} ({what})");
            assert!(
                err.contains("WARN") && err.contains("403"),
                "refusing from write {n} ({what}): nothing said: {err}"
            );
        }
        crate::versions::assert_one_complete_version(&root);
        // A lock the refused run could not remove is a dead run's: gc takes it.
        let o = s.dsproc(dir.path(), &["gc", &s.uri("out")], &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Writable again: gc removes what the refused runs left; the next run commits.
    let o = s.dsproc(dir.path(), &["gc", &s.uri("out"), "--grace", "0"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = json_manifest(&run(&[]));
    assert!(m["version"].as_u64().unwrap() > 2);
    assert_eq!(m["rows"], first["rows"]);
    assert_eq!(
        shards(&m).iter().map(|(_, h)| h).collect::<Vec<_>>(),
        shards(&first).iter().map(|(_, h)| h).collect::<Vec<_>>()
    );
    assert_only_dataset(&s, "out", &m);
}

/// `n` documents of 100 random words each, ids `{tag}{i:04}`; with `near`, every
/// other one is a copy of `near`'s document with one word changed.
fn near_dup_docs(tag: &str, n: usize, seed: u64, near: Option<&[String]>) -> (Vec<String>, Vec<u8>) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut texts = Vec::new();
    let mut body = Vec::new();
    for i in 0..n {
        let text = match near {
            Some(src) if i % 2 == 0 => {
                let mut words: Vec<&str> = src[i % src.len()].split(' ').collect();
                words[50] = "changed";
                words.join(" ")
            }
            _ => (0..100)
                .map(|_| (0..3 + next() % 6).map(|_| (b'a' + (next() % 26) as u8) as char).collect::<String>())
                .collect::<Vec<_>>()
                .join(" "),
        };
        body.extend_from_slice(serde_json::json!({"id": format!("{tag}{i:04}"), "text": text}).to_string().as_bytes());
        body.push(b'\n');
        texts.push(text);
    }
    (texts, body)
}

#[test]
fn save_index_then_against_on_a_cluster_whose_executors_cannot_see_the_driver_matches_local() {
    let Some(s) = s3("index_cluster") else { return };
    let jobs = tempfile::tempdir().unwrap(); // the driver's: job files, index pointers
    let cluster_dir = tempfile::tempdir().unwrap();
    let (a_texts, a) = near_dup_docs("a", 300, 3, None);
    let (_, b) = near_dup_docs("b", 200, 5, Some(&a_texts));
    s.put("in/a.jsonl", a);
    s.put("in/b.jsonl", b);
    let spec = |input: &str, step: &str, out: &str| {
        format!(
            "name = \"idx\"\n[input]\nuri = \"{}\"\nid = \"id\"\n[[steps]]\nop = \"dedup_minhash\"\n{step}\n[output]\nuri = \"{}\"\nformat = \"jsonl\"\n",
            s.uri(input),
            s.uri(out)
        )
    };
    let run = |engine: &[&str], tag: &str| -> (serde_json::Value, serde_json::Value) {
        let index = jobs.path().join(format!("index-{tag}"));
        std::fs::write(
            jobs.path().join(format!("a-{tag}.toml")),
            spec("in/a.jsonl", &format!("save_index = \"{}\"", index.display()), &format!("a-{tag}")),
        )
        .unwrap();
        std::fs::write(
            jobs.path().join(format!("b-{tag}.toml")),
            spec("in/b.jsonl", &format!("against = [\"{}\"]", index.display()), &format!("b-{tag}")),
        )
        .unwrap();
        let a_job = format!("a-{tag}.toml");
        let ma = json_manifest(&s.dsproc(
            jobs.path(),
            &[&[engine[0], a_job.as_str(), "--json", "-q"], &engine[1..]].concat(),
            &crate::cluster::client_env(),
        ));
        let b_job = format!("b-{tag}.toml");
        let mb = json_manifest(&s.dsproc(
            jobs.path(),
            &[&[engine[0], b_job.as_str(), "--json", "-q"], &engine[1..]].concat(),
            &crate::cluster::client_env(),
        ));
        (ma, mb)
    };
    let (la, lb) = run(&["run"], "local");
    let removed = lb["rows"]["dropped"]["1:dedup_minhash:near_duplicate"].as_u64().unwrap_or(0);
    assert!(removed >= 90, "against removed only {removed} of B's 100 near copies locally");

    // The executors run in their own mount namespace: the driver's directory (job
    // files, the save_index directory) is an empty tmpfs there, their cwd is their own.
    let Some(cluster) = Cluster::start_isolated(cluster_dir.path(), 2, &s.env(), jobs.path()) else { return };
    let (ca, cb) = run(&["submit", "--cluster", &cluster.url], "cluster");
    assert_eq!(cb["engine"], "ballista");
    for w in worker_pids(&cb) {
        assert!(cluster.executor_pids().contains(&w), "input read by pid {w}, not by an executor");
    }
    assert_eq!(ca["rows"], la["rows"]);
    assert_eq!(cb["rows"], lb["rows"], "against on the cluster removed other documents than locally");
    assert_eq!(
        shards(&cb).iter().map(|(_, h)| h).collect::<Vec<_>>(),
        shards(&lb).iter().map(|(_, h)| h).collect::<Vec<_>>()
    );
    // The saved index lives in its version on the store, and is listed by it.
    let side: Vec<String> =
        ca["side_files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    assert!(side.iter().any(|f| f.starts_with("v00001/_index/step-001/keys-")), "{side:?}");
    for f in &side {
        assert!(s.get(&format!("a-cluster/{f}")).is_some(), "{f} is listed but not on the store");
    }
    assert_only_dataset(&s, "a-cluster", &ca);

    // `against` naming A's dataset root on the store, and a `save_index` pointer
    // on the store: the cluster removes the same documents as the local run did.
    let pointer = s.uri("pointers/a");
    std::fs::write(jobs.path().join("a-ptr.toml"), spec("in/a.jsonl", &format!("save_index = \"{pointer}\""), "a-ptr"))
        .unwrap();
    let cluster_args = ["--cluster", cluster.url.as_str(), "--json", "-q"];
    json_manifest(&s.dsproc(
        jobs.path(),
        &[&["submit", "a-ptr.toml"][..], &cluster_args].concat(),
        &crate::cluster::client_env(),
    ));
    assert!(s.get("pointers/a/index.json").is_some(), "save_index wrote no pointer on the store");
    for (name, against) in [("b-root", s.uri("a-cluster")), ("b-ptr", pointer.clone())] {
        std::fs::write(
            jobs.path().join(format!("{name}.toml")),
            spec("in/b.jsonl", &format!("against = [\"{against}\"]"), name),
        )
        .unwrap();
        let job = format!("{name}.toml");
        let m = json_manifest(&s.dsproc(
            jobs.path(),
            &[&["submit", job.as_str()][..], &cluster_args].concat(),
            &crate::cluster::client_env(),
        ));
        assert_eq!(m["rows"], lb["rows"], "{name}: against {against} removed other documents than locally");
    }
}

/// Incremental rebuilds on a two-executor cluster with input and output on S3:
/// the rebuild after a file was added reads only that file on the executors,
/// removes its exact and near copies of published rows using the state the
/// version keeps on the store, lists the parent's shards, and matches the same
/// incremental rebuild run locally byte for byte.
#[test]
fn incremental_rebuilds_on_a_cluster_from_s3_to_s3_read_only_the_new_files() {
    let Some(s) = s3("incremental_cluster") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a_texts, a) = near_dup_docs("a", 200, 3, None);
    let (_, b) = near_dup_docs("b", 100, 5, None);
    s.put("in/a.jsonl", a);
    s.put("in/b.jsonl", b);
    let spec = |out: &str| {
        format!(
            "name = \"inc\"\n[input]\nuri = \"{}\"\nid = \"id\"\n[[steps]]\nop = \"dedup_exact\"\n[[steps]]\nop = \"dedup_minhash\"\n[output]\nuri = \"{}\"\nformat = \"jsonl\"\nshard_size = \"64KiB\"\nmode = \"overwrite\"\nincremental = true\n",
            s.uri("in/*.jsonl"),
            s.uri(out)
        )
    };
    std::fs::write(dir.path().join("local.toml"), spec("local")).unwrap();
    std::fs::write(dir.path().join("cluster.toml"), spec("cluster")).unwrap();
    let cluster = Cluster::start_with_env(dir.path(), 2, 30, &s.env());
    let submit = || {
        let args = ["submit", "cluster.toml", "--cluster", cluster.url.as_str(), "--json", "-q"];
        let o = s.dsproc(dir.path(), &args, &crate::cluster::client_env());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let local = || json_manifest(&s.dsproc(dir.path(), &["run", "local.toml", "--json", "-q"], &[]));
    let v1 = submit()["manifest"].clone();
    assert_eq!(v1["rows"]["out"], 300, "{}", v1["rows"]);
    local();

    // C: 50 near copies of A's documents (one word changed), 50 new ones, and 20
    // exact copies of A's.
    let (_, mut c) = near_dup_docs("c", 100, 7, Some(&a_texts));
    for (i, t) in a_texts.iter().skip(100).take(20).enumerate() {
        c.extend_from_slice(serde_json::json!({"id": format!("c-exact-{i}"), "text": t}).to_string().as_bytes());
        c.push(b'\n');
    }
    s.put("in/c.jsonl", c);
    let v2 = submit()["manifest"].clone();
    assert_eq!(v2["engine"], "ballista");
    let inc = &v2["incremental"];
    assert_eq!((inc["mode"].as_str(), inc["files_read"].as_u64()), (Some("incremental"), Some(1)), "{inc}");
    assert_eq!(v2["rows"]["in"], 120);
    assert_eq!(v2["rows"]["carried"], 300);
    let dropped = &v2["rows"]["dropped"];
    assert_eq!(dropped["1:dedup_exact:duplicate"], 20, "{dropped}");
    let near = dropped["2:dedup_minhash:near_duplicate"].as_u64().unwrap_or(0);
    assert!(near >= 48, "only {near} of C's 50 near copies of published rows were removed");
    assert_eq!(v2["rows"]["out"].as_u64().unwrap(), 300 + 100 - near);
    for p in shards(&v1) {
        assert!(shards(&v2).contains(&p), "v2 does not list v1's shard {p:?}");
    }
    for w in worker_pids(&v2) {
        assert!(cluster.executor_pids().contains(&w), "input read by pid {w}, not by an executor");
    }
    let state: Vec<&str> = v2["side_files"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(state.iter().any(|f| f.starts_with("v00001/_state/step-002/")), "{state:?}");
    assert!(state.iter().any(|f| f.starts_with("v00002/_state/step-002/")), "{state:?}");
    assert_only_dataset(&s, "cluster", &v2);
    // The same incremental rebuild run locally: the same rows and shards.
    let l2 = local();
    assert_eq!(l2["rows"], v2["rows"]);
    let names = |m: &serde_json::Value| shards(m).into_iter().map(|(_, h)| h).collect::<Vec<_>>();
    assert_eq!(names(&l2), names(&v2), "the cluster's incremental version differs from the local one");
    // Nothing changed: nothing committed.
    assert_eq!(submit()["up_to_date"], true);
}
