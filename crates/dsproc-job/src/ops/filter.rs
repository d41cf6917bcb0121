//! `filter`: keep the rows for which a SQL predicate is true.

use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;

use super::{Op, PlanContext};

/// Keeps the rows for which a SQL predicate is true.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A DataFusion SQL predicate over the row's columns, e.g. `length(text) >= 200`.
    /// Rows where it is false or NULL are dropped (reason `predicate`).
    #[serde(rename = "where")]
    pub predicate: String,
}

impl Op for Filter {
    const NAME: &'static str = "filter";
    const VERSION: u32 = 1;

    fn drop_reason(&self) -> Option<&'static str> {
        Some("predicate")
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let err = |e: datafusion::error::DataFusionError| {
            DsprocError::usage(format!("step {} (filter): where {:?}: {}", pc.step, self.predicate, e.message()))
        };
        let df_schema = input.schema().as_ref().clone();
        let expr = pc.ctx.parse_sql_expr(&self.predicate, &df_schema).map_err(err)?;
        LogicalPlanBuilder::from(input).filter(expr).and_then(|b| b.build()).map_err(err)
    }
}
