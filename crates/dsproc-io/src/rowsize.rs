//! The typical size of one input row, measured on a sample before the job runs.
//!
//! DataFusion joins small batches into batches of `batch_size` rows wherever data
//! moves between partitions (RepartitionExec's coalescer counts rows, not bytes),
//! so a corpus of 12 MB documents under the default 256 rows becomes 3 GB
//! batches in front of the shard sort. The driver sizes the engine's batches from
//! this sample instead: about [`DEFAULT_BATCH_BYTES`] per batch. A sample only tunes
//! memory and speed, never which rows are read.

use std::io::Read;
use std::sync::Arc;

use object_store::ObjectStore;

use dsproc_common::config::{DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS};

use crate::format::InputFormat;
use crate::listing::InputFile;
use crate::Error;

/// Files sampled, and the bytes read from each at most.
const SAMPLE_FILES: usize = 3;
const SAMPLE_BYTES: u64 = 64 << 20;
/// A file's sample stops once it holds this many rows and bytes.
const ENOUGH_ROWS: u64 = 256;
const ENOUGH_BYTES: u64 = 1 << 20;

/// The mean bytes per row of a sample of `files` (`None` for no files).
pub async fn typical_row_bytes(
    store_url: &str,
    store: &Arc<dyn ObjectStore>,
    files: &[InputFile],
    format: InputFormat,
) -> Result<Option<u64>, Error> {
    let sample: Vec<InputFile> = files.iter().filter(|f| f.size > 0).take(SAMPLE_FILES).cloned().collect();
    if sample.is_empty() {
        return Ok(None);
    }
    let (mut bytes, mut rows) = (0u64, 0u64);
    for f in sample {
        let (b, r) = match format {
            // One document per file.
            InputFormat::Text => (f.size, 1),
            InputFormat::Parquet => parquet_sample(store, &f).await?,
            InputFormat::Jsonl | InputFormat::Csv => {
                let (store, store_url, handle) =
                    (Arc::clone(store), store_url.to_string(), tokio::runtime::Handle::current());
                tokio::task::spawn_blocking(move || line_sample(&store_url, &store, &f, &handle))
                    .await
                    .map_err(|e| Error::data(format!("row-size sample failed: {e}")))??
            }
        };
        bytes += b;
        rows += r;
    }
    Ok(Some((bytes / rows.max(1)).max(1)))
}

/// Engine batch rows for rows of `row_bytes`: about [`DEFAULT_BATCH_BYTES`] a batch,
/// between 1 and [`DEFAULT_BATCH_ROWS`].
pub fn batch_rows_for(row_bytes: Option<u64>) -> usize {
    match row_bytes {
        None => DEFAULT_BATCH_ROWS,
        Some(b) => (DEFAULT_BATCH_BYTES as u64 / b.max(1)).clamp(1, DEFAULT_BATCH_ROWS as u64) as usize,
    }
}

/// Bytes and line ends in the first (decompressed) bytes of a file; a file whose
/// sample holds no line end counts as one row of all the bytes read.
fn line_sample(
    store_url: &str,
    store: &Arc<dyn ObjectStore>,
    file: &InputFile,
    handle: &tokio::runtime::Handle,
) -> Result<(u64, u64), Error> {
    let shown = crate::store::shown(store_url, &file.path);
    let mut r = crate::read::open_input(store_url, store, file, 0, SAMPLE_BYTES.min(file.size), handle, &shown)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut rows, mut last) = (0u64, 0u64, b'\n');
    while bytes < SAMPLE_BYTES && !(rows >= ENOUGH_ROWS && bytes >= ENOUGH_BYTES) {
        let n = r.read(&mut buf).map_err(|e| Error::io(format!("error reading {shown}"), e))?;
        if n == 0 {
            // The whole file: its last line may lack a line end.
            if last != b'\n' {
                rows += 1;
            }
            break;
        }
        bytes += n as u64;
        rows += buf[..n].iter().filter(|&&c| c == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok((bytes, rows.max(1)))
}

/// Uncompressed bytes and rows of a Parquet file, from its footer.
// ParquetObjectReader: still the simplest object_store bridge in parquet 59
#[allow(deprecated)]
async fn parquet_sample(store: &Arc<dyn ObjectStore>, file: &InputFile) -> Result<(u64, u64), Error> {
    use datafusion::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
    #[allow(deprecated)]
    let reader =
        ParquetObjectReader::new(Arc::clone(store), crate::store::object_path(&file.path)).with_file_size(file.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::parquet(format!("{}: cannot read the Parquet footer", file.path), e))?;
    Ok(footer_bytes_and_rows(builder.metadata()))
}

/// Uncompressed bytes (of every row group) and rows (at least 1) of a Parquet file.
pub(crate) fn footer_bytes_and_rows(md: &datafusion::parquet::file::metadata::ParquetMetaData) -> (u64, u64) {
    let rows = md.file_metadata().num_rows().max(1) as u64;
    let bytes: u64 = md.row_groups().iter().map(|rg| rg.total_byte_size().max(0) as u64).sum();
    (bytes, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path, name: &str, body: &[u8]) -> InputFile {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        InputFile {
            path: p.to_str().unwrap().trim_start_matches('/').to_string(),
            rel: name.into(),
            size: body.len() as u64,
            version: String::new(),
        }
    }

    #[tokio::test]
    async fn batches_hold_about_16_mib_of_sampled_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        // small rows: the default batch size
        let small = file(dir.path(), "s.jsonl", "{\"text\": \"abc\"}\n".repeat(1000).as_bytes());
        let b = typical_row_bytes("file://", &store, &[small], InputFormat::Jsonl).await.unwrap();
        assert_eq!(b, Some(16));
        assert_eq!(batch_rows_for(b), DEFAULT_BATCH_ROWS);
        // 3 rows of 4 MiB (the last without a line end): 4 rows a batch
        let row = format!("{{\"text\": \"{}\"}}", "x".repeat((4 << 20) - 13));
        let big = file(dir.path(), "b.jsonl", format!("{row}\n{row}\n{row}").as_bytes());
        let b = typical_row_bytes("file://", &store, &[big], InputFormat::Jsonl).await.unwrap().unwrap();
        assert!((4 << 20) - 8 < b && b <= (4 << 20) + 1, "{b}");
        assert_eq!(batch_rows_for(Some(b)), 4);
        // one document per text file
        let t = file(dir.path(), "t.txt", &vec![b'a'; 40 << 20]);
        assert_eq!(batch_rows_for(typical_row_bytes("file://", &store, &[t], InputFormat::Text).await.unwrap()), 1);
        assert_eq!(typical_row_bytes("file://", &store, &[], InputFormat::Jsonl).await.unwrap(), None);
        assert_eq!(batch_rows_for(None), DEFAULT_BATCH_ROWS);
    }
}
