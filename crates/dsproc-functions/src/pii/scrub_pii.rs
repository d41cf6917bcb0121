//! `scrub_pii(text, options_json)`: detects PII in one pass and returns
//! `struct{text, pii_counts, pii_spans}`: the scrubbed text, per-kind counts and
//! the spans (character offsets into the text as it entered).
//!
//! Options (JSON literal): `kinds`, `action` (`mask` | `hash` | `redact` | `tag` |
//! `drop_document`), `template` (mask, `{KIND}` is replaced), `keep_private_ips`,
//! `salt_env` (hash: the environment variable holding the salt; read where the
//! function runs, so the salt is never in the plan, a log or the manifest).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, ListArray, StringBuilder, StructArray, UInt32Builder};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::patterns::PatternDetector;
use super::{resolve_overlaps, Detector, Kind, Span};
use crate::{as_strings, check_arg_types, json_options, string_arg};

/// What to do with detected PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Mask,
    Hash,
    Redact,
    Tag,
    DropDocument,
}

/// Options of one `scrub_pii` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiOptions {
    pub kinds: Vec<Kind>,
    pub action: Action,
    pub template: String,
    pub keep_private_ips: bool,
    pub salt_env: String,
}

fn counts_fields() -> Fields {
    Kind::ALL.iter().map(|k| Field::new(k.name(), DataType::UInt32, false)).collect()
}

fn span_fields() -> Fields {
    Fields::from(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("start", DataType::UInt32, false),
        Field::new("end", DataType::UInt32, false),
    ])
}

/// The function's return type.
pub fn result_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("text", DataType::Utf8, true),
        Field::new("pii_counts", DataType::Struct(counts_fields()), false),
        Field::new(
            "pii_spans",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(span_fields()), true))),
            false,
        ),
    ]))
}

type DetectorCache = Mutex<HashMap<(Vec<Kind>, bool), Arc<PatternDetector>>>;

