//! What the directory client is built from: the service account's password (a file or
//! the environment, never the configuration) and the TLS settings (rustls, TLS 1.2/1.3,
//! the system CAs plus `ldap.ca_file`). Read once, when the directory is opened.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::config::LdapConfig;

/// Where the operating system keeps its CA bundle (as for the upstream client).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why the directory client could not be built; each message reads `KEY: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("ldap.ca_file: {0}: {1}")]
    CaFile(String, String),
    #[error("ldap.bind_password_file: {0}: {1}")]
    Password(String, String),
    #[error(
        "ldap.bind_password_file: the service account's password is empty (the file's first line, or VESTIBULE_LDAP_BIND_PASSWORD)"
    )]
    EmptyPassword,
    #[error("ldap.ca_file: TLS setup failed: {0}")]
    Tls(String),
}

/// The service account's password: the file's first line, else the environment.
pub(super) fn bind_password(cfg: &LdapConfig) -> Result<Zeroizing<String>, SetupError> {
    let pw = match &cfg.bind_password_file {
        Some(f) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(f)
                    .map_err(|e| SetupError::Password(f.display().to_string(), e.to_string()))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or("").to_string())
        }
        None => {
            Zeroizing::new(std::env::var(crate::config::LDAP_BIND_PASSWORD_ENV).unwrap_or_default())
        }
    };
    if pw.is_empty() {
        return Err(SetupError::EmptyPassword);
    }
    Ok(pw)
}

/// rustls with TLS 1.2/1.3, the system's CAs and `ldap.ca_file`'s.
pub(super) fn tls_config(cfg: &LdapConfig) -> Result<rustls::ClientConfig, SetupError> {
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
            .map_err(|e| SetupError::CaFile(name.clone(), e.to_string()))?;
        let mut added = 0;
        for cert in iter {
            let cert = cert.map_err(|e| SetupError::CaFile(name.clone(), e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| SetupError::CaFile(name.clone(), e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(SetupError::CaFile(
                name,
                "no certificate in the file".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
