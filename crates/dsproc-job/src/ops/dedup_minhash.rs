//! `dedup_minhash`: near-duplicate removal with MinHash LSH and connected
//! components computed inside the plan.
//!
//! Lowering (every arrow is a streaming or spilling DataFusion operator; no step
//! gathers the corpus, the pairs or the signatures in one process):
//! 1. signatures → band keys (`minhash_bands`), one row per (doc, band key);
//!    an aggregate per key (`dedup_bucket_edges`) links every member to the key's best member and to its
//!    `BUCKET_LINKS` predecessors (a bucket of m docs gives at most 5m edges, not
//!    m²/2 pairs);
//! 2. `verify`: edges are grouped by their smaller end (the anchor); one join
//!    brings each anchor's text once and each candidate's text once per edge, and
//!    the `minhash_verify` window function (bounded: it keeps only the anchor's
//!    shingle set) keeps the edges whose exact Jaccard reaches `threshold`;
//! 3. connected components by alternating large-star / small-star rounds
//!    (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014), each a
//!    hash aggregate of neighbour lists per node over the edge list (the
//!    `dedup_large_star` / `dedup_small_star` functions); a round counts the edges it changed, and the
//!    graph is a forest of stars rooted at each component's best document once a
//!    round changes nothing. The plan holds `max_iterations` rounds (rounds after
//!    convergence pass the star forest through unchanged); the driver reads the
//!    per-round counts, reports `iterations`, and fails the job if the last round
//!    still changed edges;
//! 4. the input is joined against the star leaves: survivors only, or every row
//!    with `cluster_id` / `cluster_size`.
//!
//! "Best" is a total order on a per-document key (`node`): the id for
//! `keep = "smallest_id"`, else [`dsproc_functions::minhash::rank_key`] of the value
//! to maximise and the id. Survivors therefore do not depend on partitioning,
//! threads or engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{Extension, LogicalPlan};
use serde::{Deserialize, Serialize};

use dsproc_common::DsprocError;
use dsproc_exec::StepStatsNode;
use dsproc_functions::minhash::{optimal_bands, MinHashParams, Shingle, SIGNATURE_VERSION};

use super::{quote_str, sql_over_views, Incrementality, Op, OpError, OpParseError, PlanContext};

/// In each bucket, every member is linked to the bucket's best member and to the
/// `BUCKET_LINKS` members before it in an order drawn from the bucket key (a
/// document meets different partners in each band): every pair of a bucket of up
/// to `BUCKET_LINKS + 1` documents is a candidate, and a larger bucket stays
/// connected through dissimilar members. Measured on scancode_licenses
/// (benches/minhash_quality.py, seeds 42 and 7): clustering recall 0.967 / 0.965
/// with 4 random links, 0.957 with 4 links in id order, 0.93 with one.
const BUCKET_LINKS: usize = 4;

