//! The driver: lower → run → account → commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, StringArray, UInt32Array, UInt64Array};
use datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};

use dsproc_common::config::MANIFEST_FILE;
use dsproc_common::DsprocError;
use dsproc_job::manifest::{Column, Manifest, ManifestShard, RowCounts, StepReport};
use dsproc_job::spec::WriteMode;
use dsproc_job::{lower, LoadedSpec, LoweredJob};

use crate::commit::{read_manifest, read_stats, write_run_marker, RunMarker};
use crate::session::{make_context, Engine, EngineOptions};
use dsproc_io::Location;

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub engine: Engine,
    pub engine_opts: EngineOptions,
    /// Show a progress spinner on stderr.
    pub progress: bool,
    /// Fail the job when it runs longer than this.
    pub timeout: Option<Duration>,
    /// POST OpenLineage START and COMPLETE / FAIL events here (`http://…`).
    pub lineage_url: Option<String>,
    /// `--incremental`: as `output.incremental = true` for this run.
    pub incremental: bool,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub output: String,
    /// The committed version's manifest (the current one when up to date).
    pub manifest: Manifest,
    /// Nothing changed since the current version: nothing was committed.
    pub up_to_date: bool,
}

fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let salt = format!("{}-{:?}", std::process::id(), now.timestamp_nanos_opt());
    let h = hex::encode(&Sha256::digest(salt.as_bytes())[..4]);
    format!("{}-{h}", now.format("%Y%m%dT%H%M%SZ"))
}

/// A local session for lowering (SQL parsing needs the functions registered).
async fn planning_context(opts: &EngineOptions) -> Result<SessionContext, DsprocError> {
    make_context(&Engine::Local, opts).await
}

/// Lowers the job and returns the logical and physical plans as text.
pub async fn explain_job(loaded: &LoadedSpec, opts: &EngineOptions) -> Result<String, DsprocError> {
    let ctx = planning_context(opts).await?;
    let job = lower(&ctx, loaded, "explain").await?;
    let optimized = ctx.state().optimize(&job.plan).map_err(|e| DsprocError::usage(format!("planning: {e}")))?;
    let physical =
        ctx.state().create_physical_plan(&job.plan).await.map_err(|e| DsprocError::usage(format!("planning: {e}")))?;
    Ok(format!(
        "== logical plan ==\n{}\n\n== optimized logical plan ==\n{}\n\n== physical plan ({} partitions) ==\n{}",
        job.plan.display_indent(),
        optimized.display_indent(),
        opts.target_partitions,
        dsproc_exec::display_with_shared(&physical)
    ))
}

/// A run in progress, for cleanup when the process is interrupted (SIGTERM, SIGINT).
struct ActiveRun {
    out: Location,
    staging: Location,
    version: u64,
    /// Set once the commit starts: from then on the version prefix is left for
    /// `dsproc gc` (which keeps it when its record was created).
    committing: Arc<AtomicBool>,
}

fn active_runs() -> &'static Mutex<Vec<ActiveRun>> {
    static ACTIVE: OnceLock<Mutex<Vec<ActiveRun>>> = OnceLock::new();
    ACTIVE.get_or_init(Default::default)
}

/// A job running on a Ballista scheduler (its plan knows the job id once the
/// scheduler has accepted it).
#[derive(Clone)]
struct ClusterJob {
    /// `df://host:port`
    scheduler: String,
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
}

impl ClusterJob {
    /// The scheduler's job id, from the plan's `DistributedQueryExec`.
    fn job_id(&self) -> Option<String> {
        type Query = ballista_core::execution_plans::DistributedQueryExec<datafusion_proto::protobuf::LogicalPlanNode>;
        let mut stack = vec![Arc::clone(&self.plan)];
        while let Some(p) = stack.pop() {
            if let Some(q) = p.downcast_ref::<Query>() {
                return q.job_id().map(|id| id.as_str().to_string());
            }
            stack.extend(p.children().into_iter().cloned());
        }
        None
    }

    /// Asks the scheduler to cancel the job (its executors stop its tasks). Bounded
    /// to 2 s; a failure is logged, `dsproc gc` removes what the tasks leave.
    async fn cancel(&self) {
        use ballista_core::serde::protobuf::{scheduler_grpc_client::SchedulerGrpcClient, CancelJobParams};
        let Some(job_id) = self.job_id() else {
            // Not accepted yet (the scheduler has not answered the submission): a
            // job it accepts after this process is gone runs to its end, and
            // `dsproc gc` removes what it wrote.
            return;
        };
        let url = format!("http://{}", self.scheduler.trim_start_matches("df://"));
        let cancel = async {
            let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|e| e.to_string())?;
            let endpoint = crate::security::current().secure_endpoint(endpoint).map_err(|e| e.to_string())?;
            let mut client = SchedulerGrpcClient::new(endpoint.connect().await.map_err(|e| e.to_string())?);
            client.cancel_job(CancelJobParams { job_id: job_id.clone() }).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(2), cancel).await {
            Ok(Ok(_)) => eprintln!("cancelled cluster job {job_id}"),
            Ok(Err(e)) => eprintln!("warning: could not cancel cluster job {job_id}: {}", dsproc_io::store::redact(&e)),
            Err(_) => eprintln!("warning: the scheduler did not answer the cancellation of job {job_id} within 2 s"),
        }
    }
}

