//! `[[checks]]` evaluation: after the shards are written and the rows balance,
//! before the version may become current. The checks are DataFusion queries
//! over the new version's shards (`output`) and the baseline version's
//! (`baseline`); a failed `error` check makes the commit record the version as
//! `rejected` (never current) and the job exit 3.

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::SessionContext;
use serde_json::{json, Value};

use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::checks::{Baseline, CheckSpec, Metric, Severity};
use dsproc_job::manifest::Manifest;

/// One check's outcome, as the manifest's `checks` lists it.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub value: Value,
    pub failed_error: bool,
    pub summary: String,
    /// Files the check wrote into the version (relative to the dataset root), for
    /// the manifest's `side_files`.
    pub side_files: Vec<String>,
}

/// Registers a version's data shards as table `name`; false when its format
/// cannot be read as rows (token formats).
async fn register(ctx: &SessionContext, name: &str, out: &Location, m: &Manifest) -> Result<bool, DsprocError> {
    let urls: Vec<String> = m
        .shards
        .iter()
        .filter(|s| s.path.ends_with(&format!(".{}", m.format)))
        .map(|s| {
            let l = out.join(&s.path);
            dsproc_io::store::remember_storage(&l);
            l.canonical()
        })
        .collect();
    let err = |e: datafusion::error::DataFusionError| DsprocError::job(format!("checks: reading {name}: {e}"));
    let df = match m.format.as_str() {
        "parquet" if !urls.is_empty() => {
            ctx.read_parquet(urls, datafusion::prelude::ParquetReadOptions::default()).await.map_err(err)?
        }
        "jsonl.zst" if !urls.is_empty() => {
            let opts =
                datafusion::prelude::JsonReadOptions::default().file_extension(".jsonl.zst").file_compression_type(
                    datafusion::datasource::file_format::file_compression_type::FileCompressionType::ZSTD,
                );
            ctx.read_json(urls, opts).await.map_err(err)?
        }
        _ => return Ok(false),
    };
    ctx.register_table(name, df.into_view()).map_err(err)?;
    Ok(true)
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<datafusion::arrow::array::RecordBatch>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    df.collect().await.map_err(|e| e.to_string())
}

fn f64_at(batches: &[datafusion::arrow::array::RecordBatch], col: usize) -> Option<f64> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let a = datafusion::arrow::compute::cast(b.column(col), &DataType::Float64).ok()?;
    let a = a.as_primitive::<Float64Type>();
    (!a.is_null(0)).then(|| a.value(0))
}

