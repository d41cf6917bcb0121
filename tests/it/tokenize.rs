//! `tokenize` and the token shard formats. The tokenizer files come from
//! `scripts/fetch-tokenizers.sh` (`DSPROC_TOKENIZERS`, set by `.ci/run`); the
//! Python checks use `DSPROC_PYTHON` (tokenizers, pyarrow, datasets) and, for the
//! torch-based readers, `DSPROC_READERS_PYTHON` (scripts/setup-readers.sh). A part
//! whose prerequisite is absent prints SKIP with the reason; under CI only the
//! torch readers may be absent (everything else is a failure).

use std::path::{Path, PathBuf};

use dsproc_runtime::Engine;

use crate::common::{load, repo, run, shard_digests, skip};

/// `DIR/<kind>/tokenizer.json`, or None (with a printed reason).
fn tokenizer(kind: &str, test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("DSPROC_TOKENIZERS") else {
        skip(format!("{test}: DSPROC_TOKENIZERS is not set (scripts/test.sh fetches the files and sets it)"));
        return None;
    };
    let p = Path::new(&dir).join(kind).join("tokenizer.json");
    if !p.exists() {
        skip(format!("{test}: {} is missing (run scripts/fetch-tokenizers.sh)", p.display()));
        return None;
    }
    Some(p)
}

/// The sample corpus (760 real documents: Debian copyright files and licences).
fn spec(tok: &Path, extra_step: &str, out: &Path, format: &str, output_extra: &str) -> String {
    format!(
        "name = \"tok\"\n[input]\nuri = \"{}/datasets/sample/*.jsonl.*\"\nid = \"id\"\n\n[[steps]]\nop = \"tokenize\"\ntokenizer = \"{}\"\n{extra_step}\n[output]\nuri = \"{}\"\nformat = \"{format}\"\nshard_size = \"128KiB\"\nmode = \"overwrite\"\n{output_extra}\n",
        repo().display(),
        tok.display(),
        out.display()
    )
}

/// Runs a Python script; Ok(stdout) on success, Err(None) when the script says
/// SKIP (exit 3), Err(Some(output)) on failure.
fn python(py: &std::ffi::OsStr, args: &[&str]) -> Result<String, Option<String>> {
    let o = std::process::Command::new(py).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    match o.status.code() {
        Some(0) => Ok(text),
        Some(3) => {
            eprintln!("{}", text.lines().rev().find(|l| l.starts_with("SKIP")).unwrap_or("SKIP"));
            Err(None)
        }
        _ => Err(Some(text)),
    }
}

/// Token ids equal the Python `tokenizers` package's for both real tokenizer
/// files (byte-level BPE with EOS, WordPiece with BOS/EOS and truncation), local
/// and on Ballista; the manifest records sha256, vocabulary and token totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_ids_equal_python_tokenizers() {
    // The byte-level BPE files run dsproc's fast encoder; WordPiece runs the
    // tokenizers crate: ids equal Python's either way, and the manifest says which
    // encoder ran.
    let cases = [
        ("bpe", "append_eos = true\n", Some(65_000u64), "fast_bpe"),
        ("wordpiece", "add_bos = true\nappend_eos = true\nmax_tokens = 300\n", Some(30_522), "hf_tokenizers"),
        ("cl100k", "append_eos = true\n", None, "fast_bpe"),
        ("llama3", "", None, "fast_bpe"),
        ("qwen3", "append_eos = true\n", None, "fast_bpe"),
        ("o200k", "", None, "fast_bpe"),
    ];
    for (kind, opts, vocab, encoder) in cases {
        let Some(tok) = tokenizer(kind, "token_ids_equal_python_tokenizers") else { return };
        let dir = tempfile::tempdir().unwrap();
        let mut digests = Vec::new();
        for (i, engine) in [Engine::Local, Engine::Standalone].into_iter().enumerate() {
            let out = dir.path().join(format!("o{i}"));
            let m = run(&load(dir.path(), &spec(&tok, opts, &out, "parquet", "")), engine, 3).await.unwrap();
            let step = &m.steps[0];
            let info = step.info.as_ref().unwrap();
            if let Some(vocab) = vocab {
                assert_eq!(info["vocab_size"], vocab);
            }
            assert_eq!(info["encoder"], encoder, "{kind}: {info}");
            assert_eq!(info["encoder_fallback_reason"].is_null(), encoder == "fast_bpe", "{kind}: {info}");
            assert_eq!(info["tokenizer_sha256"].as_str().unwrap().len(), 64);
            let total: u64 = m.shards.iter().filter_map(|s| s.tokens).sum();
            assert_eq!(step.stats["tokens"], total, "step total = sum of shard totals");
            assert_eq!(m.tokens, Some(total), "the manifest's total");
            assert!(total > 100_000, "{total}");
            if kind == "wordpiece" {
                assert!(step.stats["truncated"] > 0, "max_tokens cut long documents");
            }
            digests.push(shard_digests(&m));
            if i == 0 {
                let Some(py) = std::env::var_os("DSPROC_PYTHON") else {
                    skip("python tokenizers comparison: DSPROC_PYTHON is not set");
                    continue;
                };
                let script = repo().join("tests/compat/check_tokens.py");
                match python(&py, &[script.to_str().unwrap(), out.to_str().unwrap()]) {
                    Ok(text) => assert!(text.contains("tokens equal: 760 documents"), "{text}"),
                    Err(None) => {}
                    Err(Some(text)) => panic!("{kind}: {text}"),
                }
            }
        }
        assert_eq!(digests[0], digests[1], "local and Ballista shards are byte-identical");
    }
}

