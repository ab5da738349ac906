//! The embedded backend: one SQLite database in WAL mode under `storage.path`.
//!
//! Why SQLite: it is ACID and survives `kill -9` and power loss (WAL with
//! `synchronous=NORMAL` loses at most the last commits before an OS crash, never
//! consistency), and — unlike single-process engines such as redb or sled — several
//! processes may open it at once, so the admin commands work while `serve` runs.
//! Reads run inline (microseconds, never blocked by writers in WAL mode); writes run
//! on the blocking pool because they may wait for another process's write lock.
//! Session lookups are answered from [`SessionCache`] when they can be: the hot path
//! of every authenticated request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::core::auth_flow::Stage;
use crate::core::lockout::{LockPolicy, LockRecord, Reservation, Step};
use crate::core::store::*;

use super::change_marker::ChangeMarker;
use super::session_cache::SessionCache;

mod keys;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions(id BLOB PRIMARY KEY, user TEXT NOT NULL, stage TEXT NOT NULL,
  created_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, credential BLOB NOT NULL, expires_ms INTEGER NOT NULL,
  meta TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE TABLE IF NOT EXISTS mfa(user TEXT PRIMARY KEY, secret BLOB NOT NULL, enabled_ms INTEGER NOT NULL, last_used_ms INTEGER);
CREATE TABLE IF NOT EXISTS pending(user TEXT PRIMARY KEY, secret BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replay(user TEXT PRIMARY KEY, last_step INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS backup_codes(user TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY(user, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices(token BLOB PRIMARY KEY, user TEXT NOT NULL, data TEXT NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_user ON devices(user);
CREATE TABLE IF NOT EXISTS webauthn_keys(id BLOB PRIMARY KEY, user TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webauthn_keys_user ON webauthn_keys(user);
CREATE TABLE IF NOT EXISTS webauthn_ceremonies(handle BLOB PRIMARY KEY, state BLOB NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lockouts(key TEXT NOT NULL, step TEXT NOT NULL, data TEXT NOT NULL, updated_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(key, step)) WITHOUT ROWID;
";

/// Pending secrets older than this are dropped by the purge.
const PENDING_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;
/// Password-step lockout records written before they carried their own expiry were
/// kept this long after their last change; the migration gives them that expiry.
const LEGACY_LOCK_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

struct Inner {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
    sessions: SessionCache,
    /// Bumped after every commit that ends sessions, for the other processes' caches.
    ended: ChangeMarker,
}

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Brings a database made by an earlier version up to [`SCHEMA`]: lockout records
/// gained an expiry (`expires_ms`, 0 = never). One immediate transaction, so a
/// gateway and an admin command opening the same file at once migrate it once.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_expiry = tx
        .prepare("SELECT 1 FROM pragma_table_info('lockouts') WHERE name='expires_ms'")?
        .exists([])?;
    if !has_expiry {
        tx.execute_batch(&format!(
            "ALTER TABLE lockouts ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0;
             UPDATE lockouts SET expires_ms = updated_ms + {LEGACY_LOCK_MAX_AGE_MS} WHERE step='password';"
        ))?;
    }
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS lockouts_expiry ON lockouts(expires_ms) WHERE step='password';",
    )?;
    // Sessions gained what the account page shows about them (a JSON object).
    let has_meta = tx
        .prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name='meta'")?
        .exists([])?;
    if !has_meta {
        tx.execute_batch("ALTER TABLE sessions ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';")?;
    }
    tx.commit()
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database in directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join("vestibule.sqlite3");
        let mut conn = open(&path).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        migrate(&mut conn).map_err(unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                pool: Mutex::new(vec![conn]),
                sessions: SessionCache::new(ChangeMarker::in_dir(dir)),
                ended: ChangeMarker::in_dir(dir),
            }),
        })
    }

    /// The database file, for the conformance tests that open it beside the store.
    #[cfg(test)]
    pub(crate) fn file(&self) -> &Path {
        &self.inner.path
    }

    fn with_conn<T>(
        inner: &Inner,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let taken = inner
            .pool
            .lock()
            .map_err(|_| unavailable("pool poisoned"))?
            .pop();
        let mut conn = match taken {
            Some(c) => c,
            None => open(&inner.path).map_err(unavailable)?,
        };
        let result = f(&mut conn).map_err(unavailable);
        if let Ok(mut pool) = inner.pool.lock()
            && pool.len() < 16
        {
            pool.push(conn);
        }
        result
    }

    /// Runs a read inline.
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        Self::with_conn(&self.inner, f)
    }

    /// Tells the other processes' session caches that sessions ended. Failing here is an
    /// error although the deletion is committed: a running gateway could otherwise keep
    /// honouring a revoked session from its cache.
    fn announce_ended(&self) -> StoreResult<()> {
        self.inner.ended.bump().map_err(|e| {
            unavailable(format!(
                "sessions ended, but the change marker in {} could not be written ({e}); restart the gateway for it to take effect",
                self.inner.path.parent().unwrap_or(&self.inner.path).display()
            ))
        })
    }

    /// Runs a write on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || Self::with_conn(&inner, f))
            .await
            .map_err(unavailable)?
    }
}

