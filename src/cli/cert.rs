//! `gen-cert`: a self-signed certificate and its key for a first deployment, so the
//! gateway can start with TLS before a certificate from a CA (or an ACME client) is
//! in place. Browsers warn about it; it is not meant to stay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CliError;

/// What `gen-cert` was asked for.
pub(crate) struct CertRequest {
    /// Host names or addresses (subject alternative names; the first is the CN).
    pub names: Vec<String>,
    /// Where the certificate goes; `None`: the configuration's `server.tls_cert`.
    pub cert: Option<PathBuf>,
    /// Where the key goes; `None`: the configuration's `server.tls_key`.
    pub key: Option<PathBuf>,
    /// How long the certificate is valid.
    pub valid_for: Duration,
    /// Replace existing files instead of refusing.
    pub force: bool,
}

/// The files to write: the flags, else the configuration's `server.tls_cert`/`tls_key`.
fn targets(config: &Path, req: &CertRequest) -> Result<(PathBuf, PathBuf), CliError> {
    if let (Some(c), Some(k)) = (&req.cert, &req.key) {
        return Ok((c.clone(), k.clone()));
    }
    // The files may not exist yet: that is the point, so their problems are ignored.
    let from_config = crate::config::load_all(config)
        .ok()
        .and_then(|(cfg, _)| cfg.server.tls);
    match (&req.cert, &req.key, from_config) {
        (c, k, Some(files)) => Ok((
            c.clone().unwrap_or(files.cert),
            k.clone().unwrap_or(files.key),
        )),
        _ => Err(CliError::Invalid(vec![format!(
            "--cert/--key: not given, and {} names no server.tls_cert and server.tls_key",
            config.display()
        )])),
    }
}

/// A self-signed certificate (ECDSA P-256) for `names`, valid from a day ago (clocks
/// drift) for `valid_for`; returns the certificate and key as PEM.
fn self_signed(names: &[String], valid_for: Duration) -> Result<(String, String), CliError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| {
        CliError::Invalid(vec![format!("--name: not a host name or address ({e})")])
    })?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now
        + time::Duration::try_from(valid_for)
            .map_err(|_| CliError::Invalid(vec!["--days: too long".into()]))?;
    let key = rcgen::KeyPair::generate().map_err(CliError::failed)?;
    let cert = params.self_signed(&key).map_err(CliError::failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `text` to `path` with `mode`, refusing to replace a file unless `force`.
fn write(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Failed(format!(
                "{} exists; not replaced (give --force to replace it)",
                path.display()
            ))
        } else {
            CliError::Failed(format!("cannot write {}: {e}", path.display()))
        }
    })?;
    f.write_all(text.as_bytes())
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))
}

/// Writes the pair and says where, for how long, and what to do next.
#[allow(clippy::print_stdout)]
pub(crate) fn run(config: &Path, req: CertRequest) -> Result<(), CliError> {
    let (cert_path, key_path) = targets(config, &req)?;
    if !req.force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(CliError::Failed(format!(
                    "{} exists; not replaced (give --force to replace it)",
                    p.display()
                )));
            }
        }
    }
    let (cert, key) = self_signed(&req.names, req.valid_for)?;
    write(&key_path, &key, 0o600, req.force)?;
    write(&cert_path, &cert, 0o644, req.force)?;
    println!(
        "wrote a self-signed certificate for {} to {} (key: {}), valid for {} days; browsers will warn until you replace it with one from a certificate authority",
        req.names.join(", "),
        cert_path.display(),
        key_path.display(),
        req.valid_for.as_secs() / 86_400
    );
    Ok(())
}
