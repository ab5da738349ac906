//! The journeys of SPEC §1 in a real browser: a patient signing in by keyboard alone,
//! a doctor's first sign-in with enrollment by scanning the QR code off the screen,
//! later challenges, remembered browsers, the account page, lockout, branding and
//! languages, and all of it without JavaScript.

use crate::chrome::{Chrome, ENTER, Options, TAB, TURN};
use crate::flows::*;
use crate::harness::*;

fn patient() -> TestUser {
    TestUser::new("patient", &["patient"])
}

fn doctor() -> TestUser {
    TestUser::new("doctor", &["doctor"])
}

async fn gateway(users: &[TestUser], extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(users))
        .extra(extra)
        .start()
        .await;
    (up, gw)
}

/// Every visible form field has a label, and the page says which language it is in.
async fn check_fields_labelled(b: &Chrome, lang: &str) {
    let unlabelled = b
        .js("return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
              .filter(i => !i.labels || i.labels.length === 0).map(i => i.outerHTML);")
        .await;
    assert_eq!(unlabelled, serde_json::json!([]), "fields without a label");
    assert_eq!(
        b.attr("html", "lang").await.as_deref(),
        Some(lang),
        "<html lang>"
    );
}

/// Signs in through the login form, by mouse and keyboard like a person.
async fn sign_in(b: &Chrome, user: &TestUser) {
    b.fill("#username", &user.name).await;
    b.fill("#password", &user.password).await;
    b.keys(ENTER).await;
}

async fn sign_out(b: &Chrome, gw: &Gateway) {
    b.goto(&gw.url(&p("/account"))).await;
    b.wait_path(&p("/account")).await;
    b.click("form[action$='/logout'] button").await;
    b.wait_path(&p("/login")).await;
    assert!(
        b.text("p.notice[role=status]").await.contains("signed out"),
        "no sign-out notice"
    );
}

/// The one QR code on the screen, read from a screenshot like a phone camera would.
async fn scan_qr_from_screen(b: &Chrome) -> String {
    b.js("document.querySelector('.qr img').scrollIntoView({block: 'center'}); return 1;")
        .await;
    let png = b.c.screenshot().await.unwrap();
    std::fs::write(
        crate::chrome::screenshot_dir().join("setup-qr-scan.png"),
        &png,
    )
    .unwrap();
    decode_qr(&png)
}

async fn backup_codes_on_page(b: &Chrome) -> Vec<String> {
    let mut codes = Vec::new();
    for e in b.find_all("code.backup-code").await {
        codes.push(e.text().await.unwrap().trim().to_string());
    }
    assert_eq!(codes.len(), 10, "backup codes shown: {codes:?}");
    for c in &codes {
        assert!(is_backup_code_shape(c), "backup code shape: {c}");
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_signs_in_by_keyboard_alone_and_out_again() {
    let _turn = TURN.lock().await;
    let pat = patient();
    let (_up, gw) = gateway(std::slice::from_ref(&pat), "").await;
    let b = Chrome::start(Options::default()).await;

    // A protected page sends the browser to sign in, remembering where it was going.
    b.goto(&gw.url("/records?week=12")).await;
    b.wait_path(&p("/login")).await;
    check_fields_labelled(&b, "en").await;
    assert_eq!(
        b.attr("#username", "autocomplete").await.as_deref(),
        Some("username")
    );
    assert_eq!(
        b.attr("#password", "autocomplete").await.as_deref(),
        Some("current-password")
    );
    b.shot("login").await;
    b.axe("login").await;

    // Keyboard only: the cursor starts in the username field (autofocus).
    assert_eq!(b.focused_id().await, "username");
    b.keys(&pat.name).await;
    b.keys(TAB).await;
    assert_eq!(b.focused_id().await, "password");
    let outline = b
        .js("return getComputedStyle(document.activeElement).outlineStyle;")
        .await;
    assert_eq!(outline, "solid", "focus must be visible");
    b.keys("not-the-password").await;
    b.keys(ENTER).await;

    // A wrong password: the message is announced and tied to the fields.
    let error = b.find("#login-error").await;
    assert_eq!(error.attr("role").await.unwrap().as_deref(), Some("alert"));
    assert!(error.text().await.unwrap().contains("not right"));
    for field in ["#username", "#password"] {
        assert_eq!(
            b.attr(field, "aria-describedby").await.as_deref(),
            Some("login-error")
        );
        assert_eq!(b.attr(field, "aria-invalid").await.as_deref(), Some("true"));
    }
    assert_eq!(
        b.attr("#username", "value").await.as_deref(),
        Some("patient")
    );
    b.shot("login-error").await;
    b.axe("login-error").await;

    // Tab from the (focused, prefilled) username to the password, type, Enter.
    assert_eq!(b.focused_id().await, "username");
    b.keys(TAB).await;
    assert_eq!(b.focused_id().await, "password");
    b.keys(&pat.password).await;
    b.keys(ENTER).await;
    b.wait_path("/records").await;
    assert_eq!(b.url().await.query(), Some("week=12"));
    assert!(
        b.source().await.contains("patient"),
        "upstream saw the user"
    );

    // The account page of a patient: 2FA off, a way to turn it on.
    b.goto(&gw.url(&p("/account"))).await;
    assert_eq!(b.text("#mfa-status").await, "Off");
    assert!(
        b.find("#enable-2fa")
            .await
            .attr("href")
            .await
            .unwrap()
            .is_some()
    );
    b.shot("account-patient").await;
    b.axe("account-patient").await;

    sign_out(&b, &gw).await;
    b.shot("login-signed-out").await;
    b.axe("login-signed-out").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_enrolls_from_the_screen_then_meets_challenges_and_the_account_page() {
    let _turn = TURN.lock().await;
    let doc = doctor();
    let (_up, gw) = gateway(std::slice::from_ref(&doc), "").await;
    let b = Chrome::start(Options::default()).await;

    // First sign-in: straight to enrollment.
    b.goto(&gw.url("/chart?view=today")).await;
    b.wait_path(&p("/login")).await;
    sign_in(&b, &doc).await;
    b.wait_path(&p("/setup")).await;
    check_fields_labelled(&b, "en").await;
    assert_eq!(b.focused_id().await, "code");
    assert_eq!(
        b.attr("#code", "inputmode").await.as_deref(),
        Some("numeric")
    );
    assert_eq!(
        b.attr("#code", "autocomplete").await.as_deref(),
        Some("one-time-code")
    );
    // The script's enhancements are there (and nothing depends on them).
    assert!(b.text(".countdown").await.contains(" s"));
    b.find("button.copy").await;
    b.shot("setup").await;
    b.axe("setup").await;

    // The phone scans the QR code off the screen.
    let uri = scan_qr_from_screen(&b).await;
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert_eq!(
        b.attr("#otpauth-uri", "href").await.as_deref(),
        Some(uri.as_str())
    );
    let secret_b32 = query_value(&uri, "secret").expect("secret in the QR code");
    let shown: String = b.text("#totp-secret").await.split_whitespace().collect();
    assert_eq!(
        shown, secret_b32,
        "the key on screen is the one in the QR code"
    );
    let phone = Authenticator::new(base32_decode(&secret_b32), 30);

    // Wrong code first: the error is announced and tied to the field.
    b.keys("000000").await;
    b.keys(ENTER).await;
    b.find("#code-error[role=alert]").await;
    assert!(
        b.attr("#code", "aria-describedby")
            .await
            .unwrap_or_default()
            .contains("code-error")
    );
    b.axe("setup-error").await;

    // The code the phone shows, typed in.
    b.fill("#code", &phone.fresh().await).await;
    b.keys(ENTER).await;
    b.wait_path(&p("/setup")).await;
    let codes = backup_codes_on_page(&b).await;
    b.shot("backup-codes").await;
    b.axe("backup-codes").await;

    // The download link holds the codes as a plain-text file, and downloads.
    let href = b.attr("#download-codes", "href").await.unwrap();
    let text = dec(href
        .strip_prefix("data:text/plain;charset=utf-8,")
        .expect("a data: URI of plain text"));
    for c in &codes {
        assert!(text.contains(c.as_str()), "download lacks {c}");
    }
    b.click("#download-codes").await;
    let file = b.downloaded("backup-codes.txt").await;
    for c in &codes {
        assert!(file.contains(c.as_str()), "downloaded file lacks {c}");
    }

    b.click("#continue").await;
    b.wait_path("/chart").await;
    assert_eq!(b.url().await.query(), Some("view=today"));

    // The account page with 2FA on.
    b.goto(&gw.url(&p("/account"))).await;
    assert_eq!(b.text("#mfa-status").await, "On");
    assert_eq!(b.text("#backup-codes-left").await, "10");
    b.shot("account").await;
    b.axe("account").await;
    sign_out(&b, &gw).await;

    // Next sign-in: the challenge. A wrong code first.
    sign_in(&b, &doc).await;
    b.wait_path(&p("/challenge")).await;
    check_fields_labelled(&b, "en").await;
    assert_eq!(b.focused_id().await, "code");
    b.shot("challenge").await;
    b.axe("challenge").await;
    b.keys("123456").await;
    b.keys(ENTER).await;
    let err = b.find("#code-error").await;
    assert_eq!(err.attr("role").await.unwrap().as_deref(), Some("alert"));
    assert_eq!(
        b.attr("#code", "aria-invalid").await.as_deref(),
        Some("true")
    );
    b.shot("challenge-error").await;
    b.axe("challenge-error").await;

    // The right code, and "remember this browser".
    b.fill("#code", &phone.fresh().await).await;
    b.click("#remember_device").await;
    b.click("form[action$='/challenge'] button[type=submit]")
        .await;
    b.wait_path("/").await;
    sign_out(&b, &gw).await;

    // A remembered browser skips the challenge.
    sign_in(&b, &doc).await;
    b.wait_path("/").await;

    // Account: one remembered browser; new backup codes with a current code.
    b.goto(&gw.url(&p("/account"))).await;
    assert_eq!(
        b.find_all("main ul.devices li").await.len(),
        1,
        "one remembered browser"
    );
    b.fill("#regen-code", &phone.fresh().await).await;
    b.keys(ENTER).await;
    b.wait_path(&p("/account/backup-codes")).await;
    let new_codes = backup_codes_on_page(&b).await;
    assert!(new_codes.iter().all(|c| !codes.contains(c)), "a new set");
    b.axe("backup-codes-regenerated").await;
    b.click("#continue").await;
    b.wait_path(&p("/account")).await;

    // Forget remembered browsers.
    b.click("form[action$='/forget-devices'] button").await;
    b.wait_path(&p("/account")).await;
    assert!(b.text("p.notice[role=status]").await.contains("forgotten"));
    b.shot("account-devices-forgotten").await;
    b.axe("account-devices-forgotten").await;
    sign_out(&b, &gw).await;

    // The challenge is back; a backup code of the new set gets through.
    sign_in(&b, &doc).await;
    b.wait_path(&p("/challenge")).await;
    b.keys(&new_codes[0]).await;
    b.keys(ENTER).await;
    b.wait_path("/").await;
    b.goto(&gw.url(&p("/account"))).await;
    assert_eq!(b.text("#backup-codes-left").await, "9");
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_page_names_the_wait_and_the_clinics_contact_in_its_branding() {
    let _turn = TURN.lock().await;
    let pat = patient();
    let assets = tempfile::tempdir().unwrap();
    let logo = assets.path().join("logo.svg");
    std::fs::write(
        &logo,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#1e4d2b"/><path d="M28 14h8v14h14v8H36v14h-8V36H14v-8h14z" fill="#fff"/></svg>"##,
    )
    .unwrap();
    let ui = format!(
        "[ui]\nclinic_name = \"Grey Sloan Clinic\"\nprimary_color = \"#1e4d2b\"\n\
         support_contact = \"the front desk, phone 555-0100\"\nlogo_file = {:?}\n\n\
         [lockout]\nmax_failures = 2\nduration = \"1m\"\n",
        logo.display().to_string()
    );
    let (_up, gw) = gateway(std::slice::from_ref(&pat), &ui).await;
    let b = Chrome::start(Options::default()).await;

    b.goto(&gw.url(&p("/login"))).await;
    assert!(b.c.title().await.unwrap().ends_with("Grey Sloan Clinic"));
    assert_eq!(b.text(".brand-name").await, "Grey Sloan Clinic");
    let logo_width = b
        .js("return document.querySelector('header .logo').naturalWidth;")
        .await;
    assert!(logo_width.as_u64().unwrap_or(0) > 0, "the logo loads");
    let header_bg = b
        .js("return getComputedStyle(document.querySelector('header.brand')).backgroundColor;")
        .await;
    assert_eq!(header_bg, "rgb(30, 77, 43)", "the clinic's colour");
    assert!(b.text("footer").await.contains("555-0100"));
    b.shot("login-branded").await;
    b.axe("login-branded").await;

    for _ in 0..2 {
        b.fill("#username", &pat.name).await;
        b.fill("#password", "wrong-password-123").await;
        b.keys(ENTER).await;
        b.find("h1").await;
    }
    assert_eq!(b.text("h1").await, "Too many attempts");
    assert_eq!(
        b.attr("#error-message", "role").await.as_deref(),
        Some("alert")
    );
    assert!(b.text("#retry-after").await.contains("seconds"));
    assert!(b.text("main .help").await.contains("555-0100"));
    b.shot("lockout").await;
    b.axe("lockout").await;

    // Another error page of the catalogue, for good measure.
    b.goto(&gw.url(&p("/nothing-here"))).await;
    assert_eq!(b.text("h1").await, "Not found");
    b.axe("not-found").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_speak_the_browsers_language() {
    let _turn = TURN.lock().await;
    let pat = patient();
    let (_up, gw) = gateway(std::slice::from_ref(&pat), "").await;
    let b = Chrome::start(Options {
        languages: "de-DE,de,en",
        javascript: true,
    })
    .await;
    b.goto(&gw.url(&p("/login"))).await;
    check_fields_labelled(&b, "de").await;
    assert_eq!(b.text("h1").await, "Anmelden");
    assert_eq!(b.text("label[for=password]").await, "Passwort");
    b.fill("#username", &pat.name).await;
    b.fill("#password", "falsch-falsch-falsch").await;
    b.keys(ENTER).await;
    assert!(b.text("#login-error").await.contains("Passwort"));
    b.shot("login-de").await;
    b.axe("login-de").await;
    b.quit().await;

    // Spanish, and q-values: the first supported language by weight wins.
    let client = gw.client();
    for (accept, lang, heading) in [
        ("fr-FR,fr;q=0.9,es;q=0.8,en;q=0.5", "es", "Iniciar sesión"),
        ("en;q=0.3,de;q=0.6", "de", "Anmelden"),
        ("fr", "en", "Sign in"),
    ] {
        let html = client
            .get(gw.url(&p("/login")))
            .header("accept-language", accept)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{accept}"
        );
        assert!(html.contains(heading), "{accept}: {heading}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_works_without_javascript() {
    let _turn = TURN.lock().await;
    let (pat, doc) = (patient(), doctor());
    let (_up, gw) = gateway(&[pat.clone(), doc.clone()], "").await;
    let b = Chrome::start(Options {
        languages: "en-US,en",
        javascript: false,
    })
    .await;

    b.goto(&gw.url("/records")).await;
    b.wait_path(&p("/login")).await;
    sign_in(&b, &pat).await;
    b.wait_path("/records").await;
    sign_out(&b, &gw).await;

    // Enrollment: read the QR code off the screen, type the code, get the codes.
    sign_in(&b, &doc).await;
    b.wait_path(&p("/setup")).await;
    assert!(!b.source().await.contains("class=\"countdown"));
    // Tall enough that the QR code is on screen without scrolling (no script to scroll).
    b.c.set_window_size(1280, 1800).await.unwrap();
    let png = b.c.screenshot().await.unwrap();
    b.c.set_window_size(1280, 900).await.unwrap();
    let uri = decode_qr(&png);
    let phone = Authenticator::new(
        base32_decode(&query_value(&uri, "secret").expect("secret")),
        30,
    );
    b.fill("#code", &phone.fresh().await).await;
    b.keys(ENTER).await;
    let codes = backup_codes_on_page(&b).await;
    b.click("#continue").await;
    b.wait_path("/").await;
    sign_out(&b, &gw).await;

    // The challenge, with a backup code.
    sign_in(&b, &doc).await;
    b.wait_path(&p("/challenge")).await;
    b.fill("#code", &codes[3]).await;
    b.keys(ENTER).await;
    b.wait_path("/").await;
    b.quit().await;
}