fn stage_json(stage: &Stage) -> String {
    serde_json::to_string(stage).unwrap_or_default()
}

fn corrupt(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(e.to_string())))
}

/// Writes one session row (insert or replace).
fn insert_session(
    c: &Connection,
    id: &Fingerprint,
    rec: &SessionRecord,
    ttl_ms: u64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO sessions(id,user,stage,created_ms,last_seen_ms,credential,expires_ms,meta) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    )?
    .execute(params![
        &id[..],
        rec.user,
        stage_json(&rec.stage),
        rec.created_ms as i64,
        rec.last_seen_ms as i64,
        &rec.credential[..],
        rec.last_seen_ms.saturating_add(ttl_ms) as i64,
        serde_json::to_string(&rec.meta).map_err(corrupt)?
    ])
    .map(|_| ())
}

/// A session row (`user,stage,created_ms,last_seen_ms,credential,meta`) as a record.
fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    let stage: String = r.get(1)?;
    let cred: Vec<u8> = r.get(4)?;
    let mut credential = [0u8; 8];
    if cred.len() == 8 {
        credential.copy_from_slice(&cred);
    }
    let meta: String = r.get(5)?;
    Ok(SessionRecord {
        user: r.get(0)?,
        stage: serde_json::from_str(&stage).map_err(corrupt)?,
        created_ms: r.get::<_, i64>(2)? as u64,
        last_seen_ms: r.get::<_, i64>(3)? as u64,
        credential,
        meta: serde_json::from_str(&meta).map_err(corrupt)?,
    })
}

