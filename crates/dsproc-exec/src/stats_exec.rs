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
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};

use dsproc_io::Location;

use crate::nodes::KeysOf;
use crate::StepStats;

#[derive(Debug)]
pub struct StepStatsExec {
    pub input: Arc<dyn ExecutionPlan>,
    pub step: usize,
    pub op: String,
    pub staging: Location,
    /// Struct column whose UInt32 fields are summed; such a node writes `sums-*`
    /// files instead of the step's row count.
    pub sums_of: Option<String>,
    /// `List<UInt64>` column whose values are written to `keys_of.dir/*.parquet`.
    pub keys_of: Option<KeysOf>,
}

impl StepStatsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, step: usize, op: String, staging: Location) -> Self {
        Self { input, step, op, staging, sums_of: None, keys_of: None }
    }

    pub fn with_keys(mut self, keys_of: Option<KeysOf>) -> Self {
        self.keys_of = keys_of;
        self
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
                .with_sums(self.sums_of.clone())
                .with_keys(self.keys_of.clone()),
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
            op: self.op.clone(),
            partition,
            by_content,
            sums_of: self.sums_of.clone(),
            sums: std::collections::BTreeMap::new(),
            keys_of: self.keys_of.as_ref().map(|k| k.column.clone()),
            state: self.keys_of.as_ref().is_some_and(|k| k.state),
            keys: None,
            index_dir: self.keys_of.as_ref().map(|k| k.dir.clone()),
            dir: self.staging.join("_stats"),
            live: crate::RunLiveness::start(&self.staging),
            finishing: None,
            done: false,
        }))
    }
}

struct CountingStream {
    input: SendableRecordBatchStream,
    rows: u64,
    digest: u64,
    step: usize,
    op: String,
    partition: usize,
    by_content: bool,
    sums_of: Option<String>,
    sums: std::collections::BTreeMap<String, u64>,
    keys_of: Option<String>,
    /// `keys_of` is a struct column of incremental state.
    state: bool,
    /// The open key file (a temporary file on this process's disk) and its writer.
    keys: Option<(PathBuf, KeyWriter)>,
    /// Where the finished key file is uploaded.
    index_dir: Option<Location>,
    dir: Location,
    /// Stops the writes once the run is gone.
    live: crate::RunLiveness,
    /// Writing the statistics file after the last batch.
    finishing: Option<BoxFuture<'static, Result<()>>>,
    done: bool,
}

