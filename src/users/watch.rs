//! Keeps the users file in force while running: polls it, swaps in a new directory
//! when it parses, keeps the last good one (and logs why) when it does not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::ConfigProblem;
use crate::core::password::{self, Cost};
use crate::core::user::{Directory, User};

/// How often the file is checked for changes (SPEC: picked up within 5 s).
const POLL: Duration = Duration::from_secs(1);

/// The current users and the decoy hash that unknown users are checked against.
pub struct UsersSnapshot {
    pub directory: Directory,
    /// A hash at the highest cost in the file, so an unknown user costs the same time.
    pub decoy_hash: String,
}

/// Shared, reloadable view of the users file.
pub struct UsersHandle {
    path: PathBuf,
    current: RwLock<Arc<UsersSnapshot>>,
    stamp: RwLock<Option<(SystemTime, u64, u64)>>,
    healthy: std::sync::atomic::AtomicBool,
}

/// Modification time, size and inode: an atomic replace (rename) changes the inode
/// even when time and size look the same.
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn snapshot(users: Vec<User>) -> UsersSnapshot {
    let cost = users
        .iter()
        .filter_map(|u| password::check_phc(&u.password_hash).ok())
        .max_by_key(|c| (c.m_kib as u64) * (c.t as u64))
        .unwrap_or(Cost::DEFAULT);
    let decoy_hash = password::decoy(cost);
    UsersSnapshot {
        directory: Directory::new(users),
        decoy_hash,
    }
}

/// What changed between two versions of the file, for the caller to act on.
pub struct Change {
    /// Users who were enabled before and are disabled now.
    pub newly_disabled: Vec<String>,
}

impl UsersHandle {
    /// Loads the file; fails with every problem when it is invalid.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigProblem>> {
        let st = stamp(path);
        let users = super::file::load(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(snapshot(users))),
            stamp: RwLock::new(st),
            healthy: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// The users in force now.
    pub fn get(&self) -> Arc<UsersSnapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// False when the last reload attempt failed (the old version is still in force).
    pub fn healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-reads the file if it changed. Blocking (file I/O): call it off the async workers.
    pub fn reload_if_changed(&self) -> Option<Change> {
        let now = stamp(&self.path);
        if now == *self.stamp.read().ok()? {
            return None;
        }
        if let Ok(mut s) = self.stamp.write() {
            *s = now;
        }
        match super::file::load(&self.path) {
            Ok(users) => {
                let old = self.get();
                let newly_disabled = users
                    .iter()
                    .filter(|u| {
                        u.disabled && old.directory.find(&u.username).is_some_and(|o| !o.disabled)
                    })
                    .map(|u| u.username.clone())
                    .collect();
                let snap = snapshot(users);
                tracing::info!(users = snap.directory.len(), file = %self.path.display(), "users file reloaded");
                if let Ok(mut c) = self.current.write() {
                    *c = Arc::new(snap);
                }
                self.healthy
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Some(Change { newly_disabled })
            }
            Err(problems) => {
                self.healthy
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                for p in problems {
                    tracing::error!(file = %self.path.display(), problem = %p, "users file not reloaded; the last good version stays in force");
                }
                None
            }
        }
    }

    /// Polls the file forever, calling `on_change` after each successful reload.
    pub async fn watch<F, Fut>(self: Arc<Self>, on_change: F)
    where
        F: Fn(Change) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            let me = self.clone();
            if let Ok(Some(change)) =
                tokio::task::spawn_blocking(move || me.reload_if_changed()).await
            {
                on_change(change).await;
            }
        }
    }
}
