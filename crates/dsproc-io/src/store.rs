//! Object-store locations: a URI (local path, `file://`, and later `s3://` etc.)
//! resolved to a store plus a path inside it.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

/// A resolved location.
#[derive(Debug, Clone)]
pub struct Location {
    /// The URI as the user wrote it, for messages.
    pub uri: String,
    /// `scheme://authority` of the store, e.g. `file://`.
    pub store_url: String,
    /// Path inside the store, unencoded (glob characters kept), no leading `/`.
    pub raw: String,
    /// The local filesystem path when the store is the local filesystem.
    pub local: Option<PathBuf>,
}

impl Location {
    /// Resolves a URI. Relative local paths are made absolute against the
    /// current directory (or `base` when given).
    pub fn parse(uri: &str, base: Option<&FsPath>) -> Result<Self, String> {
        if let Some((scheme, _)) = uri.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "file" {
                let url = Url::parse(uri).map_err(|e| format!("invalid URL {uri:?}: {e}"))?;
                // Keep glob characters: Url percent-encodes some of them.
                let raw = &uri["file://".len()..];
                let p = if raw.starts_with('/') { PathBuf::from(raw) } else { url.path().into() };
                return Self::local(uri, &p);
            }
            return Err(format!(
                "unsupported URI scheme {scheme:?} in {uri:?}: this build reads and writes local paths and file:// URLs"
            ));
        }
        let p = FsPath::new(uri);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            let base = match base {
                Some(b) => b.to_path_buf(),
                None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
            };
            base.join(p)
        };
        Self::local(uri, &abs)
    }

    fn local(uri: &str, abs: &FsPath) -> Result<Self, String> {
        let abs = normalize_dots(abs);
        let s = abs.to_str().ok_or_else(|| format!("path is not UTF-8: {}", abs.display()))?;
        Ok(Self {
            uri: uri.to_string(),
            store_url: "file://".into(),
            raw: s.trim_start_matches('/').to_string(),
            local: Some(abs),
        })
    }

    /// The object store serving this location.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, String> {
        match self.store_url.as_str() {
            "file://" => Ok(Arc::new(LocalFileSystem::new())),
            other => Err(format!("no object store for {other}")),
        }
    }

    /// The object-store path (each part percent-encoded as object_store requires).
    pub fn path(&self) -> Path {
        Path::from(self.raw.as_str())
    }

    /// A child location.
    pub fn join(&self, rel: &str) -> Self {
        Self {
            uri: format!("{}/{}", self.uri.trim_end_matches('/'), rel),
            store_url: self.store_url.clone(),
            raw: format!("{}/{}", self.raw.trim_end_matches('/'), rel.trim_start_matches('/')),
            local: self.local.as_ref().map(|l| l.join(rel)),
        }
    }

    /// The canonical URI (`file:///abs/path`).
    pub fn canonical(&self) -> String {
        uri_of(&self.store_url, &self.raw)
    }
}

/// The URI of `raw` (a path inside the store at `store_url`): `file:///abs/path`
/// for the local filesystem, `scheme://bucket/key` otherwise.
pub fn uri_of(store_url: &str, raw: &str) -> String {
    if store_url == "file://" {
        format!("file:///{raw}")
    } else {
        format!("{}/{raw}", store_url.trim_end_matches('/'))
    }
}

/// How a file is shown in messages: an absolute path for local files, else its URI.
pub fn shown(store_url: &str, raw: &str) -> String {
    if store_url == "file://" {
        format!("/{raw}")
    } else {
        uri_of(store_url, raw)
    }
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize_dots(p: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_file_urls() {
        let l = Location::parse("/data/x/*.jsonl", None).unwrap();
        assert_eq!(l.raw, "data/x/*.jsonl");
        let f = Location::parse("file:///data/x/a.jsonl", None).unwrap();
        assert_eq!(f.local.unwrap(), PathBuf::from("/data/x/a.jsonl"));
        let r = Location::parse("a/../b/c.jsonl", Some(FsPath::new("/base"))).unwrap();
        assert_eq!(r.local.unwrap(), PathBuf::from("/base/b/c.jsonl"));
        assert!(Location::parse("ftp://x/y", None).is_err());
    }
}
