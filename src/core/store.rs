//! The storage contract. Every backend (embedded, Redis) implements [`Store`] and passes
//! the same conformance suite. Keys that come from secrets (session ids, device
//! tokens, backup codes) arrive here already hashed; TOTP secrets arrive encrypted.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::auth_flow::Stage;
use super::lockout::{LockPolicy, Reservation, Step};

/// A SHA-256 fingerprint of a token; the only form in which tokens are stored.
pub(crate) type Fingerprint = [u8; 32];

/// A server-side session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub user: String,
    pub stage: Stage,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// The user's credential fingerprint at sign-in; a password change voids the session.
    pub credential: [u8; 8],
    /// What the account page shows about the session; absent in records written by an
    /// earlier version.
    #[serde(default)]
    pub meta: SessionMeta,
}

/// Facts about a session for its owner (the account page, `sessions list`) and for a
/// step-up rule. Written when the session is issued or rotated, never per request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionMeta {
    /// Unix milliseconds of the last second-factor proof (a code or a key; a remembered
    /// browser does not count), for `max_factor_age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor_ms: Option<u64>,
    /// The client address that signed in.
    #[serde(default)]
    pub address: String,
    /// A short description of the browser ("Firefox on Linux").
    #[serde(default)]
    pub browser: String,
}

/// A user's active TOTP enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MfaRecord {
    /// The secret in its encrypted envelope.
    pub secret: Vec<u8>,
    pub enabled_ms: u64,
    pub last_used_ms: Option<u64>,
}

/// A secret shown on the setup page, waiting for its first right code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingEnrollment {
    pub secret: Vec<u8>,
    pub created_ms: u64,
}

/// A browser on which a user chose to skip the code step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub user: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// A short description of the browser, for the account page.
    pub label: String,
    pub credential: [u8; 8],
}

/// Which stored TOTP secret: an active enrollment or one waiting for its first code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Active,
    Pending,
}

/// One encrypted secret, as `rotate-key` walks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSecret {
    pub user: String,
    pub kind: SecretKind,
    pub envelope: Vec<u8>,
}

/// A registered security key or passkey (SPEC §10). Holds only public material: the
/// credential id, the public key and its flags (`credential`, the WebAuthn library's
/// own JSON form) and the signature counter; no private key ever reaches the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    /// The credential id the authenticator chose (unique across all users).
    pub id: Vec<u8>,
    pub user: String,
    /// The name the user gave it ("blue key", "phone").
    pub name: String,
    pub created_ms: u64,
    pub last_used_ms: Option<u64>,
    /// The last signature counter accepted (0: the authenticator keeps none).
    pub counter: u32,
    /// The public key credential as the WebAuthn library serialises it.
    pub credential: String,
}

/// How removing a key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRemoval {
    Removed,
    /// No such key of this user.
    NotFound,
    /// It is the user's last second factor (no TOTP, no other key) and one is required.
    LastFactor,
}

/// Why a store call failed. Any error means "refuse": callers fail closed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data unreadable: {0}")]
    Corrupt(String),
}

pub(crate) type StoreResult<T> = Result<T, StoreError>;

/// Everything the gateway keeps between requests.
#[async_trait]
pub(crate) trait Store: Send + Sync {
    /// Cheap reachability check for the health endpoint.
    async fn ping(&self) -> StoreResult<()>;

