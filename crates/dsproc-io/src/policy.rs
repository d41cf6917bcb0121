//! The data-access policy of a process (issue #16): the prefixes an executor
//! (or the driver, when configured) may read and write. Every read and write of
//! dsproc-io checks it at the moment it touches a file or an object, so an
//! executor refuses what it was not allowed whatever the plan it was sent says.
//!
//! * No policy installed (the default): everything is allowed, exactly as before.
//! * [`install`] sets the policy of this process; calling it again replaces it
//!   (tests do; [`AccessPolicy::any`] allows everything again).
//! * `--allow-read` prefixes are readable; `--allow-write` prefixes are writable
//!   **and readable**: a job reads back its own output (manifest, versions,
//!   staging markers, saved indexes).
//!
//! Resolution, at every check:
//! * Local paths (absolute paths and `file://` URLs) are canonicalized at call
//!   time (symlinks followed, `..` removed). A path that does not exist yet (an
//!   output) resolves to its longest existing ancestor, canonicalized, with the
//!   rest appended; a `..` in that rest is refused. A dangling symlink is
//!   followed by hand, so a write through it is checked where it would land.
//! * URLs are normalised: scheme and host lowercased (`s3a` is `s3`, default
//!   HTTP ports dropped), credentials, queries and fragments removed; an object
//!   key with a `..` segment (also percent-encoded) is refused.
//!
//! Matching is by whole components: `/data/in` allows `/data/in` and
//! `/data/in/x`, not `/data/inx`. A URL prefix is `scheme://bucket` plus a key
//! prefix matched by whole `/`-separated segments, so a trailing slash makes no
//! difference: `s3://corp/data` and `s3://corp/data/` both allow the key `data`
//! and every key below `data/`, not `database/x`; `s3://corp/` allows the whole
//! bucket `corp`, not `s3://corpora/`. Prefixes are resolved once, by
//! [`AccessPolicy::new`].
//!
//! Where the checks sit: [`crate::store::Location`]'s operations; every store
//! [`Location::store`](crate::store::Location::store) hands out (so readers,
//! listings, schema inference and uploads that hold the raw store are checked
//! per request too); local reads in `read::open_input` (checked again on the
//! opened file descriptor) and local shard writes in [`crate::upload`].

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::error::Error;
use crate::store::redact;

/// What an operation does with a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "reading",
            Access::Write => "writing",
        }
    }
}

/// A resolved location: a canonical local path, or a normalised URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    /// `base` is `scheme://host[:port]` (lowercase); `key` has no leading or
    /// trailing `/`.
    Url {
        base: String,
        key: String,
    },
}

impl Place {
    fn within(&self, prefix: &Place) -> bool {
        match (self, prefix) {
            (Place::Local(p), Place::Local(q)) => p.starts_with(q),
            (Place::Url { base, key }, Place::Url { base: pb, key: pk }) => {
                base == pb
                    && (pk.is_empty() || key == pk || key.strip_prefix(pk.as_str()).is_some_and(|r| r.starts_with('/')))
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Local(p) => write!(f, "{}", p.display()),
            Place::Url { base, key } => write!(f, "{base}/{key}"),
        }
    }
}

/// The prefixes this process may read and write (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    read: Vec<Place>,
    write: Vec<Place>,
    any: bool,
}

impl AccessPolicy {
    /// Allows everything (`--allow-any-path`).
    pub fn any() -> Self {
        Self { read: Vec::new(), write: Vec::new(), any: true }
    }

    /// Allows reading below `read` and reading and writing below `write`. Each
    /// prefix is an absolute local path, a `file:///abs/` URL or an object-store
    /// or HTTP URL prefix (`s3://bucket/key-prefix/`, `http://host:port/path/`).
    /// A relative path or a malformed URL is an error naming it.
    pub fn new(read: &[String], write: &[String]) -> Result<Self, Error> {
        let parse = |list: &[String], flag: &str| -> Result<Vec<Place>, Error> {
            list.iter()
                .map(|p| prefix_place(p).map_err(|why| Error::Policy(format!("{flag} {}: {why}", safe_uri(p)))))
                .collect()
        };
        Ok(Self { read: parse(read, "--allow-read")?, write: parse(write, "--allow-write")?, any: false })
    }

