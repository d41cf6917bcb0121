//! Shared subplans: a step that reads its input rows more than once (dedup:
//! keys → survivors → join back to the rows) reads them from one execution of
//! the upstream plan instead of re-running it, so the input files are read and
//! parsed once and earlier steps run once.
//!
//! Logical: [`SharedNode`] wraps the step's input; every reference to the step's
//! input holds the same node (the same `id` and an equal input plan).
//!
//! Physical (one process, the embedded engine): the first occurrence planned
//! holds the upstream plan, optimized on its own; every occurrence is a leaf
//! [`SharedExec`] reading from one [`SharedPlan`]. The first `execute` of a
//! partition by any reader starts a producer that drains the upstream partition
//! to a spill file of the runtime's disk manager, frame by frame (one Arrow IPC
//! stream per batch). Readers follow the file as it grows, each at its own pace:
//! the producer never waits for a reader, so a reader that is polled only after
//! another has finished (the probe side of a join) cannot deadlock the plan, and
//! memory holds no more than a frame per reader. A plan with one reader streams
//! the upstream directly.
//!
//! Occurrences whose input plans differ (an optimizer rule rewrote one of them)
//! are not shared, and on Ballista (stages run in different processes) the node
//! is planned as its input: both are re-executions as before, never a wrong
//! answer.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{displayable, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use tokio::sync::watch;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A subplan that several parts of the plan read (see the module docs).
#[derive(Debug, Clone)]
pub struct SharedNode {
    pub input: LogicalPlan,
    /// Identifies the node across the plan's copies of it.
    pub id: u64,
}

impl SharedNode {
    pub fn new(input: LogicalPlan) -> Self {
        Self { input, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) }
    }
    /// A node decoded from a plan carried between processes.
    pub fn with_id(input: LogicalPlan, id: u64) -> Self {
        Self { input, id }
    }
}

impl PartialEq for SharedNode {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.input == other.input
    }
}
impl Eq for SharedNode {}
impl Hash for SharedNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}
impl PartialOrd for SharedNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.id.partial_cmp(&other.id)
    }
}

impl UserDefinedLogicalNodeCore for SharedNode {
    fn name(&self) -> &str {
        "Shared"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    /// A filter pushed into one reference would make the copies differ (they are
    /// then not shared): keep filters above the node.
    fn prevent_predicate_push_down_columns(&self) -> std::collections::HashSet<String> {
        self.input.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Shared: id={}", self.id)
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(Self { input: inputs.swap_remove(0), id: self.id })
    }
}

/// Set on sessions whose plans run in one process (the embedded engine): only
/// they plan [`SharedNode`] as a [`SharedExec`].
#[derive(Debug, Default)]
pub struct ShareSubplans;

/// The shared plans of one node id: each with the logical input it was planned from.
type SameId = Vec<(LogicalPlan, Arc<SharedPlan>)>;

/// The shared subplans of one physical planning pass, by node id.
#[derive(Debug, Default)]
pub(crate) struct SharedPlans {
    plans: Mutex<HashMap<u64, SameId>>,
}

impl SharedPlans {
    /// The shared plan for this occurrence of `node` (whose logical input is
    /// `logical` and physical input `physical`): the one an equal occurrence made
    /// earlier in this pass, or a new one.
    pub(crate) fn reader(
        &self,
        node: &SharedNode,
        logical: &LogicalPlan,
        physical: impl FnOnce() -> Result<Arc<dyn ExecutionPlan>>,
    ) -> Result<SharedExec> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        let same = plans.entry(node.id).or_default();
        if let Some((_, shared)) = same.iter().find(|(l, _)| l == logical) {
            let reader = shared.readers.fetch_add(1, Ordering::Relaxed);
            return Ok(SharedExec { shared: Arc::clone(shared), reader });
        }
        let shared = Arc::new(SharedPlan::new(node.id, physical()?));
        shared.readers.fetch_add(1, Ordering::Relaxed);
        same.push((logical.clone(), Arc::clone(&shared)));
        Ok(SharedExec { shared, reader: 0 })
    }
}

