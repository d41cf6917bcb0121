//! Spec → one DataFusion logical plan:
//! `ReadInput → step 1 → StepStats(1) → … → project shard bucket → WriteShards`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::functions::string::expr_fn::concat;
use datafusion::logical_expr::{cast, col, lit, Expr, Extension, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use datafusion::prelude::SessionContext;

use dsproc_common::config::{ORDER_COLUMN, SHARD_COLUMN, STAGING_DIR};
use dsproc_common::size::ShardSize;
use dsproc_common::DsprocError;
use dsproc_exec::{DuplicateIdMode, DuplicateIdsNode, DuplicateIdsPhase};
use dsproc_exec::{ReadInputNode, StepStatsNode, WriteParams, WriteShardsNode};
use dsproc_functions::hash::shard_of::ShardOfFunc;
use dsproc_io::listing::{list_inputs, ListError};
use dsproc_io::read::ReadSpec;
use dsproc_io::shards::ShardOptions;
use dsproc_io::token_shards::TokenDtype;
use dsproc_io::{InputFile, InputFormat, Location};

use crate::ops::PlanContext;
use crate::spec::LoadedSpec;

/// The job's inputs, resolved before any data moves.
#[derive(Debug, Clone)]
pub struct ResolvedInput {
    pub location: Location,
    pub files: Vec<InputFile>,
    pub format: InputFormat,
    pub schema: SchemaRef,
    /// JSONL: each column's type as the reader checks it.
    pub columns: Vec<dsproc_io::jsonscan::ColumnSpec>,
    /// The id column (`input.id`, or `id` when the input is a dsproc dataset).
    pub id: Option<String>,
    /// The dsproc dataset read, when `input.uri` names a dataset root.
    pub dataset: Option<crate::manifest::InputDataset>,
}

/// When `loc` is a dsproc dataset root (it holds `manifest.json`), the shards of
/// its current version (or of `version`), as input files.
async fn dataset_input(
    loc: &Location,
    version: Option<u64>,
) -> Result<Option<(Vec<InputFile>, crate::manifest::InputDataset)>, DsprocError> {
    use dsproc_common::config::{MANIFEST_FILE, VERSIONS_DIR};
    if loc.raw.contains(['*', '?', '[', '{']) || loc.read_only() {
        if version.is_some() {
            return Err(DsprocError::usage(format!("input.version: {:?} is not a dsproc dataset root", loc.uri)));
        }
        return Ok(None);
    }
    let pointer = loc.join(MANIFEST_FILE);
    // A local file or a missing path is no dataset root (and not an error here).
    let local_file = loc.local.as_ref().is_some_and(|p| !p.is_dir());
    let current = if local_file { None } else { pointer.get_opt().await.map_err(DsprocError::job)? };
    let Some(current) = current else {
        if version.is_some() {
            return Err(DsprocError::usage(format!(
                "input.version: {} is not a dsproc dataset root (no {MANIFEST_FILE})",
                loc.shown()
            )));
        }
        return Ok(None);
    };
    let parse = |b: &[u8], l: &Location| {
        serde_json::from_slice::<crate::manifest::Manifest>(b)
            .map_err(|e| DsprocError::usage(format!("input: invalid manifest {}: {e}", l.shown())))
    };
    let m = match version {
        None => parse(&current, &pointer)?,
        Some(n) => {
            let rec = loc.join(&format!("{VERSIONS_DIR}/{n}.json"));
            let bytes = rec.get_opt().await.map_err(DsprocError::job)?.ok_or_else(|| {
                DsprocError::usage(format!(
                    "input.version = {n}: {} has no version {n} (no {})",
                    loc.shown(),
                    rec.shown()
                ))
            })?;
            parse(&bytes, &rec)?
        }
    };
    if !matches!(m.format.as_str(), "parquet" | "jsonl.zst") {
        return Err(DsprocError::usage(format!(
            "input: {} holds {} shards; only parquet and jsonl datasets can be read as input",
            loc.shown(),
            m.format
        )));
    }
    let files = m
        .shards
        .iter()
        .filter(|s| s.path.ends_with(&format!(".{}", m.format)))
        .map(|s| InputFile {
            path: loc.join(&s.path).raw,
            rel: s.path.clone(),
            size: s.bytes,
            version: format!("sha256:{}", s.sha256),
        })
        .collect::<Vec<_>>();
    if files.is_empty() {
        return Err(DsprocError::usage(format!("input: version {} of {} holds no shards", m.version, loc.shown())));
    }
    let ds =
        crate::manifest::InputDataset { uri: loc.uri.clone(), version: m.version, dataset_version: m.dataset_version };
    Ok(Some((files, ds)))
}

/// The input location and its files: a dataset root's current (or chosen)
/// version, else what the path, directory or glob lists.
pub async fn list_input_files(
    loaded: &LoadedSpec,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<(Location, Vec<InputFile>, Option<crate::manifest::InputDataset>), DsprocError> {
    let input = &loaded.spec.input;
    let location = Location::parse(&input.uri, Some(&loaded.base))
        .map_err(|e| DsprocError::usage(format!("input.uri: {e}")))?
        .with_storage(crate::spec::storage_options(&input.storage));
    let (files, dataset) = match dataset_input(&location, input.version).await? {
        Some((files, ds)) => (files, Some(ds)),
        None => {
            let files = list_inputs(&location).await.map_err(|e| match e {
                ListError::Usage(m) => DsprocError::usage(m),
                e @ ListError::Store { .. } => DsprocError::job(dsproc_common::error::Chain(&e).to_string()),
            })?;
            (files, None)
        }
    };
    let mut files = files;
    if let Some(only) = only {
        files.retain(|f| only.contains(&dsproc_io::store::uri_of(&location.store_url, &f.path)));
    }
    Ok((location, files, dataset))
}

/// The input files with their fingerprints as `input.fingerprint` takes them
/// (`sha256`: each file is read and hashed; a dataset's shards already carry theirs).
pub async fn fingerprinted_input_files(
    loaded: &LoadedSpec,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<(Location, Vec<InputFile>, Option<crate::manifest::InputDataset>), DsprocError> {
    let (location, mut files, dataset) = list_input_files(loaded, only).await?;
    if loaded.spec.input.fingerprint == crate::spec::Fingerprint::Sha256 && dataset.is_none() {
        dsproc_io::listing::content_fingerprints(&location, &mut files).await.map_err(DsprocError::job)?;
    }
    Ok((location, files, dataset))
}

/// The overlap check alone (the input listed, no schema read): `run` makes it
/// before it claims a version, so a refused run writes nothing into its input.
pub async fn check_output_overlap(loaded: &LoadedSpec) -> Result<(), DsprocError> {
    let output = resolve_output(loaded)?;
    let (location, files, dataset) = list_input_files(loaded, None).await?;
    overlap_error(&location, &files, dataset.is_some(), &output).map_err(|e| at_output_uri(loaded, e))
}

/// An overlap error at the output.uri line of the spec file, when it is written there.
fn at_output_uri(loaded: &LoadedSpec, e: DsprocError) -> DsprocError {
    match e {
        DsprocError::Usage { message, .. } => match loaded.key_location("output", "uri", &loaded.spec.output.uri) {
            Some(at) => DsprocError::spec(at, message),
            None => DsprocError::usage(message),
        },
        e => e,
    }
}

/// Lists the input files, checks the format and reads the schema (text column
/// present and a string). Errors here are usage errors (exit 2).
pub async fn resolve_input(loaded: &LoadedSpec) -> Result<ResolvedInput, DsprocError> {
    resolve_input_files(loaded, None).await
}

/// [`resolve_input`] over the listed files whose URIs `only` holds (an
/// incremental build reads its new files alone; format and schema come from them).
pub async fn resolve_input_files(
    loaded: &LoadedSpec,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<ResolvedInput, DsprocError> {
    let input = &loaded.spec.input;
    let (location, files, dataset) = fingerprinted_input_files(loaded, only).await?;
    if files.is_empty() {
        return Err(DsprocError::job("internal: an incremental build with no file to read"));
    }
    // A dataset's rows carry their ids.
    let id = input.id.clone().or_else(|| dataset.as_ref().map(|_| "id".to_string()));
    let store = location.store().map_err(DsprocError::job)?;
    let format = dsproc_io::format::decide_input_format(&store, &location.store_url, &files, input.format)
        .await
        .map_err(|e| DsprocError::usage(format!("input: {e}")))?;
    let opts = dsproc_io::schema::SchemaOptions {
        text: input.text.clone(),
        id: id.clone(),
        declared: input.schema.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        extra_columns: input.extra_columns,
        max_document_bytes: input.max_document_bytes(),
    };
    let schema = dsproc_io::schema::infer_input_schema(&store, &location.store_url, &files, format, &opts)
        .await
        .map_err(|e| {
            let e = dsproc_common::error::Chain(&e).to_string();
            if location.is_local() {
                DsprocError::usage(e)
            } else {
                DsprocError::job(dsproc_io::store::redact(&e))
            }
        })?;
    Ok(ResolvedInput { location, files, format, schema: Arc::new(schema.schema), columns: schema.columns, id, dataset })
}

/// Refuses an output that overlaps the input (see [`dsproc_io::listing::overlap`]),
/// except a dataset read from and written to the same root: each run reads the
/// current version and commits a new one beside it (versions are immutable).
pub fn check_overlap(input: &ResolvedInput, output: &Location) -> Result<(), DsprocError> {
    overlap_error(&input.location, &input.files, input.dataset.is_some(), output)
}

fn overlap_error(
    location: &Location,
    files: &[InputFile],
    is_dataset: bool,
    output: &Location,
) -> Result<(), DsprocError> {
    let same_dataset = is_dataset
        && location.store_url == output.store_url
        && location.raw.trim_end_matches('/') == output.raw.trim_end_matches('/');
    if same_dataset {
        return Ok(());
    }
    let check = |location: &Location, files: &[InputFile], output: &Location| match dsproc_io::listing::overlap(
        location, files, output,
    ) {
        Ok(None) => Ok(()),
        Ok(Some(m)) => Err(DsprocError::usage(m)),
        Err(e) => Err(DsprocError::usage(dsproc_common::error::Chain(&e).to_string())),
    };
    check(location, files, output)?;
    // Local paths again with symlinks resolved: an output reached through a link
    // (or an input folder that is one) can be the same directory.
    if location.is_local() && output.is_local() {
        let (Ok(l), Ok(o)) =
            (Location::parse(&real_path(&location.raw), None), Location::parse(&real_path(&output.raw), None))
        else {
            return Ok(());
        };
        let real: Vec<InputFile> = files
            .iter()
            .map(|f| InputFile { path: real_path(&f.path).trim_start_matches('/').to_string(), ..f.clone() })
            .collect();
        if (l.raw != location.raw || o.raw != output.raw || real.iter().zip(files).any(|(r, f)| r.path != f.path))
            && !(is_dataset && l.raw.trim_end_matches('/') == o.raw.trim_end_matches('/'))
        {
            check(&l, &real, &o).map_err(|e| {
                DsprocError::usage(format!("{e} (after resolving symlinks: {} and {})", l.shown(), o.shown()))
            })?;
        }
    }
    Ok(())
}

/// A local raw path (no leading `/`, glob characters kept) with the symlinks of
/// its longest existing glob-free prefix resolved; the rest is kept as written.
fn real_path(raw: &str) -> String {
    let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty()).collect();
    let literal = parts.iter().take_while(|p| !p.contains(['*', '?', '[', '{'])).count();
    for n in (0..=literal).rev() {
        let prefix = format!("/{}", parts[..n].join("/"));
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            let mut out = real.display().to_string();
            for p in &parts[n..] {
                if !out.ends_with('/') {
                    out.push('/');
                }
                out.push_str(p);
            }
            return out;
        }
    }
    format!("/{raw}")
}

/// The duplicate-id check between the reader and step 1 (see
/// [`dsproc_exec::dup_ids`]): input positions, then count and rank of each id in
/// input order computed on keys only (id and position: a window over small rows,
/// never a sort of whole documents), the positions of rows whose id repeats
/// joined back onto the rows (the input is a shared subplan: read once), and the
/// check that fails, reports or drops.
async fn duplicate_id_check(
    pc: &PlanContext<'_>,
    plan: LogicalPlan,
    mode: DuplicateIdMode,
) -> Result<LogicalPlan, DsprocError> {
    use dsproc_exec::dup_ids::{DUP_COUNT, DUP_RANK, POS_PART, POS_ROW};
    let err = |e: datafusion::error::DataFusionError| DsprocError::usage(format!("input.on_duplicate_id: {e}"));
    let node = |plan, phase| {
        DuplicateIdsNode::try_new(plan, mode, phase, pc.staging.clone())
            .map(|n| LogicalPlan::Extension(Extension { node: Arc::new(n) }))
            .map_err(err)
    };
    let tagged = crate::ops::shared(node(plan, DuplicateIdsPhase::Tag)?);
    // count(*) and row_number() over the rows of each id in input order, on keys.
    let window = format!(
        "SELECT id AS __dsproc_kid, {POS_PART} AS __dsproc_kp, {POS_ROW} AS __dsproc_kr, \
                count(*) OVER (PARTITION BY id) AS __dsproc_kn, \
                CAST(row_number() OVER (PARTITION BY id ORDER BY {POS_PART}, {POS_ROW}) AS BIGINT) AS __dsproc_krn \
         FROM __dsproc_ids"
    );
    let mut views = vec![("__dsproc_ids".to_string(), tagged)];
    // An incremental build: a new row whose id a published row has counts as a
    // later occurrence of it (the published row came first).
    let keys = match crate::ops::parent_state_plan(pc, "input").await? {
        None => window,
        Some(parent) => {
            views.push(("__dsproc_ids_parent".to_string(), parent));
            format!(
                "SELECT k.__dsproc_kp, k.__dsproc_kr, \
                        k.__dsproc_kn + CASE WHEN p.__dsproc_pid IS NULL THEN 0 ELSE 1 END AS __dsproc_kn, \
                        k.__dsproc_krn + CASE WHEN p.__dsproc_pid IS NULL THEN 0 ELSE 1 END AS __dsproc_krn \
                 FROM ({window}) k \
                 LEFT JOIN (SELECT DISTINCT id AS __dsproc_pid FROM __dsproc_ids_parent) p ON k.__dsproc_kid = p.__dsproc_pid"
            )
        }
    };
    // Only rows whose id repeats carry a count above 1: that (usually empty) key
    // table is joined back onto the rows, which stream through the join.
    let query = format!(
        "SELECT t.*, coalesce(d.__dsproc_kn, 1) AS {DUP_COUNT}, coalesce(d.__dsproc_krn, 1) AS {DUP_RANK} \
         FROM (SELECT __dsproc_kp, __dsproc_kr, __dsproc_kn, __dsproc_krn FROM ({keys}) k0 WHERE __dsproc_kn > 1) d \
         RIGHT JOIN __dsproc_ids t ON t.{POS_PART} = d.__dsproc_kp AND t.{POS_ROW} = d.__dsproc_kr"
    );
    let ranked = crate::ops::sql_over_views(pc, "input", &views, &query).await?;
    let checked = node(ranked, DuplicateIdsPhase::Check)?;
    // Each version keeps the ids it holds, for the next incremental build's check.
    crate::ops::with_state(pc, "input", checked, "named_struct('id', arrow_cast(id, 'Utf8'))").await
}

/// Every step must leave a string `text` column (a step that makes it null or
/// another type would commit rows that are not documents). The type is checked
/// here, before data moves; nulls are checked as rows leave the step (its
/// statistics node fails the job naming the step and the row's id).
fn check_text_column(plan: &LogicalPlan, step: usize, op: &str) -> Result<(), DsprocError> {
    let Ok(field) = plan.schema().field_with_unqualified_name("text") else {
        return Err(DsprocError::usage(format!(
            "step {step} ({op}): its output has no `text` column; every step must keep the document text as `text`"
        )));
    };
    match field.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ok(()),
        other => Err(DsprocError::usage(format!(
            "step {step} ({op}): its output's `text` column has type {other}, not a string; every step must leave the document text a string (e.g. CAST(x AS VARCHAR), or drop such rows with WHERE)"
        ))),
    }
}

/// A step as lowered.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// 1-based.
    pub step: usize,
    pub op: &'static str,
    /// Why the rows it removes are dropped (`None`: it must keep every row).
    pub reason: Option<&'static str>,
    /// Static facts for the manifest.
    pub info: Option<serde_json::Value>,
    /// Why the rows it adds are added (`None`: it may not add rows).
    pub adds: Option<&'static str>,
}

