//! Sessions on Redis and the per-user index that lets a revoke find them.
//!
//! A session lives under `s:<hex id>` (looked up by id alone on every request, so it
//! cannot carry the user's hash tag). Its user's index `{u:NAME}:session-index` is a
//! sorted set of ids scored by expiry: every change to it is one script on the user's
//! slot ([`Scripts::session_index_add`], [`Scripts::session_index_take`]), which prunes
//! the expired members and keeps revokes atomic against sign-ins:
//!
//! - a put writes the session, then lists it; a revoke takes and empties the whole
//!   index in one step, then deletes what it took. A put listed before the revoke is
//!   deleted by it; one listed after is a sign-in that happened after the revoke.
//! - a rotation (new id at a privilege change) is listed only while the old id still
//!   is, so a second-factor step racing a revoke cannot bring the user back.
//!
//! [`Scripts::session_index_add`]: super::scripts::Scripts
//! [`Scripts::session_index_take`]: super::scripts::Scripts

use crate::core::store::{Fingerprint, SessionRecord, Store, StoreError, StoreResult};

use super::{RedisStore, hex, unhex};

impl RedisStore {
    /// The sorted set listing `user`'s sessions by expiry.
    fn session_index(&self, user: &str) -> String {
        self.user_key(user, "session-index")
    }

    /// The plain set that indexed a user's sessions before the sorted index; a revoke
    /// still empties it, so sessions made by an earlier version stay revocable.
    fn legacy_session_index(&self, user: &str) -> String {
        self.user_key(user, "sessions")
    }

    /// Lists `id` in its user's index (pruning expired members); with `required`,
    /// only while that id is still listed. Returns whether it was listed.
    async fn index_add(
        &self,
        user: &str,
        id: &Fingerprint,
        ttl_ms: u64,
        required: Option<&Fingerprint>,
    ) -> StoreResult<bool> {
        let mut inv = self.scripts.session_index_add.prepare_invoke();
        inv.key(self.session_index(user))
            .key(self.legacy_session_index(user))
            .arg(hex(id))
            .arg(ttl_ms.max(1))
            .arg(self.index_grace_ms)
            .arg(required.map(|r| hex(r)).unwrap_or_default());
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        Ok(n == 1)
    }

