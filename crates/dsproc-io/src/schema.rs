//! Input schema discovery (before any data moves) and the output row layout.

use std::io::{Cursor, Read};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
#[allow(deprecated)]
// ParquetObjectReader: still the simplest object_store bridge in parquet 59
use datafusion::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::Error;
use crate::format::{Compression, InputFormat};
use crate::jsonscan::{scan, Class, ColumnSpec, ColumnType, ExtraColumns, Seen};
use crate::listing::InputFile;

/// Bytes read from the first CSV file for its header.
const INFER_BYTES: u64 = 4 << 20;

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// How the input schema is found.
#[derive(Debug, Clone, Default)]
pub struct SchemaOptions {
    pub text: String,
    pub id: Option<String>,
    /// `[input.schema]`: column → type, in the spec's order.
    pub declared: Vec<(String, ColumnType)>,
    pub extra_columns: ExtraColumns,
    /// Lines longer than this are skipped here (the reader quarantines them).
    pub max_document_bytes: u64,
}

/// The input schema: Arrow fields, and for JSONL each column's type as the
/// reader checks it.
#[derive(Debug, Clone)]
pub struct InputSchema {
    pub schema: Schema,
    pub columns: Vec<ColumnSpec>,
}

/// Finds the schema of the input files (all columns, as stored). JSONL: every
/// line of every file is scanned for its keys and value kinds, and each column
/// gets the narrowest type that holds all its values (int → float → string;
/// objects and arrays → `json`), unless a declared schema with
/// `extra_columns = "drop" | "error"` makes the scan unnecessary. Parquet: the
/// union of every file's footer schema. CSV: the first file's header (every
/// file's header is checked against it when read).
pub async fn infer_input_schema(
    store: &Arc<dyn ObjectStore>,
    store_url: &str,
    files: &[InputFile],
    format: InputFormat,
    opts: &SchemaOptions,
) -> Result<InputSchema, Error> {
    let text = opts.text.as_str();
    let id = opts.id.as_deref();
    let first = &files[0];
    let mut columns = Vec::new();
    let schema = match format {
        InputFormat::Text => Schema::new(vec![Field::new(text, DataType::Utf8, true)]),
        InputFormat::Jsonl => {
            if let Some((_, t)) =
                opts.declared.iter().find(|(n, _)| n == text).filter(|(_, t)| *t != ColumnType::String)
            {
                return Err(Error::data(format!(
                    "input.schema: the text column {text:?} is declared {t}; it must be \"string\""
                )));
            }
            let scanned = if opts.declared.is_empty() || opts.extra_columns == ExtraColumns::Keep {
                scan_keys(store, store_url, files, opts.max_document_bytes).await?
            } else {
                Vec::new()
            };
            for (name, ty) in &opts.declared {
                columns.push(ColumnSpec { name: name.clone(), ty: *ty, declared: true });
            }
            for (name, seen) in scanned {
                if opts.declared.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let ty = if name == text { ColumnType::String } else { seen.column_type() };
                columns.push(ColumnSpec { name, ty, declared: false });
            }
            if columns.is_empty() {
                // Empty or blank-only input: only the text (and id) columns are known.
                columns.push(ColumnSpec { name: text.to_string(), ty: ColumnType::String, declared: false });
                if let Some(id) = id {
                    columns.push(ColumnSpec { name: id.to_string(), ty: ColumnType::String, declared: false });
                }
            }
            Schema::new(columns.iter().map(|c| Field::new(&c.name, c.ty.arrow(), true)).collect::<Vec<_>>())
        }
        InputFormat::Csv => {
            let head = read_head(store, first).await?;
            let head = strip_bom(&head);
            let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(head);
            let headers =
                rdr.headers().map_err(|e| Error::csv(format!("{}: cannot read the CSV header", first.path), e))?;
            Schema::new(headers.iter().map(|h| Field::new(h, DataType::Utf8, true)).collect::<Vec<_>>())
        }
        InputFormat::Parquet => parquet_union(store, files).await?,
    };
    // The text column must exist and be a string.
    let where_ = if files.len() == 1 { first.path.clone() } else { format!("any of the {} input files", files.len()) };
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let Some(pos) = fields.iter().position(|f| f.name() == text) else {
        let keys: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return Err(Error::data(format!(
            "text column {text:?} not found in {where_} (columns: {}); set input.text to one of them",
            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
        )));
    };
    if !is_string(fields[pos].data_type()) {
        return Err(Error::data(format!(
            "text column {text:?} in {} has type {}, expected a string",
            first.path,
            fields[pos].data_type()
        )));
    }
    if let Some(id) = id {
        if !fields.iter().any(|f| f.name() == id) {
            let keys: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            return Err(Error::data(format!(
                "id column {id:?} not found in {where_} (columns: {}); remove input.id to use \"<file>:<line>\" ids",
                keys.join(", ")
            )));
        }
    }
    Ok(InputSchema { schema: Schema::new(fields), columns })
}