/// Evaluates every check of the spec on version `m` (not committed yet) at `out`,
/// with queries run by `engine` (the job's: a cluster job's checks scan and
/// aggregate its shards on the executors; results are collected on the driver).
pub async fn evaluate(
    checks: &[CheckSpec],
    out: &Location,
    m: &Manifest,
    current: Option<&Manifest>,
    engine: &crate::session::Engine,
    engine_opts: &crate::session::EngineOptions,
) -> Result<Vec<CheckResult>, DsprocError> {
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = crate::session::make_context(engine, engine_opts).await?;
    let readable = register(&ctx, "output", out, m).await?;
    let mut results = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let mut side_files = Vec::new();
        let baseline = match c.baseline() {
            Some(Baseline::Version(n)) => Some(crate::versions::read_version(out, *n).await?.ok_or_else(|| {
                DsprocError::usage(format!("check {} ({}): baseline = {n}: no version {n}", i + 1, c.kind()))
            })?),
            _ => current.cloned(),
        };
        let _ = ctx.deregister_table("baseline");
        let base_readable = match &baseline {
            Some(b) => register(&ctx, "baseline", out, b).await?,
            None => false,
        };
        let (passed, mut value) = match c {
            CheckSpec::Sql { query: q, .. } => {
                if !readable {
                    (false, json!({"error": format!("sql checks need parquet or jsonl output, not {}", m.format)}))
                } else if q.contains("baseline") && !base_readable {
                    (true, json!({"skipped": "no baseline version to compare with"}))
                } else {
                    match query(&ctx, q).await {
                        Err(e) => (false, json!({"error": e})),
                        Ok(batches) => {
                            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                            let first_true = batches.iter().find(|b| b.num_rows() > 0).is_some_and(|b| {
                                rows == 1
                                    && b.column(0)
                                        .as_any()
                                        .downcast_ref::<BooleanArray>()
                                        .is_some_and(|a| a.is_valid(0) && a.value(0))
                            });
                            let passed = rows == 0 || first_true;
                            let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                                .map(|t| t.to_string().lines().take(12).collect::<Vec<_>>().join("\n"))
                                .unwrap_or_default();
                            (
                                passed,
                                json!({"rows": rows, "result": if passed { Value::Null } else { Value::String(shown) }}),
                            )
                        }
                    }
                }
            }
            CheckSpec::PiiResidual { max_per_million, kinds, .. } => {
                if !readable {
                    (false, json!({"error": format!("pii_residual needs parquet or jsonl output, not {}", m.format)}))
                } else {
                    let all = dsproc_functions::pii::Kind::ALL;
                    let kinds: Vec<dsproc_functions::pii::Kind> = if kinds.is_empty() {
                        all.to_vec()
                    } else {
                        all.iter().copied().filter(|k| kinds.iter().any(|n| n == k.name())).collect()
                    };
                    let opts = dsproc_functions::pii::scrub_pii::PiiOptions {
                        kinds: kinds.clone(),
                        action: dsproc_functions::pii::scrub_pii::Action::Tag,
                        template: "[{kind}]".into(),
                        keep_private_ips: false,
                        salt_env: String::new(),
                    };
                    let json_opts = serde_json::to_string(&opts).map_err(|e| DsprocError::job(e.to_string()))?;
                    let sums: Vec<String> = kinds
                        .iter()
                        .map(|k| format!("sum(arrow_cast(p['{0}'], 'Int64')) AS \"{0}\"", k.name()))
                        .collect();
                    let sql = format!(
                        "SELECT sum(arrow_cast(character_length(text), 'Int64')) AS chars, {} FROM \
                         (SELECT text, scrub_pii(arrow_cast(text, 'Utf8'), '{}')['pii_counts'] AS p FROM output)",
                        sums.join(", "),
                        json_opts.replace('\'', "''")
                    );
                    match query(&ctx, &sql).await {
                        Err(e) => (false, json!({"error": e})),
                        Ok(b) => {
                            let chars = f64_at(&b, 0).unwrap_or(0.0);
                            let mut per_kind = serde_json::Map::new();
                            let mut total = 0.0;
                            for (j, k) in kinds.iter().enumerate() {
                                let n = f64_at(&b, j + 1).unwrap_or(0.0);
                                total += n;
                                if n > 0.0 {
                                    per_kind.insert(k.name().to_string(), json!(n as u64));
                                }
                            }
                            let rate = if chars > 0.0 { total * 1e6 / chars } else { 0.0 };
                            (
                                rate <= *max_per_million,
                                json!({"per_million_chars": rate, "detections": total as u64, "by_kind": per_kind, "chars": chars as u64, "threshold": max_per_million}),
                            )
                        }
                    }
                }
            }
            CheckSpec::LabelAgreement { item, annotator, label, labels, metric, weights, level, min, .. } => {
                if !readable {
                    (
                        false,
                        json!({"error": format!("label_agreement needs parquet or jsonl output, not {}", m.format)}),
                    )
                } else {
                    match collect_labels(&ctx, item, annotator.as_deref(), label.as_deref(), labels.as_deref()).await {
                        Err(e) => (false, json!({"error": e})),
                        Ok(by_item) => agreement(&by_item, *metric, weights, level, *min),
                    }
                }
            }
            CheckSpec::ConflictingDuplicates { label, text, threshold, max_share, .. } => {
                if !readable {
                    (
                        false,
                        json!({"error": format!("conflicting_duplicates needs parquet or jsonl output, not {}", m.format)}),
                    )
                } else {
                    match conflicts(&ctx, label, text, *threshold, m.rows.out).await {
                        Err(e) => (false, json!({"error": e})),
                        Ok(mut v) => {
                            let share = v["share"].as_f64().unwrap_or(0.0);
                            v["threshold"] = json!(max_share);
                            (share <= *max_share, v)
                        }
                    }
                }
            }
            CheckSpec::EmbeddingDrift {
                sample,
                seed,
                max_tokens,
                model,
                text,
                method,
                max_auc,
                max_mmd,
                max_mean_distance,
                ..
            } => {
                if !readable || (baseline.is_some() && !base_readable) {
                    let format = if readable { baseline.as_ref().map_or("", |b| b.format.as_str()) } else { &m.format };
                    (false, json!({"error": format!("embedding_drift needs parquet or jsonl output, not {format}")}))
                } else {
                    let settings = crate::embedding_drift::Settings {
                        sample: *sample,
                        seed: *seed,
                        max_tokens: *max_tokens,
                        model: model.clone(),
                        text: text.clone(),
                        method: dsproc_job::checks::DriftMethod::parse(method).map_err(DsprocError::usage)?,
                        max_auc: *max_auc,
                        max_mmd: *max_mmd,
                        max_mean_distance: *max_mean_distance,
                    };
                    let o = crate::embedding_drift::evaluate(&ctx, i, &settings, out, m, baseline.as_ref()).await?;
                    side_files.extend(o.side_file);
                    (o.passed, o.value)
                }
            }
            CheckSpec::Distribution { rows_change, metric, column, max, .. } => {
                let Some(base) = &baseline else {
                    results.push(result(c, i, true, json!({"skipped": "no baseline version to compare with"})));
                    continue;
                };
                let mut passed = true;
                let mut v = serde_json::Map::new();
                if let Some(r) = rows_change {
                    let (lo, hi) = dsproc_job::checks::parse_change(r).map_err(DsprocError::usage)?;
                    let (new, old) = (m.rows.out as f64, base.rows.out as f64);
                    let change = if old > 0.0 {
                        (new - old) / old
                    } else if new > 0.0 {
                        f64::INFINITY
                    } else {
                        0.0
                    };
                    let ok = change >= lo - 1e-12 && change <= hi + 1e-12;
                    passed &= ok;
                    v.insert("rows_change".into(), json!({"rows": m.rows.out, "baseline_rows": base.rows.out, "change": change, "bounds": r, "passed": ok}));
                }
                if let Some(metric) = metric {
                    let col = column.as_deref().unwrap_or("text_length");
                    let scored = match (
                        distribution_values(&ctx, "output", out, m, readable, col).await,
                        distribution_values(&ctx, "baseline", out, base, base_readable, col).await,
                    ) {
                        (Ok(Dist::Numeric(new, new_nulls)), Ok(Dist::Numeric(old, old_nulls))) => {
                            Ok(compare_with_nulls(&old, old_nulls, &new, new_nulls, *metric))
                        }
                        (Ok(Dist::Categories(new)), Ok(Dist::Categories(old))) => {
                            compare_categories(&old, &new, *metric)
                        }
                        (Ok(_), Ok(_)) => Err(format!(
                            "column {col:?} is numeric in one version and categorical in the other: \
                             compare a cast of it in an sql check"
                        )),
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    };
                    match scored {
                        Ok((score, bins)) => {
                            let threshold = max.unwrap_or(0.1);
                            let ok = score <= threshold;
                            passed &= ok;
                            v.insert(
                                match metric {
                                    Metric::Psi => "psi",
                                    Metric::Js => "js_distance",
                                }
                                .into(),
                                json!({"column": col, "value": score, "threshold": threshold, "passed": ok, "bins": bins}),
                            );
                        }
                        Err(e) => {
                            passed = false;
                            v.insert("error".into(), json!(e));
                        }
                    }
                }
                v.insert("baseline_version".into(), json!(base.version));
                (passed, Value::Object(v))
            }
        };
        if let (Some(b), Some(o)) = (&baseline, value.as_object_mut()) {
            o.entry("baseline_version").or_insert(json!(b.version));
        }
        let mut r = result(c, i, passed, value);
        r.side_files = side_files;
        results.push(r);
    }
    Ok(results)
}

