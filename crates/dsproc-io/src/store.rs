//! Object-store locations: a URI (local path, `file://`, `s3://`, `gs://`,
//! `az://`, `http(s)://`) resolved to a store plus a path inside it, and the few
//! store operations the rest of dsproc uses (put, conditional put, get, list,
//! rename, delete), each failing with a message that names the location, the
//! bucket and the operation, with every credential value redacted.
//!
//! Credentials come from the standard environment variables and provider chains
//! of each store (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, web identity and instance
//! metadata; `GOOGLE_*`; `AZURE_*`). A job may override them per location with
//! [`StorageOptions`]: literal non-secret settings and the *names* of environment
//! variables that hold secrets. Values are read from the environment of the
//! process that opens the store (driver or executor); plans carry only names.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

/// Per-location store settings from the job spec (`[input.storage]`,
/// `[output.storage]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StorageOptions {
    /// Literal, non-secret settings: object_store configuration keys such as
    /// `endpoint`, `region`, `allow_http`, `virtual_hosted_style_request`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Settings read from environment variables: configuration key → variable
    /// name, e.g. `access_key_id = "PROD_S3_KEY"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Configuration keys whose values are secrets: never accepted literally.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "token", "password", "access_key", "account_key", "credential", "sas", "service_account_key"]
        .iter()
        .any(|s| k.contains(s))
        || k == "key"
}

/// Checks one store setting (`key`, and `value` when it is written literally) for a
/// store of URI scheme `scheme` before anything is opened, so that a bad setting
/// is a spec error and never reaches object_store (which panics on an endpoint
/// without a scheme): the key must be a setting of that store, an endpoint an
/// `http://` or `https://` URL with a host, a region a plain name. Local paths
/// take no store settings, so nothing is checked for them. Returns what is wrong.
pub fn check_setting(scheme: &str, key: &str, value: Option<&str>) -> Result<(), String> {
    let k = key.to_ascii_lowercase();
    let known = match scheme {
        "s3" | "s3a" => k.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
        "gs" => k.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
        "az" | "adl" | "azure" | "abfs" | "abfss" => k.parse::<object_store::azure::AzureConfigKey>().is_ok(),
        "http" | "https" => k.parse::<object_store::ClientConfigKey>().is_ok(),
        _ => return Ok(()),
    };
    if !known {
        return Err(format!(
            "unknown storage setting `{key}` for {scheme}:// (see the object_store configuration keys of that store)"
        ));
    }
    let Some(v) = value else { return Ok(()) };
    if k.contains("endpoint") {
        check_endpoint(v)?;
    } else if k == "region" || k == "aws_region" || k == "aws_default_region" || k == "default_region" {
        let ok = !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!("region {v:?} is not a region name (letters, digits, `-`; e.g. \"us-east-1\")"));
        }
    }
    Ok(())
}

/// An endpoint must be an `http://` or `https://` URL with a host, e.g.
/// `http://127.0.0.1:9000` (object_store panics on `127.0.0.1:9000`).
pub fn check_endpoint(v: &str) -> Result<(), String> {
    let hint = |why: &str| {
        let example = if v.contains("://") { String::new() } else { format!(" (did you mean \"http://{v}\"?)") };
        format!("endpoint {v:?} {why}: use an http:// or https:// URL such as \"http://127.0.0.1:9000\"{example}")
    };
    let Some((scheme, _)) = v.split_once("://") else { return Err(hint("has no scheme")) };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(hint(&format!("has the scheme {scheme:?}")));
    }
    match Url::parse(v) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err(hint("names no host")),
        Err(e) => Err(hint(&format!("is not a URL ({e})"))),
    }
}

