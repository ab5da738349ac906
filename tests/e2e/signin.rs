//! Issue "Sign-in and sessions": the password step, sessions, what the upstream sees
//! of a signed-in person, and the ways a session ends (SPEC §5, §6).

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;

use crate::flows::*;
use crate::harness::*;

fn patient() -> TestUser {
    TestUser::new("pat", &["patient", "portal"])
}
fn patient2() -> TestUser {
    TestUser::new("pat2", &["patient"])
}
fn doctor() -> TestUser {
    TestUser::new("doc", &["doctor"])
}
fn disabled() -> TestUser {
    TestUser::new("gone", &["patient"]).disabled()
}

fn users() -> Vec<TestUser> {
    vec![patient(), patient2(), doctor(), disabled()]
}

fn builder(up: &Upstream) -> GatewayBuilder {
    Gateway::builder(up).users_toml(&users_toml(&users()))
}

/// A signed-in patient browser (complete session).
async fn signed_in(gw: &Gateway, u: &TestUser) -> Browser {
    let b = Browser::new(gw);
    let loc = b.login_ok(u, "/").await;
    assert_eq!(loc, "/", "a patient goes straight to rd");
    b
}

/// A raw HTTP/1.1 request carrying `cookie`, with extra header lines.
async fn raw_with_cookie(
    gw: &Gateway,
    method: &str,
    target: &str,
    cookie: &str,
    extra: &str,
) -> RawResponse {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nCookie: {cookie}\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n",
        gw.authority()
    );
    gw.raw(req.as_bytes()).await
}

