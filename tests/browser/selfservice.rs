//! SPEC §12 in a real browser: a doctor sees where they are signed in and signs another
//! browser out, changes their password (a refusal first, announced per field), and
//! meets a step-up on a sensitive path. axe-core checks each new page at desktop and
//! phone size; the screenshots feed the staff guide.

use std::time::Duration;

use crate::chrome::{Chrome, ENTER, Options, TURN};
use crate::flows::*;
use crate::harness::*;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
const NEW_PW: &str = "violet staple harbour 42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_manages_sessions_changes_password_and_steps_up() {
    let _turn = TURN.lock().await;
    let doc = TestUser::new("doctor", &["doctor"]);
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(std::slice::from_ref(&doc)))
        .extra("[totp]\nperiod = 15\n")
        .rule("path_prefix = \"/rx/\"\naccess = \"authenticated\"\nmax_factor_age = \"3s\"")
        .start()
        .await;
    let b = Chrome::start(Options::default()).await;

    // Sign in and enroll, reading the key off the page.
    b.goto(&gw.url(&p("/login"))).await;
    b.fill("#username", &doc.name).await;
    b.fill("#password", &doc.password).await;
    b.keys(ENTER).await;
    b.wait_path(&p("/setup")).await;
    let secret: String = b.text("#totp-secret").await.split_whitespace().collect();
    let phone = Authenticator::new(base32_decode(&secret), 15);
    b.fill("#code", &phone.fresh().await).await;
    b.keys(ENTER).await;
    b.wait_path(&p("/setup")).await;
    b.click("#continue").await;
    b.wait_path("/").await;

    // The same doctor on another computer (a plain HTTP client with a Windows UA).
    let mut other = Browser::new(&gw);
    other.user_agent = CHROME_WINDOWS.to_string();
    let loc = other.login_ok(&doc, "/").await;
    let page = other.get(&loc).await;
    let code = phone.fresh().await;
    let done = other
        .submit(&page, &p("/challenge"), &[("code", &code)])
        .await;
    assert_eq!(done.status, 303, "{}", done.describe());
    assert_eq!(other.get("/").await.status, 200);

    // The account page lists both; this browser is marked.
    b.goto(&gw.url(&p("/account"))).await;
    b.find("#this-browser").await;
    assert_eq!(b.find_all("ul.sessions li").await.len(), 2);
    assert!(b.text("ul.sessions").await.contains("Chrome on Windows"));
    b.shot_at("account-sessions", Some("#sessions-heading"))
        .await;
    b.axe_sizes("account-sessions").await;

    // Sign the other computer out.
    b.click("ul.sessions form[action$='/sessions/revoke'] button")
        .await;
    b.wait_path(&p("/account")).await;
    assert!(b.text("p.notice[role=status]").await.contains("signed out"));
    assert_eq!(b.find_all("ul.sessions li").await.len(), 1);
    assert_eq!(
        other.get("/").await.status,
        302,
        "the other computer is still in"
    );

    // Password change: a wrong current password first, announced at its field.
    b.fill("#current_password", "not the password").await;
    b.fill("#new_password", NEW_PW).await;
    b.fill("#new_password_confirm", NEW_PW).await;
    // Never checked: the current password is wrong first.
    b.fill("#password-code", "000000").await;
    b.click("form[action$='/account/password'] button[type=submit]")
        .await;
    b.wait_path(&p("/account/password")).await;
    b.find("#current_password-error").await;
    assert_eq!(
        b.attr("#current_password", "aria-invalid").await.as_deref(),
        Some("true")
    );
    b.shot_at("account-password-error", Some("#password")).await;
    b.axe_sizes("account-password-error").await;
    // Then right.
    b.fill("#current_password", &doc.password).await;
    b.fill("#new_password", NEW_PW).await;
    b.fill("#new_password_confirm", NEW_PW).await;
    b.fill("#password-code", &phone.fresh().await).await;
    b.click("form[action$='/account/password'] button[type=submit]")
        .await;
    b.wait_path(&p("/account")).await;
    assert!(
        b.text("p.notice[role=status]")
            .await
            .contains("password is changed")
    );
    b.shot_at("account-password", Some("#password")).await;

    // Step-up: the code a few seconds ago is too old for /rx/.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    b.goto(&gw.url("/rx/today")).await;
    b.wait_path(&p("/challenge")).await;
    assert_eq!(b.text("h1").await, "Confirm it is you");
    assert!(b.find_all("#remember_device").await.is_empty());
    assert_eq!(b.focused_id().await, "code");
    b.shot("step-up").await;
    b.axe_sizes("step-up").await;
    b.fill("#code", &phone.fresh().await).await;
    b.keys(ENTER).await;
    b.wait_path("/rx/today").await;
    b.quit().await;
}