    /// Writes a session record that expires after `ttl_ms`.
    async fn set_session(&self, id: &Fingerprint, json: &str, ttl_ms: u64) -> StoreResult<()> {
        let _: () = self
            .call(
                redis::cmd("SET")
                    .arg(self.session_key(id))
                    .arg(json)
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    /// Deletes one key; returns whether it existed.
    async fn del(&self, key: String) -> StoreResult<u64> {
        self.call(redis::cmd("DEL").arg(key).query_async(&mut self.conn()))
            .await
    }

    /// Lists (`Some(expiry)`) or unlists a session in the store-wide index that
    /// `sessions_count` reads.
    async fn count_index(&self, id: &Fingerprint, expires_ms: Option<u64>) -> StoreResult<()> {
        let mut cmd = redis::cmd(if expires_ms.is_some() { "ZADD" } else { "ZREM" });
        cmd.arg(self.sessions_index());
        if let Some(at) = expires_ms {
            cmd.arg(at);
        }
        cmd.arg(hex(id));
        let _: () = self.call(cmd.query_async(&mut self.conn())).await?;
        Ok(())
    }

    /// Writes the session, then lists it; a session that could not be listed is
    /// removed again (its cookie was never handed out).
    pub(super) async fn put_session(
        &self,
        id: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
        replaces: Option<&Fingerprint>,
    ) -> StoreResult<bool> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.set_session(id, &json, ttl_ms).await?;
        let listed = match self.index_add(&rec.user, id, ttl_ms, replaces).await {
            Ok(listed) => listed,
            Err(e) => {
                let _ = self.del(self.session_key(id)).await;
                return Err(e);
            }
        };
        if !listed {
            self.del(self.session_key(id)).await?;
            return Ok(false);
        }
        if let Some(old) = replaces {
            self.delete_session(old, Some(&rec.user)).await?;
        }
        self.count_index(id, Some(rec.last_seen_ms.saturating_add(ttl_ms)))
            .await?;
        Ok(true)
    }

    /// Extends a session that still exists, and its listing.
    pub(super) async fn touch_session(
        &self,
        id: &Fingerprint,
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        let Some(mut rec) = self.session_get(id).await? else {
            return Ok(());
        };
        rec.last_seen_ms = last_seen_ms;
        let json = serde_json::to_string(&rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // XX: never resurrect a session deleted in the meantime (logout, revoke).
        let set: Option<String> = self
            .call(
                redis::cmd("SET")
                    .arg(self.session_key(id))
                    .arg(json)
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .arg("XX")
                    .query_async(&mut self.conn()),
            )
            .await?;
        if set.is_none() {
            return Ok(());
        }
        // Listed again with its new expiry (a revoke in between lists a dead id at
        // worst, which the next prune drops).
        self.index_add(&rec.user, id, ttl_ms, None).await?;
        let _: () = self
            .call(
                redis::cmd("ZADD")
                    .arg(self.sessions_index())
                    .arg("XX")
                    .arg(last_seen_ms.saturating_add(ttl_ms))
                    .arg(hex(id))
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    /// Deletes a session and unlists it. `user` when the caller knows it; otherwise
    /// the record is read first to find its index.
    pub(super) async fn delete_session(
        &self,
        id: &Fingerprint,
        user: Option<&str>,
    ) -> StoreResult<()> {
        let owner = match user {
            Some(u) => Some(u.to_string()),
            None => {
                let raw: Option<String> = self
                    .call(
                        redis::cmd("GET")
                            .arg(self.session_key(id))
                            .query_async(&mut self.conn()),
                    )
                    .await?;
                raw.and_then(|r| serde_json::from_str::<SessionRecord>(&r).ok())
                    .map(|r| r.user)
            }
        };
        self.del(self.session_key(id)).await?;
        if let Some(owner) = owner {
            let _: () = self
                .call(
                    redis::cmd("ZREM")
                        .arg(self.session_index(&owner))
                        .arg(hex(id))
                        .query_async(&mut self.conn()),
                )
                .await?;
        }
        self.count_index(id, None).await
    }

    /// Ends every session of `user`: takes the whole index in one step, then deletes
    /// what it listed. Returns how many sessions still existed.
    pub(super) async fn delete_user_sessions(
        &self,
        user: &str,
        keep: Option<&Fingerprint>,
    ) -> StoreResult<u64> {
        let mut inv = self.scripts.session_index_take.prepare_invoke();
        inv.key(self.session_index(user))
            .key(self.legacy_session_index(user))
            .arg(keep.map(|k| hex(k)).unwrap_or_default());
        let ids: Vec<String> = self.call(inv.invoke_async(&mut self.conn())).await?;
        let mut ended = 0;
        for id in &ids {
            ended += self.del(format!("{}s:{id}", self.prefix)).await?;
            let _: () = self
                .call(
                    redis::cmd("ZREM")
                        .arg(self.sessions_index())
                        .arg(id)
                        .query_async(&mut self.conn()),
                )
                .await?;
        }
        Ok(ended)
    }

    /// The live sessions of `user`: each index member's record (Redis expires the
    /// records; the index is pruned of expired members by every listing script, on
    /// Redis's clock). A member whose record is gone ended (a key is written before
    /// it is listed and never written again once deleted), so it is unlisted here.
    /// `_now_ms` is not used: expiry is Redis's, and the caller applies the timeouts.
    pub(super) async fn list_user_sessions(
        &self,
        user: &str,
        _now_ms: u64,
    ) -> StoreResult<Vec<(Fingerprint, SessionRecord)>> {
        let index = self.session_index(user);
        let ids: Vec<String> = self
            .call(
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut self.conn()),
            )
            .await?;
        let mut out = Vec::new();
        for id in ids {
            let raw: Option<String> = self
                .call(
                    redis::cmd("GET")
                        .arg(format!("{}s:{id}", self.prefix))
                        .query_async(&mut self.conn()),
                )
                .await?;
            let rec = raw.and_then(|r| serde_json::from_str::<SessionRecord>(&r).ok());
            match (rec, unhex(&id)) {
                (Some(rec), Some(fp)) if rec.user == user => out.push((fp, rec)),
                _ => {
                    let _: () = self
                        .call(
                            redis::cmd("ZREM")
                                .arg(&index)
                                .arg(&id)
                                .query_async(&mut self.conn()),
                        )
                        .await?;
                }
            }
        }
        out.sort_by_key(|(_, r)| r.created_ms);
        Ok(out)
    }
}
