//! Files a function loads once per process (tokenizer.json, model files): a local
//! path (checked against the access policy on the opened file) or a URL read
//! through dsproc-io's object stores.

/// Why a file could not be read. `what` names the file's role in messages
/// ("tokenizer", "langid model").
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {what} {path}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The URL is not one the object stores serve.
    #[error("{what} URL")]
    Url {
        what: &'static str,
        #[source]
        source: dsproc_io::store::StoreError,
    },
    #[error("{what} URL {url}")]
    Runtime {
        what: &'static str,
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching {what} {url}: not found")]
    NotFound { what: &'static str, url: String },
    /// The store's GET failed.
    #[error("fetching {what}")]
    Fetch {
        what: &'static str,
        #[source]
        source: dsproc_io::store::StoreError,
    },
    #[error("fetching {what} {url}: the fetch thread panicked")]
    FetchPanicked { what: &'static str, url: String },
    /// The access policy refuses reading the file ([`dsproc_io::policy`]).
    #[error("{what}")]
    Denied {
        what: &'static str,
        #[source]
        source: dsproc_io::Error,
    },
}

/// True for a URL the object stores serve (not a local path or `file://`).
pub fn is_url(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| !scheme.eq_ignore_ascii_case("file"))
}

/// The bytes of `path` (a local path or a URL).
pub fn read_bytes(path: &str, what: &'static str) -> Result<Vec<u8>, FileError> {
    if is_url(path) {
        fetch_url(path, what)
    } else {
        read_local(path, what)
    }
}

/// Reads a local file, checking what was opened against the access policy (a
/// symlink swapped after an earlier check cannot redirect it).
fn read_local(path: &str, what: &'static str) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let read = |source| FileError::Read { what, path: path.to_string(), source };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let abs = std::path::absolute(path).map_err(read)?;
    dsproc_io::policy::check_opened(dsproc_io::policy::Access::Read, path, &abs, &f)
        .map_err(|source| FileError::Denied { what, source })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(read)?;
    Ok(bytes)
}

/// Reads a URL through the object stores of `dsproc_io::store` (credentials
/// from the standard environment variables; plain `http://` is allowed). Runs on
/// its own thread and runtime, so it works from planning (async) and from a UDF
/// (sync) alike.
fn fetch_url(url: &str, what: &'static str) -> Result<Vec<u8>, FileError> {
    let owned = url.to_string();
    let job = std::thread::spawn(move || -> Result<Vec<u8>, FileError> {
        let loc = dsproc_io::Location::parse(&owned, None).map_err(|source| FileError::Url { what, source })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| FileError::Runtime { what, url: owned.clone(), source })?;
        match rt.block_on(loc.get_opt()) {
            Ok(Some(b)) => Ok(b.to_vec()),
            Ok(None) => Err(FileError::NotFound { what, url: owned }),
            Err(source) => Err(FileError::Fetch { what, source }),
        }
    });
    job.join().map_err(|_| FileError::FetchPanicked { what, url: url.to_string() })?
}
