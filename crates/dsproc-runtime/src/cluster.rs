//! `dsproc scheduler` and `dsproc executor`: Ballista 55 processes with every
//! dsproc function, plan node and codec registered, so one binary is driver,
//! scheduler and executor.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::utils::{create_grpc_server, create_grpc_server_incoming, GrpcServerConfig};
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::shutdown::Shutdown;
use ballista_executor::ArrowFlightServerProvider;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use dsproc_common::DsprocError;
use dsproc_exec::{DsprocLogicalCodec, DsprocPhysicalCodec};

use crate::session::{dsproc_config, state_with, EngineOptions};

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: String,
    pub port: u16,
    /// An executor that has not sent a heartbeat for this long is lost; its tasks are rerun.
    pub executor_timeout_secs: u64,
    /// Seconds after which a finished job's shuffle data is removed.
    pub job_cleanup_secs: u64,
}

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind: String,
    /// Arrow Flight (shuffle data) port.
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    pub grpc_port: u16,
    pub work_dir: Option<String>,
    /// Concurrent tasks (0: number of cores).
    pub task_slots: usize,
    pub memory_limit: Option<u64>,
    pub heartbeat_secs: u64,
}

/// Parses `df://host:port` (or `host:port`).
pub fn parse_cluster_url(url: &str) -> Result<(String, u16), DsprocError> {
    let rest = url.strip_prefix("df://").unwrap_or(url);
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| DsprocError::usage(format!("cluster URL {url:?}: expected df://HOST:PORT")))?;
    let port = port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| DsprocError::usage(format!("cluster URL {url:?}: bad port {port:?}")))?;
    Ok((host.to_string(), port))
}

fn session_builder() -> ballista_scheduler::scheduler_server::SessionBuilder {
    Arc::new(|config: SessionConfig| {
        let config = dsproc_config(config, true);
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(dsproc_io::store::StoreRegistry::default()))
            .build_arc()?;
        state_with(config, runtime).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    })
}

fn config_producer() -> ballista_core::ConfigProducer {
    Arc::new(|| dsproc_config(SessionConfig::new_with_ballista(), true))
}

/// The shortest executor timeout: more than twice a busy executor's 5 s poll interval.
pub const MIN_EXECUTOR_TIMEOUT_SECS: u64 = 12;

/// Runs a scheduler until the process is stopped: Ballista's scheduler service on
/// a tonic server of dsproc's own, with this process's TLS and token check
/// ([`crate::security`]).
pub async fn run_scheduler(opts: SchedulerOptions) -> Result<(), DsprocError> {
    let addr: SocketAddr = format!("{}:{}", opts.bind, opts.port)
        .parse()
        .map_err(|e| DsprocError::usage(format!("--bind/--port: {e}")))?;
    let security = crate::security::current();
    // A pulling executor whose task slots are all busy polls (its only heartbeat)
    // every 5 s (Ballista 55's HEARTBEAT_POLL_INTERVAL): a shorter timeout would
    // declare busy executors lost and rerun their tasks forever.
    let executor_timeout_secs = opts.executor_timeout_secs.max(MIN_EXECUTOR_TIMEOUT_SECS);
    if executor_timeout_secs != opts.executor_timeout_secs {
        eprintln!(
            "note: --executor-timeout {} raised to {executor_timeout_secs} s (busy executors poll the scheduler every 5 s)",
            opts.executor_timeout_secs
        );
    }
    let config = SchedulerConfig {
        bind_host: opts.bind.clone(),
        external_host: opts.bind.clone(),
        bind_port: opts.port,
        // Executors pull their tasks: a pushing scheduler would need a task server on
        // every executor, which Ballista builds without a hook for TLS or a token.
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: executor_timeout_secs,
        expire_dead_executor_interval_seconds: (executor_timeout_secs / 4).clamp(1, 15),
        finished_job_data_clean_up_interval_seconds: opts.job_cleanup_secs,
        override_session_builder: Some(session_builder()),
        override_config_producer: Some(config_producer()),
        override_logical_codec: Some(Arc::new(DsprocLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(DsprocPhysicalCodec::default())),
        override_create_grpc_client_endpoint: security.endpoint_override(),
        ..SchedulerConfig::default()
    };
    let fail = |e: &dyn std::fmt::Display| DsprocError::job(format!("scheduler: {e}"));
    config.validate().map_err(|e| fail(&e))?;
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(|e| fail(&e))?;
    let config = Arc::new(config);
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::clone(&config))
        .await
        .map_err(|e| fail(&e))?;
    let service = SchedulerGrpcServer::new(scheduler)
        .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize);
    let defaults = GrpcServerConfig::default();
    let incoming = create_grpc_server_incoming(addr, &defaults).map_err(|e| fail(&e))?;
    let mut server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(defaults.http2_keepalive_interval_seconds)));
    if let Some(tls) = security.server_tls()? {
        server = server.tls_config(tls).map_err(|e| fail(&e))?;
    }
    server.layer(security.auth_layer()).add_service(service).serve_with_incoming(incoming).await.map_err(|e| fail(&e))
}

