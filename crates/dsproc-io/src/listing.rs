//! Input listing: a path, a directory or a glob, expanded through object_store.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::store::{Location, StoreError};

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Path inside the store.
    pub path: String,
    /// Path relative to the glob root: the prefix of default ids.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time (RFC 3339) or etag, for the manifest's input fingerprint.
    pub version: String,
}

/// Replaces each file's fingerprint with `sha256:<hex>` of its content (read
/// as a stream, 8 files at a time).
pub async fn content_fingerprints(loc: &Location, files: &mut [InputFile]) -> Result<(), StoreError> {
    use futures::StreamExt;
    let store = loc.store()?;
    let mut jobs = Vec::with_capacity(files.len());
    for f in files.iter() {
        let at = Location::parse(&crate::store::uri_of(&loc.store_url, &f.path), None)?.with_storage_of(loc);
        jobs.push(hash_object(std::sync::Arc::clone(&store), at));
    }
    let hashes: Vec<Result<String, StoreError>> = futures::stream::iter(jobs).buffered(8).collect().await;
    for (f, h) in files.iter_mut().zip(hashes) {
        f.version = h?;
    }
    Ok(())
}

/// `sha256:<hex>` of one object, read as a stream.
async fn hash_object(store: std::sync::Arc<dyn object_store::ObjectStore>, at: Location) -> Result<String, StoreError> {
    use futures::StreamExt;
    use sha2::Digest;
    let err = |e: object_store::Error| at.error("read", &e);
    let mut stream = store.get(&at.path()).await.map_err(err)?.into_stream();
    let mut h = sha2::Sha256::new();
    while let Some(chunk) = stream.next().await {
        h.update(chunk.map_err(err)?);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Why inputs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The spec names nothing readable (bad glob, no match): a usage error.
    #[error("{0}")]
    Usage(String),
    /// The store failed or refused (credentials, network): the job failed.
    #[error("{context}")]
    Store {
        context: &'static str,
        #[source]
        source: StoreError,
    },
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The glob root (the longest glob-free directory) of a location and the matcher
/// of the rest, or the whole path and no matcher when it has no glob.
fn split_glob(loc: &Location) -> Result<(String, Option<GlobMatcher>), ListError> {
    let full = loc.raw.clone();
    if !has_glob(&full) {
        return Ok((full, None));
    }
    let parts: Vec<&str> = full.split('/').collect();
    let first_glob = parts.iter().position(|p| has_glob(p)).unwrap_or(parts.len());
    let root = parts[..first_glob].join("/");
    let pattern = parts[first_glob..].join("/");
    let glob = GlobBuilder::new(&pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| ListError::Usage(format!("invalid glob {:?}: {e}", loc.uri)))?;
    Ok((root, Some(glob.compile_matcher())))
}

/// The directories (relative to the listing root; `""` is the root itself) that
/// are dsproc dataset roots: they hold `_versions/`, `_staging/` or `_history/`,
/// or a claimed version prefix (`vNNNNN/_claim.json`) of a first run in progress.
fn dataset_roots<'a>(rels: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    use dsproc_common::config::{parse_version_dir, CLAIM_FILE, HISTORY_DIR, STAGING_DIR, VERSIONS_DIR};
    let mut roots = BTreeSet::new();
    for rel in rels {
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 0..parts.len().saturating_sub(1) {
            let marks = [VERSIONS_DIR, STAGING_DIR, HISTORY_DIR].contains(&parts[i])
                || parse_version_dir(parts[i]).is_some() && parts[i + 1] == CLAIM_FILE && i + 2 == parts.len();
            if marks {
                roots.insert(parts[..i].join("/"));
                break;
            }
        }
    }
    roots
}

/// True when `path` is `dir` or below it (whole components; `""` contains everything).
fn within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Lists the files a location names, sorted by path. A glob is matched against
/// paths below its longest glob-free directory (the glob root); a directory lists
/// every file below it; a file lists itself.
///
/// What dsproc writes is never read back by accident: a directory holding a
/// dsproc dataset (its `manifest.json`, `_versions/`, `vNNNNN/` shards, …) found
/// while listing a directory or a glob is skipped with everything below it, with
/// a warning. A dataset is read only when the input URI names its root (see the
/// job's dataset input), or names one of its files.
pub async fn list_inputs(loc: &Location) -> Result<Vec<InputFile>, ListError> {
    let store = loc.store().map_err(|source| ListError::Store { context: "cannot open input store", source })?;
    let full = loc.raw.clone();
    let (root, matcher) = split_glob(loc)?;

    if loc.read_only() && matcher.is_some() {
        return Err(ListError::Usage(format!(
            "input {:?}: an http(s):// input names one file (web servers cannot be listed); use s3://, gs://, az:// or a local path for globs",
            loc.uri
        )));
    }
    // A plain path may be a file: try that first.
    if matcher.is_none() {
        match store.head(&loc.path()).await {
            Ok(meta) => {
                let rel = full.rsplit('/').next().unwrap_or(&full).to_string();
                return Ok(vec![InputFile {
                    path: full.clone(),
                    rel,
                    size: meta.size,
                    version: meta.e_tag.clone().unwrap_or_else(|| meta.last_modified.to_rfc3339()),
                }]);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(ListError::Store { context: "cannot read input", source: loc.error("HEAD", &e) }),
        }
    }

    let prefix = crate::store::object_path(&root);
    if loc.read_only() {
        return Err(ListError::Usage(format!("input {:?}: not found", loc.uri)));
    }
    let metas: Vec<_> = match store.list(Some(&prefix)).try_collect().await {
        Ok(m) => m,
        Err(e) => return Err(ListError::Store { context: "cannot list input", source: loc.error("LIST", &e) }),
    };
    let listed: Vec<(String, String, &object_store::ObjectMeta)> = metas
        .iter()
        .map(|meta| {
            let path = crate::store::decode_path(&meta.location);
            let rel = path.strip_prefix(&root).unwrap_or(&path).trim_start_matches('/').to_string();
            (path, rel, meta)
        })
        .collect();
    let datasets = dataset_roots(listed.iter().map(|(_, rel, _)| rel.as_str()));
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files = Vec::new();
    for (path, rel, meta) in &listed {
        if let Some(ds) = datasets.iter().find(|d| within(rel, d)) {
            *skipped.entry(ds.as_str()).or_default() += 1;
            continue; // a dsproc dataset's files (shards, manifest) are its output, not input
        }
        if rel.split('/').any(|p| p.starts_with('.') || p.starts_with('_')) {
            continue; // hidden and underscore files (e.g. _quarantine, .crc) are not inputs
        }
        if let Some(m) = &matcher {
            if !m.is_match(rel) {
                continue;
            }
        }
        files.push(InputFile {
            path: path.clone(),
            rel: rel.clone(),
            size: meta.size,
            version: meta.e_tag.clone().unwrap_or_else(|| meta.last_modified.to_rfc3339()),
        });
    }
    for (ds, n) in &skipped {
        let at = crate::store::shown(
            &loc.store_url,
            &[root.as_str(), ds].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/"),
        );
        tracing::warn!(
            dataset = %at,
            files = n,
            "input {:?}: skipping the dsproc dataset at {at} ({n} files: its shards and manifest are output, not input); to read it, set input.uri to {at}",
            loc.uri
        );
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        let hint = match skipped.keys().next() {
            Some(ds) => {
                let at = crate::store::shown(
                    &loc.store_url,
                    &[root.as_str(), ds].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/"),
                );
                format!(" (the dsproc dataset at {at} was skipped: to read its current version, set input.uri to {at})")
            }
            None => String::new(),
        };
        return Err(ListError::Usage(format!("input {:?} matches no files{hint}", loc.uri)));
    }
    Ok(files)
}

/// Whether an output at `output` would overlap the input `input` (whose matched
/// files are `files`): the output equal to or inside the input's directory (or
/// glob root, when the glob could match files below the output), or the output
/// containing a matched file. Returns what overlaps, naming both paths. Locations
/// on different stores never overlap.
pub fn overlap(input: &Location, files: &[InputFile], output: &Location) -> Result<Option<String>, ListError> {
    if input.store_url != output.store_url {
        return Ok(None);
    }
    let out = output.raw.trim_end_matches('/');
    let (root, matcher) = split_glob(input)?;
    let root = root.trim_end_matches('/');
    let shown_out = output.shown();
    if let Some(f) = files.iter().find(|f| within(&f.path, out) && out != root) {
        let what = if f.path == out { "is the input file" } else { "contains the input file" };
        return Ok(Some(format!(
            "output.uri {shown_out} {what} {} (input.uri {:?}): a run would read or replace its own input",
            crate::store::shown(&input.store_url, &f.path),
            input.uri
        )));
    }
    if !within(out, root) {
        return Ok(None);
    }
    let shown_root = crate::store::shown(&input.store_url, root);
    let overlaps = match &matcher {
        None => true,
        Some(_) => {
            // Could the glob match a file below the output?
            let rel = out.strip_prefix(root).unwrap_or(out).trim_start_matches('/');
            let pattern = input.raw.strip_prefix(root).unwrap_or(&input.raw).trim_start_matches('/');
            could_match_below(pattern, rel)
        }
    };
    if !overlaps {
        return Ok(None);
    }
    let what = if out == root { "is the input location" } else { "is inside the input location" };
    Ok(Some(format!(
        "output.uri {shown_out} {what} {shown_root} (input.uri {:?}): every run would read its own shards and manifest back as input; write the output outside the input",
        input.uri
    )))
}

/// Whether the glob `pattern` (relative to its root) could match a file below
/// `rel` (relative to the same root): a `**` can; otherwise the pattern needs more
/// components than `rel`, and its first ones must match `rel`'s.
fn could_match_below(pattern: &str, rel: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    if p.iter().any(|c| c.contains("**")) {
        return true;
    }
    let r: Vec<&str> = if rel.is_empty() { Vec::new() } else { rel.split('/').collect() };
    if p.len() <= r.len() {
        return false;
    }
    r.iter().zip(&p).all(|(rc, pc)| match GlobBuilder::new(pc).literal_separator(true).build() {
        Ok(g) => g.compile_matcher().is_match(rc),
        Err(_) => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_a_glob() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        for f in ["a.jsonl", "b.jsonl.gz", "sub/c.jsonl", "_skip.jsonl", "x.txt"] {
            std::fs::write(dir.path().join(f), "{}\n").unwrap();
        }
        let loc = Location::parse(&format!("{}/*.jsonl*", dir.path().display()), None).unwrap();
        let files = list_inputs(&loc).await.unwrap();
        let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["a.jsonl", "b.jsonl.gz"]);
        let loc = Location::parse(&format!("{}/**/*.jsonl", dir.path().display()), None).unwrap();
        let rels: Vec<String> = list_inputs(&loc).await.unwrap().into_iter().map(|f| f.rel).collect();
        assert_eq!(rels, ["a.jsonl", "sub/c.jsonl"]);
        let loc = Location::parse(&format!("{}", dir.path().display()), None).unwrap();
        assert_eq!(list_inputs(&loc).await.unwrap().len(), 4);
        let loc = Location::parse(&format!("{}/a.jsonl", dir.path().display()), None).unwrap();
        assert_eq!(list_inputs(&loc).await.unwrap()[0].rel, "a.jsonl");
    }
}
