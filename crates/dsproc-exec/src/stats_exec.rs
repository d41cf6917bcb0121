//! [`StepStatsExec`]: counts the rows leaving a step, per partition.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

use crate::{write_atomic, StepStats};

#[derive(Debug)]
pub struct StepStatsExec {
    pub input: Arc<dyn ExecutionPlan>,
    pub step: usize,
    pub op: String,
    pub staging: String,
    /// Struct column whose UInt32 fields are summed; such a node writes `sums-*`
    /// files instead of the step's row count.
    pub sums_of: Option<String>,
}

impl StepStatsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, step: usize, op: String, staging: String) -> Self {
        Self { input, step, op, staging, sums_of: None }
    }

    pub fn with_sums(mut self, sums_of: Option<String>) -> Self {
        self.sums_of = sums_of;
        self
    }
}

impl DisplayAs for StepStatsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StepStatsExec: step={} op={}", self.step, self.op)
    }
}

impl ExecutionPlan for StepStatsExec {
    fn name(&self) -> &str {
        "StepStatsExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
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
            return internal_err!("StepStatsExec takes one child");
        }
        Ok(Arc::new(
            Self::new(children.swap_remove(0), self.step, self.op.clone(), self.staging.clone())
                .with_sums(self.sums_of.clone()),
        ))
    }
    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        // Locally partitions are global and never retried: name the file by partition.
        // On Ballista a task sees task-local partition numbers and may be retried:
        // name it by what it counted, so a retry overwrites its earlier file.
        let by_content = context.task_id().is_some();
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(CountingStream {
            input,
            rows: 0,
            digest: 0,
            step: self.step,
            partition,
            by_content,
            sums_of: self.sums_of.clone(),
            sums: std::collections::BTreeMap::new(),
            dir: PathBuf::from(&self.staging).join("_stats"),
            done: false,
        }))
    }
}

struct CountingStream {
    input: SendableRecordBatchStream,
    rows: u64,
    digest: u64,
    step: usize,
    partition: usize,
    by_content: bool,
    sums_of: Option<String>,
    sums: std::collections::BTreeMap<String, u64>,
    dir: PathBuf,
    done: bool,
}

impl CountingStream {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        if let Some(name) = &self.sums_of {
            let i = batch.schema().index_of(name)?;
            add_sums(batch.column(i).as_ref(), &mut self.sums);
        }
        // the ids, or (for side tables such as dedup edges) the first string column
        let schema = batch.schema();
        let Some(i) = schema.index_of("id").ok().or_else(|| {
            schema
                .fields()
                .iter()
                .position(|f| matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8))
        }) else {
            return Ok(());
        };
        let ids = cast(batch.column(i), &DataType::Utf8)?;
        let ids = ids.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        for id in ids.iter().flatten() {
            self.digest = dsproc_common::hash::id_digest_add(self.digest, id.as_bytes());
        }
        Ok(())
    }

    /// Writes the partition's count. On a cluster the name is derived from the rows
    /// counted (ids digest and count), so a retried attempt — however Ballista
    /// slices the stage into tasks — writes the
    /// same file; two partitions holding exactly the same multiset of ids would
    /// collide, which the driver's row accounting then reports as a failed job.
    fn finish(&self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let stats = StepStats { step: self.step, rows: self.rows, sums: self.sums.clone() };
        let prefix = match &self.sums_of {
            Some(col) => format!("sums-{}", col.trim_start_matches('_')),
            None => "step".to_string(),
        };
        let name = if self.by_content {
            format!("{prefix}-{:03}-{:016x}-{}.json", self.step, self.digest, self.rows)
        } else {
            format!("{prefix}-{:03}-p{:05}.json", self.step, self.partition)
        };
        let p = self.dir.join(name);
        let body = serde_json::to_vec(&stats).map_err(|e| DataFusionError::External(Box::new(e)))?;
        write_atomic(&p, &body).map_err(|e| DataFusionError::Execution(format!("writing {}: {e}", p.display())))
    }
}

/// Adds the UInt32 leaves of a struct column (recursing into nested structs) to `sums`.
fn add_sums(array: &dyn Array, sums: &mut std::collections::BTreeMap<String, u64>) {
    use datafusion::arrow::array::{StructArray, UInt32Array};
    let Some(st) = array.as_any().downcast_ref::<StructArray>() else { return };
    for (field, col) in st.fields().iter().zip(st.columns()) {
        if let Some(v) = col.as_any().downcast_ref::<UInt32Array>() {
            *sums.entry(field.name().clone()).or_default() += v.iter().flatten().map(u64::from).sum::<u64>();
        } else {
            add_sums(col.as_ref(), sums);
        }
    }
}

impl Stream for CountingStream {
    type Item = Result<RecordBatch>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.input.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => match self.observe(&batch) {
                Ok(()) => Poll::Ready(Some(Ok(batch))),
                Err(e) => Poll::Ready(Some(Err(e))),
            },
            Poll::Ready(None) => {
                self.done = true;
                match self.finish() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            other => other,
        }
    }
}

impl RecordBatchStream for CountingStream {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.input.schema()
    }
}
