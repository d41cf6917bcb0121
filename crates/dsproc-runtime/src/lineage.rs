//! Lineage of a dataset version for other tools: an OpenLineage RunEvent
//! (spec 2-0-2) and an MLflow dataset record (`mlflow.log_input`), both built
//! from the version's manifest; and the START / COMPLETE / FAIL events
//! `run --lineage-url` POSTs while a job runs.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::manifest::{Column, Manifest};

pub const OPENLINEAGE_SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET_URL: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const OUTPUT_STATS_URL: &str =
    "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
const JOB_NAMESPACE: &str = "dsproc";

/// The producer URI of every event and facet.
pub fn producer() -> String {
    format!("https://github.com/dsproc/dsproc/tree/v{}", env!("CARGO_PKG_VERSION"))
}

/// The OpenLineage run id (a UUID, as the spec requires) of a dsproc run id: the
/// first 16 bytes of its sha256, as a version-8 (custom) UUID. The dsproc run id
/// itself is in the `dsproc` run facet.
pub fn run_uuid(run_id: &str) -> String {
    let mut b: [u8; 16] = Sha256::digest(run_id.as_bytes())[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// OpenLineage dataset naming: namespace = `scheme://authority` (`file` for local
/// paths), name = the path.
fn dataset_id(uri: &str) -> (String, String) {
    match Location::parse(uri, None) {
        Ok(l) if l.is_local() => ("file".into(), l.shown()),
        Ok(l) => (l.store_url.clone(), l.raw.clone()),
        Err(_) => ("file".into(), uri.to_string()),
    }
}

fn schema_facet(cols: &[Column]) -> Value {
    json!({
        "_producer": producer(),
        "_schemaURL": SCHEMA_FACET_URL,
        "fields": cols.iter().map(|c| json!({"name": c.name, "type": c.data_type})).collect::<Vec<_>>(),
    })
}

fn run_facets(m: &Manifest) -> Value {
    json!({
        "dsproc": {
            "_producer": producer(),
            "_schemaURL": format!("{}#/dsproc/RunFacet", producer()),
            "run_id": m.run_id,
            "version": m.version,
            "parent_version": m.parent_version,
            "dataset_version": m.dataset_version,
            "spec_sha256": m.spec_sha256,
            "dsproc_version": m.dsproc_version,
            "op_versions": m.op_versions,
            "engine": m.engine,
        }
    })
}

/// Input datasets of a run: one per input file (uri, size, etag/mtime).
fn inputs(m: &Manifest) -> Vec<Value> {
    m.inputs
        .iter()
        .map(|i| {
            let (namespace, name) = dataset_id(&i.uri);
            json!({
                "namespace": namespace,
                "name": name,
                "facets": {
                    "schema": schema_facet(&m.input_schema),
                    "dsproc_input": {
                        "_producer": producer(),
                        "_schemaURL": format!("{}#/dsproc/InputFacet", producer()),
                        "bytes": i.bytes,
                        "version": i.version,
                    },
                },
            })
        })
        .collect()
}

/// The output dataset (the dataset root), with schema and row-count facets.
fn output(m: &Manifest, root: &str) -> Value {
    let (namespace, name) = dataset_id(root);
    json!({
        "namespace": namespace,
        "name": name,
        "facets": {"schema": schema_facet(&m.schema)},
        "outputFacets": {
            "outputStatistics": {
                "_producer": producer(),
                "_schemaURL": OUTPUT_STATS_URL,
                "rowCount": m.rows.out,
                "size": m.shards.iter().map(|s| s.bytes).sum::<u64>(),
                "fileCount": m.data_shards(),
            }
        },
    })
}

/// The RunEvent of a committed version (`eventType` COMPLETE).
pub fn openlineage_event(m: &Manifest, root: &str) -> Value {
    json!({
        "eventType": "COMPLETE",
        "eventTime": m.created_at,
        "producer": producer(),
        "schemaURL": OPENLINEAGE_SCHEMA_URL,
        "run": {"runId": run_uuid(&m.run_id), "facets": run_facets(m)},
        "job": {"namespace": JOB_NAMESPACE, "name": m.job_name},
        "inputs": inputs(m),
        "outputs": [output(m, root)],
    })
}

/// A START or FAIL event of a running job (no output statistics yet).
pub fn run_state_event(event_type: &str, run_id: &str, job: &str, error: Option<&str>) -> Value {
    let mut run = json!({"runId": run_uuid(run_id), "facets": {}});
    if let Some(e) = error {
        run["facets"]["errorMessage"] = json!({
            "_producer": producer(),
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
            "message": e,
            "programmingLanguage": "rust",
        });
    }
    json!({
        "eventType": event_type,
        "eventTime": chrono::Utc::now().to_rfc3339(),
        "producer": producer(),
        "schemaURL": OPENLINEAGE_SCHEMA_URL,
        "run": run,
        "job": {"namespace": JOB_NAMESPACE, "name": job},
        "inputs": [],
        "outputs": [],
    })
}

/// The MLflow dataset record of a version: the fields of
/// `mlflow.entities.Dataset` (`name`, `digest`, `source_type`, `source`, `schema`,
/// `profile`; the last three JSON strings, as MLflow stores them).
pub fn mlflow_dataset(m: &Manifest, root: &str) -> Value {
    let loc = Location::parse(root, None).ok();
    let source_type = match loc.as_ref().map(|l| l.scheme().to_string()) {
        Some(s) if s == "file" => "local".to_string(),
        Some(s) if s == "s3a" => "s3".to_string(),
        Some(s) => s,
        None => "local".to_string(),
    };
    let uri = loc.map(|l| l.canonical()).unwrap_or_else(|| root.to_string());
    let colspec: Vec<Value> =
        m.schema.iter().map(|c| json!({"name": c.name, "type": mlflow_type(&c.data_type)})).collect();
    let profile = json!({
        "num_rows": m.rows.out,
        "num_shards": m.data_shards(),
        "num_bytes": m.shards.iter().map(|s| s.bytes).sum::<u64>(),
        "num_tokens": m.tokens(),
        "version": m.version,
    });
    json!({
        "name": format!("{}@v{}", m.job_name, m.version),
        "digest": m.dataset_version.get(..32).unwrap_or(&m.dataset_version),
        "source_type": source_type,
        "source": json!({"uri": uri, "version": m.version}).to_string(),
        "schema": json!({"mlflow_colspec": colspec}).to_string(),
        "profile": profile.to_string(),
    })
}

/// MLflow column-spec type names for Arrow types.
fn mlflow_type(arrow: &str) -> &'static str {
    match arrow {
        "Utf8" | "LargeUtf8" | "Utf8View" => "string",
        "Boolean" => "boolean",
        "Int8" | "Int16" | "Int32" | "UInt8" | "UInt16" => "integer",
        "Int64" | "UInt32" | "UInt64" => "long",
        "Float32" => "float",
        "Float64" => "double",
        "Binary" | "LargeBinary" | "BinaryView" => "binary",
        _ if arrow.starts_with("Timestamp") || arrow.starts_with("Date") => "datetime",
        _ => "string",
    }
}

/// POSTs a JSON event to `url` (plain HTTP/1.1; `http://HOST:PORT/PATH`). A 2xx
/// answer is success; anything else is an error naming the URL and the status.
pub async fn post_event(url: &str, event: &Value) -> Result<(), DsprocError> {
    post_json(url, "lineage URL", event).await
}

/// POSTs `event` to `url` (see [`post_event`]); `what` names the URL in errors.
pub async fn post_json(url: &str, what: &str, event: &Value) -> Result<(), DsprocError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let err = |m: String| DsprocError::job(format!("{what} {url}: {m}"));
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        DsprocError::usage(format!("{what} {url}: only http:// URLs are supported (use a local relay for https)"))
    })?;
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let addr = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let body = serde_json::to_vec(event).map_err(|e| err(e.to_string()))?;
    let send = async {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.map_err(|e| err(format!("connect: {e}")))?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.map_err(|e| err(format!("send: {e}")))?;
        conn.write_all(&body).await.map_err(|e| err(format!("send: {e}")))?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.map_err(|e| err(format!("read: {e}")))?;
        let status_line = String::from_utf8_lossy(answer.split(|b| *b == b'\n').next().unwrap_or_default()).to_string();
        let code: u16 = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(err(format!("answered {:?}", status_line.trim())))
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), send)
        .await
        .map_err(|_| err("timed out after 10s".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_map_to_stable_uuids() {
        let u = run_uuid("20261201T000000Z-abcd1234");
        assert_eq!(u, run_uuid("20261201T000000Z-abcd1234"));
        assert_ne!(u, run_uuid("20261201T000000Z-abcd1235"));
        let parts: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        assert_eq!(&u[14..15], "8");
    }

    #[test]
    fn datasets_are_named_by_store_and_path() {
        assert_eq!(dataset_id("s3://b/corpus/x.jsonl"), ("s3://b".to_string(), "corpus/x.jsonl".to_string()));
        assert_eq!(dataset_id("/data/x.jsonl"), ("file".to_string(), "/data/x.jsonl".to_string()));
    }
}
