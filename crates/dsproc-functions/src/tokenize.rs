//! `tokenize(text, options_json)`: encodes text with a Hugging Face
//! `tokenizer.json` and returns `struct{tokens: List<UInt32>, n_tokens, truncated}`.
//!
//! The tokenizer file is loaded once per process (keyed by path and sha256) and
//! shared by every partition; each call encodes its batch sequentially on the
//! calling thread, so parallelism comes from DataFusion's partitions and the
//! tokenizers crate's own thread pool is never used (no oversubscription).
//! Options (JSON literal): `path`, `sha256` (checked where the function runs, so an
//! executor with a different file fails instead of producing other ids),
//! `add_special_tokens` (the tokenizer's post-processor, e.g. BERT's [CLS]/[SEP]),
//! `bos_id`, `eos_id` (prepended / appended ids), `max_tokens` (truncation; the EOS
//! is kept).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, ListArray, StructArray, UInt32Array};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use dsproc_common::error::Chain;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::{as_strings, check_arg_types, json_options, string_arg};

/// Options of one `tokenize` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeOptions {
    /// Local path of the tokenizer.json.
    pub path: String,
    /// Its sha256 (hex) when the job was planned.
    pub sha256: String,
    pub add_special_tokens: bool,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// At most this many ids per document, BOS and EOS included.
    pub max_tokens: Option<u32>,
}

/// A loaded tokenizer with the facts the manifest records.
#[derive(Debug)]
pub struct LoadedTokenizer {
    pub tokenizer: Tokenizer,
    pub sha256: String,
    /// Vocabulary size, added tokens included.
    pub vocab_size: usize,
    /// The fast byte-level BPE encoder, when it reproduces this file exactly.
    pub fast: Option<crate::bpe::FastEncoder>,
    /// Which encoder runs (the manifest records it).
    pub encoder: crate::bpe::EncoderPath,
    /// Why the fast encoder does not run, when it does not.
    pub fast_refusal: Option<String>,
}

impl LoadedTokenizer {
    /// The id of a token of the vocabulary (added tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Encodes one text into `out` (cleared first). Returns whether it was truncated.
    pub fn encode(
        &self,
        text: &str,
        opts: &TokenizeOptions,
        out: &mut Vec<u32>,
    ) -> std::result::Result<bool, TokenizeError> {
        out.clear();
        if let Some(b) = opts.bos_id {
            out.push(b);
        }
        match &self.fast {
            Some(fast) => fast.encode(text, opts.add_special_tokens, out).map_err(TokenizeError::FastEncode)?,
            None => {
                let enc = self.tokenizer.encode_fast(text, opts.add_special_tokens).map_err(TokenizeError::Encode)?;
                out.extend_from_slice(enc.get_ids());
            }
        }
        let mut truncated = false;
        if let Some(max) = opts.max_tokens {
            let keep = (max as usize).saturating_sub(usize::from(opts.eos_id.is_some()));
            if out.len() > keep {
                out.truncate(keep);
                truncated = true;
            }
        }
        if let Some(e) = opts.eos_id {
            out.push(e);
        }
        Ok(truncated)
    }
}

/// Why a tokenizer could not be loaded or could not encode a text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The file could not be read or fetched.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error(
        "tokenizer {path} has sha256 {found} here, but the job was planned with {planned}: every machine needs the same file"
    )]
    Sha256Mismatch { path: String, found: String, planned: String },
    #[error("tokenizer {path} is not a valid tokenizer.json")]
    Invalid {
        path: String,
        #[source]
        source: tokenizers::Error,
    },
    /// The tokenizer's own truncation could not be switched off.
    #[error("tokenizer {path}")]
    Configure {
        path: String,
        #[source]
        source: tokenizers::Error,
    },
    #[error(transparent)]
    Encode(tokenizers::Error),
    #[error(transparent)]
    FastEncode(crate::bpe::EncodeError),
}

type Cache = Mutex<HashMap<String, Arc<LoadedTokenizer>>>;

