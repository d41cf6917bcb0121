//! `quality_filter(text, lang, presets, counter_prefix)`: the quality presets of
//! [`dsproc_quality`] (datatrove 0.10.1's Gopher, C4 and FineWeb filters) on each
//! row. Returns a struct:
//! - `keep` (Boolean): every preset kept the document;
//! - `rule` (Utf8): the first rule that dropped it, null when kept;
//! - `text` (Utf8): the rewritten text when a `c4` preset removed lines, else null;
//! - `metrics` (Struct of Float64): the computed metrics, null where not computed
//!   (evaluation stops at the first failing rule);
//! - `counts` (Struct of UInt32): one field per rule, named `counter_prefix` +
//!   rule, 1 on the row that rule dropped (summed into the step's counters).
//!
//! `lang` may be a null literal (no per-language thresholds). `presets` is a JSON
//! literal of `Vec<dsproc_quality::Preset>`; the filter it describes is built once
//! per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, StringArray, StringBuilder, StructArray, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use dsproc_quality::{Preset, QualityFilter};

use crate::{as_strings, string_arg};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QualityFilterFunc {
    signature: Signature,
}
udf_boilerplate!(QualityFilterFunc);

/// The filter of a `presets` JSON, built once per process.
pub fn filter_for(presets_json: &str) -> std::result::Result<Arc<QualityFilter>, String> {
    type Cache = Mutex<HashMap<String, Arc<QualityFilter>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut map = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = map.get(presets_json) {
        return Ok(Arc::clone(f));
    }
    let presets: Vec<Preset> = serde_json::from_str(presets_json).map_err(|e| format!("presets: {e}"))?;
    let f = Arc::new(QualityFilter::new(presets).map_err(|e| e.to_string())?);
    map.insert(presets_json.to_string(), Arc::clone(&f));
    Ok(f)
}

/// The struct the function returns for `filter`.
pub fn result_fields(filter: &QualityFilter, prefix: &str) -> Fields {
    let metrics: Fields = filter.metric_names().iter().map(|m| Field::new(*m, DataType::Float64, true)).collect();
    let counts: Fields =
        filter.rule_names().iter().map(|r| Field::new(format!("{prefix}{r}"), DataType::UInt32, false)).collect();
    vec![
        Field::new("keep", DataType::Boolean, false),
        Field::new("rule", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("metrics", DataType::Struct(metrics), false),
        Field::new("counts", DataType::Struct(counts), false),
    ]
    .into()
}

fn literal<'a>(arg: Option<&'a ScalarValue>, what: &str) -> Result<&'a str> {
    match arg {
        Some(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => Ok(s),
        _ => plan_err!("quality_filter: {what} must be a string literal"),
    }
}

fn literal_arg<'a>(arg: &'a ColumnarValue, what: &str) -> Result<&'a str> {
    match arg {
        ColumnarValue::Scalar(s) => literal(Some(s), what),
        _ => exec_err!("quality_filter: {what} must be a string literal"),
    }
}

impl ScalarUDFImpl for QualityFilterFunc {
    fn name(&self) -> &str {
        "quality_filter"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("quality_filter: the return type depends on its presets (return_field_from_args)")
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.len() != 4 {
            return plan_err!("quality_filter takes (text, lang, presets, counter_prefix)");
        }
        for (i, what) in [(0, "text"), (1, "lang")] {
            let t = args.arg_fields[i].data_type();
            if !(crate::is_string(t) || t == &DataType::Null) {
                return plan_err!("quality_filter: {what} must be a string, not {t}");
            }
        }
        let presets = literal(args.scalar_arguments[2], "presets")?;
        let prefix = literal(args.scalar_arguments[3], "counter_prefix")?;
        let filter = filter_for(presets).or_else(|e| plan_err!("quality_filter: {e}"))?;
        Ok(Arc::new(Field::new(self.name(), DataType::Struct(result_fields(&filter, prefix)), false)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let presets = literal_arg(&args.args[2], "presets")?;
        let prefix = literal_arg(&args.args[3], "counter_prefix")?;
        let filter = filter_for(presets).or_else(|e| exec_err!("quality_filter: {e}"))?;
        let rows = args.number_rows;
        let text = string_arg(&args.args[0], rows, self.name())?;
        let text = as_strings(&text);
        let lang: Option<ArrayRef> = match &args.args[1] {
            ColumnarValue::Scalar(s) if s.is_null() => None,
            other => Some(string_arg(other, rows, self.name())?),
        };
        let lang: Option<&StringArray> = lang.as_ref().map(as_strings);
        let outcomes: Vec<Option<dsproc_quality::Outcome>> = (0..text.len())
            .map(|i| {
                if text.is_null(i) {
                    return None;
                }
                let l = lang.and_then(|l| (!l.is_null(i)).then(|| l.value(i)));
                Some(filter.evaluate(text.value(i), l))
            })
            .collect();
        let rules = filter.rule_names();
        let metrics = filter.metric_names();
        let mut keep = BooleanBuilder::with_capacity(rows);
        let mut rule = StringBuilder::new();
        let mut new_text = StringBuilder::new();
        let mut metric_cols: Vec<Float64Builder> =
            metrics.iter().map(|_| Float64Builder::with_capacity(rows)).collect();
        let mut count_cols: Vec<UInt32Builder> = rules.iter().map(|_| UInt32Builder::with_capacity(rows)).collect();
        for o in &outcomes {
            match o {
                // A null text is no document to judge: kept, nothing computed.
                None => {
                    keep.append_value(true);
                    rule.append_null();
                    new_text.append_null();
                    metric_cols.iter_mut().for_each(|m| m.append_null());
                    count_cols.iter_mut().for_each(|c| c.append_value(0));
                }
                Some(o) => {
                    keep.append_value(o.keep);
                    rule.append_option(o.failed_rule);
                    new_text.append_option(o.text.as_deref());
                    for (m, v) in metric_cols.iter_mut().zip(&o.metrics) {
                        m.append_option((!v.is_nan()).then_some(*v));
                    }
                    for (c, r) in count_cols.iter_mut().zip(&rules) {
                        c.append_value(u32::from(!o.keep && o.failed_rule == Some(*r)));
                    }
                }
            }
        }
        let fields = result_fields(&filter, prefix);
        let DataType::Struct(metric_fields) = fields[3].data_type().clone() else { unreachable!() };
        let DataType::Struct(count_fields) = fields[4].data_type().clone() else { unreachable!() };
        let metric_arrays: Vec<ArrayRef> = metric_cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let count_arrays: Vec<ArrayRef> = count_cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(keep.finish()),
            Arc::new(rule.finish()),
            Arc::new(new_text.finish()),
            Arc::new(StructArray::try_new_with_length(metric_fields, metric_arrays, None, rows)?),
            Arc::new(StructArray::try_new_with_length(count_fields, count_arrays, None, rows)?),
        ];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields, columns, None)?)))
    }
}
