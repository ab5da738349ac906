//! The pooled keep-alive client to the upstream (http or https, with an optional
//! extra CA for private upstream certificates).

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::UpstreamConfig;
use crate::http::body::Body;

/// The upstream client type.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Where the operating system keeps its CA bundle (Debian/Ubuntu, RHEL, Alpine).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("upstream.ca_file {0}: {1}")]
    CaFile(String, String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Builds the client from `[upstream]`.
pub fn build(cfg: &UpstreamConfig) -> Result<UpstreamClient, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for bundle in SYSTEM_BUNDLES {
        if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
            roots.add_parsable_certificates(iter.flatten());
            break;
        }
    }
    if let Some(ca) = &cfg.ca_file {
        let name = ca.display().to_string();
        let iter = CertificateDer::pem_file_iter(ca)
            .map_err(|e| ClientError::CaFile(name.clone(), e.to_string()))?;
        let mut added = 0;
        for cert in iter {
            let cert = cert.map_err(|e| ClientError::CaFile(name.clone(), e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::CaFile(name.clone(), e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientError::CaFile(
                name,
                "no certificate in the file".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(2048)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

/// One upstream client (and so one connection pool) per thread. Each worker thread
/// runs its own single-threaded runtime, so its pooled connections and their tasks
/// live on the same thread as the requests that use them: no cross-thread wake-ups
/// on the hot path.
pub struct PerThreadClient {
    id: u64,
    cfg: UpstreamConfig,
}

thread_local! {
    static CLIENTS: std::cell::RefCell<Vec<(u64, UpstreamClient)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PerThreadClient {
    /// Checks that a client can be built (CA file readable, TLS set up) once, up front.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, ClientError> {
        build(cfg)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            cfg: cfg.clone(),
        })
    }

    /// This thread's client (built on first use).
    pub fn get(&self) -> Result<UpstreamClient, ClientError> {
        CLIENTS.with(|clients| {
            if let Some((_, c)) = clients.borrow().iter().find(|(id, _)| *id == self.id) {
                return Ok(c.clone());
            }
            let c = build(&self.cfg)?;
            clients.borrow_mut().push((self.id, c.clone()));
            Ok(c)
        })
    }
}