/// Near-duplicate removal: MinHash LSH and connected components, inside the plan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupMinhash {
    /// Jaccard similarity of the shingle sets at or above which two documents are
    /// near-duplicates.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Signature length.
    #[serde(default = "default_num_perm")]
    pub num_perm: usize,
    /// Shingle length in words (or characters with `shingle = "char"`).
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// `word` or `char` shingles.
    #[serde(default = "default_shingle")]
    pub shingle: Shingle,
    /// Seed of the hash family (recorded in the manifest).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// LSH bands and rows per band; by default chosen from `threshold` and `num_perm`
    /// to minimise weighted false positives and negatives (weights 0.05/0.95 with
    /// `verify`, which removes false positives; 0.5/0.5 without, as datasketch).
    pub bands: Option<usize>,
    /// Rows per LSH band (see `bands`).
    pub rows: Option<usize>,
    /// Compute the exact Jaccard of every candidate pair and drop those below
    /// `threshold`.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Which document of a cluster survives: `smallest_id`, `longest` (most
    /// characters, then smallest id), or the name of a numeric column to maximise
    /// (nulls lose; ties go to the smallest id).
    #[serde(default)]
    pub keep: Keep,
    /// Keep every row and add `cluster_id` (the survivor's id) and `cluster_size`
    /// instead of removing near-duplicates.
    #[serde(default)]
    pub keep_cluster_column: bool,
    /// Connected-components rounds in the plan (star contraction
    /// needs about log2 of a component's diameter); the job fails if the
    /// components have not converged by then.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: usize,
    /// Save the band keys of the survivors in the version this run commits
    /// (`vNNNNN/_index/step-NNN/`, on the output's store), and write a pointer to
    /// them at this directory or URI (`index.json`, replaced on each run), for
    /// later jobs' `against`.
    pub save_index: Option<String>,
    /// Saved indexes with the same signature parameters: documents sharing a band
    /// key with one are removed as well. Each is a dsproc dataset root (its current
    /// version's saved index, so it follows rebuilds and `gc`), or a directory or
    /// URI holding an `index.json` (a `save_index` pointer, pinned to one version).
    #[serde(default)]
    pub against: Vec<String>,
}

fn default_threshold() -> f64 {
    0.8
}
fn default_num_perm() -> usize {
    128
}
fn default_ngram() -> usize {
    5
}
fn default_shingle() -> Shingle {
    Shingle::Word
}
fn default_seed() -> u64 {
    42
}
fn default_true() -> bool {
    true
}

/// `dedup_minhash.keep`: which document of a cluster survives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(from = "String", into = "String")]
#[schemars(with = "String")]
pub enum Keep {
    /// The smallest id.
    #[default]
    SmallestId,
    /// The most characters, then the smallest id.
    Longest,
    /// The largest value of this numeric column (nulls lose), then the smallest id.
    Column(String),
}

impl From<String> for Keep {
    fn from(s: String) -> Self {
        match s.as_str() {
            "smallest_id" => Self::SmallestId,
            "longest" => Self::Longest,
            _ => Self::Column(s),
        }
    }
}

impl From<Keep> for String {
    fn from(k: Keep) -> Self {
        match k {
            Keep::SmallestId => "smallest_id".into(),
            Keep::Longest => "longest".into(),
            Keep::Column(c) => c,
        }
    }
}
fn default_max_iterations() -> usize {
    10
}

fn invalid(key: &str, message: impl Into<String>) -> OpParseError {
    OpParseError::invalid(key, message)
}

