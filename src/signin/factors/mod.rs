//! Second factors behind one trait. Each factor says which proofs it answers (by their
//! shape alone, no secret looked at) and verifies one; the code step tries the factors
//! a context allows, in order, and gives the first that recognises the proof its say.
//! Adding a factor (a security key, say) is a new file here implementing [`Factor`],
//! a [`Proof`] variant for what the browser sends, and its place in the list the
//! service builds ([`super::SignIn`]'s `code_factors`): the pages' control flow does
//! not change (see docs/architecture.md, "Adding a factor").

mod backup_code;
mod remembered_device;
mod security_key;
mod totp;

pub use backup_code::BackupCode;
pub use remembered_device::{NewDevice, RememberedDevice};
pub use security_key::SecurityKey;
pub use totp::Totp;

use async_trait::async_trait;

use super::SignInError;
use crate::core::auth_flow::SecondFactor;
use crate::core::user::User;

/// What a person presents for a second factor.
#[derive(Clone, Copy)]
pub enum Proof<'a> {
    /// Text typed into the code field (a TOTP code or a backup code).
    Typed(&'a str),
    /// The token of the remember-device cookie.
    DeviceToken(&'a str),
    /// A security key's answer to the ceremony `ceremony` (its handle).
    Assertion {
        ceremony: &'a str,
        answer: &'a webauthn_rs::prelude::PublicKeyCredential,
    },
}

/// A verified second factor.
#[derive(Debug)]
pub struct Verified {
    pub factor: SecondFactor,
    /// Backup codes left, when a backup code was used.
    pub backup_left: Option<u32>,
    /// The replacement token, when a remembered browser was used (tokens are single-use).
    pub new_device: Option<NewDevice>,
}

impl Verified {
    /// A factor that leaves nothing behind.
    pub fn plain(factor: SecondFactor) -> Self {
        Self {
            factor,
            backup_left: None,
            new_device: None,
        }
    }
}

/// One kind of second factor.
#[async_trait]
pub trait Factor: Send + Sync {
    /// Which factor this is (the MFA header value and the metric label follow from it).
    fn kind(&self) -> SecondFactor;

    /// Whether `proof` has this factor's shape. Cheap; looks at no secret.
    fn recognises(&self, proof: &Proof<'_>) -> bool;

    /// Checks `proof` for `user` at `now_ms`: `Some` when right. A factor that uses a
    /// proof up (a backup code, a TOTP time step) does so atomically in the store.
    async fn verify(
        &self,
        user: &User,
        proof: &Proof<'_>,
        now_ms: u64,
    ) -> Result<Option<Verified>, SignInError>;
}