fn active_jobs() -> &'static Mutex<Vec<ClusterJob>> {
    static ACTIVE: OnceLock<Mutex<Vec<ClusterJob>>> = OnceLock::new();
    ACTIVE.get_or_init(Default::default)
}

/// Cancels the cluster jobs of this process's runs (for signal handlers, after
/// the run futures were dropped).
async fn cancel_cluster_jobs() {
    let jobs: Vec<ClusterJob> = std::mem::take(&mut *active_jobs().lock().unwrap_or_else(|e| e.into_inner()));
    futures::future::join_all(jobs.iter().map(ClusterJob::cancel)).await;
}

/// Removes what the runs of this process have written that no version lists:
/// their staging, and their version prefix unless the commit had begun (then
/// `dsproc gc` decides by the version record). For signal handlers: the run
/// futures must have been dropped first.
pub async fn clean_up_interrupted_runs() {
    cancel_cluster_jobs().await;
    let runs: Vec<ActiveRun> = std::mem::take(&mut *active_runs().lock().unwrap_or_else(|e| e.into_inner()));
    // Writers already on blocking threads may finish a file after the first pass:
    // three passes, 150 ms apart.
    for pass in 0..3 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for r in &runs {
            if let Err(e) = r.staging.delete_all().await {
                tracing::warn!(error = %e, "could not remove the interrupted run's staging");
            }
            if !r.committing.load(Ordering::SeqCst) {
                if let Err(e) = crate::versions::abandon(&r.out, r.version).await {
                    tracing::warn!(error = %e, "could not remove the interrupted run's version prefix");
                }
            }
        }
    }
}

/// Runs a job and commits its output as a new version.
pub async fn run_job(loaded: &LoadedSpec, opts: &RunOptions) -> Result<RunSummary, DsprocError> {
    let started = Instant::now();
    let spec = &loaded.spec;
    let out = dsproc_job::lower::resolve_output(loaded)?;
    // Before anything is claimed: a run refused for overlapping its input writes nothing there.
    dsproc_job::lower::check_output_overlap(loaded).await?;
    let refuse_existing = spec.output.mode == WriteMode::Error;
    if refuse_existing && crate::versions::any_committed(&out).await? {
        return Err(DsprocError::usage(format!(
            "{} already holds a committed dataset; set output.mode = \"overwrite\" (or --set output.mode=overwrite) to commit a new version on top, or choose another output.uri",
            out.shown()
        )));
    }
    let incremental = if spec.output.incremental || opts.incremental {
        if spec.output.mode != WriteMode::Overwrite {
            return Err(DsprocError::usage(
                "incremental rebuilds commit new versions on top: set output.mode = \"overwrite\"",
            ));
        }
        match crate::incremental::decide(loaded, &out).await? {
            crate::incremental::Plan::UpToDate(current) => {
                return Ok(RunSummary { output: out.shown(), manifest: *current, up_to_date: true });
            }
            plan => Some(plan),
        }
    } else {
        None
    };
    let run_id = new_run_id();
    let planning = planning_context(&opts.engine_opts).await?;
    let mut marker = RunMarker::new(&run_id, &spec.name);
    // The version number is claimed first: the plan writes the shards under its prefix.
    let created_root = out.local.as_ref().is_some_and(|p| !p.exists());
    let version = crate::versions::claim(&out, &marker).await?;
    let committing = Arc::new(AtomicBool::new(false));
    let staging = crate::commit::staging_of(&out, &run_id);
    active_runs().lock().unwrap_or_else(|e| e.into_inner()).push(ActiveRun {
        out: out.clone(),
        staging: staging.clone(),
        version,
        committing: Arc::clone(&committing),
    });
    if let Some(url) = &opts.lineage_url {
        let ev = crate::lineage::run_state_event("START", &run_id, &spec.name, None);
        if let Err(e) = crate::lineage::post_event(url, &ev).await {
            tracing::warn!(error = %e, "could not send the lineage START event");
        }
    }
    let result =
        run_claimed(loaded, opts, &planning, &run_id, version, &mut marker, &committing, started, incremental).await;
    if let Some(url) = &opts.lineage_url {
        let ev = match &result {
            Ok(s) => crate::lineage::openlineage_event(&s.manifest, &out.canonical()),
            Err(e) => crate::lineage::run_state_event("FAIL", &run_id, &spec.name, Some(&e.to_string())),
        };
        if let Err(e) = crate::lineage::post_event(url, &ev).await {
            tracing::warn!(error = %e, "could not send the lineage event");
        }
    }
    if result.is_err() {
        // Nothing of a failed run stays behind (a killed one leaves its staging
        // and version prefix to `dsproc gc`); a version whose record was created
        // is kept (complete, just not current).
        if let Err(e) = staging.delete_all().await {
            tracing::warn!(error = %e, "could not remove the failed run's staging files");
        }
        if let Err(e) = crate::versions::abandon(&out, version).await {
            tracing::warn!(error = %e, "could not remove the failed run's version prefix");
        }
        // A failed first run leaves no empty output directory behind either.
        if let Some(root) = out.local.as_ref().filter(|_| created_root) {
            let _ = std::fs::remove_dir(root);
        }
    }
    active_runs().lock().unwrap_or_else(|e| e.into_inner()).retain(|r| r.staging != staging);
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_claimed(
    loaded: &LoadedSpec,
    opts: &RunOptions,
    planning: &SessionContext,
    run_id: &str,
    version: u64,
    marker: &mut RunMarker,
    committing: &Arc<AtomicBool>,
    started: Instant,
    incremental: Option<crate::incremental::Plan>,
) -> Result<RunSummary, DsprocError> {
    let (job, build) = lower_build(planning, loaded, run_id, version, incremental).await?;
    // The run's marker goes first and is refreshed while it runs: `dsproc gc`
    // tells a crashed run's staging (and claimed version) from a live one by it.
    write_run_marker(&job.staging, marker).await?;
    let heartbeat = {
        let (staging, out, mut marker) = (job.staging.clone(), job.output.clone(), marker.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(dsproc_common::config::RUN_HEARTBEAT_SECS)).await;
                marker.heartbeat_at = chrono::Utc::now().to_rfc3339();
                if let Err(e) = write_run_marker(&staging, &marker).await {
                    tracing::warn!(error = %e, "could not refresh the run marker");
                }
                if let Err(e) = crate::versions::refresh_claim(&out, version, &marker).await {
                    tracing::warn!(error = %e, "could not refresh the version claim");
                }
            }
        })
    };
    // Sized once: a rerun shrinks this batch size instead of sampling again.
    let mut run_opts = opts.clone();
    run_opts.engine_opts = sized_batches(&job, &opts.engine_opts).await;
    let result = loop {
        match execute(&job, &run_opts).await {
            Ok(batches) => break finish(loaded, &job, &run_opts, &batches, started, version, committing, &build).await,
            Err(e) => match rerun_batch_rows(&e, &run_opts) {
                Some(rows) => {
                    // Nothing of the stopped attempt stays: a rerun starts from an empty staging and prefix.
                    if !quiesce_attempt(&job, version).await? {
                        break Err(e);
                    }
                    write_run_marker(&job.staging, marker).await?;
                    eprintln!(
                        "note: rows much larger than the sample at the start of the input; rerunning with {rows}-row batches"
                    );
                    run_opts.engine_opts.batch_rows = Some(rows);
                }
                None => break Err(e),
            },
        }
    };
    heartbeat.abort();
    if result.is_ok() {
        if let Err(e) = job.staging.delete_all().await {
            tracing::warn!(error = %e, "could not remove the run's staging files");
        }
    }
    result
}