impl DedupMinhash {
    /// The signature parameters, with the band layout resolved.
    pub fn params(&self) -> Result<MinHashParams, OpParseError> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(invalid("threshold", format!("must be in (0, 1], got {}", self.threshold)));
        }
        let shingle = self.shingle;
        if self.num_perm == 0 || self.num_perm > 8192 {
            return Err(invalid("num_perm", format!("must be in 1..=8192, got {}", self.num_perm)));
        }
        let (bands, rows) = match (self.bands, self.rows) {
            (Some(b), Some(r)) => (b, r),
            (Some(b), None) => (b, self.num_perm / b.max(1)),
            (None, Some(r)) => (self.num_perm / r.max(1), r),
            (None, None) => {
                let (fp, fnw) = if self.verify { (0.05, 0.95) } else { (0.5, 0.5) };
                optimal_bands(self.threshold, self.num_perm, fp, fnw)
            }
        };
        let p = MinHashParams { num_perm: self.num_perm, bands, rows, ngram: self.ngram, shingle, seed: self.seed };
        p.check().map_err(|e| invalid(if self.ngram == 0 { "ngram" } else { "bands" }, e.to_string()))?;
        if self.max_iterations == 0 || self.max_iterations > 64 {
            return Err(invalid("max_iterations", format!("must be in 1..=64, got {}", self.max_iterations)));
        }
        if self.keep == Keep::Column(String::new()) {
            return Err(invalid("keep", "give smallest_id, longest or a numeric column"));
        }
        Ok(p)
    }

    /// SQL for a document's node key (over columns `id`, `text` and the keep column).
    /// `t` qualifies the columns (`""` or `"t."`).
    fn node_sql(&self, schema: &datafusion::common::DFSchema, step: usize, t: &str) -> Result<String, DsprocError> {
        Ok(match &self.keep {
            // Utf8, not Utf8View: views into many large buffers make every take,
            // filter and memory count of the joins and sorts below slow
            Keep::SmallestId => format!("arrow_cast({t}id, 'Utf8')"),
            Keep::Longest => format!("dedup_rank(character_length({t}text), {t}id)"),
            Keep::Column(c) => {
                let field = schema.field_with_unqualified_name(c).map_err(|_| {
                    DsprocError::usage(format!(
                        "step {step} (dedup_minhash): keep = {c:?} is neither smallest_id, longest nor a column of the input"
                    ))
                })?;
                if !field.data_type().is_numeric() {
                    return Err(DsprocError::usage(format!(
                        "step {step} (dedup_minhash): keep column {c:?} is {}, not numeric",
                        field.data_type()
                    )));
                }
                format!("dedup_rank({t}\"{}\", {t}id)", c.replace('"', "\"\""))
            }
        })
    }

    /// SQL turning a node key back into the document id.
    fn node_id_sql(&self, node: &str, pfx: bool) -> String {
        match (self.keep == Keep::SmallestId, pfx) {
            (true, false) => node.to_string(),
            (true, true) => format!("substr({node}, 2)"),
            (false, false) => format!("substr({node}, 17)"),
            (false, true) => format!("substr({node}, 18)"),
        }
    }

    /// What the manifest records about the step (the signature version and layout).
    fn manifest_info(&self, base: &std::path::Path) -> serde_json::Value {
        let p = self.params().expect("checked when parsed");
        let abs = |u: &str| {
            if u.split_once("://").is_some_and(|(scheme, _)| !scheme.eq_ignore_ascii_case("file")) {
                u.to_string()
            } else {
                base.join(u.strip_prefix("file://").unwrap_or(u)).display().to_string()
            }
        };
        serde_json::json!({
            "save_index": self.save_index.as_deref().map(abs),
            "against": self.against.iter().map(|u| abs(u)).collect::<Vec<_>>(),
            "signature_version": SIGNATURE_VERSION,
            "hash_family": "minhash multiply-add-shift over xxh3-64 shingle hashes",
            "seed": p.seed,
            "num_perm": p.num_perm,
            "bands": p.bands,
            "rows": p.rows,
            "shingle": self.shingle,
            "ngram": p.ngram,
            "threshold": self.threshold,
            "verify": self.verify,
            "keep": self.keep,
            "max_iterations": self.max_iterations,
        })
    }
}

/// Wraps `plan` in a statistics node that sums the UInt32 fields of the struct
/// column `col` (built by [`counter`]) into the step's counters.
fn counted(pc: &PlanContext<'_>, plan: LogicalPlan, col: &str) -> LogicalPlan {
    super::summed(pc, plan, "dedup_minhash", col)
}

fn counter(name: &str, value_sql: &str) -> String {
    format!("named_struct('{name}', arrow_cast({value_sql}, 'UInt32'))")
}

impl Op for DedupMinhash {
    const NAME: &'static str = "dedup_minhash";
    const VERSION: u32 = 1;