fn lock_from(data: Option<String>) -> rusqlite::Result<LockRecord> {
    match data {
        None => Ok(LockRecord::default()),
        Some(s) => serde_json::from_str(&s).map_err(corrupt),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        // A pooled connection keeps answering from its open file even after the file was
        // deleted or replaced on disk (writes would then vanish), so look at the path too.
        match std::fs::metadata(&self.inner.path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(unavailable(format!(
                    "{} is not a database file",
                    self.inner.path.display()
                )));
            }
            Err(e) => return Err(unavailable(format!("{}: {e}", self.inner.path.display()))),
        }
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    async fn session_put(
        &self,
        id: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        self.inner.sessions.remove(id);
        let (id, rec) = (*id, rec.clone());
        self.write(move |c| insert_session(c, &id, &rec, ttl_ms))
            .await
    }

    async fn session_rotate(
        &self,
        old: &Fingerprint,
        new: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<bool> {
        self.inner.sessions.remove(old);
        self.inner.sessions.remove(new);
        let (old, new, rec) = (*old, *new, rec.clone());
        let rotated = self
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // The old session must still be there: a revoke or logout that
                // committed first wins, and nothing new is stored.
                if tx.execute("DELETE FROM sessions WHERE id=?1", [&old[..]])? == 0 {
                    return Ok(false);
                }
                insert_session(&tx, &new, &rec, ttl_ms)?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if rotated {
            self.announce_ended()?;
        }
        Ok(rotated)
    }

    async fn session_get(&self, id: &Fingerprint) -> StoreResult<Option<SessionRecord>> {
        let ticket = match self.inner.sessions.get(id) {
            Ok(cached) => return Ok(Some(cached)),
            Err(ticket) => ticket,
        };
        let found = self.read(|c| {
            c.prepare_cached(
                "SELECT user,stage,created_ms,last_seen_ms,credential,meta FROM sessions WHERE id=?1",
            )?
            .query_row([&id[..]], session_row)
            .optional()
        })?;
        if let (Some(ticket), Some(rec)) = (ticket, &found) {
            self.inner.sessions.insert(ticket, id, rec);
        }
        Ok(found)
    }

    async fn session_touch(
        &self,
        id: &Fingerprint,
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        self.inner.sessions.touch(id, last_seen_ms);
        let id = *id;
        self.write(move |c| {
            c.prepare_cached("UPDATE sessions SET last_seen_ms=?2, expires_ms=?3 WHERE id=?1")?
                .execute(params![
                    &id[..],
                    last_seen_ms as i64,
                    last_seen_ms.saturating_add(ttl_ms) as i64
                ])
                .map(|_| ())
        })
        .await
    }

    async fn session_delete(&self, id: &Fingerprint) -> StoreResult<()> {
        self.inner.sessions.remove(id);
        let id = *id;
        self.write(move |c| {
            c.execute("DELETE FROM sessions WHERE id=?1", [&id[..]])
                .map(|_| ())
        })
        .await?;
        self.announce_ended()
    }

    async fn sessions_delete_user(&self, user: &str) -> StoreResult<u64> {
        self.inner.sessions.clear();
        let user = user.to_string();
        let n = self
            .write(move |c| {
                c.execute("DELETE FROM sessions WHERE user=?1", [user])
                    .map(|n| n as u64)
            })
            .await?;
        self.announce_ended()?;
        Ok(n)
    }

    async fn sessions_delete_others(&self, user: &str, keep: &Fingerprint) -> StoreResult<u64> {
        self.inner.sessions.clear();
        let (user, keep) = (user.to_string(), *keep);
        let n = self
            .write(move |c| {
                c.execute(
                    "DELETE FROM sessions WHERE user=?1 AND id<>?2",
                    params![user, &keep[..]],
                )
                .map(|n| n as u64)
            })
            .await?;
        self.announce_ended()?;
        Ok(n)
    }

    async fn sessions_count(&self) -> StoreResult<u64> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }

    async fn sessions_list(
        &self,
        user: &str,
        now_ms: u64,
    ) -> StoreResult<Vec<(Fingerprint, SessionRecord)>> {
        let user = user.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user,stage,created_ms,last_seen_ms,credential,meta,id FROM sessions
                 WHERE user=?1 AND expires_ms >= ?2 ORDER BY created_ms",
            )?;
            let rows = stmt.query_map(params![user, now_ms as i64], |r| {
                let id: Vec<u8> = r.get(6)?;
                let fp: Fingerprint = id.try_into().map_err(|_| corrupt("session id"))?;
                Ok((fp, session_row(r)?))
            })?;
            rows.collect()
        })
    }

    async fn mfa_get(&self, user: &str) -> StoreResult<Option<MfaRecord>> {
        self.read(|c| {
            c.prepare_cached("SELECT secret,enabled_ms,last_used_ms FROM mfa WHERE user=?1")?
                .query_row([user], |r| {
                    Ok(MfaRecord {
                        secret: r.get(0)?,
                        enabled_ms: r.get::<_, i64>(1)? as u64,
                        last_used_ms: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    })
                })
                .optional()
        })
    }

    async fn pending_get(&self, user: &str) -> StoreResult<Option<PendingEnrollment>> {
        self.read(|c| {
            c.prepare_cached("SELECT secret,created_ms FROM pending WHERE user=?1")?
                .query_row([user], |r| {
                    Ok(PendingEnrollment {
                        secret: r.get(0)?,
                        created_ms: r.get::<_, i64>(1)? as u64,
                    })
                })
                .optional()
        })
    }

    async fn pending_put(&self, user: &str, p: &PendingEnrollment) -> StoreResult<()> {
        let (user, p) = (user.to_string(), p.clone());
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO pending(user,secret,created_ms) VALUES(?1,?2,?3)",
                params![user, p.secret, p.created_ms as i64],
            )
            .map(|_| ())
        })
        .await
    }

    async fn mfa_enable(
        &self,
        user: &str,
        rec: &MfaRecord,
        backup: &[Fingerprint],
    ) -> StoreResult<bool> {
        let (user, rec, backup) = (user.to_string(), rec.clone(), backup.to_vec());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM mfa WHERE user=?1)",
                [&user],
                |r| r.get(0),
            )?;
            if exists {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO mfa(user,secret,enabled_ms,last_used_ms) VALUES(?1,?2,?3,?4)",
                params![
                    user,
                    rec.secret,
                    rec.enabled_ms as i64,
                    rec.last_used_ms.map(|v| v as i64)
                ],
            )?;
            tx.execute("DELETE FROM pending WHERE user=?1", [&user])?;
            tx.execute("DELETE FROM backup_codes WHERE user=?1", [&user])?;
            for h in &backup {
                tx.execute(
                    "INSERT OR IGNORE INTO backup_codes(user,hash) VALUES(?1,?2)",
                    params![user, &h[..]],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn mfa_mark_used(&self, user: &str, now_ms: u64) -> StoreResult<()> {
        let user = user.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE mfa SET last_used_ms=?2 WHERE user=?1",
                params![user, now_ms as i64],
            )
            .map(|_| ())
        })
        .await
    }

    async fn mfa_remove(&self, user: &str) -> StoreResult<()> {
        let user = user.to_string();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for table in ["mfa", "pending", "backup_codes", "devices", "webauthn_keys"] {
                tx.execute(&format!("DELETE FROM {table} WHERE user=?1"), [&user])?;
            }
            tx.commit()
        })
        .await
    }

    async fn step_accept(&self, user: &str, step: u64) -> StoreResult<bool> {
        let user = user.to_string();
        self.write(move |c| {
            // One statement: insert, or raise the mark only if the new step is later.
            let n = c.execute(
                "INSERT INTO replay(user,last_step) VALUES(?1,?2)
                 ON CONFLICT(user) DO UPDATE SET last_step=excluded.last_step WHERE excluded.last_step > replay.last_step",
                params![user, step as i64],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn backup_replace(&self, user: &str, hashes: &[Fingerprint]) -> StoreResult<()> {
        let (user, hashes) = (user.to_string(), hashes.to_vec());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM backup_codes WHERE user=?1", [&user])?;
            for h in &hashes {
                tx.execute(
                    "INSERT OR IGNORE INTO backup_codes(user,hash) VALUES(?1,?2)",
                    params![user, &h[..]],
                )?;
            }
            tx.commit()
        })
        .await
    }

    async fn backup_consume(&self, user: &str, hash: &Fingerprint) -> StoreResult<Option<u32>> {
        let (user, hash) = (user.to_string(), *hash);
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM backup_codes WHERE user=?1 AND hash=?2",
                params![user, &hash[..]],
            )?;
            let left: i64 = tx.query_row(
                "SELECT COUNT(*) FROM backup_codes WHERE user=?1",
                [&user],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok((n == 1).then_some(left as u32))
        })
        .await
    }

    async fn backup_count(&self, user: &str) -> StoreResult<u32> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM backup_codes WHERE user=?1",
                [user],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
        })
    }

    async fn device_put(&self, token: &Fingerprint, rec: &DeviceRecord) -> StoreResult<()> {
        let (token, rec) = (*token, rec.clone());
        self.write(move |c| {
            let data = serde_json::to_string(&rec).map_err(corrupt)?;
            c.execute(
                "INSERT OR REPLACE INTO devices(token,user,data,expires_ms) VALUES(?1,?2,?3,?4)",
                params![&token[..], rec.user, data, rec.expires_ms as i64],
            )
            .map(|_| ())
        })
        .await
    }

    async fn device_take(
        &self,
        token: &Fingerprint,
        user: &str,
    ) -> StoreResult<Option<DeviceRecord>> {
        let (token, user) = (*token, user.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let data: Option<String> = tx
                .query_row(
                    "SELECT data FROM devices WHERE token=?1 AND user=?2",
                    params![&token[..], user],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(data) = data else { return Ok(None) };
            tx.execute("DELETE FROM devices WHERE token=?1", [&token[..]])?;
            tx.commit()?;
            serde_json::from_str(&data).map(Some).map_err(corrupt)
        })
        .await
    }

    async fn devices_list(&self, user: &str) -> StoreResult<Vec<DeviceRecord>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT data FROM devices WHERE user=?1 ORDER BY expires_ms")?;
            let rows = stmt.query_map([user], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row?).map_err(corrupt)?);
            }
            Ok(out)
        })
    }

    async fn devices_entries(&self, user: &str) -> StoreResult<Vec<(Fingerprint, DeviceRecord)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT token,data FROM devices WHERE user=?1 ORDER BY expires_ms",
            )?;
            let rows = stmt.query_map([user], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (token, data) = row?;
                let fp: Fingerprint = token.try_into().map_err(|_| corrupt("device token"))?;
                out.push((fp, serde_json::from_str(&data).map_err(corrupt)?));
            }
            Ok(out)
        })
    }

    async fn devices_forget(&self, user: &str) -> StoreResult<u64> {
        let user = user.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM devices WHERE user=?1", [user])
                .map(|n| n as u64)
        })
        .await
    }

    async fn lock_reserve(
        &self,
        key: &str,
        step: Step,
        now_ms: u64,
        policy: &LockPolicy,
    ) -> StoreResult<Reservation> {
        let (key, policy) = (key.to_string(), *policy);
        self.write(move |c| {
            // Read, decide and count in one immediate transaction: no other writer, in
            // this process or another, can slip in between.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(String, i64)> = tx
                .query_row(
                    "SELECT data, expires_ms FROM lockouts WHERE key=?1 AND step=?2",
                    params![key, step.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            // An expired record counts as absent, whether or not the purge ran yet.
            let current = match row {
                Some((data, exp)) if exp <= 0 || exp as u64 > now_ms => lock_from(Some(data))?,
                _ => LockRecord::default(),
            };
            let (next, answer) = current.reserve(step, now_ms, &policy);
            if let Some(next) = next {
                let json = serde_json::to_string(&next).map_err(corrupt)?;
                let expires = policy
                    .record_ttl_ms(step, &next, now_ms)
                    .map_or(0, |ttl| now_ms.saturating_add(ttl));
                tx.execute(
                    "INSERT OR REPLACE INTO lockouts(key,step,data,updated_ms,expires_ms) VALUES(?1,?2,?3,?4,?5)",
                    params![key, step.as_str(), json, now_ms as i64, expires as i64],
                )?;
                tx.commit()?;
            }
            Ok(answer)
        })
        .await
    }

    async fn lock_reset(&self, key: &str, step: Step) -> StoreResult<()> {
        let key = key.to_string();
        self.write(move |c| {
            c.execute(
                "DELETE FROM lockouts WHERE key=?1 AND step=?2",
                params![key, step.as_str()],
            )
            .map(|_| ())
        })
        .await
    }

    async fn unlock(&self, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM lockouts WHERE key=?1", [key])
                .map(|_| ())
        })
        .await
    }

    async fn secrets_list(&self) -> StoreResult<Vec<StoredSecret>> {
        self.read(|c| {
            let mut out = Vec::new();
            for (table, kind) in [
                ("mfa", SecretKind::Active),
                ("pending", SecretKind::Pending),
            ] {
                let mut stmt = c.prepare(&format!("SELECT user, secret FROM {table}"))?;
                let rows = stmt.query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?;
                for row in rows {
                    let (user, envelope) = row?;
                    out.push(StoredSecret {
                        user,
                        kind,
                        envelope,
                    });
                }
            }
            Ok(out)
        })
    }

    async fn secret_swap(
        &self,
        user: &str,
        kind: SecretKind,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        let (user, old, new) = (user.to_string(), old.to_vec(), new.to_vec());
        let table = match kind {
            SecretKind::Active => "mfa",
            SecretKind::Pending => "pending",
        };
        self.write(move |c| {
            c.execute(
                &format!("UPDATE {table} SET secret=?3 WHERE user=?1 AND secret=?2"),
                params![user, old, new],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn purge_expired(&self, now_ms: u64) -> StoreResult<()> {
        self.write(move |c| {
            let now = now_ms as i64;
            c.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now])?;
            c.execute("DELETE FROM devices WHERE expires_ms < ?1", [now])?;
            c.execute(
                "DELETE FROM webauthn_ceremonies WHERE expires_ms < ?1",
                [now],
            )?;
            c.execute(
                "DELETE FROM pending WHERE created_ms < ?1",
                [now - PENDING_MAX_AGE_MS as i64],
            )?;
            // Only password-step counters age out (`LockPolicy::record_ttl_ms`): the code
            // counter is never reset by time (SPEC §6), and it exists only for real
            // users, so it stays bounded.
            c.execute(
                "DELETE FROM lockouts WHERE step='password' AND expires_ms <= ?1",
                [now],
            )?;
            Ok(())
        })
        .await?;
        // Rows purged here are ones the cache's callers already treat as expired; forget
        // them anyway, so that the cache never outlives the database's view.
        self.inner.sessions.clear();
        Ok(())
    }

    async fn key_add(&self, rec: &KeyRecord) -> StoreResult<bool> {
        self.wa_key_add(rec).await
    }
    async fn keys_list(&self, user: &str) -> StoreResult<Vec<KeyRecord>> {
        self.wa_keys_list(user)
    }
    async fn key_find(&self, id: &[u8]) -> StoreResult<Option<KeyRecord>> {
        self.wa_key_find(id)
    }
    async fn key_use(
        &self,
        user: &str,
        id: &[u8],
        seen: u32,
        new: u32,
        now_ms: u64,
    ) -> StoreResult<bool> {
        self.wa_key_use(user, id, seen, new, now_ms).await
    }
    async fn key_rename(&self, user: &str, id: &[u8], name: &str) -> StoreResult<bool> {
        self.wa_key_rename(user, id, name).await
    }
    async fn key_remove(
        &self,
        user: &str,
        id: &[u8],
        keep_a_factor: bool,
    ) -> StoreResult<KeyRemoval> {
        self.wa_key_remove(user, id, keep_a_factor).await
    }
    async fn ceremony_put(
        &self,
        handle: &Fingerprint,
        state: &[u8],
        expires_ms: u64,
    ) -> StoreResult<()> {
        self.wa_ceremony_put(handle, state, expires_ms).await
    }
    async fn ceremony_take(
        &self,
        handle: &Fingerprint,
        now_ms: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.wa_ceremony_take(handle, now_ms).await
    }
}
