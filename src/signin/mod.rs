//! The sign-in service: the whole flow from password to complete session, with no HTTP
//! inside. The pages parse a form, call one method here and render what it returns;
//! the pipeline, the session API and the WebSocket session watch ask [`next_step`]
//! where a session stands.
//!
//! - [`next_step`]: the one decision (Login / Enroll / Challenge / Complete), pure.
//! - [`regulator`]: every attempt at a secret is reserved, checked and recorded in one
//!   call, atomically across instances (the lockout of SPEC §6).
//! - [`factors`]: TOTP, backup code, remembered browser behind one trait.
//! - [`password`], [`code_step`], [`account`]: the steps, each writing its typed audit
//!   events ([`crate::audit::AuditEvent`]) and metrics.
//!
//! Sessions and cookies stay with the caller: the service says which stage a session
//! reaches and which device token to hand out; the page issues or rotates the session.

pub mod account;
pub mod code_step;
pub mod factors;
pub mod key_challenge;
pub mod next_step;
pub mod password;
pub mod password_change;
pub mod passwordless;
pub mod regulator;
pub mod security_keys;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Audit, AuditEvent};
use crate::core::auth_flow::Stage;
use crate::core::clock::Clock;
use crate::core::lockout::{LockPolicy, LockState};
use crate::core::store::{SecretKind, Store, StoreError};
use crate::core::totp::TotpSettings;
use crate::core::user::{RolePolicy, User};
use crate::keys::KeyringHandle;
use crate::metrics::Metrics;
use crate::users::source::UserSource;

pub use next_step::Next;
use regulator::Regulator;

/// Why a sign-in step could not be answered as asked. Each becomes its response in
/// one place (`From<SignInError> for GatewayError`).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The store failed: refuse (fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The step is locked or blocked, or this attempt locked it.
    #[error("too many attempts")]
    Locked { retry_after_secs: u64 },
    /// The stored TOTP secret does not decrypt under any key in the ring.
    #[error("stored second factor cannot be decrypted")]
    SecretUnreadable,
    /// Every hashing thread is busy: try again shortly.
    #[error("password hashing busy")]
    HashingBusy,
    #[error("password hashing stopped: {0}")]
    HashingGone(String),
    /// A password change with users from a directory, which owns their passwords.
    #[error("passwords are managed by the directory")]
    PasswordElsewhere,
    /// A password change could not be written to (or reloaded from) the users file.
    #[error("the users file could not take the new password: {0}")]
    UsersFile(String),
    /// `[webauthn]` is not enabled.
    #[error("security keys are not enabled")]
    KeysOff,
    /// The WebAuthn library could not make or read a ceremony (not a wrong answer).
    #[error("security key ceremony failed: {0}")]
    KeyCeremony(String),
    /// No directory server answered (SPEC §11): 503, nothing guessed.
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
}

impl From<crate::users::source::SourceError> for SignInError {
    fn from(e: crate::users::source::SourceError) -> Self {
        use crate::users::source::SourceError as S;
        match e {
            S::HashingBusy => SignInError::HashingBusy,
            S::HashingGone(d) => SignInError::HashingGone(d),
            S::DirectoryUnavailable(d) => SignInError::DirectoryUnavailable(d),
        }
    }
}

/// What the sign-in flow is configured with (from `[totp]`, `[backup_codes]`,
/// `[remember_device]`, `[lockout]`).
pub struct Settings {
    pub totp: TotpSettings,
    pub backup_codes: usize,
    /// How long a remembered browser skips the code step; `None`: the feature is off.
    pub remember_for: Option<Duration>,
    pub lock_policy: LockPolicy,
    /// The WebAuthn relying party (`None`: `[webauthn]` is off).
    pub keys: Option<security_keys::KeyEngine>,
}