    /// True when this policy allows everything.
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Checks `uri_or_path` (a local path, relative ones against the current
    /// directory, or a URL) for `access`.
    pub fn check(&self, access: Access, uri_or_path: &str) -> Result<(), Error> {
        self.check_as(access, uri_or_path, uri_or_path)
    }

    /// Checks `target` (a path or URL, as [`Self::check`]), naming it `given` in
    /// a refusal (the URI as the user wrote it).
    pub(crate) fn check_as(&self, access: Access, given: &str, target: &str) -> Result<(), Error> {
        if self.any {
            return Ok(());
        }
        match target_place(target) {
            Ok(Target::Local(p)) => self.check_local(access, given, &p),
            Ok(Target::Url(place)) => self.check_place(access, given, &place),
            Err(why) => Err(self.refuse(access, given, None, Some(&why))),
        }
    }

    /// Checks the local path `path` (absolute, as it will be opened), shown as `given`.
    pub(crate) fn check_local(&self, access: Access, given: &str, path: &FsPath) -> Result<(), Error> {
        if self.any {
            return Ok(());
        }
        match resolve_local(path, 0) {
            Ok(real) => self.check_place(access, given, &Place::Local(real)),
            Err(why) => Err(self.refuse(access, given, None, Some(&why))),
        }
    }

    fn check_place(&self, access: Access, given: &str, place: &Place) -> Result<(), Error> {
        if self.any || self.allowed(access).any(|p| place.within(p)) {
            return Ok(());
        }
        Err(self.refuse(access, given, Some(place), None))
    }

    /// The prefixes that allow `access`: writable prefixes are readable too.
    fn allowed(&self, access: Access) -> impl Iterator<Item = &Place> {
        let read = if access == Access::Read { &self.read[..] } else { &[] };
        read.iter().chain(self.write.iter())
    }

    fn refuse(&self, access: Access, given: &str, place: Option<&Place>, why: Option<&str>) -> Error {
        let shown = safe_uri(given);
        let mut msg = format!("access denied: {} {shown}", access.verb());
        if let Some(p) = place.map(|p| p.to_string()).filter(|p| *p != shown) {
            msg.push_str(&format!(" (resolves to {p})"));
        }
        if let Some(why) = why {
            msg.push_str(&format!(": {why}"));
            return Error::AccessDenied(redact(&msg));
        }
        let flags = match access {
            Access::Read if !self.write.is_empty() => "--allow-read and --allow-write",
            Access::Read => "--allow-read",
            Access::Write => "--allow-write",
        };
        let allowed: Vec<String> = self.allowed(access).map(prefix_shown).collect();
        let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
        msg.push_str(&format!(" is outside {flags} (allowed: {allowed})"));
        Error::AccessDenied(redact(&msg))
    }
}

fn prefix_shown(p: &Place) -> String {
    match p {
        Place::Local(p) => p.display().to_string(),
        Place::Url { base, key } if key.is_empty() => format!("{base}/"),
        Place::Url { base, key } => format!("{base}/{key}/"),
    }
}

// ---- the process-wide policy ----------------------------------------------

fn slot() -> &'static RwLock<Option<Arc<AccessPolicy>>> {
    static POLICY: RwLock<Option<Arc<AccessPolicy>>> = RwLock::new(None);
    &POLICY
}

/// Sets this process's policy, replacing any installed before (a `RwLock`, not
/// a `OnceLock`, so that tests and a re-configured process can change it).
pub fn install(policy: AccessPolicy) {
    *slot().write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(policy));
}

/// The installed policy; None when none was installed (everything is allowed).
pub fn current() -> Option<Arc<AccessPolicy>> {
    slot().read().unwrap_or_else(|e| e.into_inner()).as_ref().map(Arc::clone)
}

/// Checks a read of `uri_or_path` against the installed policy (Ok without one).
pub fn check_read(uri_or_path: &str) -> Result<(), Error> {
    check(Access::Read, uri_or_path)
}

/// Checks a write (or delete) of `uri_or_path` against the installed policy.
pub fn check_write(uri_or_path: &str) -> Result<(), Error> {
    check(Access::Write, uri_or_path)
}

