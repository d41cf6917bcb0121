//! Cluster security: a shared token and TLS on every channel.
//!
//! Ballista 55 builds its clients through one hook, the endpoint override
//! (`EndpointOverrideFn`), used by the driver (to the scheduler and to executors
//! for results), by executors (to the scheduler, and to each other for shuffle
//! reads) and by the scheduler (to executors). dsproc's override turns every
//! endpoint into `https://` with the cluster's CA (and, for mutual TLS, this
//! process's certificate) and carries the token in the `user-agent` header, the
//! one header an endpoint can set (`dsproc-token/TOKEN tonic/…`). The servers are
//! dsproc's own, built from Ballista's service types (the scheduler's gRPC
//! service, the executors' Flight service) with rustls and an interceptor that
//! refuses a call without the token (`UNAUTHENTICATED`) and strips the token from
//! what the service sees. Executors pull their tasks (Ballista's pull policy), so
//! they serve nothing but Flight: the push policy's task server cannot be hooked.
//!
//! Other clients authenticate with `authorization: Bearer TOKEN`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Request, Status};

use dsproc_common::DsprocError;

/// The environment variable holding the token itself.
pub const TOKEN_ENV: &str = "DSPROC_CLUSTER_TOKEN";
/// The environment variable naming a file holding the token.
pub const TOKEN_FILE_ENV: &str = "DSPROC_CLUSTER_TOKEN_FILE";
/// The CA certificate (PEM) that signed the cluster's certificates.
pub const TLS_CA_ENV: &str = "DSPROC_TLS_CA";
/// This process's certificate (PEM): a server's identity, a client's for mutual TLS.
pub const TLS_CERT_ENV: &str = "DSPROC_TLS_CERT";
/// The key (PEM) of [`TLS_CERT_ENV`].
pub const TLS_KEY_ENV: &str = "DSPROC_TLS_KEY";

/// What a refused token looks like in a status message (the driver tells it apart).
pub const REFUSED_TOKEN: &str = "dsproc cluster: missing or wrong token";
const USER_AGENT_PREFIX: &str = "dsproc-token/";

/// Where the token and the certificates come from (flags; clap fills them from
/// the environment variables above).
#[derive(Debug, Clone, Default)]
pub struct SecurityArgs {
    pub token_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Servers require clients to present a certificate signed by the CA.
    pub tls_client_auth: bool,
}

/// The shared secret. Never printed: `Debug` shows `<redacted>`.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Checks a token's form: 16 to 1024 visible ASCII characters (it travels in a header).
    pub fn parse(raw: &str, from: &str) -> Result<Self, DsprocError> {
        let t = raw.trim();
        if t.len() < 16 || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DsprocError::usage(format!(
                "the cluster token from {from} must be 16 to 1024 visible ASCII characters without spaces (`dsproc cluster certs` writes one)"
            )));
        }
        Ok(Self(t.to_string()))
    }

    /// Constant-time comparison.
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// TLS material of this process.
#[derive(Clone)]
struct Tls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    client_auth: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("identity", &self.identity.is_some())
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