/// Loads `path` once per process. With `expect_sha256`, a file with other
/// contents is an error naming both hashes.
pub fn load(path: &str, expect_sha256: Option<&str>) -> std::result::Result<Arc<LoadedTokenizer>, TokenizeError> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    // Checked at every load, cached or not (a URL is checked again by its store).
    dsproc_io::policy::check_read(path)
        .map_err(|e| crate::files::FileError::Denied { what: "tokenizer", source: e })?;
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = map.get(path) {
        if expect_sha256.is_none_or(|s| s == t.sha256) {
            return Ok(Arc::clone(t));
        }
    }
    let bytes = crate::files::read_bytes(path, "tokenizer")?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(want) = expect_sha256 {
        if want != sha256 {
            return Err(TokenizeError::Sha256Mismatch {
                path: path.to_string(),
                found: sha256,
                planned: want.to_string(),
            });
        }
    }
    let mut tokenizer =
        Tokenizer::from_bytes(&bytes).map_err(|source| TokenizeError::Invalid { path: path.to_string(), source })?;
    // Files exported for inference often pad or truncate (e.g. to 128): a corpus
    // needs every token, and `max_tokens` is the job's own truncation.
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(|source| TokenizeError::Configure { path: path.to_string(), source })?;
    let vocab_size = tokenizer.get_vocab_size(true);
    // The fast encoder where it reproduces the file exactly (its loader checks every
    // stage); `DSPROC_TOKENIZER_ENCODER=hf` keeps the tokenizers crate (benchmarks).
    let (fast, fast_refusal) = match std::env::var("DSPROC_TOKENIZER_ENCODER").as_deref() {
        Ok("hf") => (None, Some("DSPROC_TOKENIZER_ENCODER=hf".to_string())),
        _ => match crate::bpe::FastEncoder::from_json(&bytes) {
            Ok(f) => match fast_agrees(&f, &tokenizer) {
                Ok(()) => (Some(f), None),
                Err(why) => (None, Some(why)),
            },
            Err(r) => (None, Some(r.0)),
        },
    };
    let encoder = if fast.is_some() { crate::bpe::EncoderPath::Fast } else { crate::bpe::EncoderPath::HfTokenizers };
    let t = Arc::new(LoadedTokenizer { tokenizer, sha256, vocab_size, fast, encoder, fast_refusal });
    map.insert(path.to_string(), Arc::clone(&t));
    Ok(t)
}

/// Text the fast encoder must encode exactly as the tokenizers crate before it is
/// used: contractions, digit runs, mixed scripts, CJK, emoji, whitespace runs,
/// control characters and code. A file whose stages the loader accepted but whose
/// ids still differ here falls back to the crate (reported), never to other ids.
const SELF_CHECK: &str = "It's 2026-12-02; they'll pay $1,234,567.89 (3.5%) — naïve café déjà vu.\n\n\tdef f(x):\r\n    return x**2  # ok?\u{0}\u{7}\n\
    日本語のテキスト、中文文本。한국어 텍스트 Ελληνικά русский עברית العربية हिन्दी\n\
    emoji 👩‍👩‍👧‍👦🎉🇺🇸 ZWJ\u{200d}joiner   trailing   \n\n\n   <|endoftext|> [CLS] </s>\u{a0}\u{2003}end";

/// Ok when `fast` gives the crate's ids on [`SELF_CHECK`] (with and without
/// special tokens), else why not.
pub fn fast_agrees(fast: &crate::bpe::FastEncoder, tokenizer: &Tokenizer) -> std::result::Result<(), String> {
    for add_special in [false, true] {
        let want = tokenizer.encode_fast(SELF_CHECK, add_special).map_err(|e| format!("self-check: {e}"))?;
        let mut got = Vec::new();
        fast.encode(SELF_CHECK, add_special, &mut got).map_err(|e| format!("self-check: {e}"))?;
        if got != want.get_ids() {
            return Err(format!(
                "the fast BPE encoder's ids differ from the tokenizers crate's on the self-check text (add_special_tokens = {add_special})"
            ));
        }
    }
    Ok(())
}

/// The tokenizer the job was planned with (sha256 checked), as a function error.
fn planned(opts: &TokenizeOptions) -> Result<Arc<LoadedTokenizer>> {
    match load(&opts.path, Some(&opts.sha256)) {
        Ok(t) => Ok(t),
        Err(e) => exec_err!("tokenize: {}", Chain(&e)),
    }
}

pub use crate::files::is_url;

/// The function's return type.
pub fn result_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("tokens", DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), false),
        Field::new("n_tokens", DataType::UInt32, false),
        Field::new("truncated", DataType::UInt32, false),
    ]))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenizeFunc {
    signature: Signature,
}

udf_boilerplate!(TokenizeFunc);

