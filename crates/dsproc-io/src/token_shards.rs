//! Training-side shard formats that hold token ids:
//!
//! - **Megatron** (`part-*.bin` + `part-*.idx`): Megatron-LM / megatron-core's
//!   `IndexedDataset` layout. `.bin` is the token ids back to back; `.idx` is the
//!   header `MMIDIDX\0\0`, version 1 (u64), dtype code (u8), sequence count (u64),
//!   document-index length (u64), then the sequence lengths (i32), byte pointers
//!   (i64) and document indices (i64, starting at 0).
//! - **MDS** (`part-*.mds` + a dataset-level `index.json`): MosaicML streaming's
//!   joint shard: sample count (u32), sample offsets (u32, absolute), the shard's
//!   config JSON, then samples; each sample is the sizes (u32) of its variable-size
//!   columns and their bytes, columns in name order (`id`: str, `text`: str,
//!   `tokens`: ndarray with a fixed dtype).

use std::borrow::Cow;
use std::io::Write;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ListArray, ListBuilder, RecordBatch, StringArray, StringBuilder, UInt32Array, UInt32Builder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Error;

/// Width of stored token ids, chosen from the vocabulary size as Megatron does
/// (`DType.optimal_dtype`: uint16 below 65,500 entries, else int32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    Uint16,
    Int32,
}

