//! The spec reference, generated from the option structs' JSON schemas (their
//! `///` docs, serde names and defaults): `dsproc ops [--json|--markdown]` prints
//! it, and the README's "Job spec reference" section is this module's markdown
//! (a test fails when they differ).

use serde::Serialize;
use serde_json::Value;

use crate::ops::{schema_of, OPS};

/// One documented table of the spec: an op's `[[steps]]` table or `[input]`, `[output]`, ...
#[derive(Debug, Clone, Serialize)]
pub struct TableDoc {
    /// `normalize`, or `[input]`.
    pub name: String,
    /// The op's version (ops only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub doc: String,
    pub options: Vec<OptionDoc>,
}

/// One key of a table.
#[derive(Debug, Clone, Serialize)]
pub struct OptionDoc {
    pub key: String,
    /// The type as written in TOML: `string`, `integer`, `"nfc" | "nfkc"`, `[string]`, ...
    #[serde(rename = "type")]
    pub ty: String,
    /// The default value, when the key may be left out and has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// True when the key must be given.
    pub required: bool,
    pub doc: String,
}

/// Every op, in registry order.
pub fn ops() -> Vec<TableDoc> {
    OPS.iter()
        .map(|o| {
            let mut t = table_doc(o.name, &(o.schema)().to_value());
            t.version = Some(o.version);
            t
        })
        .collect()
}

/// The tables around the steps: `[input]`, `[input.storage]`, `[output]`, `[output.storage]`.
pub fn spec_tables() -> Vec<TableDoc> {
    use crate::spec::{InputSpec, OutputSpec, StorageSpec};
    vec![
        table_doc("[input]", &schema_of::<InputSpec>().to_value()),
        table_doc("[output]", &schema_of::<OutputSpec>().to_value()),
        table_doc("[input.storage] / [output.storage]", &schema_of::<StorageSpec>().to_value()),
        table_doc("[schedule]", &schema_of::<crate::schedule::ScheduleSpec>().to_value()),
    ]
}

fn text_of(s: &Value) -> String {
    let title = s.get("title").and_then(Value::as_str).unwrap_or_default();
    let desc = s.get("description").and_then(Value::as_str).unwrap_or_default();
    let joined = match (title.is_empty(), desc.is_empty()) {
        (false, false) => format!("{title} {desc}"),
        (false, true) => title.to_string(),
        _ => desc.to_string(),
    };
    // doc comments are wrapped at ~100 columns: one paragraph per blank line
    joined.split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

fn table_doc(name: &str, schema: &Value) -> TableDoc {
    // a root schema's title is the Rust type's name, not documentation
    let mut root = schema.clone();
    if let Some(o) = root.as_object_mut() {
        o.remove("title");
    }
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let options = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, p)| OptionDoc {
            key: key.clone(),
            ty: type_of(p),
            default: p.get("default").filter(|d| !d.is_null()).cloned(),
            required: required.contains(&key.as_str()),
            doc: text_of(p),
        })
        .collect::<Vec<OptionDoc>>();
    // required keys first, then the rest by name
    let mut options = options;
    options.sort_by_key(|o| !o.required);
    TableDoc { name: name.to_string(), version: None, doc: text_of(&root), options }
}

