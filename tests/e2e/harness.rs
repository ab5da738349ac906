//! Builder-style harness: a recording echo `Upstream`, the real `vestibule`
//! binary as `Gateway`, TLS clients trusting a per-test CA, and raw-socket helpers
//! for requests an HTTP library would refuse (or "fix") before sending.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_vestibule");
pub const PREFIX: &str = "/_vestibule";

static INIT: Once = Once::new();

/// Installs ring as the process-wide rustls provider (reqwest is built without one).
pub fn init() {
    INIT.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

// ---------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------

/// One request as the upstream received it.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received on the wire (origin form).
    pub uri: String,
    pub version: String,
    /// Header names (lower-case, as hyper gives them) and values, in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
    pub body_error: bool,
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// True when a header with this name exists, comparing case-insensitively and
    /// treating `_` and `-` as the same character.
    pub fn has_header_like(&self, name: &str) -> bool {
        let want = name.to_ascii_lowercase().replace('_', "-");
        self.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().replace('_', "-") == want)
    }
}

struct UpState {
    count: AtomicUsize,
    records: Mutex<Vec<Recorded>>,
}

type UBody = BoxBody<Bytes, Infallible>;

/// In-process HTTP/1.1 + h2c echo server on 127.0.0.1:0 that records every request.
///
/// Special paths (matched on the last path segment, so `/static/slow` works):
/// `slow?ms=N`, `download?bytes=N`, `ws` (WebSocket echo). Any path accepts
/// `?status=NNN`. Bodies are consumed streaming (length + sha256, never buffered).
pub struct Upstream {
    addr: SocketAddr,
    tls: bool,
    state: Arc<UpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_with(None).await
    }

    /// An HTTPS upstream whose certificate (for 127.0.0.1) is issued by `ca`.
    pub async fn start_tls(ca: &TestCa) -> Upstream {
        let cfg = ca.server_config(&ca.issue("upstream"), &["http/1.1"]);
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        init();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let state = Arc::new(UpState {
            count: AtomicUsize::new(0),
            records: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let tls2 = tls.clone();
        let task = tokio::spawn(async move {
            let tls = tls2;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| handle_upstream(st.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            tls: tls.is_some(),
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Number of requests that reached the upstream (counted when headers arrive).
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.records.lock().unwrap().clone()
    }
    pub fn last(&self) -> Recorded {
        self.requests()
            .last()
            .cloned()
            .expect("the upstream received no request")
    }
    /// Waits until `n` requests have been fully recorded (body read).
    pub async fn wait_records(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if r.len() >= n || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_string())
    })
}

fn full(body: impl Into<Bytes>) -> UBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// 64 KiB of a fixed byte pattern (shared, cheap to clone).
pub fn pattern_chunk() -> Bytes {
    static CHUNK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    CHUNK
        .get_or_init(|| Bytes::from((0..65536u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()))
        .clone()
}

async fn handle_upstream(
    st: Arc<UpState>,
    mut req: Request<Incoming>,
) -> Result<Response<UBody>, Infallible> {
    st.count.fetch_add(1, Ordering::SeqCst);
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().to_string());
    let path = uri.split('?').next().unwrap_or("").to_string();
    let query = uri
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let last_segment = path.rsplit('/').next().unwrap_or("").to_string();

    let is_ws = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if last_segment == "ws" && is_ws {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        st.records.lock().unwrap().push(Recorded {
            method,
            uri,
            version,
            headers,
            body_len: 0,
            body_sha256: sha256_hex(b""),
            body_error: false,
            trailers: vec![],
        });
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    let _ = ws.close(None).await;
                    break;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(full(Bytes::new()))
            .unwrap();
        return Ok(resp);
    }

    // Consume the body streaming: length + hash, never the whole thing.
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut len: u64 = 0;
    let mut trailers = vec![];
    let mut body_error = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => {
                    len += data.len() as u64;
                    hasher.update(&data);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        for (k, v) in t.iter() {
                            trailers.push((
                                k.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            ));
                        }
                    }
                }
            },
            Err(_) => {
                body_error = true;
                break;
            }
        }
    }
    let rec = Recorded {
        method,
        uri,
        version,
        headers,
        body_len: len,
        body_sha256: hex(&hasher.finalize()),
        body_error,
        trailers,
    };
    st.records.lock().unwrap().push(rec.clone());

    if last_segment == "slow" {
        let ms: u64 = query_param(&query, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = query_param(&query, "status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let builder = Response::builder()
        .status(status)
        .header("x-upstream", "echo")
        .header("set-cookie", "up_a=1; Path=/")
        .header("set-cookie", "up_b=2; Path=/; HttpOnly");

    if last_segment == "download" {
        let total: u64 = query_param(&query, "bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let stream = futures_util::stream::unfold(total, |remaining| async move {
            if remaining == 0 {
                return None;
            }
            let chunk = pattern_chunk();
            let n = remaining.min(chunk.len() as u64) as usize;
            Some((
                Ok::<_, Infallible>(Frame::data(chunk.slice(..n))),
                remaining - n as u64,
            ))
        });
        let resp = builder
            .header("content-type", "application/octet-stream")
            .header("content-length", total.to_string())
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap();
        return Ok(resp);
    }

    let json = serde_json::to_vec(&rec).unwrap();
    Ok(builder
        .header("content-type", "application/json")
        .body(full(json))
        .unwrap())
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A per-test certificate authority; server certificates are issued for
/// 127.0.0.1, localhost and clinic.example.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Vestibule Test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            params,
            key,
        }
    }

    pub fn issue(&self, common_name: &str) -> ServerCert {
        self.issue_for(common_name, &[])
    }

    /// A server certificate for 127.0.0.1, localhost, clinic.example and `more`
    /// names (one certificate for several app hosts, SPEC §8).
    pub fn issue_for(&self, common_name: &str, more: &[String]) -> ServerCert {
        let mut names = vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "clinic.example".to_string(),
        ];
        names.extend(more.iter().cloned());
        self.issue_names(
            common_name,
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    /// A server certificate for exactly these names (DNS names or IP addresses), e.g.
    /// the app hosts a proxy in front of the gateway serves.
    pub fn issue_names(&self, common_name: &str, names: &[&str]) -> ServerCert {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        }
    }

    pub fn server_config(&self, cert: &ServerCert, alpn: &[&str]) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject as _;
        init();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], key)
        .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        cfg
    }

    pub fn client_config(&self, alpn: &[&str]) -> rustls::ClientConfig {
        init();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        cfg
    }
}

