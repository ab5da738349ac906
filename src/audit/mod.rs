//! Audit events (SPEC §6): one JSON object per line with `ts`, `event`, `user`, `ip`
//! and event details. Callers pass only names, counts and reasons — never a password,
//! code, secret, token or session id.
//!
//! With `[log] audit_file` each event is appended and flushed as it happens, and the
//! file is reopened on SIGHUP ([`Audit::reopen`]), so logrotate can rename it away and
//! signal: events written before the signal land in the old file, later ones in the new.
//! Lines in the file are tamper-evident (SPEC §13): each carries `seq`, `instance` and
//! an HMAC `chain` over the line before it ([`chain`] has the exact rule, [`file`] the
//! locking, [`verify`] the check behind `vestibule audit verify`). Without a file,
//! events go unchained to standard output with the log.

pub mod chain;
mod event;
mod file;
mod tail;
pub mod verify;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::keys::KeyringHandle;
pub(crate) use event::{AuditEvent, CodeContext, LoginFailure, LoginNext};
use file::ChainedFile;

/// The longest typed username an audit line repeats (SPEC §6 refuses longer names).
const TYPED_USERNAME_MAX: usize = 64;

/// A username as typed into the sign-in form, for the audit line of a failed attempt on
/// an account that does not exist. People sometimes type their password into the
/// username field; such text must not be kept in full in a log kept for years, so it
/// is cut to [`TYPED_USERNAME_MAX`] characters and the event carries
/// `"user_exists": false` (see [`unknown_user_details`]) so a reader knows it is only
/// what was typed. Known usernames are logged as they are stored.
pub(crate) fn typed_username(typed: &str) -> String {
    match typed.char_indices().nth(TYPED_USERNAME_MAX) {
        Some((cut, _)) => format!("{}…", &typed[..cut]),
        None => typed.to_string(),
    }
}

/// The marker added to the details of an event about an unknown username.
pub(crate) fn unknown_user_details(mut details: Value) -> Value {
    if let Value::Object(map) = &mut details {
        map.insert("user_exists".into(), Value::Bool(false));
    }
    details
}

/// Where audit events go: standard output (with the log), or a chained file.
pub(crate) struct Audit {
    target: Target,
}

enum Target {
    /// No `log.audit_file`: one JSON line per event with the log, unchained.
    Stdout,
    /// `log.audit_file`: appended, chained, reopened on rotation.
    File(Box<ChainedFile>),
}

/// Why the audit sink cannot be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The chain's key comes from the encryption key.
    #[error("{0}")]
    Key(#[from] crate::keys::CryptoError),
}

/// Who wrote a line (`instance`): the host name, then `:` and `suffix` — the listen
/// port for `serve`, `admin` for the admin commands. Stable across restarts, and
/// different for each gateway on one host, so an auditor can tell writers apart.
pub(crate) fn instance_id(suffix: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{suffix}")
}

impl Audit {
    /// Standard output (with the log), or the chained file `file` whose key is derived
    /// from the encryption keys in force.
    pub fn open(
        file: Option<&Path>,
        keys: Arc<KeyringHandle>,
        instance: String,
    ) -> std::io::Result<Self> {
        let target = match file {
            Some(p) => Target::File(Box::new(ChainedFile::open(p, keys, instance)?)),
            None => Target::Stdout,
        };
        Ok(Self { target })
    }

    /// The audit sink of an admin command: the same file as `serve` (appending to
    /// the same chain, under the file lock), instance `<host>:admin`. The key is read
    /// only when there is a file to chain.
    pub fn for_admin(cfg: &Config) -> Result<Self, AuditError> {
        let Some(file) = cfg.log.audit_file.as_deref() else {
            return Ok(Self {
                target: Target::Stdout,
            });
        };
        let keys = Arc::new(KeyringHandle::load(
            cfg.storage.encryption_key_file.as_deref(),
        )?);
        Ok(Self::open(Some(file), keys, instance_id("admin"))?)
    }

    /// Opens the audit file again by name (after log rotation); the new file's first
    /// line chains from the last line of the old one. On failure the old file stays
    /// in use. Blocking file work: call it off the async workers.
    pub fn reopen(&self) {
        let Target::File(f) = &self.target else {
            return;
        };
        match f.reopen() {
            Ok(()) => tracing::info!(file = %f.path().display(), "audit file reopened"),
            Err(e) => {
                tracing::error!(file = %f.path().display(), error = %e, "cannot reopen the audit file; still writing to the previous one")
            }
        }
    }

    /// Writes one event about `user` (a stored username, or `-` for no one).
    pub fn record(&self, user: &str, ip: Option<IpAddr>, event: &AuditEvent<'_>) {
        self.write(event.name(), user, ip, event.details());
    }

    /// Writes one event about a sign-in under a name no account has: the typed text,
    /// cut short, and `"user_exists": false` (see [`typed_username`]).
    pub fn record_typed_name(&self, typed: &str, ip: Option<IpAddr>, event: &AuditEvent<'_>) {
        self.write(
            event.name(),
            &typed_username(typed),
            ip,
            unknown_user_details(event.details()),
        );
    }

    /// Writes one line; `details` must be a JSON object of non-secret fields.
    fn write(&self, event: &str, user: &str, ip: Option<IpAddr>, details: Value) {
        let mut obj = Map::new();
        obj.insert(
            "ts".into(),
            json!(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
        );
        obj.insert("event".into(), json!(event));
        obj.insert("user".into(), json!(user));
        obj.insert(
            "ip".into(),
            ip.map(|i| json!(i.to_string())).unwrap_or(Value::Null),
        );
        if let Value::Object(extra) = details {
            obj.extend(extra);
        }
        // The chain's own members are written by the chain alone.
        for own in ["seq", "instance", "chain"] {
            obj.remove(own);
        }
        let fields = Value::Object(obj).to_string();
        match &self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(fields.as_bytes());
                let _ = out.write_all(b"\n");
                let _ = out.flush();
            }
            Target::File(f) => {
                if let Err(e) = f.append(&fields) {
                    tracing::error!(file = %f.path().display(), error = %e, event, "cannot write to the audit file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_usernames_are_cut_and_unknown_ones_marked() {
        assert_eq!(typed_username("dr.grey"), "dr.grey");
        let long = "x".repeat(300);
        let cut = typed_username(&long);
        assert_eq!(cut.chars().count(), TYPED_USERNAME_MAX + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(typed_username(&"é".repeat(70)).chars().count(), 65);
        let d = unknown_user_details(json!({ "reason": "unknown_user" }));
        assert_eq!(d["user_exists"], false);
        assert_eq!(d["reason"], "unknown_user");
    }
}

#[cfg(test)]
mod chained_tests;
