//! Record readers. Each reads one byte range of one input file and emits batches
//! in the output layout (`id`, `text`, other columns), sending rejected rows to
//! the quarantine list (or failing, with `on_error = "fail"`).
//!
//! Readers are synchronous and run on a blocking thread; object-store reads are
//! driven through the given runtime handle.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::compute::{cast, filter, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
#[allow(deprecated)]
// ParquetObjectReader: still the simplest object_store bridge in parquet 59
use datafusion::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use dsproc_common::config::{DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS};

use crate::error::Error;
use crate::format::{Compression, InputFormat};
use crate::listing::InputFile;
use crate::quarantine::QuarantineRecord;
use crate::schema::renamed_input_column;

/// What to do with a bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Write it to `_quarantine/` with its position and reason, count it, go on.
    #[default]
    Quarantine,
    /// Stop the job with an error naming file:line.
    Fail,
}

/// Everything a reader needs; carried inside the plan to executors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadSpec {
    /// `scheme://authority` of the input store.
    pub store_url: String,
    /// The job's settings for that store (non-secret values, variable names).
    #[serde(default)]
    pub storage: crate::store::StorageOptions,
    pub files: Vec<InputFile>,
    pub format: InputFormat,
    pub text: String,
    pub id: Option<String>,
    pub on_error: OnError,
    /// Where quarantined rows go (the version's `_quarantine/`, on the output's
    /// store); None: the run's staging prefix.
    #[serde(default)]
    pub quarantine_dir: Option<crate::store::Location>,
}

/// Counts for one range.
#[derive(Debug, Default, Clone)]
pub struct RangeOutcome {
    /// Rows emitted.
    pub rows: u64,
    /// Rows rejected.
    pub quarantined: Vec<QuarantineRecord>,
    /// Line number of the first line after the range (JSONL), so the next range of
    /// the same file can start numbering without re-counting the file's prefix.
    pub next_line: u64,
}

type Emit<'a> = dyn FnMut(RecordBatch) -> Result<(), Error> + 'a;

/// A reader over one range of one file.
pub struct RangeReader<'a> {
    pub spec: &'a ReadSpec,
    pub store: Arc<dyn ObjectStore>,
    pub handle: tokio::runtime::Handle,
    pub input_schema: SchemaRef,
    pub output_schema: SchemaRef,
    pub file: &'a InputFile,
}