/// The token and TLS settings of this process (either may be absent).
#[derive(Debug, Clone, Default)]
pub struct ClusterSecurity {
    token: Option<Token>,
    tls: Option<Tls>,
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, DsprocError> {
    std::fs::read(path).map_err(|e| DsprocError::usage(format!("cannot read the {what} {}: {e}", path.display())))
}

impl ClusterSecurity {
    /// Reads the token (`DSPROC_CLUSTER_TOKEN`, else the token file) and the TLS files.
    pub fn load(args: &SecurityArgs) -> Result<Self, DsprocError> {
        let token = match std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()) {
            Some(t) => Some(Token::parse(&t, TOKEN_ENV)?),
            None => match &args.token_file {
                Some(p) => {
                    let raw = read_file(p, "token file")?;
                    let text = String::from_utf8(raw)
                        .map_err(|_| DsprocError::usage(format!("the token file {} is not text", p.display())))?;
                    Some(Token::parse(&text, &format!("the token file {}", p.display()))?)
                }
                None => None,
            },
        };
        let identity = match (&args.tls_cert, &args.tls_key) {
            (Some(c), Some(k)) => Some((read_file(c, "TLS certificate")?, read_file(k, "TLS key")?)),
            (None, None) => None,
            _ => return Err(DsprocError::usage("--tls-cert and --tls-key go together")),
        };
        let tls = match &args.tls_ca {
            Some(ca) => {
                Some(Tls { ca: read_file(ca, "TLS CA certificate")?, identity, client_auth: args.tls_client_auth })
            }
            None if identity.is_some() => {
                return Err(DsprocError::usage(
                    "--tls-cert needs --tls-ca (DSPROC_TLS_CA): the CA that signed the cluster's certificates",
                ))
            }
            None => None,
        };
        if args.tls_client_auth && tls.as_ref().is_none_or(|t| t.identity.is_none()) {
            return Err(DsprocError::usage("--tls-client-auth needs --tls-ca, --tls-cert and --tls-key"));
        }
        Ok(Self { token, tls })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `token` and `tls` in words, for start-up lines.
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            Some(t) if t.client_auth => "mutual TLS",
            Some(_) => "TLS",
            None => "plaintext",
        };
        format!("{tls}, {}", if self.token.is_some() { "token required" } else { "no token" })
    }

    /// A server's TLS settings; a server without its own certificate is an error.
    pub fn server_tls(&self) -> Result<Option<ServerTlsConfig>, DsprocError> {
        let Some(tls) = &self.tls else { return Ok(None) };
        let Some((cert, key)) = &tls.identity else {
            return Err(DsprocError::usage("a TLS server needs --tls-cert and --tls-key besides --tls-ca"));
        };
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if tls.client_auth {
            cfg = cfg.client_ca_root(Certificate::from_pem(&tls.ca));
        }
        Ok(Some(cfg))
    }

    /// A client endpoint to `endpoint`'s address with this process's TLS and token.
    pub fn secure_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, Box<dyn std::error::Error + Send + Sync>> {
        let mut endpoint = match &self.tls {
            None => endpoint,
            Some(tls) => {
                let uri = endpoint.uri().to_string();
                let uri = match uri.strip_prefix("http://") {
                    Some(rest) => format!("https://{rest}"),
                    None => uri,
                };
                // A new endpoint (tonic cannot change an endpoint's scheme): the
                // settings Ballista's clients rely on are set again.
                let defaults = ballista_core::utils::GrpcClientConfig::default();
                let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca));
                if let Some((cert, key)) = &tls.identity {
                    cfg = cfg.identity(Identity::from_pem(cert, key));
                }
                Endpoint::from_shared(uri)?
                    .connect_timeout(std::time::Duration::from_secs(defaults.connect_timeout_seconds))
                    .tcp_nodelay(true)
                    .tcp_keepalive(Some(std::time::Duration::from_secs(defaults.tcp_keepalive_seconds)))
                    .http2_keep_alive_interval(std::time::Duration::from_secs(
                        defaults.http2_keepalive_interval_seconds,
                    ))
                    .keep_alive_timeout(std::time::Duration::from_secs(20))
                    .keep_alive_while_idle(true)
                    .initial_connection_window_size(Some(defaults.initial_connection_window_size))
                    .initial_stream_window_size(Some(defaults.initial_stream_window_size))
                    .tls_config(cfg)?
            }
        };
        if let Some(t) = &self.token {
            endpoint = endpoint.user_agent(format!("{USER_AGENT_PREFIX}{}", t.0))?;
        }
        Ok(endpoint)
    }

    /// The endpoint override Ballista's clients apply (None when there is nothing to add).
    pub fn endpoint_override(self: &Arc<Self>) -> Option<ballista_core::extension::EndpointOverrideFn> {
        if self.token.is_none() && self.tls.is_none() {
            return None;
        }
        let this = Arc::clone(self);
        Some(Arc::new(move |e: Endpoint| this.secure_endpoint(e)))
    }

    /// [`Self::authorize`] as a layer for a tonic server.
    pub fn auth_layer(
        self: &Arc<Self>,
    ) -> tonic::service::InterceptorLayer<impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone> {
        let this = Arc::clone(self);
        tonic::service::InterceptorLayer::new(move |req| this.authorize(req))
    }

    /// The server-side check: the token, from `authorization: Bearer` or the
    /// user agent; removed from the request the service sees.
    pub fn authorize(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else { return Ok(req) };
        let md = req.metadata();
        let bearer = md.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let agent = md
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_whitespace().find_map(|w| w.strip_prefix(USER_AGENT_PREFIX)));
        let ok = bearer.or(agent).is_some_and(|p| token.matches(p.trim()));
        if !ok {
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "an unknown peer".into());
            let why = if bearer.or(agent).is_some() { "a wrong token" } else { "no token" };
            tracing::warn!("refused a call from {peer} with {why}");
            return Err(Status::unauthenticated(REFUSED_TOKEN));
        }
        req.metadata_mut().remove("authorization");
        req.metadata_mut().remove("user-agent");
        Ok(req)
    }
}