/// Detectors are built once per distinct options and shared by all calls.
fn detector(opts: &PiiOptions) -> Arc<PatternDetector> {
    static CACHE: OnceLock<DetectorCache> = OnceLock::new();
    let key = (opts.kinds.clone(), opts.keep_private_ips);
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(cache.entry(key).or_insert_with(|| Arc::new(PatternDetector::new(&opts.kinds, opts.keep_private_ips))))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScrubPiiFunc {
    signature: Signature,
}

impl ScrubPiiFunc {
    pub fn new() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl Default for ScrubPiiFunc {
    fn default() -> Self {
        Self::new()
    }
}

/// Scrubs one text. Returns the new text (None: unchanged) and the spans in
/// byte offsets.
pub fn scrub(text: &str, opts: &PiiOptions, det: &dyn Detector, salt: &str, spans: &mut Vec<Span>) -> Option<String> {
    spans.clear();
    det.find(text, spans);
    resolve_overlaps(spans);
    if spans.is_empty() || matches!(opts.action, Action::Tag | Action::DropDocument) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for s in spans.iter() {
        out.push_str(&text[pos..s.start]);
        let tag = s.kind.name().to_ascii_uppercase();
        match opts.action {
            Action::Mask => out.push_str(&opts.template.replace("{KIND}", &tag)),
            Action::Hash => {
                let mut h = Sha256::new();
                h.update(salt.as_bytes());
                h.update([0]);
                h.update(s.kind.name().as_bytes());
                h.update([0]);
                h.update(&text.as_bytes()[s.start..s.end]);
                out.push_str(&format!("<{tag}:{}>", &hex::encode(h.finalize())[..12]));
            }
            Action::Redact | Action::Tag | Action::DropDocument => {}
        }
        pos = s.end;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

impl ScalarUDFImpl for ScrubPiiFunc {
    fn name(&self) -> &str {
        "scrub_pii"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string"])?;
        Ok(result_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let opts: PiiOptions = json_options(&args.args[1], self.name())?;
        let salt = if opts.action == Action::Hash {
            match std::env::var(&opts.salt_env) {
                Ok(s) if !s.is_empty() => s,
                _ => {
                    return exec_err!(
                        "scrub_pii: action = \"hash\" needs a salt in the environment variable {} (set it wherever the job runs, including every executor)",
                        opts.salt_env
                    )
                }
            }
        } else {
            String::new()
        };
        let det = detector(&opts);
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let texts = as_strings(&input);
        let n = texts.len();
        let mut out_text = StringBuilder::with_capacity(n, texts.value_data().len());
        let mut counts: Vec<UInt32Builder> = Kind::ALL.iter().map(|_| UInt32Builder::with_capacity(n)).collect();
        let (mut sk, mut ss, mut se) = (StringBuilder::new(), UInt32Builder::new(), UInt32Builder::new());
        let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut spans = Vec::new();
        let mut total: i32 = 0;
        for v in texts.iter() {
            let mut per_kind = [0u32; Kind::ALL.len()];
            match v {
                None => out_text.append_null(),
                Some(t) => {
                    match scrub(t, &opts, det.as_ref(), &salt, &mut spans) {
                        Some(new) => out_text.append_value(new),
                        None => out_text.append_value(t),
                    }
                    // Character offsets: walk the text once, in span order.
                    let ascii = t.is_ascii();
                    let (mut byte, mut chars) = (0usize, 0usize);
                    let mut char_at = |b: usize| -> usize {
                        if ascii {
                            return b;
                        }
                        chars += t[byte..b].chars().count();
                        byte = b;
                        chars
                    };
                    for s in &spans {
                        per_kind[Kind::ALL.iter().position(|k| *k == s.kind).unwrap_or(0)] += 1;
                        let start = char_at(s.start);
                        let end = char_at(s.end);
                        sk.append_value(s.kind.name());
                        ss.append_value(start as u32);
                        se.append_value(end as u32);
                        total += 1;
                    }
                }
            }
            for (b, c) in counts.iter_mut().zip(per_kind) {
                b.append_value(c);
            }
            offsets.push(total);
        }
        let counts = StructArray::new(
            counts_fields(),
            counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect(),
            None,
        );
        let span_values = StructArray::new(
            span_fields(),
            vec![Arc::new(sk.finish()) as ArrayRef, Arc::new(ss.finish()), Arc::new(se.finish())],
            None,
        );
        let spans = ListArray::new(
            Arc::new(Field::new("item", DataType::Struct(span_fields()), true)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(span_values),
            None,
        );
        let DataType::Struct(fields) = result_type() else { unreachable!() };
        let result = StructArray::new(
            fields,
            vec![Arc::new(out_text.finish()) as ArrayRef, Arc::new(counts), Arc::new(spans)],
            None,
        );
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(action: Action) -> PiiOptions {
        PiiOptions {
            kinds: Kind::ALL.to_vec(),
            action,
            template: "<{KIND}>".into(),
            keep_private_ips: false,
            salt_env: "X".into(),
        }
    }

    #[test]
    fn actions_and_idempotence() {
        let det = PatternDetector::new(&Kind::ALL, false);
        let text = "Contact: José <jose@example.org>, card 4111-1111-1111-1111.";
        let mut spans = Vec::new();
        let masked = scrub(text, &opts(Action::Mask), &det, "", &mut spans).unwrap();
        assert_eq!(masked, "Contact: José <<EMAIL>>, card <CREDIT_CARD>.");
        // Scrubbing its own output finds nothing new.
        assert!(scrub(&masked, &opts(Action::Mask), &det, "", &mut spans).is_none());
        let redacted = scrub(text, &opts(Action::Redact), &det, "", &mut spans).unwrap();
        assert_eq!(redacted, "Contact: José <>, card .");
        let h1 = scrub(text, &opts(Action::Hash), &det, "salt", &mut spans).unwrap();
        let h2 = scrub(text, &opts(Action::Hash), &det, "salt", &mut spans).unwrap();
        let h3 = scrub(text, &opts(Action::Hash), &det, "other", &mut spans).unwrap();
        assert_eq!(h1, h2);
        assert_ne!(h1, h3);
        assert!(h1.contains("<EMAIL:"));
        assert!(scrub(text, &opts(Action::Tag), &det, "", &mut spans).is_none());
        assert_eq!(spans.len(), 2);
    }
}
