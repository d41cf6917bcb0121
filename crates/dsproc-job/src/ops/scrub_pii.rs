//! `scrub_pii`: find structured PII in one pass and mask, hash, redact or tag it,
//! or drop the documents that contain it. Adds `pii_counts` (per-kind counts) and
//! `pii_spans` (kind, start, end in characters of the text as it entered).

use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;
use dsproc_functions::pii::scrub_pii::{Action, PiiOptions, ScrubPiiFunc};
use dsproc_functions::pii::Kind;

use super::{Op, OpParseError, PlanContext};

/// Finds structured PII in one pass and masks, hashes, redacts or tags it, or
/// drops the documents that contain it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrubPii {
    /// Kinds to detect: email, phone, ip, credit_card, iban, ssn, secret,
    /// url_credentials.
    #[serde(default = "all_kinds")]
    pub kinds: Vec<Kind>,
    /// `mask` (replace with `template`) | `hash` (salted sha256) | `redact` (remove) |
    /// `drop_document` | `tag` (leave the text, record the spans).
    #[serde(default = "default_action")]
    pub action: Action,
    /// Replacement for `mask`; `{KIND}` becomes the upper-case kind.
    #[serde(default = "default_template")]
    pub template: String,
    /// Leave private, loopback and link-local IP addresses alone.
    #[serde(default)]
    pub keep_private_ips: bool,
    /// `hash`: the environment variable holding the salt. The salt is read where
    /// the step runs (driver, executors) and is never written to a plan, a log or
    /// the manifest.
    #[serde(default = "default_salt_env")]
    pub salt_env: String,
}

fn all_kinds() -> Vec<Kind> {
    Kind::ALL.to_vec()
}
fn default_action() -> Action {
    Action::Mask
}
fn default_template() -> String {
    "<{KIND}>".into()
}
fn default_salt_env() -> String {
    "DSPROC_PII_SALT".into()
}

impl ScrubPii {
    fn options(&self) -> PiiOptions {
        let mut kinds = Vec::new();
        for k in &self.kinds {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
        PiiOptions {
            kinds,
            action: self.action,
            template: self.template.clone(),
            keep_private_ips: self.keep_private_ips,
            salt_env: self.salt_env.clone(),
        }
    }
}

impl Op for ScrubPii {
    const NAME: &'static str = "scrub_pii";
    const VERSION: u32 = 1;

    fn check(&self) -> Result<(), OpParseError> {
        if self.kinds.is_empty() {
            return Err(OpParseError::invalid("kinds", "list at least one kind"));
        }
        Ok(())
    }
    fn drop_reason(&self) -> Option<&'static str> {
        Some("pii")
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let opts = self.options();
        if opts.action == Action::Hash && std::env::var(&opts.salt_env).map_or(true, |s| s.is_empty()) {
            return Err(DsprocError::usage(format!(
                "step {} (scrub_pii): action = \"hash\" needs a salt in the environment variable {} (set it here and on every executor)",
                pc.step, opts.salt_env
            )));
        }
        let err =
            |e: datafusion::error::DataFusionError| DsprocError::usage(format!("step {} (scrub_pii): {e}", pc.step));
        let json = serde_json::to_string(&opts).map_err(|e| DsprocError::usage(e.to_string()))?;
        let udf = ScalarUDF::from(ScrubPiiFunc::new());
        // 1. one UDF call per row, kept as a struct column
        let mut exprs: Vec<Expr> = input.schema().columns().into_iter().map(col).collect();
        exprs.push(udf.call(vec![col("text"), lit(json)]).alias("__dsproc_pii"));
        let plan = LogicalPlanBuilder::from(input.clone()).project(exprs).and_then(|b| b.build()).map_err(err)?;
        // 2. per-kind totals for the manifest, counted before any document is dropped;
        //    the node also keeps the optimizer from merging the projections (which
        //    would call the UDF once per unpacked field)
        let plan = super::summed(pc, plan, "scrub_pii", "__dsproc_pii");
        // 3. unpack it: the new text, and counts and spans (replacing those of an earlier scrub)
        let mut exprs: Vec<Expr> = Vec::new();
        for c in input.schema().columns() {
            match c.name.as_str() {
                "text" => exprs.push(get_field(col("__dsproc_pii"), "text").alias("text")),
                "pii_counts" | "pii_spans" => {}
                _ => exprs.push(col(c)),
            }
        }
        exprs.push(get_field(col("__dsproc_pii"), "pii_counts").alias("pii_counts"));
        exprs.push(get_field(col("__dsproc_pii"), "pii_spans").alias("pii_spans"));
        let plan = LogicalPlanBuilder::from(plan).project(exprs).and_then(|b| b.build()).map_err(err)?;
        if opts.action != Action::DropDocument {
            return Ok(plan);
        }
        let total = opts
            .kinds
            .iter()
            .map(|k| get_field(col("pii_counts"), k.name()))
            .reduce(|a, b| a + b)
            .expect("at least one kind");
        LogicalPlanBuilder::from(plan).filter(total.eq(lit(0u32))).and_then(|b| b.build()).map_err(err)
    }
}