/// How a run builds its version: the manifest's `incremental` entry and, for an
/// incremental build, the version it adds to.
struct Build {
    report: Option<serde_json::Value>,
    parent: Option<Box<crate::incremental::Parent>>,
}

/// Lowers the run: a full build (with incremental state when the run is
/// incremental), or an incremental one over the added files; an incremental
/// build that cannot stand on its parent (see [`crate::incremental::blocker`])
/// is lowered again as a full one.
async fn lower_build(
    planning: &SessionContext,
    loaded: &LoadedSpec,
    run_id: &str,
    version: u64,
    plan: Option<crate::incremental::Plan>,
) -> Result<(LoweredJob, Build), DsprocError> {
    use crate::incremental::Plan;
    use dsproc_job::lower::{lower_version, BuildMode};
    let Some(plan) = plan else {
        let job = lower_version(planning, loaded, run_id, Some(version), &BuildMode::default()).await?;
        return Ok((job, Build { report: None, parent: None }));
    };
    let stateful =
        BuildMode { state: dsproc_job::ops::Incremental { write_state: true, ..Default::default() }, only_files: None };
    let full = |reason: String| async move {
        let job = lower_version(planning, loaded, run_id, Some(version), &stateful).await?;
        let report = serde_json::json!({"mode": "full", "reason": reason});
        Ok::<_, DsprocError>((job, Build { report: Some(report), parent: None }))
    };
    match plan {
        Plan::UpToDate(_) => Err(DsprocError::job("internal: an up-to-date run was started")),
        Plan::Full(reason) => full(reason).await,
        Plan::Incremental(parent) => {
            let mode = BuildMode {
                state: dsproc_job::ops::Incremental {
                    write_state: true,
                    parent_state: crate::incremental::state_files(
                        &dsproc_job::lower::resolve_output(loaded)?,
                        &parent.manifest,
                    ),
                },
                only_files: Some(parent.read.clone()),
            };
            let job = lower_version(planning, loaded, run_id, Some(version), &mode).await?;
            if let Some(why) = crate::incremental::blocker(&job, &parent.manifest, &output_columns(&job)) {
                return full(format!("{why}; everything is rebuilt")).await;
            }
            let report = serde_json::json!({
                "mode": "incremental",
                "parent_version": parent.manifest.version,
                "files_read": parent.read.len(),
                "files_carried": parent.manifest.inputs.len(),
                "files_removed": 0,
            });
            Ok((job, Build { report: Some(report), parent: Some(parent) }))
        }
    }
}

/// The run's `save_index` steps and their `save_index` directories.
fn saved_indexes(job: &LoweredJob) -> Vec<(&dsproc_job::lower::StepPlan, &str)> {
    job.steps.iter().filter_map(|s| Some((s, s.info.as_ref()?["save_index"].as_str()?))).collect()
}

