//! A real cluster: a scheduler and executors as separate `dsproc` processes on
//! 127.0.0.1, jobs submitted with `dsproc submit --cluster`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, child: &mut Child) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "process exited before opening port {port}");
        assert!(start.elapsed() < Duration::from_secs(30), "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The TLS material and token every test cluster runs with (made once per test
/// process by `dsproc cluster certs`): ca.pem, cluster.pem, cluster.key, token.
pub(crate) fn tls_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dsproc-it-tls-{}", std::process::id()));
        let o =
            Command::new(env!("CARGO_BIN_EXE_dsproc")).args(["cluster", "certs"]).arg(&dir).arg("-q").output().unwrap();
        assert!(o.status.success(), "dsproc cluster certs: {}", String::from_utf8_lossy(&o.stderr));
        dir
    })
}

/// The environment a client of the test clusters needs (token file, CA).
pub(crate) fn client_env() -> Vec<(String, String)> {
    let d = tls_dir();
    vec![
        ("DSPROC_CLUSTER_TOKEN_FILE".into(), d.join("token").display().to_string()),
        ("DSPROC_TLS_CA".into(), d.join("ca.pem").display().to_string()),
    ]
}

/// The flags that give a server process the cluster's TLS identity and token.
fn server_flags() -> Vec<String> {
    let d = tls_dir();
    let f = |n: &str| d.join(n).display().to_string();
    [
        "--tls-ca",
        &f("ca.pem"),
        "--tls-cert",
        &f("cluster.pem"),
        "--tls-key",
        &f("cluster.key"),
        "--token-file",
        &f("token"),
    ]
    .map(String::from)
    .to_vec()
}

/// Scheduler + executors with TLS and a token; every process is killed (by its PID) on drop.
pub(crate) struct Cluster {
    pub url: String,
    scheduler: Child,
    executors: Vec<Child>,
    /// The executors' Arrow Flight ports.
    pub flight_ports: Vec<u16>,
}

impl Cluster {
    fn start(dir: &Path, executors: usize, executor_timeout: u64) -> Self {
        Self::start_with_env(dir, executors, executor_timeout, &[])
    }

    /// A cluster whose executors have `env` (e.g. object-store credentials).
    pub(crate) fn start_with_env(
        dir: &Path,
        executors: usize,
        executor_timeout: u64,
        env: &[(String, String)],
    ) -> Self {
        Self::start_full(dir, executors, executor_timeout, env, None, &["--allow-any-path"], &[])
    }

    /// A cluster whose executors get `policy` (`--allow-read P`, …) instead of `--allow-any-path`.
    pub(crate) fn start_with_policy(dir: &Path, executors: usize, policy: &[&str]) -> Self {
        Self::start_full(dir, executors, 30, &[], None, policy, &[])
    }

