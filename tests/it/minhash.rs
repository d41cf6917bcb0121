//! dedup_minhash: survivors against exact truth, determinism across partitions and
//! engines, cluster columns, idempotence and spec errors.

use std::collections::{BTreeMap, BTreeSet};

use dsproc_functions::minhash::{jaccard, shingles, Shingle};
use dsproc_runtime::Engine;

use crate::common::*;

/// Deterministic word soup: `n` base documents of 150 words, and for some of them
/// near copies (1-3 words changed), a chain of copies of copies, and exact copies.
fn corpus() -> Vec<(String, String, i64)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let vocab: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
    let mut docs = Vec::new();
    for d in 0..120 {
        let mut words: Vec<String> = (0..150).map(|_| vocab[(next() % 3000) as usize].clone()).collect();
        docs.push((format!("d{d:03}"), words.join(" "), 0));
        let copies = match d % 6 {
            0 => 3,
            1 => 1,
            _ => 0,
        };
        for c in 0..copies {
            // a copy of the previous copy: a chain d -> a -> b -> c
            for _ in 0..1 + (next() % 2) {
                let pos = (next() % 150) as usize;
                words[pos] = vocab[(next() % 3000) as usize].clone();
            }
            docs.push((format!("d{d:03}{}", ["a", "b", "c"][c]), words.join(" "), (c + 1) as i64 * 10));
        }
        if d % 10 == 3 {
            docs.push((format!("e{d:03}"), docs.last().unwrap().1.to_uppercase(), 1));
        }
    }
    docs
}

/// Survivors by brute force: components of the J >= t graph, smallest id kept.
fn expected(docs: &[(String, String, i64)], t: f64) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let sets: Vec<Vec<u64>> = docs
        .iter()
        .map(|(_, text, _)| {
            let mut v = Vec::new();
            shingles(text, 5, Shingle::Word, &mut v);
            v
        })
        .collect();
    let mut parent: Vec<usize> = (0..docs.len()).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut x = x;
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for i in 0..docs.len() {
        for j in i + 1..docs.len() {
            if jaccard(&mut sets[i].clone(), &mut sets[j].clone()) >= t {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                let (lo, hi) = if docs[a].0 < docs[b].0 { (a, b) } else { (b, a) };
                parent[hi] = lo;
            }
        }
    }
    let mut cluster = BTreeMap::new();
    for i in 0..docs.len() {
        let r = find(&mut parent, i);
        cluster.insert(docs[i].0.clone(), docs[r].0.clone());
    }
    let survivors = cluster.values().cloned().collect();
    (survivors, cluster)
}

