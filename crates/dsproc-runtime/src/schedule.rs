//! `dsproc schedule`: scheduled rebuilds in a long-lived foreground process.
//!
//! Each job's `[schedule]` names its cron line. At each due time the scheduler
//! starts the job as a child `dsproc run` (or `submit --cluster`) process, which
//! dies with the scheduler (`PR_SET_PDEATHSIG`), so a killed scheduler never
//! leaves a run behind. Everything that must outlive the scheduler's machine
//! lives in the dataset root on its store:
//! - `_runs/lock.json`: the run lock, a lease (`schedule.lease`) that the running
//!   scheduler renews every third of it; a dead scheduler's lease expires (at
//!   once when it ran on this host and its pid is gone). Two schedulers on one
//!   dataset never run it at once, and a tick one of them finished is not run
//!   again by the other.
//! - `_runs/<tick>-a<attempt>-<scheduler>.json`: one record per attempt (start,
//!   end, exit code, status, version committed, rows, reason).
//!
//! Exit codes decide what happens next: 0 committed or up to date; 1 failed
//! (retried with exponential backoff, `schedule.retries`); 2 spec/usage error and
//! 3 rejected by checks (never retried).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::schedule::{CatchUp, Schedule};
use dsproc_job::LoadedSpec;

/// The dataset root's scheduler folder.
pub const RUNS_DIR: &str = "_runs";
const LOCK_FILE: &str = "lock.json";

/// A job with a `[schedule]`.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub spec_path: PathBuf,
    pub loaded: LoadedSpec,
    pub schedule: Schedule,
    pub out: Location,
}

/// The jobs `paths` name: spec files, and in directories every `*.toml` with a
/// `[schedule]` table.
pub fn load_jobs(paths: &[String]) -> Result<Vec<ScheduledJob>, DsprocError> {
    let mut files = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| DsprocError::usage(format!("{p}: {e}")))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            let before = files.len();
            for f in found {
                let text =
                    std::fs::read_to_string(&f).map_err(|e| DsprocError::usage(format!("{}: {e}", f.display())))?;
                if text.lines().any(|l| l.trim() == "[schedule]") {
                    files.push(f);
                }
            }
            if files.len() == before {
                return Err(DsprocError::usage(format!("{p}: no job spec with a [schedule] table")));
            }
        } else {
            files.push(path.to_path_buf());
        }
    }
    if files.is_empty() {
        return Err(DsprocError::usage("name at least one job spec (JOB.toml) or a directory of them"));
    }
    let mut jobs: Vec<ScheduledJob> = Vec::new();
    for f in files {
        let loaded = LoadedSpec::load(&f, &[])?;
        let Some(spec) = loaded.spec.schedule.clone() else {
            return Err(DsprocError::usage(format!("{}: no [schedule] table (cron = \"…\")", f.display())));
        };
        let schedule =
            spec.check().map_err(|(k, m)| DsprocError::usage(format!("{}: schedule.{k}: {m}", f.display())))?;
        let out = dsproc_job::lower::resolve_output(&loaded)?;
        if let Some(other) = jobs.iter().find(|j| j.out.canonical() == out.canonical()) {
            return Err(DsprocError::usage(format!(
                "{} and {} write the same dataset {}; schedule one of them",
                other.spec_path.display(),
                f.display(),
                out.shown()
            )));
        }
        jobs.push(ScheduledJob { spec_path: f, loaded, schedule, out });
    }
    Ok(jobs)
}

/// One attempt of one tick, as recorded in `_runs/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub job: String,
    pub spec: String,
    /// The tick (RFC 3339, UTC).
    pub scheduled_for: String,
    pub attempt: u32,
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    /// `running`, `committed`, `up_to_date`, `failed`, `usage_error`,
    /// `rejected` or `interrupted`.
    pub status: String,
    #[serde(default)]
    pub exit: Option<i32>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub dataset_version: Option<String>,
    #[serde(default)]
    pub rows: Option<serde_json::Value>,
    #[serde(default)]
    pub reason: Option<String>,
    pub scheduler: String,
    pub host: String,
    pub pid: u32,
}