async fn execute(
    job: &LoweredJob,
    opts: &RunOptions,
) -> Result<Vec<datafusion::arrow::array::RecordBatch>, DsprocError> {
    let ctx = make_context(&opts.engine, &opts.engine_opts).await?;
    let ranges = dsproc_exec::read_exec::input_ranges(&job.read_spec, opts.engine_opts.target_partitions).len();
    let writers = opts.engine_opts.target_partitions;
    let progress = opts.progress.then(|| spawn_progress(job.staging.clone(), ranges, writers));
    let scheduler = match &opts.engine {
        Engine::Remote(url) => Some(url.clone()),
        _ => None,
    };
    // Registered while it runs, so that a signal, a timeout or a dropped future
    // cancels the cluster's job instead of leaving its tasks writing.
    let watch = Arc::new(Mutex::new(None::<ClusterJob>));
    let run = {
        let watch = Arc::clone(&watch);
        async move {
            let df = ctx.execute_logical_plan(job.plan.clone()).await?;
            let task_ctx = Arc::new(df.task_ctx());
            let plan = df.create_physical_plan().await?;
            if let Some(url) = scheduler {
                let cj = ClusterJob { scheduler: url, plan: Arc::clone(&plan) };
                *watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(cj.clone());
                active_jobs().lock().unwrap_or_else(|e| e.into_inner()).push(cj);
            }
            let r = datafusion::physical_plan::collect(Arc::clone(&plan), task_ctx).await;
            active_jobs().lock().unwrap_or_else(|e| e.into_inner()).retain(|j| !Arc::ptr_eq(&j.plan, &plan));
            r
        }
    };
    let result = match opts.timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(r) => r.map_err(|e| job_failed(&e, &opts.engine)),
            Err(_) => {
                let cj = watch.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(cj) = cj {
                    active_jobs().lock().unwrap_or_else(|e| e.into_inner()).retain(|j| !Arc::ptr_eq(&j.plan, &cj.plan));
                    cj.cancel().await;
                }
                Err(DsprocError::job(format!("job timed out after {}s", t.as_secs())))
            }
        },
        None => run.await.map_err(|e| job_failed(&e, &opts.engine)),
    };
    if let Some((handle, bar)) = progress {
        handle.abort();
        bar.finish_and_clear();
    }
    result
}

