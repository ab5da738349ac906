//! `check-config`: every problem of the configuration and of every file it names (users
//! file, encryption key, certificate and key), one per line, in one run. A stage runs
//! even when an earlier one found problems: an operator fixing a deployment wants the
//! whole list, not one round per mistake. `serve` runs the same checks before it binds.

use std::path::Path;

use super::CliError;
use crate::config::{Config, ConfigProblem};
use crate::keys::{CryptoError, KEY_ENV, Keyring};

/// A configuration that passed every check, with what the summary line reports.
pub(super) struct Checked {
    /// The validated configuration, ready for `serve`.
    pub cfg: Config,
    /// How many users the users file holds (for the summary line).
    pub users: usize,
    /// Valid but probably unintended settings (printed, never fatal).
    pub warnings: Vec<ConfigProblem>,
}

/// Runs every check of `path`; `Err` lists every problem found.
pub(super) fn full(path: &Path) -> Result<Checked, CliError> {
    let (cfg, mut problems) = crate::config::load_all(path).map_err(invalid)?;
    let users = users_stage(&cfg, &mut problems);
    key_stage(&cfg, &mut problems);
    assertion_stage(&cfg, &mut problems);
    tls_stage(&cfg, &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let warnings = crate::config::warnings(&cfg);
    Ok(Checked {
        cfg,
        users,
        warnings,
    })
}

fn invalid(problems: Vec<ConfigProblem>) -> CliError {
    CliError::Invalid(problems.iter().map(|p| p.to_string()).collect())
}

/// Whether validation already reported `key` (its file is then not read again).
fn reported(problems: &[ConfigProblem], key: &str) -> bool {
    problems.iter().any(|p| p.key == key)
}

fn users_stage(cfg: &Config, problems: &mut Vec<ConfigProblem>) -> usize {
    // With `users.source = "ldap"` the users file is not read (SPEC §11); the
    // directory is checked by `check-config` itself ([`directory_stage`]).
    if reported(problems, "users.file") || cfg.ldap.is_some() {
        return 0;
    }
    match crate::users::file::load(&cfg.users.file) {
        Ok(u) => u.len(),
        Err(ps) => {
            problems.extend(ps);
            0
        }
    }
}

fn key_stage(cfg: &Config, problems: &mut Vec<ConfigProblem>) {
    if reported(problems, "storage.encryption_key_file") {
        return;
    }
    if let Err(e) = Keyring::load(cfg.storage.encryption_key_file.as_deref()) {
        problems.push(key_problem(key_source(cfg), &e));
    }
}

/// Which setting supplied the encryption key, so that a bad key is blamed on it: the
/// file when it exists, else the environment variable when set (the order in which
/// [`Keyring::load`] looks).
pub(super) fn key_source(cfg: &Config) -> &'static str {
    match &cfg.storage.encryption_key_file {
        Some(p) if p.exists() => "storage.encryption_key_file",
        _ if std::env::var(KEY_ENV).is_ok_and(|v| !v.trim().is_empty()) => KEY_ENV,
        _ => "storage.encryption_key_file",
    }
}

/// A key problem as `KEY: what is wrong`, blamed on `source` (see [`key_source`]).
pub(super) fn key_problem(source: &str, e: &CryptoError) -> ConfigProblem {
    let message = match e {
        CryptoError::Unreadable(file, _) if !Path::new(file).exists() => format!(
            "file {file} does not exist and the environment variable {KEY_ENV} is not set (create a key with `vestibule gen-key`)"
        ),
        other => other.to_string(),
    };
    ConfigProblem::new(source, message)
}

/// The signing keys of the signed identity assertion, read as `serve` will read them.
fn assertion_stage(cfg: &Config, problems: &mut Vec<ConfigProblem>) {
    if reported(problems, "headers.assertion_key_file") {
        return;
    }
    if let (Some(_), Some(file)) = (&cfg.headers.assertion, &cfg.headers.assertion_key_file)
        && let Err(e) = crate::assertion::check_key_file(file)
    {
        problems.push(ConfigProblem::new(
            "headers.assertion_key_file",
            e.to_string(),
        ));
    }
}

fn tls_stage(cfg: &Config, problems: &mut Vec<ConfigProblem>) {
    let Some(tls) = &cfg.server.tls else { return };
    let found: Vec<ConfigProblem> = crate::accept::tls::check_pair(&tls.cert, &tls.key)
        .iter()
        .filter(|e| !reported(problems, e.config_key()))
        .map(|e| ConfigProblem::new(e.config_key(), e.detail()))
        .collect();
    problems.extend(found);
}

/// With `users.source = "ldap"`: binds once with the service account (SPEC §11), on
/// the first server that answers; what the summary says about users. Only
/// `check-config` does this: `serve` starts while the directory is down and answers
/// 503 at sign-in until it returns.
fn directory_stage(cfg: &Config) -> Result<Option<String>, CliError> {
    let Some(l) = &cfg.ldap else { return Ok(None) };
    let problem =
        |key: &str, msg: String| CliError::Invalid(vec![ConfigProblem::new(key, msg).to_string()]);
    // The setup errors already read `KEY: what is wrong`.
    let dir = crate::users::ldap::LdapDirectory::new(l, cfg.session.idle_timeout)
        .map_err(|e| CliError::Invalid(vec![e.to_string()]))?;
    let rt = super::runtime()?;
    match rt.block_on(dir.check()) {
        Ok(server) => Ok(Some(format!(
            "users from the directory at {server} (service account bound)"
        ))),
        Err(e) => Err(problem(
            "ldap.url",
            format!("no directory server accepted the service account ({})", e.0),
        )),
    }
}

/// Every problem found, or a one-line summary (warnings go to standard error).
#[allow(clippy::print_stdout)]
pub fn run(path: &Path) -> Result<(), CliError> {
    let checked = full(path)?;
    let cfg = &checked.cfg;
    let users = match directory_stage(cfg)? {
        Some(d) => d,
        None => format!("{} users", checked.users),
    };
    for w in &checked.warnings {
        eprintln!("warning: {w}");
    }
    let warned = match checked.warnings.len() {
        0 => String::new(),
        1 => ", 1 warning".to_string(),
        n => format!(", {n} warnings"),
    };
    // One app: the upstream, as before; several: their names.
    let upstream = match cfg.apps.as_slice() {
        [only] => format!(
            "upstream {}://{}",
            only.upstream.scheme, only.upstream.authority
        ),
        apps => format!(
            "{} apps ({})",
            apps.len(),
            apps.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    println!(
        "configuration OK: listening on {} ({}), {upstream}, {}, {} access rules, storage {:?}{warned}",
        cfg.server.listen,
        if cfg.server.tls.is_some() {
            "https"
        } else {
            "plain http"
        },
        users,
        cfg.policy.rules.len(),
        cfg.storage.backend,
    );
    Ok(())
}
