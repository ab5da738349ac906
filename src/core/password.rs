//! argon2id password hashing. Pure and slow on purpose: callers run it on the blocking
//! pool behind a semaphore, never on the async workers.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// The minimum cost accepted for stored hashes (OWASP's argon2id baseline).
pub const MIN_M_KIB: u32 = 19456;
pub const MIN_T: u32 = 2;
pub const MIN_P: u32 = 1;

/// Why a password could not be hashed or a stored hash is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("not a PHC string")]
    NotPhc,
    #[error("not argon2id")]
    NotArgon2id,
    #[error("argon2 cost below m={MIN_M_KIB},t={MIN_T},p={MIN_P}")]
    TooWeak,
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// The cost of an argon2id hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Cost {
    pub const DEFAULT: Cost = Cost {
        m_kib: MIN_M_KIB,
        t: MIN_T,
        p: MIN_P,
    };
}

fn hasher(cost: Cost) -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(cost.m_kib, cost.t, cost.p, None)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` as argon2id with a fresh random salt; returns the PHC string.
pub fn hash(password: &[u8], cost: Cost) -> Result<String, PasswordError> {
    let h = hasher(cost)?
        .hash_password(password)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(h.to_string())
}

/// A well-formed argon2id PHC string at `cost` with a random salt and a random digest.
/// Unknown usernames are checked against it so that they cost a full hash like
/// everyone else; no password ever matches it. Built without hashing: computing a real
/// hash here would allocate the whole m-cost block (19 MiB by default) on the calling
/// thread, which the allocator then keeps resident.
pub fn decoy(cost: Cost) -> String {
    use base64::Engine;
    let mut salt = [0u8; 16];
    let mut digest = [0u8; 32];
    rand::fill(&mut salt);
    rand::fill(&mut digest);
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        cost.m_kib,
        cost.t,
        cost.p,
        b64.encode(salt),
        b64.encode(digest)
    )
}

/// Checks that `phc` is an argon2id PHC string at or above the minimum cost.
pub fn check_phc(phc: &str) -> Result<Cost, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::NotPhc)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordError::NotArgon2id);
    }
    let params = Params::try_from(&parsed).map_err(|_| PasswordError::NotPhc)?;
    let cost = Cost {
        m_kib: params.m_cost(),
        t: params.t_cost(),
        p: params.p_cost(),
    };
    if cost.m_kib < MIN_M_KIB || cost.t < MIN_T || cost.p < MIN_P {
        return Err(PasswordError::TooWeak);
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(PasswordError::NotPhc);
    }
    Ok(cost)
}

/// True when `password` matches `phc`. Any malformed hash is simply "no match".
pub fn verify(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_meet_the_minimum() {
        let h = hash(b"correct horse battery", Cost::DEFAULT).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(check_phc(&h).unwrap(), Cost::DEFAULT);
        assert!(verify(b"correct horse battery", &h));
        assert!(!verify(b"wrong", &h));
    }

    #[test]
    fn decoy_is_a_valid_hash_at_the_cost_that_nothing_matches() {
        let cost = Cost {
            m_kib: 20480,
            t: 3,
            p: 1,
        };
        let d = decoy(cost);
        assert_eq!(check_phc(&d).unwrap(), cost);
        assert_ne!(decoy(cost), d, "salt and digest are random");
        assert!(!verify(b"", &d));
        assert!(!verify(b"vestibule decoy password", &d));
    }

    #[test]
    fn refuses_weak_or_foreign_hashes() {
        let weak = hash(
            b"x",
            Cost {
                m_kib: 1024,
                t: 1,
                p: 1,
            },
        )
        .unwrap();
        assert!(matches!(check_phc(&weak), Err(PasswordError::TooWeak)));
        assert!(matches!(check_phc("plaintext"), Err(PasswordError::NotPhc)));
        assert!(!verify(b"x", "not-a-hash"));
    }
}