impl RunRecord {
    /// The attempt ended (anything but `running`).
    pub fn finished(&self) -> bool {
        self.status != "running"
    }
    /// The tick was dealt with: committed, up to date, or an error a retry
    /// cannot fix (interrupted ticks count as missed).
    pub fn settles_tick(&self) -> bool {
        matches!(self.status.as_str(), "committed" | "up_to_date" | "usage_error" | "rejected" | "failed")
    }
    pub fn good(&self) -> bool {
        matches!(self.status.as_str(), "committed" | "up_to_date")
    }
    fn file_name(&self) -> String {
        let t = DateTime::parse_from_rfc3339(&self.scheduled_for)
            .map(|t| t.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|_| "unknown".into());
        let who: String = self.scheduler.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        format!("{t}-a{:02}-{who}.json", self.attempt)
    }
}

/// Every run record of the dataset at `out`, oldest tick first.
pub async fn records(out: &Location) -> Result<Vec<RunRecord>, DsprocError> {
    let dir = out.join(RUNS_DIR);
    let mut all = Vec::new();
    for (name, _) in dir.list().await.map_err(DsprocError::job)? {
        if name.contains('/') || name == LOCK_FILE || !name.ends_with(".json") {
            continue;
        }
        if let Some(b) = dir.join(&name).get_opt().await.map_err(DsprocError::job)? {
            if let Ok(r) = serde_json::from_slice::<RunRecord>(&b) {
                all.push(r);
            }
        }
    }
    all.sort_by(|a, b| (&a.scheduled_for, a.attempt, &a.started_at).cmp(&(&b.scheduled_for, b.attempt, &b.started_at)));
    Ok(all)
}

async fn write_record(out: &Location, r: &RunRecord) -> Result<(), DsprocError> {
    let body = serde_json::to_vec_pretty(r).map_err(|e| DsprocError::job(e.to_string()))?;
    out.join(&format!("{RUNS_DIR}/{}", r.file_name())).put(body).await.map_err(DsprocError::job)
}

/// The run lock's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub scheduler: String,
    pub host: String,
    pub pid: u32,
    pub job: String,
    pub scheduled_for: String,
    pub expires_at: String,
}

impl Lease {
    /// Expired, or left by a process of this host that is gone.
    pub fn expired(&self) -> bool {
        let gone_here = self.host == hostname() && !crate::commit::pid_alive(self.pid);
        gone_here
            || DateTime::parse_from_rfc3339(&self.expires_at)
                .map(|t| t.with_timezone(&Utc) <= Utc::now())
                .unwrap_or(true)
    }
}