/// Megatron .bin/.idx and MDS shards hold exactly the Parquet dataset's documents
/// and tokens, read back by megatron-core, mosaicml-streaming and HF datasets;
/// shuffle_seed is deterministic and another seed reorders the same documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_formats_read_back_and_shuffle() {
    let Some(tok) = tokenizer("bpe", "token_formats_read_back_and_shuffle") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let go = |format: &'static str, out: PathBuf, seed: u64| {
        let s = spec(&tok, "append_eos = true\n", &out, format, &format!("shuffle_seed = {seed}"));
        let root = d.to_path_buf();
        async move { run(&load(&root, &s), Engine::Local, 3).await.unwrap() }
    };
    let reference = go("parquet", d.join("pq"), 11).await;
    let again = go("parquet", d.join("pq2"), 11).await;
    assert_eq!(shard_digests(&reference), shard_digests(&again), "same seed, byte-identical shards");
    let other = go("parquet", d.join("pq3"), 12).await;
    assert_ne!(shard_digests(&reference), shard_digests(&other));
    let ids = |out: &Path, m: &dsproc_job::manifest::Manifest| -> Vec<String> {
        parquet_shards(out, m).into_iter().flatten().flat_map(|b| strings(&b, "id")).collect()
    };
    let (a, b) = (ids(&d.join("pq"), &reference), ids(&d.join("pq3"), &other));
    assert_ne!(a, b, "another seed, another order");
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb, "the same documents");
    assert_ne!(a, sa, "shuffled, not in id order");

    let meg = go("megatron", d.join("meg"), 11).await;
    let mds = go("mds", d.join("mds"), 11).await;
    let s = spec(&tok, "append_eos = true\n", &d.join("mdsz"), "mds", "shuffle_seed = 11\ncompression = \"zstd:5\"");
    let mdsz = run(&load(d, &s), Engine::Local, 3).await.unwrap();
    let zipped: Vec<_> = mdsz.shards.iter().filter(|s| s.path.ends_with(".mds.zstd")).collect();
    assert!(!zipped.is_empty());
    for s in &zipped {
        let raw = zstd::decode_all(std::fs::read(d.join("mdsz").join(&s.path)).unwrap().as_slice()).unwrap();
        assert_eq!(Some(raw.len() as u64), s.raw_bytes);
    }
    assert_eq!(meg.rows.out, 760);
    assert!(meg.shards.iter().any(|s| s.path.ends_with(".idx")));
    // index.json lies beside the shards, in the version's prefix (the versions layout)
    assert!(mds
        .shards
        .iter()
        .any(|s| s.path == format!("{}/index.json", dsproc_common::config::version_dir(mds.version))));
    let tokens = |m: &dsproc_job::manifest::Manifest| m.shards.iter().filter_map(|s| s.tokens).sum::<u64>();
    assert_eq!(tokens(&meg), tokens(&reference));
    assert_eq!(tokens(&mds), tokens(&reference));
    // uint16 ids for a 65,000-entry vocabulary: .bin bytes = 2 × tokens
    let bin: u64 = meg.shards.iter().filter(|s| s.path.ends_with(".bin")).map(|s| s.bytes).sum();
    assert_eq!(bin, 2 * tokens(&reference));

    let script = repo().join("tests/compat/read_shards.py");
    let script = script.to_str().unwrap();
    let pq = d.join("pq");
    let mut checks = vec![("DSPROC_PYTHON", pq.clone(), "parquet: 760 documents")];
    checks.push(("DSPROC_READERS_PYTHON", d.join("meg"), "bin: 760 documents"));
    checks.push(("DSPROC_READERS_PYTHON", d.join("mds"), "mds: 760 documents"));
    checks.push(("DSPROC_READERS_PYTHON", d.join("mdsz"), "mds: 760 documents"));
    for (var, out, want) in checks {
        let Some(py) = std::env::var_os(var) else {
            let what = format!("reading {} back: {var} is not set", out.display());
            // only the ~6 GB torch-based readers are optional
            if var == "DSPROC_READERS_PYTHON" {
                eprintln!("SKIP {what}");
            } else {
                skip(what);
            }
            continue;
        };
        match python(&py, &[script, pq.to_str().unwrap(), out.to_str().unwrap()]) {
            Ok(text) => assert!(text.contains(want), "{text}"),
            Err(None) => {}
            Err(Some(text)) => panic!("{}: {text}", out.display()),
        }
    }
}