// ---------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------

pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn gen_key_b64() -> String {
    use base64::Engine as _;
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A `Command` for the real binary with every `VESTIBULE*` variable of the test
/// environment removed (so the machine's environment cannot leak into a test).
pub fn vestibule_cmd(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("VESTIBULE") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(cwd);
    cmd.stdin(Stdio::null());
    cmd
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    pub fn lines(&self) -> Vec<String> {
        self.all()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit={:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the binary to completion (killed after `timeout`), stdin from `input`.
pub fn run(mut cmd: Command, input: Option<&str>, timeout: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    cmd.stdout(std::fs::File::create(&out_path).unwrap());
    cmd.stderr(std::fs::File::create(&err_path).unwrap());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawn vestibule");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

pub struct GatewayBuilder {
    upstream_url: String,
    tls: bool,
    rules: Vec<String>,
    hostnames: Option<Vec<String>>,
    trusted_proxies: Option<Vec<String>>,
    preserve_host: Option<bool>,
    response_timeout: Option<String>,
    connect_timeout: Option<String>,
    max_request_header_bytes: Option<usize>,
    http_redirect: bool,
    server_extra: String,
    upstream_extra: String,
    extra: String,
    users_toml: String,
    env: Vec<(String, String)>,
    key_file: bool,
    key_env: bool,
    cert_names: Vec<String>,
    no_upstream: bool,
}

/// Everything written to disk for one gateway, before (or without) starting it.
pub struct Prepared {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub users_path: PathBuf,
    pub port: u16,
    pub redirect_port: Option<u16>,
    pub tls: bool,
    pub ca: TestCa,
    /// DER of the server certificate first written to `cert_path`.
    pub server_cert_der: CertificateDer<'static>,
    pub env: Vec<(String, String)>,
}

impl GatewayBuilder {
    pub fn new(upstream_url: impl Into<String>) -> Self {
        GatewayBuilder {
            upstream_url: upstream_url.into(),
            tls: true,
            rules: vec![],
            hostnames: None,
            trusted_proxies: None,
            preserve_host: None,
            response_timeout: None,
            connect_timeout: None,
            max_request_header_bytes: None,
            http_redirect: false,
            server_extra: String::new(),
            upstream_extra: String::new(),
            extra: String::new(),
            users_toml: "users = []\n".to_string(),
            env: vec![],
            key_file: true,
            key_env: false,
            cert_names: vec![],
            no_upstream: false,
        }
    }
    /// More DNS names in the gateway's certificate (test hosts resolved to 127.0.0.1).
    pub fn cert_names(mut self, names: &[&str]) -> Self {
        self.cert_names.extend(names.iter().map(|n| n.to_string()));
        self
    }
    /// Leave `[upstream]` out of the file (with `[[apps]]`: no fallback app, SPEC §8).
    pub fn no_upstream(mut self) -> Self {
        self.no_upstream = true;
        self
    }
    pub fn plain_http(mut self) -> Self {
        self.tls = false;
        self
    }
    /// `[[policy.rules]] path_prefix = prefix, access = "bypass"`.
    pub fn bypass(self, prefix: &str) -> Self {
        self.rule(&format!("path_prefix = \"{prefix}\"\naccess = \"bypass\""))
    }
    /// A raw `[[policy.rules]]` body (the lines under the header).
    pub fn rule(mut self, body: &str) -> Self {
        self.rules.push(body.to_string());
        self
    }
    pub fn hostnames(mut self, h: &[&str]) -> Self {
        self.hostnames = Some(h.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn trusted_proxies(mut self, t: &[&str]) -> Self {
        self.trusted_proxies = Some(t.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn preserve_host(mut self, v: bool) -> Self {
        self.preserve_host = Some(v);
        self
    }
    pub fn response_timeout(mut self, v: &str) -> Self {
        self.response_timeout = Some(v.to_string());
        self
    }
    pub fn connect_timeout(mut self, v: &str) -> Self {
        self.connect_timeout = Some(v.to_string());
        self
    }
    pub fn max_request_header_bytes(mut self, v: usize) -> Self {
        self.max_request_header_bytes = Some(v);
        self
    }
    pub fn http_redirect(mut self) -> Self {
        self.http_redirect = true;
        self
    }
    pub fn server_extra(mut self, toml: &str) -> Self {
        self.server_extra.push_str(toml);
        self.server_extra.push('\n');
        self
    }
    pub fn upstream_extra(mut self, toml: &str) -> Self {
        self.upstream_extra.push_str(toml);
        self.upstream_extra.push('\n');
        self
    }
    /// Raw TOML appended after the generated sections (before the rules).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
    pub fn users_toml(mut self, toml: &str) -> Self {
        self.users_toml = toml.to_string();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    /// Do not write `storage.encryption_key_file` (nor a key file).
    pub fn no_key_file(mut self) -> Self {
        self.key_file = false;
        self
    }
    /// Pass the key as `VESTIBULE_ENCRYPTION_KEY` instead of a file.
    pub fn key_in_env(mut self) -> Self {
        self.key_file = false;
        self.key_env = true;
        self
    }

    /// Writes the temp dir, certificates, key, users file and config.
    pub fn prepare(self) -> Prepared {
        init();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new();
        let server = ca.issue_for("vestibule-test-1", &self.cert_names);
        let cert_path = d.join("cert.pem");
        let key_path = d.join("key.pem");
        std::fs::write(&cert_path, &server.cert_pem).unwrap();
        std::fs::write(&key_path, &server.key_pem).unwrap();
        std::fs::write(d.join("ca.pem"), &ca.cert_pem).unwrap();
        let enc_path = d.join("encryption.key");
        let users_path = d.join("users.toml");
        std::fs::write(&users_path, &self.users_toml).unwrap();
        let data = d.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = free_port();
        let redirect_port = self.http_redirect.then(free_port);

        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let list = |v: &[String]| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };

        let mut t = String::new();
        t.push_str("[server]\n");
        t.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
        if self.tls {
            t.push_str(&format!(
                "tls_cert = {}\ntls_key = {}\n",
                q(&cert_path),
                q(&key_path)
            ));
        }
        if let Some(rp) = redirect_port {
            t.push_str(&format!("http_redirect_listen = \"127.0.0.1:{rp}\"\n"));
        }
        if let Some(h) = &self.hostnames {
            t.push_str(&format!("hostnames = {}\n", list(h)));
        }
        if let Some(tp) = &self.trusted_proxies {
            t.push_str(&format!("trusted_proxies = {}\n", list(tp)));
        }
        if let Some(m) = self.max_request_header_bytes {
            t.push_str(&format!("max_request_header_bytes = {m}\n"));
        }
        t.push_str(&self.server_extra);
        if !self.no_upstream {
            t.push_str("\n[upstream]\n");
            t.push_str(&format!("url = {:?}\n", self.upstream_url));
            if let Some(v) = &self.connect_timeout {
                t.push_str(&format!("connect_timeout = {v:?}\n"));
            }
            if let Some(v) = &self.response_timeout {
                t.push_str(&format!("response_timeout = {v:?}\n"));
            }
            if let Some(v) = self.preserve_host {
                t.push_str(&format!("preserve_host = {v}\n"));
            }
            t.push_str(&self.upstream_extra);
        }
        t.push_str(&format!("\n[users]\nfile = {}\n", q(&users_path)));
        t.push_str("\n[storage]\nbackend = \"embedded\"\n");
        t.push_str(&format!("path = {}\n", q(&data)));
        let mut env = self.env.clone();
        if self.key_file {
            std::fs::write(&enc_path, format!("{}\n", gen_key_b64())).unwrap();
            t.push_str(&format!("encryption_key_file = {}\n", q(&enc_path)));
        }
        if self.key_env {
            env.push(("VESTIBULE_ENCRYPTION_KEY".to_string(), gen_key_b64()));
        }
        t.push('\n');
        t.push_str(&self.extra);
        for r in &self.rules {
            t.push_str("\n[[policy.rules]]\n");
            t.push_str(r);
            t.push('\n');
        }
        let config_path = d.join("vestibule.toml");
        std::fs::write(&config_path, t).unwrap();
        Prepared {
            dir,
            config_path,
            cert_path,
            key_path,
            users_path,
            port,
            redirect_port,
            tls: self.tls,
            ca,
            server_cert_der: server.cert_der.clone(),
            env,
        }
    }

    pub async fn start(self) -> Gateway {
        self.prepare().start().await
    }
}

impl Prepared {
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).unwrap()
    }

    /// A command (cwd = the temp dir) with this gateway's env applied.
    pub fn cmd(&self) -> Command {
        let mut cmd = vestibule_cmd(self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub async fn start(self) -> Gateway {
        let mut gw = self.spawn();
        gw.wait_healthy(Duration::from_secs(30)).await;
        gw
    }

    /// Spawns `vestibule serve --config <path>` without waiting for readiness.
    pub fn spawn(self) -> Gateway {
        let stdout_path = self.dir.path().join("stdout.log");
        let stderr_path = self.dir.path().join("stderr.log");
        let mut cmd = self.cmd();
        cmd.arg("serve").arg("--config").arg(&self.config_path);
        cmd.stdout(std::fs::File::create(&stdout_path).unwrap());
        cmd.stderr(std::fs::File::create(&stderr_path).unwrap());
        let child = cmd.spawn().expect("spawn vestibule serve");
        Gateway {
            p: self,
            child,
            stdout_path,
            stderr_path,
            exited: None,
        }
    }
}

/// The real `vestibule serve` process. Killed on drop.
pub struct Gateway {
    pub p: Prepared,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // ARCHITECTURE invariant 4: no request input can panic the process (or a task).
        if !std::thread::panicking() && self.logs().contains("panicked at") {
            panic!(
                "vestibule logged a panic during this test:\n{}",
                self.log_tail()
            );
        }
    }
}

impl Gateway {
    pub fn builder(upstream: &Upstream) -> GatewayBuilder {
        GatewayBuilder::new(upstream.url())
    }
    pub fn builder_url(url: &str) -> GatewayBuilder {
        GatewayBuilder::new(url)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn port(&self) -> u16 {
        self.p.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.p.port))
    }
    pub fn scheme(&self) -> &'static str {
        if self.p.tls { "https" } else { "http" }
    }
    /// The Host header value a browser would send.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.p.port)
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{}", self.scheme(), self.p.port, path)
    }

    pub fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        )
    }
    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let client = self.client();
        let url = self.url(&format!("{PREFIX}/health"));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                panic!(
                    "vestibule exited before becoming healthy ({status})\n{}",
                    self.log_tail()
                );
            }
            if let Ok(Ok(resp)) =
                tokio::time::timeout(Duration::from_secs(2), client.get(&url).send()).await
                && resp.status() == 200
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "vestibule did not answer 200 on {url} within {timeout:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident set size of the gateway process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        client_builder_for(&self.p.ca, &["h2", "http/1.1"])
    }
    /// HTTP/1.1 or h2 (by ALPN), trusting the test CA, no redirects, no cookies.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }
    /// HTTP/1.1 only (ALPN offers only http/1.1).
    pub fn client_h1(&self) -> reqwest::Client {
        client_builder_for(&self.p.ca, &["http/1.1"])
            .http1_only()
            .build()
            .unwrap()
    }

    pub fn tls_config(&self, alpn: &[&str]) -> rustls::ClientConfig {
        self.p.ca.client_config(alpn)
    }

    /// Writes `request` verbatim to the gateway (over TLS with ALPN http/1.1 when
    /// TLS is on) and reads the response until the server closes (or 15 s).
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        let tls = self.p.tls.then(|| self.tls_config(&["http/1.1"]));
        raw_exchange(self.addr(), tls, request).await
    }

    /// A raw GET of `target` (sent verbatim) with `Host` and `Connection: close`.
    pub async fn raw_get(&self, target: &str, extra_headers: &[(&str, &str)]) -> RawResponse {
        let mut req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.authority()
        );
        for (k, v) in extra_headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw(req.as_bytes()).await
    }

    /// The leaf certificate a new TLS connection sees.
    pub async fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        let cfg = self.tls_config(&["http/1.1"]);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = TcpStream::connect(self.addr()).await.ok()?;
        let tls = tokio::time::timeout(
            Duration::from_secs(5),
            connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
        )
        .await
        .ok()?
        .ok()?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first().cloned())
            .map(|c| c.into_owned())
    }
}

