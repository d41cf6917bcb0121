//! `normalize`: Unicode normalization and whitespace clean-up of the text.

use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;
use dsproc_functions::text::normalize_text::{Form, NormalizeTextFunc, Whitespace};

use super::{Op, PlanContext};
use crate::spec::OpParseError;

/// `op = "normalize"`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Unicode form: `nfc` (default), `nfkc` or `none`.
    #[serde(default = "default_form")]
    pub form: String,
    /// `trim` (default: CRLF to LF, no trailing spaces on lines, no leading or
    /// trailing blank space), `collapse` (every whitespace run becomes one space)
    /// or `keep`.
    #[serde(default = "default_ws")]
    pub whitespace: String,
}

pub(crate) fn default_form() -> String {
    "nfc".into()
}
pub(crate) fn default_ws() -> String {
    "trim".into()
}

pub(crate) fn check_form_ws(form: &str, ws: &str) -> Result<(), OpParseError> {
    if Form::parse(form).is_none() {
        return Err(OpParseError::Invalid {
            key: "form".into(),
            message: format!("{form:?} is not one of nfc, nfkc, none"),
        });
    }
    if Whitespace::parse(ws).is_none() {
        return Err(OpParseError::Invalid {
            key: "whitespace".into(),
            message: format!("{ws:?} is not one of trim, collapse, keep"),
        });
    }
    Ok(())
}

impl Normalize {
    pub(crate) fn check(&self) -> Result<(), OpParseError> {
        check_form_ws(&self.form, &self.whitespace)
    }
}

impl Op for Normalize {
    fn name(&self) -> &'static str {
        "normalize"
    }
    fn drop_reason(&self) -> Option<&'static str> {
        None
    }
    async fn plan(&self, _pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let udf = datafusion::logical_expr::ScalarUDF::from(NormalizeTextFunc::new());
        let exprs: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(|c| {
                if c.name == "text" {
                    udf.call(vec![col(c.clone()), lit(self.form.clone()), lit(self.whitespace.clone())]).alias("text")
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
