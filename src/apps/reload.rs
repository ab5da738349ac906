//! Keeps the configuration's apps and rules in force while running: on SIGHUP, and
//! when the file changes (polled), the file is read and validated again; a valid one
//! swaps in a new routing table, an invalid one leaves the old in force and says why
//! in the log and on the health page. Requests in flight keep the table they began
//! with, so nothing is dropped.
//!
//! Only `[[apps]]`, `[upstream]`, `[headers]` and `[policy]` rules take effect this
//! way; a change to anything else (listen address, storage, keys …) is reported as
//! needing a restart and otherwise ignored.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::AppsHandle;
use crate::config::Config;

/// How often the file is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// Re-reads the configuration file into the apps table.
pub(crate) struct Reloader {
    path: PathBuf,
    apps: Arc<AppsHandle>,
    own_cookies: Vec<String>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The settings in force that only a restart changes, as last compared.
    fixed: String,
    /// The file's version last read (modification time, size, inode).
    stamp: Mutex<Option<(SystemTime, u64, u64)>>,
    /// Why the last reload was refused; None once one succeeds.
    failure: RwLock<Option<String>>,
}

/// The sections a reload does not change, in a form that compares.
fn fixed_part(cfg: &Config) -> String {
    format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
        cfg.server,
        cfg.users,
        cfg.session,
        cfg.storage,
        cfg.totp,
        cfg.backup_codes,
        cfg.remember_device,
        cfg.lockout,
        cfg.log,
        cfg.limits,
        cfg.ui,
        cfg.policy.require_2fa_roles,
        (&cfg.headers.assertion, &cfg.headers.assertion_key_file),
    )
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

impl Reloader {
    /// A reloader for the file at `path`, whose content `running` is.
    pub(crate) fn new(
        path: PathBuf,
        running: &Config,
        apps: Arc<AppsHandle>,
        own_cookies: Vec<String>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            stamp: Mutex::new(stamp(&path)),
            path,
            apps,
            own_cookies,
            metrics,
            fixed: fixed_part(running),
            failure: RwLock::new(None),
        }
    }

    /// Why the last reload was refused (for the health page), if it was.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.read().ok().and_then(|f| f.clone())
    }

    /// Reads and validates the file and swaps in its apps. Blocking (file reads,
    /// TLS roots for https upstreams): run it off the async workers.
    pub(crate) fn reload(&self) -> Result<(), String> {
        if let Ok(mut s) = self.stamp.lock() {
            *s = stamp(&self.path);
        }
        let outcome = crate::config::load(&self.path)
            .map_err(|ps| {
                ps.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .and_then(|cfg| {
                let apps = super::build(&cfg, &self.own_cookies, &self.metrics)
                    .map_err(|e| e.to_string())?;
                Ok((cfg, apps))
            });
        match outcome {
            Ok((cfg, apps)) => {
                let names: Vec<String> = apps.all().iter().map(|a| a.name.to_string()).collect();
                self.apps.replace(apps);
                if let Ok(mut f) = self.failure.write() {
                    *f = None;
                }
                if fixed_part(&cfg) != self.fixed {
                    tracing::warn!(
                        "configuration reloaded: apps and rules are in force; other changed \
                         settings take effect only at restart"
                    );
                }
                tracing::info!(apps = %names.join(","), "configuration reloaded");
                Ok(())
            }
            Err(why) => {
                tracing::error!(
                    problems = %why,
                    "configuration reload failed; the previous configuration stays in force"
                );
                if let Ok(mut f) = self.failure.write() {
                    *f = Some(why.clone());
                }
                Err(why)
            }
        }
    }

    /// Whether the file changed since it was last read.
    fn changed(&self) -> bool {
        let now = stamp(&self.path);
        self.stamp.lock().is_ok_and(|s| *s != now)
    }

    /// Reloads on SIGHUP and whenever the file changes, until the process ends.
    pub(crate) async fn watch(self: Arc<Self>) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(POLL);
        loop {
            let signalled = tokio::select! {
                _ = tick.tick() => false,
                _ = async {
                    match hup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => true,
            };
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if signalled || me.changed() {
                    let _ = me.reload();
                }
            })
            .await;
        }
    }
}
