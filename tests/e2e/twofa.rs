//! Issue "Two-factor authentication": enrollment, the code challenge, backup codes,
//! remembered devices, lockout and what must never be stored or logged (SPEC §5.3, §6).
//! TOTP codes come from `flows::hotp_sha1`, written independently of the product.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;

use crate::flows::*;
use crate::harness::*;

/// A short step keeps waits for an unspent step short.
const PERIOD: u64 = 15;

fn doctor() -> TestUser {
    TestUser::new("doc", &["doctor"])
}
fn clerk() -> TestUser {
    TestUser::new("clerk", &["clerk"])
}
fn patient() -> TestUser {
    TestUser::new("pat", &["patient"])
}

/// A gateway with doc, clerk and pat, `[totp] period = 15`, and `more` TOML.
async fn gateway(up: &Upstream, lockout: &str, more: &str) -> Gateway {
    Gateway::builder(up)
        .users_toml(&users_toml(&[doctor(), clerk(), patient()]))
        .extra(&format!("[totp]\nperiod = {PERIOD}\n\n[lockout]\nip_failures_per_minute = 100000\n{lockout}\n\n{more}"))
        .start()
        .await
}

/// Signs `user` in and completes enrollment in browser `b`. Returns the phone and
/// the backup codes shown.
async fn enroll(b: &Browser, user: &TestUser, period: u64) -> (Authenticator, Vec<String>) {
    let loc = b.login_ok(user, "/").await;
    assert!(
        loc.starts_with(&p("/setup")),
        "{} must be sent to setup first, got {loc}",
        user.name
    );
    let setup = b.get(&loc).await;
    let shown = read_setup(&setup);
    let auth = Authenticator::new(shown.secret, period);
    let code = auth.fresh().await;
    let done = b.submit(&setup, &p("/setup"), &[("code", &code)]).await;
    assert_eq!(
        done.status,
        200,
        "setup with a right code: {}",
        done.describe()
    );
    let codes = done.class_texts("backup-code");
    assert!(
        !codes.is_empty(),
        "no backup codes shown: {}",
        done.describe()
    );
    (auth, codes)
}

/// Signs in (password) and returns the challenge page.
async fn to_challenge(b: &Browser, user: &TestUser, rd: &str) -> Page {
    let loc = b.login_ok(user, rd).await;
    assert!(
        loc.starts_with(&p("/challenge")),
        "{} must be challenged, got {loc}",
        user.name
    );
    let page = b.get(&loc).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(
        page.form(&p("/challenge"))
            .is_some_and(|f| f.iter().any(|(n, _, _)| n == "code")),
        "challenge form lacks `code`"
    );
    page
}

async fn answer(b: &Browser, challenge: &Page, code: &str, remember: bool) -> Page {
    let mut set = vec![("code", code)];
    if remember {
        set.push(("remember_device", "on"));
    }
    b.submit(challenge, &p("/challenge"), &set).await
}

/// A six-digit code that is wrong for every step near now.
fn wrong_code(auth: &Authenticator) -> String {
    let now = auth.step_now();
    let near: Vec<String> = (now.saturating_sub(3)..=now + 3)
        .map(|s| auth.code_at(s))
        .collect();
    (0..)
        .map(|i: u32| format!("{:06}", (i * 7919 + 13) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

fn retry_after(page: &Page) -> u64 {
    page.header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {}", page.describe()))
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "Retry-After is not delta-seconds: {:?}",
                page.header("retry-after")
            )
        })
}

// ---------------------------------------------------------------- the independent TOTP itself

#[test]
fn independent_totp_matches_the_rfc_6238_reference_vectors() {
    let tsv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rfc6238-vectors.tsv"
    ))
    .unwrap();
    let mut checked = 0;
    for line in tsv.lines().skip(1).filter(|l| l.starts_with("SHA1\t")) {
        let f: Vec<&str> = line.split('\t').collect();
        let seed: Vec<u8> = (0..f[1].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&f[1][i..i + 2], 16).unwrap())
            .collect();
        let t: u64 = f[2].parse().unwrap();
        assert_eq!(u64::from_str_radix(f[3], 16).unwrap(), t / 30);
        assert_eq!(hotp_sha1(&seed, t / 30, 8), f[4], "T={t}");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} SHA1 vectors");
    let secret = b"12345678901234567890";
    assert_eq!(base32_decode(&base32_encode(secret)), secret);
    assert_eq!(base32_encode(secret), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
}

