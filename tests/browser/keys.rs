//! Security keys and passkeys (SPEC §10) in a real browser: headless Chromium with its
//! virtual authenticator (`authenticator.rs`) against the real gateway, on
//! `http://localhost` (a secure context, so WebAuthn is on without TLS). A doctor
//! registers a key at first sign-in (by keyboard), signs in with it, has the browser
//! remembered, adds a second key and removes the first, cannot remove the last one,
//! and a cloned key (its signature counter put back) is refused. With
//! `passwordless = true` a passkey alone signs in. Pages are photographed at phone and
//! desktop size and checked with axe-core.

use std::time::{Duration, Instant};

use crate::authenticator::VirtualKey;
use crate::chrome::{Chrome, ENTER, Options, TAB, TURN};
use crate::flows::*;
use crate::harness::*;

const KEYS: &str = "[webauthn]\nenabled = true\nrp_id = \"localhost\"\n";

fn doctor() -> TestUser {
    TestUser::new("doctor", &["doctor"])
}

async fn gateway(users: &[TestUser], extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    // Plain HTTP on localhost: Chromium refuses WebAuthn on a page whose certificate
    // it had to accept despite an error (the test CA), and http://localhost is a
    // secure context of its own.
    let gw = Gateway::builder(&up)
        .plain_http()
        .users_toml(&users_toml(users))
        .extra(extra)
        .start()
        .await;
    (up, gw)
}

/// The gateway under the name `localhost`: WebAuthn needs a domain, not an address.
fn at(gw: &Gateway, path: &str) -> String {
    format!("http://localhost:{}{path}", gw.port())
}

async fn sign_in(b: &Chrome, user: &TestUser) {
    b.fill("#username", &user.name).await;
    b.fill("#password", &user.password).await;
    b.keys(ENTER).await;
}