/// Spec errors name the key; a format that stores tokens needs a tokenize step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokenize_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let s = format!(
        "name = \"t\"\n[input]\nuri = \"{}/datasets/sample/licenses.jsonl.gz\"\n[output]\nuri = \"{}\"\nformat = \"megatron\"\n",
        repo().display(),
        out.display()
    );
    let e = run(&load(dir.path(), &s), Engine::Local, 1).await.unwrap_err();
    assert!(e.contains("add a `tokenize` step"), "{e}");
    let p = dir.path().join("job.toml");
    let s =
        s.replace("[output]", "[[steps]]\nop = \"tokenize\"\ntokenizer = \"nope.json\"\noverflow = \"wrap\"\n[output]");
    std::fs::write(&p, &s).unwrap();
    let e = dsproc_job::LoadedSpec::load(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("overflow"), "{e}");
    let s = s.replace("overflow = \"wrap\"\n", "");
    let e = run(&load(dir.path(), &s), Engine::Local, 1).await.unwrap_err();
    assert!(e.contains("nope.json"), "{e}");
}

/// Every row batch of a committed Parquet dataset, in shard order, per shard.
fn parquet_shards(out: &Path, m: &dsproc_job::manifest::Manifest) -> Vec<Vec<datafusion::arrow::array::RecordBatch>> {
    m.shards
        .iter()
        .filter(|s| s.path.ends_with(".parquet"))
        .map(|s| {
            let f = std::fs::File::open(out.join(&s.path)).unwrap();
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect()
        })
        .collect()
}

fn list_u32(b: &datafusion::arrow::array::RecordBatch, col: &str, row: usize) -> Vec<u32> {
    use datafusion::arrow::array::{Array, ListArray, UInt32Array};
    let l = b.column_by_name(col).unwrap().as_any().downcast_ref::<ListArray>().unwrap().value(row);
    l.as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec()
}

