//! Secrets at rest: AES-256-GCM envelopes with a random 96-bit nonce and a key id so
//! keys can be rotated.
//!
//! Envelope: `version | key id (8 bytes) | nonce (12) | ciphertext+tag`. Version 2 (what
//! [`Keyring::seal`] writes) binds, as associated data, the envelope's kind (an active
//! secret or one waiting for enrollment), its key id and the username: an envelope
//! copied to another user's row, moved from the pending slot to the active one, or
//! relabelled with another key id does not decrypt. Version 1 envelopes (the username
//! alone as associated data) still open, so stores written before keep working;
//! `rotate-key` rewrites them as version 2.

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::core::store::SecretKind;
use crate::core::tokens::{hmac, random_bytes};

/// The envelope version written today.
const VERSION: u8 = 2;
/// Envelopes of the first release: the username alone as associated data.
const LEGACY_VERSION: u8 = 1;
/// Domain separation for version-2 associated data.
const AAD_LABEL: &[u8] = b"vestibule secret v2\0";
/// Environment variable that may hold the key instead of a file.
pub(crate) const KEY_ENV: &str = "VESTIBULE_ENCRYPTION_KEY";

/// Why the key material or an envelope is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "no encryption key: set storage.encryption_key_file or the environment variable {KEY_ENV} (create one with `vestibule gen-key`)"
    )]
    NoKey,
    #[error("cannot read the encryption key file {0}: {1}")]
    Unreadable(String, String),
    #[error(
        "the encryption key must be 32 bytes, base64-encoded (as printed by `vestibule gen-key`)"
    )]
    Malformed,
    #[error("stored secret cannot be decrypted with any configured key")]
    Decrypt,
}

struct KeyEntry {
    id: [u8; 8],
    cipher: Aes256Gcm,
    raw: Zeroizing<[u8; 32]>,
}

/// The configured keys; the first encrypts, all decrypt.
pub struct Keyring {
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

/// Purpose string of the backup-code hashing keys.
pub(crate) const BACKUP_CODES_PURPOSE: &str = "vestibule backup codes v1";

/// A new random key, base64 (the `gen-key` output).
pub fn generate_key() -> String {
    STANDARD.encode(random_bytes::<32>())
}

impl Keyring {
    /// Loads keys from `file` or, when no file is configured, the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, CryptoError> {
        let text = match file {
            Some(p) if p.exists() => Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| CryptoError::Unreadable(p.display().to_string(), e.to_string()))?,
            ),
            Some(p) => match std::env::var(KEY_ENV) {
                Ok(v) if !v.trim().is_empty() => Zeroizing::new(v),
                _ => {
                    return Err(CryptoError::Unreadable(
                        p.display().to_string(),
                        "no such file".into(),
                    ));
                }
            },
            None => match std::env::var(KEY_ENV) {
                Ok(v) if !v.trim().is_empty() => Zeroizing::new(v),
                _ => return Err(CryptoError::NoKey),
            },
        };
        Self::parse(&text)
    }

    /// Parses one base64 key per line (`#` comments allowed); the first line is primary.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut keys = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let bytes = Zeroizing::new(STANDARD.decode(line).map_err(|_| CryptoError::Malformed)?);
            let raw: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Malformed)?;
            keys.push(Self::entry(raw));
        }
        if keys.is_empty() {
            return Err(CryptoError::Malformed);
        }
        Ok(Self { keys })
    }

    fn entry(raw: [u8; 32]) -> KeyEntry {
        let digest = Sha256::digest(raw);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyEntry {
            id,
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(raw)),
            raw: Zeroizing::new(raw),
        }
    }

    fn primary(&self) -> &KeyEntry {
        &self.keys[0]
    }

    /// Encrypts `plain` for `user`'s secret of `kind`.
    pub fn seal(&self, user: &str, kind: SecretKind, plain: &[u8]) -> Vec<u8> {
        let k = self.primary();
        let nonce_bytes = random_bytes::<12>();
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce_bytes);
        let ct = k
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &associated_data(user, kind, &k.id),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 8 + 12 + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts an envelope made by [`Keyring::seal`] for the same `user` and `kind`.
    pub fn open(
        &self,
        user: &str,
        kind: SecretKind,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if envelope.len() < 1 + 8 + 12 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (id, rest) = envelope[1..].split_at(8);
        let (nonce, ct) = rest.split_at(12);
        let k = self.key(id).ok_or(CryptoError::Decrypt)?;
        let aad = match envelope[0] {
            VERSION => associated_data(user, kind, &k.id),
            LEGACY_VERSION => user.as_bytes().to_vec(),
            _ => return Err(CryptoError::Decrypt),
        };
        let nonce =
            aes_gcm::aead::Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CryptoError::Decrypt)?;
        k.cipher
            .decrypt(&nonce, Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// The configured key with this id.
    fn key(&self, id: &[u8]) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Whether the key `envelope` names is one of ours (else a newer key file may know it).
    fn knows_key_of(&self, envelope: &[u8]) -> bool {
        envelope.get(1..9).is_some_and(|id| self.key(id).is_some())
    }

    /// A key for one purpose (CSRF tokens, backup-code hashes), derived from the
    /// primary key so there is only one secret to keep.
    pub(crate) fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac(self.primary().raw.as_slice(), purpose.as_bytes())
    }

    /// Key ids (hex), primary first: what `rotate-key` lists.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| data_encoding::HEXLOWER.encode(&k.id))
            .collect()
    }

    /// The key id (hex) an envelope was sealed with.
    pub fn envelope_key_id(envelope: &[u8]) -> Option<String> {
        (envelope.len() > 9 && matches!(envelope[0], VERSION | LEGACY_VERSION))
            .then(|| data_encoding::HEXLOWER.encode(&envelope[1..9]))
    }

    /// True when `envelope` is current: today's version, sealed with the primary key
    /// (anything else is what `rotate-key` rewrites).
    pub fn is_primary(&self, envelope: &[u8]) -> bool {
        envelope.len() > 9 && envelope[0] == VERSION && envelope[1..9] == self.primary().id
    }

    /// The same purpose key under every configured key (for checking old hashes).
    pub(crate) fn derive_all(&self, purpose: &str) -> Vec<[u8; 32]> {
        self.keys
            .iter()
            .map(|k| hmac(k.raw.as_slice(), purpose.as_bytes()))
            .collect()
    }
}

