//! [`ReadInputExec`]: reads file ranges into documents.
//!
//! Its child is a small in-memory table of range descriptors (file, start, end),
//! one group per partition. Ballista slices that table when it splits a stage
//! into tasks, so each task reads exactly its own ranges.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;

use dsproc_io::read::{plan_ranges, RangeReader, ReadSpec};
use dsproc_io::Location;

use dsproc_common::config::{BATCH_TOO_LARGE, MAX_ENGINE_BATCH_BYTES};

use crate::{external, ReadStats};

/// Schema of the range descriptors.
pub fn descriptor_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::UInt32, false),
        Field::new("start", DataType::UInt64, false),
        Field::new("end", DataType::UInt64, false),
    ]))
}

/// The byte ranges the input is read in for `partitions` partitions: plain JSONL
/// files are cut so that there are about as many ranges as partitions (8 MiB to
/// 1 GiB each); other files are one range each.
pub fn input_ranges(spec: &ReadSpec, partitions: usize) -> Vec<(u32, u64, u64)> {
    let total: u64 = spec.files.iter().map(|f| f.size).sum();
    let split = (total / partitions.max(1) as u64).clamp(8 << 20, 1 << 30);
    plan_ranges(spec, split)
}

#[derive(Debug)]
pub struct ReadInputExec {
    pub spec: Arc<ReadSpec>,
    pub input_schema: SchemaRef,
    pub staging: Location,
    output_schema: SchemaRef,
    child: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl ReadInputExec {
    /// Plans the ranges of the input over `partitions` partitions: each partition
    /// gets a contiguous run of ranges, so it numbers lines without re-counting.
    pub fn try_plan(spec: ReadSpec, input_schema: SchemaRef, staging: Location, partitions: usize) -> Result<Self> {
        let ranges = input_ranges(&spec, partitions);
        let partitions = partitions.max(1);
        let groups = ranges.len().clamp(1, partitions);
        let mut batches = Vec::with_capacity(groups);
        for g in 0..groups {
            let lo = g * ranges.len() / groups;
            let hi = (g + 1) * ranges.len() / groups;
            let part = &ranges[lo..hi];
            let batch = RecordBatch::try_new(
                descriptor_schema(),
                vec![
                    Arc::new(UInt32Array::from_iter_values(part.iter().map(|r| r.0))),
                    Arc::new(UInt64Array::from_iter_values(part.iter().map(|r| r.1))),
                    Arc::new(UInt64Array::from_iter_values(part.iter().map(|r| r.2))),
                ],
            )?;
            batches.push(vec![batch]);
        }
        let child = MemorySourceConfig::try_new_exec(&batches, descriptor_schema(), None)?;
        Self::try_new(Arc::new(spec), input_schema, staging, child)
    }

    pub fn try_new(
        spec: Arc<ReadSpec>,
        input_schema: SchemaRef,
        staging: Location,
        child: Arc<dyn ExecutionPlan>,
    ) -> Result<Self> {
        let output_schema = dsproc_io::schema::output_schema(&input_schema, &spec.text, spec.id.as_deref());
        let n = child.properties().output_partitioning().partition_count();
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&output_schema)),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self { spec, input_schema, staging, output_schema, child, props })
    }
}

impl DisplayAs for ReadInputExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ReadInputExec: format={}, files={}", self.spec.format.name(), self.spec.files.len())
    }
}

