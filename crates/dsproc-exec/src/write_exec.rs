//! [`WriteShardsExec`]: one shard writer per partition.
//!
//! Input rows arrive hash-partitioned on their shard bucket and sorted by
//! (bucket, id), so every bucket is written by exactly one partition, in id
//! order, in fixed-size slices: the bytes do not depend on thread count,
//! partition count or scheduling. Files go straight to their version's prefix,
//! `OUTPUT/vNNNNN/part-BBBBB[-S].ext` (each written under a temporary name and
//! made visible whole: a rename locally, the completing PUT on object stores), so
//! a commit never moves a shard. A retried attempt rewrites the same bytes under
//! the same name; the driver keeps exactly one reported attempt per shard and
//! checks every listed shard's size before it commits.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{
    Distribution, EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalExpr, PhysicalSortRequirement,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;

use dsproc_common::config::{ORDER_COLUMN, SHARD_COLUMN, WRITE_SLICE_ROWS};
use dsproc_io::shards::ShardFileWriter;
use dsproc_io::{Error as IoError, Location};

use crate::external;

use crate::nodes::{sink_result_schema, WriteParams};
use crate::unique_suffix;

#[derive(Debug)]
pub struct WriteShardsExec {
    pub input: Arc<dyn ExecutionPlan>,
    pub params: WriteParams,
    props: Arc<PlanProperties>,
}

impl WriteShardsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, params: WriteParams) -> Self {
        let n = input.properties().output_partitioning().partition_count();
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(sink_result_schema()),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { input, params, props }
    }

    /// (bucket, id) ascending; (bucket, order key, id) under a shuffle.
    pub fn sort_requirement(schema: &SchemaRef) -> Result<LexRequirement> {
        let mut keys = vec![SHARD_COLUMN];
        if schema.index_of(ORDER_COLUMN).is_ok() {
            keys.push(ORDER_COLUMN);
        }
        keys.push("id");
        let reqs = keys
            .into_iter()
            .map(|k| Ok(PhysicalSortRequirement::new(col(k, schema)?, Some(Default::default()))))
            .collect::<Result<Vec<_>>>()?;
        LexRequirement::new(reqs).ok_or_else(|| DataFusionError::Internal("empty sort requirement".into()))
    }
}

impl DisplayAs for WriteShardsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WriteShardsExec: format={:?}, buckets={}, shard_size={}",
            self.params.format, self.params.buckets, self.params.shard_size
        )
    }
}

