//! Job steps. Each op is one file: a serde options struct (its keys are the spec
//! keys, documented with `///` on the fields, which `dsproc ops` and the README
//! reference print) and one [`Op`] impl holding every hook the op has. The
//! [`registry!`] list below is the only other place that names it: the
//! [`OpSpec`] enum, the [`OPS`] table and every dispatch are generated from it.
//!
//! Adding an op: write `ops/my_op.rs` (struct + `impl Op`), add one line
//! `my_op::MyOp,` to the list, add an example job in `jobs/` that uses it.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;
use serde::Serialize;

use dsproc_common::DsprocError;

/// What an op gets when it lowers itself.
pub struct PlanContext<'a> {
    /// A session with every dsproc function registered (for SQL parsing).
    pub ctx: &'a SessionContext,
    /// 1-based step number, for messages.
    pub step: usize,
    /// The run's staging prefix (for ops that add statistics nodes).
    pub staging: &'a dsproc_io::Location,
    /// The run id (ops that stage files of their own name their staging after it).
    pub run_id: &'a str,
    /// The spec file's directory (relative paths in op options resolve against it).
    pub base: &'a Path,
    /// The prefix of the version this run writes (`OUTPUT/vNNNNN`, on the output's
    /// store): state the version needs (saved indexes) goes below it.
    pub version_dir: &'a dsproc_io::Location,
    /// What an incremental build needs of the step (see [`Incremental`]).
    pub incremental: &'a Incremental,
}

impl PlanContext<'_> {
    /// The parent version's state files of this step (an incremental build
    /// deduplicates the new rows against them), if any.
    pub fn parent_state(&self) -> Option<&[dsproc_io::Location]> {
        self.incremental.parent_state.get(&self.step).map(|v| v.as_slice()).filter(|v| !v.is_empty())
    }
    /// Where this step writes its state, when the build keeps state.
    pub fn state_dir(&self) -> Option<dsproc_io::Location> {
        self.incremental.write_state.then(|| state_dir(self.version_dir, self.step))
    }
}

/// Incremental builds (`output.incremental`): what each stateful step writes into
/// the version it builds and what it deduplicates against.
#[derive(Debug, Clone, Default)]
pub struct Incremental {
    /// Stateful steps write what a later incremental build needs (content hashes,
    /// band keys and shingle sets of their survivors) under
    /// `vNNNNN/_state/step-NNN/`.
    pub write_state: bool,
    /// Step → the state files of every row the parent version keeps (its own and
    /// those it carried); non-empty only for an incremental build, whose input is
    /// the new files alone.
    pub parent_state: BTreeMap<usize, Vec<dsproc_io::Location>>,
}

/// Where step `step` of a version keeps its incremental state.
pub fn state_dir(version_dir: &dsproc_io::Location, step: usize) -> dsproc_io::Location {
    version_dir.join(&format!("{}/step-{step:03}", dsproc_common::config::STATE_DIR))
}

/// How a step takes part in an incremental build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incrementality {
    /// Each output row depends on one input row: new files' rows go through it
    /// alone.
    RowLocal,
    /// It compares rows (dedup): it writes state into each version and, in an
    /// incremental build, compares the new rows with the parent's state.
    Stateful,
    /// Its output depends on all rows in a way state cannot stand in for: an
    /// incremental build rebuilds fully, for this reason.
    Unsupported(String),
}

/// A job step: its options (the struct itself, deserialized from its
/// `[[steps]]` table) and every hook the driver calls on it.
pub trait Op: Sized + Serialize + DeserializeOwned + schemars::JsonSchema {
    /// The spec and SQL name (`op = "..."`).
    const NAME: &'static str;
    /// Version of the op's output: part of the manifest's `dataset_version`.
    /// Bump it whenever the same input and options give different rows.
    const VERSION: u32;

    /// Checks option values serde cannot (ranges, combinations).
    fn check(&self) -> Result<(), OpParseError> {
        Ok(())
    }
    /// Why rows this step removes are dropped (the manifest's `"<step>:<op>:<reason>"`),
    /// or `None` for ops that keep every row.
    fn drop_reason(&self) -> Option<&'static str> {
        None
    }
    /// Why the rows this step adds are added (the manifest's `rows.added`), or
    /// `None` for ops that never add rows.
    fn add_reason(&self) -> Option<&'static str> {
        None
    }
    /// Static facts about the step for the manifest (e.g. a signature version).
    fn info(&self, _base: &Path) -> Option<serde_json::Value> {
        None
    }
    /// How the step takes part in an incremental build.
    fn incrementality(&self) -> Incrementality {
        Incrementality::RowLocal
    }
    /// Turns the step's raw counters into its manifest statistics (`info` is what
    /// [`Op::info`] recorded); an error fails the job.
    fn finish_stats(_info: Option<&serde_json::Value>, _counters: &mut BTreeMap<String, u64>) -> Result<(), OpError> {
        Ok(())
    }
    /// Appends the step to `input`.
    fn plan(
        &self,
        pc: &PlanContext<'_>,
        input: LogicalPlan,
    ) -> impl std::future::Future<Output = Result<LogicalPlan, DsprocError>>;
}

