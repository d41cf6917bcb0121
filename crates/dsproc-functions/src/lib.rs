//! DataFusion scalar functions used by dsproc ops, one file per function.
//!
//! They travel to Ballista executors by name: [`all_udfs`] is the closed list that
//! the driver, the scheduler and every executor register, so all agree on the set.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

/// `new()` (variadic, immutable signature) and `Default` for a UDF struct with a
/// `signature` field.
macro_rules! udf_boilerplate {
    ($t:ident) => {
        impl $t {
            pub fn new() -> Self {
                Self { signature: Signature::variadic_any(Volatility::Immutable) }
            }
        }
        impl Default for $t {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

pub mod bpe;
pub mod files;
pub mod hash;
pub mod langid;
pub mod minhash;
pub mod pii;
pub mod quality;
pub mod text;
pub mod tokenize;

/// Every dsproc scalar function.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(text::normalize_text::NormalizeTextFunc::new())),
        Arc::new(ScalarUDF::from(hash::content_hash::ContentHashFunc::new())),
        Arc::new(ScalarUDF::from(hash::shard_of::ShardOfFunc::new())),
        Arc::new(ScalarUDF::from(pii::scrub_pii::ScrubPiiFunc::new())),
        Arc::new(ScalarUDF::from(tokenize::TokenizeFunc::new())),
        Arc::new(ScalarUDF::from(tokenize::TokenizeChunksFunc::new())),
        Arc::new(ScalarUDF::from(quality::QualityFilterFunc::new())),
        Arc::new(ScalarUDF::from(langid::LangidFunc::new())),
        Arc::new(ScalarUDF::from(minhash::udf::MinHashBandsFunc::new())),
        Arc::new(ScalarUDF::from(minhash::udf::MinHashJaccardFunc::new())),
        Arc::new(ScalarUDF::from(minhash::udf::MinHashStateFunc::new())),
        Arc::new(ScalarUDF::from(minhash::udf::DedupRankFunc::new())),
        Arc::new(ScalarUDF::from(minhash::graph::GraphStepFunc::bucket_edges())),
        Arc::new(ScalarUDF::from(minhash::graph::GraphStepFunc::large_star())),
        Arc::new(ScalarUDF::from(minhash::graph::GraphStepFunc::small_star())),
    ]
}

/// Every dsproc window function.
pub fn all_udwfs() -> Vec<Arc<datafusion::logical_expr::WindowUDF>> {
    vec![Arc::new(datafusion::logical_expr::WindowUDF::from(minhash::verify::MinHashVerifyFunc::new()))]
}

/// True for the string types a UDF accepts (Ballista delivers `Utf8`, plain
/// DataFusion often `Utf8View`).
pub(crate) fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The argument as a `StringArray` (cast from `LargeUtf8`/`Utf8View` when needed).
pub(crate) fn string_arg(arg: &ColumnarValue, rows: usize, name: &str) -> Result<ArrayRef> {
    let array = arg.to_array(rows)?;
    match array.data_type() {
        DataType::Utf8 => Ok(array),
        t if is_string(t) => Ok(cast(&array, &DataType::Utf8)?),
        DataType::Null => Ok(Arc::new(StringArray::new_null(rows))),
        t => exec_err!("{name}: expected a string argument, got {t}"),
    }
}

/// A literal string argument (an option such as the normalization form).
pub(crate) fn literal_str(arg: &ColumnarValue, name: &str, what: &str) -> Result<String> {
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
        ) => Ok(s.clone()),
        _ => exec_err!("{name}: the {what} argument must be a string literal"),
    }
}

pub(crate) fn check_arg_types(name: &str, types: &[DataType], want: &[&str]) -> Result<()> {
    if types.len() != want.len() {
        return plan_err!("{name} takes {} arguments ({}), got {}", want.len(), want.join(", "), types.len());
    }
    for (t, w) in types.iter().zip(want) {
        let ok = match *w {
            "string" => is_string(t) || t == &DataType::Null,
            "integer" => t.is_integer() || t == &DataType::Null,
            _ => true,
        };
        if !ok {
            return plan_err!("{name}: expected {w} argument, got {t}");
        }
    }
    Ok(())
}

/// A JSON options literal (the second argument of option-taking functions), parsed.
pub(crate) fn json_options<T: serde::de::DeserializeOwned>(arg: &ColumnarValue, name: &str) -> Result<T> {
    let json = literal_str(arg, name, "options")?;
    match serde_json::from_str(&json) {
        Ok(o) => Ok(o),
        Err(e) => exec_err!("{name}: bad options {json:?}: {e}"),
    }
}

/// Downcasts an `ArrayRef` produced by [`string_arg`].
pub(crate) fn as_strings(a: &ArrayRef) -> &StringArray {
    a.as_any().downcast_ref::<StringArray>().expect("string_arg returns Utf8")
}
