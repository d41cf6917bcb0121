//! Shard writers: Parquet (zstd) and JSONL (zstd-compressed `.jsonl.zst`).
//!
//! Callers feed rows in fixed-size slices (`WRITE_SLICE_ROWS`), so the bytes of a
//! shard depend only on its rows, never on upstream batch boundaries.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use dsproc_common::error::BoxError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::format::OutputFormat;
use crate::store::Location;
use crate::token_shards::{count_tokens, packed_schema, MdsState, MegatronState, Packer, TokenDtype};
use crate::upload::ObjectWriter;

/// A finished shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenShard {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// Token ids in the shard (when rows carry a `tokens` column).
    pub tokens: Option<u64>,
    /// A companion file (Megatron's `.idx`): its file name, bytes and sha256.
    pub companion: Option<(String, u64, String)>,
    /// Packed sequences in the shard (with `pack`).
    pub sequences: Option<u64>,
    /// Uncompressed size of a compressed MDS shard.
    pub raw_bytes: Option<u64>,
}

/// Format options of token-holding shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardOptions {
    /// Width of stored token ids (Megatron, MDS).
    pub token_dtype: Option<TokenDtype>,
    /// The shard size target (recorded as MDS `size_limit`).
    pub size_limit: u64,
    /// Pack documents into sequences of this many tokens.
    pub pack: Option<u32>,
    /// zstd level of MDS shards (`.mds.zstd`); None: uncompressed.
    pub mds_zstd: Option<i32>,
}

impl ShardOptions {
    /// The shard file extension for `format` under these options.
    pub fn extension(&self, format: OutputFormat) -> &'static str {
        match (format, self.mds_zstd) {
            (OutputFormat::Mds, Some(_)) => "mds.zstd",
            _ => format.extension(),
        }
    }
}

/// Counts and hashes bytes on their way to a file.
struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type Sink = HashWriter<ObjectWriter>;