impl RangeReader<'_> {
    /// Reads `range` of the file (the whole file for formats that cannot split).
    /// `first_line` is the number of the first line starting in the range when the
    /// caller knows it (it read the previous range); otherwise it is counted.
    pub fn read(&self, range: Range<u64>, first_line: Option<u64>, emit: &mut Emit<'_>) -> Result<RangeOutcome, Error> {
        let mut out = RangeOutcome::default();
        match self.spec.format {
            InputFormat::Jsonl => self.read_jsonl(range, first_line, emit, &mut out)?,
            InputFormat::Text => self.read_text(emit, &mut out)?,
            InputFormat::Csv => self.read_csv(emit, &mut out)?,
            InputFormat::Parquet => self.read_parquet(emit, &mut out)?,
        }
        self.check_fail(&out)?;
        Ok(out)
    }

    /// Records a rejected row. With `on_error = "fail"` the caller stops at the next
    /// [`Self::check_fail`], which reports the earliest bad line seen so far.
    fn quarantine(&self, out: &mut RangeOutcome, line: u64, reason: String, raw: &[u8]) -> Result<(), Error> {
        out.quarantined.push(QuarantineRecord::new(&self.shown(), line, reason, raw));
        Ok(())
    }

    fn check_fail(&self, out: &RangeOutcome) -> Result<(), Error> {
        match out.quarantined.iter().min_by_key(|r| r.line) {
            Some(first) if self.spec.on_error == OnError::Fail => Err(Error::Data(first.as_error())),
            _ => Ok(()),
        }
    }

    /// The file as users know it: an absolute path for local files, else a URL.
    fn shown(&self) -> String {
        crate::store::shown(&self.spec.store_url, &self.file.path)
    }

    /// Opens the raw bytes of the file from `pos` (decompressed when compressed).
    /// `until` is where the caller expects to stop: an object store is asked for
    /// `pos..until` first (one streamed request), and for the rest only if the
    /// caller reads on.
    fn open(&self, pos: u64, until: u64) -> Result<Box<dyn Read + Send>, Error> {
        let (_, compression) = Compression::strip(&self.file.path);
        let raw: Box<dyn Read + Send> = if self.spec.store_url == "file://" {
            let p = format!("/{}", self.file.path);
            let mut f = File::open(&p).map_err(|e| Error::io(format!("cannot open input {p}"), e))?;
            if pos > 0 {
                f.seek(SeekFrom::Start(pos)).map_err(|e| Error::io(format!("cannot seek in {p}"), e))?;
            }
            Box::new(f)
        } else {
            Box::new(ObjectReader::new(
                Arc::clone(&self.store),
                crate::store::object_path(&self.file.path),
                pos..until.min(self.file.size),
                self.file.size,
                self.handle.clone(),
                self.shown(),
            ))
        };
        Ok(match compression {
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, raw))),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| Error::io(format!("{}: cannot start zstd decoding", self.shown()), e))?,
            ),
        })
    }

    fn io_err(&self, e: std::io::Error) -> Error {
        Error::io(format!("error reading {}", self.shown()), e)
    }

    fn read_jsonl(
        &self,
        range: Range<u64>,
        first_line: Option<u64>,
        emit: &mut Emit<'_>,
        out: &mut RangeOutcome,
    ) -> Result<(), Error> {
        let (_, compression) = Compression::strip(&self.file.path);
        let (start, end) = if compression == Compression::None { (range.start, range.end) } else { (0, u64::MAX) };
        let mut line_no: u64 = 1;
        let mut offset: u64 = 0;
        let mut line = Vec::new();
        let mut reader;
        if start == 0 {
            reader = BufReader::with_capacity(8 << 20, self.open(0, end.saturating_add(LINE_SLACK))?);
        } else {
            // Skip the line that began before the range (or just the '\n' at start-1):
            // it belongs to the previous range. The first line of this range then
            // has number (newlines before start-1) + 2.
            offset = start - 1;
            reader = BufReader::with_capacity(8 << 20, self.open(offset, end.saturating_add(LINE_SLACK))?);
            let n = reader.read_until(b'\n', &mut line).map_err(|e| self.io_err(e))?;
            offset += n as u64;
            if line.last() != Some(&b'\n') {
                out.next_line = first_line.unwrap_or(0);
                return Ok(());
            }
            line_no = match first_line {
                Some(l) => l,
                None => {
                    let mut prefix = self.open(0, start - 1)?.take(start - 1);
                    let mut buf = vec![0u8; 1 << 20];
                    let mut newlines = 0u64;
                    loop {
                        let n = prefix.read(&mut buf).map_err(|e| self.io_err(e))?;
                        if n == 0 {
                            break;
                        }
                        newlines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                    }
                    newlines + 2
                }
            };
        }
        let mut chunk = JsonChunk::default();
        while offset < end {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| self.io_err(e))?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            let body = trim_eol(&line);
            if !body.iter().all(|b| b.is_ascii_whitespace()) {
                chunk.push(line_no, body);
            }
            line_no += 1;
            if chunk.lines.len() >= DEFAULT_BATCH_ROWS || chunk.buf.len() >= DEFAULT_BATCH_BYTES {
                self.flush_jsonl(&mut chunk, emit, out)?;
            }
        }
        out.next_line = line_no;
        self.flush_jsonl(&mut chunk, emit, out)
    }

    fn flush_jsonl(&self, chunk: &mut JsonChunk, emit: &mut Emit<'_>, out: &mut RangeOutcome) -> Result<(), Error> {
        if chunk.lines.is_empty() {
            return Ok(());
        }
        // UTF-8 first: a bad line is quarantined with the offset of its first bad byte.
        let mut good: Vec<usize> = Vec::with_capacity(chunk.lines.len());
        for (i, (line_no, r)) in chunk.lines.iter().enumerate() {
            match std::str::from_utf8(&chunk.buf[r.clone()]) {
                Ok(_) => good.push(i),
                Err(e) => self.quarantine(
                    out,
                    *line_no,
                    format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                    &chunk.buf[r.clone()],
                )?,
            }
        }
        let batch = match self.decode_lines(chunk, &good) {
            Ok(b) => b,
            Err(_) => {
                // Slow path: find the bad lines one by one.
                let mut still_good = Vec::with_capacity(good.len());
                for &i in &good {
                    let (line_no, r) = &chunk.lines[i];
                    let raw = &chunk.buf[r.clone()];
                    if let Some(reason) = self.classify_json(raw) {
                        self.quarantine(out, *line_no, reason, raw)?;
                    } else if let Err(e) = self.decode_lines(chunk, &[i]) {
                        self.quarantine(out, *line_no, format!("does not fit the input schema: {e}"), raw)?;
                    } else {
                        still_good.push(i);
                    }
                }
                good = still_good;
                self.decode_lines(chunk, &good).map_err(|e| match e {
                    Error::Batch(a) => Error::arrow(self.shown(), a),
                    e => Error::data(format!("{}: {e}", self.shown())),
                })?
            }
        };
        let lines: Vec<u64> = good.iter().map(|&i| chunk.lines[i].0).collect();
        let raws: Vec<&[u8]> = good.iter().map(|&i| &chunk.buf[chunk.lines[i].1.clone()]).collect();
        let assembled = self.assemble(&batch, &lines, &|row| raws[row], &|row| self.classify_json(raws[row]), out)?;
        self.check_fail(out)?;
        if let Some(b) = assembled {
            out.rows += b.num_rows() as u64;
            emit(b)?;
        }
        chunk.clear();
        Ok(())
    }

    /// Decodes the given lines of a chunk with the input schema.
    fn decode_lines(&self, chunk: &JsonChunk, which: &[usize]) -> Result<RecordBatch, Error> {
        let mut decoder =
            ReaderBuilder::new(Arc::clone(&self.input_schema)).with_batch_size(which.len().max(1)).build_decoder()?;
        for &i in which {
            let r = chunk.lines[i].1.clone();
            let bytes = &chunk.buf[r];
            let n = decoder.decode(bytes)?;
            if n != bytes.len() {
                return Err(Error::data("line holds more than one JSON value"));
            }
            decoder.decode(b"\n")?;
        }
        let batch = decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.input_schema)));
        if batch.num_rows() != which.len() {
            return Err(Error::data(format!("{} lines decoded into {} rows", which.len(), batch.num_rows())));
        }
        Ok(batch)
    }

    /// Why a JSON line cannot become a row, or `None` when it can.
    fn classify_json(&self, raw: &[u8]) -> Option<String> {
        let v: serde_json::Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(e) => return Some(format!("malformed JSON: {e}")),
        };
        let serde_json::Value::Object(map) = v else {
            return Some("not a JSON object".into());
        };
        let text = &self.spec.text;
        match map.get(text) {
            None => return Some(format!("missing text key {text:?}")),
            Some(serde_json::Value::Null) => return Some(format!("text key {text:?} is null")),
            Some(serde_json::Value::String(_)) => {}
            Some(other) => return Some(format!("text key {text:?} is not a string (found {})", json_type(other))),
        }
        if let Some(id) = &self.spec.id {
            match map.get(id) {
                None | Some(serde_json::Value::Null) => return Some(format!("id key {id:?} is missing or null")),
                _ => {}
            }
        }
        None
    }

    fn read_text(&self, emit: &mut Emit<'_>, out: &mut RangeOutcome) -> Result<(), Error> {
        let mut bytes = Vec::with_capacity(self.file.size as usize);
        self.open(0, u64::MAX)?.read_to_end(&mut bytes).map_err(|e| self.io_err(e))?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to());
                return self.quarantine(out, 1, reason, e.as_bytes());
            }
        };
        let batch = RecordBatch::try_new(
            Arc::clone(&self.input_schema),
            vec![Arc::new(StringArray::from(vec![text])) as ArrayRef],
        )?;
        let assembled = self.assemble(&batch, &[1], &|_| &[], &|_| None, out)?;
        if let Some(b) = assembled {
            out.rows += b.num_rows() as u64;
            emit(b)?;
        }
        Ok(())
    }

    fn read_csv(&self, emit: &mut Emit<'_>, out: &mut RangeOutcome) -> Result<(), Error> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(self.open(0, u64::MAX)?);
        let headers =
            rdr.byte_headers().map_err(|e| Error::csv(format!("{}: cannot read the CSV header", self.shown()), e))?;
        let names: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
        let expected: Vec<&str> = self.input_schema.fields().iter().map(|f| f.name().as_str()).collect();
        if names != expected {
            return Err(Error::data(format!(
                "{}: CSV header [{}] differs from the first input file's [{}]",
                self.shown(),
                names.join(","),
                expected.join(",")
            )));
        }
        let ncols = names.len();
        let mut record = csv::ByteRecord::new();
        let mut cols: Vec<StringBuilder> = (0..ncols).map(|_| StringBuilder::new()).collect();
        let mut lines: Vec<u64> = Vec::new();
        let mut raws: Vec<Vec<u8>> = Vec::new();
        loop {
            let line = rdr.position().line();
            match rdr.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(line, |p| p.line());
                    self.quarantine(out, line, format!("malformed CSV: {e}"), &[])?;
                    continue;
                }
            }
            let line = record.position().map_or(line, |p| p.line());
            let raw = record.iter().collect::<Vec<_>>().join(&b","[..]);
            if record.len() != ncols {
                self.quarantine(out, line, format!("expected {ncols} fields, found {}", record.len()), &raw)?;
                continue;
            }
            let fields: Result<Vec<&str>, _> = record.iter().map(std::str::from_utf8).collect();
            let Ok(fields) = fields else {
                self.quarantine(out, line, "invalid UTF-8".into(), &raw)?;
                continue;
            };
            for (b, f) in cols.iter_mut().zip(fields) {
                b.append_value(f);
            }
            lines.push(line);
            raws.push(raw);
            if lines.len() >= DEFAULT_BATCH_ROWS {
                self.flush_builders(&mut cols, &mut lines, &mut raws, emit, out)?;
            }
        }
        self.flush_builders(&mut cols, &mut lines, &mut raws, emit, out)
    }

    fn flush_builders(
        &self,
        cols: &mut [StringBuilder],
        lines: &mut Vec<u64>,
        raws: &mut Vec<Vec<u8>>,
        emit: &mut Emit<'_>,
        out: &mut RangeOutcome,
    ) -> Result<(), Error> {
        if lines.is_empty() {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.input_schema), arrays)?;
        let assembled = self.assemble(&batch, lines, &|r| raws[r].as_slice(), &|_| None, out)?;
        self.check_fail(out)?;
        if let Some(b) = assembled {
            out.rows += b.num_rows() as u64;
            emit(b)?;
        }
        lines.clear();
        raws.clear();
        Ok(())
    }

    fn read_parquet(&self, emit: &mut Emit<'_>, out: &mut RangeOutcome) -> Result<(), Error> {
        let path = crate::store::object_path(&self.file.path);
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(Arc::clone(&self.store), path).with_file_size(self.file.size);
        let mut stream = self
            .handle
            .block_on(async {
                ParquetRecordBatchStreamBuilder::new(reader).await?.with_batch_size(DEFAULT_BATCH_ROWS).build()
            })
            .map_err(|e| Error::parquet(format!("{}: cannot read Parquet", self.shown()), e))?;
        let mut row: u64 = 0;
        while let Some(batch) = self.handle.block_on(stream.next()) {
            let batch = batch.map_err(|e| Error::parquet(format!("{}: cannot read Parquet", self.shown()), e))?;
            let lines: Vec<u64> = (row + 1..=row + batch.num_rows() as u64).collect();
            row += batch.num_rows() as u64;
            let assembled = self.assemble(&batch, &lines, &|_| &[], &|_| None, out)?;
            self.check_fail(out)?;
            if let Some(b) = assembled {
                out.rows += b.num_rows() as u64;
                emit(b)?;
            }
        }
        Ok(())
    }

    /// Turns a batch of input rows into output rows: quarantines rows whose text (or
    /// id) is null, builds ids, reorders and renames columns.
    fn assemble<'r>(
        &self,
        batch: &RecordBatch,
        lines: &[u64],
        raw: &dyn Fn(usize) -> &'r [u8],
        why_null: &dyn Fn(usize) -> Option<String>,
        out: &mut RangeOutcome,
    ) -> Result<Option<RecordBatch>, Error> {
        let text_col = column(batch, &self.spec.text, &self.shown())?;
        let text = to_utf8(&text_col, &self.spec.text, &self.shown())?;
        let id = match &self.spec.id {
            Some(name) => Some(to_utf8(&column(batch, name, &self.shown())?, name, &self.shown())?),
            None => None,
        };
        let n = batch.num_rows();
        let mut keep = Vec::with_capacity(n);
        for (row, &line) in lines.iter().enumerate().take(n) {
            let text_null = text.is_null(row);
            let id_null = id.as_ref().is_some_and(|a| a.is_null(row));
            if text_null || id_null {
                let reason = why_null(row).unwrap_or_else(|| {
                    if text_null {
                        format!("text column {:?} is null", self.spec.text)
                    } else {
                        format!("id column {:?} is null", self.spec.id.as_deref().unwrap_or("id"))
                    }
                });
                self.quarantine(out, line, reason, raw(row))?;
                keep.push(false);
            } else {
                keep.push(true);
            }
        }
        let mask = BooleanArray::from(keep);
        let kept = mask.true_count();
        if kept == 0 {
            return Ok(None);
        }
        let all = kept == n;
        let pick = |a: &ArrayRef| -> Result<ArrayRef, Error> {
            if all {
                Ok(Arc::clone(a))
            } else {
                Ok(filter(a.as_ref(), &mask)?)
            }
        };
        let id_array: ArrayRef = match &id {
            Some(a) => pick(a)?,
            None => {
                let rel = &self.file.rel;
                let mut b = StringBuilder::with_capacity(kept, kept * (rel.len() + 8));
                for (row, line) in lines.iter().enumerate() {
                    if mask.value(row) {
                        b.append_value(format!("{rel}:{line}"));
                    }
                }
                Arc::new(b.finish())
            }
        };
        let mut arrays = vec![id_array, pick(&text)?];
        let filtered = if all { batch.clone() } else { filter_record_batch(batch, &mask)? };
        for f in self.output_schema.fields().iter().skip(2) {
            let name = f.name();
            let source = if let Some(orig) = name.strip_prefix("input_") {
                if renamed_input_column(orig) == *name && (orig == "id" || orig == "text") {
                    orig
                } else {
                    name.as_str()
                }
            } else {
                name.as_str()
            };
            let a = match filtered.schema().index_of(source) {
                Ok(i) => Arc::clone(filtered.column(i)),
                Err(_) => datafusion::arrow::array::new_null_array(f.data_type(), kept),
            };
            let a = if a.data_type() == f.data_type() {
                a
            } else {
                cast(&a, f.data_type()).map_err(|e| Error::arrow(format!("{}: column {name:?}", self.shown()), e))?
            };
            arrays.push(a);
        }
        RecordBatch::try_new(Arc::clone(&self.output_schema), arrays)
            .map(Some)
            .map_err(|e| Error::arrow(self.shown(), e))
    }
}