/// item → annotator → label, from the long form or a list column.
async fn collect_labels(
    ctx: &SessionContext,
    item: &str,
    annotator: Option<&str>,
    label: Option<&str>,
    labels: Option<&str>,
) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, crate::agreement::Label>>, String> {
    use datafusion::arrow::array::{ListArray, StringArray};
    let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let mk = |t: &str| crate::agreement::Label { text: t.to_string(), number: t.trim().parse::<f64>().ok() };
    let mut by_item: std::collections::BTreeMap<String, std::collections::BTreeMap<String, crate::agreement::Label>> =
        Default::default();
    let strings = |a: &dyn Array| -> Result<StringArray, String> {
        let c = datafusion::arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
        c.as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .ok_or_else(|| format!("internal: {} is not a string array", c.data_type()))
    };
    match (annotator, label, labels) {
        (Some(a), Some(l), _) => {
            let sql = format!("SELECT {}, {}, {} FROM output WHERE {} IS NOT NULL", q(item), q(a), q(l), q(l));
            for b in query(ctx, &sql).await? {
                let (i, a, l) = (strings(b.column(0))?, strings(b.column(1))?, strings(b.column(2))?);
                for r in 0..b.num_rows() {
                    if i.is_null(r) || a.is_null(r) || l.is_null(r) {
                        continue;
                    }
                    by_item.entry(i.value(r).to_string()).or_default().insert(a.value(r).to_string(), mk(l.value(r)));
                }
            }
        }
        (_, _, Some(ls)) => {
            let sql = format!("SELECT {}, {} FROM output", q(item), q(ls));
            for b in query(ctx, &sql).await? {
                let i = strings(b.column(0))?;
                let Some(lists) = b.column(1).as_any().downcast_ref::<ListArray>() else {
                    return Err(format!("{ls} is not a list column"));
                };
                for r in 0..b.num_rows() {
                    if i.is_null(r) || lists.is_null(r) {
                        continue;
                    }
                    let v = strings(lists.value(r).as_ref())?;
                    let e = by_item.entry(i.value(r).to_string()).or_default();
                    for k in 0..v.len() {
                        if !v.is_null(k) {
                            e.insert(format!("annotator_{k}"), mk(v.value(k)));
                        }
                    }
                }
            }
        }
        _ => return Err("give annotator and label, or labels".into()),
    }
    Ok(by_item)
}