/// A store failure. Every message names the location (and for object stores the
/// bucket and operation) and has every registered credential value redacted; the
/// object_store error is **not** kept as a source, because its text (request URLs,
/// response bodies) may carry what [`redact`] removed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A URI that names no usable location (bad scheme, no bucket, not UTF-8).
    #[error("{0}")]
    Uri(String),
    /// Store settings that cannot be applied: an unknown key, an environment
    /// variable that is not set, a builder that refuses the configuration.
    #[error("{0}")]
    Config(String),
    /// A store operation failed (redacted message: location, bucket, operation, status).
    #[error("{message}")]
    Request {
        /// The operation, e.g. `PUT`, `LIST`, `conditional PUT`.
        op: String,
        message: String,
    },
    /// A local file could not be read or removed.
    #[error("{context}")]
    Local {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The location cannot take this operation (e.g. writes to `http(s)://`).
    #[error("{0}")]
    Unsupported(String),
    /// The access policy refuses the operation ([`crate::policy`]).
    #[error("{0}")]
    Denied(String),
}

impl StoreError {
    fn local(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Local { context: context.into(), source }
    }
}

/// For callers whose errors are text (the job-level [`dsproc_common::error::DsprocError`]).
impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        dsproc_common::error::Chain(&e).to_string()
    }
}

/// A resolved location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The URI as the user wrote it, for messages.
    pub uri: String,
    /// `scheme://authority` of the store, e.g. `file://` or `s3://bucket`.
    pub store_url: String,
    /// Path inside the store, unencoded (glob characters kept), no leading `/`.
    pub raw: String,
    /// The local filesystem path when the store is the local filesystem.
    pub local: Option<PathBuf>,
    /// Store settings (non-secret values and environment variable names).
    #[serde(default)]
    pub storage: StorageOptions,
}

const REMOTE_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https"];

