//! The TLS settings of the gateway's own outgoing connections (to an https upstream, to
//! a directory over LDAPS/StartTLS): rustls with TLS 1.2 and 1.3, the operating
//! system's CA bundle, plus the CAs of an operator's file. One place, so both clients
//! trust exactly the same way.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Where the operating system keeps its CA bundle (the first one found is used).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why the client settings could not be made; the caller names its own key.
#[derive(Debug)]
pub(crate) enum ClientTlsError {
    /// The extra CA file (its path as given, and what is wrong with it).
    CaFile(String, String),
    /// rustls refused the protocol versions (not expected with the ring provider).
    Tls(String),
}

/// rustls client settings trusting the system's CAs and those in `ca_file`, which must
/// hold at least one certificate.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, ClientTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for bundle in SYSTEM_BUNDLES {
        if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
            roots.add_parsable_certificates(iter.flatten());
            break;
        }
    }
    if let Some(ca) = ca_file {
        let name = ca.display().to_string();
        let bad = |e: &dyn std::fmt::Display| ClientTlsError::CaFile(name.clone(), e.to_string());
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientTlsError::CaFile(
                name,
                "no certificate in the file".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientTlsError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