fn column(batch: &RecordBatch, name: &str, file: &str) -> Result<ArrayRef, Error> {
    batch
        .schema()
        .index_of(name)
        .map(|i| Arc::clone(batch.column(i)))
        .map_err(|_| Error::data(format!("{file}: column {name:?} is missing")))
}

fn to_utf8(a: &ArrayRef, name: &str, file: &str) -> Result<ArrayRef, Error> {
    if a.data_type() == &DataType::Utf8 {
        return Ok(Arc::clone(a));
    }
    cast(a, &DataType::Utf8).map_err(|e| Error::arrow(format!("{file}: column {name:?} cannot be read as a string"), e))
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut l = line;
    if l.last() == Some(&b'\n') {
        l = &l[..l.len() - 1];
    }
    if l.last() == Some(&b'\r') {
        l = &l[..l.len() - 1];
    }
    l
}

/// Lines of one JSONL batch, stored contiguously.
#[derive(Default)]
struct JsonChunk {
    buf: Vec<u8>,
    lines: Vec<(u64, Range<usize>)>,
}

impl JsonChunk {
    fn push(&mut self, line_no: u64, body: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(body);
        self.lines.push((line_no, start..self.buf.len()));
    }
    fn clear(&mut self) {
        self.buf.clear();
        self.lines.clear();
    }
}