/// Errors from parsing one step table.
#[derive(Debug, thiserror::Error)]
pub enum OpParseError {
    /// `op = "..."` names no op.
    #[error("unknown op; valid ops: {}", valid.join(", "))]
    UnknownOp { valid: Vec<&'static str> },
    /// serde refused the table (unknown key, wrong type, unknown value).
    #[error("{0}")]
    Serde(String),
    /// `check` refused a value.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl OpParseError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), message: message.into() }
    }
}

/// An op's run-time failure seen by the driver (e.g. components that did not converge).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

/// Step counters, by name.
pub type Counters = BTreeMap<String, u64>;

/// Counters named `dropped:<reason>` split a step's dropped rows by reason: the
/// manifest then counts `"<step>:<op>:<reason>"` for each instead of the op's
/// [`Op::drop_reason`], and the job fails unless they sum to the rows the step
/// dropped.
pub const DROPPED_BY: &str = "dropped:";

/// [`Op::finish_stats`] of one op.
type FinishStats = fn(Option<&serde_json::Value>, &mut Counters) -> Result<(), OpError>;

/// One registered op: its name, version and hooks that need no instance.
pub struct OpEntry {
    pub name: &'static str,
    pub version: u32,
    parse: fn(toml::Table) -> Result<OpSpec, OpParseError>,
    finish_stats: FinishStats,
    /// The JSON schema of the op's options (docs, types, defaults).
    pub schema: fn() -> schemars::Schema,
}

fn from_table<T: Op>(mut table: toml::Table) -> Result<T, OpParseError> {
    table.remove("op");
    let op: T =
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| OpParseError::Serde(e.message().into()))?;
    op.check()?;
    Ok(op)
}

/// The JSON schema of an options struct with every sub-schema inlined (what
/// `dsproc ops` and the README reference are rendered from).
pub fn schema_of<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// The op list. Everything per-op outside the op's own file is generated here.
macro_rules! registry {
    ($($module:ident :: $ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every op, as written in a spec.
        #[derive(Debug, Clone, Serialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum OpSpec {
            $($ty($module::$ty),)*
        }

        /// Every op, in registry order (the order of `dataset_version`'s op versions).
        pub static OPS: &[OpEntry] = &[$(OpEntry {
            name: <$module::$ty as Op>::NAME,
            version: <$module::$ty as Op>::VERSION,
            parse: |t| from_table::<$module::$ty>(t).map(OpSpec::$ty),
            finish_stats: <$module::$ty as Op>::finish_stats,
            schema: schema_of::<$module::$ty>,
        },)*];

        impl OpSpec {
            pub fn name(&self) -> &'static str {
                match self { $(Self::$ty(_) => <$module::$ty as Op>::NAME,)* }
            }
            pub fn drop_reason(&self) -> Option<&'static str> {
                match self { $(Self::$ty(o) => o.drop_reason(),)* }
            }
            pub fn add_reason(&self) -> Option<&'static str> {
                match self { $(Self::$ty(o) => o.add_reason(),)* }
            }
            pub fn info(&self, base: &Path) -> Option<serde_json::Value> {
                match self { $(Self::$ty(o) => o.info(base),)* }
            }
            pub fn incrementality(&self) -> Incrementality {
                match self { $(Self::$ty(o) => o.incrementality(),)* }
            }
            pub async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
                match self { $(Self::$ty(o) => o.plan(pc, input).await,)* }
            }
        }
    };
}

registry! {
    normalize::Normalize,
    filter::Filter,
    sql::Sql,
    dedup_exact::DedupExact,
    dedup_minhash::DedupMinhash,
    scrub_pii::ScrubPii,
    tokenize::Tokenize,
    quality_filter::QualityFilter,
    langid::Langid,
}

/// The registered op called `name`.
pub fn op(name: &str) -> Option<&'static OpEntry> {
    OPS.iter().find(|o| o.name == name)
}

/// Names of all ops, in registry order.
pub fn op_names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.name).collect()
}

impl OpSpec {
    /// Parses one `[[steps]]` table whose `op` is `op` and checks its values.
    pub fn from_table(op_name: &str, table: toml::Table) -> Result<Self, OpParseError> {
        let entry = op(op_name).ok_or_else(|| OpParseError::UnknownOp { valid: op_names() })?;
        (entry.parse)(table)
    }

    /// Turns the step's raw counters into its manifest statistics; an error
    /// fails the job.
    pub fn finish_stats(
        op_name: &str,
        info: Option<&serde_json::Value>,
        counters: &mut BTreeMap<String, u64>,
    ) -> Result<(), OpError> {
        match op(op_name) {
            Some(entry) => (entry.finish_stats)(info, counters),
            None => Ok(()),
        }
    }
}

