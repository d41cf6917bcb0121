//! `normalize_text(text, form, whitespace)`: Unicode normalization and whitespace
//! clean-up, returning the text unchanged (no copy) when it is already normal.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::array::StringBuilder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use unicode_normalization::{is_nfc_quick, is_nfkc_quick, IsNormalized, UnicodeNormalization};

use crate::{as_strings, check_arg_types, literal_str, string_arg};

/// Unicode normalization form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// No Unicode normalization.
    None,
    /// Canonical composition (NFC).
    Nfc,
    /// Compatibility composition (NFKC: also folds ligatures, full-width forms, ...).
    Nfkc,
}

impl Form {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "nfc" => Some(Self::Nfc),
            "nfkc" => Some(Self::Nfkc),
            _ => None,
        }
    }

    /// The name, as written in specs and passed to the function.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Nfc => "nfc",
            Self::Nfkc => "nfkc",
        }
    }
}

/// Whitespace handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Whitespace {
    /// Leave whitespace as it is.
    Keep,
    /// CRLF/CR to LF, strip trailing spaces and tabs on every line, strip leading and
    /// trailing blank space of the document. Keeps indentation and line structure.
    Trim,
    /// Every run of whitespace becomes one space; the document is trimmed.
    Collapse,
}

impl Whitespace {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "keep" => Some(Self::Keep),
            "trim" => Some(Self::Trim),
            "collapse" => Some(Self::Collapse),
            _ => None,
        }
    }

    /// The name, as written in specs and passed to the function.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Trim => "trim",
            Self::Collapse => "collapse",
        }
    }
}

/// Deserializes a case-insensitive name through `parse` (specs have always accepted
/// `NFC` as well as `nfc`); an unknown one is serde's unknown-variant error.
macro_rules! deserialize_by_name {
    ($t:ident, $($name:literal),+) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, &[$($name),+]))
            }
        }
    };
}
deserialize_by_name!(Form, "nfc", "nfkc", "none");
deserialize_by_name!(Whitespace, "trim", "collapse", "keep");

/// Normalizes one string; borrows when nothing changes.
pub fn normalize_str(s: &str, form: Form, ws: Whitespace) -> Cow<'_, str> {
    let unicode: Cow<'_, str> = match form {
        Form::None => Cow::Borrowed(s),
        _ if s.is_ascii() => Cow::Borrowed(s),
        Form::Nfc => match is_nfc_quick(s.chars()) {
            IsNormalized::Yes => Cow::Borrowed(s),
            _ => Cow::Owned(s.nfc().collect()),
        },
        Form::Nfkc => match is_nfkc_quick(s.chars()) {
            IsNormalized::Yes => Cow::Borrowed(s),
            _ => Cow::Owned(s.nfkc().collect()),
        },
    };
    match ws {
        Whitespace::Keep => unicode,
        Whitespace::Trim => match trim_lines(&unicode) {
            Some(t) => Cow::Owned(t),
            None => unicode,
        },
        Whitespace::Collapse => match collapse(&unicode) {
            Some(t) => Cow::Owned(t),
            None => unicode,
        },
    }
}

fn is_hspace(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `None` when `s` is already trimmed.
fn trim_lines(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let needs = b.contains(&b'\r')
        || b.first().is_some_and(|c| c.is_ascii_whitespace())
        || b.last().is_some_and(|c| c.is_ascii_whitespace())
        || b.windows(2).any(|w| is_hspace(w[0]) && w[1] == b'\n');
    if !needs {
        return None;
    }
    let unified = s.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len());
    for (i, line) in unified.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_end_matches([' ', '\t']));
    }
    let trimmed = out.trim_matches(|c: char| c.is_ascii_whitespace());
    Some(trimmed.to_string())
}

/// `None` when `s` has no run of whitespace to collapse and nothing to trim.
fn collapse(s: &str) -> Option<String> {
    let mut prev_ws = true; // leading whitespace is dropped
    let mut needs = false;
    for c in s.chars() {
        let ws = c.is_whitespace();
        if ws && (prev_ws || c != ' ') {
            needs = true;
            break;
        }
        prev_ws = ws;
    }
    if !needs && !prev_ws {
        return None;
    }
    if !needs && s.is_empty() {
        return None;
    }
    Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeTextFunc {
    signature: Signature,
}

impl NormalizeTextFunc {
    pub fn new() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl Default for NormalizeTextFunc {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn parse_options(name: &str, form: &ColumnarValue, ws: &ColumnarValue) -> Result<(Form, Whitespace)> {
    let f = literal_str(form, name, "form")?;
    let w = literal_str(ws, name, "whitespace")?;
    let Some(form) = Form::parse(&f) else {
        return exec_err!("{name}: unknown form {f:?} (nfc, nfkc, none)");
    };
    let Some(ws) = Whitespace::parse(&w) else {
        return exec_err!("{name}: unknown whitespace mode {w:?} (trim, collapse, keep)");
    };
    Ok((form, ws))
}

impl ScalarUDFImpl for NormalizeTextFunc {
    fn name(&self) -> &str {
        "normalize_text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arg_types(self.name(), arg_types, &["string", "string", "string"])?;
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (form, ws) = parse_options(self.name(), &args.args[1], &args.args[2])?;
        let input = string_arg(&args.args[0], args.number_rows, self.name())?;
        let strings = as_strings(&input);
        let mut out = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
        for v in strings.iter() {
            match v {
                Some(s) => out.append_value(normalize_str(s, form, ws)),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_and_trim() {
        // "e" + combining acute -> precomposed é
        let s = "cafe\u{301}  \r\nline two\t\n\n";
        assert_eq!(normalize_str(s, Form::Nfc, Whitespace::Trim), "caf\u{e9}\nline two");
        assert!(matches!(normalize_str("plain\ntext", Form::Nfc, Whitespace::Trim), Cow::Borrowed(_)));
        assert_eq!(normalize_str("ﬁ x", Form::Nfkc, Whitespace::Keep), "fi x");
        assert_eq!(normalize_str("  a \n\t b  ", Form::None, Whitespace::Collapse), "a b");
        assert!(matches!(normalize_str("a b", Form::None, Whitespace::Collapse), Cow::Borrowed(_)));
    }

    #[test]
    fn idempotent() {
        for s in ["x  \r\n y\u{301}\t", "  ", "", "a\n\n\nb  "] {
            for ws in [Whitespace::Trim, Whitespace::Collapse, Whitespace::Keep] {
                let once = normalize_str(s, Form::Nfkc, ws).into_owned();
                assert_eq!(normalize_str(&once, Form::Nfkc, ws), once);
            }
        }
    }
}
