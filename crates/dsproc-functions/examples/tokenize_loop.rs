//! The bare-loop baseline of benches/tokenize_peers.py: encodes the `text` of every
//! line of a JSONL file with the tokenizers crate on THREADS threads (documents
//! dealt round-robin), the same call the `tokenize` function makes, no framework.
//! usage: tokenize_loop TOKENIZER_JSON JSONL THREADS  → {"tokens": N, "seconds": S}

use std::io::BufRead;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, tok, jsonl, threads] = args.as_slice() else {
        eprintln!("usage: tokenize_loop TOKENIZER_JSON JSONL THREADS");
        std::process::exit(2);
    };
    let threads: usize = threads.parse().expect("THREADS");
    let t = dsproc_functions::tokenize::load(tok, None).expect("tokenizer");
    let f = std::io::BufReader::new(std::fs::File::open(jsonl).expect("jsonl"));
    let texts: Vec<String> = f
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.expect("line")).expect("json");
            v["text"].as_str().unwrap_or("").to_string()
        })
        .collect();
    let start = std::time::Instant::now();
    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (t, texts) = (&t, &texts);
                s.spawn(move || {
                    texts
                        .iter()
                        .skip(k)
                        .step_by(threads)
                        .map(|x| t.tokenizer.encode_fast(x.as_str(), false).expect("encode").len())
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    println!("{{\"tokens\": {total}, \"seconds\": {}}}", start.elapsed().as_secs_f64());
}
