//! Security keys and WebAuthn ceremonies in Redis (SPEC §10).
//!
//! - `{u:NAME}:key:HEX` (a hash per key: `data` = the record's JSON, `counter`,
//!   `last_used_ms`) and `{u:NAME}:keys` (the set of a user's key ids): one hash tag,
//!   so the counter compare-and-set and the "never the last factor" removal are one
//!   Lua script each, atomic across instances, on a cluster too.
//! - `wa:HEX` → user name: claims a credential id for one user (`SET NX`) and finds
//!   the owner of a passkey at passwordless sign-in.
//! - `wc:HEX` (the ceremony handle's fingerprint): a ceremony's state with its TTL,
//!   taken with one GET-and-DEL script so it is used once.

use redis::Script;

use super::{RedisStore, hex};
use crate::core::store::*;

/// The scripts of this file.
pub(super) struct KeyScripts {
    key_use: Script,
    key_remove: Script,
    take: Script,
}

impl KeyScripts {
    pub(super) fn new() -> Self {
        Self {
            // KEYS key hash; ARGV seen, new, now_ms. Compare-and-set of the counter.
            key_use: Script::new(
                "local cur = redis.call('HGET', KEYS[1], 'counter')
                 if not cur or cur ~= ARGV[1] then return 0 end
                 redis.call('HSET', KEYS[1], 'counter', ARGV[2], 'last_used_ms', ARGV[3])
                 return 1",
            ),
            // KEYS key hash, the user's key set, the user's TOTP hash; ARGV id (hex),
            // keep_a_factor (1/0). Returns 1 removed, 0 not found, -1 last factor.
            key_remove: Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                 if ARGV[2] == '1' and redis.call('SCARD', KEYS[2]) <= 1
                    and redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
                 redis.call('DEL', KEYS[1]) redis.call('SREM', KEYS[2], ARGV[1])
                 return 1",
            ),
            take: Script::new(
                "local v = redis.call('GET', KEYS[1])
                 if v then redis.call('DEL', KEYS[1]) end
                 return v",
            ),
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("webauthn key: {e}"))
}

impl RedisStore {
    fn key_hash(&self, user: &str, id: &[u8]) -> String {
        self.user_key(user, &format!("key:{}", hex(id)))
    }
    fn key_claim(&self, id: &[u8]) -> String {
        format!("{}wa:{}", self.prefix, hex(id))
    }
    fn ceremony_key(&self, handle: &Fingerprint) -> String {
        format!("{}wc:{}", self.prefix, hex(handle))
    }

    /// One key of `user`, its counter and last use read from their own fields.
    async fn key_read(&self, user: &str, id: &[u8]) -> StoreResult<Option<KeyRecord>> {
        let (data, counter, used): (Option<String>, Option<u32>, Option<u64>) = self
            .call(
                redis::cmd("HMGET")
                    .arg(self.key_hash(user, id))
                    .arg("data")
                    .arg("counter")
                    .arg("last_used_ms")
                    .query_async(&mut self.conn()),
            )
            .await?;
        let Some(data) = data else { return Ok(None) };
        let mut rec: KeyRecord = serde_json::from_str(&data).map_err(corrupt)?;
        rec.counter = counter.unwrap_or(rec.counter);
        rec.last_used_ms = used.filter(|v| *v > 0).or(rec.last_used_ms);
        Ok(Some(rec))
    }

