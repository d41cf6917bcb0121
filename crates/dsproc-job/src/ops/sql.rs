//! `sql`: any DataFusion SQL query over the table `input`.

use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;

use super::{sql_over, Op, PlanContext};

/// Any DataFusion SQL query over the table `input` (the rows entering the step).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// A query over the table `input` (the rows entering the step). It must keep
    /// the `id` and `text` columns and may not add rows; rows it removes are
    /// counted as dropped (reason `query`).
    pub query: String,
}

impl Op for Sql {
    const NAME: &'static str = "sql";
    const VERSION: u32 = 1;

    fn drop_reason(&self) -> Option<&'static str> {
        Some("query")
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let plan = sql_over(pc, "sql", "input", input, &self.query).await?;
        for required in ["id", "text"] {
            if plan.schema().field_with_unqualified_name(required).is_err() {
                return Err(DsprocError::usage(format!(
                    "step {} (sql): the query's result has no `{required}` column; keep `id` and `text` (e.g. SELECT * ...)",
                    pc.step
                )));
            }
        }
        Ok(plan)
    }
}
