//! The `embedding_drift` check: a seeded sample of the new version and of the
//! baseline embedded with a sentence-embedding model (dsproc-embed), compared by
//! dsproc-embed's drift statistics. The new sample's embeddings are written into the
//! version (`vNNNNN/_embeddings/check-NNN.parquet`, columns `id` and `vector`), and
//! a baseline whose stored embeddings were made with the same model, sample, seed,
//! text column and `max_tokens` is not embedded again.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema};
use datafusion::prelude::SessionContext;
use serde_json::{json, Value};
use sha2::Digest;

use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::checks::DriftMethod;
use dsproc_job::manifest::Manifest;

/// Where a version keeps its embeddings, under its prefix.
pub const EMBEDDINGS_DIR: &str = "_embeddings";

/// The check's settings (from `CheckSpec::EmbeddingDrift`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub sample: usize,
    pub seed: u64,
    pub max_tokens: usize,
    pub model: Option<String>,
    pub text: String,
    pub method: DriftMethod,
    pub max_auc: f64,
    pub max_mmd: f64,
    pub max_mean_distance: f64,
}

/// What the check found: passed, its value (the manifest's entry) and the side file
/// it wrote into the version.
pub struct Outcome {
    pub passed: bool,
    pub value: Value,
    pub side_file: Option<String>,
}

type Embeddings = (Vec<String>, Vec<Vec<f32>>);

/// The sample of table `table`: `sample` rows ordered by md5(id / seed) (then id).
async fn sample_rows(ctx: &SessionContext, table: &str, s: &Settings) -> Result<(Vec<String>, Vec<String>), String> {
    let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let sql = format!(
        "SELECT id, t FROM (SELECT arrow_cast(id, 'Utf8') AS id, arrow_cast({}, 'Utf8') AS t FROM {table}) \
         ORDER BY md5(concat(id, '/{}')), id LIMIT {}",
        q(&s.text),
        s.seed,
        s.sample
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| format!("sampling {table}: {e}"))?
        .collect()
        .await
        .map_err(|e| format!("sampling {table}: {e}"))?;
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    for b in &batches {
        let (Some(i), Some(t)) =
            (b.column(0).as_any().downcast_ref::<StringArray>(), b.column(1).as_any().downcast_ref::<StringArray>())
        else {
            return Err(format!("internal: sampling {table}: unexpected column types"));
        };
        for r in 0..b.num_rows() {
            ids.push(i.value(r).to_string());
            // a null text embeds as the empty text
            texts.push(if t.is_null(r) { String::new() } else { t.value(r).to_string() });
        }
    }
    Ok((ids, texts))
}

/// The Parquet file of a sample's embeddings: `id` (string), `vector`
/// (fixed-size list of `dim` float32), in sample order.
fn to_parquet(ids: &[String], vectors: &[Vec<f32>], dim: usize) -> Result<Vec<u8>, String> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("vector", DataType::FixedSizeList(Arc::clone(&item), dim as i32), false),
    ]));
    let values = Float32Array::from(vectors.iter().flatten().copied().collect::<Vec<f32>>());
    let list = FixedSizeListArray::try_new(item, dim as i32, Arc::new(values), None).map_err(|e| e.to_string())?;
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from_iter_values(ids)) as ArrayRef, Arc::new(list) as ArrayRef],
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let props = datafusion::parquet::file::properties::WriterProperties::builder()
        .set_compression(datafusion::parquet::basic::Compression::ZSTD(Default::default()))
        .set_created_by(format!("dsproc {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut w =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    w.write(&batch).map_err(|e| e.to_string())?;
    w.close().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Reads a file [`to_parquet`] wrote.
pub fn from_parquet(bytes: bytes::Bytes) -> Result<Embeddings, String> {
    let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    let (mut ids, mut vectors) = (Vec::new(), Vec::new());
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        let (Some(i), Some(v)) = (
            b.column_by_name("id").and_then(|c| c.as_any().downcast_ref::<StringArray>()),
            b.column_by_name("vector").and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>()),
        ) else {
            return Err("not an embeddings file (columns id: string, vector: fixed-size list of float32)".into());
        };
        for r in 0..b.num_rows() {
            ids.push(i.value(r).to_string());
            let row = v.value(r);
            let Some(f) = row.as_primitive_opt::<Float32Type>() else {
                return Err("vector is not a list of float32".into());
            };
            vectors.push(f.values().to_vec());
        }
    }
    Ok((ids, vectors))
}