impl TokenDtype {
    pub fn for_vocab(vocab_size: u64) -> Self {
        if vocab_size < 65_500 {
            Self::Uint16
        } else {
            Self::Int32
        }
    }
    /// megatron-core `DType` code.
    fn megatron_code(self) -> u8 {
        match self {
            Self::Uint16 => 8,
            Self::Int32 => 4,
        }
    }
    /// numpy dtype name (MDS encodings).
    pub fn numpy(self) -> &'static str {
        match self {
            Self::Uint16 => "uint16",
            Self::Int32 => "int32",
        }
    }
    fn width(self) -> usize {
        match self {
            Self::Uint16 => 2,
            Self::Int32 => 4,
        }
    }
    fn push(self, id: u32, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Self::Uint16 => {
                let v = u16::try_from(id)
                    .map_err(|_| Error::data(format!("token id {id} does not fit the uint16 shard dtype")))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            Self::Int32 => {
                let v = i32::try_from(id)
                    .map_err(|_| Error::data(format!("token id {id} does not fit the int32 shard dtype")))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
}

/// The `tokens` column of a batch (List<UInt32>).
pub fn tokens_column(batch: &RecordBatch) -> Result<&ListArray, Error> {
    let col = batch.column_by_name("tokens").ok_or_else(|| {
        Error::data("this output format needs a `tokens` column: add a `tokenize` step before the output")
    })?;
    let list =
        col.as_any().downcast_ref::<ListArray>().ok_or_else(|| Error::data("the `tokens` column is not a list"))?;
    if list.values().data_type() != &DataType::UInt32 {
        return Err(Error::data(format!("the `tokens` column holds {}, not UInt32 ids", list.values().data_type())));
    }
    Ok(list)
}

fn ids(list: &ListArray, row: usize) -> UInt32Array {
    let v = list.value(row);
    v.as_any().downcast_ref::<UInt32Array>().expect("checked UInt32").clone()
}

/// Number of token ids in a batch's `tokens` column (0 without one).
pub fn count_tokens(batch: &RecordBatch) -> u64 {
    match tokens_column(batch) {
        Ok(l) => {
            let o = l.value_offsets();
            (o[o.len() - 1] - o[0]) as u64
        }
        Err(_) => 0,
    }
}

/// Megatron `.bin` writer state: ids go straight to the sink; lengths are kept for
/// the `.idx`.
pub struct MegatronState {
    pub dtype: TokenDtype,
    lengths: Vec<i32>,
    buf: Vec<u8>,
}

impl MegatronState {
    pub fn new(dtype: TokenDtype) -> Self {
        Self { dtype, lengths: Vec::new(), buf: Vec::new() }
    }

    /// Appends the batch's documents (one sequence each) to `bin`.
    pub fn write(&mut self, batch: &RecordBatch, bin: &mut impl Write) -> Result<(), Error> {
        let list = tokens_column(batch)?;
        for row in 0..batch.num_rows() {
            let ids = ids(list, row);
            self.buf.clear();
            for id in ids.values() {
                self.dtype.push(*id, &mut self.buf)?;
            }
            bin.write_all(&self.buf)?;
            self.lengths
                .push(i32::try_from(ids.len()).map_err(|_| Error::data("a document has more than 2^31 tokens"))?);
        }
        Ok(())
    }

    /// The `.idx` file's bytes.
    pub fn index(&self) -> Vec<u8> {
        let n = self.lengths.len();
        let mut out = Vec::with_capacity(34 + n * 20 + 8);
        out.extend_from_slice(b"MMIDIDX\x00\x00");
        out.extend_from_slice(&1u64.to_le_bytes());
        out.push(self.dtype.megatron_code());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(&(n as u64 + 1).to_le_bytes());
        for l in &self.lengths {
            out.extend_from_slice(&l.to_le_bytes());
        }
        let mut ptr = 0i64;
        for l in &self.lengths {
            out.extend_from_slice(&ptr.to_le_bytes());
            ptr += i64::from(*l) * self.dtype.width() as i64;
        }
        for d in 0..=n as i64 {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }
}

/// The MDS columns dsproc writes, in MDS (name) order, with their encodings:
/// documents (`id`, `text`, `tokens`) or packed sequences (`doc_ids`, `doc_starts`,
/// `id`, `tokens`).
pub fn mds_columns(dtype: TokenDtype, packed: bool) -> Vec<(&'static str, String)> {
    let tokens = ("tokens", format!("ndarray:{}", dtype.numpy()));
    if packed {
        vec![("doc_ids", "json".into()), ("doc_starts", "ndarray:uint32".into()), ("id", "str".into()), tokens]
    } else {
        vec![("id", "str".into()), ("text", "str".into()), tokens]
    }
}

/// The shard config object MDSWriter stores in each shard and in index.json,
/// serialised as Python's `json.dumps(obj, sort_keys=True)` does.
pub fn mds_config_json(dtype: TokenDtype, size_limit: u64, packed: bool, zstd: Option<i32>) -> String {
    let cols = mds_columns(dtype, packed);
    let compression = zstd.map_or("null".to_string(), |l| format!("\"zstd:{l}\""));
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    format!(
        "{{\"column_encodings\": {}, \"column_names\": {}, \"column_sizes\": {}, \"compression\": {compression}, \"format\": \"mds\", \"hashes\": [], \"size_limit\": {size_limit}, \"version\": 2}}",
        list(cols.iter().map(|c| format!("\"{}\"", c.1)).collect()),
        list(cols.iter().map(|c| format!("\"{}\"", c.0)).collect()),
        list(cols.iter().map(|_| "null".to_string()).collect()),
    )
}

/// One shard's entry in MDS `index.json`.
/// The dataset-wide MDS settings.
#[derive(Debug, Clone, Copy)]
pub struct MdsConfig {
    pub dtype: TokenDtype,
    pub size_limit: u64,
    pub packed: bool,
    pub zstd: Option<i32>,
}

/// `raw_bytes`: the uncompressed size of a zstd shard (`basename` ends in `.zstd`).
pub fn mds_index_entry(
    c: &MdsConfig,
    basename: &str,
    bytes: u64,
    raw_bytes: Option<u64>,
    samples: u64,
) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&mds_config_json(c.dtype, c.size_limit, c.packed, c.zstd)).expect("valid JSON");
    match (basename.strip_suffix(".zstd"), raw_bytes) {
        (Some(raw), Some(raw_bytes)) => {
            v["raw_data"] = serde_json::json!({ "basename": raw, "bytes": raw_bytes, "hashes": {} });
            v["zip_data"] = serde_json::json!({ "basename": basename, "bytes": bytes, "hashes": {} });
        }
        _ => {
            v["raw_data"] = serde_json::json!({ "basename": basename, "bytes": bytes, "hashes": {} });
            v["zip_data"] = serde_json::Value::Null;
        }
    }
    v["samples"] = serde_json::json!(samples);
    v
}

/// Appends an MDS `ndarray` with a fixed dtype and a dynamic 1-d shape: the
/// shape byte (ndim << 2 | shape width code), the shape, the values.
fn mds_ndarray(values: &[u32], dtype: Option<TokenDtype>, out: &mut Vec<u8>) -> Result<(), Error> {
    let n = values.len();
    if n < 1 << 8 {
        out.push(1 << 2);
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push((1 << 2) | 1);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else {
        out.push((1 << 2) | 2);
        out.extend_from_slice(
            &u32::try_from(n).map_err(|_| Error::data("an MDS array is over 2^32 long"))?.to_le_bytes(),
        );
    }
    for v in values {
        match dtype {
            Some(d) => d.push(*v, out)?,
            None => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    Ok(())
}

/// MDS shard state: samples are kept until the shard closes (the header that
/// precedes them holds their offsets), as MDSWriter does; shards are cut at
/// `shard_size`, so this is bounded.
pub struct MdsState {
    pub dtype: TokenDtype,
    size_limit: u64,
    packed: bool,
    zstd: Option<i32>,
    sizes: Vec<u32>,
    data: Vec<u8>,
}

impl MdsState {
    pub fn new(dtype: TokenDtype, size_limit: u64, packed: bool, zstd: Option<i32>) -> Self {
        Self { dtype, size_limit, packed, zstd, sizes: Vec::new(), data: Vec::new() }
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let strings = |name: &str| -> Result<StringArray, Error> {
            let c =
                batch.column_by_name(name).ok_or_else(|| Error::data(format!("MDS output needs a `{name}` column")))?;
            let c = cast(c, &DataType::Utf8)?;
            Ok(c.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
        };
        let lists = |name: &str| -> Result<ListArray, Error> {
            let c =
                batch.column_by_name(name).ok_or_else(|| Error::data(format!("MDS output needs a `{name}` column")))?;
            c.as_any()
                .downcast_ref::<ListArray>()
                .cloned()
                .ok_or_else(|| Error::data(format!("`{name}` is not a list")))
        };
        let tokens = tokens_column(batch)?;
        let idc = strings("id")?;
        let (textc, doc_ids, doc_starts) = if self.packed {
            (None, Some(lists("doc_ids")?), Some(lists("doc_starts")?))
        } else {
            (Some(strings("text")?), None, None)
        };
        for row in 0..batch.num_rows() {
            // Column bytes in MDS order; id and text are borrowed, not copied.
            let mut parts: Vec<Cow<[u8]>> = Vec::with_capacity(4);
            if let (Some(ids), Some(starts)) = (&doc_ids, &doc_starts) {
                let v = ids.value(row);
                let v = v
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| Error::data("`doc_ids` is not a list of strings"))?;
                let names: Vec<&str> = v.iter().map(|x| x.unwrap_or("")).collect();
                parts.push(Cow::Owned(serde_json::to_vec(&names)?));
                let st = starts.value(row);
                let st = st
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or_else(|| Error::data("`doc_starts` is not a list of UInt32"))?;
                let mut a = Vec::new();
                mds_ndarray(st.values(), None, &mut a)?;
                parts.push(Cow::Owned(a));
                parts.push(Cow::Borrowed(idc.value(row).as_bytes()));
            } else {
                parts.push(Cow::Borrowed(idc.value(row).as_bytes()));
                let t = textc.as_ref().expect("unpacked");
                parts.push(Cow::Borrowed(if t.is_null(row) { &[] } else { t.value(row).as_bytes() }));
            }
            let mut arr = Vec::new();
            mds_ndarray(ids(tokens, row).values(), Some(self.dtype), &mut arr)?;
            parts.push(Cow::Owned(arr));
            let start = self.data.len();
            for part in &parts {
                let len = u32::try_from(part.len()).map_err(|_| Error::data("an MDS sample column is over 4 GiB"))?;
                self.data.extend_from_slice(&len.to_le_bytes());
            }
            for part in &parts {
                self.data.extend_from_slice(part);
            }
            let size =
                u32::try_from(self.data.len() - start).map_err(|_| Error::data("an MDS sample is over 4 GiB"))?;
            self.sizes.push(size);
        }
        Ok(())
    }

    /// Writes the shard file (zstd-compressed with a level); returns the
    /// uncompressed size when compressed.
    pub fn finish(self, out: &mut impl Write) -> Result<Option<u64>, Error> {
        match self.zstd {
            None => self.write_raw(out).map(|_| None),
            Some(level) => {
                // One frame with the content size in its header: streaming's reader
                // (`zstd.decompress`) needs it.
                let mut raw = Vec::new();
                let n = self.write_raw(&mut raw)?;
                let zipped = zstd::bulk::compress(&raw, level)?;
                out.write_all(&zipped)?;
                Ok(Some(n))
            }
        }
    }

    /// The uncompressed shard; returns its size.
    fn write_raw(self, out: &mut impl Write) -> Result<u64, Error> {
        let config = mds_config_json(self.dtype, self.size_limit, self.packed, self.zstd);
        let n = self.sizes.len();
        let header = 4 + 4 * (n + 1) + config.len();
        let mut offsets = Vec::with_capacity((n + 1) * 4);
        let mut off = header as u64;
        for s in std::iter::once(0).chain(self.sizes.iter().copied()) {
            off += u64::from(s);
            let o = u32::try_from(off).map_err(|_| Error::data("an MDS shard is over 4 GiB: lower shard_size"))?;
            offsets.extend_from_slice(&o.to_le_bytes());
        }
        let w = |out: &mut dyn Write, b: &[u8]| out.write_all(b).map_err(Error::Write);
        w(out, &(n as u32).to_le_bytes())?;
        w(out, &offsets)?;
        w(out, config.as_bytes())?;
        w(out, &self.data)?;
        Ok(header as u64 + self.data.len() as u64)
    }
}

/// Schema of packed sequences: `id` (`<first document id>@<token offset>`),
/// `tokens` (`seq_len` ids; the last sequence of a shard may be shorter),
/// `doc_ids` (the documents whose tokens it holds, in order) and `doc_starts`
/// (where each one's tokens begin in the sequence).
pub fn packed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("tokens", DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), false),
        Field::new("doc_ids", DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))), false),
        Field::new("doc_starts", DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))), false),
    ]))
}

