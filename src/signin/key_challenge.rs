//! A sign-in with a security key as the second factor (SPEC §10): the challenge's
//! options for the user's keys, and the answer checked by the [`KeyFactor`] through the
//! code step's regulator — counted, locked, audited and metered like a typed code.

use std::net::IpAddr;

use webauthn_rs::prelude::*;

use super::factors::{Proof, SecurityKey as KeyFactor};
use super::security_keys::{Ceremony, Started, credential_of};
use super::{SignIn, SignInError};
use crate::audit::AuditEvent;
use crate::config::UserVerification;
use crate::core::user::User;

impl SignIn {
    /// Starts a sign-in with one of `user`'s keys. `None` when the user has none.
    pub async fn key_challenge_start(&self, user: &User) -> Result<Option<Started>, SignInError> {
        let engine = self.engine()?;
        let keys = self.store.keys_list(&user.username).await?;
        if keys.is_empty() {
            return Ok(None);
        }
        let creds = keys
            .iter()
            .map(credential_of)
            .collect::<Result<Vec<_>, _>>()?;
        let bad = |e: WebauthnError| SignInError::KeyCeremony(e.to_string());
        let (options, ceremony) = if engine.uv == UserVerification::Required {
            let pks: Vec<Passkey> = creds.into_iter().map(Passkey::from).collect();
            let (o, state) = engine.rp.start_passkey_authentication(&pks).map_err(bad)?;
            let c = Ceremony::SignInPasskey {
                user: user.username.clone(),
                state,
            };
            (o, c)
        } else {
            let sks: Vec<webauthn_rs::prelude::SecurityKey> = creds
                .into_iter()
                .map(webauthn_rs::prelude::SecurityKey::from)
                .collect();
            let (o, state) = engine
                .rp
                .start_securitykey_authentication(&sks)
                .map_err(bad)?;
            let c = Ceremony::SignInKey {
                user: user.username.clone(),
                state,
            };
            (o, c)
        };
        let handle = self.keep(&ceremony).await?;
        Ok(Some(Started {
            ceremony: handle,
            options: serde_json::to_value(&options)
                .map_err(|e| SignInError::KeyCeremony(e.to_string()))?,
        }))
    }

    /// The challenge answered with a key: regulated, audited and counted like a code.
    pub async fn key_challenge_finish(
        &self,
        user: &User,
        handle: &str,
        answer: &PublicKeyCredential,
        ip: IpAddr,
    ) -> Result<super::code_step::Challenged, SignInError> {
        use super::code_step::Challenged;
        let engine = self.engine()?;
        let factor = KeyFactor {
            engine,
            signin: self,
            ip,
        };
        let proof = Proof::Assertion {
            ceremony: handle,
            answer,
        };
        let Some(verified) = self
            .code_attempt(
                user,
                proof,
                &[&factor],
                crate::audit::CodeContext::Challenge,
                ip,
            )
            .await?
        else {
            return Ok(Challenged::Wrong);
        };
        self.audit(
            &user.username,
            ip,
            &AuditEvent::ChallengeSuccess {
                method: verified.factor,
            },
        );
        Ok(Challenged::Right(verified))
    }
}
