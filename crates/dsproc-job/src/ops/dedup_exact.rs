//! `dedup_exact`: keep one row per distinct normalized text; the survivor is the
//! row with the smallest id, so the result does not depend on partitioning.

use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;

use super::normalize::{check_form_ws, default_form, default_ws};
use super::{quote_str, sql_over, Op, PlanContext};
use crate::spec::OpParseError;

/// `op = "dedup_exact"`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupExact {
    /// Unicode form applied before hashing (the text itself is not changed):
    /// `nfc` (default), `nfkc`, `none`.
    #[serde(default = "default_form")]
    pub form: String,
    /// Whitespace handling before hashing: `trim` (default), `collapse`, `keep`.
    #[serde(default = "default_ws")]
    pub whitespace: String,
}

impl DedupExact {
    pub(crate) fn check(&self) -> Result<(), OpParseError> {
        check_form_ws(&self.form, &self.whitespace)
    }
}

impl Op for DedupExact {
    fn name(&self) -> &'static str {
        "dedup_exact"
    }
    fn drop_reason(&self) -> Option<&'static str> {
        Some("duplicate")
    }
    /// Survivors are found on keys only: `min(id)` per content hash (an
    /// aggregate over small rows), then the input is right-semi-joined on them
    /// (the small survivor table is the build side; full rows stream through).
    /// No operator buffers or sorts whole documents, so memory stays bounded
    /// however large the documents are; the price is reading the input twice.
    /// Rows that share both id and text all survive (ids are expected unique).
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let view = format!("__dsproc_step_{}", pc.step);
        let query = format!(
            "SELECT t.* FROM (SELECT min(id) AS __dsproc_sid FROM {view} GROUP BY content_hash(text, {form}, {ws})) s \
             RIGHT SEMI JOIN {view} t ON t.id = s.__dsproc_sid",
            form = quote_str(&self.form),
            ws = quote_str(&self.whitespace),
        );
        sql_over(pc, "dedup_exact", &view, input, &query).await
    }
}
