//! What a signed-in user can change about their own second factor: new backup codes,
//! forgetting remembered browsers, turning 2FA off. The page confirms with a code
//! first ([`SignIn::confirm_code`]) where the action needs one.

use std::net::IpAddr;

use super::{SignIn, SignInError};
use crate::audit::AuditEvent;
use crate::core::backup_codes;
use crate::core::user::User;
use crate::keys::BACKUP_CODES_PURPOSE;

impl SignIn {
    /// New backup codes: the plaintexts (shown once) and their stored hashes.
    pub(super) fn new_backup_codes(&self, user: &User) -> (Vec<String>, Vec<[u8; 32]>) {
        let codes = backup_codes::generate(self.settings.backup_codes);
        let key = self.keys.get().derive(BACKUP_CODES_PURPOSE);
        let hashes = codes
            .iter()
            .filter_map(|c| backup_codes::normalise(c))
            .map(|n| backup_codes::hash(&key, &user.username, &n))
            .collect();
        (codes, hashes)
    }

    /// Replaces the user's backup codes; returns the new ones to show once.
    pub async fn regenerate_codes(
        &self,
        user: &User,
        ip: IpAddr,
    ) -> Result<Vec<String>, SignInError> {
        let (codes, hashes) = self.new_backup_codes(user);
        self.store.backup_replace(&user.username, &hashes).await?;
        self.audit(
            &user.username,
            ip,
            &AuditEvent::BackupCodesRegenerated { count: codes.len() },
        );
        Ok(codes)
    }

    /// Forgets every remembered browser of the user.
    pub async fn forget_devices(&self, user: &User, ip: IpAddr) -> Result<(), SignInError> {
        let count = self.store.devices_forget(&user.username).await?;
        self.audit(
            &user.username,
            ip,
            &AuditEvent::DevicesForgotten {
                count,
                by_admin: false,
                reason: None,
            },
        );
        Ok(())
    }

    /// Turns the user's 2FA off (secret, backup codes, remembered browsers). The caller
    /// checked that no role requires it and that a current code confirmed it.
    pub async fn disable_2fa(&self, user: &User, ip: IpAddr) -> Result<(), SignInError> {
        self.store.mfa_remove(&user.username).await?;
        self.audit(&user.username, ip, &AuditEvent::MfaDisabledByUser);
        Ok(())
    }
}
