//! Logical plan nodes.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use serde::{Deserialize, Serialize};

use dsproc_io::read::ReadSpec;
use dsproc_io::shards::ShardOptions;
use dsproc_io::{Location, OutputFormat};

/// Reads the job's input files. A leaf.
#[derive(Debug, Clone)]
pub struct ReadInputNode {
    pub spec: ReadSpec,
    /// Schema of the input files (all columns, as stored).
    pub input_schema: SchemaRef,
    /// Staging prefix of the run (any store): quarantine and stats go below it.
    pub staging: Location,
    schema: DFSchemaRef,
    key: String,
}

impl ReadInputNode {
    pub fn try_new(spec: ReadSpec, input_schema: SchemaRef, staging: Location) -> Result<Self> {
        let out = dsproc_io::schema::output_schema(&input_schema, &spec.text, spec.id.as_deref());
        let schema = Arc::new(DFSchema::try_from(out.as_ref().clone())?);
        let key =
            format!("{}|{}|{:?}", serde_json::to_string(&spec).unwrap_or_default(), staging.canonical(), input_schema);
        Ok(Self { spec, input_schema, staging, schema, key })
    }

    pub fn output_schema(&self) -> SchemaRef {
        Arc::new(self.schema.as_arrow().clone())
    }
}

macro_rules! keyed_node_traits {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.key == other.key && self.inputs_eq(other)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.key.hash(state);
            }
        }
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                self.key.partial_cmp(&other.key)
            }
        }
    };
}

keyed_node_traits!(ReadInputNode);
keyed_node_traits!(StepStatsNode);
keyed_node_traits!(WriteShardsNode);

impl ReadInputNode {
    fn inputs_eq(&self, _other: &Self) -> bool {
        true
    }
}

impl UserDefinedLogicalNodeCore for ReadInputNode {
    fn name(&self) -> &str {
        "ReadInput"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ReadInput: format={}, files={}, text={}, id={}, on_error={:?}",
            self.spec.format.name(),
            self.spec.files.len(),
            self.spec.text,
            self.spec.id.as_deref().unwrap_or("<path>:<line>"),
            self.spec.on_error
        )
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Counts the rows leaving step `step` (pass-through).
#[derive(Debug, Clone)]
pub struct StepStatsNode {
    pub input: LogicalPlan,
    pub step: usize,
    pub op: String,
    pub staging: Location,
    /// Also sum the fields of this struct column; such a node only records sums
    /// (its files are `sums-*`), it does not mark the end of the step.
    pub sums_of: Option<String>,
    /// Write the values of a `List<UInt64>` column to Parquet files in a local
    /// directory (dedup_minhash's `save_index`); such a node writes no counts.
    pub keys_of: Option<KeysOf>,
    key: String,
}

/// Where a [`StepStatsNode`] writes a column's values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeysOf {
    /// The `List<UInt64>` column; with `state`, a struct column whose fields are
    /// written as the file's columns.
    pub column: String,
    /// Incremental state (`state-*.parquet` files of the struct's fields) rather
    /// than band keys (`keys-*.parquet`, one column `k`).
    #[serde(default)]
    pub state: bool,
    /// Where the key files go (the version's `_index/step-NNN/`, on the output's
    /// store): each process that computes keys uploads its files there through
    /// object_store, so the driver finds them whatever filesystem it sees.
    pub dir: Location,
}

impl StepStatsNode {
    pub fn new(input: LogicalPlan, step: usize, op: &str, staging: Location) -> Self {
        Self::with_sums(input, step, op, staging, None)
    }

    pub fn with_sums(input: LogicalPlan, step: usize, op: &str, staging: Location, sums_of: Option<String>) -> Self {
        let key = format!("{step}|{op}|{}|{sums_of:?}", staging.canonical());
        Self { input, step, op: op.to_string(), staging, sums_of, keys_of: None, key }
    }

    /// A node that writes the values of the `List<UInt64>` column `keys_of.column`.
    pub fn with_keys(input: LogicalPlan, step: usize, op: &str, staging: Location, keys_of: KeysOf) -> Self {
        let mut n = Self::with_sums(input, step, op, staging, None);
        n.key = format!("{}|keys={}|{}|{}", n.key, keys_of.column, keys_of.dir.canonical(), keys_of.state);
        n.keys_of = Some(keys_of);
        n
    }
    fn inputs_eq(&self, other: &Self) -> bool {
        self.input == other.input
    }
}

impl UserDefinedLogicalNodeCore for StepStatsNode {
    fn name(&self) -> &str {
        "StepStats"
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
    /// Filters must not move across a step boundary: that would change what the
    /// step's counts mean.
    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        self.input.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StepStats: step={} op={}", self.step, self.op)
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(Self { input: inputs.swap_remove(0), ..self.clone() })
    }
}

/// Parameters of the shard sink.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteParams {
    /// Staging prefix of the run (any store): statistics go below it.
    pub staging: Location,
    /// The version's prefix (`OUTPUT/vNNNNN`): shards are written there, under
    /// their final names, and never moved.
    pub shards_dir: Location,
    /// `shards_dir` relative to the dataset root (`vNNNNN`): the sink reports
    /// shard paths relative to the root.
    pub shards_rel: String,
    pub format: OutputFormat,
    /// Target shard size in bytes; a shard bucket larger than this is cut into several files.
    pub shard_size: u64,
    /// Number of shard buckets rows are hashed into.
    pub buckets: u32,
    /// Cut shards at this many tokens instead of `shard_size` bytes.
    pub shard_tokens: Option<u64>,
    /// Token dtype and size limit of token-holding formats.
    pub shard_opts: ShardOptions,
}

/// Writes the rows into shards; outputs one row per file written.
#[derive(Debug, Clone)]
pub struct WriteShardsNode {
    pub input: LogicalPlan,
    pub params: WriteParams,
    schema: DFSchemaRef,
    key: String,
}

/// Schema of the sink's result rows.
pub fn sink_result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::UInt32, false),
        Field::new("seq", DataType::UInt32, false),
        Field::new("staged_path", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("sha256", DataType::Utf8, false),
        Field::new("tokens", DataType::UInt64, true),
        Field::new("sequences", DataType::UInt64, true),
        Field::new("raw_bytes", DataType::UInt64, true),
    ]))
}

impl WriteShardsNode {
    pub fn try_new(input: LogicalPlan, params: WriteParams) -> Result<Self> {
        let schema = Arc::new(DFSchema::try_from(sink_result_schema().as_ref().clone())?);
        let key = serde_json::to_string(&params).unwrap_or_default();
        Ok(Self { input, params, schema, key })
    }
    fn inputs_eq(&self, other: &Self) -> bool {
        self.input == other.input
    }
}

impl UserDefinedLogicalNodeCore for WriteShardsNode {
    fn name(&self) -> &str {
        "WriteShards"
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
    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        self.input.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WriteShards: format={:?}, buckets={}, shard_size={}",
            self.params.format, self.params.buckets, self.params.shard_size
        )
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Self::try_new(inputs.swap_remove(0), self.params.clone())
    }
}