/// Checks `access` to `uri_or_path` against the installed policy.
pub fn check(access: Access, uri_or_path: &str) -> Result<(), Error> {
    check_with(current().as_deref(), access, uri_or_path)
}

fn check_with(policy: Option<&AccessPolicy>, access: Access, uri_or_path: &str) -> Result<(), Error> {
    match policy {
        Some(p) => p.check(access, uri_or_path),
        None => Ok(()),
    }
}

/// Checks the local path `path` (absolute, as it will be opened), shown as `given`.
pub(crate) fn check_local(access: Access, given: &str, path: &FsPath) -> Result<(), Error> {
    match current() {
        Some(p) => p.check_local(access, given, path),
        None => Ok(()),
    }
}

/// Checks what `file` (just opened from `path`) really is, by the kernel's name
/// of its descriptor (`/proc/self/fd/N`): no symlink swapped between the path
/// check and the open can redirect it. Where `/proc` is missing, checks `path`.
pub fn check_opened(access: Access, given: &str, path: &FsPath, file: &std::fs::File) -> Result<(), Error> {
    let Some(policy) = current() else { return Ok(()) };
    if policy.any {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            if real.is_absolute() {
                return policy.check_place(access, given, &Place::Local(real));
            }
        }
    }
    let _ = file;
    policy.check_local(access, given, path)
}

/// The policy refusal inside `e` (an object_store, Parquet or I/O error from a
/// checked store), if that is what it is.
pub fn denial(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(Error::AccessDenied(m)) = x.downcast_ref::<Error>() {
            return Some(m.clone());
        }
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            if let Some(m) = io.get_ref().and_then(|inner| denial(inner)) {
                return Some(m);
            }
        }
        cur = x.source();
    }
    None
}

// ---- resolution -------------------------------------------------------------

enum Target {
    Local(PathBuf),
    Url(Place),
}

const URL_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https"];

/// A prefix as written on the command line, resolved.
fn prefix_place(p: &str) -> Result<Place, String> {
    if p.is_empty() {
        return Err("an empty prefix".into());
    }
    match target_place_with(p, false)? {
        Target::Url(place) => Ok(place),
        Target::Local(path) => {
            // The operator's own `..` is fine: normalised lexically first.
            let lexical = normalize_dots(&path);
            resolve_local(&lexical, 0).map(Place::Local)
        }
    }
}

/// What a checked URI or path names: a local path (absolute, unresolved) or a
/// normalised URL.
fn target_place(s: &str) -> Result<Target, String> {
    target_place_with(s, true)
}

fn target_place_with(s: &str, relative_ok: bool) -> Result<Target, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        let p = FsPath::new(s);
        if p.is_absolute() {
            return Ok(Target::Local(p.to_path_buf()));
        }
        if !relative_ok {
            return Err("a relative path (use an absolute path or a URL)".into());
        }
        let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
        return Ok(Target::Local(cwd.join(p)));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        // As `Location::parse` reads it: `file:///abs` literally, else the URL's path.
        if rest.starts_with('/') {
            return Ok(Target::Local(PathBuf::from(rest)));
        }
        let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
        let path = url.to_file_path().map_err(|_| "not a local file URL".to_string())?;
        return Ok(Target::Local(path));
    }
    if !URL_SCHEMES.contains(&scheme.as_str()) {
        return Err(format!(
            "unsupported scheme {scheme:?} (use a local path, file://, s3://, gs://, az:// or http(s)://)"
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    url_place(&scheme, authority, &decoded)
}

/// Normalises `scheme://authority/key` (the key as the store sees it).
fn url_place(scheme: &str, authority: &str, key: &str) -> Result<Target, String> {
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "s3a" => "s3".to_string(),
        other => other.to_string(),
    };
    let web = scheme == "http" || scheme == "https";
    // Credentials never take part (nor appear in messages).
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h).to_ascii_lowercase();
    let host = match (scheme.as_str(), host.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h.to_string(),
        _ => host,
    };
    if host.is_empty() {
        return Err(format!("names no bucket or host (expected {scheme}://BUCKET/PATH)"));
    }
    let key = if web { key.split(['?', '#']).next().unwrap_or("") } else { key };
    let key = key.trim_matches('/');
    let dotdot = |seg: &str| percent_encoding::percent_decode_str(seg).decode_utf8_lossy() == "..";
    if key.split('/').any(dotdot) {
        return Err("a `..` segment in an object key is refused".into());
    }
    Ok(Target::Url(Place::Url { base: format!("{scheme}://{host}"), key: key.to_string() }))
}

