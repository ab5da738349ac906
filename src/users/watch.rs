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
    /// The version last loaded successfully.
    stamp: RwLock<Option<(SystemTime, u64, u64)>>,
    /// The version whose failure was last logged, so a broken file is retried every
    /// poll but reported once.
    failed: RwLock<Option<(SystemTime, u64, u64)>>,
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
            failed: RwLock::new(None),
        })
    }

    /// The users file this handle watches.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The users in force now.
    pub fn get(&self) -> Arc<UsersSnapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads the file if it changed since the last good load. Blocking (file I/O):
    /// call it off the async workers. The version is recorded only once it loaded, so
    /// a read that failed (a file caught mid-write, a moment without permission) is
    /// tried again at the next poll even when the file then looks the same.
    pub fn reload_if_changed(&self) -> Option<Change> {
        let now = stamp(&self.path);
        if now == *self.stamp.read().ok()? {
            return None;
        }
        match super::file::load(&self.path) {
            Ok(users) => {
                if let Ok(mut s) = self.stamp.write() {
                    *s = now;
                }
                if let Ok(mut f) = self.failed.write() {
                    *f = None;
                }
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
                Some(Change { newly_disabled })
            }
            Err(problems) => {
                let Ok(mut failed) = self.failed.write() else {
                    return None;
                };
                if *failed == now {
                    return None;
                }
                *failed = now;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn users_file(name: &str) -> String {
        let hash = password::decoy(Cost::DEFAULT);
        format!(
            "[[users]]\nusername = \"{name}\"\nroles = [\"patient\"]\npassword_hash = \"{hash}\"\n"
        )
    }

    #[test]
    fn a_version_that_failed_to_load_is_read_again_at_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let one = users_file("ann");
        std::fs::write(&path, &one).unwrap();
        let handle = UsersHandle::load(&path).unwrap();
        // Caught mid-write: same length, not TOML.
        let broken = format!("[{}", "x".repeat(one.len() - 1));
        std::fs::write(&path, &broken).unwrap();
        assert!(handle.reload_if_changed().is_none());
        assert!(
            handle.failed.read().unwrap().is_some(),
            "the failure was not noted"
        );
        assert!(
            handle.get().directory.find("ann").is_some(),
            "the last good version left"
        );
        // Completed in place: same size, same inode, and the same modification time.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let two = one.replace("ann", "bob");
        std::fs::write(&path, &two).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(
            handle.reload_if_changed().is_some(),
            "the completed file was not read"
        );
        assert!(handle.failed.read().unwrap().is_none());
        assert!(handle.get().directory.find("bob").is_some());
    }
}