impl ExecutionPlan for WriteShardsExec {
    fn name(&self) -> &str {
        "WriteShardsExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn required_input_distribution(&self) -> Vec<Distribution> {
        match col(SHARD_COLUMN, &self.input.schema()) {
            Ok(c) => vec![Distribution::KeyPartitioned(vec![c])],
            Err(_) => vec![Distribution::UnspecifiedDistribution],
        }
    }
    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        vec![Self::sort_requirement(&self.input.schema()).ok().map(OrderingRequirements::new)]
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![true]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("WriteShardsExec takes one child");
        }
        Ok(Arc::new(Self::new(children.swap_remove(0), self.params.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let params = self.params.clone();
        let in_schema = self.input.schema();
        let shard_idx = in_schema.index_of(SHARD_COLUMN)?;
        let out_cols: Vec<usize> = (0..in_schema.fields().len())
            .filter(|i| ![SHARD_COLUMN, ORDER_COLUMN].contains(&in_schema.field(*i).name().as_str()))
            .collect();
        let file_schema = Arc::new(in_schema.project(&out_cols)?);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let attempt = unique_suffix();
        let handle = tokio::runtime::Handle::current();
        let live = crate::RunLiveness::start(&params.staging);
        let writer = tokio::task::spawn_blocking(move || -> Result<RecordBatch, IoError> {
            let mut w = BucketWriter::new(params, file_schema, attempt, handle, live);
            while let Some(batch) = rx.blocking_recv() {
                let buckets = batch
                    .column(shard_idx)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or_else(|| IoError::Data("shard column is not UInt32".into()))?
                    .clone();
                let rows = batch.project(&out_cols)?;
                let mut start = 0;
                while start < rows.num_rows() {
                    let b = buckets.value(start);
                    let mut end = start + 1;
                    while end < rows.num_rows() && buckets.value(end) == b {
                        end += 1;
                    }
                    w.push(b, rows.slice(start, end - start))?;
                    start = end;
                }
            }
            w.finish()
        });
        let stream = futures::stream::once(async move {
            while let Some(batch) = input.next().await {
                let batch = batch?;
                if batch.num_rows() > 0 && tx.send(batch).await.is_err() {
                    break; // the writer failed: its error is reported below
                }
            }
            drop(tx);
            match writer.await {
                Ok(Ok(b)) => Ok(b),
                Ok(Err(e)) => Err(external(e)),
                Err(e) => Err(DataFusionError::Execution(format!("shard writer task failed: {e}"))),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(sink_result_schema(), stream)))
    }
}

struct Done {
    bucket: u32,
    seq: u32,
    path: String,
    rows: u64,
    bytes: u64,
    sha256: String,
    tokens: Option<u64>,
    sequences: Option<u64>,
    raw_bytes: Option<u64>,
}

/// Writes consecutive buckets, cutting a bucket into several files at `shard_size`.
struct BucketWriter {
    params: WriteParams,
    schema: SchemaRef,
    dir: Location,
    rel_dir: String,
    handle: tokio::runtime::Handle,
    current: Option<(u32, u32, String, ShardFileWriter)>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    done: Vec<Done>,
    attempt: String,
    /// Stops the writer once the run is gone.
    live: crate::RunLiveness,
}

impl BucketWriter {
    fn new(
        params: WriteParams,
        schema: SchemaRef,
        attempt: String,
        handle: tokio::runtime::Handle,
        live: crate::RunLiveness,
    ) -> Self {
        let rel_dir = params.shards_rel.clone();
        let dir = params.shards_dir.clone();
        Self {
            params,
            schema,
            dir,
            rel_dir,
            handle,
            current: None,
            pending: Vec::new(),
            pending_rows: 0,
            done: Vec::new(),
            attempt,
            live,
        }
    }

    fn push(&mut self, bucket: u32, rows: RecordBatch) -> Result<(), IoError> {
        if self.current.as_ref().is_some_and(|c| c.0 != bucket) {
            self.flush_pending(true)?;
            self.close_current()?;
        }
        if self.current.is_none() {
            self.open(bucket, 0)?;
        }
        self.pending_rows += rows.num_rows();
        self.pending.push(rows);
        self.flush_pending(false)
    }

    fn open(&mut self, bucket: u32, seq: u32) -> Result<(), IoError> {
        self.live.check_blocking(&self.handle)?;
        let ext = self.params.shard_opts.extension(self.params.format);
        let name = if seq == 0 { format!("part-{bucket:05}.{ext}") } else { format!("part-{bucket:05}-{seq}.{ext}") };
        let w = ShardFileWriter::create(
            &self.dir.join(&name),
            self.params.format,
            &self.schema,
            self.params.shard_opts,
            &self.handle,
        )?;
        self.current = Some((bucket, seq, format!("{}/{name}", self.rel_dir), w));
        Ok(())
    }

    /// Writes pending rows in slices of exactly `WRITE_SLICE_ROWS` (all of them when
    /// `all`), cutting to a new file when the current one reaches `shard_size`.
    fn flush_pending(&mut self, all: bool) -> Result<(), IoError> {
        if self.pending_rows == 0 || (!all && self.pending_rows < WRITE_SLICE_ROWS) {
            return Ok(());
        }
        let merged = concat_batches(&self.schema, &self.pending)?;
        self.pending.clear();
        self.pending_rows = 0;
        let mut offset = 0;
        while merged.num_rows() - offset >= WRITE_SLICE_ROWS || (all && offset < merged.num_rows()) {
            let len = WRITE_SLICE_ROWS.min(merged.num_rows() - offset);
            let (bucket, seq) = {
                let c = self.current.as_ref().ok_or_else(no_open_shard)?;
                (c.0, c.1)
            };
            if let Some(c) = self.current.as_ref() {
                let full = match self.params.shard_tokens {
                    Some(t) => c.3.tokens() >= t,
                    None => c.3.approx_bytes() >= self.params.shard_size,
                };
                if c.3.rows() > 0 && full {
                    self.close_current()?;
                    self.open(bucket, seq + 1)?;
                }
            }
            let c = self.current.as_mut().ok_or_else(no_open_shard)?;
            c.3.write(&merged.slice(offset, len))?;
            offset += len;
        }
        if offset < merged.num_rows() {
            self.pending_rows = merged.num_rows() - offset;
            self.pending.push(merged.slice(offset, self.pending_rows));
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), IoError> {
        if let Some((bucket, seq, path, w)) = self.current.take() {
            self.live.check_blocking(&self.handle)?;
            let s = w.finish()?;
            if let Some((idx, bytes, sha256)) = s.companion {
                let path = format!("{}/{idx}", self.rel_dir);
                self.done.push(Done {
                    bucket,
                    seq,
                    path,
                    rows: 0,
                    bytes,
                    sha256,
                    tokens: None,
                    sequences: None,
                    raw_bytes: None,
                });
            }
            self.done.push(Done {
                bucket,
                seq,
                path,
                rows: s.rows,
                bytes: s.bytes,
                sha256: s.sha256,
                tokens: s.tokens,
                sequences: s.sequences,
                raw_bytes: s.raw_bytes,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<RecordBatch, IoError> {
        self.flush_pending(true)?;
        self.close_current()?;
        // A marker per finished writer, for progress ("wrote k/P partitions").
        self.live.check_blocking(&self.handle)?;
        let marker = self.params.staging.join(&format!("_stats/write-{}.json", self.attempt));
        let rows: u64 = self.done.iter().map(|d| d.rows).sum();
        dsproc_io::upload::put_blocking(&marker, format!("{{\"rows\":{rows}}}").as_bytes(), &self.handle)?;
        let d = &self.done;
        RecordBatch::try_new(
            sink_result_schema(),
            vec![
                Arc::new(UInt32Array::from_iter_values(d.iter().map(|x| x.bucket))),
                Arc::new(UInt32Array::from_iter_values(d.iter().map(|x| x.seq))),
                Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.path.as_str()))),
                Arc::new(UInt64Array::from_iter_values(d.iter().map(|x| x.rows))),
                Arc::new(UInt64Array::from_iter_values(d.iter().map(|x| x.bytes))),
                Arc::new(StringArray::from_iter_values(d.iter().map(|x| x.sha256.as_str()))),
                Arc::new(UInt64Array::from_iter(d.iter().map(|x| x.tokens))),
                Arc::new(UInt64Array::from_iter(d.iter().map(|x| x.sequences))),
                Arc::new(UInt64Array::from_iter(d.iter().map(|x| x.raw_bytes))),
            ],
        )
        .map_err(IoError::from)
    }
}

fn no_open_shard() -> IoError {
    IoError::Data("no open shard".into())
}
