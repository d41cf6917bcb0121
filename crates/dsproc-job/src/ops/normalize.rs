//! `normalize`: Unicode normalization and whitespace clean-up of the text.

use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;
use dsproc_functions::text::normalize_text::{Form, NormalizeTextFunc, Whitespace};

use super::{Op, PlanContext};

/// Unicode normalization and whitespace clean-up of `text`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Unicode form: `nfc`, `nfkc` or `none`.
    #[serde(default = "default_form")]
    pub form: Form,
    /// `trim` (CRLF to LF, no trailing spaces on lines, no leading or trailing
    /// blank space), `collapse` (every whitespace run becomes one space) or `keep`.
    #[serde(default = "default_ws")]
    pub whitespace: Whitespace,
}

pub(crate) fn default_form() -> Form {
    Form::Nfc
}
pub(crate) fn default_ws() -> Whitespace {
    Whitespace::Trim
}

impl Op for Normalize {
    const NAME: &'static str = "normalize";
    const VERSION: u32 = 1;

    async fn plan(&self, _pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let udf = datafusion::logical_expr::ScalarUDF::from(NormalizeTextFunc::new());
        let exprs: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(|c| {
                if c.name == "text" {
                    udf.call(vec![col(c.clone()), lit(self.form.as_str()), lit(self.whitespace.as_str())]).alias("text")
                } else {
                    col(c)
                }
            })
            .collect();
        LogicalPlanBuilder::from(input)
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(|e| DsprocError::usage(format!("normalize: {e}")))
    }
}
