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
use crate::jsonscan::{scan, Class, ColumnSpec, ColumnType, ExtraColumns};
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
    /// JSONL: every column with its type, checked per row before decoding.
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    /// JSONL: keys not in a declared schema.
    #[serde(default)]
    pub extra_columns: ExtraColumns,
    /// Rows (lines, text files, text values) larger than this are quarantined
    /// as `too_large`, their bytes not copied.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
}

fn default_max_document_bytes() -> u64 {
    dsproc_common::config::DEFAULT_MAX_DOCUMENT_BYTES
}

/// Counts for one range.
#[derive(Debug, Default, Clone)]
pub struct RangeOutcome {
    /// Rows emitted.
    pub rows: u64,
    /// Rows rejected (all of them, spilled or not).
    pub quarantined: u64,
    /// Rejected rows not yet handed to the quarantine sink.
    pub pending: Vec<QuarantineRecord>,
    pending_bytes: usize,
    /// Quarantine parts handed to the sink so far.
    pub parts: u32,
    /// Values of keys outside a declared schema dropped (`extra_columns = "drop"`), per key.
    pub extra_dropped: std::collections::BTreeMap<String, u64>,
    /// Line number of the first line after the range (JSONL), so the next range of
    /// the same file can start numbering without re-counting the file's prefix.
    pub next_line: u64,
}

type Emit<'a> = dyn FnMut(RecordBatch) -> Result<(), Error> + 'a;

/// Receives quarantined rows as they accumulate: part number, rows in line order.
pub type QuarantineSink<'a> = dyn Fn(u32, &[QuarantineRecord]) -> Result<(), Error> + Sync + 'a;

/// Quarantined rows are handed to the sink in parts of about this many bytes, so a
/// range with many bad rows never holds them all.
const QUARANTINE_PART_BYTES: usize = 4 << 20;

/// A reader over one range of one file.
pub struct RangeReader<'a> {
    pub spec: &'a ReadSpec,
    pub store: Arc<dyn ObjectStore>,
    pub handle: tokio::runtime::Handle,
    pub input_schema: SchemaRef,
    pub output_schema: SchemaRef,
    pub file: &'a InputFile,
    pub sink: &'a QuarantineSink<'a>,
}

