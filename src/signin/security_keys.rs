//! Security keys and passkeys (SPEC §10): the WebAuthn ceremonies, around the
//! `webauthn-rs` relying-party library (no CBOR, COSE or attestation parsing here).
//!
//! A ceremony has two halves: `…_start` makes the options the browser hands to the
//! authenticator and keeps the server half (the challenge) in the store under a random
//! handle for five minutes; `…_finish` takes that state out once (a replay finds
//! nothing) and checks the authenticator's answer. Sign-ins with a key go through the
//! code step's regulator like every second factor (counted, locked, audited, metered).
//!
//! `webauthn.user_verification` picks the library's ceremony: `required` → its passkey
//! ceremonies (user verification always), `preferred` → security-key ceremonies that
//! ask for it, `discouraged` → security keys with a touch only. Passwordless sign-in
//! always requires user verification: the key is then both factors.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::*;
use webauthn_rs_proto::ResidentKeyRequirement;

use super::{SignIn, SignInError};
use crate::audit::AuditEvent;
use crate::config::{UserVerification, WebauthnConfig};
use crate::core::store::{KeyRecord, KeyRemoval};
use crate::core::tokens::{fingerprint, looks_like_token, new_token};
use crate::core::user::User;

/// How long a ceremony may take, from options to answer.
const CEREMONY_MS: u64 = 5 * 60 * 1000;
/// Longest key name kept.
pub const KEY_NAME_MAX: usize = 64;

/// The relying party, built once from `[webauthn]`.
pub struct KeyEngine {
    pub(crate) rp: Webauthn,
    pub(crate) uv: UserVerification,
    pub passwordless: bool,
}

impl KeyEngine {
    /// The relying party of `cfg` (`None` when WebAuthn is off). Origins: `https://`
    /// the relying party id and its subdomains, any port; plus `http://localhost` for
    /// development, the one insecure origin browsers allow WebAuthn on.
    pub fn new(cfg: &WebauthnConfig) -> Result<Option<Self>, String> {
        if !cfg.enabled {
            return Ok(None);
        }
        let origin = Url::parse(&format!("https://{}", cfg.rp_id))
            .map_err(|e| format!("webauthn.rp_id: {e}"))?;
        let mut b = WebauthnBuilder::new(&cfg.rp_id, &origin)
            .map_err(|e| format!("webauthn.rp_id: {e}"))?
            .rp_name(&cfg.rp_name)
            .allow_subdomains(true)
            .allow_any_port(true)
            .danger_set_user_presence_only_security_keys(
                cfg.user_verification == UserVerification::Discouraged,
            );
        if cfg.rp_id == "localhost" {
            let local = Url::parse("http://localhost").map_err(|e| e.to_string())?;
            b = b.append_allowed_origin(&local);
        }
        let rp = b.build().map_err(|e| format!("webauthn: {e}"))?;
        Ok(Some(Self {
            rp,
            uv: cfg.user_verification,
            passwordless: cfg.passwordless,
        }))
    }
}

/// The server half of a ceremony, kept in the store between its two requests.
#[derive(Serialize, Deserialize)]
pub(crate) enum Ceremony {
    RegisterPasskey {
        user: String,
        name: String,
        state: PasskeyRegistration,
    },
    RegisterKey {
        user: String,
        name: String,
        state: SecurityKeyRegistration,
    },
    SignInPasskey {
        user: String,
        state: PasskeyAuthentication,
    },
    SignInKey {
        user: String,
        state: SecurityKeyAuthentication,
    },
    Passwordless {
        state: DiscoverableAuthentication,
    },
}

/// A started ceremony: the handle the browser sends back, and the options for
/// `navigator.credentials.create()` / `.get()` (the library's JSON).
#[derive(Debug, Serialize)]
pub struct Started {
    pub ceremony: String,
    pub options: serde_json::Value,
}

/// How a registration ended.
#[derive(Debug)]
pub enum Registered {
    /// The key is stored; `first`: it is the user's first second factor.
    Right { first: bool },
    /// The answer did not verify (or the ceremony expired, or the key is registered
    /// already): nothing stored.
    Wrong,
}

