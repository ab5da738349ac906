//! The assertion signing keys: read from `headers.assertion_key_file` (one or more
//! PKCS#8 PEM private keys, P-256 for ES256 or Ed25519 for EdDSA; the first signs),
//! published as a JWK set, and reloaded when the file changes.
//!
//! Rotation without breaking apps: put the new key first and keep the old one in the
//! file — every listed key is published. A key that leaves the file stays published for
//! [`RETIRED_FOR`] (the longest life of a token it signed), so an app that fetched the
//! JWKS a moment ago can still verify the last tokens signed with it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use super::ring_provider;

/// How long a key that left the file is still published: a token's longest life.
pub(crate) const RETIRED_FOR: Duration = super::TOKEN_LIFETIME;

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {0}: {1}")]
    Unreadable(String, String),
    #[error(
        "{0} holds no PKCS#8 private key (\"BEGIN PRIVATE KEY\"); make one with `vestibule gen-signing-key`"
    )]
    NoKey(String),
    #[error("key {1} in {0} is neither a P-256 (ES256) nor an Ed25519 (EdDSA) key")]
    Unsupported(String, usize),
}

/// One private key with its algorithm, key id and public JWK.
pub(crate) struct SigningKey {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// Parses one PKCS#8 key, trying ES256 and then EdDSA.
    fn parse(der: &[u8]) -> Option<Self> {
        let (alg, public) = [Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .find_map(|alg| ring_provider::parse_private(alg, der).map(|k| (alg, k)))
            .map(|(alg, k)| (alg, k.public_key().to_vec()))?;
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        let (algorithm, encoding) = match alg {
            Algorithm::ES256 => (
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64(public.get(1..33)?),
                    y: b64(public.get(33..65)?),
                }),
                EncodingKey::from_ec_der(der),
            ),
            _ => (
                AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: b64(&public),
                }),
                EncodingKey::from_ed_der(der),
            ),
        };
        let mut jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(match alg {
                    Algorithm::ES256 => KeyAlgorithm::ES256,
                    _ => KeyAlgorithm::EdDSA,
                }),
                ..Default::default()
            },
            algorithm,
        };
        // RFC 7638 thumbprint as the key id: stable, and derived from the public key only.
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok()?;
        jwk.common.key_id = Some(kid.clone());
        Some(Self {
            alg,
            kid,
            encoding,
            jwk,
        })
    }
}

/// The keys in force: the first signs, all are published (with recently retired ones).
pub(crate) struct KeySet {
    pub(crate) signing: Arc<SigningKey>,
    /// The JWK set as served at `P/jwks.json`.
    pub(crate) jwks: bytes::Bytes,
    /// Key ids listed in the file (for retiring those that leave it).
    listed: Vec<(String, Jwk)>,
}

/// A key file's keys: the first signs.
struct KeyFile {
    first: SigningKey,
    rest: Vec<SigningKey>,
}

impl KeyFile {
    fn all(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.first).chain(&self.rest)
    }
}

/// Reads every key of `path`.
fn read_keys(path: &Path) -> Result<KeyFile, KeyError> {
    // Key ids are JWK thumbprints, computed by jsonwebtoken through its crypto backend.
    ring_provider::install();
    let shown = path.display().to_string();
    let pem =
        std::fs::read(path).map_err(|e| KeyError::Unreadable(shown.clone(), e.to_string()))?;
    let mut keys = Vec::new();
    for (i, der) in PrivatePkcs8KeyDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| KeyError::Unreadable(shown.clone(), e.to_string()))?;
        keys.push(
            SigningKey::parse(der.secret_pkcs8_der())
                .ok_or_else(|| KeyError::Unsupported(shown.clone(), i + 1))?,
        );
    }
    let mut keys = keys.into_iter();
    let first = keys.next().ok_or(KeyError::NoKey(shown))?;
    Ok(KeyFile {
        first,
        rest: keys.collect(),
    })
}

/// Checks a key file the way `serve` will load it (for `check-config`).
pub(crate) fn check(path: &Path) -> Result<(), KeyError> {
    read_keys(path).map(|_| ())
}

/// The JWK set of the listed keys and the retired ones not listed again.
fn publish(listed: &[(String, Jwk)], retired: &[(SystemTime, Jwk)]) -> bytes::Bytes {
    let mut keys: Vec<Jwk> = listed.iter().map(|(_, j)| j.clone()).collect();
    keys.extend(
        retired
            .iter()
            .map(|(_, j)| j)
            .filter(|r| {
                !listed
                    .iter()
                    .any(|(kid, _)| r.common.key_id.as_ref() == Some(kid))
            })
            .cloned(),
    );
    bytes::Bytes::from(serde_json::to_vec(&JwkSet { keys }).unwrap_or_default())
}

/// The key file, its keys in force and the retired ones still published.
pub(crate) struct KeysHandle {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
    stamp: Mutex<Option<SystemTime>>,
    /// Keys that left the file, published until the instant given.
    retired: Mutex<Vec<(SystemTime, Jwk)>>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl KeysHandle {
    /// Loads the key file; refuses a file without a usable key.
    pub(crate) fn load(path: &Path) -> Result<Self, KeyError> {
        let stamp = modified(path);
        let set = Self::assemble(read_keys(path)?, &[]);
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(set)),
            stamp: Mutex::new(stamp),
            retired: Mutex::new(Vec::new()),
        })
    }

    fn assemble(file: KeyFile, retired: &[(SystemTime, Jwk)]) -> KeySet {
        let listed: Vec<(String, Jwk)> =
            file.all().map(|k| (k.kid.clone(), k.jwk.clone())).collect();
        KeySet {
            jwks: publish(&listed, retired),
            signing: Arc::new(file.first),
            listed,
        }
    }

    /// The keys in force.
    pub(crate) fn get(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reloads the file if it changed, and drops retired keys whose time ran out. A
    /// file that fails to load keeps the keys in force, is logged, and is read again
    /// next time.
    pub(crate) fn reload_if_changed(&self) {
        let now = SystemTime::now();
        let stamp = modified(&self.path);
        let (Ok(mut last), Ok(mut retired)) = (self.stamp.lock(), self.retired.lock()) else {
            return;
        };
        let expired = retired.iter().any(|(until, _)| *until <= now);
        if *last == stamp && !expired {
            return;
        }
        retired.retain(|(until, _)| *until > now);
        let old = self.get();
        let set = if *last == stamp {
            KeySet {
                signing: old.signing.clone(),
                jwks: publish(&old.listed, &retired),
                listed: old.listed.clone(),
            }
        } else {
            let file = match read_keys(&self.path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "assertion signing keys not reloaded; the previous keys stay in force");
                    return;
                }
            };
            for (kid, jwk) in &old.listed {
                if !file.all().any(|k| &k.kid == kid) {
                    retired.push((now + RETIRED_FOR, jwk.clone()));
                }
            }
            tracing::info!(signing = %file.first.kid, keys = file.rest.len() + 1, "assertion signing keys reloaded");
            Self::assemble(file, &retired)
        };
        *last = stamp;
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(set);
        }
    }
}