/// The run lock of the dataset at `out`, if any.
pub async fn current_lease(out: &Location) -> Result<Option<Lease>, DsprocError> {
    let b = out.join(&format!("{RUNS_DIR}/{LOCK_FILE}")).get_opt().await.map_err(DsprocError::job)?;
    Ok(b.and_then(|b| serde_json::from_slice(&b).ok()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Who this scheduler process is.
#[derive(Debug, Clone)]
struct Me {
    id: String,
    host: String,
    pid: u32,
}

impl Me {
    fn new() -> Self {
        let pid = std::process::id();
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("{}-{pid}-{nanos}", hostname()).as_bytes());
        Self { id: hex::encode(&h[..4]), host: hostname(), pid }
    }
    fn lease(&self, job: &ScheduledJob, tick: DateTime<Utc>) -> Lease {
        let expires = Utc::now() + chrono::Duration::from_std(job.schedule.lease).unwrap_or_default();
        Lease {
            scheduler: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            job: job.loaded.spec.name.clone(),
            scheduled_for: tick.to_rfc3339(),
            expires_at: expires.to_rfc3339(),
        }
    }
}

/// Takes the run lock. `Ok(None)`: taken; `Ok(Some(holder))`: a live holder has it.
/// An expired lock is taken over and confirmed after a settle time (a rival that
/// took it over at the same moment wins or loses by the last write).
async fn acquire(out: &Location, lease: &Lease) -> Result<Option<Lease>, DsprocError> {
    let loc = out.join(&format!("{RUNS_DIR}/{LOCK_FILE}"));
    let body = |l: &Lease| serde_json::to_vec_pretty(l).unwrap_or_default();
    for _ in 0..10 {
        if loc.put_if_absent(body(lease)).await.map_err(DsprocError::job)? {
            return Ok(None);
        }
        let Some((bytes, etag)) = loc.get_with_etag().await.map_err(DsprocError::job)? else { continue };
        let held: Option<Lease> = serde_json::from_slice(&bytes).ok();
        if let Some(h) = held.as_ref().filter(|h| !h.expired() && h.scheduler != lease.scheduler) {
            return Ok(Some(h.clone()));
        }
        if !loc.put_if_match(body(lease), etag).await.map_err(DsprocError::job)? {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        match current_lease(out).await? {
            Some(h) if h.scheduler == lease.scheduler => return Ok(None),
            Some(h) => return Ok(Some(h)),
            None => continue,
        }
    }
    Err(DsprocError::job(format!("{}: could not take the run lock", loc.shown())))
}

/// Renews our lease; false when another scheduler holds the lock now.
async fn renew(out: &Location, lease: &Lease) -> Result<bool, DsprocError> {
    let loc = out.join(&format!("{RUNS_DIR}/{LOCK_FILE}"));
    let Some((bytes, etag)) = loc.get_with_etag().await.map_err(DsprocError::job)? else { return Ok(false) };
    let held: Option<Lease> = serde_json::from_slice(&bytes).ok();
    if held.as_ref().map(|h| &h.scheduler) != Some(&lease.scheduler) {
        return Ok(false);
    }
    let body = serde_json::to_vec_pretty(lease).unwrap_or_default();
    loc.put_if_match(body, etag).await.map_err(DsprocError::job)
}

async fn release(out: &Location, me: &Me) {
    let loc = out.join(&format!("{RUNS_DIR}/{LOCK_FILE}"));
    if let Ok(Some(h)) = current_lease(out).await {
        if h.scheduler == me.id {
            if let Err(e) = loc.delete().await {
                tracing::warn!(error = %e, "could not remove the run lock");
            }
        }
    }
}

/// How the scheduler starts runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The `dsproc` binary runs start.
    pub exe: PathBuf,
    /// `submit --cluster URL` instead of `run`.
    pub cluster: Option<String>,
}

/// Stop requests (SIGTERM/SIGINT) seen by every job loop.
#[derive(Debug, Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    fn stopped(&self) -> bool {
        *self.0.borrow()
    }
    /// Sleeps `d`; true when a stop came first.
    async fn sleep(&mut self, d: Duration) -> bool {
        if self.stopped() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopped(),
            _ = self.0.changed() => true,
        }
    }
}

/// Runs every job's schedule until SIGTERM or SIGINT; then the current runs
/// are stopped cleanly (SIGTERM to them: nothing half-written is committed),
/// their records say `interrupted`, and the locks are released.
pub async fn run_scheduler(jobs: Vec<ScheduledJob>, opts: SchedulerOptions) -> Result<i32, DsprocError> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let me = Arc::new(Me::new());
    for j in &jobs {
        let next = j.schedule.cron.next_after(Utc::now()).map(|t| t.with_timezone(&j.schedule.cron.tz).to_rfc3339());
        eprintln!(
            "schedule: {} ({}) cron {:?} {}; next run {}",
            j.loaded.spec.name,
            j.spec_path.display(),
            j.schedule.spec.cron,
            j.schedule.spec.timezone,
            next.as_deref().unwrap_or("never")
        );
    }
    let mut tasks = Vec::new();
    for job in jobs {
        let (opts, me, stop) = (opts.clone(), Arc::clone(&me), Stop(rx.clone()));
        tasks.push(tokio::spawn(async move { job_loop(job, opts, me, stop).await }));
    }
    let (mut term, mut int) = (
        signal(SignalKind::terminate()).map_err(|e| DsprocError::job(e.to_string()))?,
        signal(SignalKind::interrupt()).map_err(|e| DsprocError::job(e.to_string()))?,
    );
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let code = tokio::select! {
        r = &mut all => {
            for r in r {
                if let Ok(Err(e)) = r {
                    return Err(e);
                }
            }
            return Ok(0);
        }
        _ = term.recv() => 143,
        _ = int.recv() => 130,
    };
    eprintln!("schedule: stopping (signal); current runs are stopped cleanly");
    let _ = tx.send(true);
    let _ = all.await;
    Ok(code)
}

