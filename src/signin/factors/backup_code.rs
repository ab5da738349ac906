//! The backup-code factor: single-use codes, stored only as HMACs under a key derived
//! from the encryption key. Every key in the ring is tried, so codes made before a key
//! rotation keep working until the old key is dropped.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Factor, Proof, Verified};
use crate::core::auth_flow::SecondFactor;
use crate::core::backup_codes;
use crate::core::store::Store;
use crate::core::totp::{TotpSettings, normalise_input};
use crate::core::user::User;
use crate::keys::{BACKUP_CODES_PURPOSE, Keyring};
use crate::signin::SignInError;

/// Backup codes of the user, checked under every key of `keys`.
pub struct BackupCode<'a> {
    /// To tell a backup code from a TOTP code by its shape.
    pub totp: &'a TotpSettings,
    pub keys: Arc<Keyring>,
    pub store: &'a dyn Store,
}

#[async_trait]
impl Factor for BackupCode<'_> {
    fn kind(&self) -> SecondFactor {
        SecondFactor::BackupCode
    }

    fn recognises(&self, proof: &Proof<'_>) -> bool {
        matches!(proof, Proof::Typed(t) if !super::totp::looks_like_code(self.totp, t))
    }

    async fn verify(
        &self,
        user: &User,
        proof: &Proof<'_>,
        _now_ms: u64,
    ) -> Result<Option<Verified>, SignInError> {
        let Proof::Typed(typed) = proof else {
            return Ok(None);
        };
        let Some(norm) = backup_codes::normalise(&normalise_input(typed)) else {
            return Ok(None);
        };
        for key in &self.keys.derive_all(BACKUP_CODES_PURPOSE) {
            let h = backup_codes::hash(key, &user.username, &norm);
            if let Some(left) = self.store.backup_consume(&user.username, &h).await? {
                return Ok(Some(Verified {
                    backup_left: Some(left),
                    ..Verified::plain(SecondFactor::BackupCode)
                }));
            }
        }
        Ok(None)
    }
}
