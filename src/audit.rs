//! Audit events (SPEC §6): one JSON object per line with `ts`, `event`, `user`, `ip`
//! and event details. Callers pass only names, counts and reasons — never a password,
//! code, secret, token or session id.
//!
//! With `[log] audit_file` each event is appended and flushed as it happens, and the
//! file is reopened on SIGHUP ([`Audit::reopen`]), so logrotate can rename it away and
//! signal: events written before the signal land in the old file, later ones in the new.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// The longest typed username an audit line repeats (SPEC §6 refuses longer names).
const TYPED_USERNAME_MAX: usize = 64;

/// A username as typed into the sign-in form, for the audit line of a failed attempt on
/// an account that does not exist. People sometimes type their password into the
/// username field; such text must not be kept in full in a log kept for years, so it
/// is cut to [`TYPED_USERNAME_MAX`] characters and the event carries
/// `"user_exists": false` (see [`unknown_user_details`]) so a reader knows it is only
/// what was typed. Known usernames are logged as they are stored.
pub fn typed_username(typed: &str) -> String {
    match typed.char_indices().nth(TYPED_USERNAME_MAX) {
        Some((cut, _)) => format!("{}…", &typed[..cut]),
        None => typed.to_string(),
    }
}

/// The marker added to the details of an event about an unknown username.
pub fn unknown_user_details(mut details: Value) -> Value {
    if let Value::Object(map) = &mut details {
        map.insert("user_exists".into(), Value::Bool(false));
    }
    details
}

/// Where audit events go.
pub struct Audit {
    sink: Mutex<Box<dyn Write + Send>>,
    /// The audit file, when events go to one (reopened on rotation).
    file: Option<PathBuf>,
}

fn open_append(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
}

impl Audit {
    /// Standard output (with the log), or an append-only file.
    pub fn open(file: Option<&Path>) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match file {
            Some(p) => Box::new(open_append(p)?),
            None => Box::new(std::io::stdout()),
        };
        Ok(Self {
            sink: Mutex::new(sink),
            file: file.map(Path::to_path_buf),
        })
    }

    /// Opens the audit file again by name (after log rotation). The swap happens under
    /// the same lock as writes, so no event is lost or split between files. On failure
    /// the old file stays in use.
    pub fn reopen(&self) {
        let Some(path) = &self.file else { return };
        match open_append(path) {
            Ok(f) => {
                if let Ok(mut w) = self.sink.lock() {
                    let _ = w.flush();
                    *w = Box::new(f);
                }
                tracing::info!(file = %path.display(), "audit file reopened");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot reopen the audit file; still writing to the previous one")
            }
        }
    }

    /// Writes one event; `details` must be a JSON object of non-secret fields.
    pub fn event(&self, event: &str, user: &str, ip: Option<IpAddr>, details: Value) {
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
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        if let Ok(mut w) = self.sink.lock() {
            let _ = w.write_all(line.as_bytes());
            let _ = w.flush();
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