/// One upstream plan and its per-partition spill logs.
pub struct SharedPlan {
    id: u64,
    input: Arc<dyn ExecutionPlan>,
    /// How many [`SharedExec`]s were planned over it (at least the number that
    /// read it: the planner may plan an enclosing subplan more than once and keep
    /// one copy).
    readers: AtomicUsize,
    partitions: Vec<OnceLock<Arc<FrameLog>>>,
    producers: Mutex<Vec<SpawnedTask<()>>>,
}

impl fmt::Debug for SharedPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPlan").field("id", &self.id).field("readers", &self.readers).finish()
    }
}

impl SharedPlan {
    fn new(id: u64, input: Arc<dyn ExecutionPlan>) -> Self {
        let n = input.properties().partitioning.partition_count();
        Self {
            id,
            input,
            readers: AtomicUsize::new(0),
            partitions: (0..n).map(|_| OnceLock::new()).collect(),
            producers: Mutex::new(Vec::new()),
        }
    }

    /// The upstream plan every reader shares.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// The log of `partition`, its producer started on first use.
    fn log(&self, partition: usize, ctx: &Arc<TaskContext>) -> Result<Arc<FrameLog>> {
        let slot = self
            .partitions
            .get(partition)
            .ok_or_else(|| DataFusionError::Internal(format!("SharedExec: no partition {partition}")))?;
        if let Some(log) = slot.get() {
            return Ok(Arc::clone(log));
        }
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = slot.get() {
            return Ok(Arc::clone(log));
        }
        let log = Arc::new(FrameLog::new(ctx)?);
        let stream = self.input.execute(partition, Arc::clone(ctx))?;
        producers.push(SpawnedTask::spawn(produce(stream, Arc::clone(&log))));
        let _ = slot.set(Arc::clone(&log));
        Ok(log)
    }
}

impl Drop for SharedPlan {
    fn drop(&mut self) {
        // Producers are aborted with their handles; readers still waiting learn it.
        for log in self.partitions.iter().filter_map(|p| p.get()) {
            log.finish(Err("the plan was dropped".into()));
        }
    }
}

/// One partition's batches, as frames appended to a spill file.
struct FrameLog {
    /// The spill file (removed when the log is dropped).
    file: SpillPath,
    reader: std::fs::File,
    frames: Mutex<Vec<(u64, usize)>>,
    /// Frames written, and whether the producer finished.
    progress: watch::Sender<(usize, bool)>,
    error: Mutex<Option<String>>,
}

/// A spill file of the runtime's disk manager, or of the OS temporary directory
/// where the disk manager's files are not local.
enum SpillPath {
    // The handle keeps the file: it is removed when the last handle drops.
    Managed(#[allow(dead_code)] Arc<dyn datafusion::execution::spill_file::SpillFile>, std::path::PathBuf),
    Temp(tempfile::TempPath),
}

impl SpillPath {
    fn path(&self) -> &std::path::Path {
        match self {
            SpillPath::Managed(_, p) => p,
            SpillPath::Temp(t) => t,
        }
    }
}

impl FrameLog {
    fn new(ctx: &Arc<TaskContext>) -> Result<Self> {
        let spill = ctx.runtime_env().disk_manager.create_tmp_file("dsproc shared subplan")?;
        let file = match spill.path().map(|p| p.to_path_buf()) {
            Some(p) => SpillPath::Managed(spill, p),
            None => SpillPath::Temp(tempfile::NamedTempFile::new()?.into_temp_path()),
        };
        let reader = std::fs::File::open(file.path())?;
        let (progress, _) = watch::channel((0, false));
        Ok(Self { file, reader, frames: Mutex::new(Vec::new()), progress, error: Mutex::new(None) })
    }
    fn finish(&self, result: std::result::Result<(), String>) {
        if let Err(e) = result {
            self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        }
        self.progress.send_modify(|p| p.1 = true);
    }
    fn frame(&self, k: usize) -> Option<(u64, usize)> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner()).get(k).copied()
    }
    fn read(&self, (offset, len): (u64, usize)) -> Result<RecordBatch> {
        let mut bytes = vec![0u8; len];
        self.reader.read_exact_at(&mut bytes, offset)?;
        let mut reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        reader.next().transpose()?.ok_or_else(|| DataFusionError::Internal("SharedExec: an empty frame".into()))
    }
}

