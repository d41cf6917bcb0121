//! The `dsproc` binary: the only crate that uses anyhow. Exit codes: 0 success,
//! 1 the job ran and failed, 2 usage or spec error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use dsproc_common::DsprocError;
use dsproc_job::LoadedSpec;
use dsproc_runtime::{Engine, EngineOptions, RunOptions};

/// `println!` that does not panic when stdout is closed (`dsproc inspect … | head`):
/// a reader that went away is not an error of ours.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Job-level timeout of cluster runs when `--timeout` is not given.
const DEFAULT_CLUSTER_TIMEOUT_SECS: u64 = 24 * 3600;

#[derive(Parser, Debug)]
#[command(name = "dsproc", version, about = "Turn raw text corpora into training-ready shards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print one JSON summary object on stdout at the end.
    #[arg(long, global = true)]
    json: bool,
    /// Only print errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum ScheduleCommand {
    /// Each job's last runs (result, exit, version, reason), whether one is
    /// running now, and the next due time.
    Status {
        /// Job specs or directories of them.
        #[arg(required = true)]
        paths: Vec<String>,
        /// How many of the last runs to show.
        #[arg(short = 'n', long, default_value_t = 10)]
        last: usize,
    },
    /// The next fire times of a job's [schedule] (or of --cron in --timezone).
    Next {
        /// A job spec with a [schedule] table.
        job: Option<String>,
        /// How many fire times.
        #[arg(short = 'n', default_value_t = 5)]
        n: usize,
        /// A cron line to check instead of a job's.
        #[arg(long, conflicts_with = "job")]
        cron: Option<String>,
        /// The time zone of --cron.
        #[arg(long, default_value = "UTC", requires = "cron")]
        timezone: String,
        /// Fire times after this instant (RFC 3339; default now).
        #[arg(long, default_value = "now")]
        after: String,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job locally, in-process (the embedded default).
    Run(RunArgs),
    /// Run a job on the Ballista cluster named by --cluster or DSPROC_CLUSTER; locally with neither.
    Submit {
        #[command(flatten)]
        run: RunArgs,
        /// Scheduler URL, df://HOST:PORT.
        #[arg(long, env = "DSPROC_CLUSTER")]
        cluster: Option<String>,
        #[command(flatten)]
        security: SecurityFlags,
    },
    /// Check a spec and its inputs without moving data.
    Validate(SpecArgs),
    /// Print the logical and physical plans of a job.
    Explain {
        #[command(flatten)]
        spec: SpecArgs,
        /// Target partitions to plan for (default: number of cores).
        #[arg(long)]
        partitions: Option<usize>,
    },
    /// Summarise a committed dataset from its manifest.
    Inspect {
        /// The dataset's directory or prefix (a path, s3://, gs://, az://), or a job
        /// spec (JOB.toml: its output.uri and [output.storage] settings).
        output: String,
        /// Show this version instead of the current one.
        #[arg(long = "version", value_name = "N")]
        at_version: Option<u64>,
    },
    /// Write one self-contained HTML page on a committed version: rows through
    /// each step, drops by reason, quarantine, document lengths, languages,
    /// checks and the dataset's version history (inline SVG; loads nothing).
    Report {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
        /// Report on this version instead of the current one.
        #[arg(long = "version", value_name = "N")]
        at_version: Option<u64>,
        /// The HTML file to write.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Lineage of a version, as an OpenLineage RunEvent or an MLflow dataset record.
    Lineage {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
        /// The version (default: the current one).
        #[arg(long = "version", value_name = "N")]
        at_version: Option<u64>,
        /// openlineage (a RunEvent, spec 2-0-2) | mlflow (a dataset record for mlflow.log_input)
        #[arg(long, default_value = "openlineage")]
        format: String,
    },
    /// List a dataset's versions with their status.
    Versions {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
    },
    /// Make version N current again (recorded in the history as a pointer change).
    Rollback {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
        /// The version to make current.
        version: u64,
    },
    /// What changed from version A to version B (rows, shards, inputs, spec, step stats).
    Diff {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
        a: u64,
        b: u64,
    },
    /// Remove what crashed runs left (staging, uncommitted version prefixes, a stale
    /// commit lock); with --keep, expire versions beyond retention and remove their files.
    Gc {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
        /// Keep the newest K versions (the current one always); older ones are
        /// marked expired and their files removed (never a file a kept version lists).
        #[arg(long, value_name = "K")]
        keep: Option<usize>,
        /// With --keep: expire only versions created longer ago than this (30d, 12h, 90m).
        #[arg(long, value_name = "DUR", requires = "keep")]
        older_than: Option<String>,
        /// A run counts as dead when its process is gone (same host) or its
        /// heartbeat is older than this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        grace: u64,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Scheduled rebuilds: run each job (JOB.toml, or every *.toml with a
    /// [schedule] in a DIR) at its `[schedule] cron` times, in the foreground,
    /// until SIGTERM (the current run is stopped cleanly). Also: `schedule status`,
    /// `schedule next`.
    #[command(args_conflicts_with_subcommands = true)]
    Schedule {
        #[command(subcommand)]
        what: Option<ScheduleCommand>,
        /// Job specs or directories of them.
        paths: Vec<String>,
        /// Run the jobs on this Ballista cluster (df://HOST:PORT) instead of locally.
        #[arg(long, env = "DSPROC_CLUSTER")]
        cluster: Option<String>,
    },
    /// List every op with its options, types, defaults and docs (--json: as JSON).
    Ops {
        /// Print the README's spec reference (markdown) instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Start a Ballista scheduler with everything dsproc needs (runs until stopped).
    Scheduler {
        /// Address to bind (and advertise).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// gRPC port clients and executors connect to.
        #[arg(long, default_value_t = 50050)]
        port: u16,
        /// Seconds without a heartbeat after which an executor is declared lost and its tasks
        /// rerun (at least 12: a busy executor polls, its heartbeat, every 5 s).
        #[arg(long, default_value_t = 180)]
        executor_timeout: u64,
        /// Seconds after which a finished job's shuffle files are removed from executors.
        #[arg(long, default_value_t = 300)]
        job_cleanup: u64,
        #[command(flatten)]
        security: SecurityFlags,
        /// Allow a non-loopback --bind without TLS and a token (prints a warning).
        #[arg(long)]
        insecure: bool,
    },
    /// Start a Ballista executor with everything dsproc needs (runs until stopped).
    Executor {
        /// The scheduler, df://HOST:PORT.
        #[arg(long, env = "DSPROC_CLUSTER", default_value = "df://127.0.0.1:50050")]
        scheduler: String,
        /// Address to bind (and advertise to the scheduler).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Arrow Flight port (shuffle reads).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (unused: executors pull their tasks; kept so existing units still start).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Directory for shuffle files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<String>,
        /// Concurrent tasks (default: number of cores).
        #[arg(long, default_value_t = 0)]
        task_slots: usize,
        /// Memory pool for this executor's tasks (e.g. 4GiB); sorts spill beyond it.
        #[arg(long, value_name = "SIZE")]
        memory_limit: Option<String>,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 60)]
        heartbeat: u64,
        #[command(flatten)]
        security: SecurityFlags,
        /// Allow a non-loopback --bind without TLS and a token (prints a warning).
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        access: AccessFlags,
    },
    /// Cluster set-up helpers.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Write a throwaway CA, a certificate for the cluster's processes (TLS and
    /// mutual TLS) and a random token into DIR: ca.pem, cluster.pem, cluster.key, token.
    Certs {
        dir: PathBuf,
        /// A host name or IP address the certificate must be valid for (besides
        /// localhost and 127.0.0.1); repeat for each host of the cluster.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
}

/// The cluster's token and TLS files. The token itself is read only from
/// DSPROC_CLUSTER_TOKEN or the token file, never from the command line.
#[derive(Args, Debug, Clone, Default)]
struct SecurityFlags {
    /// File holding the cluster's shared token.
    #[arg(long, env = "DSPROC_CLUSTER_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the cluster's certificates: turns TLS on.
    #[arg(long, env = "DSPROC_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This process's certificate (PEM): a server's identity, a client's for mutual TLS.
    #[arg(long, env = "DSPROC_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The key (PEM) of --tls-cert.
    #[arg(long, env = "DSPROC_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Servers: require clients to present a certificate signed by --tls-ca (mutual TLS).
    #[arg(long, env = "DSPROC_TLS_CLIENT_AUTH")]
    tls_client_auth: bool,
}

impl SecurityFlags {
    /// Loads and installs this process's cluster security.
    fn install(&self) -> Result<std::sync::Arc<dsproc_runtime::security::ClusterSecurity>, DsprocError> {
        let args = dsproc_runtime::security::SecurityArgs {
            token_file: self.token_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_auth: self.tls_client_auth,
        };
        dsproc_runtime::security::install(dsproc_runtime::security::ClusterSecurity::load(&args)?)?;
        Ok(dsproc_runtime::security::current())
    }
}

/// What this process may read and write (executors; `dsproc run` when given).
#[derive(Args, Debug, Clone, Default)]
struct AccessFlags {
    /// A path or URL prefix plans may read (inputs, tokenizer files); repeat for each.
    #[arg(long = "allow-read", value_name = "PREFIX")]
    allow_read: Vec<String>,
    /// A path or URL prefix plans may write (outputs, quarantine); also readable.
    #[arg(long = "allow-write", value_name = "PREFIX")]
    allow_write: Vec<String>,
    /// Allow any path and URL (an executor refuses to start with no policy at all).
    #[arg(long, conflicts_with_all = ["allow_read", "allow_write"])]
    allow_any_path: bool,
}

impl AccessFlags {
    fn given(&self) -> bool {
        !self.allow_read.is_empty() || !self.allow_write.is_empty()
    }

    /// Installs the policy; `required`: no policy at all is an error.
    fn install(&self, required: bool) -> Result<(), DsprocError> {
        use dsproc_io::policy::{install, AccessPolicy};
        if self.allow_any_path {
            install(AccessPolicy::any());
        } else if self.given() {
            install(
                AccessPolicy::new(&self.allow_read, &self.allow_write)
                    .map_err(|e| DsprocError::usage_source("--allow-read/--allow-write", e))?,
            );
        } else if required {
            return Err(DsprocError::usage(
                "an executor runs whatever plans reach it: give --allow-read PREFIX and --allow-write PREFIX \
                 (what its jobs may read and write), or --allow-any-path explicitly",
            ));
        }
        Ok(())
    }
}

/// Refuses a non-loopback bind without TLS and a token, unless `insecure`.
fn check_bind(
    bind: &str,
    security: &dsproc_runtime::security::ClusterSecurity,
    insecure: bool,
) -> Result<(), DsprocError> {
    if dsproc_runtime::security::is_loopback(bind) || (security.has_tls() && security.has_token()) {
        return Ok(());
    }
    if !insecure {
        return Err(DsprocError::usage(format!(
            "--bind {bind} is reachable from other hosts: give --tls-ca/--tls-cert/--tls-key and a token \
             (--token-file or DSPROC_CLUSTER_TOKEN), or --insecure to run an open cluster anyway"
        )));
    }
    eprintln!(
        "warning: --insecure: listening on {bind} with {}; anyone who reaches this port can run plans here",
        security.describe()
    );
    Ok(())
}

#[derive(Args, Debug)]
struct SpecArgs {
    /// The job spec (TOML).
    job: PathBuf,
    /// Override a spec value: --set output.uri=/tmp/out, --set steps.0.form=nfkc.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Memory pool limit (e.g. 1GiB); sorts and aggregations spill to disk beyond it.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
    /// Target partitions (default: number of cores).
    #[arg(long)]
    partitions: Option<usize>,
    /// Fail the job if it runs longer than this many seconds (on a cluster the
    /// default is 86400: a job whose executors all vanish would otherwise wait forever).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// POST OpenLineage events (START, then COMPLETE or FAIL) to this http:// URL.
    #[arg(long, value_name = "URL")]
    lineage_url: Option<String>,
    /// Incremental rebuild for this run (as `output.incremental = true`): nothing
    /// if nothing changed since the current version, only the added files when
    /// files were only added, else a full rebuild saying why.
    #[arg(long)]
    incremental: bool,
    /// At the end, write the HTML report of the version the run committed (or
    /// recorded as rejected, or found up to date) to this file, as `dsproc report`.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    access: AccessFlags,
}

fn engine_options(partitions: Option<usize>, memory_limit: Option<&str>) -> Result<EngineOptions, DsprocError> {
    let mut o = EngineOptions::default();
    if let Some(p) = partitions {
        if p == 0 {
            return Err(DsprocError::usage("--partitions must be at least 1"));
        }
        o.target_partitions = p;
    }
    o.memory_limit = parse_memory_limit(memory_limit)?;
    Ok(o)
}

/// `--memory-limit SIZE` (driver and executor).
fn parse_memory_limit(m: Option<&str>) -> Result<Option<u64>, DsprocError> {
    m.map(|m| dsproc_common::size::parse_size(m).map_err(|e| DsprocError::usage_source("--memory-limit", e)))
        .transpose()
}

async fn run(cli: &Cli) -> Result<serde_json::Value, DsprocError> {
    let tty = std::io::stderr().is_terminal() && !cli.quiet;
    match &cli.command {
        Command::Run(args) => run_job(cli, args, Engine::Local, tty).await,
        Command::Submit { run, cluster, security } => {
            let engine = match cluster.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
                Some(url) => {
                    security.install()?;
                    Engine::Remote(url.to_string())
                }
                None => Engine::Local,
            };
            run_job(cli, run, engine, tty).await
        }
        Command::Validate(args) => {
            let loaded = LoadedSpec::load(&args.job, &args.set)?;
            let input = dsproc_job::lower::resolve_input(&loaded).await?;
            dsproc_job::lower::resolve_output(&loaded)?;
            // Lowering checks every step (SQL parses, columns exist).
            let ctx = dsproc_runtime::make_context(&Engine::Local, &EngineOptions::default()).await?;
            dsproc_job::lower(&ctx, &loaded, "validate").await?;
            if !cli.json && !cli.quiet {
                outln!(
                    "{}: ok ({} steps; {} input files, {} bytes, format {})",
                    args.job.display(),
                    loaded.spec.steps.len(),
                    input.files.len(),
                    input.files.iter().map(|f| f.size).sum::<u64>(),
                    input.format.name()
                );
            }
            Ok(
                serde_json::json!({"status": "ok", "job": loaded.spec.name, "steps": loaded.spec.steps.len(), "input_files": input.files.len()}),
            )
        }
        Command::Explain { spec, partitions } => {
            let loaded = LoadedSpec::load(&spec.job, &spec.set)?;
            let text = dsproc_runtime::explain_job(&loaded, &engine_options(*partitions, None)?).await?;
            if !cli.json {
                outln!("{text}");
            }
            Ok(serde_json::json!({"status": "ok", "plan": text}))
        }
        Command::Schedule { what, paths, cluster } => {
            schedule_command(cli, what.as_ref(), paths, cluster.as_deref()).await
        }
        Command::Ops { markdown } => {
            if *markdown {
                outln!("{}", dsproc_job::reference::markdown().trim_end());
            } else if !cli.json {
                outln!("{}", dsproc_job::reference::text().trim_end());
            }
            Ok(
                serde_json::json!({"status": "ok", "ops": dsproc_job::reference::ops(), "tables": dsproc_job::reference::spec_tables()}),
            )
        }
        Command::Scheduler { bind, port, executor_timeout, job_cleanup, security, insecure } => {
            let security = security.install()?;
            check_bind(bind, &security, *insecure)?;
            if !cli.quiet {
                eprintln!("dsproc scheduler listening on df://{bind}:{port} ({})", security.describe());
            }
            let opts = dsproc_runtime::cluster::SchedulerOptions {
                bind: bind.clone(),
                port: *port,
                executor_timeout_secs: *executor_timeout,
                job_cleanup_secs: *job_cleanup,
            };
            dsproc_runtime::cluster::run_scheduler(opts).await?;
            Ok(serde_json::json!({"status": "ok"}))
        }
        Command::Executor {
            scheduler,
            bind,
            port,
            grpc_port,
            work_dir,
            task_slots,
            memory_limit,
            heartbeat,
            security,
            insecure,
            access,
        } => {
            let (scheduler_host, scheduler_port) = dsproc_runtime::cluster::parse_cluster_url(scheduler)?;
            let memory_limit = parse_memory_limit(memory_limit.as_deref())?;
            let security = security.install()?;
            check_bind(bind, &security, *insecure)?;
            access.install(true)?;
            if !cli.quiet {
                eprintln!("dsproc executor on {bind}:{port} for scheduler {scheduler} ({})", security.describe());
            }
            let opts = dsproc_runtime::cluster::ExecutorOptions {
                scheduler_host,
                scheduler_port,
                bind: bind.clone(),
                port: *port,
                grpc_port: *grpc_port,
                work_dir: work_dir.clone(),
                task_slots: *task_slots,
                memory_limit,
                heartbeat_secs: *heartbeat,
            };
            dsproc_runtime::cluster::run_executor(opts).await?;
            Ok(serde_json::json!({"status": "ok"}))
        }
        Command::Cluster { command: ClusterCommand::Certs { dir, hosts } } => {
            let files = dsproc_runtime::security::write_certs(dir, hosts)?;
            if !cli.json && !cli.quiet {
                for f in &files {
                    outln!("{}", f.display());
                }
            }
            Ok(serde_json::json!({"status": "ok", "files": files}))
        }
        Command::Gc { output, grace, dry_run, keep, older_than } => {
            gc_command(cli, output, *grace, *dry_run, *keep, older_than.as_deref()).await
        }
        Command::Versions { output } => versions_command(cli, output).await,
        Command::Report { output, at_version, out } => {
            let loc = dsproc_runtime::driver::output_location(output)?;
            let r = dsproc_runtime::report::write(&loc, *at_version, out).await?;
            if !cli.json && !cli.quiet {
                eprintln!("wrote the report of version {} of {output} to {}", r.version, out.display());
            }
            Ok(serde_json::json!({"status": "ok", "version": r.version, "report": out}))
        }
        Command::Lineage { output, at_version, format } => lineage_command(cli, output, *at_version, format).await,
        Command::Rollback { output, version } => {
            let m =
                dsproc_runtime::versions::rollback(&dsproc_runtime::driver::output_location(output)?, *version).await?;
            if !cli.json && !cli.quiet {
                outln!("{output}: version {} is current", m.version);
            }
            Ok(serde_json::json!({"status": "ok", "current": m.version}))
        }
        Command::Diff { output, a, b } => {
            let d = dsproc_runtime::versions::diff(&dsproc_runtime::driver::output_location(output)?, *a, *b).await?;
            if !cli.json && !cli.quiet {
                print_diff(&d);
            }
            Ok(d)
        }
        Command::Inspect { output, at_version } => {
            let m = match at_version {
                Some(n) => dsproc_runtime::driver::inspect_version(output, *n).await?,
                None => dsproc_runtime::driver::inspect(output).await?,
            };
            if !cli.json && !cli.quiet {
                outln!("dataset {output}");
                outln!(
                    "  version {} ({}), parent {}",
                    m.version,
                    m.status,
                    m.parent_version.map(|p| p.to_string()).unwrap_or_else(|| "none".into())
                );
                outln!("  job {} (dataset_version {}), created {}", m.job_name, &m.dataset_version[..16], m.created_at);
                outln!(
                    "  rows: in {}, out {}, quarantined {}, dropped {}",
                    m.rows.rows_in,
                    m.rows.out,
                    m.rows.quarantined,
                    m.rows.dropped.values().sum::<u64>()
                );
                for (k, v) in &m.rows.dropped {
                    outln!("    dropped {k}: {v}");
                }
                outln!(
                    "  {} shards ({}), {} bytes{}",
                    m.data_shards(),
                    m.format,
                    m.shards.iter().map(|s| s.bytes).sum::<u64>(),
                    m.tokens().map(|t| format!(", {t} tokens")).unwrap_or_default()
                );
                for s in &m.steps {
                    outln!("  step {} {}: {} -> {}", s.step, s.op, s.rows_in, s.rows_out);
                }
            }
            Ok(serde_json::to_value(&m).unwrap_or_default())
        }
    }
}

async fn run_job(cli: &Cli, args: &RunArgs, engine: Engine, tty: bool) -> Result<serde_json::Value, DsprocError> {
    let loaded = LoadedSpec::load(&args.spec.job, &args.spec.set)?;
    args.access.install(false)?;
    // On a cluster a job whose executors all vanish stays queued: never wait forever.
    let timeout = match (&engine, args.timeout) {
        (_, Some(t)) => Some(Duration::from_secs(t)),
        (Engine::Remote(_), None) => Some(Duration::from_secs(DEFAULT_CLUSTER_TIMEOUT_SECS)),
        (_, None) => None,
    };
    let opts = RunOptions {
        engine,
        engine_opts: engine_options(args.partitions, args.memory_limit.as_deref())?,
        progress: tty,
        timeout,
        lineage_url: args.lineage_url.clone(),
        incremental: args.incremental,
    };
    let summary = match dsproc_runtime::run_job(&loaded, &opts).await {
        Ok(s) => s,
        Err(e @ DsprocError::Rejected { .. }) => {
            // The rejected version is the newest record: its report shows why.
            if let Some(path) = &args.report {
                let out = dsproc_job::lower::resolve_output(&loaded)?;
                if let Some(n) = dsproc_runtime::report::newest_version(&out).await? {
                    write_run_report(cli, &out, n, path).await?;
                }
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let m = &summary.manifest;
    if summary.up_to_date {
        if !cli.json && !cli.quiet {
            eprintln!("up to date: version {} of {} (nothing changed; nothing committed)", m.version, summary.output);
        }
        if let Some(path) = &args.report {
            write_run_report(cli, &dsproc_job::lower::resolve_output(&loaded)?, m.version, path).await?;
        }
        return Ok(
            serde_json::json!({"status": "ok", "up_to_date": true, "version": m.version, "dataset_version": m.dataset_version, "output": summary.output, "manifest": m, "report": args.report}),
        );
    }
    if !cli.json && !cli.quiet {
        let dropped: u64 = m.rows.dropped.values().sum();
        eprintln!(
            "committed {} rows in {} shards to {} ({} in, {} quarantined, {} dropped) in {:.1}s",
            m.rows.out,
            m.data_shards(),
            summary.output,
            m.rows.rows_in,
            m.rows.quarantined,
            dropped,
            m.elapsed_s
        );
        if let Some(inc) = &m.incremental {
            match inc["mode"].as_str() {
                Some("incremental") => eprintln!(
                    "incremental: read {} new files, carried {} files ({} rows) from version {}",
                    inc["files_read"],
                    inc["files_carried"],
                    m.rows.carried.unwrap_or(0),
                    inc["parent_version"]
                ),
                _ => eprintln!("full rebuild: {}", inc["reason"].as_str().unwrap_or("")),
            }
        }
    }
    if let Some(path) = &args.report {
        write_run_report(cli, &dsproc_job::lower::resolve_output(&loaded)?, m.version, path).await?;
    }
    Ok(
        serde_json::json!({"status": "ok", "up_to_date": false, "version": m.version, "dataset_version": m.dataset_version, "output": summary.output, "manifest": m, "report": args.report}),
    )
}

/// `run --report FILE`: the report of version `n`, which the run committed; a
/// report that cannot be written fails the command (the version stays committed).
async fn write_run_report(
    cli: &Cli,
    out: &dsproc_io::Location,
    n: u64,
    path: &std::path::Path,
) -> Result<(), DsprocError> {
    dsproc_runtime::report::write(out, Some(n), path).await.map_err(|e| {
        DsprocError::job(format!("version {n} of {} is committed, but its report was not written: {e}", out.shown()))
    })?;
    if !cli.json && !cli.quiet {
        eprintln!("wrote the report of version {n} to {}", path.display());
    }
    Ok(())
}

/// `dsproc schedule [status|next]`.
async fn schedule_command(
    cli: &Cli,
    what: Option<&ScheduleCommand>,
    paths: &[String],
    cluster: Option<&str>,
) -> Result<serde_json::Value, DsprocError> {
    use dsproc_runtime::schedule;
    match what {
        Some(ScheduleCommand::Next { job, n, cron, timezone, after }) => {
            let after =
                dsproc_job::schedule::parse_instant(after).map_err(|e| DsprocError::usage(format!("--after {e}")))?;
            let c = match (job, cron) {
                (_, Some(c)) => dsproc_job::schedule::CronSchedule::parse(c, timezone).map_err(DsprocError::usage)?,
                (Some(j), None) => schedule::load_jobs(std::slice::from_ref(j))?.remove(0).schedule.cron,
                (None, None) => return Err(DsprocError::usage("give a job spec or --cron")),
            };
            let times: Vec<String> = c.upcoming(after, *n).iter().map(|t| t.to_rfc3339()).collect();
            if !cli.json {
                for t in &times {
                    outln!("{t}");
                }
            }
            Ok(serde_json::json!({"status": "ok", "cron": c.text, "timezone": c.tz.name(), "next": times}))
        }
        Some(ScheduleCommand::Status { paths, last }) => {
            let jobs = schedule::load_jobs(paths)?;
            let st = schedule::status(&jobs, *last).await?;
            if !cli.json {
                for j in st["jobs"].as_array().into_iter().flatten() {
                    outln!(
                        "{} ({}) cron {} {}; next {}",
                        j["job"].as_str().unwrap_or(""),
                        j["dataset"].as_str().unwrap_or(""),
                        j["cron"],
                        j["timezone"].as_str().unwrap_or(""),
                        j["next"].as_str().unwrap_or("never")
                    );
                    if let Some(r) = j["running"].as_object() {
                        outln!(
                            "  running now: tick {} by scheduler {} (pid {} on {})",
                            r["scheduled_for"].as_str().unwrap_or(""),
                            r["scheduler"].as_str().unwrap_or(""),
                            r["pid"],
                            r["host"].as_str().unwrap_or("")
                        );
                    }
                    for r in j["runs"].as_array().into_iter().flatten() {
                        outln!(
                            "  {} attempt {} {:<11} exit {:<4} version {:<5} {}",
                            r["scheduled_for"].as_str().unwrap_or(""),
                            r["attempt"],
                            r["status"].as_str().unwrap_or(""),
                            r["exit"],
                            r["version"],
                            r["reason"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(serde_json::json!({"status": "ok", "jobs": st["jobs"]}))
        }
        None => {
            let jobs = schedule::load_jobs(paths)?;
            let exe =
                std::env::current_exe().map_err(|e| DsprocError::job(format!("cannot find the dsproc binary: {e}")))?;
            let opts = schedule::SchedulerOptions { exe, cluster: cluster.map(String::from) };
            let code = schedule::run_scheduler(jobs, opts).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(serde_json::json!({"status": "ok"}))
        }
    }
}

/// Runs the command; SIGTERM or SIGINT stops it cleanly: the run's future is
/// dropped (nothing more is written), what it wrote that no version lists is
/// removed (or left for `dsproc gc` once its commit had begun), and the process
/// exits 143 / 130 without committing.
async fn run_until_signal(cli: &Cli) -> Result<serde_json::Value, DsprocError> {
    use tokio::signal::unix::{signal, SignalKind};
    // The scheduler stops its runs and releases its locks itself.
    if matches!(cli.command, Command::Schedule { what: None, .. }) {
        return run(cli).await;
    }
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return run(cli).await;
    };
    let (name, code) = tokio::select! {
        r = run(cli) => return r,
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    };
    let cleanup = dsproc_runtime::driver::clean_up_interrupted_runs();
    if tokio::time::timeout(Duration::from_secs(3), cleanup).await.is_err() {
        eprintln!("error: interrupted by {name}; cleanup did not finish (`dsproc gc` removes what is left)");
    } else {
        eprintln!("error: interrupted by {name}; nothing was committed (the current version, if any, is unchanged)");
    }
    std::process::exit(code);
}

/// `dsproc gc`: staging and uncommitted versions of dead runs, then retention.
async fn gc_command(
    cli: &Cli,
    output: &str,
    grace: u64,
    dry_run: bool,
    keep: Option<usize>,
    older_than: Option<&str>,
) -> Result<serde_json::Value, DsprocError> {
    let older_than = older_than
        .map(|d| {
            dsproc_runtime::versions::parse_duration(d).map_err(|e| DsprocError::usage(format!("--older-than: {e}")))
        })
        .transpose()?;
    let r = dsproc_runtime::driver::gc_with_retention(output, grace, keep, older_than, dry_run).await?;
    if !cli.json && !cli.quiet {
        let verb = if dry_run { "would remove" } else { "removed" };
        for (run, n) in &r.staging.removed_runs {
            outln!("{verb} staging of run {run} ({n} objects)");
        }
        for (v, n) in &r.versions.removed_claims {
            outln!("{verb} uncommitted version {v} of a dead run ({n} objects)");
        }
        if r.staging.removed_lock {
            outln!("{verb} a stale commit lock");
        }
        for run in &r.staging.live_runs {
            outln!("kept staging of live run {run}");
        }
        for v in &r.versions.live_claims {
            outln!("kept uncommitted version {v} of a live run");
        }
        if !r.versions.expired.is_empty() {
            let mark = if dry_run { "would expire" } else { "expired" };
            outln!("{mark} versions {:?}; {verb} {} files", r.versions.expired, r.versions.removed_files);
        } else if keep.is_some() && r.versions.removed_files > 0 {
            outln!("{verb} {} files of expired versions", r.versions.removed_files);
        }
        let nothing = r.staging.removed_runs.is_empty()
            && !r.staging.removed_lock
            && r.versions.removed_claims.is_empty()
            && r.versions.expired.is_empty()
            && r.versions.removed_files == 0;
        if nothing {
            outln!("{output}: nothing to remove");
        }
    }
    Ok(serde_json::to_value(&r).unwrap_or_default())
}

/// `dsproc lineage`: the version's lineage as one JSON document on stdout.
async fn lineage_command(
    cli: &Cli,
    output: &str,
    at_version: Option<u64>,
    format: &str,
) -> Result<serde_json::Value, DsprocError> {
    let m = match at_version {
        Some(n) => dsproc_runtime::driver::inspect_version(output, n).await?,
        None => dsproc_runtime::driver::inspect(output).await?,
    };
    let root = dsproc_runtime::driver::output_location(output)?.canonical();
    let doc = match format {
        "openlineage" => dsproc_runtime::lineage::openlineage_event(&m, &root),
        "mlflow" => dsproc_runtime::lineage::mlflow_dataset(&m, &root),
        other => return Err(DsprocError::usage(format!("--format {other:?}: use openlineage or mlflow"))),
    };
    if !cli.json {
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    Ok(doc)
}

/// `dsproc versions`: one line per version (or the list as JSON).
async fn versions_command(cli: &Cli, output: &str) -> Result<serde_json::Value, DsprocError> {
    let rows = dsproc_runtime::versions::list(&dsproc_runtime::driver::output_location(output)?).await?;
    if rows.is_empty() {
        return Err(DsprocError::job(format!("{output}: no committed versions")));
    }
    if !cli.json && !cli.quiet {
        outln!(
            "{:>7}  {:<10}  {:<25}  {:<16}  {:>10}  {:>6}  {:>12}  {:>10}  {:>6}  spec",
            "version",
            "status",
            "created",
            "job",
            "rows",
            "shards",
            "bytes",
            "tokens",
            "parent"
        );
        for r in &rows {
            outln!(
                "{:>7}  {:<10}  {:<25}  {:<16}  {:>10}  {:>6}  {:>12}  {:>10}  {:>6}  {}",
                r.version,
                r.status,
                r.created_at.get(..25).unwrap_or(&r.created_at),
                r.job,
                r.rows_out,
                r.shards,
                r.bytes,
                r.tokens.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                r.parent.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.spec_sha256.get(..12).unwrap_or(&r.spec_sha256)
            );
        }
    }
    Ok(serde_json::json!({"status": "ok", "versions": rows}))
}

/// `dsproc diff` in words.
fn print_diff(d: &serde_json::Value) {
    outln!("version {} -> {}", d["a"], d["b"]);
    for k in ["in", "out", "quarantined"] {
        let r = &d["rows"][k];
        outln!("  rows {k}: {} -> {} ({:+})", r["a"], r["b"], r["change"].as_i64().unwrap_or(0));
    }
    if let Some(dropped) = d["rows"]["dropped"].as_object() {
        for (k, r) in dropped {
            outln!("  dropped {k}: {} -> {}", r["a"], r["b"]);
        }
    }
    let s = &d["shards"];
    outln!(
        "  shards: {} -> {} ({} same content, {} only in {}, {} only in {}); bytes {} -> {}",
        s["a"],
        s["b"],
        s["same_content"],
        s["only_a"],
        d["a"],
        s["only_b"],
        d["b"],
        s["bytes"]["a"],
        s["bytes"]["b"]
    );
    for k in ["added", "removed", "changed"] {
        for uri in d["inputs"][k].as_array().into_iter().flatten() {
            outln!("  input {k}: {}", uri.as_str().unwrap_or_default());
        }
    }
    if d["spec"]["same"] == false {
        outln!("  spec: {} -> {}", d["spec"]["a"], d["spec"]["b"]);
    }
    for st in d["steps"].as_array().into_iter().flatten() {
        outln!("  step {} {}: rows out {} -> {}", st["step"], st["op"]["b"], st["rows_out"]["a"], st["rows_out"]["b"]);
        for (k, v) in st["stats"].as_object().into_iter().flatten() {
            outln!("    {k}: {} -> {}", v["a"], v["b"]);
        }
    }
}

/// Where bugs are reported (printed by the panic hook).
const REPORT_BUGS: &str =
    "the dsproc issue tracker (`issues new` in the dsproc repository), with the command, the job spec and this message";

/// A panic is a bug in dsproc, never the user's fault: print that (with the panic's
/// message and location, and where to report it) and exit 1 ("the job failed")
/// instead of Rust's exit 101. Long-running servers (`scheduler`, `executor`) only
/// print: their async runtime turns a task's panic into that task's failure.
fn install_panic_hook(exit: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let msg = dsproc_runtime::redact(&msg);
        eprintln!(
            "error: internal error, this is a bug in dsproc (not in your job or data): {msg} (at {at}, thread {thread}); please report it to {REPORT_BUGS}"
        );
        if exit {
            std::process::exit(1);
        }
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_panic_hook(!matches!(cli.command, Command::Scheduler { .. } | Command::Executor { .. }));
    // For the test that the hook works: there is no input that makes dsproc panic.
    if std::env::var_os("DSPROC_TEST_PANIC").is_some() {
        panic!("DSPROC_TEST_PANIC is set");
    }
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // Deep plans (dedup_minhash unrolls its connected-components rounds) are
    // optimised, encoded and decoded recursively: give the runtime's threads room.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(dsproc_common::config::THREAD_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run_until_signal(&cli)) {
        Ok(v) => {
            if cli.json {
                outln!("{v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            let err = anyhow::Error::new(e);
            // No credential value reaches the terminal, whatever a store put in its error.
            let msg = dsproc_runtime::redact(&format!("{err:#}"));
            eprintln!("error: {msg}");
            if cli.json {
                outln!("{}", serde_json::json!({"status": "error", "error": msg, "exit_code": code}));
            }
            ExitCode::from(code as u8)
        }
    }
}