/// Opens a protected page and signs in from the login page it leads to.
async fn sign_in_at_records(b: &Chrome, gw: &Gateway, user: &TestUser) {
    b.goto(&at(gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    sign_in(b, user).await;
}

async fn sign_out(b: &Chrome, gw: &Gateway) {
    b.goto(&at(gw, &p("/account"))).await;
    b.wait_path(&p("/account")).await;
    b.click("form[action$='/logout'] button").await;
    b.wait_path(&p("/login")).await;
}

/// Waits until `css` is shown (the script un-hides the key sections).
async fn wait_shown(b: &Chrome, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if b.find(css).await.is_displayed().await.unwrap_or(false) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never shown:\n{}",
            b.source().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the key section's status line says something.
async fn wait_status(b: &Chrome) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = b.text("#webauthn-status.error").await;
        if !text.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "no failure shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The names in the account page's key list, read in one script call (the page may be
/// reloading while a test polls it; then the answer is empty and the poll goes on).
async fn key_names(b: &Chrome) -> Vec<String> {
    let script = "return Array.from(document.querySelectorAll('li.key .key-name'))\
                  .map(e => e.textContent.trim());";
    match b.c.execute(script, vec![]).await {
        Ok(v) => serde_json::from_value(v).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_enrolls_with_a_key_signs_in_with_it_and_manages_keys() {
    let _turn = TURN.lock().await;
    let doc = doctor();
    let (up, gw) = gateway(std::slice::from_ref(&doc), KEYS).await;
    let b = Chrome::start(Options::default()).await;
    let key = VirtualKey::attach(&b).await;

    // First sign-in: the setup page offers a key next to the authenticator app.
    b.goto(&at(&gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    sign_in(&b, &doc).await;
    b.wait_path(&p("/setup")).await;
    wait_shown(&b, "#webauthn-register").await;
    assert!(
        b.find("#totp-secret").await.is_displayed().await.unwrap(),
        "the app path stays"
    );
    b.shot("setup-key").await;
    b.axe("setup-key").await;

    // By keyboard: name the key, Tab to the button, Enter; the virtual key answers.
    b.fill("#webauthn-name", "Blue key").await;
    b.keys(TAB).await;
    assert_eq!(b.focused_id().await, "webauthn-register-button");
    b.keys(ENTER).await;
    b.wait_path("/records").await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("webauthn"));
    assert_eq!(up.last().header("remote-user").as_deref(), Some("doctor"));
    assert_eq!(key.credentials(&b).await.len(), 1);
    let api = b
        .js("return fetch('/_vestibule/api/session').then(r => r.json());")
        .await;
    assert_eq!(api["mfa"], "webauthn", "{api}");

    // The next sign-in offers the key (the only method this doctor has).
    sign_out(&b, &gw).await;
    sign_in_at_records(&b, &gw, &doc).await;
    b.wait_path(&p("/challenge")).await;
    wait_shown(&b, "#webauthn-challenge").await;
    assert!(
        b.find_all("#code").await.is_empty(),
        "no code form without TOTP"
    );
    b.shot("challenge-key").await;
    b.axe("challenge-key").await;
    b.click("#remember_device").await;
    b.click("#webauthn-challenge-button").await;
    b.wait_path("/records").await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("webauthn"));

    // Remembered: the next sign-in skips the key.
    sign_out(&b, &gw).await;
    sign_in_at_records(&b, &gw, &doc).await;
    b.wait_path("/records").await;
    assert_eq!(
        up.last().header("remote-mfa").as_deref(),
        Some("remembered-device")
    );

    // The account page lists the key; a second one is added, the first removed.
    b.goto(&at(&gw, &p("/account"))).await;
    b.wait_path(&p("/account")).await;
    assert_eq!(key_names(&b).await, ["Blue key"]);
    b.shot("account-keys").await;
    b.axe("account-keys").await;
    // The blue key goes back in the drawer; a new one is plugged in.
    key.detach(&b).await;
    let key = VirtualKey::attach(&b).await;
    wait_shown(&b, "#webauthn-register").await;
    b.fill("#webauthn-name", "Spare key").await;
    b.click("#webauthn-register-button").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while key_names(&b).await.len() != 2 {
        assert!(Instant::now() < deadline, "second key not listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(key_names(&b).await, ["Blue key", "Spare key"]);
    b.click("li.key:first-child form.key-remove button").await;
    b.wait_path(&p("/account")).await;
    assert!(b.text("p.notice").await.contains("removed"));
    assert_eq!(key_names(&b).await, ["Spare key"]);

    // The last second factor of a doctor stays.
    b.click("li.key form.key-remove button").await;
    b.wait_path(&p("/account/keys/remove")).await;
    assert!(b.text("#account-error").await.contains("last way"));
    assert_eq!(key_names(&b).await, ["Spare key"]);
    b.shot("account-last-key").await;
    b.axe("account-last-key").await;

    // Rename it.
    b.goto(&at(&gw, &p("/account"))).await;
    b.fill("#rename-1", "Desk key").await;
    b.click("form.key-rename button").await;
    b.wait_path(&p("/account")).await;
    assert_eq!(key_names(&b).await, ["Desk key"]);

    // A cloned key: copy the key's state now, sign in once more with the real one
    // (its counter moves on), then put the copy back — its counter is behind.
    b.click("form[action$='/forget-devices'] button").await;
    b.wait_path(&p("/account")).await;
    let snapshot = key.credentials(&b).await;
    assert_eq!(snapshot.len(), 1);
    sign_out(&b, &gw).await;
    sign_in_at_records(&b, &gw, &doc).await;
    b.wait_path(&p("/challenge")).await;
    wait_shown(&b, "#webauthn-challenge").await;
    b.click("#webauthn-challenge-button").await;
    b.wait_path("/records").await;
    sign_out(&b, &gw).await;
    key.remove_all(&b).await;
    for cred in &snapshot {
        key.add_credential(&b, cred).await;
    }
    sign_in_at_records(&b, &gw, &doc).await;
    b.wait_path(&p("/challenge")).await;
    wait_shown(&b, "#webauthn-challenge").await;
    b.click("#webauthn-challenge-button").await;
    let said = wait_status(&b).await;
    assert!(said.contains("did not work"), "{said}");
    assert_eq!(
        b.path().await,
        p("/challenge"),
        "a cloned key signs nobody in"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("\"event\":\"mfa.webauthn.failure\"") && logs.contains("counter_regressed"),
        "no audit of the cloned key:\n{logs}"
    );
    b.shot("challenge-key-refused").await;
    b.axe("challenge-key-refused").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_alone_signs_in_when_passwordless_is_on() {
    let _turn = TURN.lock().await;
    let doc = doctor();
    let extra = format!("{KEYS}passwordless = true\n");
    let (up, gw) = gateway(std::slice::from_ref(&doc), &extra).await;
    let b = Chrome::start(Options::default()).await;
    let key = VirtualKey::attach(&b).await;

    b.goto(&at(&gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    sign_in(&b, &doc).await;
    b.wait_path(&p("/setup")).await;
    wait_shown(&b, "#webauthn-register").await;
    b.click("#webauthn-register-button").await;
    b.wait_path("/records").await;
    let creds = key.credentials(&b).await;
    assert_eq!(
        creds[0]["isResidentCredential"], true,
        "a discoverable passkey"
    );
    sign_out(&b, &gw).await;

    // The login page offers the passkey next to the password form.
    b.goto(&at(&gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    wait_shown(&b, "#webauthn-passwordless").await;
    assert!(b.find("#password").await.is_displayed().await.unwrap());
    b.shot("login-passkey").await;
    b.axe("login-passkey").await;
    b.click("#webauthn-passwordless-button").await;
    b.wait_path("/records").await;
    let last = up.last();
    assert_eq!(last.header("remote-user").as_deref(), Some("doctor"));
    assert_eq!(last.header("remote-mfa").as_deref(), Some("webauthn"));
    let logs = gw.logs();
    assert!(logs.contains("\"passwordless\":true"), "{logs}");

    // The operator sees the key; a 2FA reset removes it (and the sessions).
    let admin = |args: &[&str]| {
        let mut cmd = gw.p.cmd();
        cmd.args(args).arg("--config").arg(&gw.p.config_path);
        run(cmd, None, Duration::from_secs(20))
    };
    let status = admin(&["2fa", "status", "doctor"]);
    assert_eq!(status.code, Some(0), "{}", status.all());
    assert!(
        status.stdout.contains("security keys: 1") && status.stdout.contains("Security key"),
        "{}",
        status.stdout
    );
    let reset = admin(&["2fa", "reset", "doctor"]);
    assert_eq!(reset.code, Some(0), "{}", reset.all());
    let status = admin(&["2fa", "status", "doctor"]);
    assert!(
        status.stdout.contains("2fa: disabled") && !status.stdout.contains("security keys"),
        "{}",
        status.stdout
    );
    // Reset: the passkey the browser still holds no longer signs anyone in.
    b.goto(&at(&gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    wait_shown(&b, "#webauthn-passwordless").await;
    b.click("#webauthn-passwordless-button").await;
    let said = wait_status(&b).await;
    assert!(said.contains("did not work"), "{said}");
    assert_eq!(b.path().await, p("/login"));

    // Without the key nothing signs in.
    key.remove_all(&b).await;
    b.goto(&at(&gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    wait_shown(&b, "#webauthn-passwordless").await;
    b.click("#webauthn-passwordless-button").await;
    let said = wait_status(&b).await;
    assert!(said.contains("did not work"), "{said}");
    assert_eq!(b.path().await, p("/login"));
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_key_sections_stay_hidden_and_the_app_path_works() {
    let _turn = TURN.lock().await;
    let doc = doctor();
    let (_up, gw) = gateway(std::slice::from_ref(&doc), KEYS).await;
    let b = Chrome::start(Options {
        javascript: false,
        ..Options::default()
    })
    .await;
    b.goto(&at(&gw, "/records")).await;
    b.wait_path(&p("/login")).await;
    sign_in(&b, &doc).await;
    b.wait_path(&p("/setup")).await;
    assert!(
        !b.find("#webauthn-register")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    let secret = base32_decode(&b.text("#totp-secret").await);
    let code = Authenticator::new(secret, 30).fresh().await;
    b.fill("#code", &code).await;
    b.keys(ENTER).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.find_all("code.backup-code").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no backup codes after the app path"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_the_app_and_a_key_is_offered_both_and_a_patient_turns_2fa_on_with_a_key() {
    let _turn = TURN.lock().await;
    let doc = doctor();
    let pat = TestUser::new("patient", &["patient"]);
    let (up, gw) = gateway(&[doc.clone(), pat.clone()], KEYS).await;
    let b = Chrome::start(Options::default()).await;
    let key = VirtualKey::attach(&b).await;

    // The doctor chooses the app at enrollment …
    sign_in_at_records(&b, &gw, &doc).await;
    b.wait_path(&p("/setup")).await;
    let app = Authenticator::new(base32_decode(&b.text("#totp-secret").await), 30);
    b.fill("#code", &app.fresh().await).await;
    b.keys(ENTER).await;
    b.find("#continue").await;
    // … and adds a key on the account page later.
    b.goto(&at(&gw, &p("/account"))).await;
    wait_shown(&b, "#webauthn-register").await;
    b.fill("#webauthn-name", "Desk key").await;
    b.click("#webauthn-register-button").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while key_names(&b).await.is_empty() {
        assert!(Instant::now() < deadline, "key not listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#mfa-status").await, "On");

    // The next sign-in offers both: the key, and the code form.
    sign_out(&b, &gw).await;
    sign_in_at_records(&b, &gw, &doc).await;
    b.wait_path(&p("/challenge")).await;
    wait_shown(&b, "#webauthn-challenge").await;
    assert!(b.find("#code").await.is_displayed().await.unwrap());
    b.shot("challenge-key-and-code").await;
    b.axe("challenge-key-and-code").await;
    b.click("#webauthn-challenge-button").await;
    b.wait_path("/records").await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("webauthn"));
    sign_out(&b, &gw).await;

    // A patient signs in with a password only, then turns 2FA on with a key.
    sign_in_at_records(&b, &gw, &pat).await;
    b.wait_path("/records").await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("none"));
    b.goto(&at(&gw, &p("/account"))).await;
    wait_shown(&b, "#webauthn-register").await;
    b.click("#webauthn-register-button").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while key_names(&b).await.is_empty() {
        assert!(Instant::now() < deadline, "patient's key not listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.goto(&at(&gw, "/records")).await;
    b.wait_path("/records").await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("webauthn"));
    // Now enforced for the patient too; and a patient may remove their last key.
    sign_out(&b, &gw).await;
    sign_in_at_records(&b, &gw, &pat).await;
    b.wait_path(&p("/challenge")).await;
    wait_shown(&b, "#webauthn-challenge").await;
    b.click("#webauthn-challenge-button").await;
    b.wait_path("/records").await;
    b.goto(&at(&gw, &p("/account"))).await;
    b.click("li.key form.key-remove button").await;
    // The form posts and lands on /account again: the path alone cannot tell the new
    // page from the old one, so wait for the list itself to empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !key_names(&b).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the patient's last key is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        key.credentials(&b).await.len(),
        2,
        "the key itself keeps both"
    );
    b.quit().await;
}