    /// Like [`Self::start_with_env`], with executors that cannot see `hide`: each
    /// runs in its own mount namespace with an empty tmpfs over that directory and
    /// its work directory as its cwd (a worker that does not share the driver's
    /// filesystem). None (with a printed SKIP) where namespaces are not allowed.
    pub(crate) fn start_isolated(dir: &Path, executors: usize, env: &[(String, String)], hide: &Path) -> Option<Self> {
        let probe = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!("mount -t tmpfs tmpfs '{}'", hide.display()))
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            crate::common::skip("cannot give executors their own mount namespace here (needs root and unshare)");
            return None;
        }
        Some(Self::start_full(dir, executors, 30, env, Some(hide), &["--allow-any-path"], &[]))
    }

    /// A cluster with mutual TLS: every client must present a certificate the CA signed.
    pub(crate) fn start_mtls(dir: &Path, executors: usize) -> Self {
        Self::start_full(dir, executors, 30, &[], None, &["--allow-any-path"], &["--tls-client-auth"])
    }

    /// Scheduler and executors: executors see `env`, cannot see `hide` (when
    /// given), get `policy`; both get `server_extra` after the TLS flags.
    fn start_full(
        dir: &Path,
        executors: usize,
        executor_timeout: u64,
        env: &[(String, String)],
        hide: Option<&Path>,
        policy: &[&str],
        server_extra: &[&str],
    ) -> Self {
        let bin = env!("CARGO_BIN_EXE_dsproc");
        let port = free_port();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).unwrap());
        let mut scheduler = Command::new(bin)
            .args(["scheduler", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--executor-timeout", &executor_timeout.to_string()])
            .args(server_flags())
            .args(server_extra)
            .stderr(log("scheduler.log"))
            .spawn()
            .unwrap();
        wait_port(port, &mut scheduler);
        let url = format!("df://127.0.0.1:{port}");
        let mut cluster = Self { url, scheduler, executors: Vec::new(), flight_ports: Vec::new() };
        for i in 0..executors {
            let (fp, gp) = (free_port(), free_port());
            let work = dir.join(format!("work-{i}"));
            std::fs::create_dir_all(&work).unwrap();
            let mut cmd = match hide {
                None => Command::new(bin),
                Some(h) => {
                    let mut c = Command::new("unshare");
                    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                        .arg(format!("mount -t tmpfs tmpfs '{}' && exec \"$0\" \"$@\"", h.display()))
                        .arg(bin)
                        .current_dir(&work);
                    c
                }
            };
            let mut e = cmd
                .args(["executor", "--scheduler", &cluster.url, "--bind", "127.0.0.1"])
                .args(["--port", &fp.to_string(), "--grpc-port", &gp.to_string(), "--task-slots", "2"])
                .args(["--heartbeat", "1", "--work-dir", work.to_str().unwrap()])
                .args(server_flags())
                .args(server_extra)
                .args(policy)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stderr(log(&format!("executor-{i}.log")))
                .spawn()
                .unwrap();
            wait_port(fp, &mut e);
            cluster.executors.push(e);
            cluster.flight_ports.push(fp);
        }
        std::thread::sleep(Duration::from_millis(1500)); // registration
        cluster
    }

    pub(crate) fn executor_pids(&self) -> Vec<u32> {
        self.executors.iter().map(Child::id).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.executors.iter_mut().chain(std::iter::once(&mut self.scheduler)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn submit(cwd: &Path, job: &Path, url: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(cwd)
        .args(["submit", job.to_str().unwrap(), "--cluster", url, "--json", "-q"])
        .envs(client_env())
        .args(["--set", &format!("output.uri={}", out.display())])
        .args(extra)
        .output()
        .unwrap()
}

fn manifest(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "job failed: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["manifest"].clone()
}

fn local(cwd: &Path, job: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(cwd)
        .args(["run", job.to_str().unwrap(), "--json", "-q", "--set", &format!("output.uri={}", out.display())])
        .args(extra)
        .output()
        .unwrap();
    manifest(&o)
}

pub(crate) fn worker_pids(m: &serde_json::Value) -> Vec<u32> {
    m["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().trim_start_matches("pid ").split('@').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn every_job_on_a_two_executor_cluster_matches_local() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2, 30);
    let mut jobs: Vec<PathBuf> = std::fs::read_dir(repo().join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    jobs.sort();
    assert!(jobs.len() >= 2);
    for job in &jobs {
        let name = job.file_stem().unwrap().to_str().unwrap();
        let Some(extra) = crate::common::example_job_args(job) else { continue };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let on_cluster = manifest(&submit(&repo(), job, &cluster.url, &dir.path().join(format!("{name}-c")), &extra));
        let on_local = local(&repo(), job, &dir.path().join(format!("{name}-l")), &extra);
        assert_eq!(on_cluster["shards"], on_local["shards"], "{name}: cluster shards differ from local");
        assert_eq!(on_cluster["rows"], on_local["rows"], "{name}");
        assert_eq!(on_cluster["engine"], "ballista");
        // The input was read by executor processes, not by the driver.
        let workers = worker_pids(&on_cluster);
        assert!(!workers.is_empty());
        for w in workers {
            assert!(cluster.executor_pids().contains(&w), "{name}: read by pid {w}, not an executor");
        }
    }
}

fn big_input(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..6 {
        synthetic_jsonl(&input.join(format!("p{i}.jsonl")), 40_000);
    }
    let job = dir.join("dedup.toml");
    let steps = "[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"dedup_exact\"\n";
    std::fs::write(
        &job,
        crate::common::job(&format!("{}/*.jsonl", input.display()), steps, &dir.join("unused"), "parquet"),
    )
    .unwrap();
    job
}

#[test]
fn losing_an_executor_mid_job_still_commits_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let job = big_input(dir.path());
    let expected = local(dir.path(), &job, &dir.path().join("local"), &[]);
    let mut cluster = Cluster::start(dir.path(), 3, 3);
    let out = dir.path().join("cluster");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir.path())
        .args(["submit", job.to_str().unwrap(), "--cluster", &cluster.url, "--json", "-q", "--timeout", "240"])
        .envs(client_env())
        .args(["--set", &format!("output.uri={}", out.display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill an executor once it has done some of the work (its first read stats appear).
    let start = Instant::now();
    while !out.join("_staging").exists()
        || walk(&out.join("_staging")).iter().filter(|p| p.to_string_lossy().contains("read-")).count() < 2
    {
        assert!(start.elapsed() < Duration::from_secs(120), "job never got going");
        assert!(child.try_wait().unwrap().is_none(), "job ended before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut victim = cluster.executors.remove(0);
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let o = child.wait_with_output().unwrap();
    let m = manifest(&o);
    assert_eq!(m["shards"], expected["shards"], "output after executor loss differs from local");
    assert_eq!(m["rows"], expected["rows"]);
}

#[test]
fn losing_every_executor_fails_within_the_timeout_without_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let job = big_input(dir.path());
    let mut cluster = Cluster::start(dir.path(), 2, 2);
    let out = dir.path().join("cluster");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir.path())
        .args(["submit", job.to_str().unwrap(), "--cluster", &cluster.url, "--json", "-q", "--timeout", "20"])
        .envs(client_env())
        .args(["--set", &format!("output.uri={}", out.display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !out.join("_staging").exists() {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    for e in cluster.executors.iter_mut() {
        e.kill().unwrap();
        e.wait().unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("job failed") || err.contains("timed out"), "{err}");
    assert!(!out.join("manifest.json").exists());
}

/// The scheduler's status of job `job_id` (Debug form: `Some(Failed(…))`).
fn job_status(url: &str, job_id: &str) -> String {
    use ballista_core::serde::protobuf::GetJobStatusParams;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = scheduler_client(url, Some(&token())).await.unwrap();
        let r = c.get_job_status(GetJobStatusParams { job_id: job_id.into() }).await.unwrap().into_inner();
        format!("{:?}", r.status.and_then(|s| s.status))
    })
}

/// The test clusters' token.
pub(crate) fn token() -> String {
    std::fs::read_to_string(tls_dir().join("token")).unwrap().trim().to_string()
}

/// A TLS channel to `host:port` that trusts the test clusters' CA (tonic directly,
/// not dsproc's client).
pub(crate) async fn tls_channel(addr: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let ca = Certificate::from_pem(std::fs::read(tls_dir().join("ca.pem")).unwrap());
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(ClientTlsConfig::new().ca_certificate(ca))?
        .connect()
        .await
}

/// Adds `authorization: Bearer TOKEN` when a token is given.
#[derive(Clone)]
pub(crate) struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

type SchedulerClient = ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;

/// A raw scheduler client over TLS, with `token` as a bearer token when given.
pub(crate) async fn scheduler_client(
    url: &str,
    token: Option<&str>,
) -> Result<SchedulerClient, tonic::transport::Error> {
    let channel = tls_channel(url.trim_start_matches("df://")).await?;
    Ok(SchedulerGrpcClient::with_interceptor(channel, Bearer(token.map(String::from))))
}

#[test]
fn sigterm_during_submit_cancels_the_cluster_job_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let job = big_input(dir.path());
    let cluster = Cluster::start(dir.path(), 1, 30);
    let out = dir.path().join("cluster");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .current_dir(dir.path())
        .args(["submit", job.to_str().unwrap(), "--cluster", &cluster.url, "--json", "-q"])
        .envs(client_env())
        .args(["--set", &format!("output.uri={}", out.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("_staging").exists()
        || walk(&out.join("_staging")).iter().filter(|p| p.to_string_lossy().contains("read-")).count() < 1
    {
        assert!(start.elapsed() < Duration::from_secs(120), "job never got going");
        assert!(child.try_wait().unwrap().is_none(), "job ended before the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    // The scheduler was told: the job is failed (cancelled), not running on.
    let job_id = err
        .lines()
        .find_map(|l| l.strip_prefix("cancelled cluster job "))
        .unwrap_or_else(|| panic!("no cancellation reported: {err}"))
        .trim()
        .to_string();
    let mut st = job_status(&cluster.url, &job_id);
    while !st.contains("Failed") {
        assert!(sent.elapsed() < Duration::from_secs(30), "job {job_id} still {st} after the cancellation");
        std::thread::sleep(Duration::from_millis(100));
        st = job_status(&cluster.url, &job_id);
    }
    // Its tasks stopped: nothing more appears under the output, and gc leaves no
    // trace of the interrupted run.
    std::thread::sleep(Duration::from_secs(2));
    let settled = walk(&out);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(walk(&out), settled, "the cancelled job's tasks kept writing");
    let o = Command::new(env!("CARGO_BIN_EXE_dsproc"))
        .args(["gc", out.to_str().unwrap(), "--grace", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("manifest.json").exists());
    let left: Vec<_> = walk(&out).into_iter().filter(|p| !p.to_string_lossy().contains("_history")).collect();
    assert!(left.is_empty(), "gc left {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
