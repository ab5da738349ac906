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