impl ExecutionPlan for ReadInputExec {
    fn name(&self) -> &str {
        "ReadInputExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.child]
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("ReadInputExec takes one child");
        }
        Ok(Arc::new(Self::try_new(
            Arc::clone(&self.spec),
            Arc::clone(&self.input_schema),
            self.staging.clone(),
            children.swap_remove(0),
        )?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut descriptors = self.child.execute(partition, Arc::clone(&context))?;
        let spec = Arc::clone(&self.spec);
        let input_schema = Arc::clone(&self.input_schema);
        let output_schema = Arc::clone(&self.output_schema);
        let staging = self.staging.clone();
        let guard = Arc::new(std::sync::Mutex::new(BatchGuard::new(context.session_config().batch_size())));
        let live = crate::RunLiveness::start(&staging);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let task = tokio::spawn(async move {
            let store = match Location::root(&spec.store_url, &spec.storage).and_then(|l| l.store()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(DataFusionError::External(Box::new(e)))).await;
                    return;
                }
            };
            let mut carry: Option<(u32, u64, u64)> = None;
            while let Some(batch) = descriptors.next().await {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let col = |i: usize| batch.column(i).as_any();
                let (Some(files), Some(starts), Some(ends)) = (
                    col(0).downcast_ref::<UInt32Array>(),
                    col(1).downcast_ref::<UInt64Array>(),
                    col(2).downcast_ref::<UInt64Array>(),
                ) else {
                    let _ = tx.send(internal_err!("bad range descriptors")).await;
                    return;
                };
                for row in 0..files.len() {
                    let (file_idx, start, end) = (files.value(row), starts.value(row), ends.value(row));
                    if let Err(e) = live.check().await {
                        let _ = tx.send(Err(external(e))).await;
                        return;
                    }
                    let first_line = carry.filter(|c| c.0 == file_idx && c.1 == start).map(|c| c.2);
                    let spec2 = Arc::clone(&spec);
                    let (store2, in_s, out_s) =
                        (Arc::clone(&store), Arc::clone(&input_schema), Arc::clone(&output_schema));
                    let tx2 = tx.clone();
                    let handle = tokio::runtime::Handle::current();
                    let qdir = spec.quarantine_dir.clone().unwrap_or_else(|| staging.join("_quarantine"));
                    let guard = Arc::clone(&guard);
                    let live2 = live.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        let file = &spec2.files[file_idx as usize];
                        // Quarantined rows leave as they accumulate, in parts whose
                        // names depend only on the range (a retried task replaces them).
                        let sink_handle = handle.clone();
                        let sink = move |part: u32, rows: &[dsproc_io::quarantine::QuarantineRecord]| {
                            let mut body = Vec::new();
                            for rec in rows {
                                serde_json::to_writer(&mut body, rec)?;
                                body.push(b'\n');
                            }
                            let name = format!("part-{file_idx:05}-{start:013}-{part:04}.jsonl");
                            live2.check_blocking(&sink_handle)?;
                            sink_handle.block_on(qdir.join(&name).put(body)).map_err(dsproc_io::Error::Store)
                        };
                        let reader = RangeReader {
                            spec: &spec2,
                            store: store2,
                            handle,
                            input_schema: in_s,
                            output_schema: out_s,
                            file,
                            sink: &sink,
                        };
                        reader.read(start..end, first_line, &mut |b| {
                            guard.lock().unwrap_or_else(|e| e.into_inner()).admit(&b)?;
                            tx2.blocking_send(Ok(b)).map_err(|_| dsproc_io::Error::Data("output closed".into()))
                        })
                    })
                    .await;
                    let outcome = match result {
                        Ok(Ok(o)) => o,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(external(e))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(DataFusionError::Execution(format!("reader task failed: {e}")))).await;
                            return;
                        }
                    };
                    carry = Some((file_idx, end, outcome.next_line));
                    if let Err(e) = live.check().await {
                        let _ = tx.send(Err(external(e))).await;
                        return;
                    }
                    if let Err(e) = write_side_outputs(&staging, &spec, file_idx, start, &outcome).await {
                        let _ = tx.send(Err(external(e))).await;
                        return;
                    }
                }
            }
        });
        let guard = AbortOnDrop(task);
        let stream = futures::stream::poll_fn(move |cx| {
            let _ = &guard;
            rx.poll_recv(cx)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.output_schema), stream)))
    }
}

/// Watches the bytes of the last `batch_size` rows a partition read. The engine's
/// operators join batches up to `batch_size` rows whatever their bytes, so rows far
/// larger than the sample that chose `batch_size` (small documents first, large
/// ones later) would build batches of gigabytes downstream. Past
/// [`MAX_ENGINE_BATCH_BYTES`] the read stops with [`BATCH_TOO_LARGE`] and the
/// largest row size seen; the driver reruns the job with batches sized for it.
#[derive(Debug)]
pub struct BatchGuard {
    batch_size: usize,
    /// (rows, bytes) of the latest batches, covering at least `batch_size` rows.
    window: std::collections::VecDeque<(usize, u64)>,
    rows: usize,
    bytes: u64,
    cap: u64,
}