/// What a client-side failure against a cluster means, when it is about the
/// token or TLS (None otherwise): "cluster … refused the token", a certificate
/// it does not trust, plaintext against TLS and the other way round.
pub fn explain_failure(text: &str) -> Option<String> {
    let s = current();
    if text.contains(REFUSED_TOKEN) || text.contains("Unauthenticated") {
        return Some(if s.has_token() {
            format!("refused the token (from {TOKEN_ENV} or {TOKEN_FILE_ENV}): it holds a different one")
        } else {
            format!("refused the token: it requires one; set {TOKEN_FILE_ENV} (or {TOKEN_ENV})")
        });
    }
    let t = text.to_ascii_lowercase();
    if t.contains("invalid peer certificate") || t.contains("unknownissuer") || t.contains("certificate verify") {
        return Some(format!(
            "presented a certificate this client does not trust: {TLS_CA_ENV} must name the CA that signed it"
        ));
    }
    if s.has_tls()
        && (t.contains("corrupt message") || t.contains("invalidcontenttype") || t.contains("invalid message"))
    {
        return Some("did not answer over TLS: is it a plaintext cluster? (unset DSPROC_TLS_CA)".into());
    }
    if !s.has_tls()
        && (t.contains("h2 protocol error")
            || t.contains("connection reset")
            || t.contains("connection closed")
            || t.contains("broken pipe")
            || t.contains("frame with invalid size"))
    {
        return Some(format!(
            "dropped a plaintext connection: a TLS cluster needs {TLS_CA_ENV} (its CA certificate) on the client"
        ));
    }
    None
}

/// The security settings of this process (default: none).
pub fn current() -> Arc<ClusterSecurity> {
    Arc::clone(CURRENT.get_or_init(Default::default))
}

static CURRENT: OnceLock<Arc<ClusterSecurity>> = OnceLock::new();

/// Sets this process's security settings, once, before any cluster client or server starts.
pub fn install(s: ClusterSecurity) -> Result<(), DsprocError> {
    CURRENT.set(Arc::new(s)).map_err(|_| DsprocError::job("cluster security was installed twice"))
}

