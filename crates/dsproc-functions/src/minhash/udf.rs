//! SQL functions of near-duplicate removal:
//! - `minhash_bands(text, params)`: `List<UInt64>` LSH band keys of the text's
//!   MinHash signature (empty for a text without shingles, null for null);
//! - `minhash_jaccard(a, b, params)`: exact Jaccard similarity of the two texts'
//!   shingle sets (`Float64`);
//! - `minhash_state(id, text, params)`: a surviving document's incremental state,
//!   `{n: id, k: band keys, s: sorted distinct shingle hashes}` (what a later
//!   version needs to find and verify its near-duplicates without the text);
//! - `dedup_rank(value, id)`: the sort key that makes "keep the row with the
//!   largest value, then the smallest id" a `min()`.
//!
//! `params` is a JSON literal of [`MinHashParams`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, Float64Builder, ListBuilder, StringBuilder, UInt64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{band_keys, jaccard, shingles, MinHashParams, Permutations};
use crate::{as_strings, check_arg_types, json_options, string_arg};

fn params(arg: &ColumnarValue, name: &str) -> Result<MinHashParams> {
    let p: MinHashParams = json_options(arg, name)?;
    if let Err(e) = p.check() {
        return exec_err!("{name}: {e}");
    }
    Ok(p)
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinHashBandsFunc {
    signature: Signature,
}
udf_boilerplate!(MinHashBandsFunc);

fn item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::UInt64, false))
}

impl ScalarUDFImpl for MinHashBandsFunc {
    fn name(&self) -> &str {
        "minhash_bands"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string"])?;
        Ok(DataType::List(item_field()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let p = params(&args.args[1], self.name())?;
        let perms = Permutations::new(p.num_perm, p.seed);
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let strings = as_strings(&input);
        let mut out = ListBuilder::with_capacity(UInt64Builder::with_capacity(strings.len() * p.bands), strings.len())
            .with_field(item_field());
        let (mut sh, mut sig, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for v in strings.iter() {
            let Some(text) = v else {
                out.append_null();
                continue;
            };
            shingles(text, p.ngram, p.shingle, &mut sh);
            if perms.signature(&sh, &mut sig) {
                band_keys(&sig, p.bands, p.rows, &mut keys);
                out.values().append_slice(&keys);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinHashStateFunc {
    signature: Signature,
}
udf_boilerplate!(MinHashStateFunc);

/// The struct `minhash_state` returns: `n` the id, `k` the band keys, `s` the
/// shingle set as the low 32 bits of each shingle hash, sorted and distinct
/// (half the size of the 64-bit hashes, and Parquet's delta encoding packs the
/// sorted values into ~3 bytes each; a false match between two documents'
/// distinct shingles has probability 2^-32 per pair of shingles).
pub fn state_fields() -> datafusion::arrow::datatypes::Fields {
    let keys = DataType::List(item_field());
    let set = DataType::List(Arc::new(Field::new("item", DataType::UInt32, false)));
    vec![Field::new("n", DataType::Utf8, true), Field::new("k", keys, true), Field::new("s", set, true)].into()
}

impl ScalarUDFImpl for MinHashStateFunc {
    fn name(&self) -> &str {
        "minhash_state"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string", "string"])?;
        Ok(DataType::Struct(state_fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::StructArray;
        let p = params(&args.args[2], self.name())?;
        let perms = Permutations::new(p.num_perm, p.seed);
        let ids = string_arg(&args.args[0], args.number_rows, self.name())?;
        let input = string_arg(&args.args[1], args.number_rows, self.name())?;
        let (ids, strings) = (as_strings(&ids), as_strings(&input));
        let mut n = StringBuilder::with_capacity(ids.len(), ids.value_data().len());
        let mut keys = ListBuilder::with_capacity(UInt64Builder::with_capacity(strings.len() * p.bands), strings.len())
            .with_field(item_field());
        let mut sets = ListBuilder::with_capacity(datafusion::arrow::array::UInt32Builder::new(), strings.len())
            .with_field(Arc::new(Field::new("item", DataType::UInt32, false)));
        let mut low: Vec<u32> = Vec::new();
        let (mut sh, mut sig, mut k) = (Vec::new(), Vec::new(), Vec::new());
        for (id, text) in ids.iter().zip(strings.iter()) {
            n.append_option(id);
            let Some(text) = text else {
                keys.append_null();
                sets.append_null();
                continue;
            };
            shingles(text, p.ngram, p.shingle, &mut sh);
            if perms.signature(&sh, &mut sig) {
                band_keys(&sig, p.bands, p.rows, &mut k);
                keys.values().append_slice(&k);
            }
            keys.append(true);
            low.clear();
            low.extend(sh.iter().map(|&h| h as u32));
            low.sort_unstable();
            low.dedup();
            sets.values().append_slice(&low);
            sets.append(true);
        }
        let st = StructArray::try_new(
            state_fields(),
            vec![Arc::new(n.finish()), Arc::new(keys.finish()), Arc::new(sets.finish())],
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(st)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinHashJaccardFunc {
    signature: Signature,
}
udf_boilerplate!(MinHashJaccardFunc);

impl ScalarUDFImpl for MinHashJaccardFunc {
    fn name(&self) -> &str {
        "minhash_jaccard"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string", "string"])?;
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let p = params(&args.args[2], self.name())?;
        let a = string_arg(&args.args[0], args.number_rows, self.name())?;
        let b = string_arg(&args.args[1], args.number_rows, self.name())?;
        let (a, b) = (as_strings(&a), as_strings(&b));
        let mut out = Float64Builder::with_capacity(a.len());
        let (mut sa, mut sb) = (Vec::new(), Vec::new());
        for (x, y) in a.iter().zip(b.iter()) {
            match (x, y) {
                (Some(x), Some(y)) => {
                    shingles(x, p.ngram, p.shingle, &mut sa);
                    shingles(y, p.ngram, p.shingle, &mut sb);
                    out.append_value(jaccard(&mut sa, &mut sb));
                }
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DedupRankFunc {
    signature: Signature,
}
udf_boilerplate!(DedupRankFunc);

impl ScalarUDFImpl for DedupRankFunc {
    fn name(&self) -> &str {
        "dedup_rank"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() != 2 || !(arg_types[0].is_numeric() || arg_types[0] == DataType::Null) {
            return plan_err!("dedup_rank takes (numeric value, id string), got {arg_types:?}");
        }
        check_arg_types(self.name(), &arg_types[1..], &["string"])?;
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Float64)?;
        let values = values.as_any().downcast_ref::<Float64Array>().expect("cast to Float64");
        let ids = string_arg(&args.args[1], args.number_rows, self.name())?;
        let ids = as_strings(&ids);
        let mut out = StringBuilder::with_capacity(ids.len(), ids.value_data().len() + 16 * ids.len());
        for i in 0..ids.len() {
            if ids.is_null(i) {
                out.append_null();
            } else {
                let v = (!values.is_null(i)).then(|| values.value(i));
                out.append_value(super::rank_key(v, ids.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