    fn check(&self) -> Result<(), OpParseError> {
        self.params().map(|_| ())
    }
    fn info(&self, base: &std::path::Path) -> Option<serde_json::Value> {
        Some(self.manifest_info(base))
    }
    fn finish_stats(
        info: Option<&serde_json::Value>,
        counters: &mut BTreeMap<String, u64>,
    ) -> Result<(), OpError> {
        match info {
            Some(info) => finish_stats(counters, info),
            None => Ok(()),
        }
    }
    fn drop_reason(&self) -> Option<&'static str> {
        Some("near_duplicate")
    }
    async fn plan(&self, pc: &PlanContext<'_>, input: LogicalPlan) -> Result<LogicalPlan, DsprocError> {
        let step = pc.step;
        let p = self.params().map_err(|e| DsprocError::usage(format!("step {step} (dedup_minhash): {e:?}")))?;
        for c in ["id", "text"] {
            if input.schema().field_with_unqualified_name(c).is_err() {
                return Err(DsprocError::usage(format!("step {step} (dedup_minhash): the input has no `{c}` column")));
            }
        }
        if let Ok(f) = input.schema().field_with_unqualified_name("cluster_id") {
            if self.keep_cluster_column && f.data_type() != &DataType::Null {
                return Err(DsprocError::usage(format!(
                    "step {step} (dedup_minhash): keep_cluster_column: the input already has a `cluster_id` column"
                )));
            }
        }
        // An incremental build: the parent version's survivors take part as nodes
        // '0' + id (band keys and shingle sets from its state, no text), the new
        // documents as '1' + node, so a published document is always the best of
        // its cluster and only new documents are removed.
        let parent = super::parent_state_plan(pc, Self::NAME).await?;
        let pfx = parent.is_some();
        // Read three times (band keys, verification, survivors), executed once.
        let input = super::shared(input);
        let wrap = |n: String| if pfx { format!("concat('1', {n})") } else { n };
        let node = wrap(self.node_sql(input.schema(), step, "")?);
        let tnode = wrap(self.node_sql(input.schema(), step, "t.")?);
        let params = quote_str(&serde_json::to_string(&p).map_err(|e| DsprocError::usage(e.to_string()))?);
        let docs = format!("__dsproc_step_{step}");
        let edges = format!("__dsproc_step_{step}_edges");
        let index = format!("__dsproc_step_{step}_index");
        let state = format!("__dsproc_step_{step}_parent");
        let saved = self.saved_keys(pc, &p).await?;
        let with = |e: &LogicalPlan| {
            let mut v = vec![(docs.clone(), input.clone()), (edges.clone(), e.clone())];
            if let Some(s) = &saved {
                v.push((index.clone(), s.clone()));
            }
            if let Some(s) = &parent {
                v.push((state.clone(), s.clone()));
            }
            v
        };
        let q = |e: &LogicalPlan, sql: String| {
            let views = with(e);
            async move { sql_over_views(pc, "dedup_minhash", &views, &sql).await }
        };
        let empty = input.clone();

        // 1. candidate edges (hi > lo): in each bucket every member is linked to the
        //    bucket's best member and to its BUCKET_LINKS predecessors, so dissimilar
        //    members (false candidates that verification rejects) do not cut it apart
        let plan = q(
            &empty,
            format!(
                "SELECT hi, lo, {c} AS __dsproc_mh_candidates FROM \
                   (SELECT DISTINCT e['hi'] AS hi, e['lo'] AS lo FROM \
                     (SELECT unnest(es) AS e FROM \
                       (SELECT dedup_bucket_edges(array_agg(n), k, {links}) AS es FROM \
                         ({new}{saved}{old}) \
                        GROUP BY k HAVING count(*) > 1 AND max(f) = 1)))",
                new = if pfx {
                    format!(
                        "SELECT nullif(dn, '') AS n, nullif(dk, arrow_cast(0, 'UInt64')) AS k, f FROM \
                           (SELECT {node} AS dn, unnest(minhash_bands(text, {params})) AS dk, 1 AS f FROM {docs})"
                    )
                } else {
                    format!("SELECT {node} AS n, unnest(minhash_bands(text, {params})) AS k, 1 AS f FROM {docs}")
                },
                // the parent's survivors, in the buckets of new documents only
                // (HAVING max(f) = 1): a bucket of published documents alone is settled
                old = if pfx {
                    format!(
                        " UNION ALL SELECT nullif(pn, '') AS n, nullif(pk, arrow_cast(0, 'UInt64')) AS k, f FROM \
                           (SELECT concat('0', n) AS pn, unnest(k) AS pk, 0 AS f FROM {state})"
                    )
                } else {
                    String::new()
                },
                // a saved index's keys belong to the node '', smaller than every document:
                // it becomes the root of every cluster it touches, so all of it is removed
                saved = if saved.is_some() {
                    // nullif: both branches of the union must have the same (nullable)
                    // schema, or Ballista's shuffle writer rejects the batches
                    format!(
                        " UNION ALL SELECT DISTINCT nullif(arrow_cast('', 'Utf8'), 'x') AS n, \
                         nullif(k, arrow_cast(0, 'UInt64')) AS k, 0 AS f FROM {index}"
                    )
                } else {
                    String::new()
                },
                c = counter("candidate_pairs", "1"),
                links = BUCKET_LINKS,
            ),
        )
        .await?;
        let mut e = counted(pc, plan, "__dsproc_mh_candidates");

        // 2. exact Jaccard of each candidate pair
        if self.verify {
            let plan = q(
                &e,
                format!(
                    "SELECT hi, lo, {c} AS __dsproc_mh_verified FROM \
                       (SELECT g AS lo, m AS hi, side, \
                               minhash_verify(side, text, {params}{s}) OVER (PARTITION BY g ORDER BY side, m) AS j FROM \
                         (SELECT x.g, x.side, x.m, d.text{os} FROM \
                           (SELECT DISTINCT g, side, m FROM \
                             (SELECT lo AS g, unnest(make_array(0, 1)) AS side, unnest(make_array(lo, hi)) AS m \
                              FROM {edges})) x \
                          LEFT JOIN (SELECT {node} AS n, arrow_cast(text, 'Utf8') AS text FROM {docs}) d \
                          ON x.m = d.n{oj})) \
                     WHERE side = 1 AND j >= {t}",
                    s = if pfx { ", s" } else { "" },
                    os = if pfx { ", o.s" } else { "" },
                    // the parent's survivors: their stored shingle sets
                    oj = if pfx {
                        format!(" LEFT JOIN (SELECT concat('0', n) AS pn, s FROM {state}) o ON x.m = o.pn")
                    } else {
                        String::new()
                    },
                    c = counter("verified_pairs", "1"),
                    t = self.threshold,
                ),
            )
            .await?;
            e = counted(pc, plan, "__dsproc_mh_verified");
        }
        e = q(&e, format!("SELECT hi, lo FROM {edges}")).await?;

        // 3. connected components: alternating large-star / small-star rounds
        for round in 1..=self.max_iterations {
            let col = format!("__dsproc_mh_r{round:03}");
            let name = format!("changed_r{round:03}");
            // large-star: every neighbour larger than x is linked to min(N(x) ∪ {x})
            let plan = q(
                &e,
                format!(
                    "SELECT s['hi'] AS hi, s['lo'] AS lo, {c} AS {col} FROM \
                       (SELECT unnest(st) AS s FROM \
                         (SELECT dedup_large_star(x, array_agg(y)) AS st FROM \
                           (SELECT unnest(make_array(hi, lo)) AS x, unnest(make_array(lo, hi)) AS y FROM {edges}) \
                          GROUP BY x))",
                    c = counter(&name, "s['changed']"),
                ),
            )
            .await?;
            let plan = counted(pc, plan, &col);
            let plan = q(&plan, format!("SELECT DISTINCT hi, lo FROM {edges}")).await?;
            // small-star: x and its smaller neighbours are linked to the smallest of them
            let col2 = format!("{col}s");
            let plan = q(
                &plan,
                format!(
                    "SELECT s['hi'] AS hi, s['lo'] AS lo, {c} AS {col2} FROM \
                       (SELECT unnest(st) AS s FROM \
                         (SELECT dedup_small_star(hi, array_agg(lo)) AS st FROM {edges} GROUP BY hi))",
                    c = counter(&name, "s['changed']"),
                ),
            )
            .await?;
            let plan = counted(pc, plan, &col2);
            e = q(&plan, format!("SELECT DISTINCT hi, lo FROM {edges}")).await?;
        }

        // 4. the star forest applied to the documents
        let plan = q(
            &e,
            format!(
                "SELECT hi, lo, {c} AS __dsproc_mh_clusters FROM \
                   (SELECT hi, lo, row_number() OVER (PARTITION BY lo ORDER BY hi) AS r FROM {edges})",
                c = counter("clusters", "CASE WHEN r = 1 THEN 1 ELSE 0 END"),
            ),
        )
        .await?;
        e = counted(pc, plan, "__dsproc_mh_clusters");
        let cols: Vec<String> =
            input.schema().columns().iter().map(|c| format!("t.\"{}\"", c.name.replace('"', "\"\""))).collect();
        let keys = if self.save_index.is_some() {
            ", minhash_bands(t.text, {params}) AS __dsproc_mh_keys".replace("{params}", &params)
        } else {
            String::new()
        };
        let out = if self.keep_cluster_column {
            q(
                &e,
                format!(
                    "SELECT {cols}, arrow_cast(coalesce({root_id}, CAST(t.id AS VARCHAR)), 'Utf8') AS cluster_id, \
                            CAST(coalesce(l.size, 1) AS BIGINT) AS cluster_size{keys} FROM \
                       (SELECT n, root, row_number() OVER (PARTITION BY root ORDER BY n) \
                                        + row_number() OVER (PARTITION BY root ORDER BY n DESC) - 1 AS size FROM \
                          (SELECT DISTINCT n, root FROM \
                             (SELECT unnest(make_array(hi, lo)) AS n, lo AS root FROM {edges}))) l \
                     RIGHT JOIN {docs} t ON l.n = {tnode}",
                    cols = cols.join(", "),
                    root_id = self.node_id_sql("l.root", pfx),
                    // only the survivors' keys are saved
                    keys = keys
                        .replace("minhash_bands(", "CASE WHEN l.root IS NULL OR l.root = {tnode} THEN minhash_bands(")
                        .replace(" AS __dsproc_mh_keys", " END AS __dsproc_mh_keys")
                        .replace("{tnode}", &tnode),
                ),
            )
            .await?
        } else {
            q(
                &e,
                format!(
                    "SELECT {cols}{keys} FROM (SELECT DISTINCT hi FROM {edges}) r RIGHT ANTI JOIN {docs} t ON r.hi = {tnode}",
                    cols = cols.join(", ")
                ),
            )
            .await?
        };
        // the survivors' state (ids, band keys, shingle sets), for later incremental builds
        let state_sql = format!("minhash_state(arrow_cast(id, 'Utf8'), arrow_cast(text, 'Utf8'), {params})");
        if self.save_index.is_none() {
            if self.keep_cluster_column {
                return Ok(out);
            }
            return super::with_state(pc, Self::NAME, out, &state_sql).await;
        }
        // 5. the survivors' band keys go into the version (`vNNNNN/_index/step-NNN/`,
        // on the output's store), uploaded by whichever process computes them; the
        // driver lists them there at commit
        let keys =
            dsproc_exec::KeysOf { column: "__dsproc_mh_keys".into(), dir: index_dir(pc.version_dir, step), state: false };
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(StepStatsNode::with_keys(out, step, "dedup_minhash", pc.staging.clone(), keys)),
        });
        let names: Vec<String> = plan
            .schema()
            .columns()
            .iter()
            .filter(|c| c.name != "__dsproc_mh_keys")
            .map(|c| format!("\"{}\"", c.name.replace('"', "\"\"")))
            .collect();
        let out = q(&plan, format!("SELECT {} FROM {edges}", names.join(", "))).await?;
        if self.keep_cluster_column {
            return Ok(out);
        }
        super::with_state(pc, Self::NAME, out, &state_sql).await
    }
    fn incrementality(&self) -> Incrementality {
        if self.keep_cluster_column {
            return Incrementality::Unsupported(
                "dedup_minhash keep_cluster_column: the cluster_size of published rows would change".into(),
            );
        }
        if self.save_index.is_some() {
            return Incrementality::Unsupported(
                "dedup_minhash save_index: the saved index would lose the parent's keys".into(),
            );
        }
        Incrementality::Stateful
    }
}