/// What identifies a sample's embeddings (the baseline's stored ones are reused
/// when all of it matches).
fn identity(s: &Settings, model_sha256: &str) -> Value {
    json!({"model_sha256": model_sha256, "sample": s.sample, "seed": s.seed, "max_tokens": s.max_tokens, "text": s.text})
}

/// The baseline's stored embeddings, when an `embedding_drift` check of the
/// baseline version wrote them with the same identity (and the file still has the
/// recorded sha256).
async fn stored(out: &Location, base: &Manifest, id: &Value) -> Option<(Embeddings, String)> {
    for c in base.checks.iter().filter(|c| c["name"] == "embedding_drift") {
        let e = &c["embeddings"];
        let Some(path) = e["path"].as_str() else { continue };
        let same = id.as_object()?.iter().all(|(k, v)| &e[k] == v);
        if !same || !base.side_files.iter().any(|f| f == path) {
            continue;
        }
        let Ok(Some(bytes)) = out.join(path).get_opt().await else { continue };
        if e["sha256"].as_str() != Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()) {
            tracing::warn!(
                path,
                "embedding_drift: stored baseline embeddings differ from their recorded sha256; embedding again"
            );
            continue;
        }
        match from_parquet(bytes) {
            Ok(v) => return Some((v, path.to_string())),
            Err(error) => {
                tracing::warn!(path, %error, "embedding_drift: unreadable stored embeddings; embedding again")
            }
        }
    }
    None
}

async fn embed(
    model: &Arc<dsproc_embed::Embedder>,
    texts: Vec<String>,
    max_tokens: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let m = Arc::clone(model);
    tokio::task::spawn_blocking(move || m.embed(&texts, max_tokens).map_err(|e| e.to_string()))
        .await
        .map_err(|e| format!("internal: embedding task: {e}"))?
}

