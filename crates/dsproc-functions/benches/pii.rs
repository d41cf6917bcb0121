//! `PatternDetector::find` (all kinds) over real text: the licence texts in
//! datasets/sample, and when `DSPROC_BENCH_JSONL` names a JSONL file (e.g. the
//! linux_src corpus from shared/ground/build-corpora.py), its first 32 MB of texts.
//! `cargo bench -p dsproc-functions --bench pii`

use std::io::{BufRead, Read};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsproc_functions::pii::patterns::PatternDetector;
use dsproc_functions::pii::{Detector, Kind};

fn texts_of(lines: impl Iterator<Item = String>, max_bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(&l).expect("json");
        let t = v["text"].as_str().unwrap_or("").to_string();
        total += t.len();
        out.push(t);
        if total >= max_bytes {
            break;
        }
    }
    out
}

fn bench_corpus(c: &mut Criterion, name: &str, texts: &[String]) {
    let total: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let mut g = c.benchmark_group(format!("pii_find_{name}"));
    g.throughput(Throughput::Bytes(total));
    g.sample_size(10);
    let det = PatternDetector::new(&Kind::ALL, false);
    g.bench_function("all_kinds", |b| {
        let mut spans = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for t in texts {
                spans.clear();
                det.find(t, &mut spans);
                n += spans.len();
            }
            n
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/sample/licenses.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("sample")).read_to_string(&mut text).expect("gz");
    let licenses = texts_of(text.lines().map(str::to_string), usize::MAX);
    bench_corpus(c, "licenses", &licenses);
    if let Ok(p) = std::env::var("DSPROC_BENCH_JSONL") {
        let f = std::io::BufReader::new(std::fs::File::open(&p).expect("DSPROC_BENCH_JSONL"));
        let texts = texts_of(f.lines().map(|l| l.expect("line")), 32 << 20);
        bench_corpus(c, "jsonl", &texts);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