/// A finished sequence: id, tokens, document ids, document starts.
type Sequence = (String, Vec<u32>, Vec<String>, Vec<u32>);

/// Concatenates the token ids of consecutive documents (each ending in its EOS)
/// into sequences of `seq_len`; a document longer than the room left continues in
/// the next sequence.
pub struct Packer {
    seq_len: usize,
    open: Option<String>,
    tokens: Vec<u32>,
    doc_ids: Vec<String>,
    doc_starts: Vec<u32>,
    done: Vec<Sequence>,
}

impl Packer {
    pub fn new(seq_len: u32) -> Self {
        Self {
            seq_len: seq_len as usize,
            open: None,
            tokens: Vec::new(),
            doc_ids: Vec::new(),
            doc_starts: Vec::new(),
            done: Vec::new(),
        }
    }

    fn close(&mut self) {
        if let Some(id) = self.open.take() {
            let seq = (
                id,
                std::mem::take(&mut self.tokens),
                std::mem::take(&mut self.doc_ids),
                std::mem::take(&mut self.doc_starts),
            );
            self.done.push(seq);
        }
    }

    /// Adds a batch of documents (`id`, `tokens`).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let list = tokens_column(batch)?;
        let idc = batch.column_by_name("id").ok_or_else(|| Error::data("packing needs an `id` column"))?;
        let idc = cast(idc, &DataType::Utf8)?;
        let idc = idc.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        for row in 0..batch.num_rows() {
            let ids = ids(list, row);
            let ids = ids.values();
            let doc = idc.value(row);
            let mut off = 0;
            while off < ids.len() {
                if self.open.is_none() {
                    self.open = Some(format!("{doc}@{off}"));
                }
                let take = (self.seq_len - self.tokens.len()).min(ids.len() - off);
                self.doc_ids.push(doc.to_string());
                self.doc_starts.push(self.tokens.len() as u32);
                self.tokens.extend_from_slice(&ids[off..off + take]);
                off += take;
                if self.tokens.len() == self.seq_len {
                    self.close();
                }
            }
        }
        Ok(())
    }

    /// The finished sequences as a batch; with `all`, the open (shorter) one too.
    pub fn take(&mut self, all: bool) -> Result<Option<RecordBatch>, Error> {
        if all {
            self.close();
        }
        if self.done.is_empty() {
            return Ok(None);
        }
        let done = std::mem::take(&mut self.done);
        let mut tokens = ListBuilder::new(UInt32Builder::new()).with_field(Field::new("item", DataType::UInt32, false));
        let mut doc_ids = ListBuilder::new(StringBuilder::new()).with_field(Field::new("item", DataType::Utf8, false));
        let mut starts = ListBuilder::new(UInt32Builder::new()).with_field(Field::new("item", DataType::UInt32, false));
        let mut id = StringBuilder::new();
        for (i, t, d, s) in &done {
            id.append_value(i);
            tokens.values().append_slice(t);
            tokens.append(true);
            for x in d {
                doc_ids.values().append_value(x);
            }
            doc_ids.append(true);
            starts.values().append_slice(s);
            starts.append(true);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(tokens.finish()),
            Arc::new(doc_ids.finish()),
            Arc::new(starts.finish()),
        ];
        Ok(RecordBatch::try_new(packed_schema(), cols).map(Some)?)
    }
}
