//! Input schema discovery (before any data moves) and the output row layout.

use std::io::{Cursor, Read};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::reader::infer_json_schema_from_iterator;
#[allow(deprecated)]
// ParquetObjectReader: still the simplest object_store bridge in parquet 59
use datafusion::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::Error;
use crate::format::{Compression, InputFormat};
use crate::listing::InputFile;

/// Lines sampled from the first JSONL file to infer its schema.
const INFER_LINES: usize = 1000;
/// Bytes read from the first file for sampling.
const INFER_BYTES: u64 = 4 << 20;

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Infers the schema of the input files (all columns, as stored).
pub async fn infer_input_schema(
    store: &Arc<dyn ObjectStore>,
    files: &[InputFile],
    format: InputFormat,
    text: &str,
    id: Option<&str>,
) -> Result<Schema, Error> {
    let first = &files[0];
    let schema = match format {
        InputFormat::Text => Schema::new(vec![Field::new(text, DataType::Utf8, true)]),
        InputFormat::Jsonl => {
            let head = read_head(store, first).await?;
            let mut values = Vec::new();
            for line in head.split(|b| *b == b'\n').take(INFER_LINES) {
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(line) {
                    values.push(v);
                }
            }
            if values.is_empty() && first.size > 0 {
                return Err(Error::data(format!(
                    "{}: no valid JSON object in the first {INFER_LINES} lines; is this JSONL?",
                    first.path
                )));
            }
            let inferred = infer_json_schema_from_iterator(values.iter().map(Ok))
                .map_err(|e| Error::arrow(format!("{}: cannot infer a schema", first.path), e))?;
            if values.is_empty() {
                // Empty file: only the text (and id) columns are known.
                let mut fields = vec![Field::new(text, DataType::Utf8, true)];
                if let Some(id) = id {
                    fields.push(Field::new(id, DataType::Utf8, true));
                }
                Schema::new(fields)
            } else {
                inferred
            }
        }
        InputFormat::Csv => {
            let head = read_head(store, first).await?;
            let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(head.as_slice());
            let headers =
                rdr.headers().map_err(|e| Error::csv(format!("{}: cannot read the CSV header", first.path), e))?;
            Schema::new(headers.iter().map(|h| Field::new(h, DataType::Utf8, true)).collect::<Vec<_>>())
        }
        InputFormat::Parquet => {
            #[allow(deprecated)]
            let reader = ParquetObjectReader::new(Arc::clone(store), crate::store::object_path(&first.path))
                .with_file_size(first.size);
            let builder = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(|e| Error::parquet(format!("{}: cannot read the Parquet footer", first.path), e))?;
            builder.schema().as_ref().clone()
        }
    };
    // The text column must exist and be a string; JSON inference is forced to Utf8.
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let Some(pos) = fields.iter().position(|f| f.name() == text) else {
        let keys: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return Err(Error::data(format!(
            "text column {text:?} not found in {} (columns: {}); set input.text to one of them",
            first.path,
            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
        )));
    };
    match format {
        InputFormat::Jsonl => fields[pos] = Field::new(text, DataType::Utf8, true),
        _ if !is_string(fields[pos].data_type()) => {
            return Err(Error::data(format!(
                "text column {text:?} in {} has type {}, expected a string",
                first.path,
                fields[pos].data_type()
            )))
        }
        _ => {}
    }
    if let Some(id) = id {
        if !fields.iter().any(|f| f.name() == id) {
            let keys: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            return Err(Error::data(format!(
                "id column {id:?} not found in {} (columns: {}); remove input.id to use \"<file>:<line>\" ids",
                first.path,
                keys.join(", ")
            )));
        }
    }
    Ok(Schema::new(fields))
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
    let bytes = get_prefix(store, &path, n, file.size).await.map_err(|e| {
        Error::Store(crate::store::StoreError::Request {
            op: "GET".into(),
            message: crate::store::redact(&format!("cannot read input {}: {e}", file.path)),
        })
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
