//! Property tests with shrinking (proptest) over the readers and the shard
//! writers: arbitrary bytes never panic, every non-blank line is a row or a
//! quarantined row, reading a file in any byte ranges gives the rows of reading
//! it whole, and every string survives a shard write and read back unchanged.
//!
//! CI runs `DSPROC_FUZZ_CASES` cases (default 48, seconds); `bash benches/fuzz.sh`
//! runs many more. A failure is shrunk and saved under `proptest-regressions/`
//! (committed: it reruns first every time).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use proptest::prelude::*;

use crate::format::{InputFormat, OutputFormat};
use crate::jsonscan::ExtraColumns;
use crate::listing::InputFile;
use crate::quarantine::QuarantineRecord;
use crate::read::{OnError, RangeReader, ReadSpec};
use crate::schema::{infer_input_schema, output_schema, SchemaOptions};

fn cases() -> u32 {
    std::env::var("DSPROC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One generated line (without its end of line).
fn line() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![any::<String>(), "[a-z ]{0,20}", Just(String::new())];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|v| format!("{v:?}")),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
        Just("null".to_string()),
        Just("true".to_string()),
        Just(r#"{"a": [1, {"b": null}]}"#.to_string()),
        Just("[1, 2]".to_string()),
    ];
    prop_oneof![
        4 => (text, "[a-d]{1,2}", value).prop_map(|(t, k, v)| {
            format!("{{\"text\": {}, \"{k}\": {v}}}", serde_json::to_string(&t).unwrap()).into_bytes()
        }),
        1 => proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40),
        1 => "[ \t\r]{0,3}".prop_map(String::into_bytes),
        1 => Just(br#"{"text": null}"#.to_vec()),
        1 => Just(br#"{"text": 7, "a": 1}"#.to_vec()),
        1 => Just(br#"{"text": "dup", "text": "twice"}"#.to_vec()),
        1 => (0usize..300).prop_map(|n| format!("{{\"text\": \"{}\"}}", "x".repeat(n)).into_bytes()),
        1 => Just(br#"{"text": "after"} trailing"#.to_vec()),
    ]
}

/// A whole file: lines, their ends (`\n` or `\r\n`), maybe a BOM, maybe no final newline.
fn file() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec((line(), any::<bool>()), 0..40), any::<bool>(), any::<bool>()).prop_map(
        |(lines, bom, last_nl)| {
            let mut out = Vec::new();
            if bom {
                out.extend_from_slice(b"\xEF\xBB\xBF");
            }
            let n = lines.len();
            for (i, (l, crlf)) in lines.into_iter().enumerate() {
                out.extend_from_slice(&l);
                if i + 1 < n || last_nl {
                    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
            }
            out
        },
    )
}

/// Lines that must come out as a row or a quarantined row.
fn non_blank_lines(bytes: &[u8]) -> u64 {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(|b| b.is_ascii_whitespace())).count() as u64
}

struct Read {
    /// id → text.
    rows: BTreeMap<String, String>,
    /// (line, reason) of quarantined rows.
    quarantined: Vec<(u64, String)>,
}

/// Reads `path` as JSONL in the byte ranges that `cuts` make; None when the
/// input has no usable schema (no object has a text key: a clean spec error).
fn read_jsonl(path: &std::path::Path, size: u64, cuts: &[u64], max_doc: u64) -> Option<Read> {
    let rt = runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let file = InputFile {
        path: path.to_str().unwrap().trim_start_matches('/').to_string(),
        rel: "f.jsonl".into(),
        size,
        version: String::new(),
    };
    let opts = SchemaOptions {
        text: "text".into(),
        id: None,
        declared: Vec::new(),
        extra_columns: ExtraColumns::Keep,
        max_document_bytes: max_doc,
    };
    let files = vec![file.clone()];
    let schema = rt.block_on(infer_input_schema(&store, "file://", &files, InputFormat::Jsonl, &opts)).ok()?;
    let spec = ReadSpec {
        store_url: "file://".into(),
        storage: Default::default(),
        files,
        format: InputFormat::Jsonl,
        text: "text".into(),
        id: None,
        on_error: OnError::Quarantine,
        quarantine_dir: None,
        columns: schema.columns.clone(),
        extra_columns: ExtraColumns::Keep,
        max_document_bytes: max_doc,
    };
    let input_schema = Arc::new(schema.schema);
    let out_schema = output_schema(&input_schema, "text", None);
    let quarantined: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let sink = |_part: u32, rows: &[QuarantineRecord]| {
        quarantined.lock().unwrap().extend(rows.iter().map(|r| (r.line, r.reason.clone())));
        Ok(())
    };
    let reader = RangeReader {
        spec: &spec,
        store: Arc::clone(&store),
        handle: rt.handle().clone(),
        input_schema: Arc::clone(&input_schema),
        output_schema: Arc::clone(&out_schema),
        file: &spec.files[0],
        sink: &sink,
    };
    let mut bounds: Vec<u64> = cuts.iter().map(|c| c % (size + 1)).collect();
    bounds.extend([0, size]);
    bounds.sort();
    bounds.dedup();
    let mut rows = BTreeMap::new();
    let mut next_line = None;
    for w in bounds.windows(2) {
        let out = reader
            .read(w[0]..w[1], next_line, &mut |b: RecordBatch| {
                let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                let texts = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                for i in 0..b.num_rows() {
                    assert!(rows.insert(ids.value(i).to_string(), texts.value(i).to_string()).is_none(), "row twice");
                }
                Ok(())
            })
            .unwrap();
        next_line = Some(out.next_line);
    }
    if bounds.len() == 1 {
        // An empty file: one empty range.
        reader.read(0..0, None, &mut |_| Ok(())).unwrap();
    }
    let mut quarantined = quarantined.into_inner().unwrap();
    quarantined.sort();
    Some(Read { rows, quarantined })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn jsonl_reader_accounts_for_every_line_in_any_ranges(
        bytes in file(),
        cuts in proptest::collection::vec(any::<u64>(), 0..5),
        small_cap in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
        let size = bytes.len() as u64;
        let max_doc = if small_cap { 128 } else { 256 << 20 };
        let Some(whole) = read_jsonl(&path, size, &[], max_doc) else { return Ok(()) };
        // Every non-blank line is a row or a quarantined row.
        prop_assert_eq!(whole.rows.len() as u64 + whole.quarantined.len() as u64, non_blank_lines(&bytes));
        // A kept row's text is the line's text value, unchanged.
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        for (id, text) in &whole.rows {
            let n: usize = id.rsplit(':').next().unwrap().parse().unwrap();
            let raw = lines[n - 1].strip_suffix(b"\r").unwrap_or(lines[n - 1]);
            let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
            prop_assert_eq!(v["text"].as_str().unwrap(), text.as_str());
            prop_assert!(text.len() as u64 <= max_doc);
        }
        // Any split into ranges reads the same rows and quarantines the same lines.
        let split = read_jsonl(&path, size, &cuts, max_doc).unwrap();
        prop_assert_eq!(&whole.rows, &split.rows);
        prop_assert_eq!(&whole.quarantined, &split.quarantined);
    }

    #[test]
    fn shard_writers_keep_every_string(
        rows in proptest::collection::vec((any::<String>(), any::<String>()), 1..30),
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
            ],
        )
        .unwrap();
        for format in [OutputFormat::Parquet, OutputFormat::Jsonl] {
            let path = dir.path().join(format!("s.{}", format.extension()));
            let target = crate::Location::parse(path.to_str().unwrap(), None).unwrap();
            let opts = crate::shards::ShardOptions { token_dtype: None, size_limit: 1 << 20, pack: None, mds_zstd: None };
            let mut w = crate::shards::ShardFileWriter::create(&target, format, &schema, opts, rt.handle()).unwrap();
            w.write(&batch).unwrap();
            let written = w.finish().unwrap();
            prop_assert_eq!(written.rows, rows.len() as u64);
            let back: Vec<(String, String)> = match format {
                OutputFormat::Parquet => {
                    let f = std::fs::File::open(&path).unwrap();
                    let r = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                        .unwrap()
                        .build()
                        .unwrap();
                    let mut v = Vec::new();
                    for b in r {
                        let b = b.unwrap();
                        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                        let texts = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                        v.extend((0..b.num_rows()).map(|i| (ids.value(i).to_string(), texts.value(i).to_string())));
                    }
                    v
                }
                _ => {
                    let text = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
                    text.split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                            (v["id"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string())
                        })
                        .collect()
                }
            };
            prop_assert_eq!(&back, &rows, "{:?}", format);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Arbitrary bytes as CSV: a clean error (bad header) or every record is a row
    /// or a quarantined row — never a panic.
    #[test]
    fn csv_reader_never_panics(body in proptest::collection::vec(
        prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), any::<u8>(), Just(b'a')], 0..300)
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let mut bytes = b"text,b\n".to_vec();
        bytes.extend_from_slice(&body);
        std::fs::write(&path, &bytes).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let file = InputFile {
            path: path.to_str().unwrap().trim_start_matches('/').to_string(),
            rel: "f.csv".into(),
            size: bytes.len() as u64,
            version: String::new(),
        };
        let opts = SchemaOptions { text: "text".into(), max_document_bytes: 64, ..Default::default() };
        let files = vec![file];
        let schema = rt.block_on(infer_input_schema(&store, "file://", &files, InputFormat::Csv, &opts)).unwrap();
        let spec = ReadSpec {
            store_url: "file://".into(),
            storage: Default::default(),
            files,
            format: InputFormat::Csv,
            text: "text".into(),
            id: None,
            on_error: OnError::Quarantine,
            quarantine_dir: None,
            columns: Vec::new(),
            extra_columns: ExtraColumns::Keep,
            max_document_bytes: 64,
        };
        let input_schema = Arc::new(schema.schema);
        let sink = |_: u32, _: &[QuarantineRecord]| Ok(());
        let reader = RangeReader {
            spec: &spec,
            store,
            handle: rt.handle().clone(),
            input_schema: Arc::clone(&input_schema),
            output_schema: output_schema(&input_schema, "text", None),
            file: &spec.files[0],
            sink: &sink,
        };
        let mut rows = 0u64;
        match reader.read(0..bytes.len() as u64, None, &mut |b| {
            rows += b.num_rows() as u64;
            Ok(())
        }) {
            Ok(out) => prop_assert_eq!(out.rows, rows),
            // A clean refusal (binary content) names the file.
            Err(e) => prop_assert!(e.to_string().contains("f.csv"), "{}", e),
        }
    }
}