/// Removes what a stopped attempt wrote (its staging, and its files under the
/// version prefix but the claim) once its last tasks are done: tasks of other
/// partitions may still finish a file after the failure was reported, so the
/// removal repeats until both stay empty for 300 ms. False when they never do
/// within ~10 s (then the run fails instead of rerunning over leftovers).
async fn quiesce_attempt(job: &LoweredJob, version: u64) -> Result<bool, DsprocError> {
    let prefix = job.output.join(&dsproc_common::config::version_dir(version));
    let is_empty = || async {
        let staged = job.staging.list().await.map_err(DsprocError::job)?;
        let written = prefix.list().await.map_err(DsprocError::job)?;
        Ok::<_, DsprocError>(
            staged.is_empty() && written.iter().all(|(rel, _)| rel == dsproc_common::config::CLAIM_FILE),
        )
    };
    for _ in 0..30 {
        // A file appearing meanwhile fails a removal: the next pass removes it.
        if let Err(e) = job.staging.delete_all().await {
            tracing::debug!(error = %e, "removing the stopped attempt's staging; again");
        }
        if let Err(e) = crate::versions::clear_prefix(&job.output, version).await {
            tracing::debug!(error = %e, "removing the stopped attempt's files; again");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if is_empty().await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The smaller engine batch size to rerun with when `e` is the reader's
/// [`BATCH_TOO_LARGE`](dsproc_common::config::BATCH_TOO_LARGE) stop: sized for the
/// largest rows seen, and at most half the batch size that stopped (so reruns end).
/// (`opts` are the sized options the stopped attempt ran with; without a batch
/// size, because the sample failed, the engine's default applied.)
fn rerun_batch_rows(e: &DsprocError, opts: &RunOptions) -> Option<usize> {
    let row_bytes = dsproc_exec::read_exec::batch_too_large_row_bytes(&e.to_string())?;
    let current = opts.engine_opts.batch_rows.unwrap_or_else(|| datafusion::prelude::SessionConfig::new().batch_size());
    if current <= 1 {
        return None;
    }
    let rows = dsproc_io::rowsize::batch_rows_for(Some(row_bytes)).min(current / 2).max(1);
    tracing::info!(row_bytes, from = current, to = rows, "rows larger than sampled: rerunning with smaller batches");
    Some(rows)
}

/// The engine options with batches of about `DEFAULT_BATCH_BYTES`, from a sample
/// of the input's rows (unless the caller chose a batch size). A failed sample
/// keeps the default (the read itself reports the file's error).
async fn sized_batches(job: &LoweredJob, opts: &EngineOptions) -> EngineOptions {
    let mut opts = opts.clone();
    if opts.batch_rows.is_some() {
        return opts;
    }
    let r = &job.read_spec;
    let sample = async {
        let store = Location::root(&r.store_url, &r.storage).and_then(|l| l.store()).map_err(dsproc_io::Error::from)?;
        dsproc_io::rowsize::typical_row_bytes(&r.store_url, &store, &r.files, r.format).await
    };
    match sample.await {
        Ok(bytes) => {
            let rows = dsproc_io::rowsize::batch_rows_for(bytes);
            tracing::info!(row_bytes = ?bytes, batch_rows = rows, "engine batch size from a sample of the input");
            opts.batch_rows = Some(rows);
        }
        Err(e) => tracing::warn!(error = %e, "could not sample the input's row size; default batch size"),
    }
    opts
}

/// The innermost useful message of a DataFusion error (it wraps context layers).
/// A failed run's error; on a cluster, a refused token or a TLS mismatch says so.
fn job_failed(e: &datafusion::error::DataFusionError, engine: &Engine) -> DsprocError {
    let text = clean(e);
    if let Engine::Remote(url) = engine {
        if let Some(why) = crate::security::explain_failure(&text) {
            return DsprocError::job(format!("cluster {url} {why}"));
        }
    }
    DsprocError::job(format!("job failed: {text}"))
}

fn clean(e: &datafusion::error::DataFusionError) -> String {
    let s = e.to_string();
    let s = unwrap_task_error(&s).unwrap_or(s);
    let s = s.replace("Execution error: ", "").replace("External error: ", "");
    // Other Debug-form task errors (`DataFusionError(Shared(Execution("…")))`): unescape
    // the quotes so that messages read (and match) as they do locally.
    if s.contains("DataFusionError(") {
        s.replace("\\\"", "\"")
    } else {
        s
    }
}

/// Ballista reports a failed task as `Job … failed: … runtime execution error:
/// DataFusionError(Shared(External(Flattened(Data("…")))))`, the executor's error
/// in Debug form. Returns the message inside (unescaped), or None when the text
/// does not have that shape.
fn unwrap_task_error(s: &str) -> Option<String> {
    const MARK: &str = "runtime execution error: ";
    let mut rest = &s[s.find(MARK)? + MARK.len()..];
    while !rest.starts_with('"') {
        let open = rest.find('(')?;
        let ident = &rest[..open];
        if ident.is_empty() || !ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return None;
        }
        rest = &rest[open + 1..];
    }
    let mut out = String::new();
    let mut chars = rest[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                'u' => {
                    let hex: String = chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod clean_tests {
    #[test]
    fn ballista_task_errors_read_as_the_executor_wrote_them() {
        let s = r#"Job 038HMA6CD2000 failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(Shared(External(Flattened(Data("/d/late.jsonl:1201: key \"late\" is not in input.schema\n\u{e9}")))))"#;
        assert_eq!(
            super::unwrap_task_error(s).unwrap(),
            "/d/late.jsonl:1201: key \"late\" is not in input.schema\n\u{e9}"
        );
        assert_eq!(super::unwrap_task_error("plain failure"), None);
    }
}

/// Progress of the first stage (input ranges read) and the last (shard writers
/// finished), with rows per step — from the run's statistics files, so it works the
/// same locally and on a cluster.
fn spawn_progress(
    staging: Location,
    ranges: usize,
    writers: usize,
) -> (tokio::task::JoinHandle<()>, indicatif::ProgressBar) {
    let bar = indicatif::ProgressBar::new(ranges as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] read {pos}/{len} ranges {bar:30} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let b = bar.clone();
    // Listing an object store costs a request per poll: poll it less often.
    let every = Duration::from_millis(if staging.is_local() { 300 } else { 1000 });
    let handle = tokio::spawn(async move {
        let mut seen = BTreeMap::new();
        loop {
            if let Ok(s) = crate::commit::read_stats_cached(&staging, &mut seen).await {
                b.set_position(s.ranges as u64);
                let steps: Vec<String> = s.step_rows.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                b.set_message(format!(
                    "| write {}/{writers} partitions | {} rows read, {} quarantined{}{}",
                    s.writers_done.min(writers),
                    s.read_rows,
                    s.quarantined,
                    if steps.is_empty() { "" } else { "; rows out of steps " },
                    steps.join(" ")
                ));
            }
            tokio::time::sleep(every).await;
        }
    });
    (handle, bar)
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    loaded: &LoadedSpec,
    job: &LoweredJob,
    opts: &RunOptions,
    batches: &[datafusion::arrow::array::RecordBatch],
    started: Instant,
    version: u64,
    committing: &AtomicBool,
    build: &Build,
) -> Result<RunSummary, DsprocError> {
    // The shards the sink reported: exactly one attempt per (bucket, seq).
    // Keyed by (bucket, seq, file name): a Megatron shard is a .bin and an .idx.
    type Shard = (String, u64, u64, String, Option<u64>, Option<u64>, Option<u64>);
    let mut shards: BTreeMap<(u32, u32, String), Shard> = BTreeMap::new();
    for b in batches {
        let col = |i: usize| b.column(i).as_any();
        let (
            Some(bucket),
            Some(seq),
            Some(path),
            Some(rows),
            Some(bytes),
            Some(sha),
            Some(tokens),
            Some(seqs),
            Some(raw),
        ) = (
            col(0).downcast_ref::<UInt32Array>(),
            col(1).downcast_ref::<UInt32Array>(),
            col(2).downcast_ref::<StringArray>(),
            col(3).downcast_ref::<UInt64Array>(),
            col(4).downcast_ref::<UInt64Array>(),
            col(5).downcast_ref::<StringArray>(),
            col(6).downcast_ref::<UInt64Array>(),
            col(7).downcast_ref::<UInt64Array>(),
            col(8).downcast_ref::<UInt64Array>(),
        )
        else {
            return Err(DsprocError::job("internal: unexpected shard sink result"));
        };
        for i in 0..b.num_rows() {
            let p = path.value(i);
            let key = (bucket.value(i), seq.value(i), p.rsplit('/').next().unwrap_or(p).to_string());
            let t = (!tokens.is_null(i)).then(|| tokens.value(i));
            let q = (!seqs.is_null(i)).then(|| seqs.value(i));
            let rb = (!raw.is_null(i)).then(|| raw.value(i));
            let v = (p.to_string(), rows.value(i), bytes.value(i), sha.value(i).to_string(), t, q, rb);
            if shards.insert(key.clone(), v).is_some() {
                return Err(DsprocError::job(format!("internal: shard {key:?} reported twice")));
            }
        }
    }

    let stats = read_stats(&job.staging).await?;
    let mut counts = RowCounts {
        rows_in: stats.read_rows + stats.quarantined,
        quarantined: stats.quarantined,
        ..Default::default()
    };
    let mut steps = Vec::new();
    let mut rows = stats.read_rows;
    let duplicate_ids = job.duplicate_ids.map(|mode| {
        let d = &stats.duplicate_ids;
        let mode = match mode {
            dsproc_exec::DuplicateIdMode::Error => "error",
            dsproc_exec::DuplicateIdMode::Keep => "keep",
            dsproc_exec::DuplicateIdMode::First => "first",
        };
        dsproc_job::manifest::DuplicateIds {
            on_duplicate_id: mode.to_string(),
            ids: d.ids,
            rows: d.rows,
            examples: d
                .examples
                .iter()
                .map(|(id, n)| dsproc_job::manifest::DuplicateIdExample { id: id.clone(), rows: *n })
                .collect(),
        }
    });
    if let Some(d) = duplicate_ids.as_ref().filter(|d| d.ids > 0) {
        let examples: Vec<String> = d.examples.iter().map(|e| format!("{:?} ({} rows)", e.id, e.rows)).collect();
        tracing::warn!(
            "input.id: {} ids are shared by more than one row ({} rows beyond the first), e.g. {}; on_duplicate_id = \"{}\" {}",
            d.ids,
            d.rows,
            examples.join(", "),
            d.on_duplicate_id,
            if d.on_duplicate_id == "first" { "kept the first of each" } else { "kept them all" }
        );
    }
    if job.duplicate_ids == Some(dsproc_exec::DuplicateIdMode::First) && stats.duplicate_ids.rows > 0 {
        // Later occurrences of an id are dropped before step 1.
        let dropped = stats.duplicate_ids.rows.min(rows);
        counts.dropped.insert("0:input:duplicate_id".to_string(), dropped);
        rows -= dropped;
    }
    for dsproc_job::lower::StepPlan { step, op, reason, info, adds } in &job.steps {
        let out = stats.step_rows.get(step).copied().unwrap_or(0);
        if out > rows {
            let Some(why) = adds else {
                return Err(DsprocError::job(format!(
                    "step {step} ({op}) produced {out} rows from {rows}: steps may not add rows"
                )));
            };
            counts.added.insert(format!("{step}:{op}:{why}"), out - rows);
        }
        let mut counters = stats.step_sums.get(step).cloned().unwrap_or_default();
        // Drops split by reason (e.g. quality_filter's rules) must add up.
        let by_reason: Vec<(String, u64)> = counters
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(dsproc_job::ops::DROPPED_BY)?.to_string(), *v)))
            .collect();
        if !by_reason.is_empty() {
            let split: u64 = by_reason.iter().map(|(_, n)| n).sum();
            if split != rows.saturating_sub(out) {
                return Err(DsprocError::job(format!(
                    "step {step} ({op}) dropped {} rows but its per-reason counts sum to {split}; not committing",
                    rows.saturating_sub(out)
                )));
            }
        }
        if out < rows {
            let Some(reason) = reason else {
                return Err(DsprocError::job(format!(
                    "step {step} ({op}) lost {} rows; it must keep every row",
                    rows - out
                )));
            };
            if by_reason.is_empty() {
                counts.dropped.insert(format!("{step}:{op}:{reason}"), rows - out);
            }
            for (why, n) in by_reason.iter().filter(|(_, n)| *n > 0) {
                counts.dropped.insert(format!("{step}:{op}:{why}"), *n);
            }
        }
        dsproc_job::ops::OpSpec::finish_stats(op, info.as_ref(), &mut counters)
            .map_err(|e| DsprocError::job(format!("step {step} ({op}): {e}")))?;
        steps.push(StepReport {
            step: *step,
            op: op.to_string(),
            rows_in: rows,
            rows_out: out,
            stats: counters,
            info: info.clone(),
        });
        rows = out;
    }
    let written: u64 = shards.values().map(|s| s.1).sum();
    if written != rows {
        return Err(DsprocError::job(format!(
            "row accounting: the last step passed {rows} rows but the shards hold {written}; not committing"
        )));
    }
    // An incremental build keeps every row of its parent (it reads added files only).
    let parent = build.parent.as_ref().map(|p| &p.manifest);
    let carried = parent.map(|p| p.rows.out);
    counts.out = written + carried.unwrap_or(0);
    counts.carried = carried;
    counts.removed = carried.map(|_| BTreeMap::new());
    if !counts.balanced() {
        return Err(DsprocError::job(format!(
            "row accounting does not balance: in {} + added {} + carried {} != out {} + quarantined {} + dropped {} + removed {}; not committing",
            counts.rows_in,
            counts.added.values().sum::<u64>(),
            counts.carried.unwrap_or(0),
            counts.out,
            counts.quarantined,
            counts.dropped.values().sum::<u64>(),
            counts.removed.iter().flat_map(|r| r.values()).sum::<u64>()
        )));
    }

    let mut manifest_shards: Vec<ManifestShard> = shards
        .values()
        .map(|(p, r, b, s, t, q, rb)| ManifestShard {
            path: p.clone(),
            rows: *r,
            bytes: *b,
            sha256: s.clone(),
            tokens: *t,
            sequences: *q,
            raw_bytes: *rb,
        })
        .collect();
    // The parent's shards, listed where they are (an MDS index is rewritten below).
    if let Some(p) = parent {
        let kept = p.shards.iter().filter(|s| !(p.format == "mds" && s.path.ends_with("/index.json")));
        manifest_shards.splice(0..0, kept.cloned());
    }
    if loaded.spec.output.format == dsproc_io::OutputFormat::Mds {
        let entry = mds_index(job, &manifest_shards).await?;
        manifest_shards.push(entry);
    }
    let inputs = match &build.parent {
        Some(p) => p.inputs.clone(),
        None => crate::incremental::manifest_inputs(&job.input.location.store_url, &job.input.files),
    };
    let mut side_files: Vec<String> = parent
        .map(|p| {
            p.side_files
                .iter()
                .filter(|f| f.contains(&format!("/{}/", dsproc_common::config::STATE_DIR)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if build.report.is_some() {
        side_files.extend(crate::incremental::written_state(&job.version_dir, &job.version_rel).await?);
    }
    let tokens = manifest_shards.iter().filter_map(|s| s.tokens).reduce(|a, b| a + b);
    let manifest = Manifest {
        dsproc_version: env!("CARGO_PKG_VERSION").to_string(),
        version,
        parent_version: None,
        status: "current".into(),
        op_versions: dsproc_job::manifest::op_versions().iter().map(|(op, v)| (op.to_string(), *v)).collect(),
        input_dataset: job.input.dataset.clone(),
        incremental: build.report.clone(),
        side_files,
        schema: output_columns(job),
        input_schema: columns(job.input.schema.fields().iter().map(|f| (f.name().as_str(), f.data_type()))),
        job_name: loaded.spec.name.clone(),
        spec_sha256: loaded.sha256.clone(),
        dataset_version: crate::incremental::dataset_version(
            &loaded.sha256,
            &inputs,
            &crate::incremental::step_infos(loaded),
        ),
        created_at: chrono::Utc::now().to_rfc3339(),
        run_id: job.run_id.clone(),
        engine: opts.engine.name().to_string(),
        format: loaded.spec.output.format.extension().to_string(),
        inputs,
        shards: manifest_shards,
        rows: counts,
        steps,
        quarantine: Vec::new(),
        hash_family: dsproc_common::hash::HASH_FAMILY.to_string(),
        tokens,
        buckets: job.buckets,
        elapsed_s: started.elapsed().as_secs_f64(),
        workers: stats.workers.iter().cloned().collect(),
        extra_columns_dropped: stats.extra_dropped.clone(),
        duplicate_ids,
        checks: Vec::new(),
    };
    let mut manifest = manifest;
    for (s, _) in saved_indexes(job) {
        let files =
            crate::commit::commit_index(&job.version_dir, &job.version_rel, s.step, s.info.as_ref(), &manifest).await?;
        manifest.side_files.extend(files);
    }
    // The checks, on the written shards, before the version may become current.
    let current = crate::commit::read_manifest(&job.output).await?;
    let checks = crate::checks::evaluate(
        &loaded.spec.checks,
        &job.output,
        &manifest,
        current.as_ref(),
        &opts.engine,
        &opts.engine_opts,
    )
    .await?;
    manifest.checks = checks.iter().map(|c| c.value.clone()).collect();
    manifest.side_files.extend(checks.iter().flat_map(|c| c.side_files.iter().cloned()));
    for c in &checks {
        if !c.value["passed"].as_bool().unwrap_or(false) || opts.progress {
            eprintln!("{}", c.summary);
        }
    }
    let rejected = checks.iter().any(|c| c.failed_error);
    committing.store(true, Ordering::SeqCst);
    let refuse_existing = loaded.spec.output.mode == WriteMode::Error;
    let manifest =
        crate::versions::commit_version_as(&job.output, version, &manifest, refuse_existing, rejected).await?;
    if rejected {
        return Err(DsprocError::Rejected {
            message: crate::checks::rejection(&checks, manifest.version, current.map(|c| c.version)),
        });
    }
    for (s, dir) in saved_indexes(job) {
        let dir = Location::parse(dir, None)
            .map_err(|e| DsprocError::job(format!("save_index: {e}")))?
            .with_storage_of(&job.output);
        crate::commit::write_index_pointer(
            &job.output,
            &job.version_dir,
            s.step,
            &dir,
            s.info.as_ref(),
            &manifest,
            &manifest.side_files,
        )
        .await?;
    }
    Ok(RunSummary { output: job.output.shown(), manifest, up_to_date: false })
}

fn columns<'a>(fields: impl Iterator<Item = (&'a str, &'a datafusion::arrow::datatypes::DataType)>) -> Vec<Column> {
    fields
        .filter(|(name, _)| !name.starts_with("__dsproc"))
        .map(|(name, t)| Column { name: name.to_string(), data_type: t.to_string() })
        .collect()
}

/// The columns the shard writer receives (its input, less the bucket columns).
fn output_columns(job: &LoweredJob) -> Vec<Column> {
    let datafusion::logical_expr::LogicalPlan::Extension(sink) = &job.plan else { return Vec::new() };
    let Some(input) = sink.node.inputs().first().copied() else { return Vec::new() };
    columns(input.schema().fields().iter().map(|f| (f.name().as_str(), f.data_type())))
}

/// Writes MosaicML streaming's `index.json` for the MDS shards into the version's
/// prefix (beside the shards, which it names relative to itself); the manifest
/// lists it with its hash.
async fn mds_index(job: &LoweredJob, shards: &[ManifestShard]) -> Result<ManifestShard, DsprocError> {
    let dtype =
        job.shard_opts.token_dtype.ok_or_else(|| DsprocError::job("internal: MDS output without a token dtype"))?;
    let entries: Vec<serde_json::Value> = shards
        .iter()
        .map(|s| {
            let o = &job.shard_opts;
            let c = dsproc_io::token_shards::MdsConfig {
                dtype,
                size_limit: o.size_limit,
                packed: o.pack.is_some(),
                zstd: o.mds_zstd,
            };
            // relative to the index: the version's own shards by name, a parent's
            // (carried by an incremental build) as ../vNNNNN/NAME
            let name = match s.path.strip_prefix(&format!("{}/", job.version_rel)) {
                Some(own) => own.to_string(),
                None => format!("../{}", s.path),
            };
            dsproc_io::token_shards::mds_index_entry(&c, &name, s.bytes, s.raw_bytes, s.sequences.unwrap_or(s.rows))
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "shards": entries, "version": 2 }))
        .map_err(|e| DsprocError::job(format!("MDS index: {e}")))?;
    let path = job.version_dir.join("index.json");
    let len = body.len() as u64;
    let sha256 = hex::encode(Sha256::digest(&body));
    path.put(body).await.map_err(DsprocError::job)?;
    let entry = ManifestShard {
        path: format!("{}/index.json", job.version_rel),
        rows: 0,
        bytes: len,
        sha256,
        tokens: None,
        sequences: None,
        raw_bytes: None,
    };
    Ok(entry)
}

/// Reads a committed dataset's manifest (`dsproc inspect`). With no manifest
/// there is no dataset, whatever files lie there.
pub async fn inspect(uri: &str) -> Result<Manifest, DsprocError> {
    let loc = output_location(uri)?;
    match read_manifest(&loc).await? {
        Some(m) => Ok(m),
        None => {
            let staged = crate::commit::staged_runs(&loc).await.unwrap_or_default();
            let hint = if staged.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} uncommitted run(s) under {}/_staging (`dsproc gc {uri}` removes those of dead runs)",
                    staged.len(),
                    loc.shown()
                )
            };
            Err(DsprocError::job(format!("{}: no committed dataset (no {MANIFEST_FILE}){hint}", loc.shown())))
        }
    }
}

/// `dsproc gc OUTPUT`: removes what crashed runs left under `OUTPUT/_staging`
/// and in uncommitted version prefixes, and a stale commit lock.
pub async fn gc(uri: &str, grace_secs: u64, dry_run: bool) -> Result<GcSummary, DsprocError> {
    gc_with_retention(uri, grace_secs, None, None, dry_run).await
}

/// What `dsproc gc` found and did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcSummary {
    #[serde(flatten)]
    pub staging: crate::commit::GcReport,
    #[serde(flatten)]
    pub versions: crate::versions::RetentionReport,
}