/// Near-duplicate pairs whose labels differ (LSH candidates, exact Jaccard).
async fn conflicts(ctx: &SessionContext, label: &str, text: &str, threshold: f64, rows: u64) -> Result<Value, String> {
    use datafusion::arrow::array::StringArray;
    let (bands, r) = dsproc_functions::minhash::optimal_bands(threshold, 128, 0.05, 0.95);
    let p = dsproc_functions::minhash::MinHashParams {
        num_perm: 128,
        bands,
        rows: r,
        ngram: 5,
        shingle: dsproc_functions::minhash::Shingle::Word,
        seed: 42,
    };
    let params = serde_json::to_string(&p).map_err(|e| e.to_string())?.replace('\'', "''");
    let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let (l, t) = (q(label), q(text));
    let sql = format!(
        "WITH d AS (SELECT arrow_cast(id, 'Utf8') AS id, arrow_cast({l}, 'Utf8') AS label, arrow_cast({t}, 'Utf8') AS text FROM output), \
              b AS (SELECT id, label, unnest(minhash_bands(text, '{params}')) AS k FROM d), \
              c AS (SELECT DISTINCT x.id AS a, y.id AS b FROM b x JOIN b y ON x.k = y.k AND x.id < y.id AND x.label <> y.label) \
         SELECT c.a, c.b, da.label, db.label, minhash_jaccard(da.text, db.text, '{params}') AS j \
         FROM c JOIN d da ON da.id = c.a JOIN d db ON db.id = c.b ORDER BY c.a, c.b"
    );
    let mut pairs = Vec::new();
    let mut involved = std::collections::BTreeSet::new();
    for b in query(ctx, &sql).await? {
        let col = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>().cloned();
        let (Some(a), Some(bb), Some(la), Some(lb)) = (col(0), col(1), col(2), col(3)) else {
            return Err("internal: conflicting_duplicates: unexpected column types".into());
        };
        let j = b.column(4).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            if j.is_valid(r) && j.value(r) >= threshold {
                involved.insert(a.value(r).to_string());
                involved.insert(bb.value(r).to_string());
                pairs.push(json!({"a": a.value(r), "b": bb.value(r), "labels": [la.value(r), lb.value(r)], "jaccard": j.value(r)}));
            }
        }
    }
    let share = if rows > 0 { involved.len() as f64 / rows as f64 } else { 0.0 };
    Ok(
        json!({"pairs": pairs.len(), "rows_in_conflict": involved.len(), "share": share, "examples": pairs.iter().take(5).collect::<Vec<_>>(), "jaccard_threshold": threshold}),
    )
}

