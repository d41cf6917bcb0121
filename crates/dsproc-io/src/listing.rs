//! Input listing: a path, a directory or a glob, expanded through object_store.

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::path::Path;
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

/// Lists the files a location names, sorted by path. A glob is matched against
/// paths below its longest glob-free directory (the glob root); a directory lists
/// every file below it; a file lists itself.
pub async fn list_inputs(loc: &Location) -> Result<Vec<InputFile>, ListError> {
    let store = loc.store().map_err(|source| ListError::Store { context: "cannot open input store", source })?;
    let full = loc.raw.clone();
    let (root, matcher): (String, Option<GlobMatcher>) = if has_glob(&full) {
        let parts: Vec<&str> = full.split('/').collect();
        let first_glob = parts.iter().position(|p| has_glob(p)).unwrap_or(parts.len());
        let root = parts[..first_glob].join("/");
        let pattern = parts[first_glob..].join("/");
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| ListError::Usage(format!("invalid glob {:?}: {e}", loc.uri)))?;
        (root, Some(glob.compile_matcher()))
    } else {
        (full.clone(), None)
    };

    if loc.read_only() && matcher.is_some() {
        return Err(ListError::Usage(format!(
            "input {:?}: an http(s):// input names one file (web servers cannot be listed); use s3://, gs://, az:// or a local path for globs",
            loc.uri
        )));
    }
    // A plain path may be a file: try that first.
    if matcher.is_none() {
        match store.head(&Path::from(full.as_str())).await {
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

    let prefix = Path::from(root.as_str());
    if loc.read_only() {
        return Err(ListError::Usage(format!("input {:?}: not found", loc.uri)));
    }
    let metas: Vec<_> = match store.list(Some(&prefix)).try_collect().await {
        Ok(m) => m,
        Err(e) => return Err(ListError::Store { context: "cannot list input", source: loc.error("LIST", &e) }),
    };
    let mut files = Vec::new();
    for meta in metas {
        // object_store paths are percent-encoded; ours are raw.
        let path = crate::store::decode_path(&meta.location);
        let rel = path.strip_prefix(&root).unwrap_or(&path).trim_start_matches('/').to_string();
        if rel.split('/').any(|p| p.starts_with('.') || p.starts_with('_')) {
            continue; // hidden and underscore files (e.g. _quarantine, .crc) are not inputs
        }
        if let Some(m) = &matcher {
            if !m.is_match(&rel) {
                continue;
            }
        }
        files.push(InputFile {
            path,
            rel,
            size: meta.size,
            version: meta.e_tag.clone().unwrap_or_else(|| meta.last_modified.to_rfc3339()),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(ListError::Usage(format!("input {:?} matches no files", loc.uri)));
    }
    Ok(files)
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
