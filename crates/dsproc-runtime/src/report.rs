//! `dsproc report` (and `dsproc run --report`): one self-contained HTML page
//! summarising a committed version: its row funnel, drops, quarantine, document
//! lengths, languages, checks and the dataset's history. Charts are inline SVG;
//! the page loads nothing (no scripts, fonts or style sheets from anywhere) and
//! runs no JavaScript. Every string from the manifest or the data is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use serde_json::Value;

use dsproc_common::config::MANIFEST_FILE;
use dsproc_common::DsprocError;
use dsproc_io::Location;
use dsproc_job::manifest::Manifest;

use crate::versions::VersionRow;

/// Rows read from the shards for the length histograms (the first ones, in shard order).
pub const SAMPLE_ROWS: usize = 100_000;
/// Quarantine bytes read for the per-reason and per-file counts.
const QUARANTINE_READ_LIMIT: u64 = 64 << 20;

/// A rendered report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The version reported on.
    pub version: u64,
    pub html: String,
}

/// The manifest of version `n` (or the current one) with its status as of now.
pub async fn load_manifest(out: &Location, version: Option<u64>) -> Result<Manifest, DsprocError> {
    if let Some(n) = version {
        return crate::versions::inspect_version(out, n).await;
    }
    let m = crate::commit::read_manifest(out)
        .await?
        .ok_or_else(|| DsprocError::job(format!("{}: no committed dataset (no {MANIFEST_FILE})", out.shown())))?;
    if m.version > 0 {
        if let Ok(Some(_)) = crate::versions::read_version(out, m.version).await {
            return crate::versions::inspect_version(out, m.version).await;
        }
    }
    Ok(m)
}

/// The highest recorded version number (the one a run that was just rejected recorded).
pub async fn newest_version(out: &Location) -> Result<Option<u64>, DsprocError> {
    Ok(crate::versions::committed(out).await?.last().copied())
}

/// Renders the report of version `version` (default: the current one) of the dataset at `out`.
pub async fn render(out: &Location, version: Option<u64>) -> Result<Report, DsprocError> {
    let m = load_manifest(out, version).await?;
    let history = crate::versions::list(out).await.map_err(|e| e.to_string());
    let quarantine = read_quarantine(out, &m).await;
    let data = read_shards(out, &m).await;
    let page = Page { dataset: out.shown(), m: &m, history, quarantine, data };
    Ok(Report { version: m.version, html: page.html() })
}

/// Renders the report and writes it to `path` (a local file).
pub async fn write(out: &Location, version: Option<u64>, path: &std::path::Path) -> Result<Report, DsprocError> {
    let r = render(out, version).await?;
    std::fs::write(path, &r.html)
        .map_err(|e| DsprocError::job_source(format!("cannot write the report {}", path.display()), e))?;
    Ok(r)
}

// ---------------------------------------------------------------------------
// Data

#[derive(Default)]
struct Quarantine {
    by_reason: BTreeMap<String, u64>,
    by_file: BTreeMap<String, u64>,
    /// (quarantine file, records) of the files read.
    files: Vec<(String, u64)>,
    /// (file:line, reason) of the first few records.
    examples: Vec<(String, String)>,
    /// Reading stopped at the byte limit.
    truncated: bool,
    errors: Vec<String>,
}

async fn read_quarantine(out: &Location, m: &Manifest) -> Quarantine {
    let mut q = Quarantine::default();
    let mut read = 0u64;
    for rel in &m.quarantine {
        if read >= QUARANTINE_READ_LIMIT {
            q.truncated = true;
            break;
        }
        let loc = out.join(rel);
        let bytes = match loc.get_opt().await {
            Ok(Some(b)) => b,
            Ok(None) => {
                q.errors.push(format!("{rel}: missing"));
                continue;
            }
            Err(e) => {
                q.errors.push(format!("{rel}: {}", String::from(e)));
                continue;
            }
        };
        read += bytes.len() as u64;
        let mut n = 0u64;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(r) = serde_json::from_slice::<dsproc_io::quarantine::QuarantineRecord>(line) else {
                *q.by_reason.entry("(unreadable quarantine record)".into()).or_default() += 1;
                n += 1;
                continue;
            };
            n += 1;
            *q.by_reason.entry(r.reason.clone()).or_default() += 1;
            *q.by_file.entry(r.file.clone()).or_default() += 1;
            if q.examples.len() < 5 {
                q.examples.push((format!("{}:{}", r.file, r.line), r.reason));
            }
        }
        q.files.push((rel.clone(), n));
    }
    q
}

/// A sample of per-row values, or why there is none.
enum Sample {
    Values { values: Vec<i64>, note: String },
    Missing(String),
}

struct ShardData {
    chars: Sample,
    tokens: Sample,
    /// (lang, rows, mean lang_score), most rows first; Err: why none.
    langs: Result<Vec<(String, u64, Option<f64>)>, String>,
}

fn missing(why: impl Into<String>) -> Sample {
    Sample::Missing(why.into())
}

async fn read_shards(out: &Location, m: &Manifest) -> ShardData {
    match m.format.as_str() {
        "parquet" | "jsonl.zst" => match read_rows(out, m).await {
            Ok(d) => d,
            Err(e) => {
                let why = format!("could not read the shards: {e}");
                ShardData { chars: missing(&why), tokens: missing(&why), langs: Err(why) }
            }
        },
        "bin" | "megatron" => ShardData {
            chars: missing("not available for this format (Megatron shards hold token ids only, no text)"),
            tokens: megatron_lengths(out, m).await,
            langs: Err("not available for this format (Megatron shards hold token ids only)".into()),
        },
        other => {
            let why = if other == "mds" {
                "not available for this format (the report does not read MDS shards)".to_string()
            } else {
                format!("not available for this format ({other})")
            };
            ShardData { chars: missing(&why), tokens: missing(&why), langs: Err(why) }
        }
    }
}

