//! Tokenizer throughput on a JSONL file: `bench_tokenizer IN.jsonl [repeat]`.
use std::io::{BufRead, BufReader};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let texts: Vec<String> = BufReader::new(std::fs::File::open(&args[0]).unwrap())
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            v["text"].as_str().unwrap_or("").to_string()
        })
        .collect();
    let rep: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let tok = dsproc_quality::tokenizer::english();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let mut v = Vec::new();
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..rep {
        for s in &texts {
            tok.tokenize_into(s, &mut v);
            n += v.len();
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("{} tokens, {:.2} MB/s", n, (bytes * rep) as f64 / 1e6 / s);
}