/// [`gc`] plus retention: with `keep`, versions beyond the newest `keep` (and
/// older than `older_than`, when given) are marked expired and their files removed.
pub async fn gc_with_retention(
    uri: &str,
    grace_secs: u64,
    keep: Option<usize>,
    older_than: Option<chrono::Duration>,
    dry_run: bool,
) -> Result<GcSummary, DsprocError> {
    let out = output_location(uri)?;
    let staging = crate::commit::gc(&out, grace_secs, dry_run).await?;
    let versions = crate::versions::gc_versions(&out, grace_secs, keep, older_than, dry_run).await?;
    Ok(GcSummary { staging, versions })
}

/// A version's manifest (`dsproc inspect OUTPUT --version N`), with its status as of now.
pub async fn inspect_version(uri: &str, n: u64) -> Result<Manifest, DsprocError> {
    crate::versions::inspect_version(&output_location(uri)?, n).await
}

/// What `inspect` and `gc` look at: an output URI, or a job spec (`*.toml`),
/// whose `output.uri` and `[output.storage]` settings are used.
pub fn output_location(arg: &str) -> Result<Location, DsprocError> {
    let spec = std::path::Path::new(arg);
    if arg.ends_with(".toml") && spec.is_file() {
        let loaded = LoadedSpec::load(spec, &[])?;
        return dsproc_job::lower::resolve_output(&loaded);
    }
    Location::parse(arg, None).map_err(DsprocError::usage)
}
