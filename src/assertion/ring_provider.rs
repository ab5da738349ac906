//! The crypto backend for `jsonwebtoken`, on `ring` — the library that already does
//! the gateway's TLS. jsonwebtoken leaves the choice of backend to the application
//! (its own ones would add aws-lc or the RustCrypto RSA and curve crates); this file is
//! only the glue: ES256 and EdDSA signing and verification, and the public-key
//! components a JWK needs. JWT encoding, JWK types and claim handling stay jsonwebtoken's.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature as jws_signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// Installs the backend for this process (idempotent: a second call changes nothing).
pub(crate) fn install() {
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::InvalidAlgorithm.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidAlgorithm.into()),
        ec_pub_components_from_private_key: ec_components,
        ed_pub_components_from_private_key: ed_components,
        compute_digest: digest,
    },
};

/// A parsed private key that signs with its algorithm.
pub(crate) enum RingSigner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl RingSigner {
    /// The public key: an uncompressed SEC1 point (ES256) or 32 bytes (Ed25519).
    pub(crate) fn public_key(&self) -> &[u8] {
        match self {
            RingSigner::Es256(k) => k.public_key().as_ref(),
            RingSigner::EdDsa(k) => k.public_key().as_ref(),
        }
    }
}

/// Parses a PKCS#8 private key for `alg` (ES256: P-256; EdDSA: Ed25519, v1 or v2).
pub(crate) fn parse_private(alg: Algorithm, pkcs8: &[u8]) -> Option<RingSigner> {
    match alg {
        Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .ok()
        .map(RingSigner::Es256),
        Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .ok()
            .map(RingSigner::EdDsa),
        _ => None,
    }
}

impl jws_signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, jws_signature::Error> {
        match self {
            RingSigner::Es256(k) => k
                .sign(&ring::rand::SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| jws_signature::Error::new()),
            RingSigner::EdDsa(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            RingSigner::Es256(_) => Algorithm::ES256,
            RingSigner::EdDsa(_) => Algorithm::EdDSA,
        }
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let signer = match alg {
        Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map(RingSigner::Es256)
        .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?,
        Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.as_bytes())
            .map(RingSigner::EdDsa)
            .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(signer))
}

/// A public key that verifies with its algorithm.
struct RingVerifier {
    alg: Algorithm,
    key: signature::UnparsedPublicKey<Vec<u8>>,
}

impl jws_signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), jws_signature::Error> {
        self.key
            .verify(msg, sig)
            .map_err(|_| jws_signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let bytes = match key.kind() {
        DecodingKeyKind::SecretOrDer(b) => b.clone(),
        DecodingKeyKind::RsaModulusExponent { .. } => {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
    };
    let params: &'static dyn signature::VerificationAlgorithm = match alg {
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: signature::UnparsedPublicKey::new(params, bytes),
    }))
}

fn ec_components(pkcs8: &[u8], alg: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let key = parse_private(alg, pkcs8).ok_or(ErrorKind::InvalidEcdsaKey)?;
    let point = key.public_key();
    // Uncompressed SEC1 point: 0x04 | x (32) | y (32).
    if alg != Algorithm::ES256 || point.len() != 65 || point[0] != 4 {
        return Err(ErrorKind::InvalidEcdsaKey.into());
    }
    Ok((
        EllipticCurve::P256,
        point[1..33].to_vec(),
        point[33..].to_vec(),
    ))
}

fn ed_components(pkcs8: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = parse_private(Algorithm::EdDSA, pkcs8).ok_or(ErrorKind::InvalidEddsaKey)?;
    Ok(key.public_key().to_vec())
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}
