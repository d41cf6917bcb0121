//! `[[checks]]`: data checks a new version must pass before it may become current.

use serde::{Deserialize, Serialize};

/// `severity`: what a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The version is recorded as `rejected` (never current), the job exits 3.
    #[default]
    Error,
    /// Only reported (manifest `checks`, summary line).
    Warn,
}

/// The version a check compares with: `"current"` (the version being
/// replaced; the default) or a pinned version number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Baseline {
    Version(u64),
    Named(String),
}

/// One `[[checks]]` table; `name` says which check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckSpec {
    /// dbt-test style: `query` over the table `output` (the new version's rows)
    /// and, when there is one, `baseline`; passes when it returns no rows, or a
    /// single row whose first column is true.
    Sql {
        query: String,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        baseline: Option<Baseline>,
    },
    /// Rescans the output text for every PII kind `scrub_pii` knows (or `kinds`);
    /// fails above `max_per_million` detections per million characters (default 0).
    PiiResidual {
        #[serde(default)]
        max_per_million: f64,
        #[serde(default)]
        kinds: Vec<String>,
        #[serde(default)]
        severity: Severity,
    },
    /// Inter-annotator agreement of annotation / preference data: one row per
    /// (`item`, `annotator`, `label`), or one row per item with a list column
    /// `labels` (the i-th entry is annotator i's; nulls are missing). Reports
    /// Cohen's κ (`weights` = `none` | `linear` | `quadratic`) per annotator pair
    /// and overall, Fleiss' κ, Krippendorff's α (`level` = `nominal` | `ordinal` |
    /// `interval`); gates on `metric` (default: Cohen's κ with two annotators,
    /// Fleiss' κ with more) ≥ `min` (default 0.6).
    LabelAgreement {
        item: String,
        #[serde(default)]
        annotator: Option<String>,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        labels: Option<String>,
        #[serde(default)]
        metric: Option<AgreementMetric>,
        #[serde(default = "default_weights")]
        weights: String,
        #[serde(default = "default_level")]
        level: String,
        #[serde(default = "default_min_agreement")]
        min: f64,
        #[serde(default)]
        severity: Severity,
    },
    /// Near-duplicate items (MinHash LSH on `text`, verified by exact Jaccard ≥
    /// `threshold`, word 5-grams as `dedup_minhash`) whose `label` differs: the
    /// number of such pairs, the share of rows in one, and up to 5 examples; fails
    /// above `max_share` (default 0: any conflicting pair).
    ConflictingDuplicates {
        label: String,
        #[serde(default = "default_text_column")]
        text: String,
        #[serde(default = "default_conflict_threshold")]
        threshold: f64,
        #[serde(default)]
        max_share: f64,
        #[serde(default)]
        severity: Severity,
    },
    /// Against the baseline: `rows_change` bounds the change in row count
    /// (`"±20%"`, `"-10%..+50%"`), and `metric` (`psi`, Population Stability
    /// Index, default max 0.1; or `js`, Jensen-Shannon distance, natural log as
    /// scipy's, default max 0.1 — Evidently's defaults) compares the distribution
    /// of `column`: a numeric column in 10 quantile bins of the baseline; a string
    /// or boolean column (e.g. `lang` from a `langid` step) by the share of each
    /// value (at most 1,000 distinct); or, when the shards have no column of that
    /// name, `text_length` (characters of `text`, the default) or `token_count`
    /// (`n_tokens`, the length of `tokens`, or the Megatron `.idx` lengths).
    Distribution {
        #[serde(default)]
        rows_change: Option<String>,
        #[serde(default)]
        metric: Option<Metric>,
        #[serde(default)]
        column: Option<String>,
        #[serde(default)]
        max: Option<f64>,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        baseline: Option<Baseline>,
    },
    /// Against the baseline: embeds a seeded sample of each version's `text` (the
    /// first `max_tokens` tokens of `sample` documents, chosen by a hash of id and
    /// `seed`) with a sentence-embedding model run in Rust (all-MiniLM-L6-v2 by
    /// default) and compares them: each embedding's cosine similarity to the
    /// baseline's centroid (histograms, Kolmogorov–Smirnov), the distance between the
    /// mean embeddings, MMD² (RBF kernel, median heuristic) and a domain classifier's
    /// held-out ROC-AUC (logistic regression, 70/30 split). `method` gates on one of
    /// them; all are reported. The new sample's embeddings are written into the
    /// version (`vNNNNN/_embeddings/check-NNN.parquet`: id, vector) and reused as the
    /// baseline's by the next version.
    EmbeddingDrift {
        /// Documents sampled from each version (all of them when fewer).
        #[serde(default = "default_embed_sample")]
        sample: usize,
        /// Seeds the sample (a hash of id and seed orders the rows) and the
        /// classifier's train/test split.
        #[serde(default)]
        seed: u64,
        /// Tokens embedded per document, `[CLS]` and `[SEP]` included (the model's
        /// `max_seq_length`, 256 for all-MiniLM-L6-v2; at most 512).
        #[serde(default = "default_max_tokens")]
        max_tokens: usize,
        /// A sentence-transformers BERT model directory (`model.safetensors`,
        /// `config.json`, `tokenizer.json`; mean pooling), relative to the current
        /// directory. Default: `$DSPROC_MODELS/all-minilm-l6-v2` (DSPROC_MODELS
        /// defaulting to `~/.cache/dsproc-ground/models`), as `scripts/fetch-models.sh`
        /// puts it.
        #[serde(default)]
        model: Option<String>,
        /// The text column.
        #[serde(default = "default_text_column")]
        text: String,
        /// The statistic that passes or fails the check: `auc` (the default: the
        /// domain classifier's ROC-AUC, Evidently's default method; it reads the same
        /// on any model and sample size, 0.5 = indistinguishable, and sees shifts in
        /// any direction of the embedding space), `mmd` or `mean_distance`.
        #[serde(default = "default_drift_method")]
        method: String,
        /// Fails above this held-out ROC-AUC (Evidently's 0.55).
        #[serde(default = "default_max_auc")]
        max_auc: f64,
        /// Fails above this MMD² (Evidently's 0.015).
        #[serde(default = "default_max_mmd")]
        max_mmd: f64,
        /// Fails above this Euclidean distance between mean embeddings (Evidently's 0.2).
        #[serde(default = "default_max_mean_distance")]
        max_mean_distance: f64,
        #[serde(default)]
        severity: Severity,
        #[serde(default)]
        baseline: Option<Baseline>,
    },
}

