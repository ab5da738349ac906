//! The chain rule of the audit file (SPEC §13), in one place so the writer and the
//! verifier cannot drift apart, and so an auditor can re-implement it from
//! docs/operations.md "Verifying the audit log".
//!
//! A chained line (without its final `\n`) is a JSON object whose last member is
//! `"chain"` with 64 lowercase hex digits, and whose first members are `seq` and
//! `instance`:
//!
//! ```text
//! {"seq":17,"instance":"gw1:8443","event":"login.success",…,"chain":"9f…3a"}
//! ```
//!
//! *The line without `chain`* is the exact bytes of the line with the trailing
//! `,"chain":"<64 hex>"` member cut out, i.e. the line minus its last 76 bytes, plus
//! `}`. Then `chain = hex(HMAC-SHA256(K, P ‖ B))` where `B` is the line without
//! `chain`, `P` is the previous line's `chain` as its 64 ASCII hex characters (empty for
//! the line with `seq` 1) and `K = HMAC-SHA256(encryption key, "vestibule audit chain v1")`.
//! No JSON is ever re-serialised: the check works on the bytes as written.

use serde::Deserialize;

use crate::core::tokens::{ct_eq, hmac};

/// Purpose string of the audit key, derived from the encryption key
/// ([`crate::keys::Keyring::derive`]).
pub(crate) const PURPOSE: &str = "vestibule audit chain v1";

/// The member every chained line ends with, up to its value.
const CHAIN_HEAD: &[u8] = b",\"chain\":\"";
/// Length of a chain value: HMAC-SHA256 in lowercase hex.
const HEX_LEN: usize = 64;
/// Bytes cut from a line to get the line without `chain` (before its `}` is put back):
/// `,"chain":"` + 64 hex + `"}`.
pub(crate) const SUFFIX_LEN: usize = CHAIN_HEAD.len() + HEX_LEN + 2;

/// Why a line is not a well-formed chained line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("it does not end with a \"chain\" member")]
    NoChain,
    #[error("it is not a JSON object with a numeric \"seq\"")]
    NoSeq,
}

/// A chained line taken apart (borrowing the line's bytes).
#[derive(Debug)]
pub struct Link<'a> {
    /// The line up to (not including) `,"chain":…`: the line without `chain` minus
    /// its closing `}`.
    pub head: &'a [u8],
    /// The 64 hex digits of `chain`.
    pub chain: &'a [u8],
    pub seq: u64,
}

/// Only `seq` is read from a line; serde still checks the whole object is JSON and
/// refuses a second `seq` member (an ambiguous line).
#[derive(Deserialize)]
struct Seq {
    seq: u64,
}

/// Splits `line` (without its `\n`) into the line without `chain`, and `chain`.
pub fn parse(line: &[u8]) -> Result<Link<'_>, LineError> {
    let n = line.len();
    if n < SUFFIX_LEN + 1 || !line.ends_with(b"\"}") {
        return Err(LineError::NoChain);
    }
    let (head, suffix) = line.split_at(n - SUFFIX_LEN);
    let chain = &suffix[CHAIN_HEAD.len()..CHAIN_HEAD.len() + HEX_LEN];
    if !suffix.starts_with(CHAIN_HEAD) || !chain.iter().all(|b| b"0123456789abcdef".contains(b)) {
        return Err(LineError::NoChain);
    }
    let body = without_chain(head);
    let seq = serde_json::from_slice::<Seq>(&body)
        .map_err(|_| LineError::NoSeq)?
        .seq;
    Ok(Link { head, chain, seq })
}

/// The line without `chain`: `head` with its `}` put back.
fn without_chain(head: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    body
}

/// `hex(HMAC-SHA256(key, prev ‖ head ‖ "}"))`.
pub(crate) fn mac(key: &[u8; 32], prev: &[u8], head: &[u8]) -> String {
    let mut data = Vec::with_capacity(prev.len() + head.len() + 1);
    data.extend_from_slice(prev);
    data.extend_from_slice(&without_chain(head));
    data_encoding::HEXLOWER.encode(&hmac(key, &data))
}