impl RangeReader<'_> {
    /// Reads `range` of the file (the whole file for formats that cannot split).
    /// `first_line` is the number of the first line starting in the range when the
    /// caller knows it (it read the previous range); otherwise it is counted.
    pub fn read(&self, range: Range<u64>, first_line: Option<u64>, emit: &mut Emit<'_>) -> Result<RangeOutcome, Error> {
        // Refused before anything is opened (every open and request is checked again).
        crate::policy::check_read(&self.shown())?;
        let mut out = RangeOutcome::default();
        match self.spec.format {
            InputFormat::Jsonl => self.read_jsonl(range, first_line, emit, &mut out)?,
            InputFormat::Text => self.read_text(emit, &mut out)?,
            InputFormat::Csv => self.read_csv(emit, &mut out)?,
            InputFormat::Parquet => self.read_parquet(emit, &mut out)?,
        }
        self.check_fail(&out)?;
        self.spill(&mut out, true)?;
        Ok(out)
    }

    /// Records a rejected row. With `on_error = "fail"` the caller stops at the next
    /// [`Self::check_fail`], which reports the earliest bad line seen so far.
    fn quarantine(&self, out: &mut RangeOutcome, line: u64, reason: String, raw: &[u8]) -> Result<(), Error> {
        out.pending_bytes += raw.len() + reason.len() + 64;
        out.pending.push(QuarantineRecord::new(&self.shown(), line, reason, raw));
        out.quarantined += 1;
        Ok(())
    }

    /// Hands the pending quarantined rows to the sink once there are enough of
    /// them (or at the end of the range), in line order.
    fn spill(&self, out: &mut RangeOutcome, last: bool) -> Result<(), Error> {
        if out.pending.is_empty() || (!last && out.pending_bytes < QUARANTINE_PART_BYTES) {
            return Ok(());
        }
        // in line order (a chunk's UTF-8 failures are found before its JSON ones)
        out.pending.sort_by_key(|r| r.line);
        (self.sink)(out.parts, &out.pending)?;
        out.parts += 1;
        out.pending.clear();
        out.pending_bytes = 0;
        Ok(())
    }

    fn check_fail(&self, out: &RangeOutcome) -> Result<(), Error> {
        match out.pending.iter().min_by_key(|r| r.line) {
            Some(first) if self.spec.on_error == OnError::Fail => Err(Error::Data(first.as_error())),
            _ => Ok(()),
        }
    }

    /// Quarantines a row larger than `max_document_bytes` (its bytes not copied).
    fn too_large(&self, out: &mut RangeOutcome, line: u64, size: u64) -> Result<(), Error> {
        let reason =
            format!("too_large: {size} bytes, more than input.max_document_bytes ({})", self.spec.max_document_bytes);
        self.quarantine(out, line, reason, &[])
    }

    /// Refuses a file whose first bytes say it is another format.
    fn check_magic(&self, head: &[u8]) -> Result<(), Error> {
        if let Some(actual) = sniff(head) {
            return Err(Error::data(format!(
                "{}: the file is {actual}, not {}; set input.format or rename the file",
                self.shown(),
                self.spec.format.name()
            )));
        }
        Ok(())
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
        open_input(&self.spec.store_url, &self.store, self.file, pos, until, &self.handle, &self.shown())
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
        let cap = usize::try_from(self.spec.max_document_bytes).unwrap_or(usize::MAX);
        let mut line_no: u64 = 1;
        let mut offset: u64 = 0;
        // A BOM belongs to the first line: that line starts at 0 and is this range's
        // even when the range ends inside the BOM (the fuzz test found the line lost).
        let mut bom = 0u64;
        let mut line = Vec::new();
        let mut reader;
        if start == 0 {
            reader = BufReader::with_capacity(8 << 20, self.open(0, end.saturating_add(LINE_SLACK))?);
            let head = reader.fill_buf().map_err(|e| self.io_err(e))?;
            self.check_magic(head)?;
            if head.starts_with(BOM) {
                reader.consume(BOM.len());
                bom = BOM.len() as u64;
            }
        } else {
            // Skip the line that began before the range (or just the '\n' at start-1):
            // it belongs to the previous range. The first line of this range then
            // has number (newlines before start-1) + 2.
            offset = start - 1;
            reader = BufReader::with_capacity(8 << 20, self.open(offset, end.saturating_add(LINE_SLACK))?);
            let skipped = read_line_capped(&mut reader, &mut line, 0).map_err(|e| self.io_err(e))?;
            offset += skipped.consumed;
            if !skipped.newline {
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
        let checker = LineChecker::new(self.spec);
        let mut chunk = JsonChunk::default();
        while offset < end {
            line.clear();
            let got = read_line_capped(&mut reader, &mut line, cap).map_err(|e| self.io_err(e))?;
            if got.consumed == 0 {
                break;
            }
            offset += got.consumed + std::mem::take(&mut bom);
            if got.too_large {
                self.too_large(out, line_no, got.consumed - u64::from(got.newline))?;
            } else {
                let body = trim_eol(&line);
                if !body.iter().all(|b| b.is_ascii_whitespace()) {
                    chunk.push(line_no, body);
                }
            }
            line_no += 1;
            if chunk.lines.len() >= DEFAULT_BATCH_ROWS || chunk.buf.len() >= DEFAULT_BATCH_BYTES {
                self.flush_jsonl(&checker, &mut chunk, emit, out)?;
                self.spill(out, false)?;
            }
        }
        out.next_line = line_no;
        self.flush_jsonl(&checker, &mut chunk, emit, out)
    }

    fn flush_jsonl(
        &self,
        checker: &LineChecker<'_>,
        chunk: &mut JsonChunk,
        emit: &mut Emit<'_>,
        out: &mut RangeOutcome,
    ) -> Result<(), Error> {
        if chunk.lines.is_empty() {
            return Ok(());
        }
        // Each line is checked before Arrow sees it: UTF-8 (a bad line is
        // quarantined with the offset of its first bad byte), one JSON object,
        // the text and id keys, and every value against its column's type.
        let mut ok = JsonChunk::default();
        let mut all_ok = true;
        for (line_no, r) in &chunk.lines {
            let raw = &chunk.buf[r.clone()];
            if let Err(e) = std::str::from_utf8(raw) {
                let reason = format!("invalid UTF-8 at byte {} of the line", e.valid_up_to());
                self.quarantine(out, *line_no, reason, raw)?;
                all_ok = false;
                continue;
            }
            match checker.check(raw, &mut out.extra_dropped) {
                Ok(Verdict::Ok) => ok.push(*line_no, raw),
                Ok(Verdict::Rewrite(bytes)) => {
                    ok.push(*line_no, &bytes);
                    all_ok = false;
                }
                Ok(Verdict::Bad(reason)) => {
                    self.quarantine(out, *line_no, reason, raw)?;
                    all_ok = false;
                }
                Err(key) => {
                    return Err(Error::data(format!(
                        "{}:{line_no}: key {key:?} is not in input.schema (input.extra_columns = \"error\"); declare it or set extra_columns to \"keep\" or \"drop\"",
                        self.shown()
                    )))
                }
            }
        }
        let src: &JsonChunk = if all_ok { chunk } else { &ok };
        let all: Vec<usize> = (0..src.lines.len()).collect();
        let (batch, good) = match self.decode_lines(src, &all) {
            Ok(b) => (b, all),
            Err(_) => {
                // Slow path (a line the checks passed but Arrow refused): find it.
                let mut still_good = Vec::with_capacity(all.len());
                for &i in &all {
                    let (line_no, r) = &src.lines[i];
                    if let Err(e) = self.decode_lines(src, &[i]) {
                        let raw = &src.buf[r.clone()];
                        self.quarantine(out, *line_no, format!("does not fit the input schema: {e}"), raw)?;
                    } else {
                        still_good.push(i);
                    }
                }
                let b = self.decode_lines(src, &still_good).map_err(|e| match e {
                    Error::Batch(a) => Error::arrow(self.shown(), a),
                    e => Error::data(format!("{}: {e}", self.shown())),
                })?;
                (b, still_good)
            }
        };
        let lines: Vec<u64> = good.iter().map(|&i| src.lines[i].0).collect();
        let raws: Vec<&[u8]> = good.iter().map(|&i| &src.buf[src.lines[i].1.clone()]).collect();
        let assembled = self.assemble(&batch, &lines, &|row| raws[row], &|_| None, out)?;
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
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.input_schema))
            .with_batch_size(which.len().max(1))
            .with_coerce_primitive(true)
            .build_decoder()?;
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

    fn read_text(&self, emit: &mut Emit<'_>, out: &mut RangeOutcome) -> Result<(), Error> {
        let max = self.spec.max_document_bytes;
        let mut bytes = Vec::with_capacity(self.file.size.min(max) as usize);
        self.open(0, u64::MAX)?.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| self.io_err(e))?;
        self.check_magic(&bytes)?;
        if bytes.len() as u64 > max {
            let (_, compression) = Compression::strip(&self.file.path);
            let size = if compression == Compression::None { self.file.size } else { bytes.len() as u64 };
            return self.too_large(out, 1, size);
        }
        if bytes.starts_with(BOM) {
            bytes.drain(..BOM.len());
        }
        // A blank-only file is an empty input.
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
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
        let mut input = BufReader::with_capacity(1 << 20, self.open(0, u64::MAX)?);
        let head = input.fill_buf().map_err(|e| self.io_err(e))?;
        self.check_magic(head)?;
        if head.starts_with(BOM) {
            input.consume(BOM.len());
        }
        // Records are cut out of the stream first (quotes tracked), so a record over
        // max_document_bytes is skipped without being held; the rest are parsed by
        // the csv crate in chunks of whole records.
        let mut split = CsvSplitter::new(input, self.spec.max_document_bytes);
        let expected: Vec<&str> = self.input_schema.fields().iter().map(|f| f.name().as_str()).collect();
        let ncols = expected.len();
        let mut header_seen = false;
        let check_header = |names: Vec<String>| {
            if names == expected {
                Ok(())
            } else {
                Err(Error::data(format!(
                    "{}: CSV header [{}] differs from the first input file's [{}]",
                    self.shown(),
                    names.join(","),
                    expected.join(",")
                )))
            }
        };
        let mut record = csv::ByteRecord::new();
        let mut cols: Vec<StringBuilder> = (0..ncols).map(|_| StringBuilder::new()).collect();
        let mut lines: Vec<u64> = Vec::new();
        let mut raws: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut prev_line = 0u64;
        while let Some(piece) = split.next_piece().map_err(|e| self.io_err(e))? {
            let (chunk, first_line) = match piece {
                CsvPiece::TooLarge { line, bytes } => {
                    if !header_seen {
                        return Err(Error::data(format!(
                            "{}: the CSV header is {bytes} bytes, more than input.max_document_bytes",
                            self.shown()
                        )));
                    }
                    self.too_large(out, line, bytes)?;
                    continue;
                }
                CsvPiece::Records { bytes, first_line } => (bytes, first_line),
            };
            let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(chunk.as_slice());
            loop {
                let at = |l: u64| first_line + l.saturating_sub(1);
                let line = at(rdr.position().line());
                match rdr.read_byte_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => {
                        let line = e.position().map_or(line, |p| at(p.line()));
                        self.quarantine(out, line, format!("malformed CSV: {e}"), &[])?;
                        continue;
                    }
                }
                let line = record.position().map_or(line, |p| at(p.line()));
                // Lines are counted by "\n" (as the csv crate does): records ended by a
                // lone "\r" share a line, and ids made from lines would repeat.
                if self.spec.id.is_none() && header_seen && line == prev_line && prev_line > 0 {
                    return Err(Error::data(format!(
                        "{}:{line}: CSV records end with a lone \\r (old Mac line ends), so row ids made from line numbers would repeat; convert the line ends to \\n or \\r\\n, or set input.id to a column",
                        self.shown()
                    )));
                }
                if !header_seen {
                    header_seen = true;
                    check_header(record.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect())?;
                    continue;
                }
                prev_line = line;
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
                batch_bytes += 2 * raw.len();
                raws.push(raw);
                if lines.len() >= DEFAULT_BATCH_ROWS || batch_bytes >= DEFAULT_BATCH_BYTES {
                    self.flush_builders(&mut cols, &mut lines, &mut raws, emit, out)?;
                    self.spill(out, false)?;
                    batch_bytes = 0;
                }
            }
        }
        if !header_seen {
            check_header(Vec::new())?;
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
                let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
                // Batches bounded by bytes as well as rows: large documents come a few at a time.
                let (bytes, rows) = crate::rowsize::footer_bytes_and_rows(builder.metadata());
                builder.with_batch_size(crate::rowsize::batch_rows_for(Some((bytes / rows).max(1)))).build()
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
            self.spill(out, false)?;
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
        let text_values = text.as_any().downcast_ref::<StringArray>();
        for (row, &line) in lines.iter().enumerate().take(n) {
            let text_null = text.is_null(row);
            let id_null = id.as_ref().is_some_and(|a| a.is_null(row));
            let size = text_values.map_or(0, |t| t.value_length(row) as u64);
            if !text_null && size > self.spec.max_document_bytes {
                self.too_large(out, line, size)?;
                keep.push(false);
            } else if text_null || id_null {
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

/// The UTF-8 byte-order mark, stripped from the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the per-row check found.
enum Verdict {
    Ok,
    /// Fine once nested values of `json` columns are written as JSON text.
    Rewrite(Vec<u8>),
    /// Quarantined, with this reason.
    Bad(String),
}

/// Checks one JSONL row against the input schema (see [`crate::jsonscan`]).
struct LineChecker<'s> {
    columns: std::collections::HashMap<&'s str, &'s ColumnSpec>,
    text: &'s str,
    id: Option<&'s str>,
    extra: ExtraColumns,
}

impl<'s> LineChecker<'s> {
    fn new(spec: &'s ReadSpec) -> Self {
        Self {
            columns: spec.columns.iter().map(|c| (c.name.as_str(), c)).collect(),
            text: &spec.text,
            id: spec.id.as_deref(),
            extra: spec.extra_columns,
        }
    }

    /// `Err(key)`: a key outside the declared schema with `extra_columns = "error"`.
    fn check(&self, raw: &[u8], dropped: &mut std::collections::BTreeMap<String, u64>) -> Result<Verdict, String> {
        let members = match scan(raw) {
            Ok(m) => m,
            Err(reason) => return Ok(Verdict::Bad(reason)),
        };
        let mut seen_text = false;
        let mut seen_id = false;
        let mut rewrite = false;
        // Counted only when the row is kept.
        let mut dropped_here: Vec<&str> = Vec::new();
        for (i, (k, v)) in members.0.iter().enumerate() {
            if members.0[..i].iter().any(|(p, _)| p == k) {
                return Ok(Verdict::Bad(format!("duplicate key {k:?}")));
            }
            let class = Class::of(v);
            if k == self.text {
                seen_text = true;
                match class {
                    Class::String => {}
                    Class::Null => return Ok(Verdict::Bad(format!("text key {:?} is null", self.text))),
                    c => {
                        return Ok(Verdict::Bad(format!(
                            "text key {:?} is not a string (found {})",
                            self.text,
                            c.name()
                        )))
                    }
                }
                continue;
            }
            if Some(k.as_ref()) == self.id {
                seen_id = true;
                match class {
                    Class::Null => return Ok(Verdict::Bad(format!("id key {k:?} is missing or null"))),
                    c if c.is_nested() => {
                        return Ok(Verdict::Bad(format!(
                            "id key {k:?} is an {}, expected a string or a number",
                            c.name()
                        )))
                    }
                    _ => {}
                }
            }
            if self.columns.is_empty() {
                continue;
            }
            let Some(col) = self.columns.get(k.as_ref()) else {
                match self.extra {
                    ExtraColumns::Drop => dropped_here.push(k.as_ref()),
                    ExtraColumns::Error => return Err(k.to_string()),
                    ExtraColumns::Keep => {
                        return Ok(Verdict::Bad(format!(
                            "key {k:?} is not in the input schema (did the file change after the schema was read?)"
                        )))
                    }
                }
                continue;
            };
            if !col.ty.accepts(class, col.declared) {
                return Ok(Verdict::Bad(format!(
                    "column {k:?}: expected {}, found {} {}",
                    col.ty,
                    class.name(),
                    crate::jsonscan::excerpt(v)
                )));
            }
            rewrite |= col.ty == ColumnType::Json && class.is_nested();
        }
        if !seen_text {
            return Ok(Verdict::Bad(format!("missing text key {:?}", self.text)));
        }
        if let (Some(id), false) = (self.id, seen_id) {
            return Ok(Verdict::Bad(format!("id key {id:?} is missing or null")));
        }
        for k in dropped_here {
            *dropped.entry(k.to_string()).or_default() += 1;
        }
        if !rewrite {
            return Ok(Verdict::Ok);
        }
        Ok(match self.rewrite(raw.len(), &members) {
            Ok(bytes) => Verdict::Rewrite(bytes),
            Err(e) => Verdict::Bad(format!("cannot re-encode the row: {e}")),
        })
    }

    /// The row with nested values of json columns as their JSON text, exactly as written.
    fn rewrite(&self, len: usize, members: &crate::jsonscan::Members<'_>) -> serde_json::Result<Vec<u8>> {
        let mut o = Vec::with_capacity(len + 16);
        o.push(b'{');
        for (i, (k, v)) in members.0.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            serde_json::to_writer(&mut o, k.as_ref())?;
            o.push(b':');
            let nested_json =
                self.columns.get(k.as_ref()).is_some_and(|c| c.ty == ColumnType::Json) && Class::of(v).is_nested();
            if nested_json {
                serde_json::to_writer(&mut o, v.get())?;
            } else {
                o.extend_from_slice(v.get().as_bytes());
            }
        }
        o.push(b'}');
        Ok(o)
    }
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

/// Opens the raw bytes of `file` from `pos` (decompressed when compressed).
/// `until` is where the caller expects to stop: an object store is asked for
/// `pos..until` first (one streamed request), and for the rest only if the
/// caller reads on.
pub(crate) fn open_input(
    store_url: &str,
    store: &Arc<dyn ObjectStore>,
    file: &InputFile,
    pos: u64,
    until: u64,
    handle: &tokio::runtime::Handle,
    shown: &str,
) -> Result<Box<dyn Read + Send>, Error> {
    let (_, compression) = Compression::strip(&file.path);
    let raw: Box<dyn Read + Send> = if store_url == "file://" {
        use crate::policy::{check_local, check_opened, Access};
        let p = format!("/{}", file.path);
        // Checked before the open (a refused FIFO or device is never opened) and
        // on the opened descriptor (no symlink swapped in between redirects it).
        check_local(Access::Read, &p, std::path::Path::new(&p))?;
        let mut f = File::open(&p).map_err(|e| Error::io(format!("cannot open input {p}"), e))?;
        check_opened(Access::Read, &p, std::path::Path::new(&p), &f)?;
        if pos > 0 {
            f.seek(SeekFrom::Start(pos)).map_err(|e| Error::io(format!("cannot seek in {p}"), e))?;
        }
        Box::new(f)
    } else {
        Box::new(ObjectReader::new(
            Arc::clone(store),
            crate::store::object_path(&file.path),
            pos..until.min(file.size),
            file.size,
            handle.clone(),
            shown.to_string(),
        ))
    };
    Ok(match compression {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, raw))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| Error::io(format!("{shown}: cannot start zstd decoding"), e))?,
        ),
    })
}

