//! Where users come from, behind one trait: the users file (SPEC §4) or a directory
//! (LDAP / Active Directory, SPEC §11). The sign-in service checks passwords and the
//! session layer finds a session's holder through it, never knowing which it is.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::core::user::User;
use crate::hash_pool::{HashPool, HashPoolError};
use crate::users::UsersHandle;

/// Why the password step refused a right-shaped attempt (for the audit event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    UnknownUser,
    WrongPassword,
    Disabled,
}

/// The answer of a password check.
#[derive(Debug)]
pub(crate) enum Checked {
    /// Right password of an enabled user.
    Right(Arc<User>),
    Wrong(Refusal),
}

/// Why a source could not answer (nothing is guessed: the caller refuses).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// Every hashing thread is busy.
    #[error("password hashing busy")]
    HashingBusy,
    #[error("password hashing stopped: {0}")]
    HashingGone(String),
    /// No directory server answered (SPEC §11: 503 "directory unavailable").
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
}

/// Who holds a session, as far as the source knows without I/O.
pub(crate) enum Holder {
    /// Enabled, with the same credential as when the session began.
    User(Arc<User>),
    /// No such user any more, disabled, or the credential changed: the session is void.
    Void,
    /// The source must be asked ([`UserSource::fetch_holder`]): a directory user this
    /// instance has not seen yet (another instance signed them in, or a restart).
    Ask,
    /// The directory could not be re-read at the last refresh: answer 503.
    Unavailable,
}

/// A source of users.
#[async_trait::async_trait]
pub(crate) trait UserSource: Send + Sync {
    /// The password step's check of `password` for `username` (as typed).
    async fn check_password(
        &self,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<Checked, SourceError>;

    /// The user named `name` as last known, without I/O (to name audit events).
    fn known(&self, name: &str) -> Option<Arc<User>>;

    /// The holder of a session (or remembered browser) of `name` issued under
    /// `credential`; no I/O, the hot path.
    fn holder(&self, name: &str, credential: &[u8; 8]) -> Holder;

    /// [`Holder::Ask`]'s slow path: reads the user from the source. `Ok(None)`: void.
    async fn fetch_holder(
        &self,
        name: &str,
        credential: &[u8; 8],
    ) -> Result<Option<Arc<User>>, SourceError>;

    /// How many users are known now (for the start-up log line).
    fn count(&self) -> usize;
}

/// The users file as a source: argon2 on the hash pool, unknown names checked against
/// the decoy hash so they cost the same.
pub(crate) struct FileSource {
    pub handle: Arc<UsersHandle>,
    pub hashing: Arc<HashPool>,
}

#[async_trait::async_trait]
impl UserSource for FileSource {
    async fn check_password(
        &self,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<Checked, SourceError> {
        let snapshot = self.handle.get();
        let user = snapshot.directory.find(username).cloned();
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| snapshot.decoy_hash.clone());
        let matches = self
            .hashing
            .verify(password, hash)
            .await
            .map_err(|e| match e {
                HashPoolError::Busy => SourceError::HashingBusy,
                HashPoolError::Gone | HashPoolError::Failed(_) => {
                    SourceError::HashingGone(e.to_string())
                }
            })?;
        Ok(match user {
            Some(u) if matches && !u.disabled => Checked::Right(u),
            None => Checked::Wrong(Refusal::UnknownUser),
            Some(u) if u.disabled => Checked::Wrong(Refusal::Disabled),
            Some(_) => Checked::Wrong(Refusal::WrongPassword),
        })
    }

    fn known(&self, name: &str) -> Option<Arc<User>> {
        self.handle.get().directory.find(name).cloned()
    }

    #[inline]
    fn holder(&self, name: &str, credential: &[u8; 8]) -> Holder {
        match self.handle.get().directory.holder(name, credential) {
            Some(u) => Holder::User(u.clone()),
            None => Holder::Void,
        }
    }

    async fn fetch_holder(
        &self,
        name: &str,
        credential: &[u8; 8],
    ) -> Result<Option<Arc<User>>, SourceError> {
        Ok(match self.holder(name, credential) {
            Holder::User(u) => Some(u),
            _ => None,
        })
    }

    fn count(&self) -> usize {
        self.handle.get().directory.len()
    }
}