/// The sign-in service, built once by the wiring and shared by every request.
pub struct SignIn {
    store: Arc<dyn Store>,
    users: Arc<dyn UserSource>,
    password_file: Option<Arc<crate::users::source::FileSource>>,
    keys: Arc<KeyringHandle>,
    roles: RolePolicy,
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    regulator: Regulator,
    settings: Settings,
    keys_engine: Option<security_keys::KeyEngine>,
}

/// What the service is built from: the shared parts of the gateway.
pub struct Parts {
    pub store: Arc<dyn Store>,
    /// Where users and their passwords are checked: the users file (argon2 on the
    /// hash pool) or a directory.
    pub users: Arc<dyn UserSource>,
    /// The users file and its hash pool, when users come from it: what a password
    /// change writes (None with a directory, which owns its passwords).
    pub password_file: Option<Arc<crate::users::source::FileSource>>,
    pub keys: Arc<KeyringHandle>,
    pub roles: RolePolicy,
    pub audit: Arc<Audit>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
}

impl SignIn {
    /// Whether users change their password here (users file) rather than in the
    /// directory.
    pub fn password_changes_here(&self) -> bool {
        self.password_file.is_some()
    }

    /// The service over `parts`, configured by `settings`.
    pub fn new(parts: Parts, mut settings: Settings) -> Self {
        let keys_engine = settings.keys.take();
        let regulator = Regulator::new(
            parts.store.clone(),
            settings.lock_policy,
            parts.clock.clone(),
        );
        Self {
            store: parts.store,
            users: parts.users,
            password_file: parts.password_file,
            keys: parts.keys,
            roles: parts.roles,
            audit: parts.audit,
            metrics: parts.metrics,
            clock: parts.clock,
            regulator,
            settings,
            keys_engine,
        }
    }

    /// Whether `user`'s roles require a second factor.
    #[inline]
    pub fn requires_2fa(&self, user: &User) -> bool {
        self.roles.requires_2fa(&user.roles)
    }

    /// Where a session at `stage` of `user` (none: no session) goes next. Looks the
    /// user's 2FA up in the store only when the session is not complete.
    pub async fn next(&self, session: Option<(Stage, &User)>) -> Result<Next, StoreError> {
        let Some((stage, user)) = session else {
            return Ok(Next::Login);
        };
        let requires = self.requires_2fa(user);
        if let Some(factor) = next_step::completed(stage, requires) {
            return Ok(Next::Complete { factor });
        }
        let mfa_on = self.store.mfa_get(&user.username).await?.is_some()
            || !self.store.keys_list(&user.username).await?.is_empty();
        Ok(next_step::next_step(Some(stage), requires, || mfa_on))
    }

    /// Whether remembering a browser is offered.
    pub fn remember_enabled(&self) -> bool {
        self.settings.remember_for.is_some()
    }

    /// Writes `event` about `user` to the audit log.
    pub(crate) fn audit(&self, user: &str, ip: IpAddr, event: &AuditEvent<'_>) {
        self.audit.record(user, Some(ip), event);
    }

    /// Decrypts a stored TOTP secret; an envelope no key opens is logged (once, here)
    /// and refused.
    fn open_secret(
        &self,
        user: &User,
        kind: SecretKind,
        envelope: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, SignInError> {
        self.keys
            .open(&user.username, kind, envelope)
            .map_err(|e| {
                tracing::error!(user = %user.username, error = %e, "stored TOTP secret cannot be decrypted (wrong or lost encryption key?)");
                SignInError::SecretUnreadable
            })
    }
}

/// The 429 of a code step that is locked or blocked (`None` when open): a block lasts
/// until an administrator unlocks, so the longest lock is what a client should wait.
fn code_lock(state: LockState, p: &LockPolicy) -> Option<SignInError> {
    match state {
        LockState::Open => None,
        LockState::Locked { retry_after_ms } => Some(SignInError::Locked {
            retry_after_secs: retry_after_ms.div_ceil(1000),
        }),
        LockState::Blocked => Some(SignInError::Locked {
            retry_after_secs: p.max_duration_ms / 1000,
        }),
    }
}