// ---------------------------------------------------------------- what the upstream sees

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_login_reaches_upstream_with_identity_headers_and_without_gateway_cookies() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let pat = patient();
    let b = Browser::new(&gw);

    // A navigation without a session goes to the login form, keeping the target.
    let first = b.get("/records/visit?id=7").await;
    assert_eq!(first.status, 302, "{}", first.describe());
    let login_page = b.follow(first).await;
    assert_eq!(login_page.status, 200, "{}", login_page.describe());
    assert_eq!(
        login_page.input("rd").as_deref(),
        Some("/records/visit?id=7"),
        "hidden rd must carry the original target"
    );
    assert!(
        login_page
            .form(&p("/login"))
            .is_some_and(|f| f.iter().any(|(n, _, _)| n == "username")
                && f.iter().any(|(n, _, _)| n == "password"))
    );
    assert_eq!(up.count(), 0);

    let posted = b
        .submit(
            &login_page,
            &p("/login"),
            &[("username", &pat.name), ("password", &pat.password)],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.describe());
    assert_eq!(posted.location().as_deref(), Some("/records/visit?id=7"));
    let sc = posted
        .set_cookie(SESSION_COOKIE)
        .expect("login must set the session cookie");
    let lower = sc.to_ascii_lowercase();
    for attr in ["httponly", "secure", "samesite=lax", "path=/"] {
        assert!(lower.contains(attr), "session cookie lacks {attr}: {sc}");
    }
    assert!(
        !lower.contains("domain="),
        "session cookie must be host-only: {sc}"
    );
    let session_value = b.cookie(SESSION_COOKIE).unwrap();
    assert!(
        session_value.len() >= 22,
        "session id too short for 128 bits: {}",
        session_value.len()
    );

    // Cookies of the application and a (stale) device cookie travel with the browser.
    b.set_cookie("app_pref", "blue");
    b.set_cookie(DEVICE_COOKIE, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let page = b.follow(posted).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let rec = up.last();
    assert_eq!(rec.uri, "/records/visit?id=7");
    assert_eq!(rec.header_all("remote-user"), vec!["pat"]);
    assert_eq!(rec.header_all("remote-email"), vec![pat.email()]);
    assert_eq!(rec.header_all("remote-name"), vec![pat.display_name()]);
    assert_eq!(rec.header_all("remote-groups"), vec!["patient,portal"]);
    assert_eq!(rec.header_all("remote-mfa"), vec!["none"]);

    // Second request: the upstream's own cookies came back through the browser.
    b.get("/records/next").await;
    let rec = up.last();
    let cookie = rec.header_all("cookie").join("; ");
    for own in [
        SESSION_COOKIE,
        CSRF_COOKIE,
        DEVICE_COOKIE,
        "vestibule_session",
        "vestibule_csrf",
        "vestibule_device",
    ] {
        assert!(
            !cookie.contains(own),
            "gateway cookie {own} reached the upstream: {cookie:?}"
        );
    }
    assert!(
        !cookie.contains(&session_value),
        "session value reached the upstream: {cookie:?}"
    );
    for other in ["app_pref=blue", "up_a=1", "up_b=2"] {
        assert!(
            cookie.contains(other),
            "other cookie {other} must pass: {cookie:?}"
        );
    }
    assert_eq!(up.count(), 2);

    // P/api/session describes the complete session.
    let api = b.api(Method::GET, &p("/api/session")).await;
    assert_eq!(api.status, 200, "{}", api.describe());
    assert!(
        api.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let j = api.json();
    assert_eq!(j["user"], "pat");
    assert_eq!(j["display_name"], pat.display_name());
    assert_eq!(j["email"], pat.email());
    assert_eq!(j["roles"], serde_json::json!(["patient", "portal"]));
    assert_eq!(j["mfa"], "none");
    let exp = j["expires_at"].as_str().expect("expires_at string");
    let exp = humantime::parse_rfc3339_weak(exp)
        .unwrap_or_else(|e| panic!("expires_at {exp:?} is not RFC 3339: {e}"));
    assert!(
        exp > std::time::SystemTime::now(),
        "expires_at lies in the past"
    );
    assert_eq!(up.count(), 2, "the gateway's own API is not forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_with_only_a_password_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let b = Browser::new(&gw);
    let loc = b.login_ok(&doctor(), "/chart").await;
    assert!(
        loc.starts_with(&p("/setup")),
        "a doctor without 2FA must be sent to setup, got {loc}"
    );

    let nav = b.get("/chart").await;
    assert_eq!(nav.status, 302, "{}", nav.describe());
    assert!(
        nav.location().unwrap().starts_with(&p("/setup")),
        "{}",
        nav.describe()
    );
    for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
        let r = b.api(m.clone(), "/api/patients").await;
        assert_eq!(
            r.status,
            401,
            "{m} with a password-only staff session: {}",
            r.describe()
        );
        assert_eq!(r.json()["error"], "authentication_required");
    }
    let form_post = b.post_form("/chart/notes", &[("note", "x")]).await;
    assert_eq!(
        form_post.status,
        401,
        "a form POST is not a navigation: {}",
        form_post.describe()
    );
    let api = b.api(Method::GET, &p("/api/session")).await;
    assert_eq!(
        api.status,
        401,
        "an incomplete session is not a session: {}",
        api.describe()
    );
    let raw = raw_with_cookie(
        &gw,
        "GET",
        "/chart",
        &b.cookie_header(),
        "Remote-MFA: totp\r\nRemote-User: doc\r\n",
    )
    .await;
    assert_eq!(raw.status, 401, "{}", raw.raw);
    assert_eq!(
        up.count(),
        0,
        "a password-only staff session reached the upstream: {:?}",
        up.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream_on_authenticated_paths() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let pat = patient();
    let b = signed_in(&gw, &pat).await;
    let identity = [
        "Remote-User",
        "Remote-Email",
        "Remote-Name",
        "Remote-Groups",
        "Remote-MFA",
    ];
    let strip = [
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Original-URL",
        "X-Rewrite-URL",
    ];
    let mut extra = String::new();
    let mut n = 0;
    for name in identity.iter().chain(strip.iter()) {
        for v in [
            name.to_string(),
            name.to_ascii_lowercase(),
            name.to_ascii_uppercase(),
            name.replace('-', "_"),
            name.to_ascii_lowercase().replace('-', "_"),
        ] {
            extra.push_str(&format!("{v}: spoofed-{n}\r\n"));
            n += 1;
        }
    }
    // Headers named in Connection (including an identity header) are hop-by-hop.
    extra.push_str("Connection: X-Hop-Secret, Remote-User\r\nX-Hop-Secret: spoofed-hop\r\n");
    let r = raw_with_cookie(&gw, "GET", "/profile", &b.cookie_header(), &extra).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let rec = up.last();
    assert_eq!(rec.header_all("remote-user"), vec!["pat"]);
    assert_eq!(rec.header_all("remote-email"), vec![pat.email()]);
    assert_eq!(rec.header_all("remote-name"), vec![pat.display_name()]);
    assert_eq!(rec.header_all("remote-groups"), vec!["patient,portal"]);
    assert_eq!(rec.header_all("remote-mfa"), vec!["none"]);
    for name in strip.iter().chain(["X-Hop-Secret"].iter()) {
        assert!(
            !rec.has_header_like(name),
            "{name} reached the upstream: {:?}",
            rec.headers
        );
    }
    for (k, v) in &rec.headers {
        assert!(
            !v.contains("spoofed"),
            "spoofed value reached the upstream in {k}: {v}"
        );
        assert!(
            !k.contains('_'),
            "an underscore spelling reached the upstream: {k}"
        );
    }
    // Same on HTTP/2 (reqwest refuses Connection there; the rest applies).
    let r = gw
        .client()
        .get(gw.url("/profile2"))
        .header("cookie", b.cookie_header())
        .header("remote-user", "admin")
        .header("remote_groups", "admin")
        .header("REMOTE-MFA", "totp")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = up.last();
    assert_eq!(rec.uri, "/profile2");
    assert_eq!(rec.header_all("remote-user"), vec!["pat"]);
    assert_eq!(rec.header_all("remote-groups"), vec!["patient,portal"]);
    assert_eq!(rec.header_all("remote-mfa"), vec!["none"]);
    assert!(
        !rec.headers.iter().any(|(k, _)| k.contains('_')),
        "{:?}",
        rec.headers
    );
}

// ---------------------------------------------------------------- session ids

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_id_changes_on_login_planted_ids_are_not_adopted_and_logout_kills_the_old_id() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let pat = patient();
    let b = Browser::new(&gw);
    let planted = "PlantedByAnAttackerPlantedByAnAttacker12345";
    assert_eq!(planted.len(), 43);
    b.set_cookie(SESSION_COOKIE, planted);
    b.login_ok(&pat, "/").await;
    let first = b.cookie(SESSION_COOKIE).unwrap();
    assert_ne!(
        first, planted,
        "the login adopted a session id chosen by the client"
    );
    let attacker = raw_with_cookie(
        &gw,
        "GET",
        "/inbox",
        &format!("{SESSION_COOKIE}={planted}"),
        "",
    )
    .await;
    assert_eq!(
        attacker.status, 401,
        "the planted id must not be signed in: {}",
        attacker.raw
    );

    // Signing in again (same browser) issues another id; the previous one is dead.
    b.login_ok(&pat, "/").await;
    let second = b.cookie(SESSION_COOKIE).unwrap();
    assert_ne!(second, first, "a new login must issue a new session id");
    let old = raw_with_cookie(
        &gw,
        "GET",
        "/inbox",
        &format!("{SESSION_COOKIE}={first}"),
        "",
    )
    .await;
    assert_eq!(
        old.status, 401,
        "the id from before the new login still works: {}",
        old.raw
    );

    let ok = b.api(Method::GET, "/inbox").await;
    assert_eq!(ok.status, 200, "{}", ok.describe());
    let forwarded = up.count();
    assert_eq!(forwarded, 1);

    let out = b.logout().await;
    assert_eq!(out.status, 303, "{}", out.describe());
    assert!(
        out.location().unwrap().starts_with(&p("/login")),
        "{}",
        out.describe()
    );
    let cleared = out
        .set_cookie(SESSION_COOKIE)
        .expect("logout must clear the cookie");
    assert!(
        cleared.to_ascii_lowercase().contains("max-age=0") || cleared.contains("1970"),
        "{cleared}"
    );
    assert!(b.cookie(SESSION_COOKIE).is_none());

    // Replaying the old cookie after logout: refused everywhere, nothing forwarded.
    let cookie = format!("{SESSION_COOKIE}={second}");
    for (m, target) in [
        ("GET", "/inbox"),
        ("POST", "/inbox/send"),
        ("GET", "/_vestibule/api/session"),
    ] {
        let r = raw_with_cookie(&gw, m, target, &cookie, "").await;
        assert_eq!(
            r.status, 401,
            "{m} {target} with a logged-out id: {}",
            r.raw
        );
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{}",
            r.raw
        );
        let j: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("401 body is not JSON ({e}): {}", r.raw));
        assert_eq!(j["error"], "authentication_required");
        assert_eq!(j["login"], p("/login"));
    }
    let nav = gw
        .raw_get("/inbox", &[("Cookie", &cookie), ("Accept", "text/html")])
        .await;
    assert_eq!(nav.status, 302, "{}", nav.raw);
    assert!(nav.header("location").unwrap().starts_with(&p("/login")));
    assert_eq!(
        up.count(),
        forwarded,
        "a logged-out session reached the upstream"
    );
}

