//! Graph steps of near-duplicate clustering, as scalar functions over grouped
//! node lists (`GROUP BY key` + `array_agg`), so the plan uses hash aggregates
//! instead of window operators over millions of tiny partitions:
//! - `dedup_bucket_edges(nodes, key, links)`: the candidate edges of one LSH
//!   bucket: every member to the bucket's smallest member and to the `links`
//!   members before it in an order drawn from the bucket key (so a document meets
//!   different partners in each band it shares with others);
//! - `dedup_large_star(x, neighbours)`: every neighbour larger than `x` linked to
//!   `min(x, neighbours)`;
//! - `dedup_small_star(x, smaller)`: `x` and its smaller neighbours linked to the
//!   smallest of them.
//!
//! Each returns `List<Struct{hi: Utf8, lo: Utf8, changed: UInt32}>` with `hi > lo`;
//! `changed` marks edges that were not in the input (a round changing nothing has
//! converged: the graph is a forest of stars rooted at each component's minimum).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, ListBuilder, StringBuilder, StructBuilder, UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::string_arg;

fn edge_fields() -> Fields {
    Fields::from(vec![
        Field::new("hi", DataType::Utf8, false),
        Field::new("lo", DataType::Utf8, false),
        Field::new("changed", DataType::UInt32, false),
    ])
}

fn edge_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(edge_fields()), false)))
}

fn new_builder(rows: usize) -> ListBuilder<StructBuilder> {
    let fields = edge_fields();
    let sb = StructBuilder::new(
        fields.clone(),
        vec![Box::new(StringBuilder::new()), Box::new(StringBuilder::new()), Box::new(UInt32Builder::new())],
    );
    ListBuilder::with_capacity(sb, rows).with_field(Arc::new(Field::new("item", DataType::Struct(fields), false)))
}

fn push(b: &mut ListBuilder<StructBuilder>, hi: &str, lo: &str, changed: bool) {
    let s = b.values();
    s.field_builder::<StringBuilder>(0).expect("hi").append_value(hi);
    s.field_builder::<StringBuilder>(1).expect("lo").append_value(lo);
    s.field_builder::<UInt32Builder>(2).expect("changed").append_value(u32::from(changed));
    s.append(true);
}

/// The node lists argument (`List<Utf8>` or `List<Utf8View>`), as `List<Utf8>`.
fn lists(arg: &ColumnarValue, rows: usize, name: &str) -> Result<ListArray> {
    let a = arg.to_array(rows)?;
    let Some(l) = a.as_list_opt::<i32>() else {
        return exec_err!("{name}: expected a list of node keys, got {}", a.data_type());
    };
    let values = string_arg(&ColumnarValue::Array(Arc::clone(l.values())), l.values().len(), name)?;
    Ok(ListArray::new(
        Arc::new(Field::new("item", DataType::Utf8, true)),
        l.offsets().clone(),
        values,
        l.nulls().cloned(),
    ))
}

