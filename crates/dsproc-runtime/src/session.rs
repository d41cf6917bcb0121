//! Session construction: one place that knows everything a dsproc session needs.

use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};

use dsproc_common::DsprocError;
use dsproc_exec::{DsprocLogicalCodec, DsprocPhysicalCodec, DsprocQueryPlanner};

/// Where a job's plan runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// In-process DataFusion (the embedded default).
    Local,
    /// Ballista with an in-process scheduler and executor: plans are serialised
    /// through the codecs exactly as on a cluster.
    Standalone,
    /// A Ballista scheduler at `df://host:port`.
    Remote(String),
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Standalone => "ballista-standalone",
            Self::Remote(_) => "ballista",
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// DataFusion target partitions (default: the number of cores).
    pub target_partitions: usize,
    /// Memory pool limit in bytes; sorts and aggregations spill beyond it.
    pub memory_limit: Option<u64>,
    /// Engine batch size in rows (`None`: dsproc's default). The driver sets it
    /// from the input's typical row size (see [`dsproc_io::rowsize`]).
    pub batch_rows: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_limit: None,
            batch_rows: None,
        }
    }
}

fn err(e: impl std::fmt::Display) -> DsprocError {
    DsprocError::job(format!("cannot start the engine: {e}"))
}

/// The session config dsproc uses: our codecs installed, the engine batch size,
/// and for Ballista the static planner.
pub fn dsproc_config(base: SessionConfig, ballista: bool) -> SessionConfig {
    let mut config = base
        .with_batch_size(dsproc_common::config::DEFAULT_BATCH_ROWS)
        // Each sort reserves this much up front for its merge; plans with many sorts
        // (dedup_minhash's rounds) under a fair memory pool need small reservations.
        .with_sort_spill_reservation_bytes(dsproc_common::config::SORT_SPILL_RESERVATION_BYTES)
        .with_ballista_logical_extension_codec(Arc::new(DsprocLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(DsprocPhysicalCodec::default()));
    if ballista {
        // Adaptive planning hangs a job that loses an executor after a map stage
        // (upstream issue #2150); the static planner recomputes the stage.
        config = config.set_str(ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED, "false");
        // Pull job tracking: the client learns the job id as soon as the scheduler
        // accepts the job (push tracking learns it only with the first stage's
        // status), so a signal or a timeout can cancel the job at any time.
        config = config.set_str(ballista_core::config::BALLISTA_CLIENT_PULL, "true");
        // Every client a task or the driver opens carries this process's TLS and token.
        if let Some(f) = crate::security::current().endpoint_override() {
            config = config.with_ballista_override_create_grpc_client_endpoint(f);
        }
    }
    config
}

/// A session state with the dsproc planner, functions and codecs.
pub fn dsproc_state(opts: &EngineOptions, ballista: bool) -> Result<SessionState, DsprocError> {
    let base = if ballista { SessionConfig::new_with_ballista() } else { SessionConfig::new() };
    let mut config = dsproc_config(base, ballista).with_target_partitions(opts.target_partitions.max(1));
    if let Some(rows) = opts.batch_rows {
        config = config.with_batch_size(rows.max(1));
    }
    if !ballista && std::env::var("DSPROC_SHARED_SUBPLANS").map_or(true, |v| v != "off") {
        // One process runs the whole plan: a step that reads its input twice reads
        // it from one execution of the upstream plan (dsproc_exec::shared);
        // DSPROC_SHARED_SUBPLANS=off re-executes it as before (benchmarks).
        config = config.with_extension(Arc::new(dsproc_exec::ShareSubplans));
    }
    let mut rt =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(dsproc_io::store::StoreRegistry::default()));
    if let Some(limit) = opts.memory_limit {
        rt = rt.with_memory_pool(Arc::new(dsproc_exec::ActiveFairPool::new(limit as usize)));
    }
    state_with(config, rt.build_arc().map_err(err)?)
}

/// A session state over `config` and `runtime` with the dsproc planner and functions.
/// DataFusion 55's leaf-expression pushdown (struct field access moved towards
/// the scans) fails on a projection over a join whose sides share a column name
/// ("qualified field name q.id and unqualified field name id would be
/// ambiguous": an incremental build's duplicate-id join under `tokenize`'s field
/// accesses). dsproc's struct columns are computed by its own functions, never
/// read from Parquet, so the rewrite gains nothing here.
const SKIPPED_OPTIMIZER_RULES: [&str; 2] = ["extract_leaf_expressions", "push_down_leaf_projections"];

pub fn state_with(
    config: SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionState, DsprocError> {
    let rules: Vec<_> = datafusion::optimizer::Optimizer::new()
        .rules
        .into_iter()
        .filter(|r| !SKIPPED_OPTIMIZER_RULES.contains(&r.name()))
        .collect();
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_query_planner(Arc::new(DsprocQueryPlanner))
        .with_optimizer_rules(rules)
        .build();
    // DataFusion 55's leaf-expression pushdown (struct field access moved towards
    // the scans) fails on a projection over a join whose sides share a column name
    // ("qualified field name q.id and unqualified field name id would be
    // ambiguous": an incremental build's duplicate-id join under `tokenize`'s
    // field accesses). dsproc's struct columns are computed by its own functions,
    // never read from Parquet, so the rewrite gains nothing here.
    for udf in dsproc_functions::all_udfs() {
        state.register_udf(udf).map_err(err)?;
    }
    for udwf in dsproc_functions::all_udwfs() {
        state.register_udwf(udwf).map_err(err)?;
    }
    Ok(state)
}

/// A session context for `engine`.
pub async fn make_context(engine: &Engine, opts: &EngineOptions) -> Result<SessionContext, DsprocError> {
    let ctx = match engine {
        Engine::Local => SessionContext::new_with_state(dsproc_state(opts, false)?),
        Engine::Standalone => SessionContext::standalone_with_state(dsproc_state(opts, true)?).await.map_err(err)?,
        Engine::Remote(url) => SessionContext::remote_with_state(url, dsproc_state(opts, true)?)
            .await
            .map_err(|e| DsprocError::job(format!("cannot connect to the Ballista scheduler at {url}: {e}")))?,
    };
    // Registrations made before a Ballista upgrade are dropped on the client.
    for udf in dsproc_functions::all_udfs() {
        ctx.register_udf(udf.as_ref().clone());
    }
    for udwf in dsproc_functions::all_udwfs() {
        ctx.register_udwf(udwf.as_ref().clone());
    }
    Ok(ctx)
}
