//! Tests that need no model file: small models written here in the fastText format.

use super::*;

/// A small deterministic generator (xorshift) for weights and corruptions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 2001) as f32 / 1000.0 - 1.0
    }
}

/// What to write: a supervised model over `words` and `labels` (with `__label__`).
struct Spec {
    version: i32,
    dim: i32,
    loss: i32,
    word_ngrams: i32,
    bucket: i32,
    minn: i32,
    maxn: i32,
    words: Vec<&'static str>,
    labels: Vec<(&'static str, i64)>,
    /// None: dense input; Some(qnorm): quantized input (dsub 2) with or without norms.
    quant: Option<bool>,
    /// -1: no pruning; otherwise the (bucket, row) pairs (len = pruneidx_size).
    pruneidx: Option<Vec<(i32, i32)>>,
    seed: u64,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            version: 12,
            dim: 4,
            loss: 1,
            word_ngrams: 2,
            bucket: 20,
            minn: 2,
            maxn: 3,
            words: vec!["</s>", "hello", "world", "héllo"],
            labels: vec![("__label__a", 50), ("__label__b", 30), ("__label__c", 20), ("__label__d", 5)],
            quant: None,
            pruneidx: None,
            seed: 0x9E3779B97F4A7C15,
        }
    }
}

fn put_i32(b: &mut Vec<u8>, v: i32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_f32(b: &mut Vec<u8>, v: f32) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Writes `spec` as a model file; returns it and the decoded (dense) input rows.
fn write_model(spec: &Spec) -> (Vec<u8>, Vec<f32>) {
    let mut rng = Rng(spec.seed);
    let mut b = Vec::new();
    put_i32(&mut b, format::MAGIC);
    put_i32(&mut b, spec.version);
    let loss = spec.loss;
    for v in [spec.dim, 5, 5, 1, 5, spec.word_ngrams, loss, 3, spec.bucket, spec.minn, spec.maxn, 100] {
        put_i32(&mut b, v);
    }
    b.extend_from_slice(&1e-4f64.to_le_bytes());
    let nwords = spec.words.len() as i32;
    let nlabels = spec.labels.len() as i32;
    put_i32(&mut b, nwords + nlabels);
    put_i32(&mut b, nwords);
    put_i32(&mut b, nlabels);
    put_i64(&mut b, 1000);
    put_i64(&mut b, spec.pruneidx.as_ref().map_or(-1, |p| p.len() as i64));
    for (i, w) in spec.words.iter().enumerate() {
        b.extend_from_slice(w.as_bytes());
        b.push(0);
        put_i64(&mut b, 100 - i as i64);
        b.push(0);
    }
    for (l, c) in &spec.labels {
        b.extend_from_slice(l.as_bytes());
        b.push(0);
        put_i64(&mut b, *c);
        b.push(1);
    }
    for &(k, v) in spec.pruneidx.iter().flatten() {
        put_i32(&mut b, k);
        put_i32(&mut b, v);
    }
    let dim = spec.dim as usize;
    let rows = nwords as usize
        + match &spec.pruneidx {
            None => spec.bucket as usize,
            Some(p) => p.iter().map(|x| x.1 as usize + 1).max().unwrap_or(0),
        };
    let mut decoded = Vec::new();
    match spec.quant {
        None => {
            b.push(0);
            put_i64(&mut b, rows as i64);
            put_i64(&mut b, dim as i64);
            for _ in 0..rows * dim {
                let v = rng.f32();
                decoded.push(v);
                put_f32(&mut b, v);
            }
        }
        Some(qnorm) => {
            b.push(1);
            b.push(qnorm as u8);
            put_i64(&mut b, rows as i64);
            put_i64(&mut b, dim as i64);
            let (dsub, nsubq) = (2usize, dim.div_ceil(2));
            let lastdsub = if dim.is_multiple_of(dsub) { dsub } else { dim % dsub };
            let codes: Vec<u8> = (0..rows * nsubq).map(|_| rng.next() as u8).collect();
            put_i32(&mut b, codes.len() as i32);
            b.extend_from_slice(&codes);
            let centroids: Vec<f32> = (0..dim * 256).map(|_| rng.f32()).collect();
            for v in [dim as i32, nsubq as i32, dsub as i32, lastdsub as i32] {
                put_i32(&mut b, v);
            }
            for &c in &centroids {
                put_f32(&mut b, c);
            }
            let norm_codes: Vec<u8> = (0..rows).map(|_| rng.next() as u8).collect();
            let norms: Vec<f32> = (0..256).map(|_| rng.f32().abs() + 0.5).collect();
            if qnorm {
                b.extend_from_slice(&norm_codes);
                for v in [1, 1, 1, 1] {
                    put_i32(&mut b, v);
                }
                for &n in &norms {
                    put_f32(&mut b, n);
                }
            }
            for r in 0..rows {
                let alpha = if qnorm { norms[norm_codes[r] as usize] } else { 1.0 };
                for m in 0..nsubq {
                    let code = codes[r * nsubq + m] as usize;
                    let d = if m == nsubq - 1 { lastdsub } else { dsub };
                    let off = if m == nsubq - 1 { m * 256 * dsub + code * lastdsub } else { (m * 256 + code) * dsub };
                    for n in 0..d {
                        decoded.push(alpha * centroids[off + n]);
                    }
                }
            }
        }
    }
    b.push(0); // qout
    let out_rows = nlabels as usize;
    put_i64(&mut b, out_rows as i64);
    put_i64(&mut b, dim as i64);
    let mut out_rng = Rng(spec.seed ^ 0x5555);
    for _ in 0..out_rows * dim {
        put_f32(&mut b, out_rng.f32() * 3.0);
    }
    (b, decoded)
}

/// The same model with a dense input matrix of the decoded rows (and no pruning).
fn dense_twin(spec: &Spec, decoded: &[f32]) -> Vec<u8> {
    let (bytes, _) = write_model(&Spec { quant: None, ..clone_spec(spec) });
    // Replace the dense input values: they follow the dictionary, the flag and m, n.
    let quantless = bytes;
    let start = dict_end(&quantless) + 1 + 16;
    let mut out = quantless.clone();
    for (i, v) in decoded.iter().enumerate() {
        out[start + 4 * i..start + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn clone_spec(s: &Spec) -> Spec {
    Spec { words: s.words.clone(), labels: s.labels.clone(), pruneidx: s.pruneidx.clone(), ..*s }
}

/// Offset just after the dictionary (where the quant_input flag is).
fn dict_end(bytes: &[u8]) -> usize {
    let mut pos = 8 + 12 * 4 + 8;
    let size = i32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
    let prune = i64::from_le_bytes(bytes[pos + 20..pos + 28].try_into().unwrap());
    pos += 28;
    for _ in 0..size {
        pos += bytes[pos..].iter().position(|&b| b == 0).unwrap() + 1 + 9;
    }
    pos + 8 * prune.max(0) as usize
}

fn model(spec: &Spec) -> Model {
    Model::from_bytes(&write_model(spec).0).unwrap()
}

#[test]
fn the_hash_is_fnv1a_over_signed_chars() {
    assert_eq!(fasttext_hash(b""), 2166136261);
    assert_eq!(fasttext_hash(b"a"), 0xe40c292c); // plain FNV-1a for ASCII
                                                 // A byte >= 0x80 is sign-extended: h ^ 0xFFFFFFC3 rather than h ^ 0xC3.
    let signed = (2166136261u32 ^ 0xFFFF_FFC3).wrapping_mul(16777619);
    let signed = (signed ^ 0xFFFF_FFA9).wrapping_mul(16777619);
    assert_eq!(fasttext_hash("é".as_bytes()), signed);
    let unsigned = ((2166136261u32 ^ 0xC3).wrapping_mul(16777619) ^ 0xA9).wrapping_mul(16777619);
    assert_ne!(signed, unsigned);
}

#[test]
fn subwords_are_char_ngrams_of_the_bracketed_word_over_utf8_characters() {
    let m = model(&Spec { minn: 1, maxn: 2, bucket: 1_000_003, ..Spec::default() });
    let mut got = Vec::new();
    m.compute_subwords("<hé>".as_bytes(), &mut got);
    // 1-grams only inside (h, é), 2-grams everywhere: <h, hé, é>.
    let expect: Vec<i32> = ["<h", "h", "hé", "é", "é>"]
        .iter()
        .map(|g| m.nwords + (fasttext_hash(g.as_bytes()) % 1_000_003) as i32)
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut expect_sorted = expect.clone();
    expect_sorted.sort();
    assert_eq!(got_sorted, expect_sorted);
    assert_eq!(got, expect, "C++ order: by start character, then by length");
}

#[test]
fn line_ids_follow_getline() {
    let m = model(&Spec::default());
    let mut s = Scratch::default();
    let ids = |text: &str, doc: bool, s: &mut Scratch| {
        m.line_ids(text.as_bytes(), doc, s);
        s.ids.clone()
    };
    // An empty line is the EOS token alone (word 0, no subwords).
    assert_eq!(ids("", false, &mut s), vec![0]);
    assert_eq!(ids(" \t\r\x0b\x0c\0 ", false, &mut s), vec![0]);
    // In-vocab word: its precomputed subwords (starting with its id), then EOS, then
    // the word bigram hashes.
    let hello = ids("hello", false, &mut s);
    assert_eq!(hello[0], 1);
    assert_eq!(hello[hello.len() - 2], 0, "EOS after the word's subwords: {hello:?}");
    // Word bigram (hello, </s>): h = hash(hello) * 116049371 + hash(</s>), as u64 of i32s.
    let h = (fasttext_hash(b"hello") as i32 as i64 as u64)
        .wrapping_mul(116049371)
        .wrapping_add(fasttext_hash(b"</s>") as i32 as i64 as u64);
    assert_eq!(*hello.last().unwrap(), m.nwords + (h % 20) as i32);
    // Lines end at the first newline or a literal </s>; documents read newlines as spaces.
    assert_eq!(ids("hello\nworld", false, &mut s), hello);
    assert_eq!(ids("hello </s> world", false, &mut s), hello);
    assert_eq!(ids("hello\nworld", true, &mut s), ids("hello world", false, &mut s));
    // Labels in the text (known or not) are not words: they are skipped.
    assert_eq!(ids("__label__a hello __label__zz", false, &mut s), hello);
}

#[test]
fn predictions_are_ordered_and_filtered_and_newlines_handled() {
    for loss in [1, 2, 3, 4] {
        let m = model(&Spec { loss, ..Spec::default() });
        let all = m.predict("hello wörld zzz", 0, 0.0);
        assert!(!all.is_empty());
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1), "loss {loss}: {all:?}");
        assert!(all.iter().all(|(l, p)| !l.starts_with("__label__") && *p > 0.0 && *p <= 1.0 + 1e-5));
        let top2 = m.predict("hello wörld zzz", 2, 0.0);
        assert_eq!(top2[..], all[..2.min(all.len())]);
        let thr = all[0].1 - 1e-4;
        assert!(m.predict("hello wörld zzz", 0, thr).iter().all(|p| p.1 >= thr - 1e-5));
        assert_eq!(m.predict_document("hello\nwörld\nzzz", 0, 0.0), all);
        assert_eq!(m.predict("hello\nwörld zzz", 0, 0.0), m.predict("hello", 0, 0.0));
        let ids = m.predict_ids("hello wörld zzz", 0, 0.0);
        assert_eq!(ids.iter().map(|&(i, p)| (m.labels()[i].clone(), p)).collect::<Vec<_>>(), all);
        if loss == 3 {
            // softmax: the probabilities (each + 1e-5) sum to 1
            let sum: f32 = all.iter().map(|p| p.1).sum();
            assert!((sum - 1.0 - 4e-5).abs() < 1e-5, "{sum}");
        }
        if loss == 1 {
            // hierarchical softmax: the leaves' path probabilities sum to 1 too
            let sum: f32 = all.iter().map(|p| p.1).sum();
            assert!((sum - 1.0).abs() < 1e-3, "{sum}");
        }
    }
}

#[test]
fn quantized_rows_equal_their_decoded_dense_rows() {
    for qnorm in [false, true] {
        for dim in [4, 5] {
            let spec = Spec { quant: Some(qnorm), dim, ..Spec::default() };
            let (bytes, decoded) = write_model(&spec);
            let quant = Model::from_bytes(&bytes).unwrap();
            let dense = Model::from_bytes(&dense_twin(&spec, &decoded)).unwrap();
            for text in ["hello world", "héllo wörld zzz", "", "a b c d e f g"] {
                assert_eq!(quant.predict(text, 0, 0.0), dense.predict(text, 0, 0.0), "{text:?} qnorm {qnorm}");
            }
        }
    }
}

#[test]
fn pruned_buckets_are_remapped_or_dropped() {
    // Everything pruned: OOV words add nothing, so the line is the EOS alone.
    let none = model(&Spec { quant: Some(true), pruneidx: Some(vec![]), ..Spec::default() });
    assert_eq!(none.predict("qwerty", 0, 0.0), none.predict("", 0, 0.0));
    // A few buckets kept, remapped to rows after the words.
    let h = |g: &str| (fasttext_hash(g.as_bytes()) % 20) as i32;
    let keep = vec![(h("<q"), 0), (h("qw"), 1)];
    let m = model(&Spec { quant: Some(false), pruneidx: Some(keep), ..Spec::default() });
    let mut s = Scratch::default();
    m.line_ids(b"qw", false, &mut s);
    let nw = m.nwords;
    // <qw>: <q, <qw, qw, qw> (2..3-grams; "q" and "w" alone are 1-grams, not used); only
    // the kept buckets survive (possibly also other n-grams hashing to the same bucket).
    assert!(s.ids.contains(&nw) && s.ids.contains(&(nw + 1)), "{:?}", s.ids);
    assert!(s.ids.iter().all(|&i| i == 0 || i == nw || i == nw + 1), "{:?}", s.ids);
}

#[test]
fn version_11_supervised_models_use_no_char_ngrams() {
    let m = model(&Spec { version: 11, ..Spec::default() });
    assert_eq!(m.args().maxn, 0);
    let mut s = Scratch::default();
    m.line_ids(b"hello zzz", false, &mut s);
    // hello -> its id only; zzz (OOV) -> nothing; EOS; bigrams.
    assert_eq!(&s.ids[..2], &[1, 0]);
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let (bytes, _) = write_model(&Spec { quant: Some(true), pruneidx: Some(vec![(3, 0), (7, 1)]), ..Spec::default() });
    assert!(Model::from_bytes(&bytes).is_ok());
    for len in 0..bytes.len() {
        match Model::from_bytes(&bytes[..len]) {
            Err(Error::Truncated { .. }) | Err(Error::Invalid(_)) => {}
            other => panic!("prefix of {len} bytes: {other:?}"),
        }
    }
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(matches!(Model::from_bytes(&bad), Err(Error::BadMagic(_))));
    let mut newer = bytes.clone();
    newer[4..8].copy_from_slice(&13i32.to_le_bytes());
    let e = Model::from_bytes(&newer).unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion(13)), "{e}");
    assert!(e.to_string().contains("version 13"));
    // Random corruption: load and predict never panic.
    let mut rng = Rng(12345);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = rng.next() as usize % b.len();
            b[i] = rng.next() as u8;
        }
        if let Ok(m) = Model::from_bytes(&b) {
            let _ = m.predict("hello wörld zzz", 0, 0.0);
        }
    }
    let e = Model::load(Path::new("/nonexistent/lid.176.ftz")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn word_vector_models_are_refused() {
    let (mut bytes, _) = write_model(&Spec::default());
    // args.model is the 8th i32 of the args
    bytes[8 + 7 * 4..8 + 8 * 4].copy_from_slice(&2i32.to_le_bytes());
    assert!(matches!(Model::from_bytes(&bytes), Err(Error::Unsupported(_))));
}

#[test]
fn the_heap_keeps_the_k_best_in_decreasing_order() {
    let mut rng = Rng(99);
    for k in 1..8 {
        let values: Vec<f32> = (0..50).map(|_| (rng.next() % 1000) as f32 / 7.0).collect();
        let mut heap: Vec<(f32, i32)> = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            if heap.len() == k && v < heap[0].0 {
                continue;
            }
            push_heap(&mut heap, (v, i as i32));
            if heap.len() > k {
                pop_heap(&mut heap);
                heap.pop();
            }
        }
        sort_heap(&mut heap);
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert_eq!(heap.iter().map(|p| p.0).collect::<Vec<_>>(), sorted[..k]);
    }
}

#[test]
fn the_huffman_tree_pairs_the_smallest_counts_first() {
    // counts sorted decreasing, as fastText's dictionary is
    let t = build_tree(&[50, 30, 20, 5]).unwrap();
    assert_eq!(t.len(), 7);
    assert_eq!((t[4].left, t[4].right), (3, 2)); // 5 + 20
    assert_eq!((t[5].left, t[5].right), (4, 1)); // 25 + 30
    assert_eq!((t[6].left, t[6].right), (0, 5)); // 50 + 55, the root
    assert!(build_tree(&[2_000_000_000_000_000, 1]).is_err());
}

#[test]
fn models_are_shared_across_threads() {
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<Model>();
    let m = model(&Spec::default());
    let want = m.predict("hello world", 0, 0.0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    assert_eq!(m.predict("hello world", 0, 0.0), want);
                }
            });
        }
    });
}
