//! Property tests with shrinking over the spec parser and `--set`: any text and
//! any override either parses or fails with a message — never a panic — and a
//! syntax error names `file:line:col`. `DSPROC_FUZZ_CASES` sets the cases
//! (default 48 in CI; `bash benches/fuzz.sh` runs more).

use proptest::prelude::*;

use crate::spec::{apply_overrides, parse};

const GOOD: &str = "name = \"t\"\n[input]\nuri = \"x/*.jsonl\"\nmax_document_bytes = \"1MiB\"\nschema = { text = \"string\", n = \"int64\" }\n[[steps]]\nop = \"normalize\"\n[[steps]]\nop = \"filter\"\nwhere = \"length(text) > 3\"\n[[steps]]\nop = \"dedup_minhash\"\nthreshold = 0.8\n[output]\nuri = \"out\"\nshard_size = \"64MiB\"\n";

fn cases() -> u32 {
    std::env::var("DSPROC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

/// The good spec with a few bytes replaced, inserted or deleted.
fn mutated() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[".to_string()),
        Just("]".to_string()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("\n".to_string()),
        Just("{".to_string()),
        Just(".".to_string()),
        Just("[[steps]]\n".to_string()),
        Just("op = \"tokenize\"\n".to_string()),
        Just("é".to_string()),
        "[a-z_0-9 ]{1,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec((any::<usize>(), 0usize..4, token), 1..6).prop_map(|edits| {
        let mut s: Vec<char> = GOOD.chars().collect();
        for (at, del, tok) in edits {
            let at = at % (s.len() + 1);
            let end = (at + del).min(s.len());
            s.splice(at..end, tok.chars());
        }
        s.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn spec_parser_never_panics(src in prop_oneof![mutated(), any::<String>()]) {
        if let Err(e) = parse("j.toml", &src) {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            if toml_edit::ImDocument::parse(src.as_str()).is_err() {
                prop_assert!(msg.contains("j.toml:"), "a syntax error names its place: {}", msg);
            }
        }
    }

    #[test]
    fn set_overrides_never_panic(
        key in prop_oneof!["[a-z_.0-9]{0,24}", Just("steps.3.threshold".to_string()), Just("input.schema.n".to_string()), any::<String>()],
        value in prop_oneof![any::<String>(), "[0-9.]{1,6}", Just("\"x\"".to_string()), Just("[1,".to_string())],
    ) {
        let set = format!("{key}={value}");
        if let Ok(src) = apply_overrides("j.toml", GOOD, &[set]) {
            let _ = parse("j.toml", &src);
        }
    }
}