/// Ballista's Flight service (shuffle reads, results) on a server with this
/// process's TLS and token check.
fn flight_server(security: Arc<crate::security::ClusterSecurity>) -> Arc<ArrowFlightServerProvider> {
    let defaults = ExecutorProcessConfig::default();
    let (max_enc, max_dec) =
        (defaults.grpc_max_encoding_message_size as usize, defaults.grpc_max_decoding_message_size as usize);
    Arc::new(move |work_dir: String, addr: SocketAddr, mut shutdown: Shutdown, cfg: GrpcServerConfig| {
        let security = Arc::clone(&security);
        tokio::spawn(async move {
            let service = FlightServiceServer::new(BallistaFlightService::new(work_dir))
                .max_encoding_message_size(max_enc)
                .max_decoding_message_size(max_dec);
            let incoming = create_grpc_server_incoming(addr, &cfg)?;
            let mut server = create_grpc_server(&cfg);
            let tls = security.server_tls().map_err(|e| BallistaError::General(e.to_string()))?;
            if let Some(tls) = tls {
                server = server.tls_config(tls).map_err(BallistaError::TonicError)?;
            }
            server
                .layer(security.auth_layer())
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move { shutdown.recv().await })
                .await
                .map_err(BallistaError::TonicError)
        })
    })
}

/// Runs an executor until the process is stopped.
pub async fn run_executor(opts: ExecutorOptions) -> Result<(), DsprocError> {
    let security = crate::security::current();
    let engine = EngineOptions { target_partitions: 1, memory_limit: None, batch_rows: None };
    let state = crate::session::dsproc_state(&engine, true)?;
    let registry = BallistaFunctionRegistry::from(&state);
    // Ballista's default runtime plus dsproc's object-store registry (files that
    // plans scan by URL are read through object_store on the executor too).
    let work_dir = opts.work_dir.clone();
    let runtime_producer: ballista_core::RuntimeProducer = Arc::new(move |_| {
        let mut rt =
            RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(dsproc_io::store::StoreRegistry::default()));
        if let Some(wd) = &work_dir {
            rt = rt.with_temp_file_path(wd.clone());
        }
        Ok(Arc::new(rt.build()?))
    });
    let config = ExecutorProcessConfig {
        bind_host: opts.bind.clone(),
        external_host: Some(opts.bind.clone()),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        work_dir: opts.work_dir.clone(),
        vcores: opts.task_slots,
        memory_pool_size: opts.memory_limit,
        executor_heartbeat_interval_seconds: opts.heartbeat_secs,
        override_function_registry: Some(Arc::new(registry)),
        override_config_producer: Some(config_producer()),
        override_runtime_producer: Some(runtime_producer),
        override_logical_codec: Some(Arc::new(DsprocLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(DsprocPhysicalCodec::default())),
        override_arrow_flight_service: Some(flight_server(Arc::clone(&security))),
        override_create_grpc_client_endpoint: security.endpoint_override(),
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await.map_err(|e| DsprocError::job(format!("executor: {e}")))
}
