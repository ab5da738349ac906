//! Password hashing off the async workers, at the lowest CPU priority.
//!
//! argon2 is slow on purpose (tens of milliseconds of CPU per check). A few dedicated
//! threads do all of it, niced to 19: the kernel then gives proxied traffic the CPU
//! first, and a login storm slows logins, not the clinic application. The queue is
//! bounded; past it, logins are refused as busy rather than piling up without end.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::core::password;

/// Jobs waiting beyond this are refused.
const QUEUE: usize = 4096;

/// One piece of hashing work.
enum Job {
    /// Check `password` against the PHC string `hash`.
    Verify {
        password: Zeroizing<String>,
        hash: String,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Hash a new password (a password change) at the default cost.
    Hash {
        password: Zeroizing<String>,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum HashPoolError {
    #[error("too many password checks queued")]
    Busy,
    #[error("the hashing threads are gone")]
    Gone,
    #[error("hashing failed: {0}")]
    Failed(String),
}

/// The pool of low-priority hashing threads.
pub struct HashPool {
    tx: SyncSender<Job>,
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    // Per-thread on Linux: only the hashing threads are deprioritised.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        match job {
            Job::Verify {
                password,
                hash,
                reply,
            } => {
                let _ = reply.send(password::verify(password.as_bytes(), &hash));
            }
            Job::Hash { password, reply } => {
                let hashed = password::hash(password.as_bytes(), password::Cost::DEFAULT)
                    .map_err(|e| e.to_string());
                let _ = reply.send(hashed);
            }
        }
    }
}

impl HashPool {
    /// Starts `threads` hashing threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("vestibule-hash-{i}"))
                .spawn(move || worker(rx))?;
        }
        Ok(Self { tx })
    }

    /// Checks `password` against the PHC string `hash` on a hashing thread.
    pub async fn verify(
        &self,
        password: Zeroizing<String>,
        hash: String,
    ) -> Result<bool, HashPoolError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job::Verify {
            password,
            hash,
            reply,
        })?;
        answer.await.map_err(|_| HashPoolError::Gone)
    }

    /// Hashes a new `password` (argon2id, default cost) on a hashing thread.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, HashPoolError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        answer
            .await
            .map_err(|_| HashPoolError::Gone)?
            .map_err(HashPoolError::Failed)
    }

    /// Queues `job`, refusing when the queue is full.
    fn submit(&self, job: Job) -> Result<(), HashPoolError> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(HashPoolError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(HashPoolError::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_on_the_pool() {
        let pool = HashPool::new(1).unwrap();
        let h = password::hash(b"a long enough password", password::Cost::DEFAULT).unwrap();
        assert!(
            pool.verify(Zeroizing::new("a long enough password".into()), h.clone())
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify(Zeroizing::new("wrong".into()), h)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn hashes_on_the_pool() {
        let pool = HashPool::new(1).unwrap();
        let h = pool
            .hash(Zeroizing::new("violet staple harbour".into()))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(password::verify(b"violet staple harbour", &h));
    }
}
