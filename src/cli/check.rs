//! `check-config`: every problem of the configuration and the users file, one per line.

use std::path::Path;

use super::CliError;
use crate::config::ConfigProblem;

/// Every problem found, or a one-line summary.
#[allow(clippy::print_stdout)]
pub fn run(path: &Path) -> Result<(), CliError> {
    let cfg = match crate::config::load(path) {
        Ok(c) => c,
        Err(ps) => {
            return Err(CliError::Invalid(
                ps.iter().map(|p| p.to_string()).collect(),
            ));
        }
    };
    let mut problems: Vec<ConfigProblem> = Vec::new();
    let users = match crate::users::file::load(&cfg.users.file) {
        Ok(u) => u,
        Err(ps) => {
            problems.extend(ps);
            Vec::new()
        }
    };
    if let Err(e) = crate::store::crypto::Keyring::load(cfg.storage.encryption_key_file.as_deref())
    {
        problems.push(ConfigProblem::new(
            "storage.encryption_key_file",
            e.to_string(),
        ));
    }
    if let (Some(_), Some(file)) = (&cfg.headers.assertion, &cfg.headers.assertion_key_file)
        && let Err(e) = crate::assertion::check_key_file(file)
    {
        problems.push(ConfigProblem::new(
            "headers.assertion_key_file",
            e.to_string(),
        ));
    }
    if let Some(tls) = &cfg.server.tls
        && let Err(e) = crate::accept::tls::load_pair(&tls.cert, &tls.key)
    {
        problems.push(ConfigProblem::new("server.tls_cert", e.to_string()));
    }
    if !problems.is_empty() {
        return Err(CliError::Invalid(
            problems.iter().map(|p| p.to_string()).collect(),
        ));
    }
    println!(
        "configuration OK: listening on {} ({}), upstream {}://{}, {} users, {} access rules, storage {:?}",
        cfg.server.listen,
        if cfg.server.tls.is_some() {
            "https"
        } else {
            "plain http"
        },
        cfg.upstream.scheme,
        cfg.upstream.authority,
        users.len(),
        cfg.policy.rules.len(),
        cfg.storage.backend,
    );
    Ok(())
}