impl ScalarUDFImpl for TokenizeFunc {
    fn name(&self) -> &str {
        "tokenize"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string"])?;
        Ok(result_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let opts: TokenizeOptions = json_options(&args.args[1], self.name())?;
        let tok = planned(&opts)?;
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let texts = as_strings(&input);
        let n = texts.len();
        let mut ids: Vec<u32> = Vec::with_capacity(texts.value_data().len() / 3);
        let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut counts = Vec::with_capacity(n);
        let mut truncated = Vec::with_capacity(n);
        let mut buf = Vec::new();
        for i in 0..n {
            let text = if texts.is_null(i) { "" } else { texts.value(i) };
            let t = match tok.encode(text, &opts, &mut buf) {
                Ok(t) => t,
                Err(e) => return exec_err!("tokenize: {}", Chain(&e)),
            };
            ids.extend_from_slice(&buf);
            let Ok(end) = i32::try_from(ids.len()) else {
                return exec_err!("tokenize: more than 2^31 tokens in one batch; lower the batch size");
            };
            offsets.push(end);
            counts.push(buf.len() as u32);
            truncated.push(u32::from(t));
        }
        let item = Arc::new(Field::new("item", DataType::UInt32, false));
        let list = ListArray::try_new(
            item,
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(UInt32Array::from(ids)),
            None,
        )?;
        let DataType::Struct(fields) = result_type() else { unreachable!("struct type") };
        let out = StructArray::try_new(
            fields,
            vec![Arc::new(list), Arc::new(UInt32Array::from(counts)), Arc::new(UInt32Array::from(truncated))],
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `tokenize_chunks(text, options_json)`: `overflow = "split"`. The text's ids are
/// cut into pieces of `max_tokens` minus BOS/EOS, each wrapped with BOS/EOS, as a
/// list of `struct{part, parts, tokens, n_tokens}` (at least one element, so
/// unnesting never loses a row).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenizeChunksFunc {
    signature: Signature,
}

udf_boilerplate!(TokenizeChunksFunc);

fn chunk_fields() -> Fields {
    Fields::from(vec![
        Field::new("part", DataType::UInt32, false),
        Field::new("parts", DataType::UInt32, false),
        Field::new("tokens", DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), false),
        Field::new("n_tokens", DataType::UInt32, false),
    ])
}

impl ScalarUDFImpl for TokenizeChunksFunc {
    fn name(&self) -> &str {
        "tokenize_chunks"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string"])?;
        Ok(DataType::List(Arc::new(Field::new("item", DataType::Struct(chunk_fields()), false))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let opts: TokenizeOptions = json_options(&args.args[1], self.name())?;
        let tok = planned(&opts)?;
        let fixed = usize::from(opts.bos_id.is_some()) + usize::from(opts.eos_id.is_some());
        let Some(room) = opts.max_tokens.map(|m| m as usize).filter(|m| *m > fixed).map(|m| m - fixed) else {
            return exec_err!("tokenize_chunks: max_tokens must leave room besides BOS/EOS");
        };
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let texts = as_strings(&input);
        let (mut part, mut parts, mut n_tokens) = (Vec::new(), Vec::new(), Vec::new());
        let mut ids: Vec<u32> = Vec::new();
        let mut tok_offsets: Vec<i32> = vec![0];
        let mut list_offsets: Vec<i32> = vec![0];
        let unbounded = TokenizeOptions { bos_id: None, eos_id: None, max_tokens: None, ..opts.clone() };
        let mut content = Vec::new();
        for i in 0..texts.len() {
            let text = if texts.is_null(i) { "" } else { texts.value(i) };
            if let Err(e) = tok.encode(text, &unbounded, &mut content) {
                return exec_err!("tokenize: {}", Chain(&e));
            }
            let pieces: Vec<&[u32]> = if content.is_empty() { vec![&[]] } else { content.chunks(room).collect() };
            for (k, piece) in pieces.iter().enumerate() {
                let start = ids.len();
                ids.extend(opts.bos_id);
                ids.extend_from_slice(piece);
                ids.extend(opts.eos_id);
                let Ok(end) = i32::try_from(ids.len()) else {
                    return exec_err!("tokenize: more than 2^31 tokens in one batch; lower the batch size");
                };
                tok_offsets.push(end);
                part.push(k as u32);
                parts.push(pieces.len() as u32);
                n_tokens.push((ids.len() - start) as u32);
            }
            list_offsets.push(part.len() as i32);
        }
        let item = Arc::new(Field::new("item", DataType::UInt32, false));
        let tokens = ListArray::try_new(
            item,
            OffsetBuffer::new(ScalarBuffer::from(tok_offsets)),
            Arc::new(UInt32Array::from(ids)),
            None,
        )?;
        let chunks = StructArray::try_new(
            chunk_fields(),
            vec![
                Arc::new(UInt32Array::from(part)),
                Arc::new(UInt32Array::from(parts)),
                Arc::new(tokens),
                Arc::new(UInt32Array::from(n_tokens)),
            ],
            None,
        )?;
        let field = Arc::new(Field::new("item", DataType::Struct(chunk_fields()), false));
        let out =
            ListArray::try_new(field, OffsetBuffer::new(ScalarBuffer::from(list_offsets)), Arc::new(chunks), None)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