/// Whether `link` chains from `prev` under `key` (constant-time comparison).
pub(crate) fn links(key: &[u8; 32], prev: &[u8], link: &Link<'_>) -> bool {
    ct_eq(mac(key, prev, link.head).as_bytes(), link.chain)
}

/// The full line (without `\n`) for `head` — a JSON object's text without its
/// closing `}` — chained from `prev` (empty for `seq` 1), and its chain value.
pub fn seal(key: &[u8; 32], prev: &[u8], head: &str) -> (String, String) {
    let chain = mac(key, prev, head.as_bytes());
    let mut line = String::with_capacity(head.len() + SUFFIX_LEN);
    line.push_str(head);
    line.push_str(",\"chain\":\"");
    line.push_str(&chain);
    line.push_str("\"}");
    (line, chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_sealed_line_parses_back_and_links_to_its_predecessor() {
        let (first, c1) = seal(&KEY, b"", r#"{"seq":1,"instance":"h:1","event":"a""#);
        let l1 = parse(first.as_bytes()).unwrap();
        assert_eq!(l1.seq, 1);
        assert_eq!(l1.chain, c1.as_bytes());
        assert!(links(&KEY, b"", &l1));
        assert!(first.ends_with(&format!(",\"chain\":\"{c1}\"}}")));
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["chain"], c1.as_str(), "the line is plain JSON");

        let (second, _) = seal(&KEY, c1.as_bytes(), r#"{"seq":2,"instance":"h:1""#);
        let l2 = parse(second.as_bytes()).unwrap();
        assert!(links(&KEY, c1.as_bytes(), &l2));
        assert!(
            !links(&KEY, b"", &l2),
            "the previous chain is part of the MAC"
        );
        assert!(!links(&[8; 32], c1.as_bytes(), &l2), "and the key");
    }

    #[test]
    fn the_rule_is_the_documented_byte_rule() {
        // An auditor's re-implementation: cut the last 76 bytes, put `}` back, HMAC
        // the previous chain's hex followed by those bytes.
        let (line, chain) = seal(&KEY, b"ab", r#"{"seq":2,"x":"é"}"#.trim_end_matches('}'));
        let cut = &line.as_bytes()[..line.len() - 76];
        let mut data = b"ab".to_vec();
        data.extend_from_slice(cut);
        data.push(b'}');
        assert_eq!(data_encoding::HEXLOWER.encode(&hmac(&KEY, &data)), chain);
    }

    #[test]
    fn edits_of_any_byte_break_the_link() {
        let (line, _) = seal(&KEY, b"", r#"{"seq":1,"instance":"h:1","user":"pat""#);
        for i in 0..line.len() {
            let mut b = line.clone().into_bytes();
            b[i] ^= 0x01;
            if let Ok(l) = parse(&b) {
                assert!(!links(&KEY, b"", &l), "flip at byte {i} went unseen");
            }
        }
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(
            parse(br#"{"seq":1,"event":"x"}"#).unwrap_err(),
            LineError::NoChain
        );
        let (line, _) = seal(&KEY, b"", r#"{"event":"x""#);
        assert_eq!(parse(line.as_bytes()).unwrap_err(), LineError::NoSeq);
        let (dup, _) = seal(&KEY, b"", r#"{"seq":1,"seq":2"#);
        assert_eq!(parse(dup.as_bytes()).unwrap_err(), LineError::NoSeq);
        // Upper-case hex is not the written form: refused, not normalised.
        let (ok, _) = seal(&KEY, b"", r#"{"seq":1"#);
        let n = ok.len();
        let upper = format!("{}{}\"}}", &ok[..n - 66], ok[n - 66..n - 2].to_uppercase());
        assert_ne!(upper, ok);
        assert!(parse(ok.as_bytes()).is_ok());
        assert_eq!(parse(upper.as_bytes()).unwrap_err(), LineError::NoChain);
        assert_eq!(parse(b"").unwrap_err(), LineError::NoChain);
    }
}
