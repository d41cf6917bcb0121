//! `quality_filter`: heuristic document quality filters with the rule sets of
//! datatrove 0.10.1 as presets (Gopher quality and repetition, C4, FineWeb).

use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;
use dsproc_functions::quality::QualityFilterFunc;
use dsproc_quality::{FineWeb, GopherQuality, GopherRepetition, Preset, C4};

use super::{summed, Op, OpParseError, PlanContext, DROPPED_BY};

/// Heuristic quality filters that decide like datatrove 0.10.1's
/// `GopherQualityFilter`, `GopherRepetitionFilter`, `C4QualityFilter` and
/// `FineWebQualityFilter` (words and sentences from a port of spaCy's English
/// tokenizer, as datatrove uses for English).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityFilter {
    /// Presets to apply, in order: `gopher_quality`, `gopher_repetition`, `c4`,
    /// `fineweb`. The first failing rule drops the document (reason
    /// `quality_filter:<rule>`, e.g. `gopher_short_doc`); `c4` removes lines
    /// and the presets after it see the rewritten text, as datatrove's filters do
    /// when chained in a pipeline.
    pub presets: Vec<String>,
    /// `drop` removes failing documents (counted per rule); `tag` keeps every row
    /// and its text unchanged and adds `quality` (a struct: `keep`, `rule`, the
    /// computed metrics), counting per rule what would have been dropped.
    #[serde(default)]
    pub action: Action,
    /// Column holding each row's language code (e.g. `lang` from a `langid`
    /// step): the presets' `by_lang` thresholds are picked by it. Used when the
    /// input has it; required when a preset sets `by_lang`.
    #[serde(default = "default_lang_column")]
    pub lang_column: String,
    /// Thresholds of the `gopher_quality` preset (defaults: datatrove's).
    pub gopher_quality: Option<Box<GopherQuality>>,
    /// Thresholds of the `gopher_repetition` preset (defaults: datatrove's).
    pub gopher_repetition: Option<Box<GopherRepetition>>,
    /// Options of the `c4` preset (defaults: datatrove's).
    pub c4: Option<Box<C4>>,
    /// Thresholds of the `fineweb` preset (defaults: datatrove's).
    pub fineweb: Option<Box<FineWeb>>,
}

/// `quality_filter.action`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Remove failing documents.
    #[default]
    Drop,
    /// Keep every row; add the `quality` struct.
    Tag,
}

fn default_lang_column() -> String {
    "lang".into()
}

/// Prefix of the per-rule counters of `action = "tag"`.
const TAGGED: &str = "would_drop:";

impl QualityFilter {
    /// The presets with their options, in order.
    fn resolved(&self) -> Result<Vec<Preset>, OpParseError> {
        if self.presets.is_empty() {
            return Err(OpParseError::invalid("presets", "name at least one preset"));
        }
        let mut out: Vec<Preset> = Vec::new();
        for name in &self.presets {
            let p = match name.as_str() {
                "gopher_quality" => Preset::GopherQuality(self.gopher_quality.as_deref().cloned().unwrap_or_default()),
                "gopher_repetition" => Preset::GopherRepetition(self.gopher_repetition.as_deref().cloned().unwrap_or_default()),
                "c4" => Preset::C4(self.c4.as_deref().cloned().unwrap_or_default()),
                "fineweb" => Preset::FineWeb(self.fineweb.as_deref().cloned().unwrap_or_default()),
                other => {
                    return Err(OpParseError::invalid(
                        "presets",
                        format!("unknown preset {other:?}; valid: gopher_quality, gopher_repetition, c4, fineweb"),
                    ))
                }
            };
            if out.iter().any(|q| q.name() == p.name()) {
                return Err(OpParseError::invalid("presets", format!("{name:?} is listed twice")));
            }
            out.push(p);
        }
        // Options of a preset that is not applied are a mistake, not a no-op.
        for (key, given) in [
            ("gopher_quality", self.gopher_quality.is_some()),
            ("gopher_repetition", self.gopher_repetition.is_some()),
            ("c4", self.c4.is_some()),
            ("fineweb", self.fineweb.is_some()),
        ] {
            if given && !self.presets.iter().any(|p| p == key) {
                return Err(OpParseError::invalid(key, format!("options given but {key:?} is not in presets")));
            }
        }
        Ok(out)
    }