/// How far past its range end a JSONL range reader first asks the store for
/// (its last line usually ends there; a longer one is fetched as it goes).
const LINE_SLACK: u64 = 1 << 20;

/// Sequential reads of an object as streamed GETs: `first` is asked for in one
/// request, then the rest up to `size` if the caller reads on. A stream that
/// breaks is re-requested from where it stopped (up to 3 times); a server that
/// cannot serve ranges (plain HTTP) is read from the start, skipping to `pos`.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    pos: u64,
    /// End of the current request.
    until: u64,
    size: u64,
    handle: tokio::runtime::Handle,
    shown: String,
    stream: Option<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>>,
    /// Bytes of the current stream still to drop before `pos` (no range support).
    skip: u64,
    chunk: bytes::Bytes,
    retries: u32,
}

impl ObjectReader {
    fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        first: Range<u64>,
        size: u64,
        handle: tokio::runtime::Handle,
        shown: String,
    ) -> Self {
        Self {
            store,
            path,
            pos: first.start,
            until: first.end.max(first.start),
            size,
            handle,
            shown,
            stream: None,
            skip: 0,
            chunk: bytes::Bytes::new(),
            retries: 0,
        }
    }

    fn request(&mut self) -> std::io::Result<()> {
        use object_store::GetOptions;
        if self.until <= self.pos {
            self.until = self.size;
        }
        let whole = self.pos == 0 && self.until >= self.size;
        let ranged = GetOptions { range: (!whole).then(|| (self.pos..self.until).into()), ..Default::default() };
        let got = match self.handle.block_on(self.store.get_opts(&self.path, ranged)) {
            Err(object_store::Error::NotSupported { .. }) if !whole => {
                // The server ignores Range: read from the start and skip.
                self.until = self.size;
                self.skip = self.pos;
                self.handle.block_on(self.store.get_opts(&self.path, GetOptions::default()))
            }
            other => other,
        };
        let got = got.map_err(|e| std::io::Error::other(format!("GET {}: {e}", self.shown)))?;
        self.stream = Some(got.into_stream());
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk[..n]);
                let _ = self.chunk.split_to(n);
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos >= self.size || buf.is_empty() {
                return Ok(0);
            }
            if self.stream.is_none() {
                self.request()?;
            }
            let next = self.handle.block_on(self.stream.as_mut().expect("requested above").next());
            match next {
                Some(Ok(mut b)) => {
                    if self.skip > 0 {
                        let drop = (self.skip as usize).min(b.len());
                        let _ = b.split_to(drop);
                        self.skip -= drop as u64;
                    }
                    self.chunk = b;
                }
                Some(Err(e)) if self.retries < 3 => {
                    self.retries += 1;
                    tracing::warn!(error = %e, file = %self.shown, pos = self.pos, "read stream broke; re-requesting");
                    self.stream = None;
                    self.skip = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(format!("GET {}: {e}", self.shown))),
                None => {
                    // This request is done; the caller reads on past it.
                    self.stream = None;
                    self.skip = 0;
                    if self.pos < self.until {
                        return Err(std::io::Error::other(format!(
                            "GET {}: the object ended at byte {} (expected {})",
                            self.shown, self.pos, self.until
                        )));
                    }
                    self.until = self.size;
                }
            }
        }
    }
}

/// Splits files into byte ranges for parallel reading: plain JSONL files larger
/// than `split_bytes` are cut; every other file is one range. Returns
/// `(file index, start, end)` in file order.
pub fn plan_ranges(spec: &ReadSpec, split_bytes: u64) -> Vec<(u32, u64, u64)> {
    let mut out = Vec::new();
    for (i, f) in spec.files.iter().enumerate() {
        let (_, compression) = Compression::strip(&f.path);
        let splittable = spec.format == InputFormat::Jsonl && compression == Compression::None;
        if splittable && f.size > split_bytes {
            let mut start = 0;
            while start < f.size {
                let end = (start + split_bytes).min(f.size);
                out.push((i as u32, start, end));
                start = end;
            }
        } else {
            out.push((i as u32, 0, f.size));
        }
    }
    out
}
