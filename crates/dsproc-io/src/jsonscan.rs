//! Typed input columns and the top-level scan of one JSON object: the keys and
//! the kind of each value, without building the value. Schema inference runs it
//! over every line of every file; the JSONL reader runs it over every row it reads
//! to check each value against its column's type before Arrow decodes the row
//! (Arrow's JSON decoder truncates `1.5` into an `Int64` column and refuses
//! objects in a string column, so nothing reaches it unchecked).

use std::borrow::Cow;
use std::fmt;

use datafusion::arrow::datatypes::DataType;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The type of an input column (`[input.schema]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// UTF-8 text (aliases `str`, `utf8`).
    #[serde(alias = "str", alias = "utf8")]
    String,
    /// 64-bit signed integer (aliases `int`, `integer`, `long`, `bigint`).
    #[serde(alias = "int", alias = "integer", alias = "long", alias = "bigint")]
    Int64,
    /// 64-bit float (aliases `float`, `double`).
    #[serde(alias = "float", alias = "double")]
    Float64,
    /// `true` / `false` (alias `boolean`).
    #[serde(alias = "boolean")]
    Bool,
    /// Any JSON value, kept as its JSON text in a string column (objects and arrays
    /// exactly as written; strings as their value).
    Json,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Bool => "bool",
            Self::Json => "json",
        }
    }

    /// The Arrow type of the column.
    pub fn arrow(self) -> DataType {
        match self {
            Self::String | Self::Json => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Bool => DataType::Boolean,
        }
    }

    /// Whether a value of kind `class` fits. `strict` (a declared column): only
    /// the column's own kind; otherwise (an inferred, widened column) a string
    /// column also takes numbers and booleans as their JSON text.
    pub fn accepts(self, class: Class, strict: bool) -> bool {
        use Class as C;
        match (self, class) {
            (_, C::Null) | (Self::Json, _) => true,
            (Self::String, C::String) => true,
            (Self::String, C::Bool | C::Int | C::BigInt | C::HugeInt | C::Float) => !strict,
            (Self::String, C::Object | C::Array) => false,
            (Self::Int64, C::Int | C::BigInt) => true,
            (Self::Float64, C::Int | C::Float) => true,
            (Self::Bool, C::Bool) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One column of the input schema as the reader checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    /// Declared in `[input.schema]`: values must be of exactly this type.
    #[serde(default)]
    pub declared: bool,
}

/// What to do with keys that are not in a declared schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExtraColumns {
    /// Keep them, with types inferred from every file (default).
    #[default]
    Keep,
    /// Drop them; the manifest counts the dropped values per column.
    Drop,
    /// Fail the job, naming the file, line and key.
    Error,
}

/// The kind of one JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Null,
    Bool,
    /// An integer that a float64 holds exactly (|x| <= 2^53).
    Int,
    /// An integer that fits int64 but not exactly in a float64.
    BigInt,
    /// An integer beyond int64.
    HugeInt,
    Float,
    String,
    Object,
    Array,
}

impl Class {
    pub fn of(raw: &RawValue) -> Self {
        let s = raw.get().trim_start();
        match s.as_bytes().first() {
            Some(b'n') => Self::Null,
            Some(b't' | b'f') => Self::Bool,
            Some(b'"') => Self::String,
            Some(b'{') => Self::Object,
            Some(b'[') => Self::Array,
            _ => number_class(s.trim_end()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool => "boolean",
            Self::Int | Self::BigInt | Self::HugeInt => "integer",
            Self::Float => "float",
            Self::String => "string",
            Self::Object => "object",
            Self::Array => "array",
        }
    }

    pub fn is_nested(self) -> bool {
        matches!(self, Self::Object | Self::Array)
    }
}

fn number_class(s: &str) -> Class {
    if s.contains(['.', 'e', 'E']) {
        return Class::Float;
    }
    match s.parse::<i64>() {
        Ok(v) if v.unsigned_abs() <= 1 << 53 => Class::Int,
        Ok(_) => Class::BigInt,
        Err(_) => Class::HugeInt,
    }
}

/// What inference has seen of one column so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Only nulls.
    Null,
    Bool,
    Int,
    /// Integers, some beyond 2^53.
    BigInt,
    Float,
    String,
    Json,
}

impl Seen {
    /// The narrowest kind that holds both without loss: int → float → string
    /// (integers beyond 2^53 never become floats), anything with an object or
    /// array → json.
    pub fn widen(self, c: Class) -> Self {
        use Class as C;
        let other = match c {
            C::Null => return self,
            C::Bool => Self::Bool,
            C::Int => Self::Int,
            C::BigInt => Self::BigInt,
            C::HugeInt => Self::String,
            C::Float => Self::Float,
            C::String => Self::String,
            C::Object | C::Array => Self::Json,
        };
        self.merge(other)
    }

    pub fn merge(self, other: Self) -> Self {
        use Seen as S;
        match (self, other) {
            (a, b) if a == b => a,
            (S::Null, x) | (x, S::Null) => x,
            (S::Json, _) | (_, S::Json) => S::Json,
            (S::Int, S::BigInt) | (S::BigInt, S::Int) => S::BigInt,
            (S::Int, S::Float) | (S::Float, S::Int) => S::Float,
            _ => S::String,
        }
    }

    pub fn column_type(self) -> ColumnType {
        match self {
            Self::Null | Self::String => ColumnType::String,
            Self::Bool => ColumnType::Bool,
            Self::Int | Self::BigInt => ColumnType::Int64,
            Self::Float => ColumnType::Float64,
            Self::Json => ColumnType::Json,
        }
    }
}

/// The top-level members of one JSON object, in order (duplicates kept).
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a line is not one JSON object.
pub fn scan(line: &[u8]) -> Result<Members<'_>, String> {
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            Ok(_) => "not a JSON object".to_string(),
            Err(e) => format!("malformed JSON: {e}"),
        });
    }
    serde_json::from_slice::<Members>(line).map_err(|e| format!("malformed JSON: {e}"))
}

/// A short excerpt of a value for messages.
pub fn excerpt(raw: &RawValue) -> String {
    let s = raw.get();
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(line: &str) -> Vec<(String, Class)> {
        scan(line.as_bytes()).unwrap().0.into_iter().map(|(k, v)| (k.into_owned(), Class::of(v))).collect()
    }

    #[test]
    fn classifies_values() {
        let c = classes(
            r#"{"a": 1, "b": 1.5, "c": "x", "d": null, "e": true, "f": {"g": [1]}, "h": [], "i": 9007199254740993, "j": 99999999999999999999, "k": -3, "l": 1e3}"#,
        );
        use Class::*;
        let want = [Int, Float, String, Null, Bool, Object, Array, BigInt, HugeInt, Int, Float];
        assert_eq!(c.iter().map(|x| x.1).collect::<Vec<_>>(), want);
        assert_eq!(classes(r#"{"a\"b": 1}"#)[0].0, "a\"b");
    }

    #[test]
    fn not_objects_and_bad_json_have_reasons() {
        assert_eq!(scan(b"[1, 2]").err().unwrap(), "not a JSON object");
        assert!(scan(b"{\"a\": ").err().unwrap().starts_with("malformed JSON"));
        assert!(scan(b"{\"a\": 1} {\"b\": 2}").err().unwrap().starts_with("malformed JSON"));
        assert_eq!(scan(b"{\"a\":1,\"a\":2}").unwrap().0.len(), 2);
    }

    #[test]
    fn widening_never_loses_values() {
        use Class as C;
        let w = |cs: &[Class]| cs.iter().fold(Seen::Null, |s, c| s.widen(*c)).column_type();
        assert_eq!(w(&[C::Int, C::Float]), ColumnType::Float64);
        assert_eq!(w(&[C::Int, C::Null]), ColumnType::Int64);
        assert_eq!(w(&[C::BigInt, C::Float]), ColumnType::String);
        assert_eq!(w(&[C::Int, C::HugeInt]), ColumnType::String);
        assert_eq!(w(&[C::Bool, C::Int]), ColumnType::String);
        assert_eq!(w(&[C::String, C::Object]), ColumnType::Json);
        assert_eq!(w(&[C::Null]), ColumnType::String);
        assert!(!ColumnType::Int64.accepts(C::Float, false));
        assert!(!ColumnType::String.accepts(C::Int, true));
        assert!(ColumnType::String.accepts(C::Int, false));
        assert!(!ColumnType::Float64.accepts(C::BigInt, true));
    }
}