/// Strips a UTF-8 byte-order mark.
pub fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

/// Every top-level key of every JSON object line of every file, in first-seen
/// order (files in order), with the kinds of values seen. Files are scanned in
/// parallel; lines that are not objects are skipped (the reader quarantines them).
async fn scan_keys(
    store: &Arc<dyn ObjectStore>,
    store_url: &str,
    files: &[InputFile],
    max_document_bytes: u64,
) -> Result<Vec<(String, Seen)>, Error> {
    use futures::StreamExt;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let started = std::time::Instant::now();
    if total > 64 << 20 {
        tracing::info!(
            files = files.len(),
            mib = total >> 20,
            "reading every input line's keys for the schema (declare [input.schema] with extra_columns = \"drop\" to skip this pass)"
        );
    }
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 16);
    let handle = tokio::runtime::Handle::current();
    // Owned futures (no borrowing closure in the stream), so the caller's future stays
    // Send. Each is an async block, so its blocking task starts only when `buffered`
    // polls it: at most `parallel` files are open at once.
    let scans: Vec<_> = files
        .iter()
        .cloned()
        .map(|file| {
            let (store, store_url, handle) = (Arc::clone(store), store_url.to_string(), handle.clone());
            async move {
                tokio::task::spawn_blocking(move || scan_file(&store, &store_url, &file, handle, max_document_bytes))
                    .await
                    .map_err(|e| Error::data(format!("schema scan task failed: {e}")))?
            }
        })
        .collect();
    let per_file: Vec<Result<Vec<(String, Seen)>, Error>> =
        futures::stream::iter(scans).buffered(parallel).collect().await;
    let mut order: Vec<(String, Seen)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for keys in per_file {
        for (k, seen) in keys? {
            match index.get(&k) {
                Some(&i) => order[i].1 = order[i].1.merge(seen),
                None => {
                    index.insert(k.clone(), order.len());
                    order.push((k, seen));
                }
            }
        }
    }
    if total > 64 << 20 {
        tracing::info!(columns = order.len(), secs = started.elapsed().as_secs_f32(), "input schema read");
    }
    Ok(order)
}

fn scan_file(
    store: &Arc<dyn ObjectStore>,
    store_url: &str,
    file: &InputFile,
    handle: tokio::runtime::Handle,
    max_document_bytes: u64,
) -> Result<Vec<(String, Seen)>, Error> {
    let shown = crate::store::shown(store_url, &file.path);
    let raw = crate::read::open_input(store_url, store, file, 0, u64::MAX, &handle, &shown)?;
    let mut reader = std::io::BufReader::with_capacity(8 << 20, raw);
    {
        use std::io::BufRead;
        let head = reader.fill_buf().map_err(|e| Error::io(format!("error reading {shown}"), e))?;
        if let Some(actual) = crate::read::sniff(head) {
            return Err(Error::data(format!(
                "{shown}: the file is {actual}, not jsonl; set input.format or rename the file"
            )));
        }
    }
    let mut order: Vec<(String, Seen)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let cap = usize::try_from(max_document_bytes).unwrap_or(usize::MAX);
        let got = crate::read::read_line_capped(&mut reader, &mut line, cap)
            .map_err(|e| Error::io(format!("error reading {shown}"), e))?;
        if got.consumed == 0 {
            break;
        }
        let body = if first { strip_bom(&line) } else { &line[..] };
        first = false;
        if got.too_large {
            continue;
        }
        let Ok(members) = scan(body) else { continue };
        for (k, v) in members.0 {
            let c = Class::of(v);
            match index.get(k.as_ref()) {
                Some(&i) => order[i].1 = order[i].1.widen(c),
                None => {
                    index.insert(k.to_string(), order.len());
                    order.push((k.into_owned(), Seen::Null.widen(c)));
                }
            }
        }
    }
    Ok(order)
}

