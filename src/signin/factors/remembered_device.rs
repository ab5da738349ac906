//! The remembered-browser factor: a single-use token from the remember-device cookie.
//! Taking it uses it up (atomically, and only for its own user); a right one is
//! replaced by a fresh token with the same expiry, so a copied cookie works once.
//! A token issued before the user's password changed no longer counts.

use async_trait::async_trait;

use super::{Factor, Proof, Verified};
use crate::core::auth_flow::SecondFactor;
use crate::core::store::{DeviceRecord, Store};
use crate::core::tokens::{fingerprint, looks_like_token, new_token};
use crate::core::user::User;
use crate::signin::SignInError;

/// The cookie to set after a remembered browser was used or a new one remembered.
#[derive(Debug)]
pub struct NewDevice {
    /// The token (the cookie's value; stored only as its fingerprint).
    pub token: String,
    /// Seconds until it expires (the cookie's max-age).
    pub max_age_secs: u64,
}

/// Remembered browsers of the user, in `store`.
pub struct RememberedDevice<'a> {
    pub store: &'a dyn Store,
}

#[async_trait]
impl Factor for RememberedDevice<'_> {
    fn kind(&self) -> SecondFactor {
        SecondFactor::RememberedDevice
    }

    fn recognises(&self, proof: &Proof<'_>) -> bool {
        matches!(proof, Proof::DeviceToken(t) if looks_like_token(t))
    }

    async fn verify(
        &self,
        user: &User,
        proof: &Proof<'_>,
        now_ms: u64,
    ) -> Result<Option<Verified>, SignInError> {
        let Proof::DeviceToken(token) = proof else {
            return Ok(None);
        };
        let Some(rec) = self
            .store
            .device_take(&fingerprint(token), &user.username)
            .await?
        else {
            return Ok(None);
        };
        if rec.expires_ms <= now_ms || rec.credential != user.credential_fingerprint() {
            return Ok(None);
        }
        let fresh = new_token();
        let next = DeviceRecord {
            created_ms: rec.created_ms,
            ..rec
        };
        self.store.device_put(&fingerprint(&fresh), &next).await?;
        Ok(Some(Verified {
            new_device: Some(NewDevice {
                token: fresh,
                max_age_secs: next.expires_ms.saturating_sub(now_ms) / 1000,
            }),
            ..Verified::plain(SecondFactor::RememberedDevice)
        }))
    }
}