fn strings(b: &datafusion::arrow::array::RecordBatch, col: &str) -> Vec<String> {
    let c =
        datafusion::arrow::compute::cast(b.column_by_name(col).unwrap(), &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
    let c = c.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().unwrap();
    c.iter().map(|x| x.unwrap().to_string()).collect()
}

/// `pack = { seq_len }`: sequences of exactly seq_len tokens (only a shard's last
/// may be shorter) whose concatenation is the documents' tokens in order;
/// `doc_ids` / `doc_starts` locate every document; the Megatron `.idx` and the MDS
/// index hold the same sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pack_into_fixed_length_sequences() {
    use datafusion::arrow::array::{Array, ListArray, StringArray};
    let Some(tok) = tokenizer("bpe", "pack_into_fixed_length_sequences") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let go = |format: &'static str, out: PathBuf, pack: bool| {
        let extra = if pack { "shuffle_seed = 5\npack = { seq_len = 128 }" } else { "shuffle_seed = 5" };
        let s = spec(&tok, "append_eos = true\n", &out, format, extra);
        let root = d.to_path_buf();
        async move { run(&load(&root, &s), Engine::Local, 3).await.unwrap() }
    };
    let reference = go("parquet", d.join("ref"), false).await;
    let packed = go("parquet", d.join("pk"), true).await;
    assert_eq!(packed.rows.out, 760, "rows count documents");
    let mut docs: Vec<(String, Vec<u32>)> = Vec::new();
    for b in parquet_shards(&d.join("ref"), &reference).into_iter().flatten() {
        for (i, id) in strings(&b, "id").into_iter().enumerate() {
            docs.push((id, list_u32(&b, "tokens", i)));
        }
    }
    let mut all = Vec::new();
    let mut pieces: Vec<(String, u32)> = Vec::new(); // (doc id, piece length)
    let mut sequences = 0u64;
    for shard in parquet_shards(&d.join("pk"), &packed) {
        let rows: usize = shard.iter().map(|b| b.num_rows()).sum();
        let mut k = 0;
        for b in &shard {
            let ids = b.column_by_name("doc_ids").unwrap().as_any().downcast_ref::<ListArray>().unwrap().clone();
            for i in 0..b.num_rows() {
                let t = list_u32(b, "tokens", i);
                k += 1;
                assert!(t.len() == 128 || k == rows, "only a shard's last sequence is short: {}", t.len());
                let starts = list_u32(b, "doc_starts", i);
                let names = ids.value(i);
                let names = names.as_any().downcast_ref::<StringArray>().unwrap();
                assert_eq!(starts[0], 0);
                for j in 0..starts.len() {
                    let end = if j + 1 < starts.len() { starts[j + 1] } else { t.len() as u32 };
                    pieces.push((names.value(j).to_string(), end - starts[j]));
                }
                all.extend(t);
                sequences += 1;
            }
        }
    }
    let expected: Vec<u32> = docs.iter().flat_map(|d| d.1.clone()).collect();
    assert_eq!(all, expected, "sequences concatenate to the documents' tokens in order");
    // Pieces of one document are consecutive and add up to its length.
    let mut merged: Vec<(String, u32)> = Vec::new();
    for (id, n) in pieces {
        match merged.last_mut() {
            Some(last) if last.0 == id => last.1 += n,
            _ => merged.push((id, n)),
        }
    }
    let want: Vec<(String, u32)> = docs.iter().map(|(id, t)| (id.clone(), t.len() as u32)).collect();
    assert_eq!(merged, want);
    assert_eq!(packed.shards.iter().filter_map(|s| s.sequences).sum::<u64>(), sequences);

    let meg = go("megatron", d.join("meg"), true).await;
    let mut lengths = Vec::new();
    for s in meg.shards.iter().filter(|s| s.path.ends_with(".idx")) {
        let idx = std::fs::read(d.join("meg").join(&s.path)).unwrap();
        assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
        let n = u64::from_le_bytes(idx[18..26].try_into().unwrap()) as usize;
        lengths.extend((0..n).map(|i| i32::from_le_bytes(idx[34 + 4 * i..38 + 4 * i].try_into().unwrap()) as usize));
    }
    assert_eq!(lengths.len() as u64, sequences);
    assert_eq!(lengths.iter().sum::<usize>(), expected.len());
    let mds = go("mds", d.join("mds"), true).await;
    // MDS's index.json lies beside its shards, in the version's prefix.
    let mds_dir = d
        .join("mds")
        .join(mds.shards.iter().find(|s| s.path.ends_with("index.json")).unwrap().path.trim_end_matches("/index.json"));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(mds_dir.join("index.json")).unwrap()).unwrap();
    let samples: u64 = index["shards"].as_array().unwrap().iter().map(|s| s["samples"].as_u64().unwrap()).sum();
    assert_eq!(samples, sequences);
    assert_eq!(mds.rows.out, 760);
    if let Some(py) = std::env::var_os("DSPROC_READERS_PYTHON") {
        let script = r#"
import sys
from streaming import StreamingDataset
ds = StreamingDataset(local=sys.argv[1], remote=None, shuffle=False, batch_size=1)
print(ds.num_samples, sum(len(ds[i]["tokens"]) for i in range(ds.num_samples)), len(ds[0]["doc_ids"]))
"#;
        let o = std::process::Command::new(py).args(["-c", script, mds_dir.to_str().unwrap()]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let nums: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(&nums[..2], &[sequences, expected.len() as u64], "{out}");
    } else {
        eprintln!("SKIP reading packed MDS with mosaicml-streaming: DSPROC_READERS_PYTHON is not set");
    }
}