    fn uses_by_lang(&self) -> bool {
        self.gopher_quality.as_ref().is_some_and(|o| !o.by_lang.is_empty())
            || self.gopher_repetition.as_ref().is_some_and(|o| !o.by_lang.is_empty())
            || self.c4.as_ref().is_some_and(|o| !o.by_lang.is_empty())
            || self.fineweb.as_ref().is_some_and(|o| !o.by_lang.is_empty())
    }

    fn presets_json(&self) -> Result<String, DsprocError> {
        let presets = self.resolved().map_err(|e| DsprocError::usage(format!("quality_filter: {e}")))?;
        serde_json::to_string(&presets).map_err(|e| DsprocError::usage(format!("quality_filter: {e}")))
    }
}

impl Op for QualityFilter {
    const NAME: &'static str = "quality_filter";
    const VERSION: u32 = 1;

    fn check(&self) -> Result<(), OpParseError> {
        let presets = self.resolved()?;
        dsproc_quality::QualityFilter::new(presets).map_err(|e| OpParseError::invalid("presets", e.to_string()))?;
        Ok(())
    }
    fn drop_reason(&self) -> Option<&'static str> {
        // The driver splits the drops by rule from the `dropped:<rule>` counters.
        (self.action == Action::Drop).then_some("quality")
    }
    fn info(&self, _base: &std::path::Path) -> Option<serde_json::Value> {
        let presets = self.resolved().ok()?;
        Some(serde_json::json!({
            "reference": "datatrove 0.10.1",
            "presets": presets,
            "action": self.action,
        }))
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let step = pc.step;
        let err = |e: datafusion::error::DataFusionError| {
            DsprocError::usage(format!("step {step} (quality_filter): {}", e.message()))
        };
        let has_lang = input.schema().field_with_unqualified_name(&self.lang_column).is_ok();
        if self.uses_by_lang() && !has_lang {
            return Err(DsprocError::usage(format!(
                "step {step} (quality_filter): by_lang thresholds need the language column {:?} (add a langid step before this one, or set lang_column)",
                self.lang_column
            )));
        }
        let lang = if has_lang {
            datafusion::logical_expr::cast(col(self.lang_column.as_str()), datafusion::arrow::datatypes::DataType::Utf8)
        } else {
            lit(datafusion::common::ScalarValue::Utf8(None))
        };
        let prefix = if self.action == Action::Drop { DROPPED_BY } else { TAGGED };
        let udf = ScalarUDF::from(QualityFilterFunc::new());
        let q = udf.call(vec![col("text"), lang, lit(self.presets_json()?), lit(prefix)]);
        let cols: Vec<Expr> = input.schema().columns().into_iter().map(col).collect();
        let mut with_q = cols.clone();
        with_q.push(q.alias("__dsproc_quality"));
        let with_q = LogicalPlanBuilder::from(input).project(with_q).and_then(|b| b.build()).map_err(err)?;
        let field = |name: &str| datafusion::functions::core::expr_fn::get_field(col("__dsproc_quality"), name);
        let mut with_counts = cols.clone();
        with_counts.push(col("__dsproc_quality"));
        with_counts.push(field("counts").alias("__dsproc_quality_counts"));
        let counted = LogicalPlanBuilder::from(with_q).project(with_counts).and_then(|b| b.build()).map_err(err)?;
        let counted = summed(pc, counted, Self::NAME, "__dsproc_quality_counts");
        let mut b = LogicalPlanBuilder::from(counted);
        let out: Vec<Expr> = match self.action {
            Action::Drop => {
                b = b.filter(field("keep")).map_err(err)?;
                let text = datafusion::functions::expr_fn::coalesce(vec![field("text"), col("text")]);
                cols.iter()
                    .map(|c| match c {
                        Expr::Column(c) if c.name == "text" => text.clone().alias("text"),
                        other => other.clone(),
                    })
                    .collect()
            }
            Action::Tag => {
                let tag = datafusion::functions::core::expr_fn::named_struct(vec![
                    lit("keep"),
                    field("keep"),
                    lit("rule"),
                    field("rule"),
                    lit("metrics"),
                    field("metrics"),
                ]);
                let mut v: Vec<Expr> = cols.iter().filter(|c| !matches!(c, Expr::Column(c) if c.name == "quality")).cloned().collect();
                v.push(tag.alias("quality"));
                v
            }
        };
        b.project(out).and_then(|b| b.build()).map_err(err)
    }
}
