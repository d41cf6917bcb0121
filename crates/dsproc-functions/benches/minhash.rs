//! MinHash signatures of real documents (the licence texts in datasets/sample):
//! dsproc's multiply-add-shift MinHash vs probminhash's SuperMinHash at the same
//! signature length. `cargo bench -p dsproc-functions --bench minhash`

use std::hash::BuildHasherDefault;
use std::io::Read;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsproc_functions::minhash::{shingles, Permutations, Shingle};
use probminhash::nohasher::NoHashHasher;
use probminhash::superminhasher::SuperMinHash;

fn docs() -> Vec<Vec<u64>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/sample/licenses.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("sample")).read_to_string(&mut text).expect("gz");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let mut sh = Vec::new();
            shingles(v["text"].as_str().unwrap_or(""), 5, Shingle::Word, &mut sh);
            sh
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn bench(c: &mut Criterion) {
    let docs = docs();
    let total: u64 = docs.iter().map(|d| d.len() as u64).sum();
    let mut g = c.benchmark_group("signature_128");
    g.throughput(Throughput::Elements(total));
    let perms = Permutations::new(128, 42);
    g.bench_function("dsproc_multiply_add_shift", |b| {
        let mut sig = Vec::new();
        b.iter(|| {
            for d in &docs {
                perms.signature(d, &mut sig);
            }
            sig.len()
        })
    });
    g.bench_function("probminhash_superminhash", |b| {
        b.iter(|| {
            let mut n = 0;
            for d in &docs {
                let mut s =
                    SuperMinHash::<f64, u64, NoHashHasher>::new(128, BuildHasherDefault::<NoHashHasher>::default());
                s.sketch_slice(d).expect("sketch");
                n += s.get_hsketch().len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
