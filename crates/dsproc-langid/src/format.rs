//! The fastText binary model format (`.bin` and quantized `.ftz`), read as
//! `FastText::loadModel` in fastText 0.9.2 (`fasttext.cc`, `args.cc`, `dictionary.cc`,
//! `densematrix.cc`, `quantmatrix.cc`, `productquantizer.cc`) reads it, with every
//! length and index checked so that bad bytes give an [`Error`], never a panic.
//!
//! Layout (all little-endian):
//! ```text
//! i32 magic (793712314)  i32 version (<= 12)
//! Args: i32 dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, f64 t
//! Dictionary: i32 size nwords nlabels, i64 ntokens pruneidx_size,
//!             size x (NUL-terminated word, i64 count, i8 type), pruneidx_size x (i32, i32)
//! u8 quant_input, input matrix (dense: i64 m n, m*n f32 | quant: see QuantMatrix)
//! u8 qout, output matrix (quantized only when quant_input and qout)
//! QuantMatrix: u8 qnorm, i64 m n, i32 codesize, codesize x u8, ProductQuantizer,
//!              [qnorm: m x u8 norm codes, ProductQuantizer]
//! ProductQuantizer: i32 dim nsubq dsub lastdsub, dim*256 f32 centroids
//! ```

use crate::Error;

/// `FASTTEXT_FILEFORMAT_MAGIC_INT32`.
pub const MAGIC: i32 = 793712314;
/// `FASTTEXT_VERSION`: newer files are refused, as C++ refuses them.
pub const VERSION: i32 = 12;
/// Centroids per sub-quantizer (`ProductQuantizer::ksub_`).
pub const KSUB: usize = 256;

/// `loss_name` in args.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossName {
    /// Hierarchical softmax (`hs = 1`): lid.176 uses it.
    HierarchicalSoftmax,
    /// Negative sampling (`ns = 2`).
    NegativeSampling,
    /// Softmax (`softmax = 3`).
    Softmax,
    /// One-vs-all (`ova = 4`).
    OneVsAll,
}

/// `model_name` in args.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelName {
    /// `cbow = 1`.
    Cbow,
    /// `sg = 2`.
    SkipGram,
    /// `sup = 3` (classification; the only kind that predicts).
    Supervised,
}

/// The saved training arguments (`Args::load`).
#[derive(Clone, Debug)]
pub struct Args {
    /// Vector dimension.
    pub dim: i32,
    /// Context window (training only).
    pub ws: i32,
    /// Epochs (training only).
    pub epoch: i32,
    /// Minimal word count (training only).
    pub min_count: i32,
    /// Negatives sampled (training only).
    pub neg: i32,
    /// Length of word n-grams (1: none).
    pub word_ngrams: i32,
    /// Loss.
    pub loss: LossName,
    /// Model kind.
    pub model: ModelName,
    /// Number of hash buckets for n-grams.
    pub bucket: i32,
    /// Minimal char n-gram length.
    pub minn: i32,
    /// Maximal char n-gram length (`maxn <= 0`: no char n-grams).
    pub maxn: i32,
    /// Learning-rate update rate (training only).
    pub lr_update_rate: i32,
    /// Sampling threshold (training only).
    pub t: f64,
    /// Whether the output matrix is quantized (read after the input matrix).
    pub qout: bool,
}

/// A dictionary entry (`entry` in dictionary.h, without the subwords).
#[derive(Clone, Debug)]
pub struct Entry {
    /// The word's bytes as stored.
    pub word: Vec<u8>,
    /// Its count in the training data.
    pub count: i64,
    /// `entry_type`: 0 word, 1 label.
    pub kind: i8,
}

/// The dictionary as stored (`Dictionary::load`, before `initNgrams`).
#[derive(Clone, Debug)]
pub struct RawDictionary {
    /// Number of entries.
    pub size: i32,
    /// Entries `0..nwords` are words.
    pub nwords: i32,
    /// Entries `nwords..nwords+nlabels` are labels.
    pub nlabels: i32,
    /// Tokens in the training data.
    pub ntokens: i64,
    /// -1: not pruned; 0: pruned to no buckets; n > 0: n (bucket, row) pairs.
    pub pruneidx_size: i64,
    /// The entries.
    pub entries: Vec<Entry>,
    /// The pruned-bucket remapping `(bucket id, new id)` in file order.
    pub pruneidx: Vec<(i32, i32)>,
}