/// The agreement values and the gate.
fn agreement(
    by_item: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, crate::agreement::Label>>,
    metric: Option<dsproc_job::checks::AgreementMetric>,
    weights: &str,
    level: &str,
    min: f64,
) -> (bool, Value) {
    use crate::agreement::*;
    use dsproc_job::checks::AgreementMetric as M;
    let annotators: std::collections::BTreeSet<&String> = by_item.values().flat_map(|m| m.keys()).collect();
    let pairs = pairwise_kappa(by_item, weights);
    let lists: std::collections::BTreeMap<String, Vec<&Label>> =
        by_item.iter().map(|(k, v)| (k.clone(), v.values().collect())).collect();
    let cohen = if annotators.len() == 2 {
        pairs.values().next().map(|(k, _)| *k)
    } else if pairs.is_empty() {
        None
    } else {
        Some(pairs.values().map(|(k, _)| k).sum::<f64>() / pairs.len() as f64)
    };
    let fleiss = fleiss_kappa(&lists);
    let alpha = krippendorff_alpha(&lists, level);
    let metric = metric.unwrap_or(if annotators.len() <= 2 { M::CohenKappa } else { M::FleissKappa });
    let (name, value) = match metric {
        M::CohenKappa => ("cohen_kappa", cohen),
        M::FleissKappa => ("fleiss_kappa", fleiss.map(|f| f.0)),
        M::KrippendorffAlpha => ("krippendorff_alpha", alpha),
    };
    let passed = value.is_some_and(|v| v >= min);
    let pair_json: serde_json::Map<String, Value> =
        pairs.iter().map(|(k, (v, n))| (k.clone(), json!({"kappa": v, "items": n}))).collect();
    (
        passed,
        json!({
            "metric": name, "value": value, "threshold": min,
            "items": by_item.len(), "annotators": annotators.len(),
            "cohen_kappa": cohen, "weights": weights, "pairs": pair_json,
            "fleiss_kappa": fleiss.map(|f| f.0), "fleiss_items": fleiss.map(|f| f.1),
            "krippendorff_alpha": alpha, "level": level,
        }),
    )
}

fn result(c: &CheckSpec, i: usize, passed: bool, value: Value) -> CheckResult {
    let severity = match c.severity() {
        Severity::Error => "error",
        Severity::Warn => "warn",
    };
    let summary = format!(
        "check {} ({}, {severity}): {} {}",
        i + 1,
        c.kind(),
        if passed { "passed" } else { "FAILED" },
        brief(&value)
    );
    let mut v = json!({"check": i + 1, "name": c.kind(), "severity": severity, "passed": passed});
    if let (Some(o), Some(extra)) = (v.as_object_mut(), value.as_object()) {
        for (k, x) in extra {
            o.insert(k.clone(), x.clone());
        }
    }
    CheckResult { value: v, failed_error: !passed && c.severity() == Severity::Error, summary, side_files: Vec::new() }
}