// ---------------------------------------------------------------- expiry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_a_quiet_session_but_not_a_busy_one() {
    let up = Upstream::start().await;
    let gw = builder(&up)
        .extra("[session]\nidle_timeout = \"3s\"\nabsolute_timeout = \"1h\"")
        .start()
        .await;
    let b = signed_in(&gw, &patient()).await;
    // Busy for 5 s (longer than the idle timeout): one request a second keeps it alive.
    for i in 0..5 {
        let r = b.api(Method::GET, &format!("/busy/{i}")).await;
        assert_eq!(
            r.status,
            200,
            "request {i} of an active session: {}",
            r.describe()
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    // Quiet for longer than the idle timeout.
    tokio::time::sleep(Duration::from_millis(3600)).await;
    let before = up.count();
    let r = b.api(Method::GET, "/after-idle").await;
    assert_eq!(
        r.status,
        401,
        "an idle session must have ended: {}",
        r.describe()
    );
    let s = b.api(Method::GET, &p("/api/session")).await;
    assert_eq!(s.status, 401);
    assert_eq!(up.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_timeout_ends_even_a_busy_session() {
    let up = Upstream::start().await;
    let gw = builder(&up)
        .extra("[session]\nidle_timeout = \"1h\"\nabsolute_timeout = \"3s\"")
        .start()
        .await;
    let b = signed_in(&gw, &patient()).await;
    let start = std::time::Instant::now();
    let r = b.api(Method::GET, "/busy").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let mut ended = None;
    while start.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = b.api(Method::GET, "/busy").await;
        if r.status == 401 {
            ended = Some(start.elapsed());
            break;
        }
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let ended = ended.expect("a busy session outlived absolute_timeout = 3s");
    assert!(
        ended >= Duration::from_millis(2500),
        "ended too early: {ended:?}"
    );
    // A fresh login works again.
    let b2 = signed_in(&gw, &patient()).await;
    assert_eq!(b2.api(Method::GET, "/again").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_kill_9_and_restart() {
    let up = Upstream::start().await;
    let mut gw = builder(&up).start().await;
    let b = signed_in(&gw, &patient()).await;
    assert_eq!(b.api(Method::GET, "/before").await.status, 200);
    gw.kill9_and_restart().await;
    let r = b.api(Method::GET, "/after").await;
    assert_eq!(
        r.status,
        200,
        "the session did not survive kill -9: {}\n{}",
        r.describe(),
        gw.log_tail()
    );
    assert_eq!(up.last().header("remote-user").as_deref(), Some("pat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_revoke_while_serving_takes_effect_on_the_next_request() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let pat = signed_in(&gw, &patient()).await;
    let pat_again = signed_in(&gw, &patient()).await;
    let other = signed_in(&gw, &patient2()).await;
    assert_eq!(pat.api(Method::GET, "/x").await.status, 200);
    let out = admin(&gw, &["sessions", "revoke", "pat"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        has_event(&out.all(), "session.revoked", "pat")
            || has_event(&gw.logs(), "session.revoked", "pat"),
        "no session.revoked audit event: {out}"
    );
    let before = up.count();
    for b in [&pat, &pat_again] {
        let r = b.api(Method::GET, "/x").await;
        assert_eq!(
            r.status,
            401,
            "revoked session still works: {}",
            r.describe()
        );
    }
    assert_eq!(up.count(), before, "a revoked session reached the upstream");
    assert_eq!(
        other.api(Method::GET, "/y").await.status,
        200,
        "revoking pat must not end pat2's session"
    );
}

// ---------------------------------------------------------------- redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_corpus_always_ends_on_this_site_after_a_complete_login() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/open-redirects.txt"
    ))
    .unwrap();
    let payloads: Vec<String> = corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(dec)
        .collect();
    assert!(payloads.len() > 500);
    let pat = patient();
    let origin = reqwest::Url::parse(&gw.url("/")).unwrap().origin();
    let started = std::time::Instant::now();
    let failures: Vec<String> = futures_util::stream::iter(payloads.iter().cloned())
        .map(|rd| {
            let (gw, pat, origin) = (&gw, &pat, origin.clone());
            async move {
                let b = Browser::new(gw);
                let form = b.get(&format!("{}?rd={}", p("/login"), enc(&rd))).await;
                if form.status != 200 {
                    return Some(format!("{rd:?}: login form answered {}", form.status));
                }
                let hidden = form.input("rd").unwrap_or_default();
                if form.url.join(&hidden).map(|u| u.origin()) != Ok(origin.clone()) {
                    return Some(format!(
                        "{rd:?}: the form's hidden rd {hidden:?} leaves the site"
                    ));
                }
                // Post the attacker's value itself, not the form's cleaned copy.
                let r = b
                    .submit(
                        &form,
                        &p("/login"),
                        &[
                            ("username", &pat.name),
                            ("password", &pat.password),
                            ("rd", &rd),
                        ],
                    )
                    .await;
                if r.status != 303 {
                    return Some(format!("{rd:?}: login answered {}", r.status));
                }
                let loc = r.location().unwrap_or_default();
                match r.location_url() {
                    Some(u) if u.origin() == origin => None,
                    _ => Some(format!("{rd:?}: Location {loc:?} leaves the site")),
                }
            }
        })
        .buffer_unordered(6)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} open redirects:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "open-redirect corpus: {} logins in {:?}",
        payloads.len(),
        started.elapsed()
    );

    // An on-site target whose query merely contains `//` is kept as is.
    let b = Browser::new(&gw);
    let r = b.login(&pat.name, &pat.password, "/ok?next=//evil").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location().as_deref(), Some("/ok?next=//evil"));
    assert_eq!(up.count(), 0, "logins alone forward nothing");
}

// ---------------------------------------------------------------- CSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_a_valid_csrf_token_get_403_and_change_nothing() {
    let up = Upstream::start().await;
    let gw = builder(&up)
        .extra("[lockout]\nmax_failures = 3\nip_failures_per_minute = 100000")
        .start()
        .await;
    let pat = patient();
    let a = Browser::new(&gw);
    let b = Browser::new(&gw);
    let form_a = a.get(&p("/login")).await;
    let form_b = b.get(&p("/login")).await;
    let token_a = form_a.csrf();
    assert!(b.cookie(CSRF_COOKIE).is_some() && a.cookie(CSRF_COOKIE) != b.cookie(CSRF_COOKIE));

    // Right credentials, but no token / another browser's token / no CSRF cookie.
    let r = b
        .post_form(
            &p("/login"),
            &[
                ("username", &pat.name),
                ("password", &pat.password),
                ("rd", "/"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "login without csrf_token: {}", r.describe());
    assert!(
        r.set_cookie(SESSION_COOKIE).is_none(),
        "a refused login issued a session"
    );
    let r = b
        .post_form(
            &p("/login"),
            &[
                ("username", &pat.name),
                ("password", &pat.password),
                ("rd", "/"),
                ("csrf_token", &token_a),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        403,
        "login with another browser's token: {}",
        r.describe()
    );
    assert!(r.set_cookie(SESSION_COOKIE).is_none());
    let c = Browser::new(&gw);
    let r = c
        .post_form(
            &p("/login"),
            &[
                ("username", &pat.name),
                ("password", &pat.password),
                ("rd", "/"),
                ("csrf_token", &token_a),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        403,
        "login with a token but no CSRF cookie: {}",
        r.describe()
    );
    assert!(b.api(Method::GET, &p("/api/session")).await.status == 401);

    // Refused wrong-password posts are not counted towards the lock (max_failures = 3).
    for _ in 0..4 {
        let r = b
            .post_form(
                &p("/login"),
                &[
                    ("username", &pat.name),
                    ("password", "wrong-password-123"),
                    ("rd", "/"),
                ],
            )
            .await;
        assert_eq!(r.status, 403);
    }
    let ok = b
        .submit(
            &form_b,
            &p("/login"),
            &[("username", &pat.name), ("password", &pat.password)],
        )
        .await;
    assert_eq!(
        ok.status,
        303,
        "refused posts must change nothing (no lock): {}",
        ok.describe()
    );

    // Logout without a token, or with another browser's: 403, still signed in.
    let r = b.post_form(&p("/logout"), &[]).await;
    assert_eq!(r.status, 403, "logout without csrf_token: {}", r.describe());
    let r = b
        .post_form(&p("/logout"), &[("csrf_token", &token_a)])
        .await;
    assert_eq!(
        r.status,
        403,
        "logout with another browser's token: {}",
        r.describe()
    );
    let s = b.api(Method::GET, &p("/api/session")).await;
    assert_eq!(
        s.status,
        200,
        "a refused logout ended the session: {}",
        s.describe()
    );
    assert_eq!(b.api(Method::GET, "/still-in").await.status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_wrong_password_and_disabled_account_get_the_same_answer() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let gone = disabled();
    let mut answers = vec![];
    for (user, pw) in [
        ("nobody", "pw-nobody-Zq8!vK2#e2e"),
        ("pat", "not-the-password-1"),
        (gone.name.as_str(), gone.password.as_str()),
    ] {
        let b = Browser::new(&gw);
        let r = b.login(user, pw, "/").await;
        assert!(
            r.set_cookie(SESSION_COOKIE).is_none(),
            "{user}: a failed login issued a session"
        );
        let msg = r.text_by_id("login-error").or_else(|| {
            r.tags()
                .iter()
                .find(|t| t.attr("role").as_deref() == Some("alert"))
                .map(|t| inner_text(&r.body, t))
        });
        answers.push((user.to_string(), r.status, msg));
    }
    assert_eq!(answers[0].1, 401, "{answers:?}");
    assert!(
        answers[0].2.as_ref().is_some_and(|m| !m.is_empty()),
        "no error message shown: {answers:?}"
    );
    for a in &answers[1..] {
        assert_eq!(
            (a.1, &a.2),
            (answers[0].1, &answers[0].2),
            "answers differ: {answers:?}"
        );
    }
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------- request hygiene with a session

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_outside_the_allow_list_gets_421_even_with_a_valid_session() {
    let up = Upstream::start().await;
    let gw = builder(&up)
        .hostnames(&["127.0.0.1", "clinic.example"])
        .start()
        .await;
    let b = signed_in(&gw, &patient()).await;
    let cookie = b.cookie_header();
    for host in ["evil.example", "clinic.example.evil.com"] {
        for target in ["/records", "/_vestibule/api/session", "/_vestibule/account"] {
            let req = format!(
                "GET {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            );
            let r = gw.raw(req.as_bytes()).await;
            assert_eq!(r.status, 421, "Host {host} {target}: {}", r.raw);
        }
    }
    assert_eq!(up.count(), 0);
    let req = format!(
        "GET /records HTTP/1.1\r\nHost: clinic.example\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(gw.raw(req.as_bytes()).await.status, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_requests_get_xff_replaced_paths_normalised_and_bad_encodings_refused() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let b = signed_in(&gw, &patient()).await;
    let cookie = b.cookie_header();
    let r = raw_with_cookie(
        &gw,
        "GET",
        "/who",
        &cookie,
        "X-Forwarded-For: 203.0.113.66, 10.0.0.1\r\nX-Forwarded-Proto: http\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let rec = up.last();
    assert_eq!(
        rec.header_all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "untrusted X-Forwarded-For must be replaced"
    );
    assert_eq!(rec.header_all("x-forwarded-proto"), vec!["https"]);

    for (sent, expected) in [
        ("/a/./b//c/../d?q=1", "/a/b/d?q=1"),
        ("/%72ecords/%7Ex", "/records/~x"),
        ("//x///y", "/x/y"),
    ] {
        let r = raw_with_cookie(&gw, "GET", sent, &cookie, "").await;
        assert_eq!(r.status, 200, "{sent}: {}", r.raw);
        let rec = up.last();
        assert_eq!(rec.uri, expected, "{sent} forwarded as {}", rec.uri);
        assert_eq!(rec.header("remote-user").as_deref(), Some("pat"));
    }
    let before = up.count();
    for bad in [
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/a%00b",
        "/a/%2e%2e/%2e%2e/b",
        "/../b",
    ] {
        let r = raw_with_cookie(&gw, "GET", bad, &cookie, "").await;
        assert_eq!(r.status, 400, "{bad} with a session: {}", r.raw);
    }
    assert_eq!(up.count(), before, "a refused path reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_from_a_foreign_origin_is_refused_even_with_a_session() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let b = signed_in(&gw, &patient()).await;
    let cookie = b.cookie_header();
    for origin in [
        "https://evil.example",
        "http://127.0.0.1",
        &format!("https://127.0.0.1:{}", free_port()),
    ] {
        let r = ws_handshake(&gw, "/live/ws", origin, &cookie).await;
        assert_eq!(r, Err(403), "upgrade from {origin} with a valid session");
    }
    assert_eq!(up.count(), 0, "a cross-origin upgrade reached the upstream");
    let own = format!("https://{}", gw.authority());
    assert_eq!(
        ws_handshake(&gw, "/live/ws", &own, &cookie).await,
        Ok(()),
        "same-origin upgrade with a session"
    );
    let rec = up.last();
    assert_eq!(rec.header("remote-user").as_deref(), Some("pat"));
}

// ---------------------------------------------------------------- audit and secrets in logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_logged_and_no_password_or_cookie_value_appears_in_the_output() {
    let up = Upstream::start().await;
    let gw = builder(&up).start().await;
    let pat = patient();
    let wrong = "Wr0ng-pass-for-audit-e2e";
    let b = Browser::new(&gw);
    let r = b.login(&pat.name, wrong, "/").await;
    assert_eq!(r.status, 401);
    b.login_ok(&pat, "/").await;
    let mut secrets: Vec<String> = vec![pat.password.clone(), wrong.to_string()];
    secrets.extend(
        [SESSION_COOKIE, CSRF_COOKIE]
            .iter()
            .filter_map(|c| b.cookie(c)),
    );
    secrets.push(b.get(&p("/account")).await.csrf());
    assert_eq!(b.api(Method::GET, "/work").await.status, 200);
    let out = b.logout().await;
    assert_eq!(out.status, 303);
    let c = signed_in(&gw, &patient()).await;
    secrets.extend(
        [SESSION_COOKIE, CSRF_COOKIE]
            .iter()
            .filter_map(|n| c.cookie(n)),
    );
    let revoke = admin(&gw, &["sessions", "revoke", "pat"], None).await;
    assert_eq!(revoke.code, Some(0), "{revoke}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = gw.logs();
    let events = audit_events(&logs);
    for ev in ["login.success", "login.failure", "session.logout"] {
        let e = events
            .iter()
            .find(|e| e["event"] == ev && e["user"] == "pat")
            .unwrap_or_else(|| panic!("no {ev} audit event for pat in:\n{logs}"));
        let ts = e["ts"]
            .as_str()
            .unwrap_or_else(|| panic!("{ev} without ts: {e}"));
        humantime::parse_rfc3339_weak(ts)
            .unwrap_or_else(|err| panic!("{ev}: ts {ts:?} not RFC 3339: {err}"));
        assert_eq!(e["ip"], "127.0.0.1", "{ev}: {e}");
    }
    let all = format!("{logs}\n{}", revoke.all());
    assert!(
        has_event(&all, "session.revoked", "pat"),
        "no session.revoked audit event:\n{}",
        revoke.all()
    );
    for s in &secrets {
        assert!(
            !all.contains(s.as_str()),
            "a password, token or cookie value appears in the output: {s:?}"
        );
    }
}