/// `embedding_drift.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriftMethod {
    /// Domain classifier ROC-AUC on the held-out split.
    #[default]
    Auc,
    /// MMD² with an RBF kernel.
    Mmd,
    /// Euclidean distance between the mean embeddings.
    MeanDistance,
}

impl DriftMethod {
    pub const ALL: [DriftMethod; 3] = [Self::Auc, Self::Mmd, Self::MeanDistance];
    /// `"auc"` | `"mmd"` | `"mean_distance"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| format!("{s:?}: use auc, mmd or mean_distance"))
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Auc => "auc",
            Self::Mmd => "mmd",
            Self::MeanDistance => "mean_distance",
        }
    }
}

fn default_drift_method() -> String {
    "auc".into()
}
fn default_embed_sample() -> usize {
    10_000
}
fn default_max_tokens() -> usize {
    256
}
fn default_max_auc() -> f64 {
    0.55
}
fn default_max_mmd() -> f64 {
    0.015
}
fn default_max_mean_distance() -> f64 {
    0.2
}

/// The directory of `embedding_drift`'s model: `model`, else
/// `$DSPROC_MODELS/all-minilm-l6-v2` (DSPROC_MODELS defaulting to
/// `~/.cache/dsproc-ground/models`, where `scripts/fetch-models.sh` puts it).
pub fn embedding_model_dir(model: Option<&str>) -> std::path::PathBuf {
    match model {
        Some(m) => std::path::PathBuf::from(m.strip_prefix("file://").unwrap_or(m)),
        None => {
            let base = std::env::var_os("DSPROC_MODELS").map(std::path::PathBuf::from).unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/dsproc-ground/models")
            });
            base.join("all-minilm-l6-v2")
        }
    }
}

/// `label_agreement.metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgreementMetric {
    CohenKappa,
    FleissKappa,
    KrippendorffAlpha,
}

fn default_text_column() -> String {
    "text".into()
}
fn default_conflict_threshold() -> f64 {
    0.8
}
fn default_weights() -> String {
    "none".into()
}
fn default_level() -> String {
    "nominal".into()
}
fn default_min_agreement() -> f64 {
    0.6
}

/// `distribution.metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Psi,
    Js,
}