fn write_corpus(path: &std::path::Path, docs: &[(String, String, i64)]) {
    let lines: Vec<String> = docs
        .iter()
        .map(|(id, text, q)| serde_json::json!({"id": id, "text": text, "quality": q}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn spec(input: &std::path::Path, steps: &str, out: &std::path::Path) -> String {
    job(&input.display().to_string(), steps, out, "jsonl").replace("[input]\n", "[input]\nid = \"id\"\n")
}

#[test]
fn dedup_minhash_matches_truth_in_every_engine_and_partitioning() {
    big_stack_runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let docs = corpus();
        let input = dir.path().join("in.jsonl");
        write_corpus(&input, &docs);
        let (want, _) = expected(&docs, 0.8);
        assert!(want.len() < docs.len() - 40, "the corpus must hold near-duplicates");
        let steps = "[[steps]]\nop = \"dedup_minhash\"\nthreshold = 0.8\n";

        let mut digests = Vec::new();
        for (i, (engine, parts)) in
            [(Engine::Local, 1), (Engine::Local, 4), (Engine::Standalone, 3)].into_iter().enumerate()
        {
            let out = dir.path().join(format!("out{i}"));
            let m = run(&load(dir.path(), &spec(&input, steps, &out)), engine.clone(), parts).await.unwrap();
            let got: BTreeSet<String> =
                read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
            assert_eq!(got, want, "{engine:?}/{parts}: survivors differ from brute force");
            let removed = (docs.len() - want.len()) as u64;
            assert_eq!(m.rows.dropped.get("1:dedup_minhash:near_duplicate"), Some(&removed));
            assert!(m.rows.balanced());
            let st = &m.steps[0].stats;
            assert!(st["candidate_pairs"] >= st["verified_pairs"] && st["verified_pairs"] >= removed, "{st:?}");
            assert!(st["clusters"] > 0 && st["iterations"] >= 1, "{st:?}");
            let info = m.steps[0].info.as_ref().unwrap();
            assert_eq!(info["signature_version"], "dsproc-minhash-v1");
            assert_eq!(info["seed"], 42);
            digests.push(shard_digests(&m));

            if i == 0 {
                // running it again on its own output (the dataset root: its current
                // version's shards) removes nothing
                let again = dir.path().join("again");
                let out_root = dir.path().join("out0");
                let m2 = run(&load(dir.path(), &spec(&out_root, steps, &again)), Engine::Local, 2).await.unwrap();
                assert_eq!(m2.rows.out, m.rows.out, "dedup_minhash of its own output removed rows");
            }
        }
        assert_eq!(digests[0], digests[1], "1 vs 4 partitions");
        assert_eq!(digests[0], digests[2], "local vs Ballista");
    });
}

#[test]
fn dedup_minhash_cluster_columns_and_keep_rules() {
    big_stack_runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let docs = corpus();
        let input = dir.path().join("in.jsonl");
        write_corpus(&input, &docs);
        let (_, cluster) = expected(&docs, 0.8);
        let mut size: BTreeMap<&str, i64> = BTreeMap::new();
        for r in cluster.values() {
            *size.entry(r).or_default() += 1;
        }

        let out = dir.path().join("clusters");
        let steps = "[[steps]]\nop = \"dedup_minhash\"\nkeep_cluster_column = true\n";
        for engine in [Engine::Local, Engine::Standalone] {
            let m = run(&load(dir.path(), &spec(&input, steps, &out)), engine.clone(), 2).await.unwrap();
            assert_eq!(m.rows.out as usize, docs.len(), "keep_cluster_column keeps every row");
            for r in read_jsonl_dataset(&out, &m) {
                let id = r["id"].as_str().unwrap();
                assert_eq!(r["cluster_id"].as_str().unwrap(), cluster[id], "{id}");
                assert_eq!(r["cluster_size"].as_i64().unwrap(), size[cluster[id].as_str()], "{id}");
            }
        }

        // keep = a numeric column: in each cluster the largest `quality` wins (ties: smallest id)
        let out = dir.path().join("quality");
        let steps = "[[steps]]\nop = \"dedup_minhash\"\nkeep = \"quality\"\n";
        let m = run(&load(dir.path(), &spec(&input, steps, &out)), Engine::Local, 2).await.unwrap();
        let got: BTreeSet<String> =
            read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        let quality: BTreeMap<&str, i64> = docs.iter().map(|(id, _, q)| (id.as_str(), *q)).collect();
        let mut best: BTreeMap<&str, (i64, std::cmp::Reverse<&str>)> = BTreeMap::new();
        for (id, root) in &cluster {
            let cand = (quality[id.as_str()], std::cmp::Reverse(id.as_str()));
            let e = best.entry(root.as_str()).or_insert(cand);
            if cand > *e {
                *e = cand;
            }
        }
        let want: BTreeSet<String> = best.values().map(|(_, id)| id.0.to_string()).collect();
        assert_eq!(got, want);
        assert!(got.contains("d000c"), "the chain's last copy has the highest quality");
    });
}

#[test]
fn dedup_minhash_spec_errors_name_the_key() {
    big_stack_runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        write_corpus(&input, &corpus()[..5]);
        let out = dir.path().join("out");
        for (steps, want) in [
            ("[[steps]]\nop = \"dedup_minhash\"\nbands = 20\nrows = 10\n", "bands"),
            ("[[steps]]\nop = \"dedup_minhash\"\nthreshold = 1.5\n", "threshold"),
            ("[[steps]]\nop = \"dedup_minhash\"\nshingle = \"line\"\n", "shingle"),
        ] {
            let p = dir.path().join("bad.toml");
            std::fs::write(&p, spec(&input, steps, &out)).unwrap();
            let e = dsproc_job::LoadedSpec::load(&p, &[]).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("dedup_minhash"), "{e}");
        }
        let steps = "[[steps]]\nop = \"dedup_minhash\"\nkeep = \"text\"\n";
        let e = run(&load(dir.path(), &spec(&input, steps, &out)), Engine::Local, 2).await.unwrap_err();
        assert!(e.contains("keep column \"text\"") && e.contains("not numeric"), "{e}");
    });
}

