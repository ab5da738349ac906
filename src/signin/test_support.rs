//! Test doubles for the sign-in service: a store that is down (every call fails), to
//! show that the service refuses rather than guesses.

use async_trait::async_trait;

use crate::core::lockout::{LockPolicy, Reservation, Step};
use crate::core::store::{
    DeviceRecord, Fingerprint, KeyRecord, KeyRemoval, MfaRecord, PendingEnrollment, SecretKind,
    SessionRecord, Store, StoreError, StoreResult, StoredSecret,
};

/// Every call fails as an unreachable store's would.
pub(crate) struct DownStore;

fn down<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("down (test)".into()))
}

#[async_trait]
impl Store for DownStore {
    async fn ping(&self) -> StoreResult<()> {
        down()
    }
    async fn session_put(&self, _: &Fingerprint, _: &SessionRecord, _: u64) -> StoreResult<()> {
        down()
    }
    async fn session_get(&self, _: &Fingerprint) -> StoreResult<Option<SessionRecord>> {
        down()
    }
    async fn session_touch(&self, _: &Fingerprint, _: u64, _: u64) -> StoreResult<()> {
        down()
    }
    async fn session_rotate(
        &self,
        _: &Fingerprint,
        _: &Fingerprint,
        _: &SessionRecord,
        _: u64,
    ) -> StoreResult<bool> {
        down()
    }
    async fn session_delete(&self, _: &Fingerprint) -> StoreResult<()> {
        down()
    }
    async fn sessions_delete_user(&self, _: &str) -> StoreResult<u64> {
        down()
    }
    async fn sessions_delete_others(&self, _: &str, _: &Fingerprint) -> StoreResult<u64> {
        down()
    }
    async fn sessions_count(&self) -> StoreResult<u64> {
        down()
    }
    async fn sessions_list(
        &self,
        _: &str,
        _: u64,
    ) -> StoreResult<Vec<(Fingerprint, SessionRecord)>> {
        down()
    }
    async fn mfa_get(&self, _: &str) -> StoreResult<Option<MfaRecord>> {
        down()
    }
    async fn pending_get(&self, _: &str) -> StoreResult<Option<PendingEnrollment>> {
        down()
    }
    async fn pending_put(&self, _: &str, _: &PendingEnrollment) -> StoreResult<()> {
        down()
    }
    async fn mfa_enable(&self, _: &str, _: &MfaRecord, _: &[Fingerprint]) -> StoreResult<bool> {
        down()
    }
    async fn mfa_mark_used(&self, _: &str, _: u64) -> StoreResult<()> {
        down()
    }
    async fn mfa_remove(&self, _: &str) -> StoreResult<()> {
        down()
    }
    async fn key_add(&self, _: &KeyRecord) -> StoreResult<bool> {
        down()
    }
    async fn keys_list(&self, _: &str) -> StoreResult<Vec<KeyRecord>> {
        down()
    }
    async fn key_find(&self, _: &[u8]) -> StoreResult<Option<KeyRecord>> {
        down()
    }
    async fn key_use(&self, _: &str, _: &[u8], _: u32, _: u32, _: u64) -> StoreResult<bool> {
        down()
    }
    async fn key_rename(&self, _: &str, _: &[u8], _: &str) -> StoreResult<bool> {
        down()
    }
    async fn key_remove(&self, _: &str, _: &[u8], _: bool) -> StoreResult<KeyRemoval> {
        down()
    }
    async fn ceremony_put(&self, _: &Fingerprint, _: &[u8], _: u64) -> StoreResult<()> {
        down()
    }
    async fn ceremony_take(&self, _: &Fingerprint, _: u64) -> StoreResult<Option<Vec<u8>>> {
        down()
    }
    async fn step_accept(&self, _: &str, _: u64) -> StoreResult<bool> {
        down()
    }
    async fn backup_replace(&self, _: &str, _: &[Fingerprint]) -> StoreResult<()> {
        down()
    }
    async fn backup_consume(&self, _: &str, _: &Fingerprint) -> StoreResult<Option<u32>> {
        down()
    }
    async fn backup_count(&self, _: &str) -> StoreResult<u32> {
        down()
    }
    async fn device_put(&self, _: &Fingerprint, _: &DeviceRecord) -> StoreResult<()> {
        down()
    }
    async fn device_take(&self, _: &Fingerprint, _: &str) -> StoreResult<Option<DeviceRecord>> {
        down()
    }
    async fn devices_list(&self, _: &str) -> StoreResult<Vec<DeviceRecord>> {
        down()
    }
    async fn devices_entries(&self, _: &str) -> StoreResult<Vec<(Fingerprint, DeviceRecord)>> {
        down()
    }
    async fn devices_forget(&self, _: &str) -> StoreResult<u64> {
        down()
    }
    async fn lock_reserve(
        &self,
        _: &str,
        _: Step,
        _: u64,
        _: &LockPolicy,
    ) -> StoreResult<Reservation> {
        down()
    }
    async fn lock_reset(&self, _: &str, _: Step) -> StoreResult<()> {
        down()
    }
    async fn unlock(&self, _: &str) -> StoreResult<()> {
        down()
    }
    async fn secrets_list(&self) -> StoreResult<Vec<StoredSecret>> {
        down()
    }
    async fn secret_swap(&self, _: &str, _: SecretKind, _: &[u8], _: &[u8]) -> StoreResult<bool> {
        down()
    }
    async fn purge_expired(&self, _: u64) -> StoreResult<()> {
        down()
    }
}