impl Location {
    /// Resolves a URI. Relative local paths are made absolute against the
    /// current directory (or `base` when given).
    pub fn parse(uri: &str, base: Option<&FsPath>) -> Result<Self, StoreError> {
        if let Some((scheme, rest)) = uri.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "file" {
                let url = Url::parse(uri).map_err(|e| StoreError::Uri(format!("invalid URL {uri:?}: {e}")))?;
                // Keep glob characters: Url percent-encodes some of them.
                let p = if rest.starts_with('/') { PathBuf::from(rest) } else { url.path().into() };
                return Self::local(uri, &p);
            }
            if !REMOTE_SCHEMES.contains(&scheme.as_str()) {
                return Err(StoreError::Uri(format!(
                    "unsupported URI scheme {scheme:?} in {uri:?}: use a local path, file://, s3://, gs://, az:// or http(s)://"
                )));
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.is_empty() {
                return Err(StoreError::Uri(format!("{uri:?} names no bucket (expected {scheme}://BUCKET/PATH)")));
            }
            // The path keeps glob characters; percent-escapes the user wrote are decoded.
            let raw = decode_str(path).trim_end_matches('/').to_string();
            return Ok(Self {
                uri: uri.to_string(),
                store_url: format!("{scheme}://{authority}"),
                raw,
                local: None,
                storage: StorageOptions::default(),
            });
        }
        let p = FsPath::new(uri);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            let base = match base {
                Some(b) => b.to_path_buf(),
                None => std::env::current_dir().map_err(|e| StoreError::local("current directory", e))?,
            };
            base.join(p)
        };
        Self::local(uri, &abs)
    }

    fn local(uri: &str, abs: &FsPath) -> Result<Self, StoreError> {
        let abs = normalize_dots(abs);
        let s = abs.to_str().ok_or_else(|| StoreError::Uri(format!("path is not UTF-8: {}", abs.display())))?;
        Ok(Self {
            uri: uri.to_string(),
            store_url: "file://".into(),
            raw: s.trim_start_matches('/').to_string(),
            local: Some(abs),
            storage: StorageOptions::default(),
        })
    }

    /// The same location with the job's store settings.
    pub fn with_storage(mut self, storage: StorageOptions) -> Self {
        self.storage = storage;
        self
    }

    /// The same location with `other`'s store settings when both are on one store
    /// (same scheme and bucket), else unchanged: a URI met inside a job (a saved
    /// index, a pointer) on the output's store is read with the output's settings.
    pub fn with_storage_of(self, other: &Location) -> Self {
        if self.store_url == other.store_url {
            let storage = other.storage.clone();
            self.with_storage(storage)
        } else {
            self
        }
    }

    /// The location of a store URL's root (`s3://bucket`), for stores named in plans.
    pub fn root(store_url: &str, storage: &StorageOptions) -> Result<Self, StoreError> {
        Ok(Self::parse(&format!("{store_url}/"), None)?.with_storage(storage.clone()))
    }

    pub fn is_local(&self) -> bool {
        self.store_url == "file://"
    }

    /// The URI scheme (`file`, `s3`, ...).
    pub fn scheme(&self) -> &str {
        self.store_url.split("://").next().unwrap_or("")
    }

    /// The bucket (or container, or host) of a remote location.
    pub fn bucket(&self) -> &str {
        self.store_url.split_once("://").map(|(_, a)| a).unwrap_or("")
    }

    /// True for stores that can only be read (`http(s)://`).
    pub fn read_only(&self) -> bool {
        matches!(self.scheme(), "http" | "https")
    }

    /// The object store serving this location (one client per store and
    /// settings per process). Every request through it is checked against the
    /// access policy ([`crate::policy`]) when it is made.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        type Cache = Mutex<BTreeMap<String, Arc<dyn ObjectStore>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let key = format!("{}|{}", self.store_url, serde_json::to_string(&self.storage).unwrap_or_default());
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(&key) {
            return Ok(Arc::clone(s));
        }
        let store = self.build_store()?;
        cache.insert(key, Arc::clone(&store));
        Ok(store)
    }

    fn build_store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        if self.is_local() {
            // No automatic cleanup: it removes every emptied parent up to `/`, user
            // directories included. Our own directories are removed by `delete_all`.
            return Ok(Arc::new(crate::policy::Checked::local()));
        }
        let mut settings: Vec<(String, String)> =
            self.storage.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, var) in &self.storage.env {
            let value = std::env::var(var).map_err(|_| {
                StoreError::Config(format!(
                    "{}: storage.env.{key} names the environment variable {var}, which is not set here",
                    self.uri
                ))
            })?;
            if is_secret_key(key) {
                register_secret(&value);
            }
            settings.push((key.clone(), value));
        }
        let bad = |e: object_store::Error| {
            StoreError::Config(redact(&format!("{}: cannot configure the {} store: {e}", self.uri, self.scheme())))
        };
        macro_rules! configure {
            ($builder:expr, $key:ty) => {{
                let mut b = $builder;
                for (k, v) in settings {
                    let key: $key = k.to_ascii_lowercase().parse().map_err(|_| {
                        StoreError::Config(format!(
                            "{}: unknown storage setting {k:?} for {}://",
                            self.uri,
                            self.scheme()
                        ))
                    })?;
                    b = b.with_config(key, v);
                }
                b
            }};
        }
        for (k, v) in &settings {
            if let Err(e) = check_setting(self.scheme(), k, (!is_secret_key(k)).then_some(v.as_str())) {
                return Err(StoreError::Config(format!("{}: {e}", self.uri)));
            }
        }
        let url = format!("{}/", self.store_url);
        let store: Arc<dyn ObjectStore> = match self.scheme() {
            "s3" | "s3a" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let b = configure!(AmazonS3Builder::from_env().with_url(url), AmazonS3ConfigKey);
                // AWS_ENDPOINT_URL (and friends) from the environment are checked too.
                for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
                    if let Some(e) = b.get_config_value(&key) {
                        check_endpoint(&e).map_err(|m| {
                            StoreError::Config(format!(
                                "{}: {m} (from the job's storage settings or AWS_ENDPOINT_URL)",
                                self.uri
                            ))
                        })?;
                    }
                }
                Arc::new(b.build().map_err(bad)?)
            }
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let b = configure!(GoogleCloudStorageBuilder::from_env().with_url(url), GoogleConfigKey);
                Arc::new(b.build().map_err(bad)?)
            }
            "az" | "adl" | "azure" | "abfs" | "abfss" => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let b = configure!(MicrosoftAzureBuilder::from_env().with_url(url), AzureConfigKey);
                Arc::new(b.build().map_err(bad)?)
            }
            "http" | "https" => {
                use object_store::http::HttpBuilder;
                use object_store::ClientConfigKey;
                let mut b = configure!(HttpBuilder::new().with_url(url), ClientConfigKey);
                if self.scheme() == "http" {
                    b = b.with_config(ClientConfigKey::AllowHttp, "true");
                }
                Arc::new(b.build().map_err(bad)?)
            }
            other => return Err(StoreError::Unsupported(format!("no object store for {other}://"))),
        };
        Ok(Arc::new(crate::policy::Checked::remote(store, &self.store_url)))
    }

    /// The object-store path (see [`object_path`]).
    pub fn path(&self) -> Path {
        object_path(&self.raw)
    }

    /// A child location.
    pub fn join(&self, rel: &str) -> Self {
        let rel = rel.trim_start_matches('/');
        let raw =
            if self.raw.is_empty() { rel.to_string() } else { format!("{}/{rel}", self.raw.trim_end_matches('/')) };
        Self {
            uri: format!("{}/{}", self.uri.trim_end_matches('/'), rel),
            store_url: self.store_url.clone(),
            raw,
            local: self.local.as_ref().map(|l| l.join(rel)),
            storage: self.storage.clone(),
        }
    }

    /// The location named `name` in the same directory.
    pub fn sibling(&self, name: &str) -> Self {
        let swap = |s: &str| match s.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        Self {
            uri: swap(&self.uri),
            store_url: self.store_url.clone(),
            raw: swap(&self.raw),
            local: self.local.as_ref().map(|l| l.with_file_name(name)),
            storage: self.storage.clone(),
        }
    }

    /// The last path component.
    pub fn file_name(&self) -> &str {
        self.raw.rsplit('/').next().unwrap_or(&self.raw)
    }

    /// The canonical URI (`file:///abs/path`, `s3://bucket/key`).
    pub fn canonical(&self) -> String {
        uri_of(&self.store_url, &self.raw)
    }

    /// How the location is shown in messages: a path for local files, else its URI.
    pub fn shown(&self) -> String {
        shown(&self.store_url, &self.raw)
    }

    /// A store error as a message naming the location, the bucket and the operation.
    pub fn error(&self, op: &str, e: &object_store::Error) -> StoreError {
        StoreError::Request { op: op.to_string(), message: store_error(self, op, e) }
    }

    /// Checks `access` to this location against the access policy, naming the
    /// URI as given (the store checks every request again, by its path).
    pub fn allow(&self, access: crate::policy::Access) -> Result<(), StoreError> {
        let Some(policy) = crate::policy::current() else { return Ok(()) };
        let r = match &self.local {
            Some(path) => policy.check_local(access, &self.uri, path),
            None => policy.check_as(access, &self.uri, &self.canonical()),
        };
        r.map_err(|e| StoreError::Denied(e.to_string()))
    }

    // ---- operations -------------------------------------------------------

    /// Writes `bytes` (replacing any object there; atomic on every store).
    pub async fn put(&self, bytes: impl Into<Bytes>) -> Result<(), StoreError> {
        self.allow(crate::policy::Access::Write)?;
        let store = self.store()?;
        store.put(&self.path(), PutPayload::from(bytes.into())).await.map(|_| ()).map_err(|e| self.error("PUT", &e))
    }

    /// Creates the object only if it does not exist (`If-None-Match: *` on S3).
    /// Returns false when it existed. On stores without conditional puts it
    /// checks first and puts (not atomic), with a warning.
    pub async fn put_if_absent(&self, bytes: impl Into<Bytes>) -> Result<bool, StoreError> {
        self.allow(crate::policy::Access::Write)?;
        let store = self.store()?;
        let bytes = bytes.into();
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match store.put_opts(&self.path(), PutPayload::from(bytes.clone()), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                tracing::warn!(uri = %self.shown(), "the store has no conditional put; checking, then writing");
                if self.exists().await? {
                    return Ok(false);
                }
                self.put(bytes).await.map(|_| true)
            }
            Err(e) => Err(self.error("conditional PUT", &e)),
        }
    }

    /// Replaces the object only if it is still the one read with `e_tag`
    /// (`If-Match` on S3, GCS and Azure). Returns false when it changed. Stores
    /// without conditional updates (the local filesystem, whose put is an atomic
    /// rename, and S3 servers that refuse `If-Match`) are written unconditionally;
    /// callers serialise writers with the commit lock.
    pub async fn put_if_match(&self, bytes: impl Into<Bytes>, e_tag: Option<String>) -> Result<bool, StoreError> {
        self.allow(crate::policy::Access::Write)?;
        let Some(e_tag) = e_tag.filter(|_| !self.is_local()) else {
            return self.put(bytes).await.map(|_| true);
        };
        let store = self.store()?;
        let bytes = bytes.into();
        let update = object_store::UpdateVersion { e_tag: Some(e_tag), version: None };
        let opts = PutOptions { mode: PutMode::Update(update), ..Default::default() };
        match store.put_opts(&self.path(), PutPayload::from(bytes.clone()), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                tracing::warn!(uri = %self.shown(), "the store has no conditional update; writing under the commit lock only");
                self.put(bytes).await.map(|_| true)
            }
            Err(e) => Err(self.error("conditional PUT (If-Match)", &e)),
        }
    }

    /// Uploads a local file to this location, streamed (one PUT up to one part,
    /// else a multipart upload of `UPLOAD_PART_BYTES` parts, a few in flight).
    pub async fn put_file(&self, file: &FsPath) -> Result<(), StoreError> {
        self.allow(crate::policy::Access::Write)?;
        use dsproc_common::config::{UPLOAD_CONCURRENCY, UPLOAD_PART_BYTES};
        use tokio::io::AsyncReadExt;
        let read_err = |e: std::io::Error| StoreError::local(format!("reading {}", file.display()), e);
        let size = std::fs::metadata(file).map_err(read_err)?.len();
        if size as usize <= UPLOAD_PART_BYTES {
            return self.put(std::fs::read(file).map_err(read_err)?).await;
        }
        let store = self.store()?;
        let up = store.put_multipart(&self.path()).await.map_err(|e| self.error("starting a multipart upload", &e))?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(up, UPLOAD_PART_BYTES);
        let mut f = tokio::fs::File::open(file).await.map_err(read_err)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(read_err)?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(UPLOAD_CONCURRENCY).await.map_err(|e| self.error("multipart upload", &e))?;
            w.write(&buf[..n]);
        }
        w.finish().await.map(|_| ()).map_err(|e| self.error("multipart upload", &e))
    }

    /// The object's bytes and ETag, or None when it does not exist.
    pub async fn get_with_etag(&self) -> Result<Option<(Bytes, Option<String>)>, StoreError> {
        self.allow(crate::policy::Access::Read)?;
        let store = self.store()?;
        match store.get(&self.path()).await {
            Ok(r) => {
                let e_tag = r.meta.e_tag.clone();
                r.bytes().await.map(|b| Some((b, e_tag))).map_err(|e| self.error("GET", &e))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("GET", &e)),
        }
    }

    /// The object's size, or None when it does not exist.
    pub async fn size(&self) -> Result<Option<u64>, StoreError> {
        self.allow(crate::policy::Access::Read)?;
        let store = self.store()?;
        match store.head(&self.path()).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("HEAD", &e)),
        }
    }

    /// The object's bytes, or None when it does not exist.
    pub async fn get_opt(&self) -> Result<Option<Bytes>, StoreError> {
        self.allow(crate::policy::Access::Read)?;
        let store = self.store()?;
        match store.get(&self.path()).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.error("GET", &e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("GET", &e)),
        }
    }

    /// True when an object exists here.
    pub async fn exists(&self) -> Result<bool, StoreError> {
        self.allow(crate::policy::Access::Read)?;
        let store = self.store()?;
        match store.head(&self.path()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("HEAD", &e)),
        }
    }

    /// Every object below this location (recursively), with paths relative to it.
    pub async fn list(&self) -> Result<Vec<(String, ObjectMeta)>, StoreError> {
        self.allow(crate::policy::Access::Read)?;
        let store = self.store()?;
        let prefix = self.path();
        let metas: Vec<ObjectMeta> = match store.list(Some(&prefix)).try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.error("LIST", &e)),
        };
        let base = prefix.as_ref().to_string();
        Ok(metas
            .into_iter()
            .map(|m| {
                let full = decode_path(&m.location);
                let rel = full.strip_prefix(&base).unwrap_or(&full).trim_start_matches('/').to_string();
                (rel, m)
            })
            .collect())
    }

    /// The objects and "directories" directly below this location.
    pub async fn list_dir(&self) -> Result<(Vec<String>, Vec<ObjectMeta>), StoreError> {
        self.allow(crate::policy::Access::Read)?;
        let store = self.store()?;
        let prefix = self.path();
        let r = match store.list_with_delimiter(Some(&prefix)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(self.error("LIST", &e)),
        };
        let dirs =
            r.common_prefixes.iter().map(|p| decode_path(p).rsplit('/').next().unwrap_or("").to_string()).collect();
        Ok((dirs, r.objects))
    }

    /// Moves the object to `to` (a rename locally, copy + delete on object stores).
    pub async fn rename_to(&self, to: &Location) -> Result<(), StoreError> {
        self.allow(crate::policy::Access::Write)?;
        to.allow(crate::policy::Access::Write)?;
        let store = self.store()?;
        store.rename(&self.path(), &to.path()).await.map_err(|e| to.error(&format!("move of {} to", self.shown()), &e))
    }

    /// Deletes the object (absent is fine).
    pub async fn delete(&self) -> Result<(), StoreError> {
        self.allow(crate::policy::Access::Write)?;
        let store = self.store()?;
        match store.delete(&self.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("DELETE", &e)),
        }
    }

    /// Deletes every object below this location; returns how many. Locally the
    /// directory goes too (and `_staging` when this was its last run).
    pub async fn delete_all(&self) -> Result<usize, StoreError> {
        self.allow(crate::policy::Access::Write)?;
        let store = self.store()?;
        let objects = self.list().await?;
        let n = objects.len();
        if let Some(dir) = self.local.as_ref().filter(|d| d.is_dir()) {
            std::fs::remove_dir_all(dir)
                .map_err(|e| StoreError::local(format!("cannot remove {}", dir.display()), e))?;
            // The staging root goes when its last run does.
            if let Some(parent) = dir.parent().filter(|p| p.ends_with(dsproc_common::config::STAGING_DIR)) {
                let _ = std::fs::remove_dir(parent);
            }
            return Ok(n);
        }
        let paths = futures::stream::iter(objects.into_iter().map(|(_, m)| Ok(m.location))).boxed();
        let errors: Vec<object_store::Error> = store
            .delete_stream(paths)
            .filter_map(|r| async move {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => Some(e),
                }
            })
            .collect()
            .await;
        if let Some(e) = errors.first() {
            return Err(self.error("DELETE", e));
        }
        Ok(n)
    }
}

