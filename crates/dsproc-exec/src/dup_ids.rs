//! Duplicate ids of a named `input.id` column: [`DuplicateIdsNode`] and
//! [`DuplicateIdsExec`], in two phases around a window the job lowers between them:
//!
//! ```text
//! ReadInput → DuplicateIds(tag) → Window(count, row_number OVER (PARTITION BY id
//!             ORDER BY input position)) → DuplicateIds(check) → step 1 …
//! ```
//!
//! `tag` appends each row's input position (`__dsproc_pos_part`: the file index and
//! byte offset of the first range its partition reads; `__dsproc_pos_row`: its
//! ordinal in the partition); partitions read contiguous runs of ranges in file
//! order, so the pair orders rows as the input does, locally and on Ballista
//! (where partition numbers are local to a task). `check` reads the window's
//! count and row number: it fails at the first duplicate (`error`), or counts
//! them and records the smallest ids as examples in `_stats/dups-*.json`, and
//! with `first` drops every occurrence after the first. It removes the helper
//! columns.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, internal_err, DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use dsproc_io::Location;

/// Input position: file index (high 24 bits) and byte offset (low 40 bits) of the
/// first range the row's partition reads.
pub const POS_PART: &str = "__dsproc_pos_part";
/// Input position: the row's ordinal in its partition.
pub const POS_ROW: &str = "__dsproc_pos_row";
/// Rows sharing the row's id (the window's count).
pub const DUP_COUNT: &str = "__dsproc_dup_n";
/// The row's rank among the rows sharing its id, in input order (the window's row_number).
pub const DUP_RANK: &str = "__dsproc_dup_rn";
/// How many example ids a report keeps.
pub const MAX_EXAMPLES: usize = 5;

/// What to do with rows whose id another row has (`input.on_duplicate_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub enum DuplicateIdMode {
    /// Fail the job at the first duplicate.
    Error,
    /// Keep every row; only report.
    Keep,
    /// Keep the first occurrence in input order; drop (and count) the others.
    First,
}

/// Which half of the check a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub enum DuplicateIdsPhase {
    /// Append the input position columns.
    Tag,
    /// Read the window's count and rank: fail, count, drop; remove the helper columns.
    Check,
}

/// Duplicate ids found by one partition (`_stats/dups-*.json`), or by the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateIdStats {
    /// Distinct ids that more than one row has.
    pub ids: u64,
    /// Rows beyond the first of each such id.
    pub rows: u64,
    /// The smallest such ids with how many rows have each (at most [`MAX_EXAMPLES`]).
    pub examples: BTreeMap<String, u64>,
}

impl DuplicateIdStats {
    /// Adds another partition's counts (examples: the smallest ids of both).
    pub fn merge(&mut self, other: &Self) {
        self.ids += other.ids;
        self.rows += other.rows;
        for (k, v) in &other.examples {
            self.add_example(k, *v);
        }
    }

    fn add_example(&mut self, id: &str, n: u64) {
        if self.examples.len() >= MAX_EXAMPLES
            && self.examples.keys().next_back().is_some_and(|last| id >= last.as_str())
        {
            return;
        }
        self.examples.insert(id.to_string(), n);
        while self.examples.len() > MAX_EXAMPLES {
            self.examples.pop_last();
        }
    }
}

/// The logical node of one phase.
#[derive(Debug, Clone)]
pub struct DuplicateIdsNode {
    pub input: LogicalPlan,
    pub mode: DuplicateIdMode,
    pub phase: DuplicateIdsPhase,
    /// Staging prefix of the run: the check's statistics go below it.
    pub staging: Location,
    schema: DFSchemaRef,
}

impl DuplicateIdsNode {
    pub fn try_new(
        input: LogicalPlan,
        mode: DuplicateIdMode,
        phase: DuplicateIdsPhase,
        staging: Location,
    ) -> Result<Self> {
        let arrow = output_schema(input.schema().as_arrow(), phase);
        let schema = Arc::new(DFSchema::try_from(arrow.as_ref().clone())?);
        Ok(Self { input, mode, phase, staging, schema })
    }
}

