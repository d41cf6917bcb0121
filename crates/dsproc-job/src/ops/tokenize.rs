//! `tokenize`: encodes `text` with a Hugging Face tokenizer.json and adds `tokens`
//! (List<UInt32>) and `n_tokens` (UInt32). The manifest's step entry records the
//! tokenizer file's sha256 and vocabulary size; its stats the total tokens and the
//! documents cut by `max_tokens`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions::string::expr_fn::concat;
use datafusion::logical_expr::{cast, col, lit, when, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use serde::{Deserialize, Serialize};

use dsproc_common::error::Chain;
use dsproc_common::DsprocError;
use dsproc_functions::tokenize::{
    load, LoadedTokenizer, TokenizeChunksFunc, TokenizeError, TokenizeFunc, TokenizeOptions,
};

use super::{summed, Op, OpError, OpParseError, PlanContext};

/// Encodes `text` with a Hugging Face tokenizer.json and adds `tokens`
/// (List<UInt32>) and `n_tokens` (UInt32).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tokenize {
    /// Path of a Hugging Face `tokenizer.json` (relative to the current directory, like
    /// input and output paths) or a URL: `http(s)://`, `s3://`, `gs://`, `az://`
    /// (credentials from the standard environment variables). Any model
    /// the `tokenizers` library reads: byte-level BPE, WordPiece, Unigram. The file
    /// must be present at the same path wherever the job runs (executors check its
    /// sha256).
    pub tokenizer: String,
    /// Prepend the BOS token.
    #[serde(default)]
    pub add_bos: bool,
    /// Append the EOS token (packing-style document separator).
    #[serde(default)]
    pub append_eos: bool,
    /// BOS token (default: the first of `<|begin_of_text|>`, `<s>`, `<bos>`,
    /// `<|startoftext|>`, `<SOS>`, `[CLS]` in the vocabulary).
    pub bos_token: Option<String>,
    /// EOS token (default: the first of `<|endoftext|>`, `<|end_of_text|>`, `</s>`,
    /// `<eos>`, `<EOT>`, `[SEP]` in the vocabulary).
    pub eos_token: Option<String>,
    /// Run the tokenizer's post-processor (e.g. BERT's `[CLS] … [SEP]`; off, as
    /// for corpus pre-tokenization).
    #[serde(default)]
    pub add_special_tokens: bool,
    /// At most this many tokens per document, BOS and EOS included.
    pub max_tokens: Option<u32>,
    /// What happens past `max_tokens`: `truncate` (the EOS stays last) or `split`
    /// (the document becomes several rows `<id>#0`, `<id>#1`, … of at most
    /// `max_tokens`, each with BOS/EOS; the manifest counts them in `rows.added`).
    #[serde(default)]
    pub overflow: Overflow,
}

/// `tokenize.overflow`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Cut the document at `max_tokens` (the EOS stays last).
    #[default]
    Truncate,
    /// One row per `max_tokens` chunk, each with BOS/EOS.
    Split,
}

const BOS_NAMES: &[&str] = &["<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<SOS>", "[CLS]"];
const EOS_NAMES: &[&str] = &["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<EOT>", "[SEP]"];

/// Why the tokenizer options could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeOptionsError {
    /// The tokenizer file could not be loaded.
    #[error(transparent)]
    Load(#[from] TokenizeError),
    #[error("{key}: {name:?} is not in the vocabulary")]
    NotInVocabulary { key: String, name: String },
    #[error("{key}: the tokenizer has none of {known}; name one with `{key} = \"...\"`")]
    NoKnownToken { key: String, known: String },
    #[error("max_tokens = {0} leaves no room for text besides BOS/EOS")]
    NoRoom(u32),
}

impl Tokenize {
    fn path(&self, base: &std::path::Path) -> String {
        if dsproc_functions::tokenize::is_url(&self.tokenizer) {
            return self.tokenizer.clone();
        }
        base.join(self.tokenizer.strip_prefix("file://").unwrap_or(&self.tokenizer)).display().to_string()
    }

    /// The special token id for `key` (explicit name or the first known name present).
    fn special(
        &self,
        tok: &LoadedTokenizer,
        key: &str,
        wanted: bool,
        name: Option<&str>,
        known: &[&str],
    ) -> Result<Option<u32>, TokenizeOptionsError> {
        if !wanted {
            return Ok(None);
        }
        match name {
            Some(n) => tok.token_id(n).map(Some).ok_or_else(|| TokenizeOptionsError::NotInVocabulary {
                key: key.to_string(),
                name: n.to_string(),
            }),
            None => known.iter().find_map(|n| tok.token_id(n)).map(Some).ok_or_else(|| {
                TokenizeOptionsError::NoKnownToken { key: key.to_string(), known: known.join(", ") }
            }),
        }
    }

    /// Loads the tokenizer and resolves the options the function runs with.
    pub fn options(
        &self,
        base: &std::path::Path,
    ) -> Result<(Arc<LoadedTokenizer>, TokenizeOptions), TokenizeOptionsError> {
        let path = self.path(base);
        let tok = load(&path, None)?;
        let bos_id = self.special(&tok, "bos_token", self.add_bos, self.bos_token.as_deref(), BOS_NAMES)?;
        let eos_id = self.special(&tok, "eos_token", self.append_eos, self.eos_token.as_deref(), EOS_NAMES)?;
        if let Some(m) = self.max_tokens {
            let fixed = u32::from(bos_id.is_some()) + u32::from(eos_id.is_some());
            if m <= fixed {
                return Err(TokenizeOptionsError::NoRoom(m));
            }
        }
        let opts = TokenizeOptions {
            path,
            sha256: tok.sha256.clone(),
            add_special_tokens: self.add_special_tokens,
            bos_id,
            eos_id,
            max_tokens: self.max_tokens,
        };
        Ok((tok, opts))
    }