/// Version-2 associated data: label, kind, key id, username.
fn associated_data(user: &str, kind: SecretKind, key_id: &[u8; 8]) -> Vec<u8> {
    let kind = match kind {
        SecretKind::Active => b'A',
        SecretKind::Pending => b'P',
    };
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 8 + user.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.push(kind);
    aad.extend_from_slice(key_id);
    aad.extend_from_slice(user.as_bytes());
    aad
}

/// The keyring in force, reloaded when the key file changes, so `rotate-key` works
/// while gateways run: they learn the new key before secrets are re-encrypted with it.
pub(crate) struct KeyringHandle {
    file: Option<std::path::PathBuf>,
    current: std::sync::RwLock<std::sync::Arc<Keyring>>,
    stamp: std::sync::Mutex<Option<std::time::SystemTime>>,
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl KeyringHandle {
    pub fn load(file: Option<&Path>) -> Result<Self, CryptoError> {
        let ring = Keyring::load(file)?;
        Ok(Self {
            file: file.map(Path::to_path_buf),
            stamp: std::sync::Mutex::new(file.and_then(modified)),
            current: std::sync::RwLock::new(std::sync::Arc::new(ring)),
        })
    }

    pub fn get(&self) -> std::sync::Arc<Keyring> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Decrypts with the keys in force. An envelope sealed under a key this gateway
    /// has not loaded yet (another instance or `rotate-key` wrote the key file a
    /// moment ago) triggers a reload of the key file and one more try, so a
    /// rotation never depends on the gateways' poll having run first.
    pub fn open(
        &self,
        user: &str,
        kind: SecretKind,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let ring = self.get();
        match ring.open(user, kind, envelope) {
            Err(CryptoError::Decrypt) if !ring.knows_key_of(envelope) => {
                self.reload_if_changed();
                self.get().open(user, kind, envelope)
            }
            other => other,
        }
    }

    /// Reloads the key file if it changed; a broken file keeps the old keys (logged)
    /// and is read again at the next call, so a file caught half-written is retried.
    pub fn reload_if_changed(&self) {
        let Some(file) = &self.file else { return };
        let now = modified(file);
        let Ok(mut stamp) = self.stamp.lock() else {
            return;
        };
        if *stamp == now {
            return;
        }
        match Keyring::load(Some(file)) {
            Ok(ring) => {
                *stamp = now;
                tracing::info!(keys = ?ring.ids(), "encryption keys reloaded");
                if let Ok(mut cur) = self.current.write() {
                    *cur = std::sync::Arc::new(ring);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "encryption key file not reloaded; the previous keys stay in force")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::parse(&generate_key()).unwrap()
    }

    use SecretKind::{Active, Pending};

    #[test]
    fn round_trips_and_binds_the_user() {
        let k = ring();
        let env = k.seal("doctor", Active, b"JBSWY3DPEHPK3PXP");
        assert_eq!(
            k.open("doctor", Active, &env).unwrap().as_slice(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert!(
            k.open("clerk", Active, &env).is_err(),
            "the username is associated data"
        );
        assert!(!env.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
    }

    #[test]
    fn nonces_differ_and_tampering_fails() {
        let k = ring();
        let a = k.seal("u", Active, b"secret");
        let b = k.seal("u", Active, b"secret");
        assert_ne!(a, b);
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open("u", Active, &bad).is_err());
    }

    #[test]
    fn old_keys_still_decrypt_after_rotation() {
        let old = generate_key();
        let k1 = Keyring::parse(&old).unwrap();
        let env = k1.seal("u", Active, b"s");
        let k2 = Keyring::parse(&format!("{}\n{}\n", generate_key(), old)).unwrap();
        assert_eq!(k2.open("u", Active, &env).unwrap().as_slice(), b"s");
        assert!(!k2.is_primary(&env));
    }

    #[test]
    fn the_kind_and_key_id_are_bound_too() {
        let k = ring();
        let pending = k.seal("u", Pending, b"s");
        assert!(
            k.open("u", Active, &pending).is_err(),
            "a pending secret moved to the active slot must not open"
        );
        assert_eq!(k.open("u", Pending, &pending).unwrap().as_slice(), b"s");
        // Relabel the envelope with another configured key's id: refused.
        let other = generate_key();
        let two = Keyring::parse(&format!("{}\n{}\n", other, generate_key())).unwrap();
        let mut env = two.seal("u", Active, b"s");
        let second_id = two.keys[1].id;
        env[1..9].copy_from_slice(&second_id);
        assert!(two.open("u", Active, &env).is_err());
    }

    #[test]
    fn first_release_envelopes_still_open_and_count_for_rotation() {
        let k = ring();
        // A version-1 envelope as the first release sealed it: the username as AAD.
        let key = &k.keys[0];
        let nonce_bytes = random_bytes::<12>();
        let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce_bytes);
        let ct = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: b"old",
                    aad: b"u",
                },
            )
            .unwrap();
        let mut env = vec![LEGACY_VERSION];
        env.extend_from_slice(&key.id);
        env.extend_from_slice(&nonce_bytes);
        env.extend_from_slice(&ct);
        assert_eq!(k.open("u", Active, &env).unwrap().as_slice(), b"old");
        assert!(k.open("v", Active, &env).is_err());
        assert!(!k.is_primary(&env), "rotate-key rewrites it as version 2");
        assert!(Keyring::envelope_key_id(&env).is_some());
    }

    #[test]
    fn a_handle_reloads_the_key_file_for_an_envelope_under_an_unknown_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("encryption.key");
        let old = generate_key();
        std::fs::write(&file, format!("{old}\n")).unwrap();
        let handle = KeyringHandle::load(Some(&file)).unwrap();
        // Another process rotates: a new primary in front of the old key …
        let new = generate_key();
        std::fs::write(&file, format!("{new}\n{old}\n")).unwrap();
        // … and seals a secret with it before this handle's poll has run.
        let env = Keyring::parse(&format!("{new}\n{old}\n"))
            .unwrap()
            .seal("u", Active, b"s");
        assert_eq!(handle.open("u", Active, &env).unwrap().as_slice(), b"s");
    }

    #[test]
    fn a_key_file_that_failed_to_load_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("encryption.key");
        let first = generate_key();
        std::fs::write(&file, format!("{first}\n")).unwrap();
        let handle = KeyringHandle::load(Some(&file)).unwrap();
        std::fs::write(&file, "half-written").unwrap();
        handle.reload_if_changed();
        assert_eq!(handle.get().ids().len(), 1, "the old keys stay in force");
        // The file is completed without its modification time changing (same second,
        // coarse file system clock): the next look must still read it.
        let stamp = modified(&file).unwrap();
        let second = generate_key();
        std::fs::write(&file, format!("{second}\n{first}\n")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
        handle.reload_if_changed();
        assert_eq!(handle.get().ids().len(), 2, "the completed file was loaded");
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(matches!(
            Keyring::parse("dG9vc2hvcnQ="),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(
            Keyring::parse("not base64 !!"),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(Keyring::parse(""), Err(CryptoError::Malformed)));
    }
}
