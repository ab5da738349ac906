//! The security-key factor (SPEC §10): an authenticator's signed answer to a challenge
//! this gateway issued (`signin::security_keys`). The ceremony's state is taken from
//! the store once; the library checks origin, relying party, challenge, signature,
//! user verification and that the signature counter went up; then the store moves the
//! counter by compare-and-set, so the same counter value is accepted once across
//! instances. A counter that goes backwards (a cloned key) is refused and audited.

use std::net::IpAddr;

use async_trait::async_trait;
use webauthn_rs::prelude::*;

use super::{Factor, Proof, Verified};
use crate::audit::AuditEvent;
use crate::core::auth_flow::SecondFactor;
use crate::core::user::User;
use crate::signin::security_keys::{Ceremony, KeyEngine, credential_of};
use crate::signin::{SignIn, SignInError};

/// A key of the user signing in, against one ceremony.
pub struct SecurityKey<'a> {
    pub engine: &'a KeyEngine,
    pub signin: &'a SignIn,
    pub ip: IpAddr,
}

/// Why an assertion was refused, for `mfa.webauthn.failure`.
fn reason(e: &WebauthnError) -> &'static str {
    match e {
        WebauthnError::CredentialPossibleCompromise => "counter_regressed",
        WebauthnError::CredentialNotFound => "unknown_key",
        _ => "signature",
    }
}

impl SecurityKey<'_> {
    fn fail(&self, user: &User, reason: &'static str, key: Option<&str>) -> Option<Verified> {
        self.signin.audit(
            &user.username,
            self.ip,
            &AuditEvent::WebauthnFailure { reason, key },
        );
        None
    }

    /// Verifies `answer` for `user` (second factor) or as the whole sign-in
    /// (`passwordless`), records the counter, and audits either way.
    pub(crate) async fn check(
        &self,
        user: &User,
        ceremony: Option<Ceremony>,
        answer: &PublicKeyCredential,
        now_ms: u64,
    ) -> Result<Option<Verified>, SignInError> {
        let store = &*self.signin.store;
        let keys = store.keys_list(&user.username).await?;
        let Some(rec) = keys
            .iter()
            .find(|k| k.id[..] == answer.get_credential_id()[..])
        else {
            return Ok(self.fail(user, "unknown_key", None));
        };
        let cred = credential_of(rec)?;
        let rp = &self.engine.rp;
        let (result, passwordless) = match ceremony {
            Some(Ceremony::SignInPasskey { user: u, state }) if u == user.username => {
                (rp.finish_passkey_authentication(answer, &state), false)
            }
            Some(Ceremony::SignInKey { user: u, state }) if u == user.username => {
                (rp.finish_securitykey_authentication(answer, &state), false)
            }
            Some(Ceremony::Passwordless { state }) => {
                let pk = Passkey::from(cred);
                let dk = DiscoverableKey::from(&pk);
                (
                    rp.finish_discoverable_authentication_v2(answer, state, &dk),
                    true,
                )
            }
            _ => return Ok(self.fail(user, "expired", Some(&rec.name))),
        };
        let result = match result {
            Ok(r) => r,
            Err(e) => return Ok(self.fail(user, reason(&e), Some(&rec.name))),
        };
        // The library accepted a counter above the stored one (or 0 for a key that
        // keeps none); only one sign-in may move it from the value it was checked against.
        if !store
            .key_use(
                &user.username,
                &rec.id,
                rec.counter,
                result.counter(),
                now_ms,
            )
            .await?
        {
            return Ok(self.fail(user, "counter_regressed", Some(&rec.name)));
        }
        self.signin.audit(
            &user.username,
            self.ip,
            &AuditEvent::WebauthnSuccess {
                key: &rec.name,
                passwordless,
            },
        );
        Ok(Some(Verified::plain(if passwordless {
            SecondFactor::Passkey
        } else {
            SecondFactor::Webauthn
        })))
    }
}

#[async_trait]
impl Factor for SecurityKey<'_> {
    fn kind(&self) -> SecondFactor {
        SecondFactor::Webauthn
    }

    fn recognises(&self, proof: &Proof<'_>) -> bool {
        matches!(proof, Proof::Assertion { .. })
    }

    async fn verify(
        &self,
        user: &User,
        proof: &Proof<'_>,
        now_ms: u64,
    ) -> Result<Option<Verified>, SignInError> {
        let Proof::Assertion { ceremony, answer } = proof else {
            return Ok(None);
        };
        let state = self.signin.take(ceremony).await?;
        self.check(user, state, answer, now_ms).await
    }
}