async fn job_loop(job: ScheduledJob, opts: SchedulerOptions, me: Arc<Me>, mut stop: Stop) -> Result<(), DsprocError> {
    let cron = job.schedule.cron.clone();
    let settled = |recs: &[RunRecord]| {
        recs.iter()
            .filter(|r| r.settles_tick())
            .filter_map(|r| DateTime::parse_from_rfc3339(&r.scheduled_for).ok())
            .map(|t| t.with_timezone(&Utc))
            .max()
    };
    // Attempts left `running` by a scheduler that is gone (its lock expired, or
    // another holds it now): interrupted.
    let holder = current_lease(&job.out).await?.filter(|l| !l.expired());
    mark_interrupted(&job.out, holder.as_ref().map(|h| h.scheduler.as_str())).await?;
    // The ticks missed while no scheduler ran (since the last settled one).
    let mut last = settled(&records(&job.out).await?);
    let mut ready_from = Utc::now();
    loop {
        let now = Utc::now();
        let missed = match last {
            Some(l) => cron.between(l, now, 100_000),
            None => Vec::new(),
        };
        let due: Vec<DateTime<Utc>> = match job.schedule.spec.catch_up {
            CatchUp::Latest => missed.last().copied().into_iter().collect(),
            CatchUp::All => missed.clone(),
            CatchUp::None => Vec::new(),
        };
        if missed.len() > due.len() {
            eprintln!(
                "schedule: {}: {} missed tick(s) skipped (catch_up = {:?})",
                job.loaded.spec.name,
                missed.len() - due.len(),
                job.schedule.spec.catch_up
            );
        }
        for tick in due {
            if stop.stopped() {
                return Ok(());
            }
            run_tick(&job, &opts, &me, &mut stop, tick).await?;
        }
        if let Some(m) = missed.last() {
            last = Some(*m);
        }
        if stop.stopped() {
            return Ok(());
        }
        // Sleep to the next tick (or ready_by deadline).
        let from = last.map_or(Utc::now(), |l| l.max(Utc::now()));
        let Some(next) = cron.next_after(from) else {
            eprintln!("schedule: {}: the cron line fires no more", job.loaded.spec.name);
            return Ok(());
        };
        let deadline = job.schedule.ready_by.as_ref().and_then(|r| r.next_after(Utc::now()));
        let wake = deadline.map_or(next, |d| d.min(next));
        let wait = (wake - Utc::now()).to_std().unwrap_or_default();
        if stop.sleep(wait).await {
            return Ok(());
        }
        if let Some(d) = deadline.filter(|d| *d <= next && *d <= Utc::now()) {
            check_ready_by(&job, ready_from, d).await;
            ready_from = d;
            if d < next {
                continue;
            }
        }
        if Utc::now() < next {
            continue;
        }
        run_tick(&job, &opts, &me, &mut stop, next).await?;
        last = Some(next);
    }
}

/// At a `ready_by` deadline: a good run since the previous deadline, else warn
/// and notify `ready_by_missed`.
async fn check_ready_by(job: &ScheduledJob, since: DateTime<Utc>, deadline: DateTime<Utc>) {
    let good = records(&job.out).await.unwrap_or_default().into_iter().any(|r| {
        r.good()
            && r.ended_at
                .as_deref()
                .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
                .is_some_and(|e| e.with_timezone(&Utc) > since && e.with_timezone(&Utc) <= deadline)
    });
    if !good {
        eprintln!(
            "schedule: WARNING {}: no version was committed (or found up to date) between {} and the ready_by deadline {}",
            job.loaded.spec.name,
            since.to_rfc3339(),
            deadline.to_rfc3339()
        );
        let ev = serde_json::json!({
            "event": "ready_by_missed",
            "job": job.loaded.spec.name,
            "dataset": job.out.canonical(),
            "deadline": deadline.to_rfc3339(),
            "since": since.to_rfc3339(),
            "at": Utc::now().to_rfc3339(),
        });
        notify(job, &ev).await;
    }
}