/// A lowered job.
#[derive(Debug, Clone)]
pub struct LoweredJob {
    pub plan: LogicalPlan,
    pub input: ResolvedInput,
    pub output: Location,
    /// `OUTPUT/_staging/<run id>` (on the output's store).
    pub staging: Location,
    /// The prefix the shards and side files are written to: `OUTPUT/vNNNNN` for a
    /// run that claimed version N.
    pub version_dir: Location,
    /// `version_dir` relative to the dataset root.
    pub version_rel: String,
    pub run_id: String,
    pub buckets: u32,
    pub shard_size: u64,
    /// Token dtype and size limit of token-holding formats.
    pub shard_opts: ShardOptions,
    pub steps: Vec<StepPlan>,
    /// What the reader reads (for progress: ranges to read).
    pub read_spec: ReadSpec,
    /// The duplicate-id check of a named id column (None: auto ids, unique).
    pub duplicate_ids: Option<DuplicateIdMode>,
    /// Why this spec cannot be built incrementally (the first step whose output
    /// depends on all rows in a way state cannot stand in for), if so.
    pub incremental_blocker: Option<String>,
}

/// How a run builds its version (see [`crate::ops::Incremental`]).
#[derive(Debug, Clone, Default)]
pub struct BuildMode {
    /// State the stateful steps write and compare against.
    pub state: crate::ops::Incremental,
    /// Read only these input files (URIs as the manifest records them); `None`: all.
    pub only_files: Option<std::collections::BTreeSet<String>>,
}

