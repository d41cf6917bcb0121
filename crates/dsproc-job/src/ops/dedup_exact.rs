//! `dedup_exact`: keep one row per distinct normalized text; the survivor is the
//! row with the smallest id, so the result does not depend on partitioning.

use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;

use dsproc_functions::text::normalize_text::{Form, Whitespace};

use super::normalize::{default_form, default_ws};
use super::{quote_str, sql_over_views, Incrementality, Op, PlanContext};

/// Keeps one row per distinct normalized text; the survivor is the row with the
/// smallest id (min(id) per content hash, then a semi-join: no operator buffers
/// whole documents; ids should be unique).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupExact {
    /// Unicode form applied before hashing (the text itself is not changed):
    /// `nfc`, `nfkc`, `none`.
    #[serde(default = "default_form")]
    pub form: Form,
    /// Whitespace handling before hashing: `trim`, `collapse`, `keep`.
    #[serde(default = "default_ws")]
    pub whitespace: Whitespace,
}

impl Op for DedupExact {
    const NAME: &'static str = "dedup_exact";
    const VERSION: u32 = 2;

    fn drop_reason(&self) -> Option<&'static str> {
        Some("duplicate")
    }
    /// Survivors are found on keys only: `min(id)` per content hash (an
    /// aggregate over small rows), then the input is right-semi-joined on them
    /// (the small survivor table is the build side; full rows stream through).
    /// No operator buffers or sorts whole documents, so memory stays bounded
    /// however large the documents are. Both reads of the step's input come from
    /// one execution of the upstream plan (a shared subplan spilled to local disk
    /// as it runs), so the input is read and parsed once.
    /// Rows that share both id and text all survive (ids are expected unique).
    ///
    /// Incremental builds: each version keeps the content hashes of the step's
    /// survivors (`_state/step-NNN/`, column `h`); the new rows of an incremental
    /// build lose to every hash the parent keeps (a published row wins), then the
    /// smallest id wins among themselves.
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let view = format!("__dsproc_step_{}", pc.step);
        let parent = format!("__dsproc_step_{}_parent", pc.step);
        let hash = format!(
            "content_hash(text, {form}, {ws})",
            form = quote_str(self.form.as_str()),
            ws = quote_str(self.whitespace.as_str()),
        );
        let mut views = vec![(view.clone(), super::shared(input))];
        let groups = match super::parent_state_plan(pc, Self::NAME).await? {
            None => format!("SELECT min(id) AS __dsproc_sid FROM {view} GROUP BY {hash}"),
            Some(p) => {
                views.push((parent.clone(), p));
                format!(
                    "SELECT min(id) AS __dsproc_sid FROM \
                       (SELECT id, {hash} AS __dsproc_h FROM {view}) n \
                       LEFT ANTI JOIN {parent} o ON n.__dsproc_h = o.h \
                     GROUP BY __dsproc_h"
                )
            }
        };
        let query = format!("SELECT t.* FROM ({groups}) s RIGHT SEMI JOIN {view} t ON t.id = s.__dsproc_sid");
        let out = sql_over_views(pc, Self::NAME, &views, &query).await?;
        super::with_state(pc, Self::NAME, out, &format!("named_struct('h', {hash})")).await
    }
    fn incrementality(&self) -> Incrementality {
        Incrementality::Stateful
    }
}