/// True for addresses only this host reaches.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `dsproc cluster certs DIR`: a throwaway CA, one certificate for the cluster's
/// processes (server and client use: mutual TLS works with it), valid for
/// `hosts` (plus localhost and 127.0.0.1) for 30 days, and a random token.
/// Files: ca.pem, cluster.pem, cluster.key (0600), token (0600).
pub fn write_certs(dir: &Path, hosts: &[String]) -> Result<Vec<PathBuf>, DsprocError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| DsprocError::job(format!("cannot make certificates: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| DsprocError::job(format!("cannot create {}: {e}", dir.display())))?;
    let today = chrono::Utc::now().date_naive();
    let ymd = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let (from, to) = (ymd(today - chrono::Days::new(1)), ymd(today + chrono::Days::new(30)));

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "dsproc cluster CA (throwaway)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (from, to);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut leaf = CertificateParams::new(names).map_err(err)?;
    leaf.distinguished_name.push(DnType::CommonName, "dsproc cluster");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    (leaf.not_before, leaf.not_after) = (from, to);
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;

    let mut token = [0u8; 32];
    getrandom_bytes(&mut token)?;
    let files = [
        ("ca.pem", ca_cert.pem(), false),
        ("cluster.pem", leaf_cert.pem(), false),
        ("cluster.key", leaf_key.serialize_pem(), true),
        ("token", hex::encode(token) + "\n", true),
    ];
    let mut written = Vec::new();
    for (name, body, secret) in files {
        let path = dir.join(name);
        write_private(&path, body.as_bytes(), secret)?;
        written.push(path);
    }
    Ok(written)
}

fn write_private(path: &Path, body: &[u8], secret: bool) -> Result<(), DsprocError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let e = |e: std::io::Error| DsprocError::job(format!("cannot write {}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true).mode(if secret { 0o600 } else { 0o644 });
    let mut f = opts.open(path).map_err(e)?;
    f.write_all(body).map_err(e)
}

/// Random bytes from the kernel.
fn getrandom_bytes(buf: &mut [u8]) -> Result<(), DsprocError> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| DsprocError::job(format!("cannot read /dev/urandom: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(t: &str) -> ClusterSecurity {
        ClusterSecurity { token: Some(Token::parse(t, "test").unwrap()), tls: None }
    }

    fn request(headers: &[(&'static str, &str)]) -> Request<()> {
        let mut r = Request::new(());
        for (k, v) in headers {
            r.metadata_mut().insert(*k, v.parse().unwrap());
        }
        r
    }

    #[test]
    fn the_token_is_checked_and_removed() {
        let s = with_token("0123456789abcdef0123");
        let ok = s.authorize(request(&[("user-agent", "dsproc-token/0123456789abcdef0123 tonic/0.14.9")])).unwrap();
        assert!(ok.metadata().get("user-agent").is_none());
        assert!(s.authorize(request(&[("authorization", "Bearer 0123456789abcdef0123")])).is_ok());
        for bad in [
            request(&[]),
            request(&[("user-agent", "tonic/0.14.9")]),
            request(&[("user-agent", "dsproc-token/0123456789abcdef0124 tonic/0.14.9")]),
            request(&[("authorization", "Bearer 0123456789abcdef012")]),
        ] {
            let e = s.authorize(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert!(!e.message().contains("0123456789abcdef"), "{}", e.message());
        }
        // Without a token configured, everything passes.
        assert!(ClusterSecurity::default().authorize(request(&[])).is_ok());
    }

    #[test]
    fn short_or_spaced_tokens_are_refused_and_never_printed() {
        assert!(Token::parse("short", "x").is_err());
        assert!(Token::parse("has a space in it, long enough", "x").is_err());
        let t = Token::parse("  0123456789abcdef0123\n", "x").unwrap();
        assert!(!format!("{t:?} {:?}", with_token("0123456789abcdef0123")).contains("0123456789abcdef"));
    }

    #[test]
    fn certs_are_written_with_private_keys_unreadable_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = write_certs(dir.path(), &["node-1.example".into()]).unwrap();
        assert_eq!(files.len(), 4);
        for (name, mode) in [("cluster.key", 0o600), ("token", 0o600), ("ca.pem", 0o644)] {
            let m = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{name}");
        }
        let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
        assert!(Token::parse(&token, "file").is_ok());
        let pem = std::fs::read_to_string(dir.path().join("cluster.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let args = SecurityArgs {
            token_file: Some(dir.path().join("token")),
            tls_ca: Some(dir.path().join("ca.pem")),
            tls_cert: Some(dir.path().join("cluster.pem")),
            tls_key: Some(dir.path().join("cluster.key")),
            tls_client_auth: true,
        };
        let s = ClusterSecurity::load(&args).unwrap();
        assert!(s.has_tls() && s.has_token() && s.server_tls().unwrap().is_some());
        assert_eq!(s.describe(), "mutual TLS, token required");
    }
}