// ---------------------------------------------------------------- enrollment

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_enrolls_by_qr_or_key_saves_backup_codes_and_then_reaches_upstream_with_totp() {
    let up = Upstream::start().await;
    // Defaults for [totp] (period 30); 8 backup codes to see the count is honoured.
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&[doctor()]))
        .extra("[backup_codes]\ncount = 8")
        .start()
        .await;
    let doc = doctor();
    let b = Browser::new(&gw);
    let posted = b.login(&doc.name, &doc.password, "/ward/today").await;
    assert_eq!(posted.status, 303, "{}", posted.describe());
    let loc = posted.location().unwrap();
    assert!(
        loc.starts_with(&p("/setup")),
        "doctor without 2FA goes to setup, got {loc}"
    );
    let password_session = b.cookie(SESSION_COOKIE).unwrap();

    let setup = b.get(&loc).await;
    let shown = read_setup(&setup);
    assert!(
        shown.secret.len() * 8 >= 128,
        "TOTP secret shorter than 128 bits"
    );
    let b32: String = shown
        .secret_text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        shown.otpauth_uri.starts_with("otpauth://totp/"),
        "{}",
        shown.otpauth_uri
    );
    assert!(
        shown.otpauth_uri.contains("doc"),
        "the account name is in the label: {}",
        shown.otpauth_uri
    );
    let uri_secret = query_value(&shown.otpauth_uri, "secret").expect("otpauth URI without secret");
    assert_eq!(
        base32_decode(&uri_secret),
        shown.secret,
        "the link and the manual key differ"
    );
    assert_eq!(
        query_value(&shown.otpauth_uri, "issuer").as_deref(),
        Some("Clinic")
    );
    assert_eq!(
        decode_qr(&shown.qr_png),
        shown.otpauth_uri,
        "the QR code must hold exactly the otpauth URI"
    );

    // Reloading shows the same secret; the staff member still cannot pass.
    let again = read_setup(&b.get(&loc).await);
    assert_eq!(
        again.secret, shown.secret,
        "the secret changed before enrollment completed"
    );
    assert_eq!(b.api(Method::GET, "/ward/today").await.status, 401);
    assert_eq!(b.get("/ward/today").await.status, 302);
    assert_eq!(up.count(), 0);

    // A wrong code: the page again, with an error, and the same secret.
    let auth = Authenticator::new(shown.secret.clone(), 30);
    let wrong = b
        .submit(&setup, &p("/setup"), &[("code", &wrong_code(&auth))])
        .await;
    assert!(
        wrong.status >= 400 && wrong.status < 500 && wrong.status != 429,
        "{}",
        wrong.describe()
    );
    assert_eq!(
        read_setup_lenient(&wrong),
        shown.secret,
        "a wrong code changed the secret"
    );
    assert_eq!(up.count(), 0);

    // The right code (typed with a space, as people do).
    let code = auth.fresh().await;
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let done = b.submit(&wrong, &p("/setup"), &[("code", &spaced)]).await;
    assert_eq!(done.status, 200, "{}", done.describe());
    let new_session = b.cookie(SESSION_COOKIE).unwrap();
    assert_ne!(
        new_session, password_session,
        "the session id must change when enrollment completes"
    );
    let (codes, download) = read_backup_codes(&b, &done).await;
    assert_eq!(codes.len(), 8, "backup_codes.count = 8: {codes:?}");
    let mut uniq = codes.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 8, "backup codes repeat: {codes:?}");
    for c in &codes {
        assert!(
            is_backup_code_shape(c),
            "backup code {c:?} is not XXXXX-XXXXX"
        );
        assert!(
            download.contains(c.as_str()),
            "download lacks {c}: {download:?}"
        );
    }
    let cont = done.by_id("continue").or_else(|| {
        done.tags()
            .into_iter()
            .find(|t| t.name == "a" && t.attr("href").as_deref() == Some("/ward/today"))
    });
    let cont = cont.expect("no continue link").attr("href").unwrap();
    assert_eq!(cont, "/ward/today", "continue goes to rd");

    let page = b.get(&cont).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let rec = up.last();
    assert_eq!(rec.header_all("remote-user"), vec!["doc"]);
    assert_eq!(rec.header_all("remote-mfa"), vec!["totp"]);
    assert_eq!(rec.header_all("remote-groups"), vec!["doctor"]);
    assert_eq!(
        b.api(Method::GET, &p("/api/session")).await.json()["mfa"],
        "totp"
    );
    // The password-only id from before enrollment is dead.
    let old = gw
        .raw_get(
            "/ward/today",
            &[
                ("Cookie", &format!("{SESSION_COOKIE}={password_session}")),
                ("Accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(old.status, 401, "{}", old.raw);

    // Setup is over: it does not show the secret again.
    let after = b.get(&p("/setup")).await;
    assert!(
        !after.body.contains(&b32) && !after.body.contains(&shown.secret_text),
        "setup shows the secret after enrollment"
    );

    let logs = gw.logs();
    assert!(
        has_event(&logs, "mfa.enroll.started", "doc")
            && has_event(&logs, "mfa.enroll.completed", "doc"),
        "{logs}"
    );
    for s in codes.iter().map(String::as_str).chain([
        b32.as_str(),
        doc.password.as_str(),
        new_session.as_str(),
    ]) {
        assert!(!logs.contains(s), "{s:?} appears in the gateway's output");
    }
    assert!(
        !contains_numeric_code(&logs, &code),
        "the TOTP code appears in the gateway's output"
    );
}

/// The secret of a setup page answered with an error status.
fn read_setup_lenient(page: &Page) -> Vec<u8> {
    let text = page
        .text_by_id("totp-secret")
        .unwrap_or_else(|| panic!("no #totp-secret after a wrong code: {}", page.describe()));
    base32_decode(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_cannot_pass_before_enrolling_patients_are_not_asked_until_they_opt_in() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "", "").await;
    let cl = clerk();
    let c = Browser::new(&gw);
    let loc = c.login_ok(&cl, "/desk").await;
    assert!(loc.starts_with(&p("/setup")), "{loc}");
    let nav = c.get("/desk").await;
    assert_eq!(nav.status, 302);
    assert!(
        nav.location().unwrap().starts_with(&p("/setup")),
        "{}",
        nav.describe()
    );
    assert_eq!(c.api(Method::POST, "/desk/save").await.status, 401);
    assert_eq!(up.count(), 0, "a clerk without 2FA reached the upstream");

    let pat = patient();
    let b = Browser::new(&gw);
    assert_eq!(
        b.login_ok(&pat, "/portal").await,
        "/portal",
        "a patient is not asked for a code"
    );
    assert_eq!(b.get("/portal").await.status, 200);
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("none"));

    // The patient turns 2FA on from the account page.
    let acc = b.get(&p("/account")).await;
    assert_eq!(acc.status, 200, "{}", acc.describe());
    let link = acc
        .tags()
        .into_iter()
        .find(|t| t.name == "a" && t.attr("href").is_some_and(|h| h.starts_with(&p("/setup"))))
        .unwrap_or_else(|| {
            panic!(
                "no link to setup on the account page of a patient without 2FA: {}",
                acc.describe()
            )
        });
    let setup = b.get(&link.attr("href").unwrap()).await;
    let auth = Authenticator::new(read_setup(&setup).secret, PERIOD);
    let done = b
        .submit(&setup, &p("/setup"), &[("code", &auth.fresh().await)])
        .await;
    assert_eq!(done.status, 200, "{}", done.describe());
    assert!(!done.class_texts("backup-code").is_empty());
    let acc = b.get(&p("/account")).await;
    assert_eq!(
        acc.text_by_id("mfa-status").as_deref(),
        Some("On"),
        "{}",
        acc.describe()
    );
    assert_eq!(b.logout().await.status, 303);

    // From now on it is enforced for them too.
    let before = up.count();
    let b2 = Browser::new(&gw);
    let challenge = to_challenge(&b2, &pat, "/portal").await;
    assert_eq!(b2.api(Method::GET, "/portal").await.status, 401);
    assert_eq!(up.count(), before);
    let ok = answer(&b2, &challenge, &auth.fresh().await, false).await;
    assert_eq!(ok.status, 303, "{}", ok.describe());
    assert_eq!(ok.location().as_deref(), Some("/portal"));
    b2.follow(ok).await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("totp"));
}

