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

use std::io::Write;

use datafusion::arrow::array::{Array, ListArray, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

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
    fn push(self, id: u32, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Self::Uint16 => {
                let v = u16::try_from(id).map_err(|_| format!("token id {id} does not fit the uint16 shard dtype"))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            Self::Int32 => {
                let v = i32::try_from(id).map_err(|_| format!("token id {id} does not fit the int32 shard dtype"))?;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
}

/// The `tokens` column of a batch (List<UInt32>).
pub fn tokens_column(batch: &RecordBatch) -> Result<&ListArray, String> {
    let col = batch
        .column_by_name("tokens")
        .ok_or("this output format needs a `tokens` column: add a `tokenize` step before the output")?;
    let list = col.as_any().downcast_ref::<ListArray>().ok_or("the `tokens` column is not a list")?;
    if list.values().data_type() != &DataType::UInt32 {
        return Err(format!("the `tokens` column holds {}, not UInt32 ids", list.values().data_type()));
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
    pub fn write(&mut self, batch: &RecordBatch, bin: &mut impl Write) -> Result<(), String> {
        let list = tokens_column(batch)?;
        for row in 0..batch.num_rows() {
            let ids = ids(list, row);
            self.buf.clear();
            for id in ids.values() {
                self.dtype.push(*id, &mut self.buf)?;
            }
            bin.write_all(&self.buf).map_err(|e| e.to_string())?;
            self.lengths.push(i32::try_from(ids.len()).map_err(|_| "a document has more than 2^31 tokens")?);
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

/// The MDS columns dsproc writes, in MDS (name) order, with their encodings.
pub fn mds_columns(dtype: TokenDtype) -> [(&'static str, String); 3] {
    [("id", "str".into()), ("text", "str".into()), ("tokens", format!("ndarray:{}", dtype.numpy()))]
}

/// The shard config object MDSWriter stores in each shard and in index.json,
/// serialised as Python's `json.dumps(obj, sort_keys=True)` does.
pub fn mds_config_json(dtype: TokenDtype, size_limit: u64) -> String {
    let cols = mds_columns(dtype);
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    format!(
        "{{\"column_encodings\": {}, \"column_names\": {}, \"column_sizes\": {}, \"compression\": null, \"format\": \"mds\", \"hashes\": [], \"size_limit\": {size_limit}, \"version\": 2}}",
        list(cols.iter().map(|c| format!("\"{}\"", c.1)).collect()),
        list(cols.iter().map(|c| format!("\"{}\"", c.0)).collect()),
        list(cols.iter().map(|_| "null".to_string()).collect()),
    )
}

/// One shard's entry in MDS `index.json`.
pub fn mds_index_entry(
    dtype: TokenDtype,
    size_limit: u64,
    basename: &str,
    bytes: u64,
    samples: u64,
) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&mds_config_json(dtype, size_limit)).expect("valid JSON");
    v["raw_data"] = serde_json::json!({ "basename": basename, "bytes": bytes, "hashes": {} });
    v["samples"] = serde_json::json!(samples);
    v["zip_data"] = serde_json::Value::Null;
    v
}

/// MDS shard state: samples are kept until the shard closes (the header that
/// precedes them holds their offsets), as MDSWriter does; shards are cut at
/// `shard_size`, so this is bounded.
pub struct MdsState {
    pub dtype: TokenDtype,
    size_limit: u64,
    sizes: Vec<u32>,
    data: Vec<u8>,
}

impl MdsState {
    pub fn new(dtype: TokenDtype, size_limit: u64) -> Self {
        Self { dtype, size_limit, sizes: Vec::new(), data: Vec::new() }
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let list = tokens_column(batch)?;
        let string_col = |name: &str| -> Result<StringArray, String> {
            let c = batch.column_by_name(name).ok_or_else(|| format!("MDS output needs a `{name}` column"))?;
            let c = cast(c, &DataType::Utf8).map_err(|e| e.to_string())?;
            Ok(c.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
        };
        let (idc, textc) = (string_col("id")?, string_col("text")?);
        for row in 0..batch.num_rows() {
            let start = self.data.len();
            let id = idc.value(row).as_bytes();
            let text = if textc.is_null(row) { &b""[..] } else { textc.value(row).as_bytes() };
            let ids = ids(list, row);
            let n = ids.len();
            let mut arr = Vec::with_capacity(9 + n * self.dtype.width());
            // ndim 1, shape stored in the smallest unsigned type that holds it
            let (code, shape): (u8, Vec<u8>) = if n < 1 << 8 {
                (0, vec![n as u8])
            } else if n < 1 << 16 {
                (1, (n as u16).to_le_bytes().to_vec())
            } else if (n as u64) < 1 << 32 {
                (2, (n as u32).to_le_bytes().to_vec())
            } else {
                (3, (n as u64).to_le_bytes().to_vec())
            };
            arr.push((1 << 2) | code);
            arr.extend_from_slice(&shape);
            for id in ids.values() {
                self.dtype.push(*id, &mut arr)?;
            }
            for part in [id, text, arr.as_slice()] {
                let len = u32::try_from(part.len()).map_err(|_| "an MDS sample column is over 4 GiB")?;
                self.data.extend_from_slice(&len.to_le_bytes());
            }
            self.data.extend_from_slice(id);
            self.data.extend_from_slice(text);
            self.data.extend_from_slice(&arr);
            let size = u32::try_from(self.data.len() - start).map_err(|_| "an MDS sample is over 4 GiB")?;
            self.sizes.push(size);
        }
        Ok(())
    }

    /// The shard file's bytes.
    pub fn finish(self, out: &mut impl Write) -> Result<(), String> {
        let config = mds_config_json(self.dtype, self.size_limit);
        let n = self.sizes.len();
        let header = 4 + 4 * (n + 1) + config.len();
        let mut offsets = Vec::with_capacity((n + 1) * 4);
        let mut off = header as u64;
        for s in std::iter::once(0).chain(self.sizes.iter().copied()) {
            off += u64::from(s);
            let o = u32::try_from(off).map_err(|_| "an MDS shard is over 4 GiB: lower shard_size")?;
            offsets.extend_from_slice(&o.to_le_bytes());
        }
        let w = |out: &mut dyn Write, b: &[u8]| out.write_all(b).map_err(|e| e.to_string());
        w(out, &(n as u32).to_le_bytes())?;
        w(out, &offsets)?;
        w(out, config.as_bytes())?;
        w(out, &self.data)
    }
}
