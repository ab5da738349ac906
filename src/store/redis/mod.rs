//! The Redis backend: many gateway instances share one truth (SPEC §7).
//!
//! - Standalone (`redis://`, `rediss://`, user/password in the URL), Sentinel and
//!   Cluster. Per-user keys share a hash tag (`{u:NAME}`), so the scripts that touch
//!   several of them stay on one cluster slot.
//! - Every check-and-set that must not be won twice — a TOTP step, a backup code, a
//!   remember-device token, a lockout reservation, enabling 2FA, listing a session
//!   for its user — is one command or one Lua script, atomic across instances
//!   (`lockout.rs`, `sessions.rs`). The lockout script applies `core::lockout`'s
//!   reservation with the durations table that module computes.
//! - Every call is bounded by `storage.timeout`; errors surface as
//!   [`StoreError::Unavailable`] so callers fail closed, and the connection manager
//!   reconnects by itself when Redis returns.
//! - Keys hold only hashes and encrypted envelopes, never a plaintext secret, code,
//!   token or session id.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{RedisMode, StorageConfig};
use crate::core::lockout::{LockPolicy, Reservation, Step};
use crate::core::store::*;

mod conn;
mod keys;
mod lockout;
mod scripts;
mod sessions;
mod tracking;

use conn::{Conn, PerThreadConnection, SentinelConn};
use scripts::Scripts;

/// Redis-backed [`Store`].
pub struct RedisStore {
    conn: Conn,
    /// Standalone only: per-thread connections for the session lookup of every
    /// authenticated request. Everything else uses `conn`.
    hot: Option<PerThreadConnection>,
    /// Standalone only: session records cached here, invalidated by Redis (issue 26).
    tracking: Option<Arc<tracking::SessionTracking>>,
    prefix: String,
    timeout: Duration,
    scripts: Scripts,
    key_scripts: keys::KeyScripts,
    /// How long a session stays listed past its expiry ([`scripts::INDEX_GRACE_MS`]).
    index_grace_ms: u64,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// A fingerprint from its key spelling; `None` for anything else.
fn unhex(s: &str) -> Option<Fingerprint> {
    data_encoding::HEXLOWER
        .decode(s.as_bytes())
        .ok()?
        .try_into()
        .ok()
}

const PENDING_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

impl RedisStore {
    /// Connects as `[storage]` says. Standalone connects lazily (the gateway starts and
    /// answers 503 until Redis is there); Cluster and Sentinel need the topology now.
    pub async fn open(cfg: &StorageConfig) -> Result<Self, StoreError> {
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let certs = match &cfg.redis_ca_file {
            Some(p) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(
                    std::fs::read(p)
                        .map_err(|e| unavailable(format!("storage.redis_ca_file: {e}")))?,
                ),
            }),
            None => None,
        };
        let mut hot = None;
        let mut tracking = None;
        let conn = match cfg.redis_mode {
            RedisMode::Standalone => {
                let client = match &certs {
                    Some(c) => redis::Client::build_with_tls(cfg.redis_url.as_str(), c.clone()),
                    None => redis::Client::open(cfg.redis_url.as_str()),
                }
                .map_err(unavailable)?;
                hot = Some(PerThreadConnection::new(client.clone(), cfg.timeout));
                tracking = tracking::SessionTracking::start(&client, &cfg.key_prefix);
                Conn::Single(
                    ConnectionManager::new_lazy_with_config(client, manager_cfg)
                        .map_err(unavailable)?,
                )
            }
            RedisMode::Cluster => {
                let mut b = redis::cluster::ClusterClient::builder(cfg.redis_nodes.clone())
                    .connection_timeout(cfg.timeout)
                    .response_timeout(cfg.timeout)
                    .retries(2);
                if let Some(c) = certs {
                    b = b.certs(c);
                }
                let client = b.build().map_err(unavailable)?;
                let conn = tokio::time::timeout(cfg.timeout * 2, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable("timed out connecting to the Redis cluster"))?
                    .map_err(unavailable)?;
                Conn::Cluster(conn)
            }
            RedisMode::Sentinel => {
                let client = redis::sentinel::SentinelClient::build(
                    cfg.redis_nodes.clone(),
                    cfg.redis_sentinel_master.clone(),
                    None,
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(unavailable)?;
                Conn::Sentinel(Arc::new(SentinelConn {
                    client: tokio::sync::Mutex::new(client),
                    current: RwLock::new(None),
                    config: manager_cfg,
                }))
            }
        };
        Ok(Self {
            conn,
            hot,
            tracking,
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            scripts: Scripts::new(),
            key_scripts: keys::KeyScripts::new(),
            index_grace_ms: scripts::INDEX_GRACE_MS,
        })
    }

