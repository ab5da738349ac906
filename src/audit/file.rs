//! The chained audit file: appends lines sealed by [`super::chain`], keeping one chain
//! per file lineage across SIGHUP reopen, restarts and other processes appending.
//!
//! Every append takes an exclusive lock on the file (`flock`, through std's
//! `File::lock`), so the gateway and an admin command (`users unlock`, `2fa reset`, …)
//! writing at the same moment never both chain from the same line. Under the lock the
//! file's length is compared with where this process's last write ended: equal, the
//! chain continues from memory; longer, someone else wrote and the last line is read
//! back from the end of the file (a few kilobytes, never the whole file); shorter,
//! lines were removed behind our back — that is logged as an error and the chain
//! continues from memory, so `audit verify` shows the gap instead of it being
//! papered over. A file emptied in place (logrotate's `copytruncate`) also continues
//! from memory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::{chain, tail};
use crate::keys::KeyringHandle;

/// The last line this process knows of in the chain.
#[derive(Debug, Clone)]
struct Last {
    seq: u64,
    chain: String,
}

/// The open file and the chain's state, behind one mutex.
struct State {
    file: File,
    at: Cursor,
}

/// Where the chain stands in the open file.
#[derive(Default)]
struct Cursor {
    /// File length right after this process's last append to `file`; `None` when
    /// unknown (just opened), so the next append reads the file's end first.
    end: Option<u64>,
    last: Option<Last>,
    /// The file ends mid-line (a crash mid-write, a cut file): the next line is put on
    /// a line of its own.
    partial: bool,
}

/// An append-only audit file whose lines form one HMAC chain.
pub struct ChainedFile {
    path: PathBuf,
    keys: Arc<KeyringHandle>,
    instance: String,
    state: Mutex<State>,
}

/// Appends go to the end whatever the offset; reading is needed for the file's end.
fn open_append(p: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(p)
}

/// Runs `f`, which may block for a while (another process holds the file lock),
/// without stalling an async worker: on a multi-threaded runtime's worker the worker
/// hands its other tasks on first. Elsewhere (admin commands, blocking threads) it
/// simply runs.
fn may_block<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl ChainedFile {
    /// Opens (creating) `path` and reads where its chain stands.
    pub fn open(path: &Path, keys: Arc<KeyringHandle>, instance: String) -> std::io::Result<Self> {
        let mut state = State {
            file: open_append(path)?,
            at: Cursor::default(),
        };
        let State { file, at } = &mut state;
        with_file_lock(file, || catch_up(file, at))?;
        Ok(Self {
            path: path.to_path_buf(),
            keys,
            instance,
            state: Mutex::new(state),
        })
    }

    /// The configured path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => may_block(|| match self.state.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            }),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        }
    }

    /// Opens the file again by name (after log rotation). The old file's end is read
    /// first, under its lock, so the new file's first line chains from the last line
    /// written to the old one by anyone. On failure the old file stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        let f = open_append(&self.path)?;
        let mut guard = self.state();
        let State { file, at } = &mut *guard;
        let _ = with_file_lock(file, || catch_up(file, at));
        *file = f;
        at.end = None;
        Ok(())
    }

    /// Appends one event: `fields` is the event's JSON object text (`{…}`, without
    /// `seq`, `instance` or `chain`).
    pub fn append(&self, fields: &str) -> std::io::Result<()> {
        let key = self.keys.get().derive(chain::PURPOSE);
        let mut guard = self.state();
        let State { file, at: s } = &mut *guard;
        let file = &*file;
        with_file_lock(file, || {
            catch_up(file, s)?;
            let (seq, prev) = match &s.last {
                Some(l) => (l.seq + 1, l.chain.as_str()),
                None => (1, ""),
            };
            let head = head(seq, &self.instance, fields);
            let (line, chain) = chain::seal(&key, prev.as_bytes(), &head);
            let mut bytes = Vec::with_capacity(line.len() + 2);
            if s.partial {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            let mut w = file;
            let written = w.write_all(&bytes).and_then(|()| w.flush());
            match written {
                Ok(()) => {
                    s.end = file.metadata().map(|m| m.len()).ok();
                    s.last = Some(Last { seq, chain });
                    s.partial = false;
                    Ok(())
                }
                Err(e) => {
                    // A partial write may be on disk: read the end again next time.
                    s.end = None;
                    Err(e)
                }
            }
        })
    }
}

/// Runs `f` holding the exclusive lock on `file` (taken without blocking when free).
fn with_file_lock<R>(file: &File, f: impl FnOnce() -> std::io::Result<R>) -> std::io::Result<R> {
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => may_block(|| file.lock())?,
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let out = f();
    let _ = file.unlock();
    out
}

/// Under the file lock: brings the in-memory chain state up to the file's end.
fn catch_up(file: &File, s: &mut Cursor) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if s.end == Some(len) {
        return Ok(());
    }
    if len == 0 {
        s.partial = false;
        s.end = Some(0);
        return Ok(());
    }
    let t = tail::read(file, len)?;
    let parsed = t.last.as_deref().and_then(|l| chain::parse(l).ok());
    match parsed {
        Some(_) if s.end.is_some_and(|e| len < e) => {
            tracing::error!(
                "the audit file is shorter than after this process's last write: lines were removed; the chain continues from the last line written, so `vestibule audit verify` shows the gap"
            );
        }
        Some(link) => {
            s.last = Some(Last {
                seq: link.seq,
                chain: String::from_utf8_lossy(link.chain).into_owned(),
            });
        }
        None => {
            tracing::warn!(
                "the audit file's last line is not a chained line (a file from before chaining, or damaged); the chain continues from {}",
                match &s.last {
                    Some(l) => format!("seq {}", l.seq),
                    None => "seq 1: rotate the file so it holds only chained lines".into(),
                }
            );
        }
    }
    s.end = Some(len);
    s.partial = t.partial;
    Ok(())
}

/// `{"seq":N,"instance":"…",` followed by the members of `fields` (no closing `}`).
fn head(seq: u64, instance: &str, fields: &str) -> String {
    let inner = fields
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .unwrap_or("");
    let instance = serde_json::Value::from(instance).to_string();
    let mut out = format!("{{\"seq\":{seq},\"instance\":{instance}");
    if !inner.is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out
}
