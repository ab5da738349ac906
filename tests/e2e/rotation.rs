//! Online key rotation (`vestibule rotate-key`): a new primary key is written, running
//! gateways load it, every stored secret is re-encrypted under it — and nobody has to
//! enroll again or restart anything.

use crate::flows::*;
use crate::harness::*;

fn doctor() -> TestUser {
    TestUser::new("doctor", &["doctor"])
}

/// Enrolls the doctor; returns the phone and the backup codes shown.
async fn enroll(b: &Browser) -> (Authenticator, Vec<String>) {
    let next = b.login_ok(&doctor(), "/").await;
    let setup = b.get(&next).await;
    let phone = Authenticator::new(read_setup(&setup).secret, 30);
    let done = b
        .submit(&setup, &p("/setup"), &[("code", &phone.fresh().await)])
        .await;
    assert_eq!(done.status, 200, "{}", done.describe());
    (phone, done.class_texts("backup-code"))
}

async fn challenge(gw: &Gateway, code: &str) -> Page {
    let b = Browser::new(gw);
    b.login_ok(&doctor(), "/").await;
    let ch = b.get(&p("/challenge")).await;
    b.submit(&ch, &p("/challenge"), &[("code", code)]).await
}

pub async fn rotation_keeps_everyone_signed_up(gw: &Gateway) {
    let (phone, codes) = enroll(&Browser::new(gw)).await;
    let before =
        std::fs::read_to_string(gw.p.dir.path().join("encryption.key")).unwrap_or_default();

    let out = admin(gw, &["rotate-key", "--wait", "3s"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("re-encrypted 1 secrets"), "{out}");
    let status = admin(gw, &["rotate-key", "--status"], None).await;
    let lines: Vec<&str> = status.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "two keys listed with ids: {status}");
    assert!(
        lines[0].contains("primary") && lines[0].contains("seals 1 secrets"),
        "{status}"
    );
    assert!(
        lines[1].contains("decrypt only") && lines[1].contains("seals 0 secrets"),
        "{status}"
    );

    // The running gateway decrypts the re-encrypted secret: a TOTP code passes.
    let ok = challenge(gw, &phone.fresh().await).await;
    assert_eq!(ok.status, 303, "TOTP after rotation: {}", ok.describe());
    // Backup codes made before the rotation still work while the old key is listed.
    let ok = challenge(gw, &codes[0]).await;
    assert_eq!(
        ok.status,
        303,
        "old backup code after rotation: {}",
        ok.describe()
    );

    let out = admin(gw, &["rotate-key", "--drop-old"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    let status = admin(gw, &["rotate-key", "--status"], None).await;
    assert_eq!(
        status.stdout.lines().count(),
        1,
        "only the primary is left: {status}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let ok = challenge(gw, &phone.fresh().await).await;
    assert_eq!(
        ok.status,
        303,
        "TOTP after dropping the old key: {}",
        ok.describe()
    );
    let key_now =
        std::fs::read_to_string(gw.p.dir.path().join("encryption.key")).unwrap_or_default();
    assert_ne!(before, key_now, "the key file changed");
    assert!(
        !gw.logs().contains(base32_encode(&phone.secret).as_str()),
        "the secret never reaches a log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_reencrypts_secrets_online_on_the_embedded_store() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&[doctor()]))
        .start()
        .await;
    rotation_keeps_everyone_signed_up(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_refuses_a_key_given_only_by_environment() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&[doctor()]))
        .key_in_env()
        .start()
        .await;
    let out = admin(&gw, &["rotate-key"], None).await;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.all().contains("encryption_key_file"), "{out}");
}