    /// Static facts for the manifest.
    fn manifest_info(&self, base: &std::path::Path) -> serde_json::Value {
        match self.options(base) {
            Ok((tok, o)) => serde_json::json!({
                "tokenizer": o.path,
                "tokenizer_sha256": tok.sha256,
                "vocab_size": tok.vocab_size,
                "encoder": tok.encoder.name(),
                "encoder_fallback_reason": tok.fast_refusal,
                "bos_id": o.bos_id,
                "eos_id": o.eos_id,
                "add_special_tokens": o.add_special_tokens,
                "max_tokens": o.max_tokens,
                "overflow": self.overflow,
            }),
            Err(e) => serde_json::json!({ "error": Chain(&e).to_string() }),
        }
    }
}

impl Op for Tokenize {
    const NAME: &'static str = "tokenize";
    const VERSION: u32 = 1;

    fn check(&self) -> Result<(), OpParseError> {
        if self.overflow == Overflow::Split && self.max_tokens.is_none() {
            return Err(OpParseError::invalid("overflow", "\"split\" needs max_tokens"));
        }
        if self.max_tokens == Some(0) {
            return Err(OpParseError::invalid("max_tokens", "must be at least 1"));
        }
        Ok(())
    }

    fn add_reason(&self) -> Option<&'static str> {
        (self.overflow == Overflow::Split).then_some("split")
    }

    fn info(&self, base: &std::path::Path) -> Option<serde_json::Value> {
        Some(self.manifest_info(base))
    }

    /// Renames the summed counters: `n_tokens` → `tokens`.
    fn finish_stats(
        _info: Option<&serde_json::Value>,
        counters: &mut std::collections::BTreeMap<String, u64>,
    ) -> Result<(), OpError> {
        if let Some(n) = counters.remove("n_tokens") {
            counters.insert("tokens".into(), n);
        }
        // split: chunk numbering, summed by the statistics node, means nothing
        counters.remove("part");
        counters.remove("parts");
        Ok(())
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        // The whole chain in the message: `run_job`'s callers (tests, embedders) print it
        // with `to_string()`, not only the CLI.
        let (_, opts) = self
            .options(pc.base)
            .map_err(|e| DsprocError::usage(format!("step {} (tokenize): {}", pc.step, Chain(&e))))?;
        let err =
            |e: datafusion::error::DataFusionError| DsprocError::usage(format!("step {} (tokenize): {e}", pc.step));
        let json = serde_json::to_string(&opts).map_err(|e| DsprocError::usage(e.to_string()))?;
        if self.overflow == Overflow::Split {
            return self.plan_split(pc, input, json);
        }
        let udf = ScalarUDF::from(TokenizeFunc::new());
        let mut exprs: Vec<Expr> = input.schema().columns().into_iter().map(col).collect();
        exprs.push(udf.call(vec![col("text"), lit(json)]).alias("__dsproc_tok"));
        let plan = LogicalPlanBuilder::from(input.clone()).project(exprs).and_then(|b| b.build()).map_err(err)?;
        // Totals for the manifest; the node also keeps the optimizer from merging the
        // projections (which would encode once per unpacked field).
        let plan = summed(pc, plan, "tokenize", "__dsproc_tok");
        let mut exprs: Vec<Expr> = Vec::new();
        for c in input.schema().columns() {
            if !matches!(c.name.as_str(), "tokens" | "n_tokens") {
                exprs.push(col(c));
            }
        }
        exprs.push(get_field(col("__dsproc_tok"), "tokens").alias("tokens"));
        exprs.push(get_field(col("__dsproc_tok"), "n_tokens").alias("n_tokens"));
        LogicalPlanBuilder::from(plan).project(exprs).and_then(|b| b.build()).map_err(err)
    }
}

impl Tokenize {
    /// `overflow = "split"`: one row per chunk (unnested), ids `<id>#<k>` for split documents.
    fn plan_split(&self, pc: &PlanContext<'_>, input: LogicalPlan, json: String) -> Result<LogicalPlan, DsprocError> {
        let err =
            |e: datafusion::error::DataFusionError| DsprocError::usage(format!("step {} (tokenize): {e}", pc.step));
        let udf = ScalarUDF::from(TokenizeChunksFunc::new());
        let mut exprs: Vec<Expr> = input.schema().columns().into_iter().map(col).collect();
        exprs.push(udf.call(vec![col("text"), lit(json)]).alias("__dsproc_chunks"));
        let plan = LogicalPlanBuilder::from(input.clone())
            .project(exprs)
            .and_then(|b| b.unnest_column("__dsproc_chunks"))
            .and_then(|b| b.build())
            .map_err(err)?;
        let plan = summed(pc, plan, "tokenize", "__dsproc_chunks");
        let chunk = |f: &str| get_field(col("__dsproc_chunks"), f);
        let id = cast(col("id"), DataType::Utf8);
        let split_id = concat(vec![id.clone(), lit("#"), cast(chunk("part"), DataType::Utf8)]);
        let mut exprs: Vec<Expr> = Vec::new();
        for c in input.schema().columns() {
            match c.name.as_str() {
                "tokens" | "n_tokens" => {}
                "id" => exprs.push(
                    when(chunk("parts").gt(lit(1u32)), split_id.clone())
                        .otherwise(id.clone())
                        .map_err(err)?
                        .alias("id"),
                ),
                _ => exprs.push(col(c)),
            }
        }
        exprs.push(chunk("tokens").alias("tokens"));
        exprs.push(chunk("n_tokens").alias("n_tokens"));
        LogicalPlanBuilder::from(plan).project(exprs).and_then(|b| b.build()).map_err(err)
    }
}