/// The value and threshold of a check result, in a few words.
fn brief(v: &Value) -> String {
    if let Some(e) = v["error"].as_str() {
        return format!("(error: {e})");
    }
    if let Some(s) = v["skipped"].as_str() {
        return format!("(skipped: {s})");
    }
    let mut parts = Vec::new();
    if let Some(r) = v["per_million_chars"].as_f64() {
        parts.push(format!("{r:.3} PII detections per million characters (max {})", v["threshold"]));
    }
    if let Some(r) = v.get("rows_change").filter(|r| r.is_object()) {
        parts.push(format!(
            "rows {} vs {} in version {} ({:+.1}%, bounds {})",
            r["rows"],
            r["baseline_rows"],
            v["baseline_version"],
            r["change"].as_f64().unwrap_or(0.0) * 100.0,
            r["bounds"].as_str().unwrap_or("")
        ));
    }
    for k in ["psi", "js_distance"] {
        if let Some(r) = v.get(k).filter(|r| r.is_object()) {
            parts.push(format!(
                "{k} of {} {:.4} (max {})",
                r["column"].as_str().unwrap_or(""),
                r["value"].as_f64().unwrap_or(0.0),
                r["threshold"]
            ));
        }
    }
    if let (Some(m), Some(t)) = (v["metric"].as_str(), v.get("threshold").filter(|_| v.get("annotators").is_some())) {
        let shown = v["value"].as_f64().map_or("undefined".to_string(), |x| format!("{x:.4}"));
        parts.push(format!("{m} {shown} over {} items, {} annotators (min {t})", v["items"], v["annotators"]));
    }
    if let (Some(n), Some(sh)) = (v["pairs"].as_u64(), v["share"].as_f64()) {
        parts.push(format!(
            "{n} near-duplicate pairs with different labels, {:.4}% of rows (max {})",
            sh * 100.0,
            v["threshold"]
        ));
    }
    if let (Some(m), Some(s)) = (v["method"].as_str(), v.get("sample").filter(|s| s.is_object())) {
        let part = |k: &str, name: &str| {
            let x = &v[k];
            format!(
                "{name} {:.4} (max {}{})",
                x["value"].as_f64().unwrap_or(f64::NAN),
                x["threshold"],
                if x["passed"] == false { ", exceeded" } else { "" }
            )
        };
        parts.push(format!(
            "embedding drift by {m}: {}, {}, {} over {} new vs {} baseline documents of version {}",
            part("auc", "domain classifier ROC-AUC"),
            part("mmd", "MMD²"),
            part("mean_distance", "mean-embedding distance"),
            s["new"],
            s["baseline"],
            v["baseline_version"]
        ));
    }
    if let Some(n) = v["rows"].as_u64().filter(|_| v.get("result").is_some()) {
        parts.push(format!("query returned {n} rows"));
    }
    parts.join("; ")
}

/// A `distribution` check's values of one version.
enum Dist {
    /// Numbers (binned by the baseline's deciles) and the count of nulls (their
    /// own bin, so a column going null is seen).
    Numeric(Vec<f64>, u64),
    /// Rows per distinct value (strings, booleans; nulls as `(null)`).
    Categories(std::collections::BTreeMap<String, f64>),
}

/// Most distinct values a categorical `distribution` compares.
const MAX_CATEGORIES: usize = 1000;