/// DataFusion's object-store registry for dsproc processes (driver, scheduler,
/// executors): a URL's store is opened on first use the way [`Location::store`]
/// opens it (the standard environment variables of this process), so plans that
/// scan files by URL (`dedup_minhash`'s saved indexes) read them through
/// object_store wherever they run, never from a path only the driver can see.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    inner: datafusion::execution::object_store::DefaultObjectStoreRegistry,
}

impl datafusion::execution::object_store::ObjectStoreRegistry for StoreRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        // Local files through our checked store, not DataFusion's default one.
        if url.scheme() == "file" {
            return Location::root("file://", &StorageOptions::default())
                .and_then(|l| l.store())
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)));
        }
        if let Ok(s) = self.inner.get_store(url) {
            return Ok(s);
        }
        let base = format!("{}://{}", url.scheme(), url.authority());
        let storage = known_storage().lock().unwrap_or_else(|e| e.into_inner()).get(&base).cloned().unwrap_or_default();
        let store = Location::root(&base, &storage)
            .and_then(|l| l.store())
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        self.inner.register_store(url, Arc::clone(&store));
        Ok(store)
    }
}

fn known_storage() -> &'static Mutex<BTreeMap<String, StorageOptions>> {
    static KNOWN: OnceLock<Mutex<BTreeMap<String, StorageOptions>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Makes [`StoreRegistry`] open `loc`'s store with `loc`'s settings in this
