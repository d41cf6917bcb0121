//! Decisions of dsproc-quality's presets on a JSONL file, in the format of
//! `tests/compat/datatrove_quality.py` (datatrove 0.10.1's filters).
//!
//! usage: cargo run --release -p dsproc-quality --example quality_jsonl -- IN.jsonl OUT.jsonl
//!            [--tokens] [--dump-words] [--chain c4,gopher_quality,...]
//!
//! Each preset runs alone on every document with its defaults (single-threaded;
//! timings per preset on stderr). `--tokens` adds `"words": [n, sha256]`;
//! `--dump-words` writes `{"id", "words": [...], "sents": [...]}` (datatrove's
//! `split_into_words`, `split_into_sentences`) instead; `--chain` also times the
//! listed presets chained in one `QualityFilter`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

use dsproc_quality::{Preset, QualityFilter};
use sha2::{Digest, Sha256};

const PRESETS: [&str; 4] = ["gopher_quality", "gopher_repetition", "c4", "fineweb"];

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let tokens = args.iter().any(|a| a == "--tokens");
    let dump = args.iter().any(|a| a == "--dump-words");
    let chain: Option<Vec<String>> =
        args.iter().position(|a| a == "--chain").map(|i| args[i + 1].split(',').map(|s| s.to_string()).collect());
    let pos: Vec<&String> = pos.into_iter().filter(|p| chain.as_ref().is_none_or(|c| **p != c.join(","))).collect();
    let (inp, outp) = (pos[0], pos[1]);
    let filters: Vec<QualityFilter> =
        PRESETS.iter().map(|n| QualityFilter::new(vec![Preset::default_for(n).unwrap()]).unwrap()).collect();
    let chained = chain
        .as_ref()
        .map(|c| QualityFilter::new(c.iter().map(|n| Preset::default_for(n).expect("preset name")).collect()).unwrap());
    let tok = dsproc_quality::tokenizer::english();
    let mut out = BufWriter::new(std::fs::File::create(outp).unwrap());
    let mut times = [Duration::ZERO; 4];
    let mut chain_time = Duration::ZERO;
    let mut tok_time = Duration::ZERO;
    let (mut n, mut bytes) = (0usize, 0usize);
    let t0 = Instant::now();
    for line in BufReader::new(std::fs::File::open(inp).unwrap()).lines() {
        let line = line.unwrap();
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = v["id"].clone();
        let text = v["text"].as_str().unwrap_or("");
        n += 1;
        bytes += text.len();
        if dump {
            let words = tok.words(text);
            let sents = dsproc_quality::tokenizer::split_into_sentences(tok, text);
            let rec = serde_json::json!({"id": id, "words": words, "sents": sents});
            writeln!(out, "{rec}").unwrap();
            continue;
        }
        let mut rec = serde_json::Map::new();
        rec.insert("id".into(), id);
        for (k, f) in filters.iter().enumerate() {
            let t = Instant::now();
            let o = f.evaluate(text, None);
            times[k] += t.elapsed();
            let mut r =
                vec![serde_json::Value::Bool(o.keep), o.failed_rule.map(|s| strip_prefix(PRESETS[k], s)).into()];
            if PRESETS[k] == "c4" {
                r.push(if o.keep { sha(o.text.as_deref().unwrap_or(text)).into() } else { serde_json::Value::Null });
            }
            rec.insert(PRESETS[k].into(), r.into());
        }
        if let Some(c) = &chained {
            let t = Instant::now();
            let o = c.evaluate(text, None);
            chain_time += t.elapsed();
            std::hint::black_box(o);
        }
        if tokens {
            let t = Instant::now();
            let words = tok.words(text);
            tok_time += t.elapsed();
            rec.insert("words".into(), serde_json::json!([words.len(), sha(&words.join("\u{0}"))]));
        }
        writeln!(out, "{}", serde_json::Value::Object(rec)).unwrap();
    }
    out.flush().unwrap();
    let mb = bytes as f64 / 1e6;
    eprintln!("{n} docs, {mb:.1} MB, wall {:.1}s", t0.elapsed().as_secs_f64());
    for (k, p) in PRESETS.iter().enumerate() {
        let s = times[k].as_secs_f64();
        if s > 0.0 {
            eprintln!("  {p}: {s:.1}s, {:.0} docs/s, {:.2} MB/s (one thread)", n as f64 / s, mb / s);
        }
    }
    if let Some(c) = chain {
        let s = chain_time.as_secs_f64();
        eprintln!("  chain {c:?}: {s:.1}s, {:.0} docs/s, {:.2} MB/s", n as f64 / s, mb / s);
    }
    if tokens {
        let s = tok_time.as_secs_f64();
        eprintln!("  tokenizer alone: {s:.1}s, {:.2} MB/s", mb / s);
    }
}

/// datatrove's reason string from a rule name (the preset prefix removed, except for
/// gopher_quality whose reasons already start with `gopher_`).
fn strip_prefix(preset: &str, rule: &str) -> String {
    match preset {
        "gopher_quality" => rule.to_string(),
        "gopher_repetition" => rule.trim_start_matches("gopher_repetition_").to_string(),
        "c4" => rule.trim_start_matches("c4_").to_string(),
        "fineweb" => rule.trim_start_matches("fineweb_").to_string(),
        _ => rule.to_string(),
    }
}