/// `ProductQuantizer` (productquantizer.cc).
#[derive(Clone, Debug)]
pub struct ProductQuantizer {
    /// Dimension covered.
    pub dim: i32,
    /// Number of sub-quantizers.
    pub nsubq: i32,
    /// Dimension of each sub-quantizer but the last.
    pub dsub: i32,
    /// Dimension of the last sub-quantizer.
    pub lastdsub: i32,
    /// `dim * 256` centroid values.
    pub centroids: Vec<f32>,
}

impl ProductQuantizer {
    /// Offset of `get_centroids(m, i)` in `centroids`.
    #[inline]
    pub fn centroid_offset(&self, m: usize, i: u8) -> usize {
        let (dsub, lastdsub) = (self.dsub as usize, self.lastdsub as usize);
        if m == self.nsubq as usize - 1 {
            m * KSUB * dsub + i as usize * lastdsub
        } else {
            (m * KSUB + i as usize) * dsub
        }
    }

    /// Checks that every centroid a code can name lies inside `centroids`, and that
    /// the sub-vectors cover at most `n` coordinates.
    fn check(&self, n: usize, what: &'static str) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Invalid(format!("{what}: {why}")));
        if self.nsubq <= 0 || self.dsub <= 0 || self.lastdsub <= 0 || self.dim <= 0 {
            return bad(format!(
                "product quantizer dim {} nsubq {} dsub {} lastdsub {}",
                self.dim, self.nsubq, self.dsub, self.lastdsub
            ));
        }
        let (nsubq, dsub, lastdsub) = (self.nsubq as usize, self.dsub as usize, self.lastdsub as usize);
        let covered = (nsubq - 1).checked_mul(dsub).and_then(|c| c.checked_add(lastdsub));
        if covered.is_none_or(|c| c > n) {
            return bad(format!("{nsubq} sub-quantizers of {dsub} (last {lastdsub}) exceed the {n} columns"));
        }
        for m in 0..nsubq {
            let d = if m == nsubq - 1 { lastdsub } else { dsub };
            if self.centroid_offset(m, 255) + d > self.centroids.len() {
                return bad(format!("sub-quantizer {m} lies outside the {} centroids", self.centroids.len()));
            }
        }
        Ok(())
    }
}

/// A dense `m x n` row-major matrix (`DenseMatrix`).
#[derive(Clone, Debug)]
pub struct DenseMatrix {
    /// Rows.
    pub m: usize,
    /// Columns.
    pub n: usize,
    /// `m * n` values.
    pub data: Vec<f32>,
}

/// A product-quantized matrix (`QuantMatrix`).
#[derive(Clone, Debug)]
pub struct QuantMatrix {
    /// Rows.
    pub m: usize,
    /// Columns.
    pub n: usize,
    /// `nsubq` codes per row.
    pub codes: Vec<u8>,
    /// The row quantizer.
    pub pq: ProductQuantizer,
    /// With `qnorm`: one norm code per row and the norm quantizer.
    pub norm: Option<(Vec<u8>, ProductQuantizer)>,
}

/// An input or output matrix.
#[derive(Clone, Debug)]
pub enum Matrix {
    /// `DenseMatrix`.
    Dense(DenseMatrix),
    /// `QuantMatrix`.
    Quant(QuantMatrix),
}

impl Matrix {
    /// Rows (`size(0)`).
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Dense(d) => d.m,
            Matrix::Quant(q) => q.m,
        }
    }
    /// Columns (`size(1)`).
    pub fn cols(&self) -> usize {
        match self {
            Matrix::Dense(d) => d.n,
            Matrix::Quant(q) => q.n,
        }
    }
}