fn quote(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

async fn read_rows(out: &Location, m: &Manifest) -> Result<ShardData, String> {
    let ext = format!(".{}", m.format);
    let urls: Vec<String> = m
        .shards
        .iter()
        .filter(|s| s.path.ends_with(&ext))
        .map(|s| {
            let l = out.join(&s.path);
            dsproc_io::store::remember_storage(&l);
            l.canonical()
        })
        .collect();
    if urls.is_empty() {
        let why = "the version has no rows (no data shards)".to_string();
        return Ok(ShardData { chars: missing(&why), tokens: missing(&why), langs: Err(why) });
    }
    let ctx = crate::session::make_context(&crate::session::Engine::Local, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let df = if m.format == "parquet" {
        ctx.read_parquet(urls, datafusion::prelude::ParquetReadOptions::default()).await
    } else {
        let opts = datafusion::prelude::JsonReadOptions::default().file_extension(".jsonl.zst").file_compression_type(
            datafusion::datasource::file_format::file_compression_type::FileCompressionType::ZSTD,
        );
        ctx.read_json(urls, opts).await
    }
    .map_err(|e| e.to_string())?;
    let fields: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let has = |c: &str| fields.iter().any(|f| f == c);
    ctx.register_table("shards", df.into_view()).map_err(|e| e.to_string())?;
    let chars_expr =
        has("text").then(|| format!("arrow_cast(character_length(arrow_cast({}, 'Utf8')), 'Int64')", quote("text")));
    let (tok_expr, tok_col) = if has("n_tokens") {
        (Some(format!("arrow_cast({}, 'Int64')", quote("n_tokens"))), "n_tokens")
    } else if has("tokens") {
        (Some(format!("arrow_cast(cardinality({}), 'Int64')", quote("tokens"))), "tokens")
    } else {
        (None, "")
    };
    let mut chars = Vec::new();
    let mut toks = Vec::new();
    let mut sampled = 0usize;
    if chars_expr.is_some() || tok_expr.is_some() {
        let sql = format!(
            "SELECT {} AS chars, {} AS toks FROM shards LIMIT {SAMPLE_ROWS}",
            chars_expr.as_deref().unwrap_or("arrow_cast(NULL, 'Int64')"),
            tok_expr.as_deref().unwrap_or("arrow_cast(NULL, 'Int64')")
        );
        for b in query(&ctx, &sql).await? {
            sampled += b.num_rows();
            chars.extend(ints(&b, 0)?);
            toks.extend(ints(&b, 1)?);
        }
    }
    let note = |what: &str| {
        if (sampled as u64) < m.rows.out {
            format!("{what} of the first {} of {} rows (in shard order)", fmt_int(sampled as u64), fmt_int(m.rows.out))
        } else {
            format!("{what} of all {} rows", fmt_int(sampled as u64))
        }
    };
    let chars = match chars_expr {
        Some(_) => Sample::Values { values: chars, note: note("characters per document (text)") },
        None => missing("the shards have no text column"),
    };
    let tokens = match tok_expr {
        Some(_) => Sample::Values { values: toks, note: note(&format!("tokens per document ({tok_col})")) },
        None => missing("the shards have no tokens / n_tokens column"),
    };
    let langs = if has("lang") {
        let score = if has("lang_score") {
            format!("avg(arrow_cast({}, 'Float64'))", quote("lang_score"))
        } else {
            "arrow_cast(NULL, 'Float64')".into()
        };
        let sql = format!(
            "SELECT coalesce(arrow_cast({l}, 'Utf8'), '(none)') AS lang, arrow_cast(count(*), 'Int64') AS n, {score} AS s \
             FROM shards GROUP BY 1 ORDER BY n DESC, lang",
            l = quote("lang")
        );
        let mut rows = Vec::new();
        for b in query(&ctx, &sql).await? {
            let l = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).map_err(|e| e.to_string())?;
            let l = l.as_string::<i32>();
            let n = ints(&b, 1)?;
            let s = datafusion::arrow::compute::cast(b.column(2), &DataType::Float64).map_err(|e| e.to_string())?;
            let s = s.as_primitive::<Float64Type>();
            for (r, n) in n.iter().enumerate() {
                rows.push((l.value(r).to_string(), *n as u64, s.is_valid(r).then(|| s.value(r))));
            }
        }
        Ok(rows)
    } else {
        Err("the shards have no lang column (add a langid step to get one)".into())
    };
    Ok(ShardData { chars, tokens, langs })
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    ctx.sql(sql).await.map_err(|e| e.to_string())?.collect().await.map_err(|e| e.to_string())
}

/// The non-null values of column `i` as i64.
fn ints(b: &RecordBatch, i: usize) -> Result<Vec<i64>, String> {
    let a = datafusion::arrow::compute::cast(b.column(i), &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(a.as_primitive::<Int64Type>().iter().flatten().collect())
}

/// The first `limit` sequence lengths of a Megatron `.idx` file (header, then
/// i32 lengths); None when it is not one.
pub(crate) fn idx_lengths(bytes: &[u8], limit: usize) -> Option<Vec<i64>> {
    const HEADER: usize = 9 + 8 + 1 + 8 + 8;
    if bytes.len() < HEADER || &bytes[..9] != b"MMIDIDX\x00\x00" {
        return None;
    }
    let n = u64::from_le_bytes(bytes[18..26].try_into().ok()?) as usize;
    let body = &bytes[HEADER..];
    if body.len() / 4 < n {
        return None;
    }
    Some(
        body[..n.min(limit) * 4]
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    )
}

/// Sequence lengths from the Megatron `.idx` files (header, then i32 lengths).
async fn megatron_lengths(out: &Location, m: &Manifest) -> Sample {
    let mut values = Vec::new();
    let packed = m.shards.iter().any(|s| s.sequences.is_some());
    for s in m.shards.iter().filter(|s| s.path.ends_with(".idx")) {
        if values.len() >= SAMPLE_ROWS {
            break;
        }
        let bytes = match out.join(&s.path).get_opt().await {
            Ok(Some(b)) => b,
            Ok(None) => return missing(format!("{} is missing", s.path)),
            Err(e) => return missing(format!("{}: {}", s.path, String::from(e))),
        };
        match idx_lengths(&bytes, SAMPLE_ROWS - values.len()) {
            Some(v) => values.extend(v),
            None => return missing(format!("{} is not a Megatron index", s.path)),
        }
    }
    if values.is_empty() {
        return missing("no Megatron .idx files listed");
    }
    let what = if packed { "tokens per packed sequence" } else { "tokens per document" };
    let total: u64 = m.shards.iter().filter(|s| s.path.ends_with(".idx")).map(|s| s.sequences.unwrap_or(s.rows)).sum();
    let note = if (values.len() as u64) < total {
        format!(
            "{what} (from the .idx files) of the first {} of {} sequences",
            fmt_int(values.len() as u64),
            fmt_int(total)
        )
    } else {
        format!("{what} (from the .idx files)")
    };
    Sample::Values { values, note }
}

// ---------------------------------------------------------------------------
// Formatting

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// 1234567 → `1,234,567`.
pub fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

fn fmt_i(n: i64) -> String {
    if n < 0 {
        format!("−{}", fmt_int(n.unsigned_abs()))
    } else {
        fmt_int(n as u64)
    }
}

/// A float for people: thousands separators above 1,000, else 4 significant digits.
fn fmt_f(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        return fmt_i(v.round() as i64);
    }
    let digits = (4 - 1 - v.abs().log10().floor() as i32).clamp(0, 10) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    s.replace('-', "−")
}

fn fmt_pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "–".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

fn fmt_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", fmt_int(b))
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// 1500 → `1.5k`, 2000000 → `2M` (axis labels).
fn compact(v: f64) -> String {
    let (d, suffix) = match v.abs() {
        x if x >= 1e9 => (1e9, "G"),
        x if x >= 1e6 => (1e6, "M"),
        x if x >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let x = v / d;
    let s = if x.fract().abs() < 1e-9 { format!("{x:.0}") } else { format!("{x:.1}") };
    format!("{s}{suffix}")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------------------
// Charts (inline SVG)

const BLUE: &str = "#3b6fb6";
const GREY: &str = "#9aa5b1";
const RED: &str = "#c0392b";
const GREEN: &str = "#2e8b57";
const ORANGE: &str = "#d9822b";

struct Bar {
    label: String,
    value: f64,
    text: String,
    color: &'static str,
}

/// Horizontal bars: labels on the left, values on the right of each bar.
fn hbars(bars: &[Bar], label_w: u32) -> String {
    if bars.is_empty() {
        return String::new();
    }
    let (w, row) = (960u32, 26u32);
    let plot = w - label_w - 170;
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1e-300);
    let h = bars.len() as u32 * row + 8;
    let mut s = format!("<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">");
    let chars = (label_w / 7) as usize;
    for (i, b) in bars.iter().enumerate() {
        let y = 4 + i as u32 * row;
        let bw = ((b.value.max(0.0) / max) * plot as f64).max(if b.value > 0.0 { 1.0 } else { 0.0 });
        let _ = write!(
            s,
            "<g><title>{t}: {v}</title><text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{l}</text>\
             <rect x=\"{bx}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{bh}\" fill=\"{c}\" rx=\"2\"/>\
             <text x=\"{vx:.1}\" y=\"{ty}\">{v}</text></g>",
            t = esc(&b.label),
            l = esc(&truncate(&b.label, chars)),
            v = esc(&b.text),
            lx = label_w - 8,
            ty = y + 17,
            bx = label_w,
            bh = row - 6,
            c = b.color,
            vx = label_w as f64 + bw + 6.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// Vertical bars per label, one per series, with a y axis and a legend.
fn columns(labels: &[String], series: &[(&str, &'static str, Vec<f64>)], y_fmt: fn(f64) -> String) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let (w, h, left, bottom, top) = (960.0f64, 280.0f64, 64.0f64, 48.0f64, 24.0f64);
    let pw = w - left - 16.0;
    let ph = h - top - bottom;
    let max = nice_max(series.iter().flat_map(|s| s.2.iter().copied()).fold(0.0, f64::max));
    let gw = pw / labels.len() as f64;
    let bw = (gw * 0.8 / series.len().max(1) as f64).min(72.0);
    let pad = (gw - bw * series.len() as f64) / 2.0;
    let mut s = format!("<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">");
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = top + ph - ph * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" class=\"axis\">{t}</text>",
            x2 = left + pw,
            tx = left - 6.0,
            ty = y + 4.0,
            t = esc(&y_fmt(v)),
        );
    }
    let every = (labels.len() as f64 / 16.0).ceil().max(1.0) as usize;
    for (i, l) in labels.iter().enumerate() {
        let gx = left + gw * i as f64 + pad;
        for (j, (name, color, vals)) in series.iter().enumerate() {
            let v = vals.get(i).copied().unwrap_or(0.0);
            let bh = (v.max(0.0) / max) * ph;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{t}</title></rect>",
                x = gx + bw * j as f64,
                y = top + ph - bh,
                t = esc(&format!("{l}: {}{}", y_fmt(v), if series.len() > 1 { format!(" ({name})") } else { String::new() })),
            );
        }
        if i % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" class=\"axis\">{t}</text>",
                x = left + gw * (i as f64 + 0.5),
                y = top + ph + 16.0,
                t = esc(l)
            );
        }
    }
    if series.len() > 1 {
        for (j, (name, color, _)) in series.iter().enumerate() {
            let x = left + 10.0 + j as f64 * 160.0;
            let _ = write!(
                s,
                "<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{tx}\" y=\"{ty}\">{t}</text>",
                y = h - 18.0,
                tx = x + 18.0,
                ty = h - 8.0,
                t = esc(name)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Rows out per version as a line with a point per version (red: rejected, grey: expired).
fn history_line(rows: &[VersionRow], this: u64) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let (w, h, left, bottom, top) = (960.0f64, 220.0f64, 72.0f64, 36.0f64, 16.0f64);
    let pw = w - left - 32.0;
    let ph = h - top - bottom;
    let max = nice_max(rows.iter().map(|r| r.rows_out).max().unwrap_or(0).max(4) as f64);
    let x = |i: usize| if rows.len() == 1 { left + pw / 2.0 } else { left + pw * i as f64 / (rows.len() - 1) as f64 };
    let y = |v: u64| top + ph - ph * (v as f64 / max).min(1.0);
    let mut s = format!("<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">");
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let yy = top + ph - ph * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" class=\"axis\">{t}</text>",
            x2 = left + pw,
            tx = left - 6.0,
            ty = yy + 4.0,
            t = esc(&compact(v)),
        );
    }
    let pts: Vec<String> = rows.iter().enumerate().map(|(i, r)| format!("{:.1},{:.1}", x(i), y(r.rows_out))).collect();
    let _ = write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{BLUE}\" stroke-width=\"2\"/>", pts.join(" "));
    let every = (rows.len() as f64 / 20.0).ceil().max(1.0) as usize;
    for (i, r) in rows.iter().enumerate() {
        let color = match r.status.as_str() {
            "rejected" => RED,
            "expired" => GREY,
            "current" => GREEN,
            _ => BLUE,
        };
        let rad = if r.version == this { 6 } else { 4 };
        let _ = write!(
            s,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{rad}\" fill=\"{color}\"><title>{t}</title></circle>",
            cx = x(i),
            cy = y(r.rows_out),
            t = esc(&format!("version {} ({}): {} rows", r.version, r.status, fmt_int(r.rows_out)))
        );
        if i % every == 0 || r.version == this {
            let _ = write!(
                s,
                "<text x=\"{tx:.1}\" y=\"{ty}\" text-anchor=\"middle\" class=\"axis\">v{v}</text>",
                tx = x(i),
                ty = h - 14.0,
                v = r.version
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The smallest 1, 2, 2.5 or 5 × 10^k at or above `v` (a round axis maximum
/// that splits into four round ticks).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|x| *x >= v * (1.0 - 1e-12)).unwrap_or(10.0 * p)
}

/// 0, 1, 2, 5, 10, 20, 50, … : log-scaled bin edges.
fn edge(k: usize) -> i64 {
    if k == 0 {
        return 0;
    }
    let k = k - 1;
    let base = 10i64.saturating_pow((k / 3) as u32);
    base.saturating_mul([1, 2, 5][k % 3])
}

fn bin_of(v: i64) -> usize {
    let mut k = 0;
    while edge(k + 1) <= v && k < 60 {
        k += 1;
    }
    k
}

/// A log-binned histogram of `values` with summary statistics.
fn histogram(values: &[i64], unit: &str) -> String {
    if values.is_empty() {
        return "<p class=\"muted\">No values.</p>".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let mean = sorted.iter().map(|v| *v as f64).sum::<f64>() / sorted.len() as f64;
    let (lo, hi) = (bin_of(sorted[0]), bin_of(*sorted.last().unwrap_or(&0)));
    let mut counts = vec![0f64; hi - lo + 1];
    for v in &sorted {
        counts[bin_of(*v) - lo] += 1.0;
    }
    let labels: Vec<String> = (lo..=hi)
        .map(|k| {
            let (a, b) = (edge(k), edge(k + 1));
            if b - a == 1 {
                compact(a as f64)
            } else {
                format!("{}–{}", compact(a as f64), compact(b as f64))
            }
        })
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "<table class=\"stats\"><tr><th>{unit}</th><th>min</th><th>median</th><th>mean</th><th>p90</th><th>p99</th><th>max</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        fmt_int(sorted.len() as u64),
        fmt_i(sorted[0]),
        fmt_i(q(0.5)),
        fmt_f(mean),
        fmt_i(q(0.9)),
        fmt_i(q(0.99)),
        fmt_i(*sorted.last().unwrap_or(&0)),
    );
    s.push_str(&columns(&labels, &[("rows", BLUE, counts)], |v| compact(v.round())));
    s
}

// ---------------------------------------------------------------------------
// The page

struct Page<'a> {
    dataset: String,
    m: &'a Manifest,
    history: Result<Vec<VersionRow>, String>,
    quarantine: Quarantine,
    data: ShardData,
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
header{background:#243b53;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}
header .sub{opacity:.8;font-size:14px;margin-top:4px}
nav{padding:8px 32px;background:#d9e2ec;font-size:14px}
nav a{margin-right:16px;color:#243b53}
main{padding:8px 32px 32px;max-width:1040px}
section{overflow-x:auto;background:#fff;border-radius:6px;padding:12px 20px 16px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:18px;margin:4px 0 12px;color:#243b53}
h3{font-size:15px;margin:16px 0 8px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#f0f4f8}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.this td{background:#fff8e1;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 12px}
.card{background:#f0f4f8;border-radius:6px;padding:8px 14px;min-width:120px}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .k{font-size:12px;color:#52606d}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;font-size:13px;margin:8px 0}
dt{color:#52606d}dd{margin:0;word-break:break-all}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f0f4f8;padding:8px;overflow:auto;font-size:12px;max-height:320px}
.muted{color:#7b8794;font-size:13px}
.pass{color:#2e8b57;font-weight:600}.fail{color:#c0392b;font-weight:600}.skip{color:#7b8794;font-weight:600}
.status-current{color:#2e8b57;font-weight:600}.status-rejected{color:#c0392b;font-weight:600}.status-expired{color:#7b8794}
svg.chart{max-width:100%;height:auto;font-size:12px;display:block}
svg text{fill:#1f2933}svg .axis{fill:#52606d;font-size:11px}svg .grid{stroke:#e4e7eb}
footer{color:#7b8794;font-size:12px;padding:0 32px 24px}
";

impl Page<'_> {
    fn html(&self) -> String {
        let m = self.m;
        let mut s = String::with_capacity(64 * 1024);
        let title = format!("{} · version {}", m.job_name, m.version);
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
             <title>dsproc report: {t}</title><style>{STYLE}</style></head><body>\
             <header><h1>dsproc report: {t}</h1><div class=\"sub\">{d}</div></header><nav>",
            t = esc(&title),
            d = esc(&self.dataset)
        );
        for (id, name) in [
            ("summary", "Summary"),
            ("funnel", "Funnel"),
            ("drops", "Drops"),
            ("quarantine", "Quarantine"),
            ("lengths", "Lengths"),
            ("languages", "Languages"),
            ("checks", "Checks"),
            ("history", "History"),
        ] {
            let _ = write!(s, "<a href=\"#{id}\">{name}</a>");
        }
        s.push_str("</nav><main>");
        self.summary(&mut s);
        self.funnel(&mut s);
        self.drops(&mut s);
        self.quarantine(&mut s);
        self.lengths(&mut s);
        self.languages(&mut s);
        self.checks(&mut s);
        self.history(&mut s);
        let _ = writeln!(
            s,
            "</main><footer>Generated by dsproc {} at {} from the version's manifest{}.</footer></body></html>",
            esc(env!("CARGO_PKG_VERSION")),
            esc(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            if matches!(m.format.as_str(), "parquet" | "jsonl.zst") { ", its shards and quarantine files" } else { "" }
        );
        s
    }

    fn summary(&self, s: &mut String) {
        let m = self.m;
        let dropped: u64 = m.rows.dropped.values().sum();
        s.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
        let mut card = |id: &str, k: &str, v: String| {
            let _ = write!(
                s,
                "<div class=\"card\"><div class=\"v\" id=\"{id}\">{}</div><div class=\"k\">{k}</div></div>",
                esc(&v)
            );
        };
        card("rows-in", "rows in", fmt_int(m.rows.rows_in));
        card("rows-out", "rows out", fmt_int(m.rows.out));
        card("rows-dropped", "dropped", fmt_int(dropped));
        card("rows-quarantined", "quarantined", fmt_int(m.rows.quarantined));
        if let Some(c) = m.rows.carried {
            card("rows-carried", "carried from the parent", fmt_int(c));
        }
        let added: u64 = m.rows.added.values().sum();
        if added > 0 {
            card("rows-added", "added by steps", fmt_int(added));
        }
        if let Some(t) = m.tokens() {
            card("tokens", "tokens", fmt_int(t));
        }
        s.push_str("</div><dl>");
        let mut kv = |k: &str, v: String| {
            let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
        };
        kv("dataset", esc(&self.dataset));
        kv("job", esc(&m.job_name));
        kv("version", format!("{}", m.version));
        kv("status", format!("<span class=\"status-{0}\">{0}</span>", esc(&m.status)));
        kv("parent version", m.parent_version.map(|p| p.to_string()).unwrap_or_else(|| "none".into()));
        kv("created", esc(&m.created_at));
        kv("dataset_version", format!("<code>{}</code>", esc(&m.dataset_version)));
        kv("spec sha256", format!("<code>{}</code>", esc(&m.spec_sha256)));
        kv("run id", esc(&m.run_id));
        kv("engine", esc(&m.engine));
        kv("elapsed", format!("{:.1} s", m.elapsed_s));
        kv(
            "shards",
            format!(
                "{} {} shards, {} ({} bytes)",
                fmt_int(m.data_shards() as u64),
                esc(&m.format),
                fmt_bytes(m.shards.iter().map(|s| s.bytes).sum()),
                fmt_int(m.shards.iter().map(|s| s.bytes).sum())
            ),
        );
        kv(
            "inputs",
            format!("{} files, {}", fmt_int(m.inputs.len() as u64), fmt_bytes(m.inputs.iter().map(|i| i.bytes).sum())),
        );
        if let Some(d) = &m.input_dataset {
            kv("input dataset", format!("{} version {}", esc(&d.uri), d.version));
        }
        if let Some(inc) = &m.incremental {
            let mode = inc["mode"].as_str().unwrap_or("");
            let why = inc["reason"].as_str().map(|r| format!(": {}", esc(r))).unwrap_or_default();
            kv("build", format!("{}{why}", esc(mode)));
        }
        kv("workers", esc(&m.workers.join(", ")));
        kv("dsproc", esc(&m.dsproc_version));
        if !m.schema.is_empty() {
            let cols: Vec<String> =
                m.schema.iter().map(|c| format!("<code>{}</code>: {}", esc(&c.name), esc(&c.data_type))).collect();
            kv("columns", cols.join(", "));
        }
        s.push_str("</dl></section>");
    }

    fn funnel(&self, s: &mut String) {
        let m = self.m;
        s.push_str("<section id=\"funnel\"><h2>Row funnel</h2>");
        let mut stages: Vec<(String, u64)> = vec![("input rows".into(), m.rows.rows_in)];
        if m.rows.quarantined > 0 {
            stages.push(("read (less quarantined)".into(), m.rows.rows_in.saturating_sub(m.rows.quarantined)));
        }
        for st in &m.steps {
            stages.push((format!("after step {}: {}", st.step, st.op), st.rows_out));
        }
        if let Some(c) = m.rows.carried {
            stages.push((format!("+ carried from version {}", m.parent_version.unwrap_or(0)), c));
        }
        stages.push(("output rows".into(), m.rows.out));
        let bars: Vec<Bar> = stages
            .iter()
            .enumerate()
            .map(|(i, (l, v))| Bar {
                label: l.clone(),
                value: *v as f64,
                text: if i == 0 { fmt_int(*v) } else { format!("{} ({})", fmt_int(*v), fmt_pct(*v, m.rows.rows_in)) },
                color: if i == 0 || i == stages.len() - 1 { BLUE } else { GREY },
            })
            .collect();
        s.push_str(&hbars(&bars, 300));
        if m.steps.is_empty() {
            s.push_str("<p class=\"muted\">The job has no steps.</p>");
        } else {
            s.push_str("<table><tr><th>step</th><th>op</th><th class=\"n\">rows in</th><th class=\"n\">rows out</th><th class=\"n\">change</th><th>counters</th></tr>");
            for st in &m.steps {
                let change = st.rows_out as i64 - st.rows_in as i64;
                let mut stats: Vec<String> = st
                    .stats
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| format!("{}: {}", esc(k), fmt_int(*v)))
                    .collect();
                let zeros = st.stats.values().filter(|v| **v == 0).count();
                if zeros > 0 {
                    stats.push(format!("<span class=\"muted\">{zeros} more at 0</span>"));
                }
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    st.step,
                    esc(&st.op),
                    fmt_int(st.rows_in),
                    fmt_int(st.rows_out),
                    if change > 0 { format!("+{}", fmt_i(change)) } else { fmt_i(change) },
                    stats.join("<br>")
                );
            }
            s.push_str("</table>");
        }
        s.push_str("</section>");
    }

    fn drops(&self, s: &mut String) {
        let m = self.m;
        s.push_str("<section id=\"drops\"><h2>Dropped rows by reason</h2>");
        let total: u64 = m.rows.dropped.values().sum();
        if m.rows.dropped.is_empty() {
            s.push_str("<p class=\"muted\">No rows were dropped.</p>");
        } else {
            let mut rows: Vec<(&String, &u64)> = m.rows.dropped.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let bars: Vec<Bar> = rows
                .iter()
                .map(|(k, v)| Bar {
                    label: (*k).clone(),
                    value: **v as f64,
                    text: format!("{} ({})", fmt_int(**v), fmt_pct(**v, m.rows.rows_in)),
                    color: ORANGE,
                })
                .collect();
            s.push_str(&hbars(&bars, 320));
            s.push_str("<table><tr><th>reason</th><th>step</th><th>op</th><th>rule</th><th class=\"n\">rows</th><th class=\"n\">of input</th><th class=\"n\">of dropped</th></tr>");
            for (k, v) in rows {
                let mut parts = k.splitn(3, ':');
                let (a, b, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let _ = write!(
                    s,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(k),
                    esc(a),
                    esc(b),
                    esc(c),
                    fmt_int(*v),
                    fmt_pct(*v, m.rows.rows_in),
                    fmt_pct(*v, total)
                );
            }
            let _ = write!(
                s,
                "<tr><th>total</th><th></th><th></th><th></th><th class=\"n\">{}</th><th class=\"n\">{}</th><th></th></tr></table>",
                fmt_int(total),
                fmt_pct(total, m.rows.rows_in)
            );
        }
        let mut extra = |title: &str, map: &BTreeMap<String, u64>| {
            if map.is_empty() {
                return;
            }
            let _ = write!(s, "<h3>{}</h3><table><tr><th>key</th><th class=\"n\">rows</th></tr>", esc(title));
            for (k, v) in map {
                let _ = write!(s, "<tr><td><code>{}</code></td><td class=\"n\">{}</td></tr>", esc(k), fmt_int(*v));
            }
            s.push_str("</table>");
        };
        extra("Rows added by steps", &m.rows.added);
        if let Some(r) = &m.rows.removed {
            extra("Rows of the parent version left out (incremental)", r);
        }
        extra("Values of undeclared input keys dropped", &m.extra_columns_dropped);
        if let Some(d) = &m.duplicate_ids {
            let _ = write!(
                s,
                "<p>Duplicate ids (<code>on_duplicate_id = {}</code>): {} ids on more than one row, {} extra rows.</p>",
                esc(&d.on_duplicate_id),
                fmt_int(d.ids),
                fmt_int(d.rows)
            );
        }
        s.push_str("</section>");
    }

    fn quarantine(&self, s: &mut String) {
        let (m, q) = (self.m, &self.quarantine);
        s.push_str("<section id=\"quarantine\"><h2>Quarantine</h2>");
        let _ = write!(
            s,
            "<p>{} rows quarantined ({} of input) in {} quarantine files.</p>",
            fmt_int(m.rows.quarantined),
            fmt_pct(m.rows.quarantined, m.rows.rows_in),
            fmt_int(m.quarantine.len() as u64)
        );
        if q.truncated {
            let _ = write!(
                s,
                "<p class=\"muted\">Counts below are from the first {} of the quarantine files.</p>",
                esc(&fmt_bytes(QUARANTINE_READ_LIMIT))
            );
        }
        for e in &q.errors {
            let _ = write!(s, "<p class=\"fail\">{}</p>", esc(e));
        }
        let table = |s: &mut String, title: &str, head: &str, map: &BTreeMap<String, u64>| {
            let mut rows: Vec<(&String, &u64)> = map.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let _ = write!(s, "<h3>{title}</h3><table><tr><th>{head}</th><th class=\"n\">rows</th></tr>");
            for (k, v) in rows.iter().take(50) {
                let _ = write!(s, "<tr><td><code>{}</code></td><td class=\"n\">{}</td></tr>", esc(k), fmt_int(**v));
            }
            if rows.len() > 50 {
                let _ =
                    write!(s, "<tr><td class=\"muted\">… {} more</td><td></td></tr>", fmt_int(rows.len() as u64 - 50));
            }
            s.push_str("</table>");
        };
        if !q.by_reason.is_empty() {
            table(s, "By reason", "reason", &q.by_reason);
            table(s, "By input file", "file", &q.by_file);
            s.push_str("<h3>First records</h3><table><tr><th>where</th><th>reason</th></tr>");
            for (w, r) in &q.examples {
                let _ = write!(s, "<tr><td><code>{}</code></td><td>{}</td></tr>", esc(w), esc(r));
            }
            s.push_str("</table><p class=\"muted\">The raw rows are in the quarantine files (not copied here).</p>");
        }
        if !q.files.is_empty() {
            s.push_str("<h3>Quarantine files</h3><table><tr><th>file</th><th class=\"n\">records</th></tr>");
            for (f, n) in &q.files {
                let _ = write!(s, "<tr><td><code>{}</code></td><td class=\"n\">{}</td></tr>", esc(f), fmt_int(*n));
            }
            s.push_str("</table>");
        }
        s.push_str("</section>");
    }

    fn lengths(&self, s: &mut String) {
        s.push_str("<section id=\"lengths\"><h2>Document lengths</h2>");
        for (title, sample, unit) in [
            ("Characters per document", &self.data.chars, "rows sampled"),
            ("Tokens per document", &self.data.tokens, "rows sampled"),
        ] {
            let _ = write!(s, "<h3>{title}</h3>");
            match sample {
                Sample::Values { values, note } => {
                    let _ = write!(s, "<p class=\"muted\">{}; log-scaled bins, each from its lower bound up to (not including) its upper one.</p>", esc(note));
                    s.push_str(&histogram(values, unit));
                }
                Sample::Missing(why) => {
                    let _ = write!(s, "<p class=\"muted\">{}.</p>", esc(why));
                }
            }
        }
        if self.m.format == "mds" {
            if let Some(t) = self.m.tokens() {
                let docs: u64 = self.m.shards.iter().map(|s| s.rows).sum();
                let _ = write!(
                    s,
                    "<p>From the manifest: {} tokens in {} rows ({} per row on average).</p>",
                    fmt_int(t),
                    fmt_int(docs),
                    fmt_f(if docs > 0 { t as f64 / docs as f64 } else { 0.0 })
                );
            }
        }
        s.push_str("</section>");
    }

    fn languages(&self, s: &mut String) {
        s.push_str("<section id=\"languages\"><h2>Languages</h2>");
        match &self.data.langs {
            Err(why) => {
                let _ = write!(s, "<p class=\"muted\">No language column: {}.</p>", esc(why));
            }
            Ok(rows) => {
                let total: u64 = rows.iter().map(|r| r.1).sum();
                let _ = write!(
                    s,
                    "<p>{} languages over {} rows (the <code>lang</code> column).</p>",
                    rows.len(),
                    fmt_int(total)
                );
                let bars: Vec<Bar> = rows
                    .iter()
                    .take(30)
                    .map(|(l, n, _)| Bar {
                        label: l.clone(),
                        value: *n as f64,
                        text: format!("{} ({})", fmt_pct(*n, total), fmt_int(*n)),
                        color: BLUE,
                    })
                    .collect();
                s.push_str(&hbars(&bars, 160));
                s.push_str("<table><tr><th>lang</th><th class=\"n\">rows</th><th class=\"n\">share</th><th class=\"n\">mean lang_score</th></tr>");
                for (l, n, sc) in rows {
                    let _ = write!(
                        s,
                        "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                        esc(l),
                        fmt_int(*n),
                        fmt_pct(*n, total),
                        sc.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
                    );
                }
                s.push_str("</table>");
            }
        }
        s.push_str("</section>");
    }

    fn checks(&self, s: &mut String) {
        let m = self.m;
        s.push_str("<section id=\"checks\"><h2>Checks</h2>");
        if m.checks.is_empty() {
            s.push_str("<p class=\"muted\">The job has no [[checks]].</p></section>");
            return;
        }
        s.push_str("<table><tr><th>#</th><th>check</th><th>severity</th><th>result</th><th>measure</th><th class=\"n\">value</th><th>threshold</th></tr>");
        let mut plots = String::new();
        for c in &m.checks {
            let result = if c.get("error").is_some() {
                "<span class=\"fail\">error</span>"
            } else if c.get("skipped").is_some() {
                "<span class=\"skip\">skipped</span>"
            } else if c["passed"].as_bool() == Some(true) {
                "<span class=\"pass\">passed</span>"
            } else {
                "<span class=\"fail\">FAILED</span>"
            };
            let measures = measures(c);
            let n = measures.len().max(1);
            let _ = write!(
                s,
                "<tr><td rowspan=\"{n}\">{}</td><td rowspan=\"{n}\"><code>{}</code></td><td rowspan=\"{n}\">{}</td><td rowspan=\"{n}\">{result}</td>",
                esc(&c["check"].to_string()),
                esc(c["name"].as_str().unwrap_or("?")),
                esc(c["severity"].as_str().unwrap_or("")),
            );
            if measures.is_empty() {
                let note = c["error"].as_str().or(c["skipped"].as_str()).unwrap_or("");
                let _ = write!(s, "<td colspan=\"3\">{}</td></tr>", esc(note));
            }
            for (i, me) in measures.iter().enumerate() {
                if i > 0 {
                    s.push_str("<tr>");
                }
                let _ = write!(
                    s,
                    "<td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(&me.label),
                    esc(&me.shown),
                    esc(&me.threshold)
                );
            }
            // Plots: a distribution's bins, else each measure's value against its threshold.
            let title = format!("check {} ({})", c["check"], c["name"].as_str().unwrap_or("?"));
            for k in ["psi", "js_distance"] {
                let Some(d) = c.get(k).filter(|d| d.is_object()) else { continue };
                let edges: Vec<f64> = floats(&d["bins"]["edges"]);
                let (base, new) = (floats(&d["bins"]["baseline"]), floats(&d["bins"]["new"]));
                if base.is_empty() {
                    continue;
                }
                let categorical = d["bins"].get("labels").is_some();
                let labels: Vec<String> = if categorical {
                    d["bins"]["labels"]
                        .as_array()
                        .map(|a| a.iter().map(|l| l.as_str().unwrap_or("").to_string()).collect())
                        .unwrap_or_default()
                } else {
                    let mut l: Vec<String> = edges.iter().map(|e| format!("≤{}", compact(*e))).collect();
                    l.push(edges.last().map(|e| format!(">{}", compact(*e))).unwrap_or_else(|| "all".into()));
                    if d["bins"].get("nulls").is_some() {
                        l.push("null".into());
                    }
                    l
                };
                let _ = write!(
                    plots,
                    "<h3>{}: {} of {} against version {}</h3><p class=\"muted\">{}</p>",
                    esc(&title),
                    esc(k),
                    esc(d["column"].as_str().unwrap_or("")),
                    esc(&c["baseline_version"].to_string()),
                    if categorical {
                        "Share of rows per value (largest in the baseline first)."
                    } else {
                        "Share of rows per bin (deciles of the baseline)."
                    }
                );
                plots.push_str(&columns(&labels, &[("baseline", GREY, base), ("this version", BLUE, new)], |v| {
                    format!("{}%", fmt_f(v * 100.0))
                }));
            }
            if let Some(d) = c.get("cosine_to_centroid").filter(|d| d.is_object()) {
                let edges: Vec<f64> = floats(&d["bins"]["edges"]);
                let (base, new) = (floats(&d["bins"]["baseline"]), floats(&d["bins"]["new"]));
                if !base.is_empty() && edges.len() == base.len() + 1 {
                    let labels: Vec<String> = edges.windows(2).map(|w| format!("{:.3}", (w[0] + w[1]) / 2.0)).collect();
                    let _ = write!(
                        plots,
                        "<h3>{}: cosine similarity to the baseline centroid, against version {}</h3><p class=\"muted\">Share of sampled documents per bin ({} new, {} baseline; the baseline's own documents against the centroid of the others).</p>",
                        esc(&title),
                        esc(&c["baseline_version"].to_string()),
                        esc(&c["sample"]["new"].to_string()),
                        esc(&c["sample"]["baseline"].to_string())
                    );
                    plots.push_str(&columns(&labels, &[("baseline", GREY, base), ("this version", BLUE, new)], |v| {
                        format!("{}%", fmt_f(v * 100.0))
                    }));
                }
            }
            let bars: Vec<Bar> = measures
                .iter()
                .filter_map(|me| Some((me, me.value?, me.limit?)))
                .flat_map(|(me, v, t)| {
                    let ok = me.passed.unwrap_or(true);
                    [
                        Bar {
                            label: format!("{}: value", me.label),
                            value: v.abs(),
                            text: fmt_f(v),
                            color: if ok { GREEN } else { RED },
                        },
                        Bar { label: format!("{}: threshold", me.label), value: t.abs(), text: fmt_f(t), color: GREY },
                    ]
                })
                .collect();
            if !bars.is_empty() {
                let _ = write!(plots, "<h3>{}: value against threshold</h3>", esc(&title));
                plots.push_str(&hbars(&bars, 360));
            }
            if let Some(r) = c["result"].as_str() {
                let _ = write!(plots, "<h3>{}: query result</h3><pre>{}</pre>", esc(&title), esc(r));
            }
        }
        s.push_str("</table>");
        s.push_str(&plots);
        s.push_str("<details><summary>Raw check results</summary><pre>");
        s.push_str(&esc(&serde_json::to_string_pretty(&m.checks).unwrap_or_default()));
        s.push_str("</pre></details></section>");
    }

    fn history(&self, s: &mut String) {
        s.push_str("<section id=\"history\"><h2>Version history</h2>");
        match &self.history {
            Err(e) => {
                let _ = write!(s, "<p class=\"fail\">Could not list the versions: {}</p>", esc(e));
            }
            Ok(rows) if rows.is_empty() => {
                s.push_str("<p class=\"muted\">No version records (a dataset from before versions).</p>");
            }
            Ok(rows) => {
                s.push_str(&history_line(rows, self.m.version));
                s.push_str("<table><tr><th class=\"n\">version</th><th>status</th><th>created</th><th>job</th><th class=\"n\">rows out</th><th class=\"n\">shards</th><th class=\"n\">bytes</th><th class=\"n\">tokens</th><th class=\"n\">parent</th><th>dataset_version</th></tr>");
                for r in rows.iter().rev() {
                    let _ = write!(
                        s,
                        "<tr{}><td class=\"n\">{}</td><td class=\"status-{st}\">{st}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
                        if r.version == self.m.version { " class=\"this\"" } else { "" },
                        r.version,
                        esc(r.created_at.get(..19).unwrap_or(&r.created_at)),
                        esc(&r.job),
                        fmt_int(r.rows_out),
                        fmt_int(r.shards as u64),
                        fmt_bytes(r.bytes),
                        r.tokens.map(fmt_int).unwrap_or_else(|| "–".into()),
                        r.parent.map(|p| p.to_string()).unwrap_or_else(|| "–".into()),
                        esc(r.dataset_version.get(..12).unwrap_or(&r.dataset_version)),
                        st = esc(&r.status),
                    );
                }
                s.push_str("</table>");
            }
        }
        s.push_str("</section>");
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default()
}

/// One measured quantity of a check.
struct Measure {
    label: String,
    shown: String,
    threshold: String,
    value: Option<f64>,
    /// The numeric threshold, when a value-vs-threshold bar makes sense.
    limit: Option<f64>,
    passed: Option<bool>,
}

/// What a check result measured, by the keys `checks::evaluate` records.
fn measures(c: &Value) -> Vec<Measure> {
    let mut out = Vec::new();
    let num = |v: &Value| v.as_f64();
    let shown = |v: &Value| match v.as_f64() {
        Some(x) => fmt_f(x),
        None => v.to_string(),
    };
    if let Some(r) = num(&c["per_million_chars"]) {
        out.push(Measure {
            label: "PII detections per million characters".into(),
            shown: fmt_f(r),
            threshold: format!("≤ {}", shown(&c["threshold"])),
            value: Some(r),
            limit: num(&c["threshold"]),
            passed: c["passed"].as_bool(),
        });
    }
    if let Some(r) = c.get("rows_change").filter(|r| r.is_object()) {
        let change = num(&r["change"]).unwrap_or(0.0);
        out.push(Measure {
            label: format!(
                "rows vs version {} ({} vs {})",
                c["baseline_version"],
                fmt_int(r["rows"].as_u64().unwrap_or(0)),
                fmt_int(r["baseline_rows"].as_u64().unwrap_or(0))
            ),
            shown: format!("{:+.1}%", change * 100.0),
            threshold: format!("within {}", r["bounds"].as_str().unwrap_or("")),
            value: None,
            limit: None,
            passed: r["passed"].as_bool(),
        });
    }
    for k in ["psi", "js_distance"] {
        if let Some(d) = c.get(k).filter(|d| d.is_object()) {
            out.push(Measure {
                label: format!("{k} of {}", d["column"].as_str().unwrap_or("")),
                shown: shown(&d["value"]),
                threshold: format!("≤ {}", shown(&d["threshold"])),
                value: num(&d["value"]),
                limit: num(&d["threshold"]),
                passed: d["passed"].as_bool(),
            });
        }
    }
    if let (Some(metric), true) = (c["metric"].as_str(), c.get("annotators").is_some()) {
        out.push(Measure {
            label: format!(
                "{metric} over {} items, {} annotators",
                fmt_int(c["items"].as_u64().unwrap_or(0)),
                c["annotators"]
            ),
            shown: c["value"].as_f64().map(fmt_f).unwrap_or_else(|| "undefined".into()),
            threshold: format!("≥ {}", shown(&c["threshold"])),
            value: num(&c["value"]),
            limit: num(&c["threshold"]),
            passed: c["passed"].as_bool(),
        });
    }
    if let (Some(pairs), Some(share)) = (c["pairs"].as_u64(), num(&c["share"])) {
        out.push(Measure {
            label: format!("share of rows in near-duplicate pairs with different labels ({} pairs)", fmt_int(pairs)),
            shown: fmt_f(share),
            threshold: format!("≤ {}", shown(&c["threshold"])),
            value: Some(share),
            limit: num(&c["threshold"]),
            passed: c["passed"].as_bool(),
        });
    }
    if c["name"].as_str() == Some("embedding_drift") && c.get("sample").is_some_and(|s| s.is_object()) {
        let gate = c["method"].as_str().unwrap_or("");
        for (k, label) in [
            ("auc", "domain classifier ROC-AUC (held out)"),
            ("mmd", "MMD² (RBF kernel)"),
            ("mean_distance", "distance between mean embeddings"),
        ] {
            let d = &c[k];
            out.push(Measure {
                label: format!("{label}{}", if gate == k { " — gates the check" } else { "" }),
                shown: shown(&d["value"]),
                threshold: format!("≤ {}", shown(&d["threshold"])),
                value: num(&d["value"]),
                limit: num(&d["threshold"]),
                passed: d["passed"].as_bool(),
            });
        }
        let cc = &c["cosine_to_centroid"];
        out.push(Measure {
            label: format!(
                "cosine to the baseline centroid: mean {} vs {} (KS p = {})",
                shown(&cc["new_mean"]),
                shown(&cc["baseline_mean"]),
                shown(&cc["ks_p_value"])
            ),
            shown: format!("KS {}", shown(&cc["ks_statistic"])),
            threshold: "reported".into(),
            value: None,
            limit: None,
            passed: None,
        });
    }
    if c["name"].as_str() == Some("sql") {
        if let Some(n) = c["rows"].as_u64() {
            out.push(Measure {
                label: "query result rows".into(),
                shown: fmt_int(n),
                threshold: "no rows, or one row whose first column is true".into(),
                value: None,
                limit: None,
                passed: c["passed"].as_bool(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_text_are_formatted_for_people() {
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(1000), "1,000");
        assert_eq!(fmt_int(1234567), "1,234,567");
        assert_eq!(fmt_i(-1234), "−1,234");
        assert_eq!(fmt_f(0.123456), "0.1235");
        assert_eq!(fmt_f(12345.6), "12,346");
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(compact(2000.0), "2k");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!((nice_max(13.0), nice_max(0.37), nice_max(1000.0), nice_max(0.0)), (20.0, 0.5, 1000.0, 1.0));
    }

    #[test]
    fn length_bins_are_log_scaled() {
        let edges: Vec<i64> = (0..8).map(edge).collect();
        assert_eq!(edges, vec![0, 1, 2, 5, 10, 20, 50, 100]);
        assert_eq!((bin_of(0), bin_of(1), bin_of(4), bin_of(5), bin_of(99), bin_of(100)), (0, 1, 2, 3, 6, 7));
    }
}
