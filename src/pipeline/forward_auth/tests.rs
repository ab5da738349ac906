//! The forward-auth answers in-process, through the whole pipeline: who may ask,
//! how the original request is read, and what each proxy's contract gets back. The
//! real nginx and Caddy in front are in `tests/e2e/forward_auth.rs`.

use std::net::Ipv4Addr;

use http::StatusCode;

use crate::pipeline::tests::{BROWSER, Fixture, get};

const PROXY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn described(uri: &str, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("x-forwarded-method", "GET".to_string()),
        ("x-forwarded-proto", "https".to_string()),
        ("x-forwarded-host", "records.clinic.test".to_string()),
        ("x-forwarded-uri", uri.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    h
}

fn ask(
    path: &str,
    headers: &[(&'static str, String)],
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    get(path, &pairs)
}

#[tokio::test]
async fn only_a_trusted_proxy_may_describe_a_request() {
    let f = Fixture::new().await;
    let cookie = f.signed_in().await;
    let endpoint = format!("{}/api/authz/forward-auth", f.prefix());
    let headers = described("/chart", &[]);
    let mut with_cookie = headers.clone();
    with_cookie.push(("cookie", cookie));
    // From a client (loopback is not in trusted_proxies): nothing is decided, even
    // with a valid session and a forged description.
    let (status, h, body) = f.send(ask(&endpoint, &with_cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("untrusted_proxy"));
    assert!(h.get("remote-user").is_none());
    // From the proxy: the same question is answered with the identity.
    let (status, h, _) = f.send_from(PROXY, ask(&endpoint, &with_cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.get("remote-user").unwrap(), "pat");
    assert_eq!(h.get("remote-mfa").unwrap(), "none");
    assert!(
        f.upstream.requests().is_empty(),
        "forward-auth never forwards"
    );
}

#[tokio::test]
async fn not_signed_in_a_navigation_is_sent_to_the_portal_with_the_original_url() {
    let f = Fixture::new().await;
    let fa = format!("{}/api/authz/forward-auth", f.prefix());
    let (status, h, _) = f
        .send_from(PROXY, ask(&fa, &described("/chart?id=7&x=1", &[BROWSER])))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = h.get("location").unwrap().to_str().unwrap();
    assert_eq!(
        location,
        format!(
            "https://records.clinic.test{}/login?rd=/chart%3Fid%3D7%26x%3D1",
            f.prefix()
        )
    );
    // An API call gets the 401 JSON instead.
    let (status, _, body) = f
        .send_from(PROXY, ask(&fa, &described("/api/x", &[])))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("authentication_required"));
    // nginx's endpoint: always 401, the sign-in URL in Location.
    let ar = format!("{}/api/authz/auth-request", f.prefix());
    let nginx = [
        (
            "x-original-url",
            "https://records.clinic.test/chart?id=7".to_string(),
        ),
        ("x-original-method", "GET".to_string()),
        ("accept", "text/html".to_string()),
    ];
    let (status, h, _) = f.send_from(PROXY, ask(&ar, &nginx)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        h.get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("/login?rd=/chart%3Fid%3D7"),
        "{h:?}"
    );
}

#[tokio::test]
async fn rules_and_roles_decide_on_the_original_path() {
    let f = Fixture::new().await;
    let cookie = f.signed_in().await;
    let fa = format!("{}/api/authz/forward-auth", f.prefix());
    let with = |uri: &str| {
        let mut h = described(uri, &[]);
        h.push(("cookie", cookie.clone()));
        h
    };
    // A bypass path: allowed, and no identity is claimed.
    let (status, h, _) = f
        .send_from(PROXY, ask(&fa, &described("/static/a.css", &[])))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get("remote-user").is_none());
    // A doctors' path for a patient: 403; a denied path: 403.
    for uri in ["/admin/x", "/internal/x", "/admin;x/y"] {
        let (status, _, _) = f.send_from(PROXY, ask(&fa, &with(uri))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
    }
    // A path that is not its own normal form is refused, whichever way it walks: the
    // proxy forwards it as sent, so the app would see another path than the one
    // decided ("/admin/../static/a.css" is a bypass path by its normal form, and the
    // doctors' page to an app that does not resolve dot segments).
    for uri in [
        "/static/../admin/x",
        "/admin/../static/a.css",
        "/admin/%2e%2e/static/a.css",
        "//static/a.css",
    ] {
        let (status, h, _) = f.send_from(PROXY, ask(&fa, &described(uri, &[]))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(h.get("remote-user").is_none());
        let (status, _, _) = f.send_from(PROXY, ask(&fa, &with(uri))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} with a session");
    }
    // nginx's endpoint turns any refusal but 401 into 403, never a 4xx nginx rejects.
    let ar = format!("{}/api/authz/auth-request", f.prefix());
    let bad = [(
        "x-original-url",
        "https://records.clinic.test/%zz".to_string(),
    )];
    let (status, _, _) = f.send_from(PROXY, ask(&ar, &bad)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An incomplete description decides nothing.
    let (status, _, _) = f
        .send_from(
            PROXY,
            ask(&fa, &[("x-forwarded-uri", "/chart".to_string())]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_step_up_rule_sends_the_portal_to_the_challenge() {
    use crate::core::auth_flow::SecondFactor;
    let f = Fixture::new().await;
    let fa = format!("{}/api/authz/forward-auth", f.prefix());
    let ar = format!("{}/api/authz/auth-request", f.prefix());
    let with = |cookie: &str, extra: &[(&'static str, &'static str)]| {
        let mut h = described("/rx/order", extra);
        h.push(("cookie", cookie.to_string()));
        h
    };
    // A code proven ten minutes ago is too old for max_factor_age = 5m.
    let stale = f
        .signed_in_with(Some(SecondFactor::Totp), 10 * 60_000)
        .await;
    let (status, h, _) = f
        .send_from(PROXY, ask(&fa, &with(&stale, &[BROWSER])))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = h.get("location").unwrap().to_str().unwrap();
    assert!(
        location.contains(&format!("{}/challenge?rd=", f.prefix())),
        "{location}"
    );
    let (status, _, body) = f.send_from(PROXY, ask(&fa, &with(&stale, &[]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("step_up_required"));
    let mut nginx = vec![(
        "x-original-url",
        "https://records.clinic.test/rx/order".to_string(),
    )];
    nginx.push(("cookie", stale.clone()));
    let (status, h, _) = f.send_from(PROXY, ask(&ar, &nginx)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        h.get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("/challenge?rd=")
    );
    // A fresh one passes; a user without a second factor is refused.
    let fresh = f.signed_in_with(Some(SecondFactor::Totp), 1_000).await;
    let (status, h, _) = f.send_from(PROXY, ask(&fa, &with(&fresh, &[]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.get("remote-mfa").unwrap(), "totp");
    let none = f.signed_in_with(None, 0).await;
    let (status, _, _) = f.send_from(PROXY, ask(&fa, &with(&none, &[]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