#[test]
fn dedup_minhash_save_index_and_against() {
    big_stack_runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut docs = corpus();
        // a near copy of an A survivor, placed in B
        let mut words: Vec<String> = docs[0].1.split(' ').map(String::from).collect();
        words[70] = "changed".into();
        docs.push(("x000".into(), words.join(" "), 0));
        let (a, b): (Vec<_>, Vec<_>) = docs.iter().cloned().partition(|(id, _, _)| id.as_str() < "d060");
        assert!(b.iter().any(|(id, _, _)| id.starts_with('e')), "B holds case-changed copies of A docs");
        let (ia, ib) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        write_corpus(&ia, &a);
        write_corpus(&ib, &b);
        let index = dir.path().join("index");

        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nsave_index = \"{}\"\n", index.display());
        let ma = run(&load(dir.path(), &spec(&ia, &steps, &dir.path().join("outa"))), Engine::Local, 2).await.unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(index.join("index.json")).unwrap()).unwrap();
        assert_eq!(saved["params"]["bands"], ma.steps[0].info.as_ref().unwrap()["bands"]);
        assert!(!saved["files"].as_array().unwrap().is_empty());

        // truth: B's documents in a component that holds an A document go; the rest keep their smallest id
        let (_, cluster) = expected(&docs, 0.8);
        let a_roots: BTreeSet<&String> = a.iter().map(|(id, _, _)| &cluster[id]).collect();
        let mut want = BTreeSet::new();
        for (id, _, _) in &b {
            if !a_roots.contains(&cluster[id]) {
                let smallest = b.iter().filter(|(o, _, _)| cluster[o] == cluster[id]).map(|(o, _, _)| o).min().unwrap();
                want.insert(smallest.clone());
            }
        }
        assert!(want.len() + 5 < b.len(), "B must hold copies of A documents");

        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nagainst = [\"{}\"]\n", index.display());
        for engine in [Engine::Local, Engine::Standalone] {
            let out = dir.path().join("outb");
            let m = run(&load(dir.path(), &spec(&ib, &steps, &out)), engine.clone(), 2).await.unwrap();
            let got: BTreeSet<String> =
                read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
            assert_eq!(got, want, "{engine:?}");
            assert!(!got.contains("x000") && !got.iter().any(|id| id.starts_with('e')));
        }

        // A's dataset root as `against`: its current version's saved index.
        let outa = dir.path().join("outa");
        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nagainst = [\"{}\"]\n", outa.display());
        let out = dir.path().join("outb-root");
        let m = run(&load(dir.path(), &spec(&ib, &steps, &out)), Engine::Local, 2).await.unwrap();
        let got: BTreeSet<String> =
            read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, want, "against the dataset root");

        // A rebuilt (version 2) and version 1 expired: the pointer, pinned to version
        // 1, is refused naming its version; the dataset root follows version 2.
        let steps_a =
            format!("[[steps]]\nop = \"dedup_minhash\"\nsave_index = \"{}\"\n", dir.path().join("index2").display());
        run(&load(dir.path(), &spec(&ia, &steps_a, &outa)), Engine::Local, 2).await.unwrap();
        dsproc_runtime::driver::gc_with_retention(outa.to_str().unwrap(), 0, Some(1), None, false).await.unwrap();
        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nagainst = [\"{}\"]\n", index.display());
        let e = run(&load(dir.path(), &spec(&ib, &steps, &dir.path().join("outb-old"))), Engine::Local, 2)
            .await
            .unwrap_err();
        assert!(e.contains("no longer exists") && e.contains("version 1 of"), "{e}");
        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nagainst = [\"{}\"]\n", outa.display());
        let out = dir.path().join("outb-root2");
        let m = run(&load(dir.path(), &spec(&ib, &steps, &out)), Engine::Local, 2).await.unwrap();
        let got: BTreeSet<String> =
            read_jsonl_dataset(&out, &m).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, want, "against the dataset root after a rebuild and gc");
        // A folder that is neither an index nor a dataset is named.
        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nagainst = [\"{}\"]\n", dir.path().display());
        let e =
            run(&load(dir.path(), &spec(&ib, &steps, &dir.path().join("outd"))), Engine::Local, 2).await.unwrap_err();
        assert!(e.contains("neither index.json") && e.contains("manifest.json"), "{e}");

        // an index saved with other parameters is refused, naming it
        let steps = format!("[[steps]]\nop = \"dedup_minhash\"\nseed = 7\nagainst = [\"{}\"]\n", index.display());
        let e =
            run(&load(dir.path(), &spec(&ib, &steps, &dir.path().join("outc"))), Engine::Local, 2).await.unwrap_err();
        assert!(e.contains("against") && e.contains("different signature parameters"), "{e}");
    });
}

#[test]
fn dedup_minhash_completes_under_a_small_memory_limit() {
    big_stack_runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let docs = corpus();
        let input = dir.path().join("in.jsonl");
        write_corpus(&input, &docs);
        let (want, _) = expected(&docs, 0.8);
        let out = dir.path().join("out");
        let loaded = load(dir.path(), &spec(&input, "[[steps]]\nop = \"dedup_minhash\"\n", &out));
        let opts = dsproc_runtime::RunOptions {
            engine: Engine::Local,
            engine_opts: dsproc_runtime::EngineOptions {
                target_partitions: 4,
                memory_limit: Some(48 << 20),
                batch_rows: None,
            },
            progress: false,
            timeout: Some(std::time::Duration::from_secs(300)),
            lineage_url: None,
            incremental: false,
        };
        let m = dsproc_runtime::run_job(&loaded, &opts).await.unwrap().manifest;
        assert_eq!(m.rows.out as usize, want.len());
    });
}