/// The schema a phase outputs for `input`.
pub fn output_schema(input: &Schema, phase: DuplicateIdsPhase) -> SchemaRef {
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .filter(|f| {
            phase == DuplicateIdsPhase::Tag || ![POS_PART, POS_ROW, DUP_COUNT, DUP_RANK].contains(&f.name().as_str())
        })
        .map(|f| f.as_ref().clone())
        .collect();
    if phase == DuplicateIdsPhase::Tag {
        fields.push(Field::new(POS_PART, DataType::UInt64, false));
        fields.push(Field::new(POS_ROW, DataType::UInt64, false));
    }
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

impl PartialEq for DuplicateIdsNode {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode
            && self.phase == other.phase
            && self.staging == other.staging
            && self.input == other.input
    }
}
impl Eq for DuplicateIdsNode {}
impl Hash for DuplicateIdsNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.mode, self.phase, self.staging.canonical()).hash(state);
    }
}
impl PartialOrd for DuplicateIdsNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.mode, self.phase).partial_cmp(&(other.mode, other.phase))
    }
}

impl UserDefinedLogicalNodeCore for DuplicateIdsNode {
    fn name(&self) -> &str {
        "DuplicateIds"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    /// Nothing moves across the check: it defines which rows the steps see.
    fn prevent_predicate_push_down_columns(&self) -> std::collections::HashSet<String> {
        self.input.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DuplicateIds: phase={:?} on_duplicate_id={:?}", self.phase, self.mode)
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Self::try_new(inputs.swap_remove(0), self.mode, self.phase, self.staging.clone())
    }
}

/// The physical node of one phase.
#[derive(Debug)]
pub struct DuplicateIdsExec {
    pub input: Arc<dyn ExecutionPlan>,
    pub mode: DuplicateIdMode,
    pub phase: DuplicateIdsPhase,
    pub staging: Location,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl DuplicateIdsExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        mode: DuplicateIdMode,
        phase: DuplicateIdsPhase,
        staging: Location,
    ) -> Self {
        let schema = output_schema(input.schema().as_ref(), phase);
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.properties().output_partitioning().clone(),
            input.properties().emission_type,
            input.properties().boundedness,
        ));
        Self { input, mode, phase, staging, schema, props }
    }
}

impl DisplayAs for DuplicateIdsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DuplicateIdsExec: phase={:?} on_duplicate_id={:?}", self.phase, self.mode)
    }
}

/// The (file, start) of the first range partition `partition` of the reader
/// below `plan` reads, packed as [`POS_PART`]; None when the partition reads nothing.
async fn first_range(plan: &Arc<dyn ExecutionPlan>, partition: usize, ctx: Arc<TaskContext>) -> Result<Option<u64>> {
    let mut node = Arc::clone(plan);
    while node.as_ref().downcast_ref::<crate::ReadInputExec>().is_none() {
        let children = node.children();
        let [only] = children.as_slice() else {
            return internal_err!("DuplicateIdsExec(tag) must sit above the input reader");
        };
        let next = Arc::clone(only);
        node = next;
    }
    let children = node.children();
    let [descriptors] = children.as_slice() else { return internal_err!("ReadInputExec takes one child") };
    let mut stream = descriptors.execute(partition, ctx)?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let (Some(files), Some(starts)) = (
            batch.column(0).as_any().downcast_ref::<UInt32Array>(),
            batch.column(1).as_any().downcast_ref::<UInt64Array>(),
        ) else {
            return internal_err!("bad range descriptors");
        };
        return Ok(Some((u64::from(files.value(0)) << 40) | starts.value(0).min((1 << 40) - 1)));
    }
    Ok(None)
}