    /// Tests watch expired sessions leave the index without waiting out the grace.
    #[cfg(test)]
    pub(crate) fn set_index_grace_ms(&mut self, ms: u64) {
        self.index_grace_ms = ms;
    }

    /// Drops what this process changed from the session cache (`None`: sessions it
    /// cannot name, all of a user's): Redis's invalidation follows on its own
    /// connection, but a read here in between must already see the change.
    fn forget_cached(&self, id: Option<&Fingerprint>) {
        if let Some(t) = &self.tracking {
            match id {
                Some(id) => t.forget(id),
                None => t.forget_all(),
            }
        }
    }

    /// Bounds one store call in time and maps its error.
    async fn call<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(unavailable("redis call timed out")),
        }
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    fn session_key(&self, id: &Fingerprint) -> String {
        format!("{}s:{}", self.prefix, hex(id))
    }
    fn sessions_index(&self) -> String {
        format!("{}sessions", self.prefix)
    }
    fn device_key(&self, token: &Fingerprint) -> String {
        format!("{}d:{}", self.prefix, hex(token))
    }
    /// Per-user keys share the hash tag `{u:NAME}` (names are plain: see
    /// `core::user::validate_username`).
    fn user_key(&self, user: &str, what: &str) -> String {
        format!("{}{{u:{}}}:{what}", self.prefix, user)
    }
    /// Users that hold a secret (active or pending): one set, so rotation can walk
    /// them on every topology (SCAN would have to visit every cluster node).
    fn secret_users(&self) -> String {
        format!("{}secret-users", self.prefix)
    }
    /// Stores `json` under `key` for `ttl_ms` and lists `member` in the per-user `index`
    /// set, so every record of a user can be found again (revoke, forget devices).
    async fn put_indexed(
        &self,
        key: &str,
        json: String,
        ttl_ms: u64,
        index: &str,
        member: &str,
    ) -> StoreResult<()> {
        let mut c = self.conn();
        let _: () = self
            .call(
                redis::cmd("SET")
                    .arg(key)
                    .arg(json)
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .query_async(&mut c),
            )
            .await?;
        let _: () = self
            .call(
                redis::cmd("SADD")
                    .arg(index)
                    .arg(member)
                    .query_async(&mut c),
            )
            .await?;
        Ok(())
    }

    /// Deletes every record listed in `index` (keys `{prefix}{kind}:{member}`) and the
    /// index itself. Returns the members and how many records still existed.
    async fn delete_indexed(&self, index: &str, kind: &str) -> StoreResult<(Vec<String>, u64)> {
        let mut c = self.conn();
        let members: Vec<String> = self
            .call(redis::cmd("SMEMBERS").arg(index).query_async(&mut c))
            .await?;
        let mut existed = 0;
        for m in &members {
            let n: u64 = self
                .call(
                    redis::cmd("DEL")
                        .arg(format!("{}{kind}:{m}", self.prefix))
                        .query_async(&mut c),
                )
                .await?;
            existed += n;
        }
        let _: () = self
            .call(redis::cmd("DEL").arg(index).query_async(&mut c))
            .await?;
        Ok((members, existed))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let _: String = self
            .call(redis::cmd("PING").query_async(&mut self.conn()))
            .await?;
        Ok(())
    }

    async fn session_put(
        &self,
        id: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        self.put_session(id, rec, ttl_ms, None).await.map(|_| ())
    }

    async fn session_rotate(
        &self,
        old: &Fingerprint,
        new: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<bool> {
        let rotated = self.put_session(new, rec, ttl_ms, Some(old)).await;
        self.forget_cached(Some(old));
        rotated
    }

    async fn session_get(&self, id: &Fingerprint) -> StoreResult<Option<SessionRecord>> {
        if let Some(rec) = self.tracking.as_ref().and_then(|t| t.get(id)) {
            return Ok(Some(rec));
        }
        let ticket = self.tracking.as_ref().map(|t| t.ticket());
        let key = self.session_key(id);
        let get = |mut c: Conn| {
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            async move { cmd.query_async::<Option<String>>(&mut c).await }
        };
        let raw = match &self.hot {
            // This thread's connection; after an outage its first call may meet the dead
            // socket, so a failure is retried once on the shared connection (a GET is
            // safe to repeat) and the thread's connection is replaced.
            Some(hot) => match hot.get() {
                Some(m) => match tokio::time::timeout(self.timeout, get(Conn::Thread(m))).await {
                    Ok(Ok(raw)) => raw,
                    Ok(Err(_)) => {
                        hot.forget();
                        self.call(get(self.conn())).await?
                    }
                    Err(_) => {
                        hot.forget();
                        return Err(unavailable("redis call timed out"));
                    }
                },
                None => self.call(get(self.conn())).await?,
            },
            None => self.call(get(self.conn())).await?,
        };
        let rec: Option<SessionRecord> = raw
            .map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?;
        if let (Some(t), Some(rec), Some(ticket)) = (&self.tracking, &rec, ticket) {
            t.insert(id, rec, ticket);
        }
        Ok(rec)
    }

    async fn session_touch(
        &self,
        id: &Fingerprint,
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        let touched = self.touch_session(id, last_seen_ms, ttl_ms).await;
        self.forget_cached(Some(id));
        touched
    }

    async fn session_delete(&self, id: &Fingerprint) -> StoreResult<()> {
        let deleted = self.delete_session(id, None).await;
        self.forget_cached(Some(id));
        deleted
    }

    async fn sessions_delete_user(&self, user: &str) -> StoreResult<u64> {
        let deleted = self.delete_user_sessions(user, None).await;
        self.forget_cached(None);
        deleted
    }

    async fn sessions_delete_others(&self, user: &str, keep: &Fingerprint) -> StoreResult<u64> {
        let deleted = self.delete_user_sessions(user, Some(keep)).await;
        self.forget_cached(None);
        deleted
    }

    async fn sessions_count(&self) -> StoreResult<u64> {
        let mut c = self.conn();
        let now = crate::core::clock::now_ms();
        let _: () = self
            .call(
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(self.sessions_index())
                    .arg("-inf")
                    .arg(now)
                    .query_async(&mut c),
            )
            .await?;
        self.call(
            redis::cmd("ZCARD")
                .arg(self.sessions_index())
                .query_async(&mut c),
        )
        .await
    }

    async fn sessions_list(
        &self,
        user: &str,
        now_ms: u64,
    ) -> StoreResult<Vec<(Fingerprint, SessionRecord)>> {
        self.list_user_sessions(user, now_ms).await
    }

    async fn mfa_get(&self, user: &str) -> StoreResult<Option<MfaRecord>> {
        let (secret, enabled, used): (Option<Vec<u8>>, Option<u64>, Option<String>) = self
            .call(
                redis::cmd("HMGET")
                    .arg(self.user_key(user, "mfa"))
                    .arg("secret")
                    .arg("enabled_ms")
                    .arg("last_used_ms")
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(match (secret, enabled) {
            (Some(secret), Some(enabled_ms)) => Some(MfaRecord {
                secret,
                enabled_ms,
                last_used_ms: used.and_then(|u| u.parse().ok()).filter(|v: &u64| *v > 0),
            }),
            _ => None,
        })
    }

    async fn pending_get(&self, user: &str) -> StoreResult<Option<PendingEnrollment>> {
        let (secret, created): (Option<Vec<u8>>, Option<u64>) = self
            .call(
                redis::cmd("HMGET")
                    .arg(self.user_key(user, "pending"))
                    .arg("secret")
                    .arg("created_ms")
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(match (secret, created) {
            (Some(secret), Some(created_ms)) => Some(PendingEnrollment { secret, created_ms }),
            _ => None,
        })
    }

    async fn pending_put(&self, user: &str, p: &PendingEnrollment) -> StoreResult<()> {
        let key = self.user_key(user, "pending");
        let mut c = self.conn();
        let _: () = self
            .call(
                redis::cmd("HSET")
                    .arg(&key)
                    .arg("secret")
                    .arg(&p.secret)
                    .arg("created_ms")
                    .arg(p.created_ms)
                    .query_async(&mut c),
            )
            .await?;
        let _: () = self
            .call(
                redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(PENDING_TTL_MS)
                    .query_async(&mut c),
            )
            .await?;
        let _: () = self
            .call(
                redis::cmd("SADD")
                    .arg(self.secret_users())
                    .arg(user)
                    .query_async(&mut c),
            )
            .await?;
        Ok(())
    }

    async fn mfa_enable(
        &self,
        user: &str,
        rec: &MfaRecord,
        backup: &[Fingerprint],
    ) -> StoreResult<bool> {
        let mut inv = self.scripts.mfa_enable.prepare_invoke();
        inv.key(self.user_key(user, "mfa"))
            .key(self.user_key(user, "pending"))
            .key(self.user_key(user, "backup"));
        inv.arg(&rec.secret)
            .arg(rec.enabled_ms)
            .arg(rec.last_used_ms.unwrap_or(0));
        for h in backup {
            inv.arg(&h[..]);
        }
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        let _: () = self
            .call(
                redis::cmd("SADD")
                    .arg(self.secret_users())
                    .arg(user)
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(n == 1)
    }

    async fn mfa_mark_used(&self, user: &str, now_ms: u64) -> StoreResult<()> {
        let _: () = self
            .call(
                redis::cmd("HSET")
                    .arg(self.user_key(user, "mfa"))
                    .arg("last_used_ms")
                    .arg(now_ms)
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    async fn mfa_remove(&self, user: &str) -> StoreResult<()> {
        let _: () = self
            .call(
                redis::cmd("DEL")
                    .arg(self.user_key(user, "mfa"))
                    .arg(self.user_key(user, "pending"))
                    .arg(self.user_key(user, "backup"))
                    .query_async(&mut self.conn()),
            )
            .await?;
        let _: () = self
            .call(
                redis::cmd("SREM")
                    .arg(self.secret_users())
                    .arg(user)
                    .query_async(&mut self.conn()),
            )
            .await?;
        self.devices_forget(user).await?;
        self.wa_keys_remove_all(user).await
    }

    async fn step_accept(&self, user: &str, step: u64) -> StoreResult<bool> {
        let mut inv = self.scripts.step_accept.prepare_invoke();
        inv.key(self.user_key(user, "replay")).arg(step);
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        Ok(n == 1)
    }

    async fn backup_replace(&self, user: &str, hashes: &[Fingerprint]) -> StoreResult<()> {
        let mut inv = self.scripts.backup_replace.prepare_invoke();
        inv.key(self.user_key(user, "backup"));
        for h in hashes {
            inv.arg(&h[..]);
        }
        let _: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        Ok(())
    }

    async fn backup_consume(&self, user: &str, hash: &Fingerprint) -> StoreResult<Option<u32>> {
        let mut inv = self.scripts.backup_consume.prepare_invoke();
        inv.key(self.user_key(user, "backup")).arg(&hash[..]);
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        Ok((n >= 0).then_some(n as u32))
    }

    async fn backup_count(&self, user: &str) -> StoreResult<u32> {
        self.call(
            redis::cmd("SCARD")
                .arg(self.user_key(user, "backup"))
                .query_async(&mut self.conn()),
        )
        .await
    }

    async fn device_put(&self, token: &Fingerprint, rec: &DeviceRecord) -> StoreResult<()> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ttl = rec
            .expires_ms
            .saturating_sub(crate::core::clock::now_ms())
            .max(1);
        self.put_indexed(
            &self.device_key(token),
            json,
            ttl,
            &self.user_key(&rec.user, "devices"),
            &hex(token),
        )
        .await
    }

    async fn device_take(
        &self,
        token: &Fingerprint,
        user: &str,
    ) -> StoreResult<Option<DeviceRecord>> {
        let mut inv = self.scripts.device_take.prepare_invoke();
        inv.key(self.device_key(token)).arg(user);
        let raw: Option<String> = self.call(inv.invoke_async(&mut self.conn())).await?;
        let Some(raw) = raw else { return Ok(None) };
        let _: () = self
            .call(
                redis::cmd("SREM")
                    .arg(self.user_key(user, "devices"))
                    .arg(hex(token))
                    .query_async(&mut self.conn()),
            )
            .await?;
        serde_json::from_str(&raw)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn devices_list(&self, user: &str) -> StoreResult<Vec<DeviceRecord>> {
        Ok(self
            .devices_entries(user)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    async fn devices_entries(&self, user: &str) -> StoreResult<Vec<(Fingerprint, DeviceRecord)>> {
        let index = self.user_key(user, "devices");
        let mut c = self.conn();
        let ids: Vec<String> = self
            .call(redis::cmd("SMEMBERS").arg(&index).query_async(&mut c))
            .await?;
        let mut out = Vec::new();
        for id in ids {
            let raw: Option<String> = self
                .call(
                    redis::cmd("GET")
                        .arg(format!("{}d:{id}", self.prefix))
                        .query_async(&mut c),
                )
                .await?;
            match (raw, unhex(&id)) {
                (Some(r), Some(token)) => out.push((
                    token,
                    serde_json::from_str::<DeviceRecord>(&r)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )),
                _ => {
                    let _: () = self
                        .call(redis::cmd("SREM").arg(&index).arg(&id).query_async(&mut c))
                        .await?;
                }
            }
        }
        out.sort_by_key(|(_, d)| d.expires_ms);
        Ok(out)
    }

    async fn devices_forget(&self, user: &str) -> StoreResult<u64> {
        Ok(self
            .delete_indexed(&self.user_key(user, "devices"), "d")
            .await?
            .1)
    }

    async fn lock_reserve(
        &self,
        key: &str,
        step: Step,
        now_ms: u64,
        policy: &LockPolicy,
    ) -> StoreResult<Reservation> {
        self.reserve(key, step, now_ms, policy).await
    }

    async fn lock_reset(&self, key: &str, step: Step) -> StoreResult<()> {
        let _: () = self
            .call(
                redis::cmd("DEL")
                    .arg(self.lock_key(key, step))
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    async fn unlock(&self, key: &str) -> StoreResult<()> {
        let mut c = self.conn();
        for step in [Step::Password, Step::Code] {
            let _: () = self
                .call(
                    redis::cmd("DEL")
                        .arg(self.lock_key(key, step))
                        .query_async(&mut c),
                )
                .await?;
        }
        Ok(())
    }

    async fn secrets_list(&self) -> StoreResult<Vec<StoredSecret>> {
        let mut c = self.conn();
        let users: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.secret_users())
                    .query_async(&mut c),
            )
            .await?;
        let mut out = Vec::new();
        for user in users {
            for (kind, what) in [
                (SecretKind::Active, "mfa"),
                (SecretKind::Pending, "pending"),
            ] {
                let secret: Option<Vec<u8>> = self
                    .call(
                        redis::cmd("HGET")
                            .arg(self.user_key(&user, what))
                            .arg("secret")
                            .query_async(&mut c),
                    )
                    .await?;
                if let Some(envelope) = secret {
                    out.push(StoredSecret {
                        user: user.clone(),
                        kind,
                        envelope,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn secret_swap(
        &self,
        user: &str,
        kind: SecretKind,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        let what = match kind {
            SecretKind::Active => "mfa",
            SecretKind::Pending => "pending",
        };
        let mut inv = self.scripts.secret_swap.prepare_invoke();
        inv.key(self.user_key(user, what)).arg(old).arg(new);
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        Ok(n == 1)
    }

    async fn purge_expired(&self, now_ms: u64) -> StoreResult<()> {
        // Keys expire by themselves (TTLs); only the session index needs trimming.
        let _: () = self
            .call(
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(self.sessions_index())
                    .arg("-inf")
                    .arg(now_ms)
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    async fn key_add(&self, rec: &KeyRecord) -> StoreResult<bool> {
        self.wa_key_add(rec).await
    }
    async fn keys_list(&self, user: &str) -> StoreResult<Vec<KeyRecord>> {
        self.wa_keys_list(user).await
    }
    async fn key_find(&self, id: &[u8]) -> StoreResult<Option<KeyRecord>> {
        self.wa_key_find(id).await
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
        _now_ms: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        // Redis expires the state by its TTL.
        self.wa_ceremony_take(handle).await
    }
}