    pub(super) async fn wa_key_add(&self, rec: &KeyRecord) -> StoreResult<bool> {
        let data = serde_json::to_string(rec).map_err(corrupt)?;
        let claimed: Option<String> = self
            .call(
                redis::cmd("SET")
                    .arg(self.key_claim(&rec.id))
                    .arg(&rec.user)
                    .arg("NX")
                    .query_async(&mut self.conn()),
            )
            .await?;
        if claimed.is_none() {
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(self.key_hash(&rec.user, &rec.id))
            .arg("data")
            .arg(data)
            .arg("counter")
            .arg(rec.counter)
            .arg("last_used_ms")
            .arg(rec.last_used_ms.unwrap_or(0))
            .ignore()
            .cmd("SADD")
            .arg(self.user_key(&rec.user, "keys"))
            .arg(hex(&rec.id))
            .ignore();
        let _: () = self.call(pipe.query_async(&mut self.conn())).await?;
        Ok(true)
    }

    pub(super) async fn wa_keys_list(&self, user: &str) -> StoreResult<Vec<KeyRecord>> {
        let ids: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.user_key(user, "keys"))
                    .query_async(&mut self.conn()),
            )
            .await?;
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            let raw = data_encoding::HEXLOWER
                .decode(id.as_bytes())
                .map_err(corrupt)?;
            if let Some(rec) = self.key_read(user, &raw).await? {
                keys.push(rec);
            }
        }
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    pub(super) async fn wa_key_find(&self, id: &[u8]) -> StoreResult<Option<KeyRecord>> {
        let user: Option<String> = self
            .call(
                redis::cmd("GET")
                    .arg(self.key_claim(id))
                    .query_async(&mut self.conn()),
            )
            .await?;
        match user {
            Some(user) => self.key_read(&user, id).await,
            None => Ok(None),
        }
    }

    pub(super) async fn wa_key_use(
        &self,
        user: &str,
        id: &[u8],
        seen: u32,
        new: u32,
        now_ms: u64,
    ) -> StoreResult<bool> {
        let mut inv = self.key_scripts.key_use.prepare_invoke();
        inv.key(self.key_hash(user, id))
            .arg(seen)
            .arg(new)
            .arg(now_ms);
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        Ok(n == 1)
    }

    pub(super) async fn wa_key_rename(
        &self,
        user: &str,
        id: &[u8],
        name: &str,
    ) -> StoreResult<bool> {
        let Some(mut rec) = self.key_read(user, id).await? else {
            return Ok(false);
        };
        rec.name = name.to_string();
        let data = serde_json::to_string(&rec).map_err(corrupt)?;
        // HSET XX-like: only the `data` field changes; the counter fields stay as a
        // concurrent sign-in left them.
        let _: () = self
            .call(
                redis::cmd("HSET")
                    .arg(self.key_hash(user, id))
                    .arg("data")
                    .arg(data)
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(true)
    }

    pub(super) async fn wa_key_remove(
        &self,
        user: &str,
        id: &[u8],
        keep_a_factor: bool,
    ) -> StoreResult<KeyRemoval> {
        let mut inv = self.key_scripts.key_remove.prepare_invoke();
        inv.key(self.key_hash(user, id))
            .key(self.user_key(user, "keys"))
            .key(self.user_key(user, "mfa"))
            .arg(hex(id))
            .arg(if keep_a_factor { "1" } else { "0" });
        let n: i64 = self.call(inv.invoke_async(&mut self.conn())).await?;
        match n {
            1 => {
                self.release_claim(id).await?;
                Ok(KeyRemoval::Removed)
            }
            -1 => Ok(KeyRemoval::LastFactor),
            _ => Ok(KeyRemoval::NotFound),
        }
    }

    async fn release_claim(&self, id: &[u8]) -> StoreResult<()> {
        let _: () = self
            .call(
                redis::cmd("DEL")
                    .arg(self.key_claim(id))
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    /// Every key of `user` (part of `mfa_remove`: a 2FA reset or turning 2FA off).
    pub(super) async fn wa_keys_remove_all(&self, user: &str) -> StoreResult<()> {
        for rec in self.wa_keys_list(user).await? {
            self.wa_key_remove(user, &rec.id, false).await?;
        }
        let _: () = self
            .call(
                redis::cmd("DEL")
                    .arg(self.user_key(user, "keys"))
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn wa_ceremony_put(
        &self,
        handle: &Fingerprint,
        state: &[u8],
        expires_ms: u64,
    ) -> StoreResult<()> {
        let ttl = expires_ms
            .saturating_sub(crate::core::clock::now_ms())
            .max(1);
        let _: () = self
            .call(
                redis::cmd("SET")
                    .arg(self.ceremony_key(handle))
                    .arg(state)
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut self.conn()),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn wa_ceremony_take(
        &self,
        handle: &Fingerprint,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut inv = self.key_scripts.take.prepare_invoke();
        inv.key(self.ceremony_key(handle));
        self.call(inv.invoke_async(&mut self.conn())).await
    }
}