enum Inner {
    Parquet(Box<ArrowWriter<Sink>>),
    Jsonl(Box<LineDelimitedWriter<zstd::Encoder<'static, Sink>>>),
    Megatron(Box<(Sink, MegatronState)>),
    Mds(Box<(Sink, MdsState)>),
}

/// One shard being written (a local file or an object-store upload).
pub struct ShardFileWriter {
    inner: Inner,
    target: Location,
    handle: tokio::runtime::Handle,
    rows: u64,
    tokens: Option<u64>,
    /// With `pack`: the packer and the sequences written.
    packer: Option<(Packer, u64)>,
}

fn err(target: &Location, e: impl Into<BoxError>) -> Error {
    Error::Shard { shown: target.shown(), source: e.into() }
}

impl ShardFileWriter {
    /// Starts the shard at `target` (parent directories are created locally).
    /// Must be called from a blocking thread; `handle` runs object-store uploads.
    pub fn create(
        target: &Location,
        format: OutputFormat,
        schema: &SchemaRef,
        opts: ShardOptions,
        handle: &tokio::runtime::Handle,
    ) -> Result<Self, Error> {
        let packer = opts.pack.map(|n| (Packer::new(n), 0));
        let file_schema = if packer.is_some() { packed_schema() } else { SchemaRef::clone(schema) };
        let schema = &file_schema;
        let sink = HashWriter { inner: ObjectWriter::create(target, handle)?, hasher: Sha256::new(), bytes: 0 };
        let inner = match format {
            OutputFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(|e| err(target, e))?))
                    .set_created_by(format!("dsproc {}", env!("CARGO_PKG_VERSION")))
                    .set_column_dictionary_enabled(ColumnPath::from("text"), false)
                    .set_column_dictionary_enabled(ColumnPath::from("id"), false)
                    // Token ids: dictionary pages cost more time than they save bytes here.
                    .set_column_dictionary_enabled(
                        ColumnPath::new(vec!["tokens".into(), "list".into(), "item".into()]),
                        false,
                    )
                    .set_statistics_truncate_length(Some(64))
                    .build();
                Inner::Parquet(Box::new(
                    ArrowWriter::try_new(sink, SchemaRef::clone(schema), Some(props)).map_err(|e| err(target, e))?,
                ))
            }
            OutputFormat::Jsonl => {
                let enc = zstd::Encoder::new(sink, 3).map_err(|e| err(target, e))?;
                Inner::Jsonl(Box::new(LineDelimitedWriter::new(enc)))
            }
            OutputFormat::Megatron | OutputFormat::Mds => {
                let dtype = opts.token_dtype.ok_or_else(|| err(target, "no token dtype: add a `tokenize` step"))?;
                if format == OutputFormat::Megatron {
                    Inner::Megatron(Box::new((sink, MegatronState::new(dtype))))
                } else {
                    Inner::Mds(Box::new((
                        sink,
                        MdsState::new(dtype, opts.size_limit, opts.pack.is_some(), opts.mds_zstd),
                    )))
                }
            }
        };
        // Token counts for rows with a List<UInt32> `tokens` column (what `tokenize` adds).
        let ids = |f: &Field| matches!(f.data_type(), DataType::List(i) if i.data_type() == &DataType::UInt32);
        let tokens = schema.field_with_name("tokens").ok().filter(|f| ids(f)).map(|_| 0);
        Ok(Self { inner, target: target.clone(), handle: handle.clone(), rows: 0, tokens, packer })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.rows += batch.num_rows() as u64;
        if let Some(t) = &mut self.tokens {
            *t += count_tokens(batch);
        }
        let packed = match &mut self.packer {
            None => None,
            Some((p, n)) => {
                p.push(batch).map_err(|e| err(&self.target, e))?;
                let b = p.take(false).map_err(|e| err(&self.target, e))?;
                *n += b.as_ref().map_or(0, |b| b.num_rows() as u64);
                Some(b)
            }
        };
        match packed {
            None => self.write_inner(batch),
            Some(None) => Ok(()),
            Some(Some(b)) => self.write_inner(&b),
        }
    }

    fn write_inner(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Parquet(w) => w.write(batch).map_err(|e| err(&self.target, e)),
            Inner::Jsonl(w) => w.write(batch).map_err(|e| err(&self.target, e)),
            Inner::Megatron(m) => {
                let (sink, state) = &mut **m;
                state.write(batch, sink).map_err(|e| err(&self.target, e))
            }
            Inner::Mds(m) => m.1.write(batch).map_err(|e| err(&self.target, e)),
        }
    }

    /// Bytes written so far plus those buffered (an estimate for size cuts).
    pub fn approx_bytes(&self) -> u64 {
        match &self.inner {
            Inner::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
            Inner::Jsonl(w) => w.get_ref().get_ref().bytes,
            Inner::Megatron(m) => m.0.bytes,
            Inner::Mds(m) => m.1.buffered_bytes(),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Token ids written so far (0 without a `tokens` column).
    pub fn tokens(&self) -> u64 {
        self.tokens.unwrap_or(0)
    }

    /// Flushes and closes the file; returns its size and sha256.
    pub fn finish(mut self) -> Result<WrittenShard, Error> {
        let mut sequences = None;
        if let Some((mut p, mut n)) = self.packer.take() {
            if let Some(b) = p.take(true).map_err(|e| err(&self.target, e))? {
                n += b.num_rows() as u64;
                self.write_inner(&b)?;
            }
            sequences = Some(n);
        }
        let path = self.target;
        let mut companion = None;
        let mut raw_bytes = None;
        let mut sink = match self.inner {
            Inner::Parquet(w) => w.into_inner().map_err(|e| err(&path, e))?,
            Inner::Jsonl(mut w) => {
                w.finish().map_err(|e| err(&path, e))?;
                w.into_inner().finish().map_err(|e| err(&path, e))?
            }
            Inner::Megatron(m) => {
                let (sink, state) = *m;
                let idx = state.index();
                let name = path.file_name();
                let stem = name.strip_suffix(".bin").unwrap_or(name);
                let idx_loc = path.sibling(&format!("{stem}.idx"));
                crate::upload::put_blocking(&idx_loc, &idx, &self.handle).map_err(|e| err(&idx_loc, e))?;
                companion = Some((format!("{stem}.idx"), idx.len() as u64, hex::encode(Sha256::digest(&idx))));
                sink
            }
            Inner::Mds(m) => {
                let (mut sink, state) = *m;
                raw_bytes = state.finish(&mut sink).map_err(|e| err(&path, e))?;
                sink
            }
        };
        sink.flush().map_err(|e| err(&path, e))?;
        let (bytes, sha256) = (sink.bytes, hex::encode(sink.hasher.finalize()));
        sink.inner.finish().map_err(|e| err(&path, e))?;
        Ok(WrittenShard { rows: self.rows, bytes, sha256, tokens: self.tokens, companion, sequences, raw_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn writes_parquet_and_jsonl_with_hash() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(StringArray::from(vec!["x", "y"]))],
        )
        .unwrap();
        for fmt in [OutputFormat::Parquet, OutputFormat::Jsonl] {
            let p = dir.path().join(format!("s.{}", fmt.extension()));
            let opts = ShardOptions { token_dtype: None, size_limit: 1 << 20, pack: None, mds_zstd: None };
            let rt = tokio::runtime::Runtime::new().unwrap();
            let loc = Location::parse(&p.display().to_string(), None).unwrap();
            let mut w = ShardFileWriter::create(&loc, fmt, &schema, opts, rt.handle()).unwrap();
            w.write(&batch).unwrap();
            let done = w.finish().unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(done.rows, 2);
            assert_eq!(done.bytes, bytes.len() as u64);
            assert_eq!(done.sha256, hex::encode(Sha256::digest(&bytes)));
            if fmt == OutputFormat::Jsonl {
                let text = String::from_utf8(zstd::decode_all(bytes.as_slice()).unwrap()).unwrap();
                assert_eq!(text, "{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"b\",\"text\":\"y\"}\n");
            }
        }
    }
}
