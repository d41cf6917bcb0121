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
    },
    /// Remove what crashed runs left under OUTPUT/_staging, and a stale commit lock.
    Gc {
        /// The dataset's directory or prefix, or a job spec (JOB.toml) naming it.
        output: String,
        /// A run counts as dead when its process is gone (same host) or its
        /// heartbeat is older than this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        grace: u64,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
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
        /// Seconds without a heartbeat after which an executor is declared lost and its tasks rerun.
        #[arg(long, default_value_t = 180)]
        executor_timeout: u64,
        /// Seconds after which a finished job's shuffle files are removed from executors.
        #[arg(long, default_value_t = 300)]
        job_cleanup: u64,
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
        /// gRPC port (tasks from the scheduler).
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
    },
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
        Command::Submit { run, cluster } => {
            let engine = match cluster.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
                Some(url) => Engine::Remote(url.to_string()),
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
        Command::Scheduler { bind, port, executor_timeout, job_cleanup } => {
            if !cli.quiet {
                eprintln!("dsproc scheduler listening on df://{bind}:{port}");
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
        Command::Executor { scheduler, bind, port, grpc_port, work_dir, task_slots, memory_limit, heartbeat } => {
            let (scheduler_host, scheduler_port) = dsproc_runtime::cluster::parse_cluster_url(scheduler)?;
            let memory_limit = parse_memory_limit(memory_limit.as_deref())?;
            if !cli.quiet {
                eprintln!("dsproc executor on {bind}:{port} (grpc {grpc_port}) for scheduler {scheduler}");
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
        Command::Gc { output, grace, dry_run } => {
            let r = dsproc_runtime::driver::gc(output, *grace, *dry_run).await?;
            if !cli.json && !cli.quiet {
                let verb = if *dry_run { "would remove" } else { "removed" };
                for (run, n) in &r.removed_runs {
                    outln!("{verb} staging of run {run} ({n} objects)");
                }
                if r.removed_lock {
                    outln!("{verb} a stale commit lock");
                }
                for run in &r.live_runs {
                    outln!("kept staging of live run {run}");
                }
                if r.removed_runs.is_empty() && !r.removed_lock {
                    outln!("{output}: nothing to remove");
                }
            }
            Ok(serde_json::to_value(&r).unwrap_or_default())
        }
        Command::Inspect { output } => {
            let m = dsproc_runtime::driver::inspect(output).await?;
            if !cli.json && !cli.quiet {
                outln!("dataset {output}");
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
    };
    let summary = dsproc_runtime::run_job(&loaded, &opts).await?;
    let m = &summary.manifest;
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
    }
    Ok(serde_json::json!({"status": "ok", "output": summary.output, "manifest": m}))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match rt.block_on(run(&cli)) {
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
