//! Job steps. Each op is one file: a serde config struct (its keys are the spec
//! keys, documented on the fields) and its lowering to plan nodes. Adding an op
//! is one file plus one variant here.

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use serde::Serialize;

use dsproc_common::DsprocError;

use crate::spec::OpParseError;

pub mod dedup_exact;
pub mod dedup_minhash;
pub mod filter;
pub mod normalize;
pub mod scrub_pii;
pub mod sql;
pub mod tokenize;

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
    pub base: &'a std::path::Path,
    /// The prefix of the version this run writes (`OUTPUT/vNNNNN`, on the output's
    /// store): state the version needs (saved indexes) goes below it.
    pub version_dir: &'a dsproc_io::Location,
}

/// A job step.
pub trait Op {
    /// The spec and SQL name (`op = "..."`).
    fn name(&self) -> &'static str;
    /// Appends the step to `input`.
    fn plan(
        &self,
        pc: &PlanContext<'_>,
        input: LogicalPlan,
    ) -> impl std::future::Future<Output = Result<LogicalPlan, DsprocError>>;
    /// Why rows this step removes are dropped (the manifest's `"<step>:<op>:<reason>"`),
    /// or `None` for ops that keep every row.
    fn drop_reason(&self) -> Option<&'static str>;
}

/// Every op, as written in a spec.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpSpec {
    Normalize(normalize::Normalize),
    Filter(filter::Filter),
    Sql(sql::Sql),
    DedupExact(dedup_exact::DedupExact),
    DedupMinhash(dedup_minhash::DedupMinhash),
    ScrubPii(scrub_pii::ScrubPii),
    Tokenize(tokenize::Tokenize),
}

/// Names of all ops, in the order of [`OpSpec`].
pub const OP_NAMES: &[&str] = &["normalize", "filter", "sql", "dedup_exact", "dedup_minhash", "scrub_pii", "tokenize"];

fn from<T: serde::de::DeserializeOwned>(mut table: toml::Table) -> Result<T, OpParseError> {
    table.remove("op");
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| OpParseError::Serde(e.message().to_string()))
}

impl OpSpec {
    /// Parses one `[[steps]]` table whose `op` is `op`.
    pub fn from_table(op: &str, table: toml::Table) -> Result<Self, OpParseError> {
        let spec = match op {
            "normalize" => Self::Normalize(from(table)?),
            "filter" => Self::Filter(from(table)?),
            "sql" => Self::Sql(from(table)?),
            "dedup_exact" => Self::DedupExact(from(table)?),
            "dedup_minhash" => Self::DedupMinhash(from(table)?),
            "scrub_pii" => Self::ScrubPii(from(table)?),
            "tokenize" => Self::Tokenize(from(table)?),
            _ => return Err(OpParseError::UnknownOp { valid: OP_NAMES.to_vec() }),
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), OpParseError> {
        match self {
            Self::Normalize(n) => n.check(),
            Self::DedupExact(d) => d.check(),
            Self::DedupMinhash(d) => d.check(),
            Self::ScrubPii(p) => p.check(),
            Self::Tokenize(t) => t.check(),
            Self::Filter(_) | Self::Sql(_) => Ok(()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Normalize(o) => o.name(),
            Self::Filter(o) => o.name(),
            Self::Sql(o) => o.name(),
            Self::DedupExact(o) => o.name(),
            Self::DedupMinhash(o) => o.name(),
            Self::ScrubPii(o) => o.name(),
            Self::Tokenize(o) => o.name(),
        }
    }

    pub fn drop_reason(&self) -> Option<&'static str> {
        match self {
            Self::Normalize(o) => o.drop_reason(),
            Self::Filter(o) => o.drop_reason(),
            Self::Sql(o) => o.drop_reason(),
            Self::DedupExact(o) => o.drop_reason(),
            Self::DedupMinhash(o) => o.drop_reason(),
            Self::ScrubPii(o) => o.drop_reason(),
            Self::Tokenize(o) => o.drop_reason(),
        }
    }

    /// Why the rows this step adds are added (the manifest's `rows.added`), or
    /// `None` for ops that never add rows.
    pub fn add_reason(&self) -> Option<&'static str> {
        match self {
            Self::Tokenize(t) if t.overflow == "split" => Some("split"),
            _ => None,
        }
    }

    /// Static facts about the step for the manifest (e.g. a signature version).
    pub fn info(&self, base: &std::path::Path) -> Option<serde_json::Value> {
        match self {
            Self::DedupMinhash(o) => Some(o.info(base)),
            Self::Tokenize(o) => Some(o.info(base)),
            _ => None,
        }
    }

    /// Turns the step's raw counters into its manifest statistics; an error
    /// fails the job.
    pub fn finish_stats(
        op: &str,
        info: Option<&serde_json::Value>,
        counters: &mut std::collections::BTreeMap<String, u64>,
    ) -> Result<(), String> {
        match (op, info) {
            ("dedup_minhash", Some(info)) => dedup_minhash::finish_stats(counters, info),
            ("tokenize", _) => tokenize::finish_stats(counters),
            _ => Ok(()),
        }
    }

    pub async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        match self {
            Self::Normalize(o) => o.plan(pc, input).await,
            Self::Filter(o) => o.plan(pc, input).await,
            Self::Sql(o) => o.plan(pc, input).await,
            Self::DedupExact(o) => o.plan(pc, input).await,
            Self::DedupMinhash(o) => o.plan(pc, input).await,
            Self::ScrubPii(o) => o.plan(pc, input).await,
            Self::Tokenize(o) => o.plan(pc, input).await,
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