/// process (the job's `[output.storage]` for the files plans scan by URL there).
/// Processes that never saw the spec (remote executors) use their environment.
pub fn remember_storage(loc: &Location) {
    if !loc.is_local() && loc.storage != StorageOptions::default() {
        known_storage().lock().unwrap_or_else(|e| e.into_inner()).insert(loc.store_url.clone(), loc.storage.clone());
    }
}

fn decode_str(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The object_store path of a raw path (`données été/日本 語.jsonl`), as the stores'
/// own listings give it: the characters as they are. (`Path::from` would
/// percent-encode every non-ASCII byte and `%`, naming another file: the local
/// store opens `donn%C3%A9es`, S3 asks for the key `donn%C3%A9es`.) Falls back to
/// `Path::from` only for what `Path::parse` refuses (control characters, empty or
/// `.`/`..` segments).
pub fn object_path(raw: &str) -> Path {
    Path::parse(raw).unwrap_or_else(|_| Path::from(raw))
}

/// An object_store path as the raw path we use (listings give paths with their
/// characters as they are, see [`object_path`]).
pub fn decode_path(p: &Path) -> String {
    p.as_ref().to_string()
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

/// A store error as one line: what was done where, what the store said, and
/// what to check. Credential values never appear in it.
fn store_error(loc: &Location, op: &str, e: &object_store::Error) -> String {
    use object_store::Error as E;
    if let Some(m) = crate::policy::denial(e) {
        return m;
    }
    let place = if loc.is_local() { loc.shown() } else { format!("{} (bucket {:?}, {op})", loc.shown(), loc.bucket()) };
    let detail = short(e);
    // List and multipart errors arrive as `Generic` with the HTTP status inside.
    let denied = matches!(e, E::PermissionDenied { .. } | E::Unauthenticated { .. })
        || detail.starts_with("403 ")
        || detail.starts_with("401 ");
    let what = match e {
        _ if denied => {
            let hint = match loc.scheme() {
                "s3" | "s3a" => {
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the variables named in the job's storage.env) and the bucket policy"
                }
                "gs" => "check GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS and the bucket's IAM",
                "az" | "adl" | "azure" | "abfs" | "abfss" => "check AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY",
                _ => "check the credentials",
            };
            format!("access denied ({detail}); {hint}")
        }
        E::NotFound { .. } => "not found".to_string(),
        _ => detail,
    };
    let msg = if loc.is_local() { format!("{op} {place}: {what}") } else { format!("{place}: {what}") };
    redact(&msg)
}

/// What the store said, in short: for an HTTP error the status and the
/// service's error code and message (`403 Forbidden SignatureDoesNotMatch: ...`),
/// never the whole response body (S3 bodies carry the string to sign).
fn short(e: &object_store::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        src = inner.source();
    }
    const STATUS: &str = "Server returned non-2xx status code: ";
    let Some(at) = s.find(STATUS) else { return s };
    let tail = &s[at + STATUS.len()..];
    let status: String = tail.split([':', '<']).next().unwrap_or("").trim().to_string();
    let tag = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let a = tail.find(&open)? + open.len();
        let b = a + tail[a..].find(&close)?;
        Some(tail[a..b].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(msg)) => format!("{status} {code}: {msg}"),
        (Some(code), None) => format!("{status} {code}"),
        _ => {
            let rest = tail[status.len()..].trim_start_matches([':', ' ']);
            if rest.is_empty() {
                status
            } else {
                format!("{status}: {}", rest.chars().take(200).collect::<String>())
            }
        }
    }
}