/// The canonical location of the absolute `path` (see the module docs).
fn resolve_local(path: &FsPath, depth: u32) -> Result<PathBuf, String> {
    if depth > 40 {
        return Err(format!("cannot resolve {}: too many levels of symbolic links", path.display()));
    }
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let comps: Vec<Component<'_>> = path.components().collect();
    for i in (1..=comps.len()).rev() {
        let head: PathBuf = comps[..i].iter().collect();
        let rest = &comps[i..];
        match std::fs::canonicalize(&head) {
            Ok(mut real) => {
                if rest.iter().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(format!("a `..` below {}, which does not exist, is refused", head.display()));
                }
                for c in rest {
                    if let Component::Normal(n) = c {
                        real.push(n);
                    }
                }
                return Ok(real);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink: where a write through it would land.
                if let Ok(link) = std::fs::read_link(&head) {
                    let mut t = head.parent().unwrap_or(FsPath::new("/")).join(link);
                    for c in rest {
                        t.push(c.as_os_str());
                    }
                    return resolve_local(&t, depth + 1);
                }
            }
            Err(e) => return Err(format!("cannot resolve {}: {e}", head.display())),
        }
    }
    Err(format!("cannot resolve {}", path.display()))
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize_dots(p: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A URI for messages: no user, password, query or fragment; known secrets redacted.
fn safe_uri(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return redact(s) };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut out = format!("{scheme}://{host}");
    if let Some(p) = path {
        let web = matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https");
        let p = if web { p.split(['?', '#']).next().unwrap_or("") } else { p };
        out.push('/');
        out.push_str(p);
    }
    redact(&out)
}

// ---- the checked store --------------------------------------------------------

/// An object store that checks every request against the installed policy
/// before passing it on: what [`crate::store::Location::store`] hands out.
#[derive(Debug)]
pub(crate) struct Checked {
    inner: Arc<dyn ObjectStore>,
    /// The same store when it is the local filesystem (paths → files).
    local: Option<Arc<LocalFileSystem>>,
    /// `scheme://authority` for object stores.
    store_url: String,
}

impl Checked {
    pub(crate) fn local() -> Self {
        let fs = Arc::new(LocalFileSystem::new());
        Self { inner: Arc::clone(&fs) as Arc<dyn ObjectStore>, local: Some(fs), store_url: "file://".into() }
    }

    pub(crate) fn remote(inner: Arc<dyn ObjectStore>, store_url: &str) -> Self {
        Self { inner, local: None, store_url: store_url.to_string() }
    }

    fn gate(&self) -> Gate {
        Gate { local: self.local.clone(), store_url: self.store_url.clone() }
    }
}

/// What a check needs, owned (for streams).
#[derive(Clone)]
struct Gate {
    local: Option<Arc<LocalFileSystem>>,
    store_url: String,
}

