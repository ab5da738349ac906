//! rustls server configuration (TLS 1.2 and 1.3 only, h2 and http/1.1 by ALPN) with a
//! certificate that can be replaced while running: clinics renew certificates and
//! cannot drop everyone's session to do it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be loaded. Displayed as `KEY: FILE: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert: {0}: {1}")]
    Cert(String, String),
    #[error("server.tls_key: {0}: {1}")]
    Key(String, String),
    #[error("TLS setup: {0}")]
    Setup(String),
}

impl TlsError {
    /// The configuration key the problem is about (`check-config` prints it once).
    pub fn config_key(&self) -> &'static str {
        match self {
            TlsError::Cert(..) => "server.tls_cert",
            TlsError::Key(..) | TlsError::Setup(_) => "server.tls_key",
        }
    }

    /// The problem without its key: `FILE: what is wrong`.
    pub fn detail(&self) -> String {
        match self {
            TlsError::Cert(f, m) | TlsError::Key(f, m) => format!("{f}: {m}"),
            TlsError::Setup(m) => m.clone(),
        }
    }
}

/// Serves whichever certificate was loaded last.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its key (the key must match).
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_chain(cert)?;
    let pk = load_key(key)?;
    CertifiedKey::from_der(chain, pk, &provider()).map_err(|e| {
        TlsError::Key(
            key.display().to_string(),
            format!("does not fit the certificate: {e}"),
        )
    })
}

/// Every problem of the pair at once: each file is read on its own (a broken
/// certificate does not hide a broken key), then, when both read, whether they fit.
pub fn check_pair(cert: &Path, key: &Path) -> Vec<TlsError> {
    match (load_chain(cert), load_key(key)) {
        (Ok(chain), Ok(pk)) => match CertifiedKey::from_der(chain, pk, &provider()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![TlsError::Key(
                key.display().to_string(),
                format!("does not fit the certificate: {e}"),
            )],
        },
        (c, k) => [c.err(), k.err()].into_iter().flatten().collect(),
    }
}

/// What a PEM file holds instead, to suggest a fix when cert and key are swapped.
fn holds(path: &Path) -> Option<&'static str> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    if text.contains("PRIVATE KEY-----") {
        Some("it holds a private key: are tls_cert and tls_key swapped?")
    } else if text.contains("BEGIN CERTIFICATE-----") {
        Some("it holds a certificate: are tls_cert and tls_key swapped?")
    } else {
        None
    }
}

fn load_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let name = cert.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert(name.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(name.clone(), e.to_string()))?;
    if chain.is_empty() {
        let hint = holds(cert).map(|h| format!("; {h}")).unwrap_or_default();
        return Err(TlsError::Cert(
            name,
            format!("no certificate found in the file{hint}"),
        ));
    }
    Ok(chain)
}

fn load_key(key: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let hint = match holds(key) {
            Some(h) if h.contains("certificate") => format!("; {h}"),
            _ => String::new(),
        };
        let what = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key found in the file".to_string()
            }
            other => other.to_string(),
        };
        TlsError::Key(key.display().to_string(), format!("{what}{hint}"))
    })
}

/// The TLS server configuration plus the handle used to reload its certificate.
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    resolver: Arc<ReloadingResolver>,
    cert: PathBuf,
    key: PathBuf,
    expiry: Arc<super::cert_expiry::CertExpiry>,
}

impl Tls {
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pair = load_pair(cert, key)?;
        let expiry = Arc::new(super::cert_expiry::CertExpiry::default());
        if let Some(leaf) = pair.cert.first() {
            expiry.update(leaf);
        }
        let resolver = Arc::new(ReloadingResolver {
            current: RwLock::new(Arc::new(pair)),
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(cfg),
            resolver,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            expiry,
        })
    }

    /// The served certificate's expiry, kept current across reloads.
    pub fn expiry(&self) -> Arc<super::cert_expiry::CertExpiry> {
        self.expiry.clone()
    }

    /// Loads the files again; on failure the old certificate stays in use.
    pub fn reload(&self) {
        match load_pair(&self.cert, &self.key) {
            Ok(ck) => {
                if let Some(leaf) = ck.cert.first() {
                    self.expiry.update(leaf);
                }
                if let Ok(mut cur) = self.resolver.current.write() {
                    *cur = Arc::new(ck);
                }
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                self.expiry.check_and_log();
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
            }
        }
    }

    fn stamp(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.cert)?, m(&self.key)?))
    }

    /// Reloads when the files change (polled) or on SIGHUP.
    pub async fn watch(self: Arc<Self>) {
        let mut last = self.stamp();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let by_signal = tokio::select! {
                _ = tick.tick() => false,
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => true,
            };
            let now = self.stamp();
            if by_signal || now != last {
                // Give a renewal tool a moment to finish writing both files.
                if !by_signal {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                last = self.stamp();
                self.reload();
            }
        }
    }
}