/// Credential values known to this process: those of the standard variables
/// (read once) and those named by a job's `storage.env`.
fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let values = std::env::vars()
            .filter(|(k, v)| {
                let store_var = k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_");
                store_var && is_secret_key(k) && v.len() >= 6
            })
            .map(|(_, v)| v)
            .collect();
        Mutex::new(values)
    })
}

fn register_secret(value: &str) {
    if value.len() >= 6 {
        let mut s = secrets().lock().unwrap_or_else(|e| e.into_inner());
        if !s.iter().any(|v| v == value) {
            s.push(value.to_string());
        }
    }
}

/// Replaces every known credential value in `s` with `***`.
pub fn redact(s: &str) -> String {
    let secrets = secrets().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = s.to_string();
    for v in secrets.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "***");
        }
    }
    out
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

    #[test]
    fn parses_object_store_urls() {
        let s = Location::parse("s3://bucket/corpus/*.jsonl.zst", None).unwrap();
        assert_eq!((s.store_url.as_str(), s.raw.as_str(), s.bucket()), ("s3://bucket", "corpus/*.jsonl.zst", "bucket"));
        assert!(s.local.is_none());
        let out = Location::parse("s3://bucket/out/", None).unwrap();
        assert_eq!(out.join("part-00000.parquet").canonical(), "s3://bucket/out/part-00000.parquet");
        let root = Location::parse("gs://b", None).unwrap();
        assert_eq!(root.raw, "");
        assert_eq!(root.join("x").raw, "x");
        assert!(Location::parse("https://host/a/b.jsonl", None).unwrap().read_only());
        assert!(Location::parse("s3:///nobucket", None).is_err());
    }

    #[tokio::test]
    async fn unicode_and_spaces_name_the_same_local_file_as_listings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("données été");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("日本 語.jsonl"), "{}\n").unwrap();
        let loc = Location::parse(&format!("{}/日本 語.jsonl", d.display()), None).unwrap();
        assert_eq!(loc.size().await.unwrap(), Some(3));
        let listed = Location::parse(&d.display().to_string(), None).unwrap().list().await.unwrap();
        assert_eq!(listed.iter().map(|(rel, _)| rel.as_str()).collect::<Vec<_>>(), ["日本 語.jsonl"]);
        assert_eq!(listed[0].1.location, loc.path());
        let out = loc.sibling("ü 2.json");
        out.put(&b"x"[..]).await.unwrap();
        assert!(d.join("ü 2.json").is_file());
    }

    #[test]
    fn endpoints_and_settings_are_checked() {
        assert!(check_endpoint("http://127.0.0.1:9000").is_ok());
        assert!(check_endpoint("https://s3.example.com").is_ok());
        let e = check_endpoint("127.0.0.1:9000").unwrap_err();
        assert!(e.contains("has no scheme") && e.contains("http://127.0.0.1:9000"), "{e}");
        assert!(check_endpoint("ftp://h").is_err() && check_endpoint("http://").is_err());
        assert!(check_setting("s3", "virtual_hosted_style_request", Some("true")).is_ok());
        assert!(check_setting("s3", "no_such", Some("x")).unwrap_err().contains("unknown storage setting"));
        assert!(check_setting("s3", "region", Some("us east")).is_err());
        assert!(check_setting("s3", "aws_endpoint", Some("minio:9000")).is_err());
        assert!(check_setting("file", "anything", Some("x")).is_ok());
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in ["secret_access_key", "aws_session_token", "access_key_id", "azure_storage_account_key", "token"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["endpoint", "region", "allow_http", "bucket"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn store_errors_keep_status_code_and_message_only() {
        let body = "Error performing GET http://h/b/k in 2ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>Check your key.</Message><AWSAccessKeyId>AKIAEXAMPLEKEYID0000</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign></Error>";
        let e = object_store::Error::Generic { store: "S3", source: body.into() };
        let loc = Location::parse("s3://b/k", None).unwrap();
        let m = store_error(&loc, "GET", &e);
        assert!(
            m.contains(
                "s3://b/k (bucket \"b\", GET): access denied (403 Forbidden SignatureDoesNotMatch: Check your key.)"
            ),
            "{m}"
        );
        assert!(!m.contains("AKIAEXAMPLE") && !m.contains("StringToSign"), "{m}");
    }

    #[test]
    fn redacts_registered_secrets() {
        register_secret("s3cr3t-value-xyz");
        assert_eq!(redact("denied for s3cr3t-value-xyz here"), "denied for *** here");
    }
}
