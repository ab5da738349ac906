use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

use super::*;

fn user(name: &str) -> Arc<User> {
    Arc::new(User {
        username: name.into(),
        display_name: "Meredith Grey".into(),
        email: "grey@clinic.example".into(),
        roles: vec!["doctor".into(), "clerk".into()],
        password_hash: String::new(),
        disabled: false,
    })
}

fn key_file(dir: &std::path::Path, kinds: &[KeyKind]) -> std::path::PathBuf {
    let path = dir.join("assertion.pem");
    let pem: String = kinds
        .iter()
        .map(|k| generate_key_pem(*k).unwrap())
        .collect();
    std::fs::write(&path, pem).unwrap();
    path
}

/// Verifies `token` against the published JWK set, as an app would.
fn verify(a: &Assertions, token: &HeaderValue) -> serde_json::Value {
    let token = token.to_str().unwrap();
    let set: JwkSet = serde_json::from_slice(&a.jwks()).unwrap();
    let kid = decode_header(token).unwrap().kid.unwrap();
    let jwk = set.find(&kid).expect("the token's key is published");
    let mut v = Validation::new(decode_header(token).unwrap().alg);
    v.set_audience(&["records"]);
    v.set_issuer(&[ISSUER]);
    decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

const NOW: u64 = 1_800_000_000_000;

#[test]
fn tokens_of_both_algorithms_verify_against_the_jwks_with_the_spec_claims() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Es256, KeyKind::EdDsa] {
        let a = Assertions::load(&key_file(dir.path(), &[kind])).unwrap();
        let u = user("dr.grey");
        let t = a
            .header_for(&[1; 32], "records", &u, Some(SecondFactor::Totp), NOW)
            .unwrap();
        let c = verify(&a, &t);
        assert_eq!(c["sub"], "dr.grey");
        assert_eq!(c["name"], "Meredith Grey");
        assert_eq!(c["email"], "grey@clinic.example");
        assert_eq!(c["groups"], serde_json::json!(["doctor", "clerk"]));
        assert_eq!(c["amr"], serde_json::json!(["pwd", "otp"]));
        assert_eq!(c["iat"], NOW / 1000);
        assert_eq!(c["exp"], NOW / 1000 + 300);
    }
}

#[test]
fn amr_follows_the_factor() {
    let dir = tempfile::tempdir().unwrap();
    let a = Assertions::load(&key_file(dir.path(), &[KeyKind::Es256])).unwrap();
    let u = user("pat");
    for (factor, want) in [
        (None, serde_json::json!(["pwd"])),
        (
            Some(SecondFactor::BackupCode),
            serde_json::json!(["pwd", "otp"]),
        ),
        (
            Some(SecondFactor::RememberedDevice),
            serde_json::json!(["pwd", "device"]),
        ),
        (
            Some(SecondFactor::Webauthn),
            serde_json::json!(["pwd", "hwk"]),
        ),
        (
            Some(SecondFactor::Passkey),
            serde_json::json!(["hwk", "mfa"]),
        ),
    ] {
        let t = a.header_for(&[2; 32], "records", &u, factor, NOW).unwrap();
        assert_eq!(verify(&a, &t)["amr"], want, "{factor:?}");
    }
}

#[test]
fn a_token_is_reused_per_session_until_its_refresh_and_redone_when_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = Assertions::load(&key_file(dir.path(), &[KeyKind::Es256])).unwrap();
    let u = user("dr.grey");
    let f = Some(SecondFactor::Totp);
    let first = a.header_for(&[3; 32], "records", &u, f, NOW).unwrap();
    let later = NOW + REFRESH_AFTER.as_millis() as u64 - 1;
    assert_eq!(
        a.header_for(&[3; 32], "records", &u, f, later).unwrap(),
        first
    );
    // Another session, app, factor, user snapshot, or the refresh time: a new token.
    assert_ne!(
        a.header_for(&[4; 32], "records", &u, f, NOW).unwrap(),
        first
    );
    assert_ne!(a.header_for(&[3; 32], "lab", &u, f, NOW).unwrap(), first);
    assert_ne!(
        a.header_for(&[3; 32], "records", &u, None, NOW).unwrap(),
        first
    );
    let reloaded = user("dr.grey");
    assert_ne!(
        a.header_for(&[3; 32], "records", &reloaded, f, NOW)
            .unwrap(),
        first
    );
    let due = NOW + REFRESH_AFTER.as_millis() as u64;
    assert_ne!(
        a.header_for(&[3; 32], "records", &u, f, due).unwrap(),
        first
    );
    assert_eq!(a.cached(), 2);
}

#[test]
fn a_tampered_or_re_signed_token_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let a = Assertions::load(&key_file(dir.path(), &[KeyKind::Es256])).unwrap();
    let t = a
        .header_for(&[5; 32], "records", &user("pat"), None, NOW)
        .unwrap();
    let token = t.to_str().unwrap();
    let set: JwkSet = serde_json::from_slice(&a.jwks()).unwrap();
    let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["records"]);
    v.validate_exp = false;
    // Claims changed (sub → admin) under the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap()
    .replace("\"pat\"", "\"admin\"");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged_claims
        ),
        parts[2]
    );
    assert!(decode::<serde_json::Value>(&forged, &key, &v).is_err());
    // Signed by another key with the same kid: refused.
    let other = Assertions::load(&key_file(
        tempfile::tempdir().unwrap().path(),
        &[KeyKind::Es256],
    ))
    .unwrap();
    let foreign = other
        .header_for(&[5; 32], "records", &user("pat"), None, NOW)
        .unwrap();
    assert!(decode::<serde_json::Value>(foreign.to_str().unwrap(), &key, &v).is_err());
}

#[test]
fn a_key_that_leaves_the_file_stays_published_while_its_tokens_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path(), &[KeyKind::Es256]);
    let a = Assertions::load(&path).unwrap();
    let old = a
        .header_for(&[6; 32], "records", &user("pat"), None, NOW)
        .unwrap();
    // The operator replaces the key (a new file, a new modification time).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, generate_key_pem(KeyKind::EdDsa).unwrap()).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    a.reload_if_changed();
    let set: JwkSet = serde_json::from_slice(&a.jwks()).unwrap();
    assert_eq!(set.keys.len(), 2, "the new key and the retired one");
    verify(&a, &old);
    let new = a
        .header_for(&[6; 32], "records", &user("pat"), None, NOW)
        .unwrap();
    assert_ne!(new, old, "signed with the new key");
    assert_eq!(
        decode_header(new.to_str().unwrap()).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
}

#[test]
fn files_without_a_usable_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.pem");
    std::fs::write(&p, "not a key").unwrap();
    assert!(matches!(Assertions::load(&p), Err(KeyError::NoKey(_))));
    assert!(matches!(
        Assertions::load(&dir.path().join("missing.pem")),
        Err(KeyError::Unreadable(..))
    ));
}
