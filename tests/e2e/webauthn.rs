//! The security-key ceremony endpoints (SPEC §10) over real sockets: `P/webauthn/…`
//! takes JSON only, with the same CSRF token as the forms (403 without it, nothing
//! started), needs the session its step needs (401 JSON otherwise), and does not exist
//! while `[webauthn]` is off. The ceremonies themselves run in a real browser
//! (`tests/browser/keys.rs`) and in-process (`src/signin/tests/keys.rs`).

use serde_json::{Value, json};

use crate::flows::*;
use crate::harness::*;

const KEYS: &str = "[webauthn]\nenabled = true\nrp_id = \"localhost\"\n";

/// Posts `body` as JSON (or as `content_type`) with `b`'s cookies.
async fn post(
    gw: &Gateway,
    b: &Browser,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = gw.client_builder().build().unwrap();
    let mut req = client
        .post(gw.url(&p(path)))
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(body.to_string());
    let cookies = b.cookie_header();
    if !cookies.is_empty() {
        req = req.header("cookie", cookies);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let json = resp.json().await.unwrap_or(Value::Null);
    (status, json, headers)
}

#[tokio::test]
async fn ceremony_endpoints_need_json_the_csrf_token_and_the_right_session() {
    let doc = TestUser::new("doctor", &["doctor"]);
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(std::slice::from_ref(&doc)))
        .extra(KEYS)
        .start()
        .await;
    let b = Browser::new(&gw);

    // No session: the 401 of §5.1.
    let login = b.get(&p("/login")).await;
    let token = login.csrf();
    let (status, body, _) = post(
        &gw,
        &b,
        "/webauthn/register/start",
        "application/json",
        &json!({ "csrf_token": token }),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "authentication_required");

    // A doctor at the enrollment step.
    let next = b.login_ok(&doc, "/records").await;
    assert!(next.starts_with(&p("/setup")), "{next}");
    let setup = b.get(&next).await;
    assert!(
        setup.body.contains("id=\"webauthn-register\""),
        "{}",
        setup.describe()
    );
    let csp = setup.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let token = setup.csrf();

    // Without a token, with another browser's token, or as a form: refused, nothing kept.
    for bad in [json!({}), json!({ "csrf_token": "x".repeat(43) })] {
        let (status, _, _) = post(
            &gw,
            &b,
            "/webauthn/register/start",
            "application/json",
            &bad,
        )
        .await;
        assert_eq!(status, 403, "{bad}");
    }
    let (status, _, _) = post(
        &gw,
        &b,
        "/webauthn/register/start",
        "application/x-www-form-urlencoded",
        &json!({ "csrf_token": token }),
    )
    .await;
    assert_eq!(status, 400, "only application/json");

    // Right: options for navigator.credentials.create() and a ceremony handle.
    let (status, body, headers) = post(
        &gw,
        &b,
        "/webauthn/register/start",
        "application/json",
        &json!({ "csrf_token": token, "name": "Blue key" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let pk = &body["options"]["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost");
    assert_eq!(pk["user"]["name"], "doctor");
    assert!(
        pk["challenge"].as_str().is_some_and(|c| c.len() >= 43),
        "{pk}"
    );
    assert!(body["ceremony"].as_str().is_some_and(|c| c.len() >= 43));

    // A made-up answer: not a credential (400), or not for this ceremony (401).
    let (status, _, _) = post(
        &gw,
        &b,
        "/webauthn/register/finish",
        "application/json",
        &json!({ "csrf_token": token, "ceremony": body["ceremony"], "credential": { "id": 1 } }),
    )
    .await;
    assert_eq!(status, 400);
    // The challenge step is not this session's step; passwordless is off.
    let (status, _, _) = post(
        &gw,
        &b,
        "/webauthn/challenge/start",
        "application/json",
        &json!({ "csrf_token": token }),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = post(
        &gw,
        &b,
        "/webauthn/passwordless/start",
        "application/json",
        &json!({ "csrf_token": token }),
    )
    .await;
    assert_eq!(status, 404);
    // Nothing was registered: the doctor still has to enroll.
    assert!(
        b.get("/records")
            .await
            .location()
            .unwrap_or_default()
            .starts_with(&p("/setup"))
    );
}

#[tokio::test]
async fn without_webauthn_the_endpoints_do_not_exist() {
    let doc = TestUser::new("doctor", &["doctor"]);
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(std::slice::from_ref(&doc)))
        .start()
        .await;
    let b = Browser::new(&gw);
    let next = b.login_ok(&doc, "/").await;
    let setup = b.get(&next).await;
    assert!(!setup.body.contains("webauthn"), "no key option when off");
    let token = setup.csrf();
    for path in ["/webauthn/register/start", "/webauthn/passwordless/start"] {
        let (status, _, _) = post(
            &gw,
            &b,
            path,
            "application/json",
            &json!({ "csrf_token": token }),
        )
        .await;
        assert_eq!(status, 404, "{path}");
    }
}