pub fn client_builder_for(ca: &TestCa, alpn: &[&str]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ca.client_config(alpn))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
}

// ---------------------------------------------------------------------------
// Raw exchanges
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
pub struct RawResponse {
    /// 0 when the server closed without a parsable response.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn raw_exchange(
    addr: SocketAddr,
    tls: Option<rustls::ClientConfig>,
    request: &[u8],
) -> RawResponse {
    let tcp = TcpStream::connect(addr).await.expect("connect to gateway");
    let mut io: Box<dyn Io> = match tls {
        Some(cfg) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            Box::new(
                connector
                    .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                    .await
                    .expect("TLS handshake with gateway"),
            )
        }
        None => Box::new(tcp),
    };
    // The server may answer (and close) before it has read everything (e.g. 431).
    let _ = io.write_all(request).await;
    let _ = io.flush().await;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut chunk = vec![0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if response_complete(&buf) {
            break;
        }
    }
    parse_raw(&buf)
}

/// True when `buf` holds one complete response (by Content-Length or chunked end).
pub fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
        return true;
    }
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:")
            && let Ok(n) = v.trim().parse::<usize>()
        {
            return body.len() >= n;
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return find(body, b"0\r\n\r\n").is_some();
        }
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_raw(buf: &[u8]) -> RawResponse {
    let raw = String::from_utf8_lossy(buf).into_owned();
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return RawResponse {
            raw,
            ..Default::default()
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
        raw,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size =
            usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let stop = (start + size).min(b.len());
        out.extend_from_slice(&b[start..stop]);
        b = &b[(stop + 2).min(b.len())..];
    }
    out
}

