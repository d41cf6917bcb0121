//! A cluster only its owners can use: every channel needs the token and TLS, and
//! executors touch only what their `--allow-read` / `--allow-write` prefixes allow.
//! One cluster (TLS, token, a policy) serves every check.

use std::path::Path;
use std::process::{Command, Output};

use crate::cluster::{client_env, scheduler_client, tls_channel, tls_dir, token, Bearer, Cluster};
use crate::common::*;

fn submit(root: &Path, job: &Path, cluster: &Cluster, env: &[(String, String)], unset: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dsproc"));
    c.current_dir(root).args(["submit", job.to_str().unwrap(), "--cluster", &cluster.url, "--json", "-q"]);
    for k in ["DSPROC_CLUSTER_TOKEN", "DSPROC_CLUSTER_TOKEN_FILE", "DSPROC_TLS_CA"] {
        c.env_remove(k);
    }
    c.envs(env.iter().map(|(k, v)| (k, v)));
    for k in unset {
        c.env_remove(k);
    }
    c.output().unwrap()
}

fn failed_with(o: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "expected exit 1 with {needle:?}: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// Files below `dir` a job wrote (shards, manifests, versions), ignoring run history.
fn written(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.retain(|p| !p.contains("/_history/"));
    out
}

fn write_job(path: &Path, input: &str, out: &Path, format_line: &str) {
    let spec = job(input, "[[steps]]\nop = \"normalize\"\n", out, "jsonl");
    let spec = spec.replacen("[input]\n", &format!("[input]\n{format_line}"), 1);
    std::fs::write(path, spec).unwrap();
}

#[test]
fn a_secure_cluster_refuses_calls_without_the_token_or_tls_and_paths_outside_its_policy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join("data");
    let forbidden = root.join("forbidden");
    let outs = root.join("outs");
    for d in [&data, &forbidden, &outs] {
        std::fs::create_dir_all(d).unwrap();
    }
    synthetic_jsonl(&data.join("a.jsonl"), 300);
    synthetic_jsonl(&forbidden.join("secret.jsonl"), 50);
    let (data_s, outs_s) = (data.display().to_string(), outs.display().to_string());
    let cluster = Cluster::start_with_policy(&root, 1, &["--allow-read", &data_s, "--allow-write", &outs_s]);
    let env = client_env();
    let mut printed = String::new();

    // With the token and the CA: the job runs on the executors.
    let job = root.join("ok.toml");
    write_job(&job, &format!("{data_s}/a.jsonl"), &outs.join("ok"), "");
    let o = submit(&root, &job, &cluster, &env, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["manifest"]["rows"]["out"], 300);
    assert_eq!(m["manifest"]["engine"], "ballista");
    printed += &String::from_utf8_lossy(&o.stdout);

    // No token, a wrong token, plaintext against TLS: refused, with what to fix.
    let o = submit(&root, &job, &cluster, &env, &["DSPROC_CLUSTER_TOKEN_FILE"]);
    printed += &failed_with(&o, "refused the token");
    let wrong = [env.clone(), vec![("DSPROC_CLUSTER_TOKEN".into(), "not-the-token-0123456789".into())]].concat();
    let o = submit(&root, &job, &cluster, &wrong, &[]);
    printed += &failed_with(&o, "refused the token");
    let o = submit(&root, &job, &cluster, &env, &["DSPROC_TLS_CA"]);
    printed += &failed_with(&o, "DSPROC_TLS_CA");

    // Raw gRPC (tonic) and Flight (arrow-flight) clients, not dsproc's.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use ballista_core::serde::protobuf::GetJobStatusParams;
        let params = || GetJobStatusParams { job_id: "no-such-job".into() };
        for t in [None, Some("not-the-token-0123456789")] {
            let mut c = scheduler_client(&cluster.url, t).await.unwrap();
            let e = c.get_job_status(params()).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "scheduler with token {t:?}: {e}");
        }
        let mut c = scheduler_client(&cluster.url, Some(&token())).await.unwrap();
        if let Err(e) = c.get_job_status(params()).await {
            assert_ne!(e.code(), tonic::Code::Unauthenticated, "the right token was refused: {e}");
        }
        // Plaintext to the TLS port gets no answer from the service.
        let plain =
            tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.url.trim_start_matches("df://")))
                .unwrap()
                .connect()
                .await;
        if let Ok(ch) = plain {
            let mut c = ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient::new(ch);
            assert!(c.get_job_status(params()).await.is_err(), "a plaintext call was answered");
        }
        // An executor's Flight service: do_get without the token.
        let port = cluster.flight_ports[0];
        let ch = tls_channel(&format!("127.0.0.1:{port}")).await.unwrap();
        for t in [None, Some("not-the-token-0123456789".to_string())] {
            let mut f =
                arrow_flight::flight_service_client::FlightServiceClient::with_interceptor(ch.clone(), Bearer(t));
            let e = f.do_get(arrow_flight::Ticket { ticket: b"anything".to_vec().into() }).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "flight do_get: {e}");
        }
        let mut f =
            arrow_flight::flight_service_client::FlightServiceClient::with_interceptor(ch, Bearer(Some(token())));
        if let Err(e) = f.do_get(arrow_flight::Ticket { ticket: b"anything".to_vec().into() }).await {
            assert_ne!(e.code(), tonic::Code::Unauthenticated, "flight refused the right token: {e}");
        }
    });

    // A job reading /etc/passwd: the executors refuse it, and write nothing.
    let job = root.join("passwd.toml");
    write_job(&job, "/etc/passwd", &outs.join("passwd"), "format = \"text\"\n");
    let o = submit(&root, &job, &cluster, &env, &[]);
    let err = failed_with(&o, "/etc/passwd");
    assert!(err.contains("access denied"), "{err}");
    assert!(written(&outs.join("passwd")).iter().all(|p| !p.contains("part-")), "{:?}", written(&outs));
    assert!(!outs.join("passwd/manifest.json").exists());
    printed += &err;

    // A symlink that pointed inside the allowed prefix when the job was validated
    // and was swapped for one into a forbidden directory before it ran.
    let link = data.join("link.jsonl");
    std::os::unix::fs::symlink(data.join("a.jsonl"), &link).unwrap();
    let job = root.join("link.toml");
    write_job(&job, &link.display().to_string(), &outs.join("link"), "");
    let o = Command::new(env!("CARGO_BIN_EXE_dsproc")).args(["validate", job.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(forbidden.join("secret.jsonl"), &link).unwrap();
    let o = submit(&root, &job, &cluster, &env, &[]);
    let err = failed_with(&o, "access denied");
    assert!(err.contains("secret.jsonl"), "the refusal names where the link leads: {err}");
    assert!(!outs.join("link/manifest.json").exists());
    assert!(written(&outs.join("link")).iter().all(|p| !p.contains("part-")));
    printed += &err;

    // A job writing outside --allow-write: refused; no shard is written there.
    let elsewhere = root.join("elsewhere");
    let job = root.join("elsewhere.toml");
    write_job(&job, &format!("{data_s}/a.jsonl"), &elsewhere, "");
    let o = submit(&root, &job, &cluster, &env, &[]);
    let err = failed_with(&o, "access denied");
    assert!(err.contains("elsewhere"), "{err}");
    assert!(written(&elsewhere).iter().all(|p| !p.contains("part-")), "{:?}", written(&elsewhere));
    assert!(!elsewhere.join("manifest.json").exists());
    printed += &err;

    // Secrets stay secret: the token and the key appear in no log and no output.
    let key = std::fs::read_to_string(tls_dir().join("cluster.key")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut logs = printed;
    for f in ["scheduler.log", "executor-0.log"] {
        logs += &std::fs::read_to_string(root.join(f)).unwrap();
    }
    assert!(!logs.contains(&token()), "the token was printed");
    assert!(!logs.contains(&key_body[..40]), "the TLS key was printed");
    assert!(logs.contains("refused a call"), "refused calls are logged");
}

#[test]
fn servers_refuse_open_binds_without_tls_and_executors_refuse_to_start_without_a_policy() {
    let bin = env!("CARGO_BIN_EXE_dsproc");
    let o = Command::new(bin).args(["scheduler", "--bind", "0.0.0.0", "--port", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--insecure") && err.contains("--tls-ca"), "{err}");
    let o = Command::new(bin)
        .args(["executor", "--scheduler", "df://127.0.0.1:1", "--bind", "0.0.0.0", "--allow-any-path"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(bin).args(["executor", "--scheduler", "df://127.0.0.1:1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--allow-read") && err.contains("--allow-any-path"), "{err}");
    // The token never comes from the command line.
    let o = Command::new(bin).args(["submit", "x.toml", "--token", "abc"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn pii_salts_and_tokens_never_reach_plans_manifests_or_json() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("pii.toml");
    let spec = std::fs::read_to_string(repo().join("jobs/pii.toml"))
        .unwrap()
        .replace("action = \"mask\"", "action = \"hash\"")
        .replace("datasets/", &format!("{}/datasets/", repo().display()))
        .replace("out/pii", &dir.path().join("out").display().to_string());
    std::fs::write(&job, spec).unwrap();
    let (salt, tok) = ("salt-that-must-stay-secret-4242", "token-that-must-stay-secret-4242");
    let mut seen = String::new();
    for args in [&["run", job.to_str().unwrap(), "--json", "-vv"][..], &["explain", job.to_str().unwrap(), "--json"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_dsproc"))
            .args(args)
            .env("DSPROC_PII_SALT", salt)
            .env("DSPROC_CLUSTER_TOKEN", tok)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        seen += &String::from_utf8_lossy(&o.stdout);
        seen += &String::from_utf8_lossy(&o.stderr);
    }
    seen += &std::fs::read_to_string(dir.path().join("out/manifest.json")).unwrap();
    assert!(seen.contains("hash"), "the job ran with action = hash");
    assert!(!seen.contains(salt), "the PII salt was printed or written");
    assert!(!seen.contains(tok), "the cluster token was printed or written");
}

#[test]
fn mutual_tls_needs_a_client_certificate_signed_by_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    synthetic_jsonl(&root.join("a.jsonl"), 200);
    let cluster = Cluster::start_mtls(&root, 1);
    let job = root.join("j.toml");
    write_job(&job, &root.join("a.jsonl").display().to_string(), &root.join("out"), "");
    // A certificate from another CA is no better than none.
    let other = root.join("other-ca");
    let o =
        Command::new(env!("CARGO_BIN_EXE_dsproc")).args(["cluster", "certs"]).arg(&other).arg("-q").output().unwrap();
    assert!(o.status.success());
    let with_cert = |d: &Path| {
        let mut env = client_env();
        env.push(("DSPROC_TLS_CERT".into(), d.join("cluster.pem").display().to_string()));
        env.push(("DSPROC_TLS_KEY".into(), d.join("cluster.key").display().to_string()));
        env
    };
    for env in [client_env(), with_cert(&other)] {
        let o = submit(&root, &job, &cluster, &env, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(!root.join("out/manifest.json").exists());
    }
    let o = submit(&root, &job, &cluster, &with_cert(tls_dir()), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["manifest"]["rows"]["out"], 200);
}