// ---------------------------------------------------------------- codes: replay and skew

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_codes_are_refused_and_only_one_step_of_skew_is_accepted() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "", "").await;
    let doc = doctor();
    let b = Browser::new(&gw);
    let loc = b.login_ok(&doc, "/").await;
    let setup = b.get(&loc).await;
    let auth = Authenticator::new(read_setup(&setup).secret, PERIOD);

    auth.wait_for_room(9.0).await;
    let cur = auth.step_now();
    let r = b
        .submit(&setup, &p("/setup"), &[("code", &auth.code_at(cur - 2))])
        .await;
    assert_eq!(
        r.status,
        401,
        "a code two steps old must be refused: {}",
        r.describe()
    );
    let r = b
        .submit(&r, &p("/setup"), &[("code", &auth.code_at(cur + 2))])
        .await;
    assert_eq!(
        r.status,
        401,
        "a code two steps ahead must be refused: {}",
        r.describe()
    );
    let done = b
        .submit(&r, &p("/setup"), &[("code", &auth.code_at(cur - 1))])
        .await;
    assert_eq!(
        done.status,
        200,
        "a code one step old (skew 1) must be accepted: {}",
        done.describe()
    );

    let b2 = Browser::new(&gw);
    let ch = to_challenge(&b2, &doc, "/").await;
    let ahead = auth.code_at(cur + 1);
    let ok = answer(&b2, &ch, &ahead, false).await;
    assert_eq!(
        ok.status,
        303,
        "a code one step ahead (skew 1) must be accepted: {}",
        ok.describe()
    );

    let b3 = Browser::new(&gw);
    let ch = to_challenge(&b3, &doc, "/").await;
    let replay = answer(&b3, &ch, &ahead, false).await;
    assert_eq!(
        replay.status,
        401,
        "a replayed code must be refused: {}",
        replay.describe()
    );
    let replay = answer(&b3, &replay, &auth.code_at(cur - 1), false).await;
    assert_eq!(
        replay.status,
        401,
        "the enrollment code replayed must be refused: {}",
        replay.describe()
    );
    assert_eq!(
        auth.step_now(),
        cur,
        "the clock moved on during the test; its step arithmetic no longer holds"
    );
    assert_eq!(b3.api(Method::GET, "/").await.status, 401);
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------- backup codes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_codes_work_once_even_under_concurrency_and_regenerating_voids_the_old_set() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "max_failures = 1000\ncode_max_failures = 1000", "").await;
    let doc = doctor();
    let b0 = Browser::new(&gw);
    let (auth, codes) = enroll(&b0, &doc, PERIOD).await;
    assert_eq!(codes.len(), 10);

    let b1 = Browser::new(&gw);
    let ch = to_challenge(&b1, &doc, "/chart").await;
    let ok = answer(&b1, &ch, &codes[0], false).await;
    assert_eq!(ok.status, 303, "{}", ok.describe());
    b1.follow(ok).await;
    assert_eq!(
        up.last().header("remote-mfa").as_deref(),
        Some("backup-code")
    );
    let used = audit_events(&gw.logs())
        .into_iter()
        .find(|e| e["event"] == "mfa.backup_code.used")
        .expect("no mfa.backup_code.used event");
    assert_eq!(used["remaining"], 9, "{used}");

    let b2 = Browser::new(&gw);
    let ch = to_challenge(&b2, &doc, "/").await;
    let again = answer(&b2, &ch, &codes[0], false).await;
    assert_eq!(
        again.status,
        401,
        "a used backup code worked twice: {}",
        again.describe()
    );
    // Written differently (lower case, no dash): still the same, used code.
    let again = answer(
        &b2,
        &again,
        &codes[0].replace('-', "").to_lowercase(),
        false,
    )
    .await;
    assert_eq!(again.status, 401, "{}", again.describe());

    // One code, 20 password-done sessions, all at once: exactly one gets in.
    let sessions: Vec<(Browser, Page)> = futures_util::stream::iter(0..20)
        .map(|_| async {
            let b = Browser::new(&gw);
            let ch = to_challenge(&b, &doc, "/").await;
            (b, ch)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let code = codes[1].clone();
    let results: Vec<u16> = futures_util::future::join_all(sessions.iter().map(|(b, ch)| {
        let code = code.clone();
        async move { answer(b, ch, &code, false).await.status }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|s| **s == 303).count(),
        1,
        "one backup code, 20 concurrent uses: {results:?}"
    );
    // Attempts beyond lockout.max_failures in flight at once are refused (429) before
    // their code is looked at (SPEC §6): each is counted before it is checked.
    assert!(
        results.iter().all(|s| [303, 401, 429].contains(s)),
        "{results:?}"
    );

    let acc = b1.get(&p("/account")).await;
    assert_eq!(
        acc.text_by_id("backup-codes-left").as_deref(),
        Some("8"),
        "{}",
        acc.describe()
    );

    // Regenerating needs a current code.
    let bad = b1
        .submit(
            &acc,
            &p("/account/backup-codes"),
            &[("code", &wrong_code(&auth))],
        )
        .await;
    assert_eq!(
        bad.status,
        401,
        "regenerate with a wrong code: {}",
        bad.describe()
    );
    assert!(bad.class_texts("backup-code").is_empty());
    let acc = b1.get(&p("/account")).await;
    let fresh = b1
        .submit(
            &acc,
            &p("/account/backup-codes"),
            &[("code", &auth.fresh().await)],
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.describe());
    let (new_codes, download) = read_backup_codes(&b1, &fresh).await;
    assert_eq!(new_codes.len(), 10);
    for c in &new_codes {
        assert!(is_backup_code_shape(c) && !codes.contains(c) && download.contains(c.as_str()));
    }
    let b3 = Browser::new(&gw);
    let ch = to_challenge(&b3, &doc, "/").await;
    let old = answer(&b3, &ch, &codes[2], false).await;
    assert_eq!(
        old.status,
        401,
        "an old backup code still works after regenerating: {}",
        old.describe()
    );
    let new = answer(&b3, &old, &new_codes[0], false).await;
    assert_eq!(
        new.status,
        303,
        "a new backup code must work: {}",
        new.describe()
    );
    assert!(has_event(&gw.logs(), "mfa.backup_codes.regenerated", "doc"));
}

// ---------------------------------------------------------------- remembered devices

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_device_skips_the_challenge_for_its_user_only_and_dies_on_reset_and_password_change()
 {
    let up = Upstream::start().await;
    let gw = gateway(&up, "", "").await;
    let (doc, cl) = (doctor(), clerk());
    let b = Browser::new(&gw);
    let (doc_auth, _) = enroll(&b, &doc, PERIOD).await;
    let c = Browser::new(&gw);
    let (clerk_auth, _) = enroll(&c, &cl, PERIOD).await;

    // doc ticks "remember this browser".
    b.logout().await;
    let ch = to_challenge(&b, &doc, "/").await;
    let ok = answer(&b, &ch, &doc_auth.fresh().await, true).await;
    assert_eq!(ok.status, 303, "{}", ok.describe());
    let set = ok
        .set_cookie(DEVICE_COOKIE)
        .expect("remember_device must set the device cookie");
    let l = set.to_ascii_lowercase();
    assert!(
        l.contains("httponly") && l.contains("secure") && l.contains("max-age="),
        "{set}"
    );
    let first_token = b.cookie(DEVICE_COOKIE).unwrap();

    b.logout().await;
    let loc = b.login_ok(&doc, "/notes").await;
    assert_eq!(loc, "/notes", "a remembered browser skips the challenge");
    b.get("/notes").await;
    assert_eq!(
        up.last().header("remote-mfa").as_deref(),
        Some("remembered-device")
    );
    let second_token = b.cookie(DEVICE_COOKIE).unwrap();
    assert_ne!(
        second_token, first_token,
        "the device token must be replaced when used"
    );

    // Another user in a browser carrying doc's device cookie is still challenged.
    let d = Browser::new(&gw);
    d.set_cookie(DEVICE_COOKIE, &second_token);
    let loc = d.login_ok(&cl, "/").await;
    assert!(
        loc.starts_with(&p("/challenge")),
        "doc's device cookie let clerk skip the challenge: {loc}"
    );
    // The old (replaced) token no longer works for doc either.
    let e = Browser::new(&gw);
    e.set_cookie(DEVICE_COOKIE, &first_token);
    assert!(
        e.login_ok(&doc, "/").await.starts_with(&p("/challenge")),
        "a replaced device token still works"
    );

    // `2fa reset` voids it: doc must enroll again, and doc's sessions end.
    b.logout().await;
    assert_eq!(
        b.login_ok(&doc, "/").await,
        "/",
        "still remembered before the reset"
    );
    let out = admin(&gw, &["2fa", "reset", "doc"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        b.api(Method::GET, "/x").await.status,
        401,
        "2fa reset must end doc's sessions"
    );
    let loc = b.login_ok(&doc, "/").await;
    assert!(
        loc.starts_with(&p("/setup")),
        "after 2fa reset the remembered device must not count: {loc}"
    );

    // A password change voids clerk's remembered browser.
    c.logout().await;
    let ch = to_challenge(&c, &cl, "/").await;
    assert_eq!(
        answer(&c, &ch, &clerk_auth.fresh().await, true)
            .await
            .status,
        303
    );
    c.logout().await;
    assert_eq!(
        c.login_ok(&cl, "/").await,
        "/",
        "clerk's browser is remembered"
    );
    let new_pw = "a-brand-new-Passw0rd-e2e";
    let out = admin(
        &gw,
        &["users", "set-password", "clerk"],
        Some(&format!("{new_pw}\n")),
    )
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    let loc = loop {
        let r = c.login("clerk", new_pw, "/").await;
        if r.status == 303 {
            break r.location().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new password was not picked up within 12 s: {}",
            r.describe()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        loc.starts_with(&p("/challenge")),
        "after a password change the remembered device must not count: {loc}"
    );
    let logs = gw.logs();
    assert!(
        !logs.contains(new_pw) && !out.all().contains(new_pw),
        "the new password was echoed or logged"
    );
    for t in [first_token, second_token] {
        assert!(!logs.contains(&t), "a device token appears in the output");
    }
}

// ---------------------------------------------------------------- lockout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_lockout_answers_429_with_retry_after_for_known_and_unknown_names_then_expires() {
    let up = Upstream::start().await;
    let gw = gateway(
        &up,
        "max_failures = 3\nduration = \"2s\"\nmax_duration = \"1m\"",
        "",
    )
    .await;
    let pat = patient();
    let b = Browser::new(&gw);
    for i in 0..3 {
        let r = b.login(&pat.name, "wrong-password-xyz", "/").await;
        assert!(
            r.status == 401 || (i == 2 && r.status == 429),
            "failure {i}: {}",
            r.describe()
        );
    }
    let locked = b.login(&pat.name, &pat.password, "/").await;
    assert_eq!(
        locked.status,
        429,
        "the right password during a lock: {}",
        locked.describe()
    );
    let wait = retry_after(&locked);
    assert!((1..=2).contains(&wait), "Retry-After {wait} for a 2 s lock");
    assert!(locked.set_cookie(SESSION_COOKIE).is_none());
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 400)).await;
    assert_eq!(
        b.login(&pat.name, &pat.password, "/").await.status,
        303,
        "the lock must expire"
    );

    // Unknown names are counted and locked the same way.
    let u = Browser::new(&gw);
    for _ in 0..3 {
        u.login("ghost", "wrong-password-xyz", "/").await;
    }
    let r = u.login("ghost", "wrong-password-xyz", "/").await;
    assert_eq!(
        r.status,
        429,
        "an unknown name must lock like a known one: {}",
        r.describe()
    );
    assert!(retry_after(&r) >= 1);

    // Names compare case-insensitively.
    for _ in 0..3 {
        b.login("PAT", "wrong-password-xyz", "/").await;
    }
    let r = b.login("pat", &pat.password, "/").await;
    assert_eq!(
        r.status,
        429,
        "failures as PAT must lock pat: {}",
        r.describe()
    );
    let logs = gw.logs();
    assert!(
        has_event(&logs, "login.locked", "pat") || has_event(&logs, "login.locked", "PAT"),
        "no login.locked event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_step_lock_survives_a_right_password_and_expires_with_time() {
    let up = Upstream::start().await;
    let gw = gateway(
        &up,
        "max_failures = 3\nduration = \"2s\"\nmax_duration = \"1m\"",
        "",
    )
    .await;
    let doc = doctor();
    let b0 = Browser::new(&gw);
    let (auth, _) = enroll(&b0, &doc, PERIOD).await;

    let b = Browser::new(&gw);
    let mut page = to_challenge(&b, &doc, "/").await;
    for i in 0..3 {
        let r = answer(&b, &page, &wrong_code(&auth), false).await;
        assert!(
            r.status == 401 || (i == 2 && r.status == 429),
            "wrong code {i}: {}",
            r.describe()
        );
        if r.status == 401 {
            page = r;
        }
    }
    // While locked even the right code is refused (not consumed: peek at the step).
    let r = answer(&b, &page, &auth.code_at(auth.step_now()), false).await;
    assert_eq!(
        r.status,
        429,
        "the right code during a code lock: {}",
        r.describe()
    );
    assert!(retry_after(&r) >= 1);

    // A right password does not reset the code step.
    let b2 = Browser::new(&gw);
    let ch = to_challenge(&b2, &doc, "/").await;
    let r = answer(&b2, &ch, &auth.code_at(auth.step_now()), false).await;
    assert_eq!(
        r.status,
        429,
        "a right password reset the code lock: {}",
        r.describe()
    );
    assert!(
        has_event(&gw.logs(), "mfa.locked", "doc"),
        "no mfa.locked event"
    );

    tokio::time::sleep(Duration::from_millis(retry_after(&r) * 1000 + 400)).await;
    let ok = answer(&b2, &ch, &auth.fresh().await, false).await;
    assert_eq!(
        ok.status,
        303,
        "the code lock must expire: {}",
        ok.describe()
    );
    b2.follow(ok).await;
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("totp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_unlock_lifts_password_locks_code_locks_and_the_permanent_code_block() {
    let up = Upstream::start().await;
    // A long lock, so only `users unlock` can explain a success.
    let gw = gateway(&up, "max_failures = 3\nduration = \"10m\"", "").await;
    let (pat, doc) = (patient(), doctor());
    let b = Browser::new(&gw);
    for _ in 0..3 {
        b.login(&pat.name, "wrong-password-xyz", "/").await;
    }
    assert_eq!(b.login(&pat.name, &pat.password, "/").await.status, 429);
    let out = admin(&gw, &["users", "unlock", "pat"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        has_event(&out.all(), "user.unlocked", "pat")
            || has_event(&gw.logs(), "user.unlocked", "pat"),
        "no user.unlocked event: {out}"
    );
    assert_eq!(
        b.login(&pat.name, &pat.password, "/").await.status,
        303,
        "users unlock must lift the password lock"
    );

    let b0 = Browser::new(&gw);
    let (auth, _) = enroll(&b0, &doc, PERIOD).await;
    let b1 = Browser::new(&gw);
    let ch = to_challenge(&b1, &doc, "/").await;
    let mut page = ch.clone();
    for _ in 0..3 {
        let r = answer(&b1, &page, &wrong_code(&auth), false).await;
        if r.status == 401 {
            page = r;
        }
    }
    assert_eq!(
        answer(&b1, &ch, &auth.code_at(auth.step_now()), false)
            .await
            .status,
        429
    );
    assert_eq!(
        admin(&gw, &["users", "unlock", "doc"], None).await.code,
        Some(0)
    );
    let ok = answer(&b1, &ch, &auth.fresh().await, false).await;
    assert_eq!(
        ok.status,
        303,
        "users unlock must lift the code lock: {}",
        ok.describe()
    );

    // code_max_failures: a block that time does not lift, only `users unlock`.
    let up2 = Upstream::start().await;
    let gw2 = gateway(
        &up2,
        "max_failures = 2\nduration = \"1s\"\nmax_duration = \"1s\"\ncode_max_failures = 4",
        "",
    )
    .await;
    let b0 = Browser::new(&gw2);
    let (auth, _) = enroll(&b0, &doc, PERIOD).await;
    let b1 = Browser::new(&gw2);
    let ch = to_challenge(&b1, &doc, "/").await;
    for round in 0..2 {
        for _ in 0..2 {
            answer(&b1, &ch, &wrong_code(&auth), false).await;
        }
        let r = answer(&b1, &ch, &auth.code_at(auth.step_now()), false).await;
        assert_eq!(r.status, 429, "round {round}: {}", r.describe());
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    let r = answer(&b1, &ch, &auth.code_at(auth.step_now()), false).await;
    assert_eq!(
        r.status,
        429,
        "after code_max_failures the code step stays blocked: {}",
        r.describe()
    );
    let b2 = Browser::new(&gw2);
    let ch2 = to_challenge(&b2, &doc, "/").await;
    assert_eq!(
        answer(&b2, &ch2, &auth.code_at(auth.step_now()), false)
            .await
            .status,
        429,
        "a new login does not lift the block"
    );
    assert_eq!(
        admin(&gw2, &["users", "unlock", "doc"], None).await.code,
        Some(0)
    );
    let ok = answer(&b2, &ch2, &auth.fresh().await, false).await;
    assert_eq!(
        ok.status,
        303,
        "users unlock must lift the code block: {}",
        ok.describe()
    );
}

// ---------------------------------------------------------------- turning 2FA off

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_cannot_turn_two_factor_off_but_a_patient_can() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "", "").await;
    let doc = doctor();
    let b = Browser::new(&gw);
    let (auth, _) = enroll(&b, &doc, PERIOD).await;
    let acc = b.get(&p("/account")).await;
    assert_eq!(acc.status, 200);
    assert!(
        !acc.has_form(&p("/account/disable-2fa")),
        "the account page offers a doctor to turn 2FA off"
    );
    let r = b
        .post_form(
            &p("/account/disable-2fa"),
            &[("csrf_token", &acc.csrf()), ("code", &auth.fresh().await)],
        )
        .await;
    assert_eq!(r.status, 403, "a doctor turning 2FA off: {}", r.describe());
    let status = admin(&gw, &["2fa", "status", "doc"], None).await;
    assert!(
        status.stdout.to_lowercase().contains("enabled")
            && !status.stdout.to_lowercase().contains("disabled"),
        "{status}"
    );
    let b2 = Browser::new(&gw);
    to_challenge(&b2, &doc, "/").await;

    // A patient who turned it on may turn it off again.
    let pat = patient();
    let c = Browser::new(&gw);
    c.login_ok(&pat, "/").await;
    let setup = c.get(&p("/setup")).await;
    let pauth = Authenticator::new(read_setup(&setup).secret, PERIOD);
    assert_eq!(
        c.submit(&setup, &p("/setup"), &[("code", &pauth.fresh().await)])
            .await
            .status,
        200
    );
    let acc = c.get(&p("/account")).await;
    let off = c
        .submit(
            &acc,
            &p("/account/disable-2fa"),
            &[("code", &pauth.fresh().await)],
        )
        .await;
    assert_eq!(off.status, 303, "{}", off.describe());
    c.logout().await;
    assert_eq!(
        c.login_ok(&pat, "/").await,
        "/",
        "2FA is off again for the patient"
    );
}

// ---------------------------------------------------------------- nothing secret at rest or in logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_and_logs_never_hold_a_totp_secret_backup_code_password_or_token() {
    let up = Upstream::start().await;
    let gw = gateway(&up, "", "").await;
    let (doc, pat) = (doctor(), patient());
    let b = Browser::new(&gw);
    let (auth, codes1) = enroll(&b, &doc, PERIOD).await;
    let mut sessions = vec![b.cookie(SESSION_COOKIE).unwrap()];
    let mut used_codes = vec![];

    // Use a backup code, regenerate, remember a device, fail once each way.
    let b1 = Browser::new(&gw);
    let ch = to_challenge(&b1, &doc, "/").await;
    assert_eq!(answer(&b1, &ch, &codes1[0], false).await.status, 303);
    sessions.push(b1.cookie(SESSION_COOKIE).unwrap());
    let acc = b1.get(&p("/account")).await;
    let code = auth.fresh().await;
    used_codes.push(code.clone());
    let regen = b1
        .submit(&acc, &p("/account/backup-codes"), &[("code", &code)])
        .await;
    assert_eq!(regen.status, 200, "{}", regen.describe());
    let codes2 = regen.class_texts("backup-code");
    let b2 = Browser::new(&gw);
    let ch = to_challenge(&b2, &doc, "/").await;
    let wrong = answer(&b2, &ch, &wrong_code(&auth), false).await;
    assert_eq!(wrong.status, 401);
    let code = auth.fresh().await;
    used_codes.push(code.clone());
    assert_eq!(answer(&b2, &wrong, &code, true).await.status, 303);
    let device = b2.cookie(DEVICE_COOKIE).expect("device cookie");
    sessions.push(b2.cookie(SESSION_COOKIE).unwrap());
    let wrong_pw = "Wr0ng-but-close-pw-e2e";
    assert_eq!(
        Browser::new(&gw)
            .login(&doc.name, wrong_pw, "/")
            .await
            .status,
        401
    );
    let pb = Browser::new(&gw);
    pb.login_ok(&pat, "/").await;
    sessions.push(pb.cookie(SESSION_COOKIE).unwrap());
    let csrf = pb.cookie(CSRF_COOKIE).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b32 = base32_encode(&auth.secret);
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("raw TOTP secret".into(), auth.secret.clone()),
        ("base32 TOTP secret".into(), b32.clone().into_bytes()),
        (
            "base32 TOTP secret (lower case)".into(),
            b32.to_lowercase().into_bytes(),
        ),
        (
            "doctor's password".into(),
            doc.password.clone().into_bytes(),
        ),
        (
            "patient's password".into(),
            pat.password.clone().into_bytes(),
        ),
        ("wrong password".into(), wrong_pw.as_bytes().to_vec()),
        ("remember-device token".into(), device.into_bytes()),
        ("CSRF cookie".into(), csrf.into_bytes()),
    ];
    for c in codes1.iter().chain(codes2.iter()) {
        needles.push((format!("backup code {c}"), c.clone().into_bytes()));
        needles.push((
            format!("backup code {c} without dash"),
            c.replace('-', "").into_bytes(),
        ));
    }
    for s in &sessions {
        needles.push(("session id".into(), s.clone().into_bytes()));
    }

    let data_dir = gw.p.dir.path().join("data");
    let files = files_under(&data_dir);
    assert!(
        !files.is_empty(),
        "nothing under storage.path {}",
        data_dir.display()
    );
    let total: usize = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len() as usize).unwrap_or(0))
        .sum();
    assert!(total > 0, "the store is empty");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for (what, n) in &needles {
            assert!(
                !contains(&bytes, n),
                "{} holds the {what} in plain text",
                f.display()
            );
        }
    }

    let logs = gw.logs();
    for (what, n) in &needles {
        assert!(
            !contains(logs.as_bytes(), n),
            "the gateway's output holds the {what}"
        );
    }
    for c in &used_codes {
        assert!(
            !contains_numeric_code(&logs, c),
            "the gateway's output holds a TOTP code {c}"
        );
    }
}