/// Where step `step`'s saved index lives inside its version.
pub fn index_dir(version_dir: &dsproc_io::Location, step: usize) -> dsproc_io::Location {
    version_dir.join(&format!("_index/step-{step:03}"))
}

impl DedupMinhash {
    /// The band keys of the `against` indexes, as one plan (`k`), after checking
    /// that each was saved with this step's signature parameters.
    async fn saved_keys(&self, pc: &PlanContext<'_>, p: &MinHashParams) -> Result<Option<LogicalPlan>, DsprocError> {
        let mut files = Vec::new();
        for uri in &self.against {
            let err = |m: String| DsprocError::usage(format!("step {} (dedup_minhash): against {uri:?}: {m}", pc.step));
            let loc = index_location(uri, pc).map_err(|e| err(e.to_string()))?;
            for (index_dir, index) in find_indexes(&loc, p).await.map_err(err)? {
                if index.signature_version != SIGNATURE_VERSION {
                    return Err(err(format!("saved with {}, this is {SIGNATURE_VERSION}", index.signature_version)));
                }
                if &index.params != p {
                    return Err(err(format!(
                        "saved with different signature parameters ({}); use the same num_perm, bands, rows, ngram, shingle and seed",
                        serde_json::to_string(&index.params).unwrap_or_default()
                    )));
                }
                // Key files are URIs of the version that saved them (any store), or
                // names relative to the index directory.
                for f in &index.files {
                    let file = if f.contains("://") || f.starts_with('/') {
                        dsproc_io::Location::parse(f, None)
                            .map_err(|e| err(e.to_string()))?
                            .with_storage_of(pc.version_dir)
                    } else {
                        index_dir.join(f)
                    };
                    // A pointer outlives its version: say so instead of removing nothing.
                    if !file.exists().await.map_err(|e| err(e.to_string()))? {
                        let from = match (&index.dataset, index.version) {
                            (Some(d), Some(v)) => format!(" (version {v} of {d}, expired by `dsproc gc`?)"),
                            _ => String::new(),
                        };
                        return Err(err(format!(
                            "the saved index names {}, which no longer exists{from}; name the dataset root in `against` to use its current version's index",
                            file.shown()
                        )));
                    }
                    dsproc_io::store::remember_storage(&file);
                    files.push(file.canonical());
                }
            }
        }
        if files.is_empty() {
            return Ok(None);
        }
        let df = pc
            .ctx
            .read_parquet(files, datafusion::prelude::ParquetReadOptions::default())
            .await
            .map_err(|e| DsprocError::usage(format!("step {} (dedup_minhash): against: {e}", pc.step)))?;
        Ok(Some(df.into_unoptimized_plan()))
    }
}