    async fn session_put(
        &self,
        id: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<()>;
    async fn session_get(&self, id: &Fingerprint) -> StoreResult<Option<SessionRecord>>;
    /// Records activity; called at most every few seconds per session.
    async fn session_touch(
        &self,
        id: &Fingerprint,
        last_seen_ms: u64,
        ttl_ms: u64,
    ) -> StoreResult<()>;
    /// Replaces session `old` by `new` (a new id at a privilege change) only if `old`
    /// has not ended: returns false, storing nothing, when a logout or a revoke got
    /// there first, so a sign-in step racing a revoke cannot bring the user back.
    async fn session_rotate(
        &self,
        old: &Fingerprint,
        new: &Fingerprint,
        rec: &SessionRecord,
        ttl_ms: u64,
    ) -> StoreResult<bool>;
    async fn session_delete(&self, id: &Fingerprint) -> StoreResult<()>;
    /// Ends every session of `user`; returns how many ended. Atomic against a
    /// concurrent [`Store::session_put`] or [`Store::session_rotate`]: a session whose
    /// store call completed before the revoke began never outlives it.
    async fn sessions_delete_user(&self, user: &str) -> StoreResult<u64>;
    /// Ends every session of `user` except `keep`, with the same atomicity (turning 2FA
    /// on ends the user's other sessions but not the one that just enrolled).
    async fn sessions_delete_others(&self, user: &str, keep: &Fingerprint) -> StoreResult<u64>;
    async fn sessions_count(&self) -> StoreResult<u64>;
    /// The sessions of `user` that have not expired by `now_ms`, with their ids'
    /// fingerprints, oldest first. Read from the per-user index, which expired sessions
    /// leave, so the answer stays as small as the user's live sessions.
    async fn sessions_list(
        &self,
        user: &str,
        now_ms: u64,
    ) -> StoreResult<Vec<(Fingerprint, SessionRecord)>>;

    async fn mfa_get(&self, user: &str) -> StoreResult<Option<MfaRecord>>;
    async fn pending_get(&self, user: &str) -> StoreResult<Option<PendingEnrollment>>;
    async fn pending_put(&self, user: &str, p: &PendingEnrollment) -> StoreResult<()>;
    /// Turns 2FA on with `rec` and the backup-code hashes, removing the pending secret.
    /// Returns false (and changes nothing) when 2FA is already on.
    async fn mfa_enable(
        &self,
        user: &str,
        rec: &MfaRecord,
        backup: &[Fingerprint],
    ) -> StoreResult<bool>;
    async fn mfa_mark_used(&self, user: &str, now_ms: u64) -> StoreResult<()>;
    /// Removes the secret, pending secret, backup codes, remembered devices and keys.
    async fn mfa_remove(&self, user: &str) -> StoreResult<()>;
    /// Atomically accepts `step` if it is later than every step accepted before for
    /// `user`. Across instances, only one caller can win a step.
    async fn step_accept(&self, user: &str, step: u64) -> StoreResult<bool>;

    async fn backup_replace(&self, user: &str, hashes: &[Fingerprint]) -> StoreResult<()>;
    /// Atomically uses a backup code: `Some(remaining)` if it existed.
    async fn backup_consume(&self, user: &str, hash: &Fingerprint) -> StoreResult<Option<u32>>;
    async fn backup_count(&self, user: &str) -> StoreResult<u32>;

    async fn device_put(&self, token: &Fingerprint, rec: &DeviceRecord) -> StoreResult<()>;
    /// Atomically removes and returns the device record if it belongs to `user`.
    async fn device_take(
        &self,
        token: &Fingerprint,
        user: &str,
    ) -> StoreResult<Option<DeviceRecord>>;
    async fn devices_list(&self, user: &str) -> StoreResult<Vec<DeviceRecord>>;
    async fn devices_forget(&self, user: &str) -> StoreResult<u64>;
    /// As [`Store::devices_list`], with each device's token fingerprint, so that one
    /// device can be revoked ([`Store::device_take`]).
    async fn devices_entries(&self, user: &str) -> StoreResult<Vec<(Fingerprint, DeviceRecord)>>;

    /// Reserves one attempt at `step` of `key` before its secret is checked, in one
    /// atomic step across every instance: refuses while the step is locked or
    /// blocked, else counts the attempt as a failure in advance (imposing the lock
    /// when it reaches the limit): [`reserve`](super::lockout::LockRecord::reserve)
    /// applied atomically. Password-step records expire as
    /// [`LockPolicy::record_ttl_ms`] says. Any error means the attempt could not be
    /// counted: the caller refuses it unchecked (never a free guess).
    async fn lock_reserve(
        &self,
        key: &str,
        step: Step,
        now_ms: u64,
        policy: &LockPolicy,
    ) -> StoreResult<Reservation>;
    /// Clears the counter of `step` after a right answer.
    async fn lock_reset(&self, key: &str, step: Step) -> StoreResult<()>;
    /// Clears both steps (the `users unlock` command).
    async fn unlock(&self, key: &str) -> StoreResult<()>;

    /// Every stored TOTP secret (active and pending), for key rotation.
    async fn secrets_list(&self) -> StoreResult<Vec<StoredSecret>>;
    /// Replaces a secret's envelope only if it is still `old` (compare-and-set), so a
    /// rotation never overwrites a secret changed meanwhile.
    async fn secret_swap(
        &self,
        user: &str,
        kind: SecretKind,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;

    /// Drops expired sessions, devices, pending secrets and stale counters.
    async fn purge_expired(&self, now_ms: u64) -> StoreResult<()>;

    // --- Security keys and passkeys (SPEC §10) ---

    /// Registers a key; false (storing nothing) when its credential id is already
    /// registered, to this user or another.
    async fn key_add(&self, rec: &KeyRecord) -> StoreResult<bool>;
    /// The keys of `user`, oldest first.
    async fn keys_list(&self, user: &str) -> StoreResult<Vec<KeyRecord>>;
    /// The key with credential id `id`, whoever's it is (passwordless sign-in).
    async fn key_find(&self, id: &[u8]) -> StoreResult<Option<KeyRecord>>;
    /// Records a use of a key: sets its counter to `new` and its last use to `now_ms`
    /// only if the stored counter is still `seen` (compare-and-set). False when another
    /// sign-in moved it meanwhile (or the key is gone): the caller refuses, so one
    /// signature counter value is accepted once, across instances.
    async fn key_use(
        &self,
        user: &str,
        id: &[u8],
        seen: u32,
        new: u32,
        now_ms: u64,
    ) -> StoreResult<bool>;
    /// Renames a key of `user`; false when there is no such key.
    async fn key_rename(&self, user: &str, id: &[u8], name: &str) -> StoreResult<bool>;
    /// Removes a key of `user`. With `keep_a_factor`, refuses (atomically, against a
    /// concurrent removal) when nothing else would be left: no TOTP and no other key.
    async fn key_remove(
        &self,
        user: &str,
        id: &[u8],
        keep_a_factor: bool,
    ) -> StoreResult<KeyRemoval>;
    /// Keeps the server half of a WebAuthn ceremony (its challenge) until `expires_ms`.
    async fn ceremony_put(
        &self,
        handle: &Fingerprint,
        state: &[u8],
        expires_ms: u64,
    ) -> StoreResult<()>;
    /// Takes a ceremony's state out, once: a second take (a replay, another instance)
    /// finds nothing. Expired states are not returned.
    async fn ceremony_take(
        &self,
        handle: &Fingerprint,
        now_ms: u64,
    ) -> StoreResult<Option<Vec<u8>>>;
}
