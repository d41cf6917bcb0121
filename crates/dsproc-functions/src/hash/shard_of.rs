//! `shard_of(id, buckets)`: the output shard bucket of a row, from a stable hash of
//! its id, so shard membership never depends on partitioning or scheduling.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::array::UInt32Builder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::{as_strings, check_arg_types, string_arg};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShardOfFunc {
    signature: Signature,
}

impl ShardOfFunc {
    pub fn new() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl Default for ShardOfFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ShardOfFunc {
    fn name(&self) -> &str {
        "shard_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "integer"])?;
        Ok(DataType::UInt32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let buckets = match &args.args[1] {
            ColumnarValue::Scalar(v) => match v.cast_to(&DataType::UInt32)? {
                ScalarValue::UInt32(Some(n)) if n > 0 => n,
                _ => return exec_err!("shard_of: buckets must be a positive integer literal"),
            },
            _ => return exec_err!("shard_of: buckets must be a literal"),
        };
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let ids = as_strings(&input);
        let mut out = UInt32Builder::with_capacity(ids.len());
        for v in ids.iter() {
            // A null id cannot happen after the reader (it quarantines them); bucket 0 keeps the row.
            out.append_value(v.map_or(0, |s| dsproc_common::hash::shard_of(s.as_bytes(), buckets)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