/// Parses the JSON an `Upstream` echoes back.
pub fn echo_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not the upstream's echo JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

// ---------------------------------------------------------------------------
// Appended for the sign-in / 2FA flows (tests/e2e/flows.rs, signin.rs, twofa.rs)
// ---------------------------------------------------------------------------

impl Gateway {
    /// Kills the process with SIGKILL (no shutdown, no flush) and starts
    /// `vestibule serve` again on the same config, files and port; output is
    /// appended to the same captured logs.
    pub async fn kill9_and_restart(&mut self) {
        if self.try_exit().is_none() {
            self.signal(libc::SIGKILL);
            assert!(
                self.wait_exit(Duration::from_secs(10)).await.is_some(),
                "SIGKILL did not end vestibule"
            );
        }
        let mut cmd = self.p.cmd();
        cmd.arg("serve").arg("--config").arg(&self.p.config_path);
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .unwrap()
        };
        cmd.stdout(append(&self.stdout_path));
        cmd.stderr(append(&self.stderr_path));
        self.child = cmd.spawn().expect("respawn vestibule serve");
        self.exited = None;
        self.wait_healthy(Duration::from_secs(30)).await;
    }
}

/// The response's `Content-Type`, or "" when it has none.
pub fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Reads one HTTP/1.1 response from a raw connection and returns its status and body.
/// The answer to a HEAD request, or a 204, has no body; any other must carry
/// `Content-Length`. Fails the test on a close, a read error, no complete answer within
/// 10 s, or bytes beyond the response (nothing else was asked for).
pub async fn read_raw_response<S>(io: &mut S, head_request: bool) -> (u16, Vec<u8>)
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head[9..12].parse().expect("status code");
            let len: usize = if head_request || status == 204 {
                0
            } else {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or_else(|| panic!("no Content-Length in {head}"))
            };
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                assert_eq!(
                    buf.len(),
                    end + 4 + len,
                    "bytes beyond the response arrived"
                );
                return (status, body);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!(
                "connection closed mid-response after {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!(
                "no complete response within 10 s: {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
}