/// The WebAuthn user handle of `username`: stable, so a passkey made today still
/// names its user tomorrow, and not the name itself (authenticators show it apart).
pub(crate) fn user_handle(username: &str) -> Uuid {
    let digest = fingerprint(&format!("vestibule-webauthn-user\0{username}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(b)
}

/// A key name as kept: trimmed, control characters dropped, at most
/// [`KEY_NAME_MAX`] characters; empty becomes `fallback`.
pub fn clean_name(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(KEY_NAME_MAX)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        fallback.to_string()
    } else {
        cleaned.to_string()
    }
}

/// The library's credential of a stored key, with the store's counter.
pub(crate) fn credential_of(rec: &KeyRecord) -> Result<Credential, SignInError> {
    let mut cred: Credential = serde_json::from_str(&rec.credential)
        .map_err(|e| SignInError::Store(crate::core::store::StoreError::Corrupt(e.to_string())))?;
    cred.counter = rec.counter;
    Ok(cred)
}

impl SignIn {
    /// The relying party, or `KeysOff` when `[webauthn]` is not enabled.
    pub(crate) fn engine(&self) -> Result<&KeyEngine, SignInError> {
        self.keys_engine.as_ref().ok_or(SignInError::KeysOff)
    }

    /// Whether security keys are on.
    pub fn keys_enabled(&self) -> bool {
        self.keys_engine.is_some()
    }

    /// Whether "Sign in with a passkey" is offered.
    pub fn passwordless_enabled(&self) -> bool {
        self.keys_engine.as_ref().is_some_and(|e| e.passwordless)
    }

    /// The keys of `user`, oldest first.
    pub async fn keys_of(&self, user: &User) -> Result<Vec<KeyRecord>, SignInError> {
        Ok(self.store.keys_list(&user.username).await?)
    }

    /// Whether `user` has a second factor: TOTP or at least one key.
    pub async fn has_second_factor(&self, user: &User) -> Result<bool, SignInError> {
        if self.store.mfa_get(&user.username).await?.is_some() {
            return Ok(true);
        }
        Ok(!self.store.keys_list(&user.username).await?.is_empty())
    }

    pub(crate) async fn keep(&self, c: &Ceremony) -> Result<String, SignInError> {
        let handle = new_token();
        let state = serde_json::to_vec(c).map_err(|e| SignInError::KeyCeremony(e.to_string()))?;
        self.store
            .ceremony_put(
                &fingerprint(&handle),
                &state,
                self.clock.now_ms() + CEREMONY_MS,
            )
            .await?;
        Ok(handle)
    }

    /// Takes a ceremony's state out of the store, once. `None`: unknown, expired, used.
    pub(crate) async fn take(&self, handle: &str) -> Result<Option<Ceremony>, SignInError> {
        if !looks_like_token(handle) {
            return Ok(None);
        }
        let Some(raw) = self
            .store
            .ceremony_take(&fingerprint(handle), self.clock.now_ms())
            .await?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&raw).ok())
    }

    /// Starts registering a key named `name` for `user` (at enrollment or from the
    /// account page). Keys the user has are excluded, so one authenticator is not
    /// registered twice.
    pub async fn key_register_start(
        &self,
        user: &User,
        name: &str,
    ) -> Result<Started, SignInError> {
        let engine = self.engine()?;
        let exclude: Vec<CredentialID> = self
            .store
            .keys_list(&user.username)
            .await?
            .into_iter()
            .map(|k| CredentialID::from(k.id))
            .collect();
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let handle = user_handle(&user.username);
        let display = if user.display_name.is_empty() {
            &user.username
        } else {
            &user.display_name
        };
        let bad = |e: WebauthnError| SignInError::KeyCeremony(e.to_string());
        let (mut options, ceremony) = if engine.uv == UserVerification::Required {
            let (o, state) = engine
                .rp
                .start_passkey_registration(handle, &user.username, display, exclude)
                .map_err(bad)?;
            let c = Ceremony::RegisterPasskey {
                user: user.username.clone(),
                name: name.to_string(),
                state,
            };
            (o, c)
        } else {
            let (o, state) = engine
                .rp
                .start_securitykey_registration(
                    handle,
                    &user.username,
                    display,
                    exclude,
                    None,
                    None,
                )
                .map_err(bad)?;
            let c = Ceremony::RegisterKey {
                user: user.username.clone(),
                name: name.to_string(),
                state,
            };
            (o, c)
        };
        if engine.uv != UserVerification::Required
            && let Some(ext) = options.public_key.extensions.as_mut()
        {
            // The library asks security keys for the "user verification required"
            // credential protection while verification is only preferred; Chromium
            // refuses that pair ("protection policy is inconsistent"). It was never
            // enforced (a hint), so it is not sent.
            ext.cred_protect = None;
        }
        if engine.passwordless {
            // Ask for a discoverable credential, so the key can later be the whole
            // sign-in. A hint to the authenticator; nothing is enforced by it.
            if let Some(sel) = options.public_key.authenticator_selection.as_mut() {
                sel.resident_key = Some(ResidentKeyRequirement::Preferred);
            }
        }
        let ceremony_handle = self.keep(&ceremony).await?;
        Ok(Started {
            ceremony: ceremony_handle,
            options: serde_json::to_value(&options)
                .map_err(|e| SignInError::KeyCeremony(e.to_string()))?,
        })
    }

    /// Finishes a registration of `user` with the browser's `answer`.
    pub async fn key_register_finish(
        &self,
        user: &User,
        handle: &str,
        answer: &RegisterPublicKeyCredential,
        ip: IpAddr,
    ) -> Result<Registered, SignInError> {
        let engine = self.engine()?;
        let fail = |reason: &'static str| {
            self.audit(
                &user.username,
                ip,
                &AuditEvent::WebauthnFailure { reason, key: None },
            );
            Ok(Registered::Wrong)
        };
        let (name, cred) = match self.take(handle).await? {
            Some(Ceremony::RegisterPasskey {
                user: u,
                name,
                state,
            }) if u == user.username => match engine.rp.finish_passkey_registration(answer, &state)
            {
                Ok(pk) => (name, Credential::from(pk)),
                Err(_) => return fail("signature"),
            },
            Some(Ceremony::RegisterKey {
                user: u,
                name,
                state,
            }) if u == user.username => {
                match engine.rp.finish_securitykey_registration(answer, &state) {
                    Ok(sk) => (name, Credential::from(sk)),
                    Err(_) => return fail("signature"),
                }
            }
            _ => return fail("expired"),
        };
        let first = !self.has_second_factor(user).await?;
        let now = self.clock.now_ms();
        let rec = KeyRecord {
            id: cred.cred_id.to_vec(),
            user: user.username.clone(),
            name,
            created_ms: now,
            last_used_ms: None,
            counter: cred.counter,
            credential: serde_json::to_string(&cred)
                .map_err(|e| SignInError::KeyCeremony(e.to_string()))?,
        };
        if !self.store.key_add(&rec).await? {
            // Registered before (to this user or another): the library's check that a
            // credential id is never bound to two accounts.
            return fail("duplicate");
        }
        self.audit(
            &user.username,
            ip,
            &AuditEvent::WebauthnRegistered { key: &rec.name },
        );
        Ok(Registered::Right { first })
    }

    /// Renames a key of `user`; false when there is no such key.
    pub async fn key_rename(
        &self,
        user: &User,
        id: &[u8],
        name: &str,
    ) -> Result<bool, SignInError> {
        Ok(self.store.key_rename(&user.username, id, name).await?)
    }

    /// Removes a key of `user`, never the last second factor of a user whose role
    /// requires one.
    pub async fn key_remove(
        &self,
        user: &User,
        id: &[u8],
        ip: IpAddr,
    ) -> Result<KeyRemoval, SignInError> {
        let name = self
            .store
            .keys_list(&user.username)
            .await?
            .into_iter()
            .find(|k| k.id == id)
            .map(|k| k.name);
        let outcome = self
            .store
            .key_remove(&user.username, id, self.requires_2fa(user))
            .await?;
        if outcome == KeyRemoval::Removed {
            self.audit(
                &user.username,
                ip,
                &AuditEvent::WebauthnRemoved {
                    key: name.as_deref().unwrap_or("-"),
                },
            );
        }
        Ok(outcome)
    }
}