/// Drains `stream` into `log`.
async fn produce(mut stream: SendableRecordBatchStream, log: Arc<FrameLog>) {
    use futures::FutureExt;
    let result = std::panic::AssertUnwindSafe(async {
        let mut out = std::fs::OpenOptions::new().append(true).open(log.file.path())?;
        let mut offset = 0u64;
        let mut buf = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            buf.clear();
            {
                let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
                w.write(&batch)?;
                w.finish()?;
            }
            out.write_all(&buf)?;
            let mut frames = log.frames.lock().unwrap_or_else(|e| e.into_inner());
            frames.push((offset, buf.len()));
            let n = frames.len();
            drop(frames);
            offset += buf.len() as u64;
            log.progress.send_modify(|p| p.0 = n);
        }
        out.flush()?;
        Ok::<(), DataFusionError>(())
    })
    .catch_unwind()
    .await;
    log.finish(match result {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("the shared subplan's producer panicked".into()),
    });
}

/// Reads a [`SharedPlan`]'s partitions (see the module docs). A leaf.
#[derive(Debug)]
pub struct SharedExec {
    shared: Arc<SharedPlan>,
    /// 0 for the first reader planned (which shows the shared plan in `explain`).
    reader: usize,
}

impl SharedExec {
    pub fn shared(&self) -> &Arc<SharedPlan> {
        &self.shared
    }
    /// Whether this reader is the first of its plan.
    pub fn is_first(&self) -> bool {
        self.reader == 0
    }
    pub fn id(&self) -> u64 {
        self.shared.id
    }
    pub fn readers(&self) -> usize {
        self.shared.readers.load(Ordering::Relaxed)
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => write!(f, "id={}", self.shared.id),
            _ => write!(f, "SharedExec: id={}, reader {}", self.shared.id, self.reader + 1),
        }
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        self.shared.input.properties()
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return Err(DataFusionError::Internal("SharedExec is a leaf".into()));
        }
        Ok(self)
    }
    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if self.readers() <= 1 {
            return self.shared.input.execute(partition, context);
        }
        let log = self.shared.log(partition, &context)?;
        let schema: SchemaRef = self.shared.input.schema();
        let batches = futures::stream::unfold(Some((log, 0usize)), |state| async move {
            let (log, k) = state?;
            let mut progress = log.progress.subscribe();
            loop {
                if let Some(frame) = log.frame(k) {
                    let l = Arc::clone(&log);
                    let batch = match tokio::task::spawn_blocking(move || l.read(frame)).await {
                        Ok(b) => b,
                        Err(e) => Err(DataFusionError::External(Box::new(e))),
                    };
                    let next = batch.is_ok().then_some((log, k + 1));
                    return Some((batch, next));
                }
                if progress.borrow_and_update().1 && log.frame(k).is_none() {
                    let error = log.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    return error.map(|e| (Err(DataFusionError::Execution(e)), None));
                }
                if progress.changed().await.is_err() {
                    return None;
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// The shared plans under `plan`, each once: (id, readers in `plan`, upstream plan).
pub fn shared_subplans(plan: &Arc<dyn ExecutionPlan>) -> Vec<(u64, usize, Arc<dyn ExecutionPlan>)> {
    fn walk(p: &Arc<dyn ExecutionPlan>, out: &mut Vec<(u64, usize, Arc<dyn ExecutionPlan>)>) {
        if let Some(s) = p.downcast_ref::<SharedExec>() {
            match out.iter_mut().find(|(id, _, _)| *id == s.id()) {
                Some(seen) => seen.1 += 1,
                None => {
                    out.push((s.id(), 1, Arc::clone(s.shared.input())));
                    walk(s.shared.input(), out);
                }
            }
        }
        for c in p.children() {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    walk(plan, &mut out);
    out
}

/// `plan` as indented text, each shared subplan printed once after it.
pub fn display_with_shared(plan: &Arc<dyn ExecutionPlan>) -> String {
    let mut s = displayable(plan.as_ref()).indent(true).to_string();
    for (id, readers, input) in shared_subplans(plan) {
        s.push_str(&format!("\n-- shared subplan id={id}, read by {readers} (executed once) --\n"));
        s.push_str(&displayable(input.as_ref()).indent(true).to_string());
    }
    s
}