/// One line as [`read_line_capped`] read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineRead {
    /// Bytes consumed, end of line included (0: end of input).
    pub consumed: u64,
    /// The body was longer than the cap and was not kept.
    pub too_large: bool,
    /// The line ended with `\n` (not at the end of the input).
    pub newline: bool,
}

/// Reads one line (up to and including `\n`) into `buf`, keeping at most `cap`
/// bytes of its body: a longer line is consumed but not kept (`buf` is left
/// empty), so memory stays bounded whatever the input.
pub(crate) fn read_line_capped<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<LineRead> {
    let mut total = 0u64;
    let mut over = false;
    let mut newline = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        let (n, done) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !over {
            // Room for the body and a "\r\n".
            if buf.len() + n > cap.saturating_add(2) {
                over = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..n]);
            }
        }
        total += n as u64;
        r.consume(n);
        if done {
            newline = true;
            break;
        }
    }
    if !over && trim_eol(buf).len() > cap {
        over = true;
        buf.clear();
    }
    Ok(LineRead { consumed: total, too_large: over, newline })
}

/// What a file's first bytes say it is, when that is not a text format.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"PAR1") {
        Some("a Parquet file")
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip-compressed (name it .gz)")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd-compressed (name it .zst)")
    } else if head.iter().take(4096).any(|b| *b == 0) {
        Some("binary (it holds NUL bytes)")
    } else {
        None
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
        let got = got.map_err(|e| match crate::policy::denial(&e) {
            Some(m) => std::io::Error::other(Error::AccessDenied(m)),
            None => std::io::Error::other(format!("GET {}: {e}", self.shown)),
        })?;
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

/// What [`CsvSplitter`] yields: whole records (one or more, with the line of the
/// first), or a record over the cap that was skipped unread.
enum CsvPiece {
    Records { bytes: Vec<u8>, first_line: u64 },
    TooLarge { line: u64, bytes: u64 },
}

/// Cuts a CSV stream into records (RFC 4180 quoting: `"` opens and closes a quoted
/// field, `""` inside is a quote, a line end outside quotes ends the record; `\r`
/// ends one too, as for the csv crate, so CR-only files are cut per record) and
/// hands them out in chunks of about 4 MiB; a record longer than `cap` is skipped
/// to its end, counted, never buffered.
struct CsvSplitter<R> {
    input: R,
    cap: u64,
    /// The line the next record starts on.
    line: u64,
    queued: Option<CsvPiece>,
    done: bool,
}

const CSV_CHUNK_BYTES: usize = 4 << 20;

impl<R: BufRead> CsvSplitter<R> {
    fn new(input: R, cap: u64) -> Self {
        Self { input, cap, line: 1, queued: None, done: false }
    }

    fn next_piece(&mut self) -> std::io::Result<Option<CsvPiece>> {
        if let Some(p) = self.queued.take() {
            return Ok(Some(p));
        }
        let (mut buf, first_line) = (Vec::new(), self.line);
        while !self.done && buf.len() < CSV_CHUNK_BYTES {
            let (start, line) = (buf.len(), self.line);
            match self.record(&mut buf)? {
                None => {}
                Some(bytes) => {
                    buf.truncate(start);
                    let big = CsvPiece::TooLarge { line, bytes };
                    if buf.is_empty() {
                        return Ok(Some(big));
                    }
                    self.queued = Some(big);
                    break;
                }
            }
        }
        Ok((!buf.is_empty()).then_some(CsvPiece::Records { bytes: buf, first_line }))
    }

    /// Appends one record (with its line end) to `buf`; returns its size instead
    /// when it is over the cap (what was appended is then to be dropped).
    fn record(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
        let (mut quoted, mut len, mut over) = (false, 0u64, false);
        loop {
            let avail = self.input.fill_buf()?;
            if avail.is_empty() {
                self.done = true;
                return Ok(over.then_some(len));
            }
            let mut end = None;
            for (i, &c) in avail.iter().enumerate() {
                match c {
                    b'"' => quoted = !quoted,
                    b'\n' => {
                        self.line += 1;
                        if !quoted {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    // "\r\n" ends here too; its "\n" is then an empty record
                    // that the csv crate skips (and that counts the line)
                    b'\r' if !quoted => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(avail.len());
            len += take as u64;
            // the line end is not part of the record's size
            if !over && len - u64::from(end.is_some()) > self.cap {
                over = true;
            }
            if !over {
                buf.extend_from_slice(&avail[..take]);
            }
            self.input.consume(take);
            if end.is_some() {
                return Ok(over.then_some(len - 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, cap: u64) -> Vec<String> {
        let mut split = CsvSplitter::new(std::io::Cursor::new(text.as_bytes().to_vec()), cap);
        let mut out = Vec::new();
        while let Some(p) = split.next_piece().unwrap() {
            out.push(match p {
                CsvPiece::Records { bytes, first_line } => {
                    format!("{first_line}:{}", String::from_utf8(bytes).unwrap())
                }
                CsvPiece::TooLarge { line, bytes } => format!("{line}:too_large {bytes}"),
            });
        }
        out
    }

    #[test]
    fn csv_records_over_the_cap_are_skipped_with_their_line_and_size() {
        // quoted line ends and doubled quotes stay inside their record
        let text = "id,text\n1,\"a\nb \"\"q\"\"\"\n2,";
        let big = format!("3,\"{}\nmore\"\n4,small\n", "x".repeat(40));
        let all = format!("{text}{}\n{big}", "c");
        assert_eq!(pieces(&all, 1000), vec![format!("1:{all}")]);
        let got = pieces(&all, 20);
        assert_eq!(
            got,
            vec![
                "1:id,text\n1,\"a\nb \"\"q\"\"\"\n2,c\n".to_string(),
                "5:too_large 49".to_string(),
                "7:4,small\n".to_string()
            ]
        );
        // CR-only and CRLF records are cut one by one, lines counted by the "\n"s
        assert_eq!(
            pieces("ab\rcdefgh\rij\r", 4),
            vec!["1:ab\r".to_string(), "1:too_large 6".to_string(), "1:ij\r".to_string()]
        );
        assert_eq!(
            pieces("ab\r\ncdefgh\r\nij\r\n", 4),
            vec!["1:ab\r\n".to_string(), "2:too_large 6".to_string(), "2:\nij\r\n".to_string()]
        );
        // a record of exactly the cap fits; the last record may lack a line end
        assert_eq!(pieces("abcd\nefghi", 4), vec!["1:abcd\n".to_string(), "2:too_large 5".to_string()]);
    }
}