/// The values of `col` in `table` (the version `m`): a numeric column, a string or
/// boolean column (categories), or the derived `text_length` (characters of `text`)
/// and `token_count` (`n_tokens`, the length of `tokens`, or Megatron's `.idx`)
/// when the shards have no column of that name.
async fn distribution_values(
    ctx: &SessionContext,
    table: &str,
    out: &Location,
    m: &Manifest,
    readable: bool,
    col: &str,
) -> Result<Dist, String> {
    let which = format!("version {}", m.version);
    if !readable {
        if col == "token_count" && m.shards.iter().any(|s| s.path.ends_with(".idx")) {
            if m.shards.iter().any(|s| s.sequences.is_some()) {
                // every sequence is seq_len tokens: the check would always pass
                return Err(format!(
                    "token_count of {which}: its .idx lengths are packed sequences (output.pack), not documents; \
                     check token counts on unpacked output"
                ));
            }
            let mut values = Vec::new();
            for s in m.shards.iter().filter(|s| s.path.ends_with(".idx")) {
                let bytes = out
                    .join(&s.path)
                    .get_opt()
                    .await
                    .map_err(|e| format!("{which}: {}: {}", s.path, String::from(e)))?
                    .ok_or_else(|| format!("{which}: {} is missing", s.path))?;
                let lengths = crate::report::idx_lengths(&bytes, usize::MAX)
                    .ok_or_else(|| format!("{which}: {} is not a Megatron index", s.path))?;
                values.extend(lengths.into_iter().map(|x| x as f64));
            }
            return Ok(Dist::Numeric(values, 0));
        }
        return Err(format!(
            "distribution of {col:?} needs parquet or jsonl output ({which} is {}; megatron: column = \"token_count\" only)",
            m.format
        ));
    }
    let df = ctx.table(table).await.map_err(|e| format!("{which}: {e}"))?;
    let schema = df.schema().as_arrow().clone();
    let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let has = |c: &str| schema.field_with_name(c).is_ok();
    let (expr, categorical) = match schema.field_with_name(col).ok().map(|f| f.data_type().clone()) {
        Some(t) if t.is_numeric() => (q(col), false),
        Some(
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean | DataType::Dictionary(..),
        ) => (format!("arrow_cast({}, 'Utf8')", q(col)), true),
        Some(t) => {
            return Err(format!(
                "column {col:?} is {t} in {which}: distribution compares numeric, string or boolean columns"
            ))
        }
        None if col == "text_length" && has("text") => ("character_length(text)".to_string(), false),
        None if col == "token_count" && has("n_tokens") => (q("n_tokens"), false),
        None if col == "token_count" && has("tokens") => (format!("cardinality({})", q("tokens")), false),
        None => {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let hint = match col {
                "token_count" => {
                    " (token_count needs a tokenize step: a tokens or n_tokens column, or Megatron output)"
                }
                "text_length" => " (text_length needs a text column)",
                _ => "",
            };
            return Err(format!("{which} has no column {col:?}{hint}; its columns: {}", names.join(", ")));
        }
    };
    if categorical {
        let sql = format!(
            "SELECT coalesce({expr}, '(null)') AS v, arrow_cast(count(*), 'Int64') AS n FROM {table} GROUP BY 1"
        );
        let mut counts = std::collections::BTreeMap::new();
        for b in query(ctx, &sql).await.map_err(|e| format!("{which}: {e}"))? {
            let v = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).map_err(|e| e.to_string())?;
            let n = datafusion::arrow::compute::cast(b.column(1), &DataType::Float64).map_err(|e| e.to_string())?;
            let (v, n) = (v.as_string::<i32>(), n.as_primitive::<Float64Type>());
            for r in 0..b.num_rows() {
                counts.insert(v.value(r).to_string(), n.value(r));
            }
            if counts.len() > MAX_CATEGORIES {
                return Err(format!(
                    "column {col:?} has more than {MAX_CATEGORIES} distinct values in {which}: distribution compares \
                     categorical columns of at most {MAX_CATEGORIES} values (bin a numeric column instead, or use an sql check)"
                ));
            }
        }
        return Ok(Dist::Categories(counts));
    }
    let sql = format!("SELECT arrow_cast({expr}, 'Float64') AS v FROM {table}");
    let (mut values, mut nulls) = (Vec::new(), 0u64);
    for b in query(ctx, &sql).await.map_err(|e| format!("{which}: {e}"))? {
        for v in b.column(0).as_primitive::<Float64Type>().iter() {
            match v {
                Some(v) => values.push(v),
                None => nulls += 1,
            }
        }
    }
    Ok(Dist::Numeric(values, nulls))
}

/// PSI or Jensen-Shannon distance of the category shares of `new` against `old`
/// (every value of either side; a share under 1e-4 counts as 1e-4, as for bins).
/// The bins shown are the 30 values largest in the baseline (then in the new
/// version), the rest summed as `(N other values)`.
pub fn compare_categories(
    old: &std::collections::BTreeMap<String, f64>,
    new: &std::collections::BTreeMap<String, f64>,
    metric: Metric,
) -> Result<(f64, Value), String> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    if keys.len() > MAX_CATEGORIES {
        return Err(format!(
            "{} distinct values in the two versions: distribution compares at most {MAX_CATEGORIES}",
            keys.len()
        ));
    }
    let total = |c: &std::collections::BTreeMap<String, f64>| c.values().sum::<f64>().max(1.0);
    let (to, tn) = (total(old), total(new));
    let share = |c: &std::collections::BTreeMap<String, f64>, t: f64, k: &String| {
        (c.get(k).copied().unwrap_or(0.0) / t).max(1e-4)
    };
    let p: Vec<f64> = keys.iter().map(|k| share(old, to, k)).collect();
    let q: Vec<f64> = keys.iter().map(|k| share(new, tn, k)).collect();
    let score = divergence(&p, &q, metric);
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(q[b].total_cmp(&q[a])).then(keys[a].cmp(keys[b])));
    const SHOWN: usize = 30;
    let (mut labels, mut bp, mut bq) = (Vec::new(), Vec::new(), Vec::new());
    for (rank, &i) in order.iter().enumerate() {
        if rank < SHOWN || order.len() == SHOWN + 1 {
            labels.push(keys[i].clone());
            bp.push(p[i]);
            bq.push(q[i]);
        } else if rank == SHOWN {
            labels.push(format!("({} other values)", order.len() - SHOWN));
            bp.push(p[i]);
            bq.push(q[i]);
        } else {
            *bp.last_mut().unwrap_or(&mut 0.0) += p[i];
            *bq.last_mut().unwrap_or(&mut 0.0) += q[i];
        }
    }
    Ok((score, json!({"labels": labels, "baseline": bp, "new": bq, "categories": keys.len()})))
}