/// Plan nodes that combine rows (their output depends on more than one row).
fn cross_row_nodes(plan: &LogicalPlan) -> usize {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut n = 0;
    let _ = plan.apply_with_subqueries(|p| {
        if matches!(
            p,
            LogicalPlan::Aggregate(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::RecursiveQuery(_)
        ) {
            n += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// Resolves the output location (a local directory or an object-store prefix).
pub fn resolve_output(loaded: &LoadedSpec) -> Result<Location, DsprocError> {
    let out = Location::parse(&loaded.spec.output.uri, Some(&loaded.base))
        .map_err(|e| DsprocError::usage(format!("output.uri: {e}")))?
        .with_storage(crate::spec::storage_options(&loaded.spec.output.storage));
    if out.read_only() {
        return Err(DsprocError::usage(format!("output.uri {:?}: {}:// is read-only", out.uri, out.scheme())));
    }
    if out.raw.is_empty() {
        return Err(DsprocError::usage(format!(
            "output.uri {:?}: name a prefix inside the bucket (e.g. {}/datasets/NAME)",
            out.uri, out.store_url
        )));
    }
    // Opening the store only configures a client (no request): what the environment
    // gets wrong (a variable storage.env names is not set, AWS_ENDPOINT_URL without
    // a scheme) fails here, before anything is claimed. The spec's own settings were
    // checked when it was parsed (exit 2, with file:line).
    out.store().map_err(|e| DsprocError::job(dsproc_common::error::Chain(&e).to_string()))?;
    Ok(out)
}

/// Lowers the spec for planning only (`explain`, `validate`): nothing is claimed,
/// and the plan's shards would go under the run's staging prefix.
/// `ctx` must have the dsproc functions registered.
pub async fn lower(ctx: &SessionContext, loaded: &LoadedSpec, run_id: &str) -> Result<LoweredJob, DsprocError> {
    lower_version(ctx, loaded, run_id, None, &BuildMode::default()).await
}

/// Lowers the spec for a run that claimed `version`: shards, quarantine and side
/// files go under `OUTPUT/vNNNNN/`.
pub async fn lower_version(
    ctx: &SessionContext,
    loaded: &LoadedSpec,
    run_id: &str,
    version: Option<u64>,
    mode: &BuildMode,
) -> Result<LoweredJob, DsprocError> {
    let spec = &loaded.spec;
    let input = resolve_input_files(loaded, mode.only_files.as_ref()).await?;
    let inc = &mode.state;
    let output = resolve_output(loaded)?;
    check_overlap(&input, &output).map_err(|e| at_output_uri(loaded, e))?;
    let staging = output.join(&format!("{STAGING_DIR}/{run_id}"));
    let version_rel = match version {
        Some(n) => dsproc_common::config::version_dir(n),
        None => format!("{STAGING_DIR}/{run_id}/shards"),
    };
    let version_dir = output.join(&version_rel);

    let read_spec = ReadSpec {
        store_url: input.location.store_url.clone(),
        storage: input.location.storage.clone(),
        files: input.files.clone(),
        format: input.format,
        text: spec.input.text.clone(),
        id: input.id.clone(),
        on_error: spec.input.on_error,
        quarantine_dir: Some(version_dir.join(dsproc_common::config::QUARANTINE_DIR)),
        columns: input.columns.clone(),
        extra_columns: spec.input.extra_columns,
        max_document_bytes: spec.input.max_document_bytes(),
    };
    let node = ReadInputNode::try_new(read_spec.clone(), Arc::clone(&input.schema), staging.clone())
        .map_err(|e| DsprocError::usage(format!("input: {e}")))?;
    let mut plan = LogicalPlan::Extension(Extension { node: Arc::new(node) });
    // A named id column is checked for duplicates (auto ids are unique).
    let duplicate_ids = input.id.as_ref().map(|_| match spec.input.on_duplicate_id {
        crate::spec::OnDuplicateId::Error => DuplicateIdMode::Error,
        crate::spec::OnDuplicateId::Keep => DuplicateIdMode::Keep,
        crate::spec::OnDuplicateId::First => DuplicateIdMode::First,
    });
    if let Some(mode) = duplicate_ids {
        let pc = PlanContext {
            ctx,
            step: 0,
            staging: &staging,
            run_id,
            base: &loaded.base,
            version_dir: &version_dir,
            incremental: inc,
        };
        plan = duplicate_id_check(&pc, plan, mode).await?;
    }
    let mut steps = Vec::new();
    let mut incremental_blocker = None;
    for (i, op) in spec.steps.iter().enumerate() {
        let step = i + 1;
        let pc = PlanContext {
            ctx,
            step,
            staging: &staging,
            run_id,
            base: &loaded.base,
            version_dir: &version_dir,
            incremental: inc,
        };
        let before = cross_row_nodes(&plan);
        plan = op.plan(&pc, plan).await?;
        match op.incrementality() {
            crate::ops::Incrementality::RowLocal if cross_row_nodes(&plan) > before => {
                incremental_blocker.get_or_insert_with(|| {
                    format!(
                        "step {step} ({}) combines rows (an aggregate, window, join, sort, limit or union): its result depends on all of them",
                        op.name()
                    )
                });
            }
            crate::ops::Incrementality::Unsupported(why) => {
                incremental_blocker.get_or_insert_with(|| format!("step {step}: {why}"));
            }
            _ => {}
        }
        check_text_column(&plan, step, op.name())?;
        plan = LogicalPlan::Extension(Extension {
            node: Arc::new(StepStatsNode::new(plan, step, op.name(), staging.clone())),
        });
        let (reason, adds, info) = (op.drop_reason(), op.add_reason(), op.info(&loaded.base));
        steps.push(StepPlan { step, op: op.name(), reason, info, adds });
    }

    let (shard_size, shard_tokens) = match dsproc_common::size::parse_shard_size(&spec.output.shard_size)
        .map_err(|e| DsprocError::usage(e.to_string()))?
    {
        ShardSize::Bytes(b) => (b, None),
        // Buckets are planned from input bytes: about 4 bytes of text per token.
        ShardSize::Tokens(t) => (t.saturating_mul(4), Some(t)),
    };
    let total: u64 = input.files.iter().map(|f| f.size).sum();
    let buckets = total.div_ceil(shard_size).clamp(1, 100_000) as u32;
    // Token-holding formats store ids at the width the (last) tokenizer's vocabulary needs.
    let vocab = steps.iter().rev().find(|s| s.op == "tokenize").and_then(|s| s.info.as_ref()?["vocab_size"].as_u64());
    let format = spec.output.format;
    if format.needs_tokens() && vocab.is_none() {
        return Err(DsprocError::usage(format!(
            "output.format = \"{}\" stores token ids: add a `tokenize` step",
            serde_json::to_value(format).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        )));
    }
    if shard_tokens.is_some() && vocab.is_none() {
        return Err(DsprocError::usage("output.shard_size in tokens needs a `tokenize` step"));
    }
    let pack = spec.output.pack.map(|p| p.seq_len);
    if let Some(n) = pack {
        let eos = steps.iter().rev().find(|s| s.op == "tokenize").and_then(|s| s.info.as_ref()?["eos_id"].as_u64());
        if n == 0 {
            return Err(DsprocError::usage("output.pack.seq_len must be at least 1"));
        }
        if eos.is_none() {
            return Err(DsprocError::usage(
                "output.pack separates documents by their EOS: add a `tokenize` step with append_eos = true",
            ));
        }
    }
    let mds_zstd = match spec.output.compression.as_deref() {
        None => None,
        Some(c) if format == dsproc_io::OutputFormat::Mds => {
            let level = match c.strip_prefix("zstd") {
                Some("") => Some(3),
                Some(l) => l.strip_prefix(':').and_then(|l| l.parse::<i32>().ok()).filter(|l| (1..=22).contains(l)),
                None => None,
            };
            Some(level.ok_or_else(|| {
                DsprocError::usage(format!("output.compression {c:?}: use \"zstd\" or \"zstd:LEVEL\" (1-22)"))
            })?)
        }
        Some(_) => {
            return Err(DsprocError::usage(
                "output.compression applies to format = \"mds\" (Parquet and JSONL shards are always zstd)",
            ))
        }
    };
    let shard_opts =
        ShardOptions { token_dtype: vocab.map(TokenDtype::for_vocab), size_limit: shard_size, pack, mds_zstd };

    // id and text as Utf8, every other column as it is, plus the shard bucket.
    let shard_of = ScalarUDF::from(ShardOfFunc::new());
    let mut exprs: Vec<Expr> = Vec::new();
    for c in plan.schema().columns() {
        let e = match c.name.as_str() {
            "id" | "text" => cast(col(c.clone()), DataType::Utf8).alias(c.name.clone()),
            _ => col(c.clone()),
        };
        exprs.push(e);
    }
    for required in ["id", "text"] {
        if plan.schema().field_with_unqualified_name(required).is_err() {
            return Err(DsprocError::usage(format!("the last step's output has no `{required}` column")));
        }
    }
    let id = || cast(col("id"), DataType::Utf8);
    match spec.output.shuffle_seed {
        None => exprs.push(shard_of.call(vec![id(), lit(buckets)]).alias(SHARD_COLUMN)),
        Some(seed) => {
            // Seeded hashes of the id pick the shard and the position in it (ties by id).
            let keyed = |what: &str| concat(vec![lit(format!("dsproc-shuffle-{what}:{seed}:")), id()]);
            exprs.push(shard_of.call(vec![keyed("shard"), lit(buckets)]).alias(SHARD_COLUMN));
            exprs.push(shard_of.call(vec![keyed("order"), lit(u32::MAX)]).alias(ORDER_COLUMN));
        }
    }
    let plan = LogicalPlanBuilder::from(plan)
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| DsprocError::usage(format!("output: {e}")))?;
    let params = WriteParams {
        staging: staging.clone(),
        shards_dir: version_dir.clone(),
        shards_rel: version_rel.clone(),
        format,
        shard_size,
        buckets,
        shard_tokens,
        shard_opts,
    };
    let sink = WriteShardsNode::try_new(plan, params).map_err(|e| DsprocError::usage(format!("output: {e}")))?;
    let plan = LogicalPlan::Extension(Extension { node: Arc::new(sink) });
    Ok(LoweredJob {
        plan,
        input,
        output,
        staging,
        version_dir,
        version_rel,
        run_id: run_id.to_string(),
        buckets,
        shard_size,
        shard_opts,
        steps,
        read_spec,
        duplicate_ids,
        incremental_blocker,
    })
}
