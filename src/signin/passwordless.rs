//! Passwordless sign-in with a passkey (SPEC §10, `webauthn.passwordless = true`): a
//! discoverable credential with user verification is both factors. The browser does
//! not say who signs in; the credential id names the key, the store names its owner,
//! and the key's user handle must agree. The attempt is then regulated, audited and
//! counted on that user's code step like any second factor.

use std::net::IpAddr;
use std::sync::Arc;

use webauthn_rs::prelude::*;

use super::factors::{Proof, SecurityKey};
use super::security_keys::{Ceremony, Started, user_handle};
use super::{SignIn, SignInError};
use crate::audit::{AuditEvent, CodeContext};
use crate::core::user::User;

impl SignIn {
    /// Starts a passwordless sign-in: options that let the browser offer any passkey
    /// of this site. `KeysOff` unless `webauthn.passwordless` is on.
    pub async fn passwordless_start(&self) -> Result<Started, SignInError> {
        let engine = self.engine()?;
        if !engine.passwordless {
            return Err(SignInError::KeysOff);
        }
        let (mut options, state) = engine
            .rp
            .start_discoverable_authentication()
            .map_err(|e| SignInError::KeyCeremony(e.to_string()))?;
        // A button press asks for a passkey at once (a modal prompt), not the
        // autofill-style "conditional" mediation the library defaults to.
        options.mediation = None;
        let ceremony = self.keep(&Ceremony::Passwordless { state }).await?;
        Ok(Started {
            ceremony,
            options: serde_json::to_value(&options)
                .map_err(|e| SignInError::KeyCeremony(e.to_string()))?,
        })
    }

    /// Finishes a passwordless sign-in: the user it completes, or `None` (unknown key,
    /// disabled account, a user handle that does not match, a refused answer).
    pub async fn passwordless_finish(
        &self,
        handle: &str,
        answer: &PublicKeyCredential,
        ip: IpAddr,
    ) -> Result<Option<Arc<User>>, SignInError> {
        let engine = self.engine()?;
        if !engine.passwordless {
            return Err(SignInError::KeysOff);
        }
        let owner = self
            .store
            .key_find(answer.get_credential_id())
            .await?
            .and_then(|rec| self.users.known(&rec.user))
            .filter(|u| !u.disabled);
        let named = engine
            .rp
            .identify_discoverable_authentication(answer)
            .ok()
            .map(|(uuid, _)| uuid);
        let Some(user) = owner.filter(|u| named == Some(user_handle(&u.username))) else {
            // Use the ceremony up anyway: it was for this one answer.
            let _ = self.take(handle).await?;
            self.audit(
                "-",
                ip,
                &AuditEvent::WebauthnFailure {
                    reason: "unknown_key",
                    key: None,
                },
            );
            return Ok(None);
        };
        let factor = SecurityKey {
            engine,
            signin: self,
            ip,
        };
        let proof = Proof::Assertion {
            ceremony: handle,
            answer,
        };
        let verified = self
            .code_attempt(&user, proof, &[&factor], CodeContext::Challenge, ip)
            .await?;
        Ok(verified.map(|v| {
            self.audit(
                &user.username,
                ip,
                &AuditEvent::ChallengeSuccess { method: v.factor },
            );
            user
        }))
    }
}