/// Runs check number `index` (0-based) on version `m` against `baseline` (tables
/// `output` and `baseline` registered in `ctx`).
pub async fn evaluate(
    ctx: &SessionContext,
    index: usize,
    s: &Settings,
    out: &Location,
    m: &Manifest,
    baseline: Option<&Manifest>,
) -> Result<Outcome, DsprocError> {
    let dir = dsproc_job::checks::embedding_model_dir(s.model.as_deref());
    let shown_dir = dir.display().to_string();
    let model = tokio::task::spawn_blocking(move || dsproc_embed::Embedder::load(&dir))
        .await
        .map_err(|e| DsprocError::job(format!("internal: model loading task: {e}")))?
        .map_err(|e| {
            DsprocError::usage(format!(
                "check {} (embedding_drift): model: {e} (fetch all-MiniLM-L6-v2 with scripts/fetch-models.sh, or set model = DIR)",
                index + 1
            ))
        })?;
    let model = Arc::new(model);
    let fail = |e: String| Outcome { passed: false, value: json!({"error": e}), side_file: None };
    let started = std::time::Instant::now();
    let (ids, texts) = match sample_rows(ctx, "output", s).await {
        Ok(x) => x,
        Err(e) => return Ok(fail(e)),
    };
    let vectors = match embed(&model, texts, s.max_tokens).await {
        Ok(v) => v,
        Err(e) => return Ok(fail(e)),
    };
    let embed_s = started.elapsed().as_secs_f64();
    let id = identity(s, model.sha256());
    // the new sample's embeddings, into the version
    let rel =
        format!("{}/{EMBEDDINGS_DIR}/check-{:03}.parquet", dsproc_common::config::version_dir(m.version), index + 1);
    let body =
        to_parquet(&ids, &vectors, model.dim()).map_err(|e| DsprocError::job(format!("embedding_drift: {e}")))?;
    let mut embeddings = id.clone();
    embeddings["path"] = json!(rel);
    embeddings["rows"] = json!(ids.len());
    embeddings["dim"] = json!(model.dim());
    embeddings["sha256"] = json!(hex::encode(sha2::Sha256::digest(&body)));
    out.join(&rel).put(body).await.map_err(|e| DsprocError::job(format!("embedding_drift: writing {rel}: {e}")))?;
    let model_json = json!({"dir": shown_dir, "sha256": model.sha256()});
    let timing = |base_s: Option<f64>| json!({"new_docs_per_s": ids.len() as f64 / embed_s.max(1e-9), "new_s": embed_s, "baseline_s": base_s});

    let Some(base) = baseline else {
        return Ok(Outcome {
            passed: true,
            value: json!({"skipped": "no baseline version to compare with", "embeddings": embeddings, "model": model_json, "elapsed": timing(None)}),
            side_file: Some(rel),
        });
    };
    let base_started = std::time::Instant::now();
    let (base_vectors, base_source) = match stored(out, base, &id).await {
        Some(((_, v), path)) => (v, json!({"reused": path})),
        None => {
            let (_, texts) = match sample_rows(ctx, "baseline", s).await {
                Ok(x) => x,
                Err(e) => return Ok(Outcome { side_file: Some(rel), ..fail(e) }),
            };
            match embed(&model, texts, s.max_tokens).await {
                Ok(v) => (v, json!("embedded")),
                Err(e) => return Ok(Outcome { side_file: Some(rel), ..fail(e) }),
            }
        }
    };
    let base_s = base_started.elapsed().as_secs_f64();
    let opts = dsproc_embed::drift::Options { seed: s.seed, ..Default::default() };
    let (new_n, base_n) = (vectors.len(), base_vectors.len());
    let d = match tokio::task::spawn_blocking(move || dsproc_embed::drift::compare(&vectors, &base_vectors, &opts))
        .await
        .map_err(|e| DsprocError::job(format!("internal: drift task: {e}")))?
    {
        Ok(d) => d,
        Err(e) => return Ok(Outcome { side_file: Some(rel), ..fail(format!("embedding_drift: {e}")) }),
    };
    let auc_ok = d.classifier.roc_auc <= s.max_auc;
    let mmd_ok = d.mmd.mmd2 <= s.max_mmd;
    let mean_ok = d.mean_distance.euclidean <= s.max_mean_distance;
    let (value, threshold, passed) = match s.method {
        DriftMethod::Auc => (d.classifier.roc_auc, s.max_auc, auc_ok),
        DriftMethod::Mmd => (d.mmd.mmd2, s.max_mmd, mmd_ok),
        DriftMethod::MeanDistance => (d.mean_distance.euclidean, s.max_mean_distance, mean_ok),
    };
    let c = &d.cosine_to_centroid;
    Ok(Outcome {
        passed,
        value: json!({
            "method": s.method.name(),
            "value": value,
            "threshold": threshold,
            "auc": {"value": d.classifier.roc_auc, "threshold": s.max_auc, "passed": auc_ok,
                    "train": d.classifier.train, "test": d.classifier.test, "iterations": d.classifier.iterations},
            "mmd": {"value": d.mmd.mmd2, "threshold": s.max_mmd, "passed": mmd_ok, "sigma": d.mmd.sigma,
                    "new": d.mmd.new, "baseline": d.mmd.baseline},
            "mean_distance": {"value": d.mean_distance.euclidean, "threshold": s.max_mean_distance, "passed": mean_ok,
                              "cosine": d.mean_distance.cosine},
            "cosine_to_centroid": {"new_mean": c.new_mean, "baseline_mean": c.baseline_mean,
                                   "ks_statistic": c.ks_statistic, "ks_p_value": c.ks_p_value,
                                   "bins": {"edges": c.edges, "new": c.new, "baseline": c.baseline}},
            "sample": {"new": new_n, "baseline": base_n, "size": s.sample, "seed": s.seed, "max_tokens": s.max_tokens},
            "model": model_json,
            "embeddings": embeddings,
            "baseline_embeddings": base_source,
            "baseline_version": base.version,
            "elapsed": timing(Some(base_s)),
        }),
        side_file: Some(rel),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_through_parquet() {
        let ids = vec!["a".to_string(), "b".to_string()];
        let v = vec![vec![0.5f32, -1.0, 2.0], vec![0.0, 1.5, f32::MIN_POSITIVE]];
        let bytes = to_parquet(&ids, &v, 3).unwrap();
        assert_eq!(from_parquet(bytes.into()).unwrap(), (ids, v));
    }
}