impl ExecutionPlan for DuplicateIdsExec {
    fn name(&self) -> &str {
        "DuplicateIdsExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    /// Its properties declare no ordering (the window's sort by id is not
    /// promised downstream), so it must not claim to keep one: a later join then
    /// sorts for itself.
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
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
            return internal_err!("DuplicateIdsExec takes one child");
        }
        Ok(Arc::new(Self::new(children.swap_remove(0), self.mode, self.phase, self.staging.clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.schema);
        match self.phase {
            DuplicateIdsPhase::Tag => {
                let input = Arc::clone(&self.input);
                let out_schema = Arc::clone(&schema);
                let stream = futures::stream::once(async move {
                    let part = first_range(&input, partition, Arc::clone(&context)).await?.unwrap_or(u64::MAX);
                    let batches = input.execute(partition, context)?;
                    let mut next_row = 0u64;
                    Ok::<_, DataFusionError>(batches.map(move |b| {
                        let b = b?;
                        let n = b.num_rows() as u64;
                        let rows: ArrayRef = Arc::new(UInt64Array::from_iter_values(next_row..next_row + n));
                        next_row += n;
                        let parts: ArrayRef = Arc::new(UInt64Array::from_value(part, n as usize));
                        let mut columns = b.columns().to_vec();
                        columns.push(parts);
                        columns.push(rows);
                        Ok(RecordBatch::try_new(Arc::clone(&out_schema), columns)?)
                    }))
                })
                .map(|r| match r {
                    Ok(s) => s.boxed(),
                    Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                })
                .flatten();
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
            }
            DuplicateIdsPhase::Check => {
                let input = self.input.execute(partition, context)?;
                let mode = self.mode;
                let dir = self.staging.join("_stats");
                let live = crate::RunLiveness::start(&self.staging);
                let state = Arc::new(std::sync::Mutex::new(DuplicateIdStats::default()));
                let st = Arc::clone(&state);
                let out_schema = Arc::clone(&schema);
                let checked = input.map(move |b| check_batch(&b?, mode, &out_schema, &st));
                // After the last batch: the partition's report (none without duplicates).
                let report = futures::stream::once(async move {
                    let stats = state.lock().map(|s| s.clone()).unwrap_or_default();
                    if stats.ids == 0 && stats.rows == 0 {
                        return None;
                    }
                    let body = match serde_json::to_vec(&stats) {
                        Ok(b) => b,
                        Err(e) => return Some(Err(DataFusionError::External(Box::new(e)))),
                    };
                    // Named by content: a retried attempt writes the same file; ids live
                    // in one hash partition, so two partitions never share a report.
                    let name = format!("dups-{:016x}.json", xxhash_rust::xxh3::xxh3_64(&body));
                    if let Err(e) = live.check().await {
                        return Some(Err(crate::external(e)));
                    }
                    dir.join(&name).put(body).await.err().map(|e| Err(crate::external(e)))
                })
                .filter_map(|r| async move { r });
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked.chain(report))))
            }
        }
    }
}

/// One batch of the check: counts duplicates, fails (`error`) or drops later
/// occurrences (`first`), removes the helper columns.
fn check_batch(
    b: &RecordBatch,
    mode: DuplicateIdMode,
    out_schema: &SchemaRef,
    stats: &std::sync::Mutex<DuplicateIdStats>,
) -> Result<RecordBatch> {
    let s = b.schema();
    let (Ok(ni), Ok(ri), Ok(ii)) = (s.index_of(DUP_COUNT), s.index_of(DUP_RANK), s.index_of("id")) else {
        return internal_err!("DuplicateIdsExec(check) needs id, {DUP_COUNT} and {DUP_RANK}");
    };
    let counts = cast(b.column(ni), &DataType::Int64)?;
    let ranks = cast(b.column(ri), &DataType::UInt64)?;
    let ids = cast(b.column(ii), &DataType::Utf8)?;
    let (Some(counts), Some(ranks), Some(ids)) = (
        counts.as_any().downcast_ref::<Int64Array>(),
        ranks.as_any().downcast_ref::<UInt64Array>(),
        ids.as_any().downcast_ref::<StringArray>(),
    ) else {
        return internal_err!("DuplicateIdsExec(check): unexpected column types");
    };
    let mut keep = Vec::with_capacity(b.num_rows());
    {
        let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..b.num_rows() {
            let n = counts.value(i).max(0) as u64;
            let rank = ranks.value(i);
            if n > 1 {
                let id = ids.value(i);
                if mode == DuplicateIdMode::Error {
                    return exec_err!(
                        "input.id: duplicate id {id:?} ({n} rows have it; dedup and shard assignment need unique ids): fix the input, or set input.on_duplicate_id = \"first\" (keep the first occurrence, drop the others) or \"keep\""
                    );
                }
                if rank == 1 {
                    st.ids += 1;
                    st.add_example(id, n);
                } else {
                    st.rows += 1;
                }
            }
            keep.push(mode != DuplicateIdMode::First || rank <= 1);
        }
    }
    let kept = if keep.iter().all(|k| *k) { b.clone() } else { filter_record_batch(b, &BooleanArray::from(keep))? };
    let columns: Vec<ArrayRef> = out_schema
        .fields()
        .iter()
        .map(|f| kept.column_by_name(f.name()).cloned())
        .collect::<Option<_>>()
        .ok_or_else(|| DataFusionError::Internal("DuplicateIdsExec(check): missing column".into()))?;
    Ok(RecordBatch::try_new(Arc::clone(out_schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_keep_the_smallest_ids() {
        let mut a = DuplicateIdStats::default();
        for (i, id) in ["m", "c", "z", "a", "q", "b", "x"].iter().enumerate() {
            a.add_example(id, i as u64 + 2);
        }
        assert_eq!(a.examples.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "c", "m", "q"]);
        let mut b = DuplicateIdStats { ids: 1, rows: 2, examples: [("aa".to_string(), 3)].into() };
        b.merge(&a);
        assert_eq!(b.examples.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "aa", "b", "c", "m"]);
    }
}
