//! The signed identity assertion (SPEC §13): with `headers.assertion` set, every
//! forwarded authenticated request carries a short-lived JWT (ES256 or EdDSA) that the
//! app can verify against `P/jwks.json`. An app that checks it no longer trusts
//! `Remote-User` blindly: a request that reached its port without passing the gateway
//! (a firewall mistake, another host on the VLAN) has no valid token.
//!
//! Signing costs tens of microseconds, far more than the rest of an authenticated
//! request, so a token is signed once per session, app and factor and then reused
//! until [`REFRESH_AFTER`] of its [`TOKEN_LIFETIME`] has passed: the hot path pays one
//! map lookup. A session rotated at a privilege change has a new id and so a new token;
//! a users-file reload (roles, name) or a new signing key re-signs at the next request.

mod keys;
mod ring_provider;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use jsonwebtoken::Header;
use serde::Serialize;

use crate::core::auth_flow::{SecondFactor, mfa_label};
use crate::core::store::Fingerprint;
use crate::core::user::User;

pub use keys::KeyError;
pub(crate) use keys::check as check_key_file;

/// How long a token is valid (SPEC §13: at most five minutes).
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// When a cached token is replaced: an app always receives one valid for at least a minute.
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(240);
/// The `iss` claim.
pub(crate) const ISSUER: &str = "vestibule";
/// Sessions remembered at once; beyond it the cache starts again (tokens are cheap to redo).
const CACHE_MAX: usize = 50_000;

/// The claims of one assertion.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    name: &'a str,
    email: &'a str,
    groups: &'a [String],
    amr: &'static [&'static str],
    /// The `Remote-MFA` value, for apps that want the exact method.
    mfa: &'static str,
    iat: u64,
    exp: u64,
}

/// Authentication methods (RFC 8176) proven for a session with `factor`.
fn amr(factor: Option<SecondFactor>) -> &'static [&'static str] {
    match factor {
        None => &["pwd"],
        Some(SecondFactor::Totp | SecondFactor::BackupCode) => &["pwd", "otp"],
        // A browser remembered after an earlier code: not a fresh proof.
        Some(SecondFactor::RememberedDevice) => &["pwd", "device"],
        // RFC 8176 "hwk": proof of possession of a hardware-secured key.
        Some(SecondFactor::Webauthn) => &["pwd", "hwk"],
        // No password: a hardware-bound key unlocked by PIN or biometric (two factors).
        Some(SecondFactor::Passkey) => &["hwk", "mfa"],
    }
}

/// A token ready to reuse for one session and app.
struct Cached {
    aud: Box<str>,
    kid: Arc<keys::SigningKey>,
    user: Arc<User>,
    factor: Option<SecondFactor>,
    token: HeaderValue,
    refresh_at_ms: u64,
}

/// Why an assertion could not be made; the request is then refused (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the identity assertion: {0}")]
pub struct SignError(String);

/// Signing keys plus the per-session token cache.
pub struct Assertions {
    keys: keys::KeysHandle,
    cache: Mutex<HashMap<Fingerprint, Vec<Cached>>>,
}

impl Assertions {
    /// Loads the key file.
    pub fn load(key_file: &std::path::Path) -> Result<Self, KeyError> {
        Ok(Self {
            keys: keys::KeysHandle::load(key_file)?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The JWK set served at `P/jwks.json`.
    pub fn jwks(&self) -> bytes::Bytes {
        self.keys.get().jwks.clone()
    }

    /// Re-reads the key file when it changed (called from the maintenance loop).
    pub fn reload_if_changed(&self) {
        self.keys.reload_if_changed();
    }

    /// The assertion for `session` at app `aud`: from the cache, or signed now.
    pub fn header_for(
        &self,
        session: &Fingerprint,
        aud: &str,
        user: &Arc<User>,
        factor: Option<SecondFactor>,
        now_ms: u64,
    ) -> Result<HeaderValue, SignError> {
        let signing = self.keys.get().signing.clone();
        if let Ok(cache) = self.cache.lock()
            && let Some(hit) = cache.get(session).and_then(|entries| {
                entries.iter().find(|c| {
                    &*c.aud == aud
                        && c.factor == factor
                        && now_ms < c.refresh_at_ms
                        && Arc::ptr_eq(&c.kid, &signing)
                        && Arc::ptr_eq(&c.user, user)
                })
            })
        {
            return Ok(hit.token.clone());
        }
        let token = sign(&signing, aud, user, factor, now_ms)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            let entries = cache.entry(*session).or_default();
            entries.retain(|c| &*c.aud != aud);
            entries.push(Cached {
                aud: aud.into(),
                kid: signing,
                user: user.clone(),
                factor,
                token: token.clone(),
                refresh_at_ms: now_ms + REFRESH_AFTER.as_millis() as u64,
            });
        }
        Ok(token)
    }

    /// How many sessions have a cached token.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// Signs one token.
fn sign(
    key: &keys::SigningKey,
    aud: &str,
    user: &User,
    factor: Option<SecondFactor>,
    now_ms: u64,
) -> Result<HeaderValue, SignError> {
    let iat = now_ms / 1000;
    let claims = Claims {
        iss: ISSUER,
        aud,
        sub: &user.username,
        name: &user.display_name,
        email: &user.email,
        groups: &user.roles,
        amr: amr(factor),
        mfa: mfa_label(factor),
        iat,
        exp: iat + TOKEN_LIFETIME.as_secs(),
    };
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
        .map_err(|e| SignError(e.to_string()))?;
    HeaderValue::from_str(&token).map_err(|e| SignError(e.to_string()))
}

/// Which algorithm `gen-signing-key` makes a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256 with SHA-256: what every JWT library verifies.
    Es256,
    /// Ed25519.
    EdDsa,
}

/// A new private key as a PKCS#8 PEM block (the `gen-signing-key` output).
pub fn generate_key_pem(kind: KeyKind) -> Result<String, SignError> {
    let alg = match kind {
        KeyKind::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::EdDsa => &rcgen::PKCS_ED25519,
    };
    rcgen::KeyPair::generate_for(alg)
        .map(|k| k.serialize_pem())
        .map_err(|e| SignError(e.to_string()))
}

#[cfg(test)]
mod tests;