/// A whole model file as stored.
#[derive(Clone, Debug)]
pub struct RawModel {
    /// File format version (11 or 12 in released models).
    pub version: i32,
    /// Arguments (with `maxn = 0` for version-11 supervised models, as C++ does).
    pub args: Args,
    /// Dictionary.
    pub dict: RawDictionary,
    /// Whether the input matrix is quantized.
    pub quant_input: bool,
    /// Input embeddings: words, then buckets.
    pub input: Matrix,
    /// Output matrix.
    pub output: Matrix,
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(Error::Truncated { what, offset: self.pos, len: self.bytes.len() }),
        }
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, Error> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    fn f64(&mut self, what: &'static str) -> Result<f64, Error> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }
    /// A C++ `bool` read with `in.read`: any non-zero byte is true.
    fn bool(&mut self, what: &'static str) -> Result<bool, Error> {
        Ok(self.u8(what)? != 0)
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    /// `count` f32 values; checks the length before allocating.
    fn f32s(&mut self, count: usize, what: &'static str) -> Result<Vec<f32>, Error> {
        let n = count.checked_mul(4).ok_or(Error::Truncated { what, offset: self.pos, len: self.bytes.len() })?;
        let raw = self.take(n, what)?;
        Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

/// Parses a whole model file.
pub fn parse(bytes: &[u8]) -> Result<RawModel, Error> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.i32("magic number")?;
    if magic != MAGIC {
        return Err(Error::BadMagic(magic));
    }
    let version = c.i32("version")?;
    if version > VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let mut args = read_args(&mut c)?;
    if version == 11 && args.model == ModelName::Supervised {
        // backward compatibility: old supervised models do not use char ngrams.
        args.maxn = 0;
    }
    let dict = read_dictionary(&mut c)?;
    let quant_input = c.bool("quant_input flag")?;
    let input = if quant_input {
        Matrix::Quant(read_quant(&mut c, "input matrix")?)
    } else {
        Matrix::Dense(read_dense(&mut c, "input matrix")?)
    };
    if !quant_input && dict.pruneidx_size >= 0 {
        return Err(Error::Invalid(
            "a pruned dictionary with a dense input matrix (an old model: fastText issue #332)".into(),
        ));
    }
    args.qout = c.bool("qout flag")?;
    let output = if quant_input && args.qout {
        Matrix::Quant(read_quant(&mut c, "output matrix")?)
    } else {
        Matrix::Dense(read_dense(&mut c, "output matrix")?)
    };
    Ok(RawModel { version, args, dict, quant_input, input, output })
}

fn read_args(c: &mut Cursor) -> Result<Args, Error> {
    let dim = c.i32("args.dim")?;
    let ws = c.i32("args.ws")?;
    let epoch = c.i32("args.epoch")?;
    let min_count = c.i32("args.minCount")?;
    let neg = c.i32("args.neg")?;
    let word_ngrams = c.i32("args.wordNgrams")?;
    let loss = match c.i32("args.loss")? {
        1 => LossName::HierarchicalSoftmax,
        2 => LossName::NegativeSampling,
        3 => LossName::Softmax,
        4 => LossName::OneVsAll,
        other => return Err(Error::Invalid(format!("unknown loss {other}"))),
    };
    let model = match c.i32("args.model")? {
        1 => ModelName::Cbow,
        2 => ModelName::SkipGram,
        3 => ModelName::Supervised,
        other => return Err(Error::Invalid(format!("unknown model kind {other}"))),
    };
    let bucket = c.i32("args.bucket")?;
    let minn = c.i32("args.minn")?;
    let maxn = c.i32("args.maxn")?;
    let lr_update_rate = c.i32("args.lrUpdateRate")?;
    let t = c.f64("args.t")?;
    if dim <= 0 {
        return Err(Error::Invalid(format!("dimension {dim}")));
    }
    if bucket < 0 {
        return Err(Error::Invalid(format!("bucket count {bucket}")));
    }
    Ok(Args {
        dim,
        ws,
        epoch,
        min_count,
        neg,
        word_ngrams,
        loss,
        model,
        bucket,
        minn,
        maxn,
        lr_update_rate,
        t,
        qout: false,
    })
}

fn read_dictionary(c: &mut Cursor) -> Result<RawDictionary, Error> {
    let size = c.i32("dictionary size")?;
    let nwords = c.i32("dictionary nwords")?;
    let nlabels = c.i32("dictionary nlabels")?;
    let ntokens = c.i64("dictionary ntokens")?;
    let pruneidx_size = c.i64("dictionary pruneidx_size")?;
    if size < 0 || nwords < 0 || nlabels < 0 || nwords.checked_add(nlabels) != Some(size) {
        return Err(Error::Invalid(format!("dictionary of {size} entries with {nwords} words and {nlabels} labels")));
    }
    // Each entry takes at least 10 bytes: do not trust `size` for the allocation.
    let mut entries = Vec::with_capacity((size as usize).min(c.remaining() / 10));
    for i in 0..size {
        let rest = &c.bytes[c.pos..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(Error::Truncated { what: "dictionary word", offset: c.pos, len: c.bytes.len() });
        };
        let word = rest[..nul].to_vec();
        c.pos += nul + 1;
        let count = c.i64("dictionary count")?;
        let kind = c.u8("dictionary entry type")? as i8;
        let expected = if i < nwords { 0 } else { 1 };
        if kind != expected {
            return Err(Error::Invalid(format!(
                "dictionary entry {i} has type {kind}, expected {expected} (words come before labels)"
            )));
        }
        entries.push(Entry { word, count, kind });
    }
    let pairs = pruneidx_size.max(0);
    if pairs.checked_mul(8).is_none_or(|b| b > c.remaining() as i64) {
        return Err(Error::Truncated { what: "pruned index", offset: c.pos, len: c.bytes.len() });
    }
    let mut pruneidx = Vec::with_capacity(pairs as usize);
    for _ in 0..pairs {
        let first = c.i32("pruned index")?;
        let second = c.i32("pruned index")?;
        pruneidx.push((first, second));
    }
    Ok(RawDictionary { size, nwords, nlabels, ntokens, pruneidx_size, entries, pruneidx })
}

fn read_dense(c: &mut Cursor, what: &'static str) -> Result<DenseMatrix, Error> {
    let m = c.i64(what)?;
    let n = c.i64(what)?;
    if m < 0 || n < 0 {
        return Err(Error::Invalid(format!("{what} of {m} x {n}")));
    }
    let count = (m as u64).checked_mul(n as u64).filter(|&v| v <= usize::MAX as u64 / 4);
    let Some(count) = count else {
        return Err(Error::Truncated { what, offset: c.pos, len: c.bytes.len() });
    };
    let data = c.f32s(count as usize, what)?;
    Ok(DenseMatrix { m: m as usize, n: n as usize, data })
}

fn read_pq(c: &mut Cursor, what: &'static str) -> Result<ProductQuantizer, Error> {
    let dim = c.i32(what)?;
    let nsubq = c.i32(what)?;
    let dsub = c.i32(what)?;
    let lastdsub = c.i32(what)?;
    if dim <= 0 {
        return Err(Error::Invalid(format!("{what}: product quantizer of dimension {dim}")));
    }
    let centroids = c.f32s(dim as usize * KSUB, what)?;
    Ok(ProductQuantizer { dim, nsubq, dsub, lastdsub, centroids })
}

fn read_quant(c: &mut Cursor, what: &'static str) -> Result<QuantMatrix, Error> {
    let qnorm = c.bool(what)?;
    let m = c.i64(what)?;
    let n = c.i64(what)?;
    let codesize = c.i32(what)?;
    if m < 0 || n < 0 || codesize < 0 {
        return Err(Error::Invalid(format!("{what}: quantized {m} x {n} with {codesize} codes")));
    }
    let codes = c.take(codesize as usize, what)?.to_vec();
    let pq = read_pq(c, what)?;
    let (m, n) = (m as usize, n as usize);
    pq.check(n, what)?;
    if (pq.nsubq as usize).checked_mul(m).is_none_or(|need| need > codes.len()) {
        return Err(Error::Invalid(format!(
            "{what}: {} codes for {m} rows of {} sub-quantizers",
            codes.len(),
            pq.nsubq
        )));
    }
    let norm = if qnorm {
        let norm_codes = c.take(m, what)?.to_vec();
        let npq = read_pq(c, what)?;
        // get_centroids(0, code)[0] must exist for every code.
        if npq.nsubq <= 0 || npq.dsub <= 0 || npq.lastdsub <= 0 || npq.centroid_offset(0, 255) >= npq.centroids.len() {
            return Err(Error::Invalid(format!("{what}: norm quantizer lies outside its centroids")));
        }
        Some((norm_codes, npq))
    } else {
        None
    };
    Ok(QuantMatrix { m, n, codes, pq, norm })
}
