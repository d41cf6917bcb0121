//! `content_hash(text, form, whitespace)`: 128-bit xxh3 of the normalized text, as
//! `FixedSizeBinary(16)`. Exact dedup groups rows by it.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::array::FixedSizeBinaryBuilder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::text::normalize_text::{normalize_str, parse_options};
use crate::{as_strings, check_arg_types, string_arg};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ContentHashFunc {
    signature: Signature,
}

impl ContentHashFunc {
    pub fn new() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl Default for ContentHashFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ContentHashFunc {
    fn name(&self) -> &str {
        "content_hash"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string", "string"])?;
        Ok(DataType::FixedSizeBinary(16))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (form, ws) = parse_options(self.name(), &args.args[1], &args.args[2])?;
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let strings = as_strings(&input);
        let mut out = FixedSizeBinaryBuilder::with_capacity(strings.len(), 16);
        for v in strings.iter() {
            match v {
                Some(s) => {
                    out.append_value(dsproc_common::hash::content_hash(normalize_str(s, form, ws).as_bytes()))?
                }
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