/// `against`'s or `save_index`'s location: relative paths against the spec's
/// directory; on the output's store, the output's storage settings.
pub fn index_location(uri: &str, pc: &PlanContext<'_>) -> Result<dsproc_io::Location, dsproc_io::store::StoreError> {
    Ok(dsproc_io::Location::parse(uri, Some(pc.base))?.with_storage_of(pc.version_dir))
}

/// The saved indexes `loc` names: its own `index.json`, or, for a dsproc dataset
/// root, the saved indexes of its current version (those with parameters `p`
/// when it has several).
async fn find_indexes(
    loc: &dsproc_io::Location,
    p: &MinHashParams,
) -> Result<Vec<(dsproc_io::Location, SavedIndex)>, String> {
    let read = |l: dsproc_io::Location| async move {
        let bytes = l.get_opt().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(bytes.map(|b| (l, b)))
    };
    let parse = |l: &dsproc_io::Location, b: &[u8]| {
        serde_json::from_slice::<SavedIndex>(b).map_err(|e| format!("{} is not a saved index: {e}", l.shown()))
    };
    if let Some((l, b)) = read(loc.join(INDEX_FILE)).await? {
        return Ok(vec![(loc.clone(), parse(&l, &b)?)]);
    }
    let Some((l, b)) = read(loc.join(dsproc_common::config::MANIFEST_FILE)).await? else {
        return Err(format!(
            "{} holds neither {INDEX_FILE} (a saved index) nor {} (a dsproc dataset)",
            loc.shown(),
            dsproc_common::config::MANIFEST_FILE
        ));
    };
    let m: serde_json::Value =
        serde_json::from_slice(&b).map_err(|e| format!("{} is not a dsproc manifest: {e}", l.shown()))?;
    let version = m["version"].as_u64().map(|v| format!("version {v}")).unwrap_or_else(|| "the current version".into());
    let mut all = Vec::new();
    for f in m["side_files"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
        let Some(dir) = f.strip_suffix(&format!("/{INDEX_FILE}")).filter(|d| d.contains("_index/step-")) else {
            continue;
        };
        let dir = loc.join(dir);
        let Some((l, b)) = read(dir.join(INDEX_FILE)).await? else {
            return Err(format!("{version} of {} lists {}, which is missing", loc.shown(), l_shown(&dir)));
        };
        all.push((dir, parse(&l, &b)?));
    }
    if all.is_empty() {
        return Err(format!(
            "{version} of {} has no saved index (its dedup_minhash step needs `save_index`)",
            loc.shown()
        ));
    }
    // Several dedup_minhash steps: the ones with this step's parameters.
    if all.len() > 1 && all.iter().any(|(_, i)| &i.params == p) {
        all.retain(|(_, i)| &i.params == p);
    }
    Ok(all)
}