/// Wraps `plan` in the step's statistics node summing the UInt32 fields of the
/// struct column `column` into the step's counters (the node also keeps the
/// optimizer from inlining the projection that computes `column` into later ones).
pub(crate) fn summed(pc: &PlanContext<'_>, plan: LogicalPlan, op: &'static str, column: &str) -> LogicalPlan {
    use datafusion::logical_expr::Extension;
    let node = dsproc_exec::StepStatsNode::with_sums(plan, pc.step, op, pc.staging.clone(), Some(column.into()));
    LogicalPlan::Extension(Extension { node: std::sync::Arc::new(node) })
}

/// The parent version's state files of the step, as one plan (their columns as
/// [`with_state`] wrote them).
pub(crate) async fn parent_state_plan(pc: &PlanContext<'_>, op: &str) -> Result<Option<LogicalPlan>, DsprocError> {
    let Some(files) = pc.parent_state() else { return Ok(None) };
    for f in files {
        dsproc_io::store::remember_storage(f);
    }
    let urls: Vec<String> = files.iter().map(|f| f.canonical()).collect();
    let df = pc
        .ctx
        .read_parquet(urls, datafusion::prelude::ParquetReadOptions::default())
        .await
        .map_err(|e| DsprocError::usage(format!("step {} ({op}): the parent version's state: {e}", pc.step)))?;
    // Strings as Utf8, not the Utf8View Parquet reads by default: views into many
    // buffers make every slice, take and join of the state slow (measured: 80% of an
    // incremental rebuild went to copying view buffer lists).
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{cast, col};
    let exprs: Vec<_> = df
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => cast(col(f.name()), DataType::Utf8).alias(f.name()),
            _ => col(f.name()),
        })
        .collect();
    let df = df
        .select(exprs)
        .map_err(|e| DsprocError::usage(format!("step {} ({op}): the parent version's state: {e}", pc.step)))?;
    Ok(Some(df.into_unoptimized_plan()))
}

/// When the build keeps state: `plan` (the step's output) with its state
/// written into the version: `state_sql`, a struct expression over the output's
/// columns, is computed per row and its fields are written as the columns of
/// `vNNNNN/_state/step-NNN/state-*.parquet`; the rows pass on unchanged.
pub(crate) async fn with_state(
    pc: &PlanContext<'_>,
    op: &'static str,
    plan: LogicalPlan,
    state_sql: &str,
) -> Result<LogicalPlan, DsprocError> {
    use datafusion::logical_expr::Extension;
    let Some(dir) = pc.state_dir() else { return Ok(plan) };
    let view = format!("__dsproc_step_{}_state", pc.step);
    let cols: Vec<String> =
        plan.schema().columns().iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect();
    let cols = cols.join(", ");
    let with =
        sql_over(pc, op, &view, plan, &format!("SELECT {cols}, {state_sql} AS __dsproc_state FROM {view}")).await?;
    let keys = dsproc_exec::KeysOf { column: "__dsproc_state".into(), dir, state: true };
    let node = dsproc_exec::StepStatsNode::with_keys(with, pc.step, op, pc.staging.clone(), keys);
    let node = LogicalPlan::Extension(Extension { node: std::sync::Arc::new(node) });
    sql_over(pc, op, &view, node, &format!("SELECT {cols} FROM {view}")).await
}

/// `input` as a subplan that the step may reference several times (in several
/// views or sides of a join) while it executes once: the input files are read
/// and the earlier steps run once however often the step reads its rows.
pub(crate) fn shared(input: LogicalPlan) -> LogicalPlan {
    use datafusion::logical_expr::Extension;
    LogicalPlan::Extension(Extension { node: std::sync::Arc::new(dsproc_exec::SharedNode::new(input)) })
}

/// Quotes a string literal for SQL.
pub(crate) fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Registers `plan` as view `name`, runs `query`, deregisters the view.
pub(crate) async fn sql_over(
    pc: &PlanContext<'_>,
    op: &str,
    name: &str,
    plan: LogicalPlan,
    query: &str,
) -> Result<LogicalPlan, DsprocError> {
    sql_over_views(pc, op, &[(name.to_string(), plan)], query).await
}

/// Registers each plan as a view of its name, runs `query`, deregisters them.
pub(crate) async fn sql_over_views(
    pc: &PlanContext<'_>,
    op: &str,
    views: &[(String, LogicalPlan)],
    query: &str,
) -> Result<LogicalPlan, DsprocError> {
    use datafusion::catalog::TableProvider;
    use std::sync::Arc;
    let err =
        |e: datafusion::error::DataFusionError| DsprocError::usage(format!("step {} ({op}): {}", pc.step, e.message()));
    for (name, plan) in views {
        let view: Arc<dyn TableProvider> = Arc::new(datafusion::catalog::view::ViewTable::new(plan.clone(), None));
        if let Err(e) = pc.ctx.register_table(name.as_str(), view) {
            for (n, _) in views {
                let _ = pc.ctx.deregister_table(n.as_str());
            }
            return Err(err(e));
        }
    }
    let result = pc.ctx.sql(query).await;
    for (name, _) in views {
        let _ = pc.ctx.deregister_table(name.as_str());
    }
    Ok(result.map_err(err)?.into_unoptimized_plan())
}