impl CheckSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sql { .. } => "sql",
            Self::PiiResidual { .. } => "pii_residual",
            Self::Distribution { .. } => "distribution",
            Self::LabelAgreement { .. } => "label_agreement",
            Self::ConflictingDuplicates { .. } => "conflicting_duplicates",
            Self::EmbeddingDrift { .. } => "embedding_drift",
        }
    }
    pub fn severity(&self) -> Severity {
        match self {
            Self::Sql { severity, .. }
            | Self::PiiResidual { severity, .. }
            | Self::Distribution { severity, .. }
            | Self::LabelAgreement { severity, .. }
            | Self::ConflictingDuplicates { severity, .. }
            | Self::EmbeddingDrift { severity, .. } => *severity,
        }
    }
    /// The pinned baseline version (None: the current one).
    pub fn baseline(&self) -> Option<&Baseline> {
        match self {
            Self::Sql { baseline, .. }
            | Self::Distribution { baseline, .. }
            | Self::EmbeddingDrift { baseline, .. } => baseline.as_ref(),
            Self::PiiResidual { .. } | Self::LabelAgreement { .. } | Self::ConflictingDuplicates { .. } => None,
        }
    }
    /// Checks values serde cannot; `Err((key, message))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(Baseline::Named(n)) = self.baseline() {
            if n != "current" {
                return Err(("baseline".into(), format!("{n:?}: use \"current\" or a version number")));
            }
        }
        match self {
            Self::Distribution { rows_change, metric, .. } => {
                if rows_change.is_none() && metric.is_none() {
                    return Err(("rows_change".into(), "give rows_change and/or metric".into()));
                }
                if let Some(r) = rows_change {
                    parse_change(r).map_err(|m| ("rows_change".to_string(), m))?;
                }
                Ok(())
            }
            Self::PiiResidual { kinds, max_per_million, .. } => {
                if max_per_million.is_nan() || *max_per_million < 0.0 {
                    return Err(("max_per_million".into(), "must be at least 0".into()));
                }
                for k in kinds {
                    if !dsproc_functions::pii::Kind::ALL.iter().any(|x| x.name() == k) {
                        let valid: Vec<&str> = dsproc_functions::pii::Kind::ALL.iter().map(|x| x.name()).collect();
                        return Err(("kinds".into(), format!("{k:?} is not a PII kind; valid: {}", valid.join(", "))));
                    }
                }
                Ok(())
            }
            Self::LabelAgreement { annotator, label, labels, weights, level, .. } => {
                match (annotator.is_some() && label.is_some(), labels.is_some()) {
                    (true, false) | (false, true) => {}
                    _ => {
                        return Err((
                            "labels".into(),
                            "give annotator and label (one row per label) or labels (a list per item)".into(),
                        ))
                    }
                }
                if !["none", "linear", "quadratic"].contains(&weights.as_str()) {
                    return Err(("weights".into(), format!("{weights:?}: use none, linear or quadratic")));
                }
                if !["nominal", "ordinal", "interval"].contains(&level.as_str()) {
                    return Err(("level".into(), format!("{level:?}: use nominal, ordinal or interval")));
                }
                Ok(())
            }
            Self::ConflictingDuplicates { threshold, max_share, .. } => {
                if !(*threshold > 0.0 && *threshold <= 1.0) {
                    return Err(("threshold".into(), format!("must be in (0, 1], got {threshold}")));
                }
                if max_share.is_nan() || !(0.0..=1.0).contains(max_share) {
                    return Err(("max_share".into(), format!("must be in [0, 1], got {max_share}")));
                }
                Ok(())
            }
            Self::EmbeddingDrift { sample, max_tokens, model, method, max_auc, max_mmd, max_mean_distance, .. } => {
                DriftMethod::parse(method).map_err(|m| ("method".to_string(), m))?;
                if *sample < 10 {
                    return Err(("sample".into(), format!("at least 10 documents, got {sample}")));
                }
                if !(2..=512).contains(max_tokens) {
                    return Err(("max_tokens".into(), format!("between 2 and 512, got {max_tokens}")));
                }
                if !(0.5..=1.0).contains(max_auc) {
                    return Err(("max_auc".into(), format!("between 0.5 and 1, got {max_auc}")));
                }
                for (k, v) in [("max_mmd", max_mmd), ("max_mean_distance", max_mean_distance)] {
                    if !v.is_finite() || *v < 0.0 {
                        return Err((k.into(), format!("a number of at least 0, got {v}")));
                    }
                }
                let dir = embedding_model_dir(model.as_deref());
                if let Some(missing) =
                    ["model.safetensors", "config.json", "tokenizer.json"].iter().find(|f| !dir.join(f).is_file())
                {
                    return Err((
                        "model".into(),
                        format!(
                            "{}: no {missing} (the default is $DSPROC_MODELS/all-minilm-l6-v2: fetch all-MiniLM-L6-v2 with scripts/fetch-models.sh, or set model = DIR)",
                            dir.display()
                        ),
                    ));
                }
                Ok(())
            }
            Self::Sql { .. } => Ok(()),
        }
    }
}

/// `"±20%"` → (-0.2, 0.2); `"-10%..+50%"` → (-0.1, 0.5).
pub fn parse_change(s: &str) -> Result<(f64, f64), String> {
    let pct = |x: &str| -> Result<f64, String> {
        let x = x.trim();
        x.strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|v| v / 100.0)
            .ok_or_else(|| format!("{s:?}: write e.g. \"±20%\" or \"-10%..+50%\""))
    };
    let t = s.trim();
    if let Some(rest) = t.strip_prefix('±').or_else(|| t.strip_prefix("+-")) {
        let v = pct(rest)?.abs();
        return Ok((-v, v));
    }
    match t.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (pct(a)?, pct(b)?);
            if a > b {
                return Err(format!("{s:?}: the lower bound is above the upper"));
            }
            Ok((a, b))
        }
        None => Err(format!("{s:?}: write e.g. \"±20%\" or \"-10%..+50%\"")),
    }
}
