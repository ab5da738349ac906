//! TOTP (RFC 6238) as domain logic: the clock is passed in and the accepted time step is
//! returned, so the caller can refuse a step that was already used.

use totp_rs::{Builder, Totp};

use super::secret::Secret;
use super::tokens::random_bytes;

/// Bytes of a new TOTP secret: 160 bits, as RFC 4226 recommends.
pub(crate) const SECRET_BYTES: usize = 20;

/// The HMAC behind the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// The `[totp]` settings.
#[derive(Debug, Clone)]
pub(crate) struct TotpSettings {
    pub issuer: String,
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
    pub skew: u64,
}

impl TotpSettings {
    fn totp(&self, secret: &[u8], account: &str) -> Totp {
        let algorithm = match self.algorithm {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        };
        Builder::new()
            .with_algorithm(algorithm)
            .with_digits(self.digits as u8)
            .with_step_duration(self.period)
            .with_skew(self.skew as u16)
            .with_secret(secret.to_vec())
            .with_issuer(Some(self.issuer.as_str()))
            .with_account_name(account)
            .build_noncompliant()
    }

    /// The time step `unix_secs` falls in.
    pub fn step_of(&self, unix_secs: u64) -> u64 {
        unix_secs / self.period
    }
}

/// A fresh random secret.
pub(crate) fn new_secret() -> Secret<Vec<u8>> {
    Secret::new(random_bytes::<SECRET_BYTES>().to_vec())
}

/// Base32 (RFC 4648, no padding), as authenticator apps expect it.
pub(crate) fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Base32 in groups of four, easier to type by hand.
pub(crate) fn grouped(b32: &str) -> String {
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `otpauth://totp/…` URI for authenticator apps (label `issuer:account`).
pub(crate) fn otpauth_uri(settings: &TotpSettings, secret: &[u8], account: &str) -> String {
    settings.totp(secret, account).to_url().unwrap_or_default()
}

/// What a person typed, without the spaces and dashes that are allowed in it.
pub fn normalise_input(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// The code for `step`: the tests type it as an authenticator app would.
#[cfg(test)]
pub(crate) fn code_at_step(settings: &TotpSettings, secret: &[u8], step: u64) -> String {
    settings
        .totp(secret, "x")
        .generate(step * settings.period)
        .to_string()
}

/// Checks `code` (already normalised) at `unix_secs`, `skew` steps either side, in
/// constant time per candidate. Returns the matching step; the caller must still
/// refuse steps that were used before.
pub(crate) fn verify(
    settings: &TotpSettings,
    secret: &[u8],
    code: &str,
    unix_secs: u64,
) -> Option<u64> {
    if code.len() != settings.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = settings.totp(secret, "x");
    let now = settings.step_of(unix_secs);
    let mut found = None;
    for step in now.saturating_sub(settings.skew)..=now + settings.skew {
        let expected = totp.generate(step * settings.period).to_string();
        if super::tokens::ct_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(alg: Algorithm, digits: u32) -> TotpSettings {
        TotpSettings {
            issuer: "Clinic".into(),
            algorithm: alg,
            digits,
            period: 30,
            skew: 1,
        }
    }

    #[test]
    fn matches_rfc6238_appendix_b_vectors() {
        let data = include_str!("../../tests/data/rfc6238-vectors.tsv");
        let mut n = 0;
        for line in data.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let alg = match f[0] {
                "SHA1" => Algorithm::Sha1,
                "SHA256" => Algorithm::Sha256,
                _ => Algorithm::Sha512,
            };
            let seed = data_encoding::HEXLOWER_PERMISSIVE
                .decode(f[1].as_bytes())
                .unwrap();
            let time: u64 = f[2].parse().unwrap();
            let s = settings(alg, 8);
            assert_eq!(code_at_step(&s, &seed, s.step_of(time)), f[4], "{line}");
            assert_eq!(verify(&s, &seed, f[4], time), Some(s.step_of(time)));
            n += 1;
        }
        assert_eq!(n, 18);
    }

    #[test]
    fn accepts_skew_steps_and_refuses_beyond() {
        let s = settings(Algorithm::Sha1, 6);
        let secret = [7u8; 20];
        let now = 1_700_000_000;
        let step = s.step_of(now);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let st = (step as i64 + offset) as u64;
            let code = code_at_step(&s, &secret, st);
            assert_eq!(
                verify(&s, &secret, &code, now) == Some(st),
                ok,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn input_spaces_and_dashes_are_ignored() {
        assert_eq!(normalise_input(" 12-34 56 "), "123456");
    }

    #[test]
    fn rejects_malformed_codes() {
        let s = settings(Algorithm::Sha1, 6);
        assert_eq!(verify(&s, &[1u8; 20], "12345", 0), None);
        assert_eq!(verify(&s, &[1u8; 20], "abcdef", 0), None);
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_secret() {
        let s = TotpSettings {
            issuer: "Clinic Test".into(),
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 60,
            skew: 1,
        };
        let uri = otpauth_uri(&s, &[1u8; 20], "dr.grey");
        assert!(
            uri.starts_with("otpauth://totp/Clinic%20Test:dr.grey?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={}", base32(&[1u8; 20]))));
        assert!(
            uri.contains("algorithm=SHA256")
                && uri.contains("digits=8")
                && uri.contains("period=60")
        );
    }
}
