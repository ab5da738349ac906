//! What the directory client is built from: the service account's password (a file or
//! the environment, never the configuration) and the TLS settings (rustls, TLS 1.2/1.3,
//! the system CAs plus `ldap.ca_file`). Read once, when the directory is opened.

use zeroize::Zeroizing;

use crate::config::LdapConfig;

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
    crate::client_tls::client_config(cfg.ca_file.as_deref()).map_err(|e| match e {
        crate::client_tls::ClientTlsError::CaFile(f, m) => SetupError::CaFile(f, m),
        crate::client_tls::ClientTlsError::Tls(m) => SetupError::Tls(m),
    })
}
