//! `minhash_verify(side, text, params) OVER (PARTITION BY lo ORDER BY side, hi)`:
//! the exact Jaccard of each candidate against its group's anchor document,
//! without copying the anchor's text onto every row.
//!
//! Rows of a group: the anchor (`side = 0`, its text once) first, then one row per
//! candidate (`side = 1`). The evaluator keeps the anchor's shingle set and returns,
//! for each candidate row, its Jaccard similarity with the anchor (null on the
//! anchor row). It only looks at the current row, so DataFusion runs it in bounded
//! memory over sorted, spillable input.
//!
//! `minhash_verify(side, text, params, shingles)`: a row whose text is null and
//! whose `shingles` (a `List<UInt32>`: the low 32 bits of the shingle hashes,
//! sorted and distinct, as `minhash_state` stores them) is not is a document of
//! an earlier version: its stored set stands in for its text, and the other
//! document of the pair is compared on the low 32 bits of its hashes too.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, TypeSignature, Volatility, WindowUDFImpl};

use super::{jaccard, shingles, MinHashParams};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinHashVerifyFunc {
    signature: Signature,
}

impl MinHashVerifyFunc {
    pub fn new() -> Self {
        let list = DataType::List(Arc::new(Field::new("item", DataType::UInt32, true)));
        let strict = DataType::List(Arc::new(Field::new("item", DataType::UInt32, false)));
        let three = vec![DataType::Int64, DataType::Utf8, DataType::Utf8];
        let four = |l: &DataType| vec![DataType::Int64, DataType::Utf8, DataType::Utf8, l.clone()];
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(three),
                    TypeSignature::Exact(four(&list)),
                    TypeSignature::Exact(four(&strict)),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for MinHashVerifyFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowUDFImpl for MinHashVerifyFunc {
    fn name(&self) -> &str {
        "minhash_verify"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(VerifyEvaluator::default()))
    }
    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Field::new(field_args.name(), DataType::Float64, true).into())
    }
}

#[derive(Debug, Default)]
struct VerifyEvaluator {
    params: Option<MinHashParams>,
    anchor: Option<Vec<u64>>,
    /// The group's anchor is a saved index (a row with no text).
    index_anchor: bool,
    /// The anchor is a stored shingle set (low 32 bits of each hash).
    anchor_low: bool,
    scratch: Vec<u64>,
}

impl PartitionEvaluator for VerifyEvaluator {
    fn supports_bounded_execution(&self) -> bool {
        true
    }
    fn uses_window_frame(&self) -> bool {
        false
    }
    fn is_causal(&self) -> bool {
        true
    }
    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let i = range.start;
        let (side, text, params) = (&values[0], &values[1], &values[2]);
        if self.params.is_none() {
            let p = params.as_string::<i32>();
            if p.is_null(i) {
                return exec_err!("minhash_verify: params must be a string literal");
            }
            self.params = Some(match serde_json::from_str(p.value(i)) {
                Ok(p) => p,
                Err(e) => return exec_err!("minhash_verify: bad params: {e}"),
            });
        }
        let p = self.params.as_ref().expect("set above");
        let side = side.as_primitive::<Int64Type>();
        let text = text.as_string::<i32>();
        if side.is_null(i) {
            return Ok(ScalarValue::Float64(None));
        }
        // an earlier version's document: its stored shingle set (the low 32 bits
        // of each hash); the other side of the pair is compared on its low 32 bits too
        let stored = values.get(3).map(|s| s.as_list::<i32>()).filter(|l| text.is_null(i) && !l.is_null(i)).map(|l| {
            let v = l.value(i);
            v.as_primitive::<datafusion::arrow::datatypes::UInt32Type>().values().iter().map(|&h| h as u64).collect()
        });
        if let Some(set) = stored {
            if side.value(i) == 0 {
                self.index_anchor = false;
                self.anchor = Some(set);
                self.anchor_low = true;
                return Ok(ScalarValue::Float64(None));
            }
            let Some(anchor) = self.anchor.as_mut() else {
                return Ok(ScalarValue::Float64(self.index_anchor.then_some(1.0)));
            };
            self.scratch = set;
            if !self.anchor_low {
                let mut low = anchor.iter().map(|&h| h as u32 as u64).collect();
                return Ok(ScalarValue::Float64(Some(jaccard(&mut low, &mut self.scratch))));
            }
            return Ok(ScalarValue::Float64(Some(jaccard(anchor, &mut self.scratch))));
        }
        if side.value(i) == 0 && text.is_null(i) {
            // the anchor is a saved index (band keys only, no text): a shared band
            // key is the match
            self.anchor = None;
            self.index_anchor = true;
            return Ok(ScalarValue::Float64(None));
        }
        if text.is_null(i) {
            return Ok(ScalarValue::Float64(None));
        }
        if side.value(i) == 0 {
            self.index_anchor = false;
            self.anchor_low = false;
            let mut set = Vec::new();
            shingles(text.value(i), p.ngram, p.shingle, &mut set);
            set.sort_unstable();
            set.dedup();
            self.anchor = Some(set);
            return Ok(ScalarValue::Float64(None));
        }
        let Some(anchor) = self.anchor.as_mut() else {
            return Ok(ScalarValue::Float64(self.index_anchor.then_some(1.0)));
        };
        shingles(text.value(i), p.ngram, p.shingle, &mut self.scratch);
        if self.anchor_low {
            for h in self.scratch.iter_mut() {
                *h = *h as u32 as u64;
            }
        }
        Ok(ScalarValue::Float64(Some(jaccard(anchor, &mut self.scratch))))
    }
}