/// The type of a property, as a TOML user reads it.
fn type_of(p: &Value) -> String {
    let values = |v: &Vec<Value>| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" | ");
    if let Some(e) = p.get("enum").and_then(Value::as_array) {
        return values(&e.iter().filter(|v| !v.is_null()).cloned().collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = p.get(key).and_then(Value::as_array) {
            let alts = alts.iter().filter(|a| a.get("type") != Some(&"null".into()));
            let tys: Vec<String> = alts
                .map(|a| match a.get("const") {
                    Some(c) => c.to_string(),
                    None => type_of(a),
                })
                .collect();
            return tys.join(" | ");
        }
    }
    let types: Vec<&str> = match p.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => vec![],
    };
    let one = |t: &str| match t {
        "array" => format!("[{}]", p.get("items").map(type_of).unwrap_or_else(|| "any".into())),
        "object" => match (p.get("properties").and_then(Value::as_object), p.get("additionalProperties")) {
            (Some(props), _) if !props.is_empty() => {
                let fields: Vec<String> = props.iter().map(|(k, v)| format!("{k} = {}", type_of(v))).collect();
                format!("{{ {} }}", fields.join(", "))
            }
            (_, Some(v)) if v.is_object() => format!("{{ key = {} }}", type_of(v)),
            _ => "table".into(),
        },
        "number" => "float".into(),
        t => t.to_string(),
    };
    match types.as_slice() {
        [] => "any".into(),
        ts => ts.iter().map(|t| one(t)).collect::<Vec<_>>().join(" | "),
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(o) => {
            format!(
                "{{ {} }}",
                o.iter().map(|(k, v)| format!("{k} = {}", toml_value(v))).collect::<Vec<_>>().join(", ")
            )
        }
        v => v.to_string(),
    }
}

fn default_text(o: &OptionDoc) -> String {
    match (&o.default, o.required) {
        (Some(d), _) => toml_value(d),
        (None, true) => "required".into(),
        (None, false) => "none".into(),
    }
}

/// The README's spec reference (between its `<!-- spec-reference -->` markers).
pub fn markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', "<br>");
    let mut out = String::new();
    let table = |out: &mut String, t: &TableDoc, heading: &str| {
        out.push_str(&format!("{heading}\n\n"));
        if !t.doc.is_empty() {
            out.push_str(&format!("{}\n\n", t.doc.replace('\n', "\n\n")));
        }
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for o in &t.options {
            out.push_str(&format!(
                "| `{}` | `{}` | `{}` | {} |\n",
                o.key,
                cell(&o.ty),
                cell(&default_text(o)),
                cell(&o.doc)
            ));
        }
        out.push('\n');
    };
    for t in spec_tables() {
        table(&mut out, &t, &format!("#### `{}`", t.name));
    }
    out.push_str("#### `[[steps]]`\n\nZero or more, applied in order; `op` names the op. Every op's keys:\n\n");
    for t in ops() {
        table(&mut out, &t, &format!("##### `op = \"{}\"` (version {})", t.name, t.version.unwrap_or(0)));
    }
    out
}

/// `dsproc ops`: every op with its options, for a terminal.
pub fn text() -> String {
    let mut out = String::new();
    for t in ops() {
        out.push_str(&format!("{} (version {})\n", t.name, t.version.unwrap_or(0)));
        out.push_str(&wrap(&t.doc, "    "));
        for o in &t.options {
            out.push_str(&format!("  {} : {}  (default {})\n", o.key, o.ty, default_text(o)));
            out.push_str(&wrap(&o.doc, "      "));
        }
        out.push('\n');
    }
    out
}

fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    for para in text.lines() {
        let mut line = String::new();
        for w in para.split_whitespace() {
            if !line.is_empty() && indent.len() + line.len() + w.len() + 1 > 96 {
                out.push_str(&format!("{indent}{line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        if !line.is_empty() {
            out.push_str(&format!("{indent}{line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_documented_with_a_type() {
        for t in ops().into_iter().chain(spec_tables()) {
            assert!(!t.doc.is_empty(), "{} has no doc", t.name);
            for o in &t.options {
                assert!(!o.doc.is_empty(), "{}.{} has no doc comment", t.name, o.key);
                assert_ne!(o.ty, "any", "{}.{}: no type", t.name, o.key);
            }
        }
    }

    #[test]
    fn defaults_and_enums_come_from_the_structs() {
        let ops = ops();
        let normalize = ops.iter().find(|t| t.name == "normalize").unwrap();
        let form = normalize.options.iter().find(|o| o.key == "form").unwrap();
        assert_eq!(form.default, Some(Value::String("nfc".into())));
        assert!(form.ty.contains("\"nfkc\"") && form.ty.contains("\"none\""), "{}", form.ty);
        let filter = ops.iter().find(|t| t.name == "filter").unwrap();
        assert!(filter.options.iter().any(|o| o.key == "where" && o.required && o.ty == "string"));
    }
}