impl CountingStream {
    fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.sums_of.is_none() {
            self.check_text(batch)?;
        }
        self.rows += batch.num_rows() as u64;
        if let Some(name) = &self.sums_of {
            let i = batch.schema().index_of(name)?;
            add_sums(batch.column(i).as_ref(), &mut self.sums);
        }
        if let Some(name) = self.keys_of.clone() {
            self.write_keys(batch, &name)?;
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

    /// A row leaving a step with a null `text` fails the job: it would be committed
    /// as a document without text. The message names the step and the first such
    /// row's id.
    fn check_text(&self, batch: &RecordBatch) -> Result<()> {
        let Some(text) = batch.column_by_name("text") else { return Ok(()) };
        let nulls = text.null_count();
        if nulls == 0 {
            return Ok(());
        }
        let Some(first) = (0..text.len()).find(|&i| text.is_null(i)) else { return Ok(()) };
        let id = batch
            .column_by_name("id")
            .and_then(|ids| cast(ids, &DataType::Utf8).ok())
            .and_then(|ids| {
                let ids = ids.as_any().downcast_ref::<StringArray>()?;
                (!ids.is_null(first)).then(|| format!("{:?}", ids.value(first)))
            })
            .unwrap_or_else(|| "(null)".to_string());
        let more = if nulls > 1 { format!(" ({} rows of this batch)", nulls) } else { String::new() };
        datafusion::common::exec_err!(
            "step {} ({}): row id {id} has a null text{more}; a step must leave every row a string text: filter such rows out (WHERE text IS NOT NULL) or replace the null (COALESCE)",
            self.step,
            self.op
        )
    }

    /// Writes the partition's count. On a cluster the name is derived from the rows
    /// counted (ids digest and count), so a retried attempt — however Ballista
    /// slices the stage into tasks — writes the
    /// same file; two partitions holding exactly the same multiset of ids would
    /// collide, which the driver's row accounting then reports as a failed job.
    fn write_keys(&mut self, batch: &RecordBatch, name: &str) -> Result<()> {
        use datafusion::arrow::array::{ListArray, StructArray, UInt64Array};
        let i = batch.schema().index_of(name)?;
        if self.state {
            let Some(st) = batch.column(i).as_any().downcast_ref::<StructArray>() else {
                return internal_err!("StepStatsExec: {name} is not a struct");
            };
            let part = RecordBatch::from(st.clone());
            if self.keys.is_none() {
                let tmp = std::env::temp_dir().join(format!("dsproc-state-{}.parquet", crate::unique_suffix()));
                let w = KeyWriter::create_with(&tmp, part.schema())?;
                self.keys = Some((tmp, w));
            }
            let (_, w) = self.keys.as_mut().expect("opened above");
            return w.write_batch(&part);
        }
        let Some(list) = batch.column(i).as_any().downcast_ref::<ListArray>() else {
            return internal_err!("StepStatsExec: {name} is not a List<UInt64>");
        };
        let values = list.values().as_any().downcast_ref::<UInt64Array>().cloned();
        let Some(values) = values else { return internal_err!("StepStatsExec: {name} is not a List<UInt64>") };
        // only the values the list rows reference (a sliced batch shares its parent's)
        let offsets = list.value_offsets();
        let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
        let values = values.slice(start, end - start);
        if self.keys.is_none() {
            let tmp = std::env::temp_dir().join(format!("dsproc-keys-{}.parquet", crate::unique_suffix()));
            let w = KeyWriter::create(&tmp)?;
            self.keys = Some((tmp, w));
        }
        let (_, w) = self.keys.as_mut().expect("opened above");
        w.write(values)
    }

    /// Closes the key file, or returns the write of the statistics file.
    fn finish(&mut self) -> Result<Option<BoxFuture<'static, Result<()>>>> {
        if self.rows == 0 {
            return Ok(None);
        }
        if self.keys_of.is_some() {
            // named like the stats files: a retried attempt replaces its own file
            let Some((tmp, w)) = self.keys.take() else { return Ok(None) };
            w.close()?;
            let kind = if self.state { "state" } else { "keys" };
            let name = if self.by_content {
                format!("{kind}-{:03}-{:016x}-{}.parquet", self.step, self.digest, self.rows)
            } else {
                format!("{kind}-{:03}-p{:05}.parquet", self.step, self.partition)
            };
            let Some(dir) = self.index_dir.clone() else {
                return internal_err!("StepStatsExec: keys without a directory");
            };
            let to = dir.join(&name);
            let live = self.live.clone();
            return Ok(Some(
                async move {
                    if let Err(e) = live.check().await {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(crate::external(e));
                    }
                    let r = to.put_file(&tmp).await;
                    let _ = std::fs::remove_file(&tmp);
                    r.map_err(|e| DataFusionError::External(Box::new(e)))
                }
                .boxed(),
            ));
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
        let p = self.dir.join(&name);
        let body = serde_json::to_vec(&stats).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let live = self.live.clone();
        Ok(Some(
            async move {
                live.check().await.map_err(crate::external)?;
                p.put(body).await.map_err(|e| DataFusionError::External(Box::new(e)))
            }
            .boxed(),
        ))
    }
}

/// A Parquet file with one `UInt64` column `k` (band keys of a saved index), or
/// the columns of a step's incremental state.
struct KeyWriter {
    writer: datafusion::parquet::arrow::ArrowWriter<std::fs::File>,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

impl KeyWriter {
    fn create(path: &std::path::Path) -> Result<Self> {
        use datafusion::arrow::datatypes::{Field, Schema};
        Self::create_with(path, Arc::new(Schema::new(vec![Field::new("k", DataType::UInt64, false)])))
    }
    fn create_with(path: &std::path::Path, schema: datafusion::arrow::datatypes::SchemaRef) -> Result<Self> {
        let err = |e: &dyn std::fmt::Display| DataFusionError::Execution(format!("writing {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let file = std::fs::File::create(path).map_err(|e| err(&e))?;
        use datafusion::parquet::basic::{Compression, Encoding};
        use datafusion::parquet::schema::types::ColumnPath;
        let mut props = datafusion::parquet::file::properties::WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()));
        // dedup_minhash's sorted shingle sets: delta-packed (~3 bytes a value
        // instead of 4; random hashes do not compress otherwise)
        if schema.column_with_name("s").is_some() {
            let leaf = ColumnPath::from(vec!["s".to_string(), "list".to_string(), "item".to_string()]);
            props = props
                .set_column_dictionary_enabled(leaf.clone(), false)
                .set_column_encoding(leaf, Encoding::DELTA_BINARY_PACKED);
        }
        let props = props.build();
        let writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
            .map_err(|e| err(&e))?;
        Ok(Self { writer, schema })
    }
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| DataFusionError::Execution(format!("writing incremental state: {e}")))
    }
    fn write(&mut self, values: datafusion::arrow::array::UInt64Array) -> Result<()> {
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![Arc::new(values)])?;
        self.writer.write(&batch).map_err(|e| DataFusionError::Execution(format!("writing index keys: {e}")))
    }
    fn close(self) -> Result<()> {
        self.writer.close().map(|_| ()).map_err(|e| DataFusionError::Execution(format!("writing index keys: {e}")))
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
        if let Some(f) = self.finishing.as_mut() {
            let r = futures::ready!(f.as_mut().poll(cx));
            self.finishing = None;
            self.done = true;
            return Poll::Ready(r.err().map(Err));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.input.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => match self.observe(&batch) {
                Ok(()) => Poll::Ready(Some(Ok(batch))),
                Err(e) => Poll::Ready(Some(Err(e))),
            },
            Poll::Ready(None) => match self.finish() {
                Ok(Some(f)) => {
                    self.finishing = Some(f);
                    self.poll_next(cx)
                }
                Ok(None) => {
                    self.done = true;
                    Poll::Ready(None)
                }
                Err(e) => {
                    self.done = true;
                    Poll::Ready(Some(Err(e)))
                }
            },
            other => other,
        }
    }
}

impl RecordBatchStream for CountingStream {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.input.schema()
    }
}