fn l_shown(l: &dsproc_io::Location) -> String {
    l.join(INDEX_FILE).shown()
}

/// The file naming a saved index's key files and signature parameters.
pub const INDEX_FILE: &str = "index.json";

/// `index.json` of a saved index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedIndex {
    pub signature_version: String,
    pub params: MinHashParams,
    /// Parquet files (column `k`, UInt64) relative to the index directory.
    pub files: Vec<String>,
    pub job: String,
    pub run_id: String,
    pub created_at: String,
    /// The dataset and version whose key files these are (for messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Turns the per-round change counters into `iterations`; an error when the
/// components had not converged within `max_iterations` rounds.
pub fn finish_stats(counters: &mut BTreeMap<String, u64>, info: &serde_json::Value) -> Result<(), OpError> {
    let max = info["max_iterations"].as_u64().unwrap_or(0) as usize;
    let mut iterations = None;
    for round in 1..=max {
        let changed = counters.remove(&format!("changed_r{round:03}")).unwrap_or(0);
        if changed == 0 && iterations.is_none() {
            iterations = Some(round as u64);
        }
        if round == max && changed > 0 {
            return Err(OpError(format!(
                "connected components did not converge in max_iterations = {max} rounds ({changed} edges still \
                 changed in the last); raise max_iterations"
            )));
        }
    }
    counters.insert("iterations".into(), iterations.unwrap_or(max as u64));
    counters.entry("candidate_pairs".into()).or_insert(0);
    counters.entry("clusters".into()).or_insert(0);
    if info["verify"].as_bool() == Some(true) {
        counters.entry("verified_pairs".into()).or_insert(0);
    }
    Ok(())
}