async fn notify(job: &ScheduledJob, event: &serde_json::Value) {
    for url in &job.schedule.spec.notify {
        if let Err(e) = crate::lineage::post_json(url, "schedule.notify", event).await {
            eprintln!("schedule: {}: could not notify: {e}", job.loaded.spec.name);
        }
    }
}

/// Runs one tick: its attempts under the run lock.
async fn run_tick(
    job: &ScheduledJob,
    opts: &SchedulerOptions,
    me: &Me,
    stop: &mut Stop,
    tick: DateTime<Utc>,
) -> Result<(), DsprocError> {
    let name = &job.loaded.spec.name;
    let tick_s = tick.to_rfc3339();
    let done = records(&job.out).await?.into_iter().any(|r| r.scheduled_for == tick_s && r.settles_tick());
    if done {
        eprintln!("schedule: {name}: tick {tick_s} already ran (another scheduler); skipped");
        return Ok(());
    }
    let mut lease = me.lease(job, tick);
    if let Some(holder) = acquire(&job.out, &lease).await? {
        eprintln!(
            "schedule: {name}: tick {tick_s}: the dataset is being rebuilt by scheduler {} (pid {} on {}, for tick {}); skipped",
            holder.scheduler, holder.pid, holder.host, holder.scheduled_for
        );
        return Ok(());
    }
    // We hold the lock: an attempt still `running` is a dead scheduler's, and
    // what its run left (staging, an uncommitted version prefix) goes first, so
    // the version numbers stay without gaps.
    mark_interrupted(&job.out, Some(&me.id)).await?;
    match crate::driver::gc(&job.out.canonical(), 600, false).await {
        Ok(r) if !r.versions.removed_claims.is_empty() || !r.staging.removed_runs.is_empty() => eprintln!(
            "schedule: {name}: removed what an interrupted run left (versions {:?}, {} staged runs)",
            r.versions.removed_claims.keys().collect::<Vec<_>>(),
            r.staging.removed_runs.len()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("schedule: {name}: could not clean up after earlier runs: {e}"),
    }
    let result = attempts(job, opts, me, stop, tick, &mut lease).await;
    release(&job.out, me).await;
    result
}

/// Marks attempts left `running` by schedulers other than `alive` interrupted.
async fn mark_interrupted(out: &Location, alive: Option<&str>) -> Result<(), DsprocError> {
    for mut r in records(out).await?.into_iter().filter(|r| !r.finished()) {
        if alive == Some(r.scheduler.as_str()) {
            continue;
        }
        r.status = "interrupted".into();
        r.ended_at.get_or_insert_with(|| Utc::now().to_rfc3339());
        r.reason = Some(format!("scheduler {} (pid {} on {}) stopped during the run", r.scheduler, r.pid, r.host));
        write_record(out, &r).await?;
    }
    Ok(())
}

async fn attempts(
    job: &ScheduledJob,
    opts: &SchedulerOptions,
    me: &Me,
    stop: &mut Stop,
    tick: DateTime<Utc>,
    lease: &mut Lease,
) -> Result<(), DsprocError> {
    let name = &job.loaded.spec.name;
    let retries = job.schedule.spec.retries;
    for attempt in 1..=retries + 1 {
        let mut rec = RunRecord {
            job: name.clone(),
            spec: job.spec_path.display().to_string(),
            scheduled_for: tick.to_rfc3339(),
            attempt,
            started_at: Utc::now().to_rfc3339(),
            ended_at: None,
            status: "running".into(),
            exit: None,
            version: None,
            dataset_version: None,
            rows: None,
            reason: None,
            scheduler: me.id.clone(),
            host: me.host.clone(),
            pid: me.pid,
        };
        write_record(&job.out, &rec).await?;
        eprintln!("schedule: {name}: tick {} attempt {attempt}: running", rec.scheduled_for);
        let outcome = run_child(job, opts, me, stop, lease).await;
        rec.ended_at = Some(Utc::now().to_rfc3339());
        rec.exit = outcome.exit;
        rec.reason = outcome.reason.clone();
        rec.version = outcome.version;
        rec.dataset_version = outcome.dataset_version.clone();
        rec.rows = outcome.rows.clone();
        rec.status = match (outcome.exit, outcome.interrupted) {
            (_, true) => "interrupted",
            (Some(0), _) if outcome.up_to_date => "up_to_date",
            (Some(0), _) => "committed",
            (Some(2), _) => "usage_error",
            (Some(3), _) => "rejected",
            _ => "failed",
        }
        .into();
        write_record(&job.out, &rec).await?;
        eprintln!(
            "schedule: {name}: tick {} attempt {attempt}: {}{}{}",
            rec.scheduled_for,
            rec.status,
            rec.version.map(|v| format!(", version {v}")).unwrap_or_default(),
            rec.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        );
        let event = |kind: &str| {
            serde_json::json!({
                "event": kind,
                "job": name,
                "dataset": job.out.canonical(),
                "scheduled_for": rec.scheduled_for,
                "attempt": attempt,
                "exit": rec.exit,
                "status": rec.status,
                "version": rec.version,
                "dataset_version": rec.dataset_version,
                "reason": rec.reason,
                "at": Utc::now().to_rfc3339(),
            })
        };
        match rec.status.as_str() {
            "interrupted" => return Ok(()),
            "committed" | "up_to_date" => {
                notify(job, &event("success")).await;
                return Ok(());
            }
            "rejected" => {
                notify(job, &event("rejected")).await;
                return Ok(());
            }
            "failed" if attempt <= retries => {
                let wait = job.schedule.backoff(attempt);
                eprintln!("schedule: {name}: retrying in {:.1}s", wait.as_secs_f64());
                // keep the lock through the backoff
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until {
                    let step = (until - std::time::Instant::now()).min(job.schedule.lease / 3);
                    if stop.sleep(step).await {
                        return Ok(());
                    }
                    *lease = me.lease(job, tick);
                    renew(&job.out, lease).await?;
                }
            }
            _ => {
                notify(job, &event("failure")).await;
                return Ok(());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Outcome {
    exit: Option<i32>,
    interrupted: bool,
    up_to_date: bool,
    version: Option<u64>,
    dataset_version: Option<String>,
    rows: Option<serde_json::Value>,
    reason: Option<String>,
}

/// Runs the job once as a child process, renewing the lease, enforcing
/// `max_runtime` and passing a stop on as SIGTERM.
async fn run_child(
    job: &ScheduledJob,
    opts: &SchedulerOptions,
    me: &Me,
    stop: &mut Stop,
    lease: &mut Lease,
) -> Outcome {
    let mut cmd = tokio::process::Command::new(&opts.exe);
    let spec = job.spec_path.display().to_string();
    match &opts.cluster {
        Some(url) => cmd.args(["submit", &spec, "--cluster", url, "--json", "-q"]),
        None => cmd.args(["run", &spec, "--json", "-q"]),
    };
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                exit: Some(1),
                reason: Some(format!("could not start {}: {e}", opts.exe.display())),
                ..Default::default()
            }
        }
    };
    let pid = child.id();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read_out = tokio::spawn(async move {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = tokio::io::AsyncReadExt::read_to_end(o, &mut b).await;
        }
        b
    });
    let read_err = tokio::spawn(async move {
        let mut b = Vec::new();
        if let Some(o) = err.as_mut() {
            let _ = tokio::io::AsyncReadExt::read_to_end(o, &mut b).await;
        }
        b
    });
    let started = std::time::Instant::now();
    let mut interrupted = false;
    let mut timed_out = false;
    let mut lost_lease = false;
    let signal = |sig: i32| {
        if let Some(p) = pid {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(p as i32, sig);
            }
        }
    };
    let status = loop {
        let tick = job.schedule.lease / 3;
        tokio::select! {
            s = child.wait() => break s.ok(),
            _ = tokio::time::sleep(tick) => {
                *lease = Lease { expires_at: (Utc::now() + chrono::Duration::from_std(job.schedule.lease).unwrap_or_default()).to_rfc3339(), ..lease.clone() };
                if !renew(&job.out, lease).await.unwrap_or(true) && !lost_lease {
                    eprintln!("schedule: {}: another scheduler took the run lock; stopping this run", job.loaded.spec.name);
                    lost_lease = true;
                    signal(libc::SIGTERM);
                }
                if let Some(max) = job.schedule.max_runtime {
                    if started.elapsed() > max && !timed_out {
                        timed_out = true;
                        signal(libc::SIGTERM);
                    }
                    if started.elapsed() > max + Duration::from_secs(30) {
                        signal(libc::SIGKILL);
                    }
                }
            }
            changed = stop.0.changed() => {
                if changed.is_err() || *stop.0.borrow() {
                    interrupted = true;
                    signal(libc::SIGTERM);
                }
            }
        }
    };
    let _ = me;
    let stdout = read_out.await.unwrap_or_default();
    let stderr = read_err.await.unwrap_or_default();
    let code = status.and_then(|s| s.code());
    let json: Option<serde_json::Value> = serde_json::from_slice(&stdout).ok();
    let m = json.as_ref().map(|j| &j["manifest"]);
    let stderr = String::from_utf8_lossy(&stderr);
    let reason = if timed_out {
        Some(format!("stopped after max_runtime ({})", job.schedule.spec.max_runtime.as_deref().unwrap_or("")))
    } else if lost_lease {
        Some("stopped: another scheduler took the run lock".into())
    } else if code == Some(0) {
        let up_to_date = json.as_ref().is_some_and(|j| j["up_to_date"] == true);
        m.filter(|_| !up_to_date).and_then(|m| m["incremental"]["reason"].as_str().map(String::from))
    } else {
        stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error"))
            .map(|l| l.to_string())
            .or_else(|| json.as_ref().and_then(|j| j["error"].as_str().map(String::from)))
    };
    Outcome {
        exit: if timed_out || lost_lease { Some(1) } else { code },
        // stopped by us for max_runtime or a lost lock: a failure (retried), not an interruption
        interrupted: !timed_out && !lost_lease && (interrupted || code.is_none() || matches!(code, Some(130 | 143))),
        up_to_date: json.as_ref().is_some_and(|j| j["up_to_date"] == true),
        version: json.as_ref().and_then(|j| j["version"].as_u64()).or_else(|| m.and_then(|m| m["version"].as_u64())),
        dataset_version: m.and_then(|m| m["dataset_version"].as_str().map(String::from)),
        rows: m.map(|m| m["rows"].clone()).filter(|r| !r.is_null()),
        reason,
    }
}

/// `dsproc schedule status`: each job's last runs, lock and next due time.
pub async fn status(jobs: &[ScheduledJob], last: usize) -> Result<serde_json::Value, DsprocError> {
    let mut out = Vec::new();
    for j in jobs {
        let recs = records(&j.out).await?;
        let lease = current_lease(&j.out).await?;
        let next = j.schedule.cron.next_after(Utc::now()).map(|t| t.with_timezone(&j.schedule.cron.tz).to_rfc3339());
        let skip = recs.len().saturating_sub(last);
        out.push(serde_json::json!({
            "job": j.loaded.spec.name,
            "spec": j.spec_path.display().to_string(),
            "dataset": j.out.canonical(),
            "cron": j.schedule.spec.cron,
            "timezone": j.schedule.spec.timezone,
            "next": next,
            "running": lease.as_ref().filter(|l| !l.expired()),
            "last_success": recs.iter().rev().find(|r| r.good()),
            "runs": &recs[skip..],
        }));
    }
    Ok(serde_json::json!({ "jobs": out }))
}
