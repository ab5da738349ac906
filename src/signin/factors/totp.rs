//! The TOTP factor: a code of the configured length, checked against one secret (the
//! active one at the challenge and on the account page, the pending one during
//! enrollment); each time step is accepted at most once per user, across instances.

use async_trait::async_trait;

use super::{Factor, Proof, Verified};
use crate::core::auth_flow::SecondFactor;
use crate::core::store::Store;
use crate::core::totp::{self, TotpSettings};
use crate::core::user::User;
use crate::signin::SignInError;

/// TOTP against one decrypted secret.
pub struct Totp<'a> {
    pub settings: &'a TotpSettings,
    pub secret: &'a [u8],
    pub store: &'a dyn Store,
}

/// Whether typed text is shaped like a TOTP code: exactly `digits` digits once the
/// spaces and dashes people type are dropped. Anything else may be a backup code
/// (which can, rarely, be all digits too: then it is read as a TOTP code).
pub fn looks_like_code(settings: &TotpSettings, typed: &str) -> bool {
    let code = totp::normalise_input(typed);
    code.len() == settings.digits as usize && code.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl Factor for Totp<'_> {
    fn kind(&self) -> SecondFactor {
        SecondFactor::Totp
    }

    fn recognises(&self, proof: &Proof<'_>) -> bool {
        matches!(proof, Proof::Typed(t) if looks_like_code(self.settings, t))
    }

    async fn verify(
        &self,
        user: &User,
        proof: &Proof<'_>,
        now_ms: u64,
    ) -> Result<Option<Verified>, SignInError> {
        let Proof::Typed(typed) = proof else {
            return Ok(None);
        };
        let code = totp::normalise_input(typed);
        let Some(step) = totp::verify(self.settings, self.secret, &code, now_ms / 1000) else {
            return Ok(None);
        };
        if !self.store.step_accept(&user.username, step).await? {
            return Ok(None);
        }
        Ok(Some(Verified::plain(SecondFactor::Totp)))
    }
}