/// `overflow = "split"`: long documents become rows `<id>#k` of at most max_tokens
/// (each ending in EOS) whose contents concatenate to the whole document's ids; the
/// manifest balances with `rows.added`; local and Ballista agree byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_long_documents_into_rows() {
    let Some(tok) = tokenizer("bpe", "split_long_documents_into_rows") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = run(&load(d, &spec(&tok, "append_eos = true\n", &d.join("whole"), "parquet", "")), Engine::Local, 2)
        .await
        .unwrap();
    let split_steps = "append_eos = true\nmax_tokens = 64\noverflow = \"split\"\n";
    let mut digests = Vec::new();
    for (i, engine) in [Engine::Local, Engine::Standalone].into_iter().enumerate() {
        let out = d.join(format!("split{i}"));
        let m = run(&load(d, &spec(&tok, split_steps, &out, "parquet", "")), engine, 3).await.unwrap();
        digests.push(shard_digests(&m));
        let added = m.rows.added["1:tokenize:split"];
        assert!(added > 0);
        assert_eq!(m.rows.rows_in + added, m.rows.out);
        if i > 0 {
            continue;
        }
        let eos = m.steps[0].info.as_ref().unwrap()["eos_id"].as_u64().unwrap() as u32;
        let mut full: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
        for b in parquet_shards(&d.join("whole"), &whole).into_iter().flatten() {
            for (r, id) in strings(&b, "id").into_iter().enumerate() {
                full.insert(id, list_u32(&b, "tokens", r));
            }
        }
        let mut rebuilt: std::collections::BTreeMap<String, Vec<(u32, Vec<u32>)>> = Default::default();
        for b in parquet_shards(&out, &m).into_iter().flatten() {
            for (r, id) in strings(&b, "id").into_iter().enumerate() {
                let t = list_u32(&b, "tokens", r);
                assert!(t.len() <= 64 && t.last() == Some(&eos), "{id}: {} tokens", t.len());
                let (doc, k) = match id.rsplit_once('#') {
                    Some((doc, k)) if !full.contains_key(&id) => (doc.to_string(), k.parse().unwrap()),
                    _ => (id.clone(), 0),
                };
                rebuilt.entry(doc).or_default().push((k, t[..t.len() - 1].to_vec()));
            }
        }
        assert_eq!(rebuilt.len(), full.len(), "every document is there");
        for (doc, mut parts) in rebuilt {
            parts.sort();
            let mut ids: Vec<u32> = parts.into_iter().flat_map(|p| p.1).collect();
            ids.push(eos);
            assert_eq!(ids, full[&doc], "{doc}");
        }
    }
    assert_eq!(digests[0], digests[1]);
}

/// `tokenizer = "http://…"`: fetched through object_store (a real HTTP server on
/// 127.0.0.1, stopped by its pid), the same ids as the local file, locally and on
/// Ballista; the manifest names the URL; a missing URL fails naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokenizer_from_an_http_url() {
    let Some(tok) = tokenizer("bpe", "tokenizer_from_an_http_url") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(tok.parent().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/tokenizer.json");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed().as_secs() < 20, "http.server did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let local = run(&load(d, &spec(&tok, "append_eos = true\n", &d.join("l"), "parquet", "")), Engine::Local, 2).await;
    let remote = spec(Path::new(&url), "append_eos = true\n", &d.join("r"), "parquet", "");
    let over_http = run(&load(d, &remote), Engine::Local, 2).await;
    let on_ballista = run(&load(d, &remote.replace("/r\"", "/b\"")), Engine::Standalone, 2).await;
    let missing = run(&load(d, &remote.replace("tokenizer.json", "nope.json")), Engine::Local, 1).await;
    let _ = server.kill();
    let _ = server.wait();
    let (local, over_http, on_ballista) = (local.unwrap(), over_http.unwrap(), on_ballista.unwrap());
    assert_eq!(shard_digests(&local), shard_digests(&over_http));
    assert_eq!(shard_digests(&local), shard_digests(&on_ballista));
    let info = over_http.steps[0].info.as_ref().unwrap();
    assert_eq!(info["tokenizer"], url.as_str());
    assert_eq!(info["tokenizer_sha256"], local.steps[0].info.as_ref().unwrap()["tokenizer_sha256"]);
    let e = missing.unwrap_err();
    assert!(e.contains("nope.json"), "{e}");
}
