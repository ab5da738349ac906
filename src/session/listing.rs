//! A user's own sessions and remembered browsers, as the account page and
//! `sessions list` show them, and revoking one of them by its handle.
//!
//! A handle is an HMAC of the stored fingerprint under a key derived from the
//! encryption key (purpose [`HANDLE_PURPOSE`]): opaque, stable while the key is, and
//! useless to anyone else — it is neither the session id nor its fingerprint, cannot be
//! turned back into either, and a revoke looks for it only among the requesting user's
//! own sessions, so a handle of another user's session matches nothing.

use crate::core::store::{DeviceRecord, Fingerprint, SessionRecord, StoreError};
use crate::core::tokens::{ct_eq, hmac};
use crate::core::user::User;

use super::Sessions;

/// The key-derivation purpose of session and device handles.
pub(crate) const HANDLE_PURPOSE: &str = "vestibule account handles v1";

/// What a handle names: the two kinds never share a handle.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Session,
    Device,
}

/// The handle of the stored fingerprint `fp` of kind `kind`: 128 bits, hex.
fn handle(key: &[u8; 32], kind: Kind, fp: &Fingerprint) -> String {
    let label: &[u8] = match kind {
        Kind::Session => b"session:",
        Kind::Device => b"device:",
    };
    let mut data = Vec::with_capacity(label.len() + fp.len());
    data.extend_from_slice(label);
    data.extend_from_slice(fp);
    data_encoding::HEXLOWER.encode(&hmac(key, &data)[..16])
}

/// One live session of the user.
#[derive(Debug, Clone)]
pub struct ListedSession {
    pub handle: String,
    pub record: SessionRecord,
    /// The session of the request that asked.
    pub current: bool,
}

/// One remembered browser of the user.
#[derive(Debug, Clone)]
pub struct ListedDevice {
    pub handle: String,
    pub record: DeviceRecord,
}

impl Sessions {
    /// `user`'s sessions still in force at `now_ms` (the user's own timeouts, the
    /// current password), oldest first; `current` marks the asking session.
    pub async fn list(
        &self,
        key: &[u8; 32],
        user: &User,
        current: Option<&Fingerprint>,
        now_ms: u64,
    ) -> Result<Vec<ListedSession>, StoreError> {
        Ok(self
            .live(user, now_ms)
            .await?
            .into_iter()
            .map(|(fp, record)| ListedSession {
                handle: handle(key, Kind::Session, &fp),
                current: current == Some(&fp),
                record,
            })
            .collect())
    }

    /// `user`'s sessions still in force at `now_ms` (the user's own timeouts, the
    /// current password), oldest first, with their fingerprints (never shown).
    pub async fn live(
        &self,
        user: &User,
        now_ms: u64,
    ) -> Result<Vec<(Fingerprint, SessionRecord)>, StoreError> {
        let limits = self.limits(user);
        let credential = user.credential_fingerprint();
        Ok(self
            .store
            .sessions_list(&user.username, now_ms)
            .await?
            .into_iter()
            .filter(|(_, r)| {
                r.credential == credential
                    && now_ms.saturating_sub(r.last_seen_ms) <= limits.idle_ms
                    && now_ms.saturating_sub(r.created_ms) <= limits.absolute_ms
            })
            .collect())
    }

    /// `user`'s remembered browsers still valid at `now_ms`.
    pub async fn devices(
        &self,
        key: &[u8; 32],
        user: &User,
        now_ms: u64,
    ) -> Result<Vec<ListedDevice>, StoreError> {
        let credential = user.credential_fingerprint();
        Ok(self
            .store
            .devices_entries(&user.username)
            .await?
            .into_iter()
            .filter(|(_, d)| d.expires_ms > now_ms && d.credential == credential)
            .map(|(fp, record)| ListedDevice {
                handle: handle(key, Kind::Device, &fp),
                record,
            })
            .collect())
    }

    /// Ends the session of `user` whose handle is `wanted`; false when none of the
    /// user's sessions has it (already ended, or not theirs).
    pub async fn revoke_handle(
        &self,
        key: &[u8; 32],
        user: &User,
        wanted: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let found = self
            .store
            .sessions_list(&user.username, now_ms)
            .await?
            .into_iter()
            .map(|(fp, _)| fp)
            .find(|fp| ct_eq(handle(key, Kind::Session, fp).as_bytes(), wanted.as_bytes()));
        match found {
            Some(fp) => {
                self.store.session_delete(&fp).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Forgets the remembered browser of `user` whose handle is `wanted`; false when
    /// the user has none with it.
    pub async fn forget_device_handle(
        &self,
        key: &[u8; 32],
        user: &User,
        wanted: &str,
    ) -> Result<bool, StoreError> {
        let found = self
            .store
            .devices_entries(&user.username)
            .await?
            .into_iter()
            .map(|(fp, _)| fp)
            .find(|fp| ct_eq(handle(key, Kind::Device, fp).as_bytes(), wanted.as_bytes()));
        match found {
            // Taken only if it is still this user's.
            Some(fp) => Ok(self.store.device_take(&fp, &user.username).await?.is_some()),
            None => Ok(false),
        }
    }

    /// Ends every session of `user` but `keep`; how many ended.
    pub async fn revoke_others(&self, user: &User, keep: &Fingerprint) -> Result<u64, StoreError> {
        self.store
            .sessions_delete_others(&user.username, keep)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_opaque_and_kind_separated() {
        let key = [9u8; 32];
        let fp = [1u8; 32];
        let h = handle(&key, Kind::Session, &fp);
        assert_eq!(h.len(), 32);
        assert_ne!(h, handle(&key, Kind::Device, &fp));
        assert_ne!(h, handle(&[8u8; 32], Kind::Session, &fp));
        assert!(!data_encoding::HEXLOWER.encode(&fp).contains(&h));
        assert_eq!(h, handle(&key, Kind::Session, &fp), "stable");
    }
}
