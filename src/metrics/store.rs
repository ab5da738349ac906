//! A [`Store`] that times every call of the store it wraps: one histogram observation
//! per call (and one counter increment on error), whatever the backend. Wrapping keeps
//! the measurement in one place instead of at every call site in pages and sessions.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::Metrics;
use crate::core::lockout::{LockPolicy, Reservation, Step};
use crate::core::store::*;

/// The wrapped store plus the metrics it reports to.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }
}

/// Runs one store call and records its latency and success.
macro_rules! timed {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let started = Instant::now();
        let result = $self.inner.$method($($arg),*).await;
        $self.metrics.store_call(started.elapsed(), result.is_ok());
        result
    }};
}

#[async_trait]
impl Store for MeteredStore {
    async fn ping(&self) -> StoreResult<()> {
        timed!(self.ping())
    }
    async fn session_put(
        &self,
        id: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        timed!(self.session_put(id, rec, ttl_ms))
    }
    async fn session_get(&self, id: &Fingerprint) -> StoreResult<Option<SessionRecord>> {
        timed!(self.session_get(id))
    }
    async fn session_touch(
        &self,
        id: &Fingerprint,
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> StoreResult<()> {
        timed!(self.session_touch(id, last_seen_ms, ttl_ms))
    }
    async fn session_rotate(
        &self,
        old: &Fingerprint,
        new: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<bool> {
        timed!(self.session_rotate(old, new, rec, ttl_ms))
    }
    async fn session_delete(&self, id: &Fingerprint) -> StoreResult<()> {
        timed!(self.session_delete(id))
    }
    async fn sessions_delete_user(&self, user: &str) -> StoreResult<u64> {
        timed!(self.sessions_delete_user(user))
    }
    async fn sessions_delete_others(&self, user: &str, keep: &Fingerprint) -> StoreResult<u64> {
        timed!(self.sessions_delete_others(user, keep))
    }
    async fn sessions_count(&self) -> StoreResult<u64> {
        timed!(self.sessions_count())
    }
    async fn sessions_list(
        &self,
        user: &str,
        now_ms: u64,
    ) -> StoreResult<Vec<(Fingerprint, SessionRecord)>> {
        timed!(self.sessions_list(user, now_ms))
    }
    async fn mfa_get(&self, user: &str) -> StoreResult<Option<MfaRecord>> {
        timed!(self.mfa_get(user))
    }
    async fn pending_get(&self, user: &str) -> StoreResult<Option<PendingEnrollment>> {
        timed!(self.pending_get(user))
    }
    async fn pending_put(&self, user: &str, p: &PendingEnrollment) -> StoreResult<()> {
        timed!(self.pending_put(user, p))
    }
    async fn mfa_enable(
        &self,
        user: &str,
        rec: &MfaRecord,
        backup: &[Fingerprint],
    ) -> StoreResult<bool> {
        timed!(self.mfa_enable(user, rec, backup))
    }
    async fn mfa_mark_used(&self, user: &str, now_ms: u64) -> StoreResult<()> {
        timed!(self.mfa_mark_used(user, now_ms))
    }
    async fn mfa_remove(&self, user: &str) -> StoreResult<()> {
        timed!(self.mfa_remove(user))
    }
    async fn step_accept(&self, user: &str, step: u64) -> StoreResult<bool> {
        timed!(self.step_accept(user, step))
    }
    async fn backup_replace(&self, user: &str, hashes: &[Fingerprint]) -> StoreResult<()> {
        timed!(self.backup_replace(user, hashes))
    }
    async fn backup_consume(&self, user: &str, hash: &Fingerprint) -> StoreResult<Option<u32>> {
        timed!(self.backup_consume(user, hash))
    }
    async fn backup_count(&self, user: &str) -> StoreResult<u32> {
        timed!(self.backup_count(user))
    }
    async fn device_put(&self, token: &Fingerprint, rec: &DeviceRecord) -> StoreResult<()> {
        timed!(self.device_put(token, rec))
    }
    async fn device_take(
        &self,
        token: &Fingerprint,
        user: &str,
    ) -> StoreResult<Option<DeviceRecord>> {
        timed!(self.device_take(token, user))
    }
    async fn devices_list(&self, user: &str) -> StoreResult<Vec<DeviceRecord>> {
        timed!(self.devices_list(user))
    }
    async fn devices_entries(&self, user: &str) -> StoreResult<Vec<(Fingerprint, DeviceRecord)>> {
        timed!(self.devices_entries(user))
    }
    async fn devices_forget(&self, user: &str) -> StoreResult<u64> {
        timed!(self.devices_forget(user))
    }
    async fn lock_reserve(
        &self,
        key: &str,
        step: Step,
        now_ms: u64,
        policy: &LockPolicy,
    ) -> StoreResult<Reservation> {
        timed!(self.lock_reserve(key, step, now_ms, policy))
    }
    async fn lock_reset(&self, key: &str, step: Step) -> StoreResult<()> {
        timed!(self.lock_reset(key, step))
    }
    async fn unlock(&self, key: &str) -> StoreResult<()> {
        timed!(self.unlock(key))
    }
    async fn secrets_list(&self) -> StoreResult<Vec<StoredSecret>> {
        timed!(self.secrets_list())
    }
    async fn secret_swap(
        &self,
        user: &str,
        kind: SecretKind,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        timed!(self.secret_swap(user, kind, old, new))
    }
    async fn purge_expired(&self, now_ms: u64) -> StoreResult<()> {
        timed!(self.purge_expired(now_ms))
    }

    async fn key_add(&self, rec: &KeyRecord) -> StoreResult<bool> {
        timed!(self.key_add(rec))
    }
    async fn keys_list(&self, user: &str) -> StoreResult<Vec<KeyRecord>> {
        timed!(self.keys_list(user))
    }
    async fn key_find(&self, id: &[u8]) -> StoreResult<Option<KeyRecord>> {
        timed!(self.key_find(id))
    }
    async fn key_use(
        &self,
        user: &str,
        id: &[u8],
        seen: u32,
        new: u32,
        now_ms: u64,
    ) -> StoreResult<bool> {
        timed!(self.key_use(user, id, seen, new, now_ms))
    }
    async fn key_rename(&self, user: &str, id: &[u8], name: &str) -> StoreResult<bool> {
        timed!(self.key_rename(user, id, name))
    }
    async fn key_remove(
        &self,
        user: &str,
        id: &[u8],
        keep_a_factor: bool,
    ) -> StoreResult<KeyRemoval> {
        timed!(self.key_remove(user, id, keep_a_factor))
    }
    async fn ceremony_put(
        &self,
        handle: &Fingerprint,
        state: &[u8],
        expires_ms: u64,
    ) -> StoreResult<()> {
        timed!(self.ceremony_put(handle, state, expires_ms))
    }
    async fn ceremony_take(
        &self,
        handle: &Fingerprint,
        now_ms: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        timed!(self.ceremony_take(handle, now_ms))
    }
}