impl BatchGuard {
    /// A guard for `batch_size`-row engine batches. The cap is
    /// [`MAX_ENGINE_BATCH_BYTES`], or `DSPROC_ENGINE_BATCH_BYTES` (bytes) where set:
    /// tests use it to reach the rerun path with small inputs.
    pub fn new(batch_size: usize) -> Self {
        let cap = std::env::var("DSPROC_ENGINE_BATCH_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_ENGINE_BATCH_BYTES);
        Self { batch_size: batch_size.max(1), window: Default::default(), rows: 0, bytes: 0, cap }
    }

    pub fn admit(&mut self, b: &RecordBatch) -> Result<(), dsproc_io::Error> {
        if self.batch_size <= 1 || b.num_rows() == 0 {
            return Ok(());
        }
        let bytes = b.get_array_memory_size() as u64;
        self.window.push_back((b.num_rows(), bytes));
        self.rows += b.num_rows();
        self.bytes += bytes;
        while let Some(&(r, by)) = self.window.front() {
            if self.rows - r < self.batch_size {
                break;
            }
            self.window.pop_front();
            self.rows -= r;
            self.bytes -= by;
        }
        // What `batch_size` rows like these hold (the actual bytes while fewer rows were read).
        let batch = if self.rows >= self.batch_size {
            (self.bytes as u128 * self.batch_size as u128 / self.rows as u128) as u64
        } else {
            self.bytes
        };
        if batch <= self.cap {
            return Ok(());
        }
        let largest = self.window.iter().map(|&(r, by)| by / r.max(1) as u64).max().unwrap_or(bytes);
        Err(dsproc_io::Error::Data(format!(
            "{BATCH_TOO_LARGE}: {largest} bytes a row ({} rows a batch would hold {batch} bytes)",
            self.batch_size
        )))
    }
}

/// The row size in a [`BATCH_TOO_LARGE`] message (as Ballista relays it too).
pub fn batch_too_large_row_bytes(message: &str) -> Option<u64> {
    let rest = &message[message.find(BATCH_TOO_LARGE)? + BATCH_TOO_LARGE.len()..];
    rest.strip_prefix(": ")?.split(' ').next()?.parse().ok()
}

/// Aborts the reading task when the output stream is dropped (query cancelled).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the range's counts (its quarantined rows went out through the sink).
/// The name depends only on the range, so a retried task replaces it.
async fn write_side_outputs(
    staging: &Location,
    spec: &ReadSpec,
    file_idx: u32,
    start: u64,
    outcome: &dsproc_io::read::RangeOutcome,
) -> Result<(), dsproc_io::Error> {
    let name = format!("{file_idx:05}-{start:013}");
    let stats = ReadStats {
        file: spec.files[file_idx as usize].path.clone(),
        start,
        rows: outcome.rows,
        quarantined: outcome.quarantined,
        extra_dropped: outcome.extra_dropped.clone(),
        worker: crate::worker_name(),
    };
    staging
        .join(&format!("_stats/read-{name}.json"))
        .put(serde_json::to_vec(&stats)?)
        .await
        .map_err(dsproc_io::Error::Store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn batch(rows: usize, row_bytes: usize) -> RecordBatch {
        let text: StringArray = (0..rows).map(|_| Some("x".repeat(row_bytes))).collect();
        RecordBatch::try_from_iter([("text", Arc::new(text) as Arc<dyn Array>)]).unwrap()
    }

    #[test]
    fn batch_guard_stops_when_batch_size_rows_would_pass_the_byte_cap() {
        // 256 rows of 1 KiB: fine, for ever
        let mut g = BatchGuard::new(256);
        for _ in 0..100 {
            g.admit(&batch(256, 1024)).unwrap();
        }
        // one 8 MiB document among small ones: fine (256 rows of the mix stay small)
        g.admit(&batch(1, 8 << 20)).unwrap();
        for _ in 0..10 {
            g.admit(&batch(256, 1024)).unwrap();
        }
        // then a run of 4 MiB documents: 256 of them would be 1 GiB
        let err = (0..300).map(|_| g.admit(&batch(1, 4 << 20))).find_map(Result::err).expect("stops");
        let msg = err.to_string();
        let row = batch_too_large_row_bytes(&msg).unwrap_or_else(|| panic!("{msg}"));
        assert!(((4 << 20)..(5 << 20)).contains(&row), "{msg}");
        // relayed inside other text (Ballista's task error)
        assert_eq!(batch_too_large_row_bytes(&format!("Job 1 failed: DataFusionError(\"{msg}\")")), Some(row));
        // one-row batches are never refused (a row is bounded by max_document_bytes)
        let mut one = BatchGuard::new(1);
        one.admit(&batch(1, 600 << 20)).unwrap();
    }
}
