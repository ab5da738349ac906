//! Audit events (SPEC §6): one JSON object per line with `ts`, `event`, `user`, `ip`
//! and event details. Callers pass only names, counts and reasons — never a password,
//! code, secret, token or session id.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

/// Where audit events go.
pub struct Audit {
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Audit {
    /// Standard output (with the log), or an append-only file.
    pub fn open(file: Option<&Path>) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = match file {
            Some(p) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
            None => Box::new(std::io::stdout()),
        };
        Ok(Self { sink: Mutex::new(sink) })
    }

    /// Writes one event; `details` must be a JSON object of non-secret fields.
    pub fn event(&self, event: &str, user: &str, ip: Option<IpAddr>, details: Value) {
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()));
        obj.insert("event".into(), json!(event));
        obj.insert("user".into(), json!(user));
        obj.insert("ip".into(), ip.map(|i| json!(i.to_string())).unwrap_or(Value::Null));
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