impl Gate {
    fn check(&self, access: Access, path: &Path) -> object_store::Result<()> {
        let Some(policy) = current() else { return Ok(()) };
        if policy.any {
            return Ok(());
        }
        let r = match &self.local {
            Some(fs) => {
                let file = if path.as_ref().is_empty() {
                    Ok(PathBuf::from("/"))
                } else {
                    fs.path_to_filesystem(path).map_err(|e| e.to_string())
                };
                match file {
                    Ok(f) => policy.check_local(access, &f.display().to_string(), &f),
                    Err(why) => Err(policy.refuse(access, &format!("/{path}"), None, Some(&why))),
                }
            }
            None => {
                let (scheme, authority) = self.store_url.split_once("://").unwrap_or((&self.store_url, ""));
                let given = format!("{}/{path}", self.store_url);
                match url_place(scheme, authority, path.as_ref()) {
                    Ok(Target::Url(place)) => policy.check_place(access, &given, &place),
                    Ok(Target::Local(_)) => Err(policy.refuse(access, &given, None, Some("not a URL"))),
                    Err(why) => Err(policy.refuse(access, &given, None, Some(&why))),
                }
            }
        };
        r.map_err(|e| object_store::Error::PermissionDenied { path: path.to_string(), source: Box::new(e) })
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for Checked {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.gate().check(Access::Write, location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.gate().check(Access::Write, location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.gate().check(Access::Read, location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.gate().check(Access::Read, location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let gate = self.gate();
        let checked = locations
            .and_then(move |p| {
                let r = gate.check(Access::Write, &p).map(|_| p);
                futures::future::ready(r)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.gate().check(Access::Read, prefix.unwrap_or(&Path::default())) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.gate().check(Access::Read, prefix.unwrap_or(&Path::default())) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.gate().check(Access::Read, prefix.unwrap_or(&Path::default()))?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.gate().check(Access::Read, from)?;
        self.gate().check(Access::Write, to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        // A move deletes its source: both ends are writes.
        self.gate().check(Access::Write, from)?;
        self.gate().check(Access::Write, to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn denied(r: Result<(), Error>) -> String {
        match r {
            Err(Error::AccessDenied(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A temporary directory by its canonical path (`/tmp` may be a symlink).
    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        (d, real)
    }

    #[test]
    fn prefixes_match_whole_components() {
        let (_d, root) = tmp();
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(root.join("inx")).unwrap();
        std::fs::write(root.join("in/a.jsonl"), "{}\n").unwrap();
        std::fs::write(root.join("inx/a.jsonl"), "{}\n").unwrap();
        let p = AccessPolicy::new(&s(&[root.join("in").to_str().unwrap()]), &[]).unwrap();
        let ok = |x: &str| p.check(Access::Read, &root.join(x).display().to_string());
        assert!(ok("in").is_ok() && ok("in/a.jsonl").is_ok());
        let m = denied(ok("inx/a.jsonl"));
        let want = format!(
            "access denied: reading {} is outside --allow-read (allowed: {})",
            root.join("inx/a.jsonl").display(),
            root.join("in").display()
        );
        assert_eq!(m, want);
        // A read prefix allows no write.
        assert!(denied(p.check(Access::Write, &root.join("in/b").display().to_string())).contains("--allow-write"));
    }

    #[test]
    fn dot_dot_escapes_are_refused() {
        let (_d, root) = tmp();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("secret"), "x").unwrap();
        let p =
            AccessPolicy::new(&s(&[root.join("data").to_str().unwrap()]), &s(&[root.join("out").to_str().unwrap()]))
                .unwrap();
        let given = format!("{}/data/../secret", root.display());
        let m = denied(p.check(Access::Read, &given));
        assert!(
            m.starts_with(&format!("access denied: reading {given} (resolves to {}/secret)", root.display())),
            "{m}"
        );
        // Below an output that does not exist yet, `..` cannot be resolved: refused.
        let m = denied(p.check(Access::Write, &format!("{}/out/new/../../secret", root.display())));
        assert!(m.contains("`..` below"), "{m}");
        // A file URL is a local path.
        assert!(p.check(Access::Read, &format!("file://{}/data/x", root.display())).is_ok());
        assert!(p.check(Access::Read, &format!("file://{}/data/../secret", root.display())).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_checked_where_they_point_at_every_check() {
        let (_d, root) = tmp();
        for d in ["data", "other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("data/real.jsonl"), "{}\n").unwrap();
        std::fs::write(root.join("other/secret.jsonl"), "{}\n").unwrap();
        let p = AccessPolicy::new(&s(&[root.join("data").to_str().unwrap()]), &[]).unwrap();
        let link = root.join("data/in.jsonl");
        let given = link.display().to_string();
        std::os::unix::fs::symlink(root.join("other/secret.jsonl"), &link).unwrap();
        let m = denied(p.check(Access::Read, &given));
        assert!(
            m.starts_with(&format!(
                "access denied: reading {given} (resolves to {}/other/secret.jsonl)",
                root.display()
            )),
            "{m}"
        );
        // Swapped after a first successful check: refused at the second.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(root.join("data/real.jsonl"), &link).unwrap();
        assert!(p.check(Access::Read, &given).is_ok());
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(root.join("other/secret.jsonl"), &link).unwrap();
        assert!(p.check(Access::Read, &given).is_err());
        // A dangling symlink is followed to where a write would land.
        let dangling = root.join("data/out.parquet");
        std::os::unix::fs::symlink(root.join("other/new.parquet"), &dangling).unwrap();
        let w = AccessPolicy::new(&[], &s(&[root.join("data").to_str().unwrap()])).unwrap();
        assert!(w.check(Access::Write, &dangling.display().to_string()).is_err());
        // A symlinked allowed directory is resolved once, at `new`.
        let alias = root.join("alias");
        std::os::unix::fs::symlink(root.join("data"), &alias).unwrap();
        let a = AccessPolicy::new(&s(&[alias.to_str().unwrap()]), &[]).unwrap();
        assert!(a.check(Access::Read, &root.join("data/real.jsonl").display().to_string()).is_ok());
    }

    #[test]
    fn outputs_that_do_not_exist_yet_are_writable_and_readable() {
        let (_d, root) = tmp();
        let out = root.join("out");
        let p = AccessPolicy::new(&[], &s(&[out.to_str().unwrap()])).unwrap();
        let shard = out.join("run-1/part-00000.parquet").display().to_string();
        assert!(p.check(Access::Write, &shard).is_ok());
        assert!(p.check(Access::Read, &shard).is_ok(), "a job reads back its own output");
        assert!(p.check(Access::Write, &root.join("outside").display().to_string()).is_err());
    }

    #[test]
    fn url_prefixes_stop_at_bucket_and_segment_boundaries() {
        let p = AccessPolicy::new(&s(&["s3://corp/", "http://Host:8080/pub/"]), &s(&["s3://out/jobs/a"])).unwrap();
        assert!(p.check(Access::Read, "s3://corp/x/y.jsonl").is_ok());
        assert!(p.check(Access::Read, "S3A://CORP/x").is_ok());
        let m = denied(p.check(Access::Read, "s3://corpora/x"));
        assert_eq!(
            m,
            "access denied: reading s3://corpora/x is outside --allow-read and --allow-write (allowed: s3://corp/, http://host:8080/pub/, s3://out/jobs/a/)"
        );
        assert!(p.check(Access::Read, "http://host:8080/pub/a.json?x=1").is_ok());
        assert!(p.check(Access::Read, "http://host:8080/public/a.json").is_err());
        assert!(p.check(Access::Read, "http://host:8081/pub/a.json").is_err());
        assert!(p.check(Access::Write, "s3://out/jobs/a").is_ok());
        assert!(p.check(Access::Write, "s3://out/jobs/a/part-0.parquet").is_ok());
        assert!(p.check(Access::Write, "s3://out/jobs/ab/part-0.parquet").is_err());
        assert!(p.check(Access::Write, "s3://corp/x").is_err());
        let m = denied(p.check(Access::Read, "s3://corp/x/../../other/y"));
        assert!(m.contains("`..` segment"), "{m}");
        assert!(p.check(Access::Read, "http://host:8080/pub/%2e%2e/secret").is_err());
    }

    #[test]
    fn bad_prefixes_are_errors_naming_them() {
        let e = AccessPolicy::new(&s(&["data/in"]), &[]).unwrap_err().to_string();
        assert!(e.contains("--allow-read data/in") && e.contains("relative"), "{e}");
        let e = AccessPolicy::new(&[], &s(&["ftp://h/x"])).unwrap_err().to_string();
        assert!(e.contains("--allow-write ftp://h/x") && e.contains("unsupported scheme"), "{e}");
        assert!(AccessPolicy::new(&s(&["s3:///nobucket"]), &[]).is_err());
        assert!(AccessPolicy::new(&s(&["s3://b/a/../c"]), &[]).is_err());
    }

    #[test]
    fn credentials_never_appear_in_refusals() {
        let p = AccessPolicy::new(&s(&["s3://corp/"]), &[]).unwrap();
        let m = denied(p.check(Access::Read, "https://alice:hunter2secret@host/a?X-Amz-Signature=abcdef123"));
        assert!(!m.contains("hunter2secret") && !m.contains("alice") && !m.contains("abcdef123"), "{m}");
        assert!(m.contains("https://host/a"), "{m}");
        let e = AccessPolicy::new(&s(&["https://bob:pw-secret-99@h/x/"]), &[]).unwrap();
        assert!(!format!("{e:?}").contains("pw-secret-99"));
    }

    #[test]
    fn any_and_no_policy_allow_everything() {
        assert!(AccessPolicy::any().check(Access::Write, "/etc/passwd").is_ok());
        assert!(AccessPolicy::any().check(Access::Read, "relative/../x").is_ok());
        // No policy installed: everything is allowed.
        assert!(check_with(None, Access::Read, "/etc/hostname").is_ok());
        assert!(check_with(None, Access::Write, "s3://x/../y").is_ok());
    }

    /// The installed policy reaches the stores `Location` hands out and the
    /// shard writer. Other tests of this binary run at the same time, so the
    /// policy installed here allows what they use (the temporary directory, the
    /// workspace) and refuses `/etc`; `any` is restored at the end.
    #[tokio::test]
    async fn installed_policy_checks_stores_and_writers() {
        let tmp_root = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let workspace = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cwd = std::env::current_dir().unwrap();
        let broad: Vec<String> =
            [tmp_root.as_path(), workspace.as_path(), cwd.as_path(), FsPath::new("/proc"), FsPath::new("/dev")]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
        install(AccessPolicy::new(&broad, &broad).unwrap());
        let loc = crate::Location::parse("/etc/hostname", None).unwrap();
        let e = loc.get_opt().await.unwrap_err().to_string();
        assert!(e.starts_with("access denied: reading /etc/hostname is outside --allow-read and --allow-write"), "{e}");
        // The raw store refuses too, and the refusal is recognised in its error.
        let store = loc.store().unwrap();
        let raw = object_store::ObjectStoreExt::get(store.as_ref(), &loc.path()).await.unwrap_err();
        assert_eq!(denial(&raw).as_deref(), Some(e.as_str()));
        let listed = crate::Location::parse("/etc", None).unwrap().list().await.unwrap_err().to_string();
        assert!(listed.starts_with("access denied: reading /etc"), "{listed}");
        let put = crate::Location::parse("/etc/dsproc-policy-test", None).unwrap().put(&b"x"[..]).await.unwrap_err();
        assert!(put.to_string().starts_with("access denied: writing /etc/dsproc-policy-test is outside --allow-write"));
        let handle = tokio::runtime::Handle::current();
        let w = crate::Location::parse("/etc/dsproc-policy-test.parquet", None).unwrap();
        let e = tokio::task::spawn_blocking(move || crate::upload::ObjectWriter::create(&w, &handle).err())
            .await
            .unwrap()
            .expect("refused");
        assert!(e.to_string().starts_with("access denied: writing /etc/dsproc-policy-test.parquet"), "{e}");
        assert!(check_write("/etc/dsproc-policy-test").is_err());
        // The local reader refuses before opening.
        let file =
            crate::InputFile { path: "etc/hostname".into(), rel: "hostname".into(), size: 1, version: String::new() };
        let handle = tokio::runtime::Handle::current();
        let (store2, shown) = (Arc::clone(&store), "/etc/hostname".to_string());
        let e = tokio::task::spawn_blocking(move || {
            crate::read::open_input("file://", &store2, &file, 0, 1, &handle, &shown).err()
        })
        .await
        .unwrap()
        .expect("refused");
        assert!(e.to_string().starts_with("access denied: reading /etc/hostname"), "{e}");
        // A file opened inside the policy is checked by what it really is.
        let (_d2, root2) = tmp();
        let inside = root2.join("a.jsonl");
        std::fs::write(&inside, "{}\n").unwrap();
        let f = std::fs::File::open(&inside).unwrap();
        assert!(check_opened(Access::Read, "a.jsonl", &inside, &f).is_ok());
        let etc = std::fs::File::open("/etc/hostname").unwrap();
        let m = check_opened(Access::Read, "a.jsonl", &inside, &etc).unwrap_err().to_string();
        assert!(m.starts_with("access denied: reading a.jsonl (resolves to /etc/hostname)"), "{m}");
        let (_d, root) = tmp();
        assert!(check_read(&root.join("x").display().to_string()).is_ok());
        install(AccessPolicy::any());
        assert!(loc.exists().await.is_ok());
    }
}