/// The non-null members of list row `i`, sorted and deduplicated.
fn members(l: &ListArray, i: usize) -> Vec<String> {
    if l.is_null(i) {
        return Vec::new();
    }
    let v = l.value(i);
    let s = v.as_string::<i32>();
    let mut out: Vec<String> = s.iter().flatten().map(str::to_string).collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Bucket,
    LargeStar,
    SmallStar,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GraphStepFunc {
    kind: Kind,
    signature: Signature,
}

impl GraphStepFunc {
    fn new(kind: Kind) -> Self {
        Self { kind, signature: Signature::variadic_any(Volatility::Immutable) }
    }
    pub fn bucket_edges() -> Self {
        Self::new(Kind::Bucket)
    }
    pub fn large_star() -> Self {
        Self::new(Kind::LargeStar)
    }
    pub fn small_star() -> Self {
        Self::new(Kind::SmallStar)
    }
}

impl ScalarUDFImpl for GraphStepFunc {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Bucket => "dedup_bucket_edges",
            Kind::LargeStar => "dedup_large_star",
            Kind::SmallStar => "dedup_small_star",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let want = if self.kind == Kind::Bucket { 3 } else { 2 };
        if arg_types.len() != want {
            return plan_err!("{} takes {want} arguments, got {}", self.name(), arg_types.len());
        }
        Ok(edge_list_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut out = new_builder(rows);
        match self.kind {
            Kind::Bucket => {
                let links = match &args.args[2] {
                    ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) if *n >= 0 => *n as usize,
                    _ => return exec_err!("dedup_bucket_edges: links must be a non-negative integer literal"),
                };
                let l = lists(&args.args[0], rows, self.name())?;
                let keys = args.args[1].to_array(rows)?;
                let Some(keys) = keys.as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>() else {
                    return exec_err!("dedup_bucket_edges: the key must be UInt64");
                };
                for i in 0..rows {
                    let mut m = members(&l, i);
                    if m.len() > 1 {
                        let seed = if keys.is_null(i) { 0 } else { keys.value(i) };
                        let first = m[0].clone();
                        m.sort_by_cached_key(|n| (xxh3_64_with_seed(n.as_bytes(), seed), n.clone()));
                        for j in 0..m.len() {
                            if m[j] != first {
                                push(&mut out, &m[j], &first, true);
                            }
                            for k in j.saturating_sub(links)..j {
                                let (a, b) = if m[j] > m[k] { (&m[j], &m[k]) } else { (&m[k], &m[j]) };
                                if *b != first {
                                    push(&mut out, a, b, true);
                                }
                            }
                        }
                    }
                    out.append(true);
                }
            }
            Kind::LargeStar | Kind::SmallStar => {
                let x = string_arg(&args.args[0], rows, self.name())?;
                let x = x.as_string::<i32>();
                let l = lists(&args.args[1], rows, self.name())?;
                for i in 0..rows {
                    if x.is_null(i) {
                        out.append(true);
                        continue;
                    }
                    let x = x.value(i);
                    let n = members(&l, i);
                    if self.kind == Kind::LargeStar {
                        // n: all neighbours of x
                        let m = n.first().map_or(x, |f| f.as_str().min(x));
                        for y in n.iter().filter(|y| y.as_str() > x) {
                            push(&mut out, y, m, m < x);
                        }
                    } else if let Some(m) = n.first() {
                        // n: the neighbours smaller than x
                        push(&mut out, x, m, false);
                        for lo in &n[1..] {
                            push(&mut out, lo, m, true);
                        }
                    }
                    out.append(true);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StructArray;
    use datafusion::arrow::datatypes::Field as F;

    fn call(f: &GraphStepFunc, args: Vec<ColumnarValue>, rows: usize) -> Vec<Vec<(String, String, u32)>> {
        let arg_fields = args.iter().map(|a| Arc::new(F::new("a", a.data_type(), true))).collect();
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: rows,
                return_field: Arc::new(F::new("r", edge_list_type(), true)),
                config_options: Arc::new(Default::default()),
            })
            .unwrap();
        let ColumnarValue::Array(a) = out else { panic!() };
        let l = a.as_list::<i32>();
        (0..rows)
            .map(|i| {
                let v = l.value(i);
                let s = v.as_any().downcast_ref::<StructArray>().unwrap();
                let (h, lo, c) = (s.column(0).as_string::<i32>(), s.column(1).as_string::<i32>(), s.column(2));
                let c = c.as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
                (0..s.len()).map(|j| (h.value(j).to_string(), lo.value(j).to_string(), c.value(j))).collect()
            })
            .collect()
    }

    fn list(rows: &[&[&str]]) -> ColumnarValue {
        let mut b = ListBuilder::new(StringBuilder::new());
        for r in rows {
            for v in *r {
                b.values().append_value(v);
            }
            b.append(true);
        }
        ColumnarValue::Array(Arc::new(b.finish()))
    }

    fn e(h: &str, l: &str, c: u32) -> (String, String, u32) {
        (h.into(), l.into(), c)
    }

    #[test]
    fn bucket_edges_link_to_first_and_predecessors() {
        let f = GraphStepFunc::bucket_edges();
        let keys = ColumnarValue::Array(Arc::new(datafusion::arrow::array::UInt64Array::from(vec![1, 2])));
        let links = ColumnarValue::Scalar(ScalarValue::Int64(Some(1)));
        let got = call(&f, vec![list(&[&["d", "b", "a", "c"], &["z"]]), keys, links], 2);
        // every member reaches "a" (the smallest) and its neighbour in the key's order
        let mut to_a: Vec<&str> = got[0].iter().filter(|x| x.1 == "a").map(|x| x.0.as_str()).collect();
        to_a.sort();
        to_a.dedup();
        assert_eq!(to_a, ["b", "c", "d"]);
        assert!(got[0].iter().filter(|x| x.1 != "a").count() <= 2, "{:?}", got[0]);
        assert!(got[0].iter().all(|x| x.0 > x.1));
        assert!(got[1].is_empty());
    }

    #[test]
    fn stars() {
        let x = ColumnarValue::Array(Arc::new(datafusion::arrow::array::StringArray::from(vec!["c", "c"])));
        let got = call(&GraphStepFunc::large_star(), vec![x.clone(), list(&[&["a", "d", "e"], &["d"]])], 2);
        assert_eq!(got[0], [e("d", "a", 1), e("e", "a", 1)]);
        assert_eq!(got[1], [e("d", "c", 0)]);
        let got = call(&GraphStepFunc::small_star(), vec![x, list(&[&["b", "a"], &["a"]])], 2);
        assert_eq!(got[0], [e("c", "a", 0), e("b", "a", 1)]);
        assert_eq!(got[1], [e("c", "a", 0)]);
    }
}
