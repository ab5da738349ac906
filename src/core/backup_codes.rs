//! Backup codes: shown once as `XXXXX-XXXXX`, stored only as keyed one-way hashes.
//! Ten symbols of a 32-letter alphabet give 50 bits per code.

use super::tokens::{hmac, random_bytes};

/// Crockford's base32 alphabet: no I, L, O or U, so codes read aloud cleanly.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SYMBOLS: usize = 10;

/// `count` new codes, formatted `XXXXX-XXXXX`.
pub fn generate(count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let bytes = random_bytes::<SYMBOLS>();
            let s: String = bytes
                .iter()
                .map(|b| ALPHABET[(b & 31) as usize] as char)
                .collect();
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect()
}

/// The canonical form of typed input, or `None` when it cannot be a backup code.
/// Case, spaces and dashes do not matter; O and I/L are read as 0 and 1.
pub fn normalise(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    (s.len() == SYMBOLS && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// The stored form: HMAC under the server's hashing key, bound to the user, so a copy
/// of the database alone cannot be brute-forced.
pub(crate) fn hash(key: &[u8], username: &str, normalised: &str) -> [u8; 32] {
    let mut data = Vec::with_capacity(username.len() + 1 + normalised.len());
    data.extend_from_slice(super::user::lockout_key(username).as_bytes());
    data.push(0);
    data.extend_from_slice(normalised.as_bytes());
    hmac(key, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_contract_shape_and_differ() {
        let codes = generate(10);
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 11);
            assert_eq!(&c[5..6], "-");
            assert!(normalise(c).is_some());
        }
        let mut dedup = codes.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 10);
    }

    #[test]
    fn typed_variants_normalise_to_the_same_hash() {
        let key = [9u8; 32];
        let a = hash(&key, "Doc", &normalise("ab0c1-2defg").unwrap());
        let b = hash(&key, "doc", &normalise("AB0C1 2DEFG").unwrap());
        let c = hash(&key, "doc", &normalise("abOcl-2defg").unwrap());
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(a, hash(&key, "other", &normalise("AB0C12DEFG").unwrap()));
    }

    #[test]
    fn totp_codes_are_not_backup_codes() {
        assert!(normalise("123456").is_none());
        assert!(normalise("12345678").is_none());
    }
}
