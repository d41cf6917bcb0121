//! Predictions of dsproc-langid for the documents of a JSONL file, in the format of
//! tests/compat/langid_reference.py (the C++ fastText through fasttext-predict).
//!
//! usage: predict_jsonl MODEL IN.jsonl OUT.jsonl [K]
//!   IN: {"id", "text", ...} per line; OUT: {"id", "labels", "scores"} per line for
//!   `Model::predict_document(text, K, 0.0)` (K default 5). Prints docs/s and MB/s of the
//!   predict calls alone (one thread) on stderr.

use std::io::{BufRead, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: predict_jsonl MODEL IN.jsonl OUT.jsonl [K]");
        std::process::exit(2);
    }
    let k: usize = args.get(4).map(|s| s.parse().expect("K")).unwrap_or(5);
    let model = dsproc_langid::Model::load(std::path::Path::new(&args[1])).expect("model");
    let input = std::io::BufReader::new(std::fs::File::open(&args[2]).expect("input"));
    let mut docs = Vec::new();
    for line in input.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.expect("read")).expect("json");
        let text = v["text"].as_str().expect("text").to_string();
        docs.push((v["id"].clone(), text));
    }
    let t0 = Instant::now();
    let preds: Vec<_> = docs.iter().map(|(_, t)| model.predict_document(t, k, 0.0)).collect();
    let dt = t0.elapsed().as_secs_f64();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[3]).expect("output"));
    for ((id, _), p) in docs.iter().zip(&preds) {
        let labels: Vec<&str> = p.iter().map(|(l, _)| l.as_str()).collect();
        let scores: Vec<f64> = p.iter().map(|&(_, s)| s as f64).collect();
        let rec = serde_json::json!({"id": id, "labels": labels, "scores": scores});
        writeln!(out, "{rec}").expect("write");
    }
    let mb = docs.iter().map(|(_, t)| t.len()).sum::<usize>() as f64 / 1e6;
    eprintln!(
        "dsproc-langid: {} docs in {dt:.3}s: {:.0} docs/s, {:.2} MB/s",
        docs.len(),
        docs.len() as f64 / dt,
        mb / dt
    );
}