/// The union of the files' Parquet schemas (a column missing from a file is null
/// there); a column whose type differs between files is an error naming both.
async fn parquet_union(store: &Arc<dyn ObjectStore>, files: &[InputFile]) -> Result<Schema, Error> {
    use futures::StreamExt;
    let reads: Vec<_> = files
        .iter()
        .map(|f| {
            let (store, path, size) = (Arc::clone(store), f.path.clone(), f.size);
            async move {
                #[allow(deprecated)]
                let reader = ParquetObjectReader::new(store, crate::store::object_path(&path)).with_file_size(size);
                let builder = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| Error::parquet(format!("{path}: cannot read the Parquet footer"), e))?;
                Ok::<_, Error>((path, Arc::clone(builder.schema())))
            }
        })
        .collect();
    let footers: Vec<Result<(String, SchemaRef), Error>> = futures::stream::iter(reads).buffered(16).collect().await;
    let mut fields: Vec<(Field, String)> = Vec::new();
    for footer in footers {
        let (path, schema) = footer?;
        for f in schema.fields() {
            match fields.iter().find(|(g, _)| g.name() == f.name()) {
                Some((g, from)) if g.data_type() != f.data_type() => {
                    return Err(Error::data(format!(
                        "Parquet column {:?} is {} in {from} but {} in {path}; the files must agree",
                        f.name(),
                        g.data_type(),
                        f.data_type()
                    )))
                }
                Some(_) => {}
                None => fields.push((f.as_ref().clone().with_nullable(true), path.clone())),
            }
        }
    }
    Ok(Schema::new(fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>()))
}

/// The first `n` bytes of an object: a range request, or (servers without
/// range support) the start of a whole-object stream.
async fn get_prefix(store: &Arc<dyn ObjectStore>, path: &Path, n: u64, size: u64) -> object_store::Result<Vec<u8>> {
    use futures::StreamExt;
    let range = (n < size).then(|| (0..n).into());
    let got = match store.get_opts(path, object_store::GetOptions { range, ..Default::default() }).await {
        Err(object_store::Error::NotSupported { .. }) => store.get_opts(path, Default::default()).await?,
        other => other?,
    };
    let mut stream = got.into_stream();
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        match stream.next().await {
            Some(chunk) => out.extend_from_slice(&chunk?),
            None => break,
        }
    }
    out.truncate(n as usize);
    Ok(out)
}

async fn read_head(store: &Arc<dyn ObjectStore>, file: &InputFile) -> Result<Vec<u8>, Error> {
    let (_, compression) = Compression::strip(&file.path);
    let path = crate::store::object_path(&file.path);
    let n = match compression {
        Compression::None => INFER_BYTES.min(file.size),
        _ => (INFER_BYTES / 4).min(file.size),
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let bytes = get_prefix(store, &path, n, file.size).await.map_err(|e| match crate::policy::denial(&e) {
        Some(m) => Error::AccessDenied(m),
        None => Error::Store(crate::store::StoreError::Request {
            op: "GET".into(),
            message: crate::store::redact(&format!("cannot read input {}: {e}", file.path)),
        }),
    })?;
    let mut out = Vec::new();
    let limited = |r: &mut dyn Read, out: &mut Vec<u8>| {
        // A truncated compressed stream ends with an error: keep what decoded.
        let _ = r.take(INFER_BYTES).read_to_end(out);
    };
    match compression {
        Compression::None => out = bytes,
        Compression::Gzip => limited(&mut flate2::read::MultiGzDecoder::new(Cursor::new(bytes)), &mut out),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(Cursor::new(bytes))
                .map_err(|e| Error::io(format!("{}: cannot start zstd decoding", file.path), e))?;
            limited(&mut d, &mut out)
        }
    }
    // Drop a partial last line.
    if (out.len() as u64) < file.size || compression != Compression::None {
        if let Some(nl) = out.iter().rposition(|b| *b == b'\n') {
            out.truncate(nl + 1);
        }
    }
    Ok(out)
}

/// Name given to an input column that clashes with an output column (`id`, `text`).
pub fn renamed_input_column(name: &str) -> String {
    format!("input_{name}")
}

/// The layout of rows leaving the reader: `id`, `text`, then the other input
/// columns in input order. An input column named `id` or `text` that is not the
/// configured id/text column is kept as `input_id` / `input_text`.
pub fn output_schema(input: &Schema, text: &str, id: Option<&str>) -> SchemaRef {
    let mut fields = vec![Field::new("id", DataType::Utf8, false), Field::new("text", DataType::Utf8, false)];
    for f in input.fields() {
        let name = f.name().as_str();
        if name == text || Some(name) == id {
            continue;
        }
        let out_name = if name == "id" || name == "text" { renamed_input_column(name) } else { name.to_string() };
        fields.push(Field::new(out_name, f.data_type().clone(), true));
    }
    Arc::new(Schema::new(fields))
}

/// Serialises a schema (Arrow IPC) for plan codecs.
pub fn schema_to_bytes(schema: &Schema) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, schema).expect("schema IPC");
        w.finish().expect("schema IPC");
    }
    buf
}

/// Inverse of [`schema_to_bytes`].
pub fn schema_from_bytes(bytes: &[u8]) -> Result<Schema, Error> {
    let r = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| Error::arrow("bad schema bytes", e))?;
    Ok(r.schema().as_ref().clone())
}