/// PSI or Jensen-Shannon distance of shares `q` (new) against `p` (baseline).
fn divergence(p: &[f64], q: &[f64], metric: Metric) -> f64 {
    match metric {
        Metric::Psi => p.iter().zip(q).map(|(a, b)| (b - a) * (b / a).ln()).sum(),
        Metric::Js => {
            let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
            let (p, q): (Vec<f64>, Vec<f64>) = (p.iter().map(|x| x / sp).collect(), q.iter().map(|x| x / sq).collect());
            let mix: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
            let kl =
                |a: &[f64]| a.iter().zip(&mix).map(|(x, m)| if *x > 0.0 { x * (x / m).ln() } else { 0.0 }).sum::<f64>();
            ((kl(&p) + kl(&q)) / 2.0).max(0.0).sqrt()
        }
    }
}

/// PSI or Jensen-Shannon distance (natural log, as scipy's `jensenshannon`) of
/// `new` against `old` over 10 quantile bins of `old`; empty bins get 1e-4
/// (Evidently's smoothing). Returns the score and the two bin shares.
pub fn compare(old: &[f64], new: &[f64], metric: Metric) -> (f64, Value) {
    compare_with_nulls(old, 0, new, 0, metric)
}

/// [`compare`] of a column with nulls: shares are of all rows, and when either
/// side has nulls they are one more bin (`bins.nulls` gives the counts).
pub fn compare_with_nulls(old: &[f64], old_nulls: u64, new: &[f64], new_nulls: u64, metric: Metric) -> (f64, Value) {
    let mut sorted = old.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut edges: Vec<f64> = (1..10)
        .filter_map(|q| {
            sorted.get(((q as f64 / 10.0) * (sorted.len().saturating_sub(1)) as f64).round() as usize).copied()
        })
        .collect();
    edges.dedup();
    let bin = |x: f64| edges.partition_point(|e| *e < x);
    let with_nulls = old_nulls + new_nulls > 0;
    let shares = |v: &[f64], nulls: u64| {
        let mut c = vec![0f64; edges.len() + 1];
        for x in v {
            c[bin(*x)] += 1.0;
        }
        if with_nulls {
            c.push(nulls as f64);
        }
        let n = (v.len() as u64 + nulls).max(1) as f64;
        c.iter().map(|x| (x / n).max(1e-4)).collect::<Vec<f64>>()
    };
    let (p, q) = (shares(old, old_nulls), shares(new, new_nulls));
    let score = divergence(&p, &q, metric);
    let mut bins = json!({"edges": edges, "baseline": p, "new": q});
    if with_nulls {
        bins["nulls"] = json!({"baseline": old_nulls, "new": new_nulls});
    }
    (score, bins)
}

/// The checks' failures as one message (the job exits 3).
pub fn rejection(results: &[CheckResult], version: u64, current: Option<u64>) -> String {
    let failed: Vec<&str> = results.iter().filter(|r| r.failed_error).map(|r| r.summary.as_str()).collect();
    format!(
        "version {version} rejected by its checks: {}; it is recorded as rejected (dsproc versions), {}",
        failed.join("; "),
        match current {
            Some(c) => format!("version {c} stays current"),
            None => "no version is current".into(),
        }
    )
}
