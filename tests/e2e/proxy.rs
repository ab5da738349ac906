//! Forwarding behaviour: SPEC §5.1 (deciding a request, before any login) and
//! §5.2 (what reaches the upstream and what comes back).

use std::time::{Duration, Instant};

use crate::harness::*;

const STRIP_DEFAULTS: &[&str] = &[
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Original-URL",
    "X-Rewrite-URL",
];
const IDENTITY_DEFAULTS: &[&str] = &[
    "Remote-User",
    "Remote-Email",
    "Remote-Name",
    "Remote-Groups",
    "Remote-MFA",
];

async fn bypass_gateway(up: &Upstream) -> Gateway {
    Gateway::builder(up).bypass("/static/").start().await
}

fn location_rd(location: &str) -> Option<String> {
    let url = reqwest::Url::parse("https://base.invalid/")
        .unwrap()
        .join(location)
        .ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
}

// ---------------------------------------------------------------- bypass basics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_rule_forwards_method_path_query_headers_and_body_both_ways() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client_h1();

    for (i, method) in [reqwest::Method::POST, reqwest::Method::PUT]
        .into_iter()
        .enumerate()
    {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let resp = client
            .request(
                method.clone(),
                gw.url("/static/echo/item?x=1&y=a%20b&status=201"),
            )
            .header("X-Custom", "hello")
            .header("X-Multi", "one")
            .header("X-Multi", "two")
            .header("Content-Type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "upstream status must come back unchanged"
        );
        assert_eq!(
            resp.headers().get("x-upstream").unwrap(),
            "echo",
            "upstream response header lost"
        );
        let cookies: Vec<_> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            cookies,
            vec![
                "up_a=1; Path=/".to_string(),
                "up_b=2; Path=/; HttpOnly".to_string()
            ],
            "upstream Set-Cookie headers must pass unchanged"
        );
        let echo = echo_of(&resp.bytes().await.unwrap());
        assert_eq!(echo["method"], method.as_str());

        let rec = up.wait_records(i + 1, Duration::from_secs(5)).await[i].clone();
        assert_eq!(rec.method, method.as_str());
        assert_eq!(rec.uri, "/static/echo/item?x=1&y=a%20b&status=201");
        assert_eq!(rec.header("x-custom").as_deref(), Some("hello"));
        assert_eq!(
            rec.header_all("x-multi"),
            vec!["one", "two"],
            "repeated headers must all be forwarded, in order"
        );
        assert_eq!(
            rec.header("content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(rec.body_len, body.len() as u64);
        assert_eq!(
            rec.body_sha256,
            sha256_hex(&body),
            "request body altered on the way"
        );
        assert_eq!(
            echo["body_sha256"], rec.body_sha256,
            "response body altered on the way back"
        );
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_get_and_head_pass_through_and_upstream_error_statuses_come_back() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client();
    let r = client
        .get(gw.url("/static/missing?status=404"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "an upstream 404 must reach the client as 404"
    );
    let r = client
        .head(gw.url("/static/file.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recs = up.wait_records(2, Duration::from_secs(5)).await;
    assert_eq!(recs[1].method, "HEAD");
    assert_eq!(recs[1].uri, "/static/file.css");
}

// ---------------------------------------------------------------- header hygiene

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strips_client_identity_and_strip_list_headers_in_any_case_and_underscore_spelling() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;

    let mut spoofed: Vec<String> = vec![];
    for name in IDENTITY_DEFAULTS.iter().chain(STRIP_DEFAULTS) {
        spoofed.push(name.to_string());
        spoofed.push(name.to_ascii_lowercase());
        spoofed.push(name.to_ascii_uppercase());
        spoofed.push(name.replace('-', "_"));
        spoofed.push(name.to_ascii_lowercase().replace('-', "_"));
    }
    let mut req = format!(
        "GET /static/whoami HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        gw.authority()
    );
    for (i, name) in spoofed.iter().enumerate() {
        req.push_str(&format!("{name}: spoofed-{i}\r\n"));
    }
    req.push_str("X-Ordinary-Header: kept\r\n\r\n");
    let resp = gw.raw(req.as_bytes()).await;
    assert_eq!(resp.status, 200, "bypass request failed: {}", resp.raw);

    let rec = up.last();
    for name in IDENTITY_DEFAULTS.iter().chain(STRIP_DEFAULTS) {
        assert!(
            !rec.has_header_like(name),
            "client-sent {name} (or a case/underscore variant) reached the upstream: {:?}",
            rec.headers
        );
    }
    assert!(
        !rec.headers.iter().any(|(_, v)| v.starts_with("spoofed-")),
        "a spoofed identity value reached the upstream: {:?}",
        rec.headers
    );
    assert_eq!(rec.header("x-ordinary-header").as_deref(), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strips_custom_identity_header_names_and_extra_strip_entries() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .extra("[headers]\nuser = \"X-Clinic-User\"\nstrip = [\"X-Legacy-Auth\"]")
        .start()
        .await;
    let resp = gw
        .raw_get(
            "/static/x",
            &[
                ("X-Clinic-User", "mallory"),
                ("x_clinic_user", "mallory"),
                ("X-Legacy-Auth", "admin"),
                ("X_LEGACY_AUTH", "admin"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let rec = up.last();
    assert!(
        !rec.has_header_like("X-Clinic-User"),
        "configured headers.user name not stripped: {:?}",
        rec.headers
    );
    assert!(
        !rec.has_header_like("X-Legacy-Auth"),
        "configured headers.strip name not stripped: {:?}",
        rec.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_and_connection_named_headers_are_not_forwarded() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let req = format!(
        "GET /static/hop HTTP/1.1\r\nHost: {}\r\n\
         Connection: close, X-Foo, x-bar\r\n\
         X-Foo: 1\r\n\
         X-Bar: 2\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: example/1\r\n\
         X-Ordinary: yes\r\n\r\n",
        gw.authority()
    );
    let resp = gw.raw(req.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let rec = up.last();
    for name in [
        "x-foo",
        "x-bar",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            rec.header(name).is_none(),
            "hop-by-hop header {name} was forwarded: {:?}",
            rec.headers
        );
    }
    if let Some(c) = rec.header("connection") {
        let c = c.to_ascii_lowercase();
        assert!(
            !c.contains("x-foo") && !c.contains("x-bar"),
            "client Connection header forwarded: {c}"
        );
    }
    assert_eq!(rec.header("x-ordinary").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_cookies_are_removed_from_forwarded_cookie_header() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let resp = gw
        .client_h1()
        .get(gw.url("/static/c"))
        .header(
            "Cookie",
            "app=1; __Host-vestibule_session=abc; vestibule_session=def; __Host-vestibule_device=ghi; vestibule_device=jkl; other=2",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = up.last();
    let cookie = rec.header_all("cookie").join("; ");
    // Under TLS the gateway's own cookies carry the __Host- prefix (SPEC §3, §6).
    assert!(
        !cookie.contains("__Host-vestibule_session"),
        "session cookie reached the upstream: {cookie:?}"
    );
    assert!(
        !cookie.contains("__Host-vestibule_device"),
        "device cookie reached the upstream: {cookie:?}"
    );
    assert!(
        cookie.contains("app=1") && cookie.contains("other=2"),
        "other cookies must pass: {cookie:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_are_not_forwarded() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let req = format!(
        "POST /static/trailers HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n",
        gw.authority()
    );
    let resp = gw.raw(req.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let rec = up.last();
    assert_eq!(rec.body_len, 5);
    assert!(
        rec.trailers.is_empty(),
        "request trailers were forwarded: {:?}",
        rec.trailers
    );
}

// ---------------------------------------------------------------- X-Forwarded-*, Host

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_headers_are_set_from_the_connection_for_untrusted_peers() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let resp = gw
        .raw_get(
            "/static/xff",
            &[
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Forwarded-For", "5.6.7.8"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let rec = up.last();
    assert_eq!(
        rec.header_all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "X-Forwarded-For must be only the peer"
    );
    assert_eq!(rec.header_all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(rec.header_all("x-forwarded-host"), vec![gw.authority()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_peer_gets_its_address_appended_to_x_forwarded_for() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .trusted_proxies(&["127.0.0.0/8"])
        .start()
        .await;
    let resp = gw
        .raw_get("/static/xff", &[("X-Forwarded-For", "203.0.113.9")])
        .await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let rec = up.last();
    let xff = rec.header_all("x-forwarded-for").join(", ");
    assert_eq!(
        xff.replace(' ', ""),
        "203.0.113.9,127.0.0.1",
        "trusted proxy: peer appended to received XFF"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_mode_serves_without_tls_sets_proto_http_and_warns() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .plain_http()
        .start()
        .await;
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(gw.url("/static/p"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = up.last();
    assert_eq!(rec.header_all("x-forwarded-proto"), vec!["http"]);
    let logs = gw.logs().to_ascii_lowercase();
    assert!(
        logs.lines().any(|l| l.contains("warn")
            && (l.contains("tls") || l.contains("plain") || l.contains("https"))),
        "plain HTTP mode must log a warning about running without TLS:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_true_keeps_the_client_host() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .preserve_host(true)
        .start()
        .await;
    let resp = gw.raw_get("/static/h", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert_eq!(up.last().header_all("host"), vec![gw.authority()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_false_sends_the_upstream_authority() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .preserve_host(false)
        .start()
        .await;
    let resp = gw.raw_get("/static/h", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let rec = up.last();
    assert_eq!(rec.header_all("host"), vec![up.addr().to_string()]);
    assert_eq!(
        rec.header_all("x-forwarded-host"),
        vec![gw.authority()],
        "X-Forwarded-Host is the client's Host"
    );
}

// ---------------------------------------------------------------- rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_rule_answers_403_and_forwards_nothing() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .rule("path_prefix = \"/admin/\"\naccess = \"deny\"")
        .bypass("/")
        .start()
        .await;
    let client = gw.client();
    for (method, path) in [
        ("GET", "/admin/"),
        ("POST", "/admin/users?x=1"),
        ("GET", "/static/../admin/x"),
    ] {
        let r = gw.raw(format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", gw.authority()).as_bytes()).await;
        assert_eq!(r.status, 403, "{method} {path} must be denied: {}", r.raw);
    }
    assert_eq!(up.count(), 0, "a denied request reached the upstream");
    let r = client.get(gw.url("/elsewhere")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the later bypass rule still applies to other paths"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_limit_a_bypass_rule_to_the_listed_methods() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .rule("path_prefix = \"/static/\"\nmethods = [\"GET\", \"HEAD\"]\naccess = \"bypass\"")
        .start()
        .await;
    let client = gw.client();
    assert_eq!(
        client
            .get(gw.url("/static/a.css"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .head(gw.url("/static/a.css"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.count(), 2);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = client
            .request(method.clone(), gw.url("/static/a.css"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "{method} is not in the rule's methods: falls to the default (authenticated)"
        );
    }
    assert_eq!(
        up.count(),
        2,
        "a method outside the bypass rule reached the upstream without a session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_path_rule_matches_only_that_path() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .rule("path = \"/exact\"\naccess = \"bypass\"")
        .start()
        .await;
    let client = gw.client();
    let r = client.get(gw.url("/exact")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(gw.url("/exact?q=1")).send().await.unwrap();
    assert_eq!(r.status(), 200, "a query string does not change the path");
    assert_eq!(up.count(), 2);
    for p in ["/exact/", "/exactly", "/exact/sub", "/Exact", "/pre/exact"] {
        let r = client.get(gw.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{p} must not match path = \"/exact\"");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_rule_wins() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .rule("path_prefix = \"/static/private/\"\naccess = \"deny\"")
        .bypass("/static/")
        .rule("path_prefix = \"/static/private/open/\"\naccess = \"bypass\"")
        .start()
        .await;
    let client = gw.client();
    assert_eq!(
        client
            .get(gw.url("/static/private/open/x"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client
            .get(gw.url("/static/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.count(), 1);
}

// ---------------------------------------------------------------- no session

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_navigation_without_session_redirects_to_login_with_rd() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = client
            .request(method.clone(), gw.url("/app/patients?id=7&view=full"))
            .header(
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{method} navigation without a session");
        let loc = r
            .headers()
            .get("location")
            .expect("Location")
            .to_str()
            .unwrap()
            .to_string();
        let url = reqwest::Url::parse("https://base.invalid/")
            .unwrap()
            .join(&loc)
            .unwrap();
        if loc.starts_with("http") {
            assert_eq!(
                url.host_str(),
                Some("127.0.0.1"),
                "absolute Location must stay on this site: {loc}"
            );
        }
        assert_eq!(url.path(), "/_vestibule/login", "Location {loc}");
        assert_eq!(
            location_rd(&loc).as_deref(),
            Some("/app/patients?id=7&view=full"),
            "rd must carry the original path and query: {loc}"
        );
    }
    assert_eq!(
        up.count(),
        0,
        "an unauthenticated request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_request_without_session_gets_401_json_and_is_not_forwarded() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client();
    let cases: Vec<(reqwest::Method, &str, Option<&str>)> = vec![
        (
            reqwest::Method::GET,
            "/api/records",
            Some("application/json"),
        ),
        (reqwest::Method::GET, "/api/records", None),
        (reqwest::Method::POST, "/app/form", Some("text/html")),
        (reqwest::Method::DELETE, "/api/records/1", Some("*/*")),
    ];
    for (method, path, accept) in cases {
        let mut rb = client.request(method.clone(), gw.url(path));
        if let Some(a) = accept {
            rb = rb.header("Accept", a);
        }
        if method == reqwest::Method::POST {
            rb = rb
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("a=1");
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} Accept={accept:?}");
        let ct = content_type(&r);
        assert!(
            ct.starts_with("application/json"),
            "Content-Type was {ct:?}"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.unwrap()).expect("401 body must be JSON");
        assert_eq!(
            body,
            serde_json::json!({"error": "authentication_required", "login": "/_vestibule/login"})
        );
    }
    assert_eq!(
        up.count(),
        0,
        "an unauthenticated request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_do_not_authenticate() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let r = gw
        .client()
        .get(gw.url("/app/"))
        .header("Remote-User", "admin")
        .header("Remote-Groups", "doctor")
        .header("Remote-MFA", "totp")
        .header("X-Forwarded-User", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------- path normalisation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalised_path_is_matched_and_forwarded() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let cases = [
        ("/static/./a//b/../c.css", "/static/a/c.css"),
        ("/st%61tic/x", "/static/x"),
        ("/%73tatic/%7Euser/x", "/static/~user/x"),
        ("/static/a%20b", "/static/a%20b"),
        ("/static/dir/", "/static/dir/"),
        ("//static///x", "/static/x"),
        ("/static/./q?a=%2F&b=../c", "/static/q?a=%2F&b=../c"),
        ("/app/../static/y", "/static/y"),
    ];
    for (i, (sent, expected)) in cases.iter().enumerate() {
        let r = gw.raw_get(sent, &[]).await;
        assert_eq!(
            r.status, 200,
            "{sent} should be forwarded as {expected}: {}",
            r.raw
        );
        let recs = up.wait_records(i + 1, Duration::from_secs(5)).await;
        assert_eq!(
            recs[i].uri, *expected,
            "{sent} reached the upstream as {}",
            recs[i].uri
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_paths_are_refused_with_400_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/").start().await;
    for path in [
        "/static/a%2Fb",
        "/static/a%2fb",
        "/static/a%5Cb",
        "/static/a%5cb",
        "/static/a%00b",
        "/static/a%0Ab",
        "/static/a%0d%0aX-Injected:%201",
        "/static/a%7Fb",
        "/../x",
        "/static/../../x",
        "/static/%2e%2e/%2e%2e/x",
    ] {
        let r = gw.raw_get(path, &[]).await;
        assert_eq!(r.status, 400, "{path} must be refused with 400: {}", r.raw);
    }
    assert_eq!(
        up.count(),
        0,
        "a refused path reached the upstream: {:?}",
        up.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_dot_segments_cannot_escape_a_bypass_prefix() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    for path in [
        "/static/%2e%2e/secret",
        "/static/%2E%2E/secret",
        "/static/.%2e/secret",
        "/static/../secret",
    ] {
        let r = gw.raw_get(path, &[]).await;
        assert!(
            r.status == 401 || r.status == 400,
            "{path} escapes /static/ into an authenticated path: got {}",
            r.status
        );
    }
    assert_eq!(
        up.count(),
        0,
        "{:?}",
        up.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------- hostnames

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_outside_allow_list_gets_421_except_health() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .hostnames(&["clinic.example", "127.0.0.1"])
        .start()
        .await;
    let mk = |host: &str, path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };

    for host in ["evil.example", "clinic.example.evil.com", "localhost"] {
        let r = gw.raw(mk(host, "/static/x").as_bytes()).await;
        assert_eq!(r.status, 421, "Host {host} on a bypass path: {}", r.raw);
        let r = gw.raw(mk(host, "/_vestibule/login").as_bytes()).await;
        assert_eq!(
            r.status, 421,
            "Host {host} on the gateway's own pages: {}",
            r.raw
        );
    }
    assert_eq!(up.count(), 0);
    let r = gw
        .raw(mk("evil.example", "/_vestibule/health").as_bytes())
        .await;
    assert_eq!(
        r.status, 200,
        "health must answer whatever the Host: {}",
        r.raw
    );

    let r = gw.raw(mk("clinic.example", "/static/x").as_bytes()).await;
    assert_eq!(r.status, 200, "an allowed Host: {}", r.raw);
    let r = gw.raw(mk("CLINIC.EXAMPLE", "/static/x").as_bytes()).await;
    assert_eq!(
        r.status, 200,
        "host names compare case-insensitively: {}",
        r.raw
    );
    let r = gw.raw(mk(&gw.authority(), "/static/x").as_bytes()).await;
    assert_eq!(r.status, 200, "an allowed host with a port: {}", r.raw);
    assert_eq!(up.count(), 3);
}

// ---------------------------------------------------------------- protocols

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_by_alpn_and_proxies_requests() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client();
    let r = client.get(gw.url("/static/h2?x=1")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN must select h2");
    assert_eq!(r.status(), 200);
    let body = vec![42u8; 300_000];
    let r = client
        .post(gw.url("/static/h2-upload"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let recs = up.wait_records(2, Duration::from_secs(5)).await;
    assert_eq!(recs[0].uri, "/static/h2?x=1");
    assert_eq!(
        recs[0].header_all("host"),
        vec![gw.authority()],
        "h2 :authority is the Host kept for the upstream (preserve_host)"
    );
    assert_eq!(recs[1].body_sha256, sha256_hex(&body));
    assert_eq!(
        recs[1].header_all("x-forwarded-host"),
        vec![gw.authority()],
        "h2 :authority becomes X-Forwarded-Host"
    );
    // An h2 request without a session is refused just like h1.
    let r = client.get(gw.url("/private")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_still_works_when_only_http11_is_offered() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let r = gw
        .client_h1()
        .get(gw.url("/static/h1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
}

async fn ws_connect(
    gw: &Gateway,
    path: &str,
    origin: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(gw.tls_config(&["http/1.1"])));
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut req = format!("wss://{}{}", gw.authority(), path)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::client_async(req, tls)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_works_through_a_bypass_path() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let origin = format!("https://{}", gw.authority());
    let mut ws = ws_connect(&gw, "/static/ws", Some(&origin))
        .await
        .expect("websocket handshake through the gateway");
    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo timed out")
            .unwrap()
            .unwrap();
        assert_eq!(back, Message::text(text));
    }
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back.into_data().as_ref(), &big[..]);
    let _ = ws.close(None).await;
    let rec = up.last();
    assert_eq!(rec.uri, "/static/ws");
    assert!(!rec.has_header_like("Remote-User"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_from_a_foreign_origin_is_refused_with_403() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let err = ws_connect(&gw, "/static/ws", Some("https://evil.example"))
        .await
        .expect_err("foreign Origin must be refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected an HTTP 403, got {other:?}"),
    }
    assert_eq!(up.count(), 0, "a cross-origin upgrade reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_without_session_on_protected_path_is_not_forwarded() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let origin = format!("https://{}", gw.authority());
    let err = ws_connect(&gw, "/app/ws", Some(&origin))
        .await
        .expect_err("protected upgrade must be refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected an HTTP 401, got {other:?}"),
    }
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------- upstream failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gives_502_html_for_browsers_and_json_otherwise() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::builder_url(&dead)
        .bypass("/static/")
        .connect_timeout("2s")
        .start()
        .await;
    let client = gw.client();
    let r = client
        .get(gw.url("/static/x"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let ct = content_type(&r);
    assert!(
        ct.starts_with("text/html"),
        "browser gets a page, Content-Type {ct:?}"
    );
    let r = client
        .get(gw.url("/static/x"))
        .header("Accept", "text/html")
        .header("Accept-Language", "de-DE,de;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Anwendung nicht erreichbar") && page.contains("lang=\"de\""),
        "a German browser gets the error page in German: {page}"
    );
    let r = client
        .get(gw.url("/static/x"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let ct = content_type(&r);
    assert!(
        ct.starts_with("application/json"),
        "API client gets JSON, Content-Type {ct:?}"
    );
    let _: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.unwrap()).expect("502 body is JSON");
    let r = client
        .get(gw.url("/_vestibule/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the gateway stays up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504_after_response_timeout_and_gateway_recovers() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .response_timeout("1s")
        .start()
        .await;
    let client = gw.client();
    let t0 = Instant::now();
    let r = client
        .get(gw.url("/static/slow?ms=3000"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status(), 504);
    assert!(
        took < Duration::from_millis(2800),
        "504 should come after ~1s, took {took:?}"
    );
    let r = client
        .get(gw.url("/static/slow?ms=3000"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let ct = content_type(&r);
    assert!(
        ct.starts_with("text/html"),
        "browser gets a page, Content-Type {ct:?}"
    );
    let r = client
        .get(gw.url("/static/slow?ms=100"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a fast-enough upstream answer still passes"
    );
    assert_eq!(
        client
            .get(gw.url("/_vestibule/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

// ---------------------------------------------------------------- limits

fn headers_of_size(total: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < total {
        s.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)));
        i += 1;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_are_refused_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .max_request_header_bytes(16384)
        .start()
        .await;
    let big = format!(
        "GET /static/big HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{}\r\n",
        gw.authority(),
        headers_of_size(40 * 1024)
    );
    let r = gw.raw(big.as_bytes()).await;
    assert!(
        r.status == 431 || r.status == 400,
        "40 KiB of headers: expected 431/400, got {} ({:.200})",
        r.status,
        r.raw
    );
    assert_eq!(up.count(), 0);
    let ok = format!(
        "GET /static/ok HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{}\r\n",
        gw.authority(),
        headers_of_size(8 * 1024)
    );
    let r = gw.raw(ok.as_bytes()).await;
    assert_eq!(
        r.status, 200,
        "8 KiB of headers is within the limit: {:.300}",
        r.raw
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_the_gateway_stays_up() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    for req in [
        "GARBAGE\r\n\r\n".to_string(),
        "GET /static/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            .to_string(),
        "GET /static/x HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n".to_string(),
    ] {
        let r = gw.raw(req.as_bytes()).await;
        assert!(
            r.status == 400 || r.status == 0,
            "malformed request {req:?} got {}",
            r.status
        );
    }
    assert_eq!(up.count(), 0, "a malformed request was forwarded");
    assert_eq!(
        gw.client()
            .get(gw.url("/_vestibule/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

// ---------------------------------------------------------------- http → https redirect

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirect_listener_sends_plain_http_to_https() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/")
        .http_redirect()
        .start()
        .await;
    let rport = gw.p.redirect_port.unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], rport));
    let req =
        format!("GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:{rport}\r\nConnection: close\r\n\r\n");
    let r = raw_exchange(addr, None, req.as_bytes()).await;
    assert!(
        r.status == 301 || r.status == 308,
        "expected 301/308, got {}",
        r.raw
    );
    let loc = r.header("location").expect("Location");
    let url = reqwest::Url::parse(&loc).expect("absolute Location");
    assert_eq!(url.scheme(), "https");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_eq!(
        url.port_or_known_default(),
        Some(gw.port()),
        "the redirect must point at the TLS listener, got {loc}"
    );
    assert_eq!(url.path(), "/a");
    assert_eq!(url.query(), Some("b=1"));
    let req = "POST /x HTTP/1.1\r\nHost: clinic.example\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let r = raw_exchange(addr, None, req.as_bytes()).await;
    assert!(
        (300..400).contains(&r.status),
        "every plain request is redirected: {}",
        r.raw
    );
    assert!(
        r.header("location")
            .unwrap_or_default()
            .starts_with("https://clinic.example"),
        "{}",
        r.raw
    );
    assert_eq!(up.count(), 0, "the redirect listener forwarded a request");
}

// ---------------------------------------------------------------- own pages are not forwarded

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_answered_by_the_gateway_itself() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/").start().await;
    let r = gw
        .client()
        .get(gw.url("/_vestibule/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let r = gw
        .client()
        .get(gw.url("/_vestibule/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "unknown own page is the gateway's 404, even under a catch-all bypass"
    );
    assert_eq!(
        up.count(),
        0,
        "paths under the prefix must never be forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text_to_loopback_clients() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/").start().await;
    let r = gw
        .client()
        .get(gw.url("/_vestibule/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = content_type(&r);
    assert!(
        ct.starts_with("text/plain"),
        "Prometheus text format, got Content-Type {ct:?}"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.lines()
            .any(|l| l.starts_with("# TYPE ") || l.starts_with("# HELP ")),
        "not Prometheus text:\n{body:.500}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_clients_are_both_accepted() {
    use std::sync::Arc;
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(gw.p.ca.cert_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let req = format!(
            "GET /static/tls HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            gw.authority()
        );
        let r = raw_exchange(gw.addr(), Some(cfg), req.as_bytes()).await;
        assert_eq!(r.status, 200, "{version:?}: {}", r.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_proto_from_a_trusted_proxy_is_believed_and_otherwise_replaced() {
    let up = Upstream::start().await;
    let trusted = Gateway::builder(&up)
        .bypass("/static/")
        .plain_http()
        .trusted_proxies(&["127.0.0.1/32"])
        .start()
        .await;
    let r = trusted
        .raw_get(
            "/static/t",
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-For", "198.51.100.7"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let rec = up.last();
    assert_eq!(
        rec.header_all("x-forwarded-proto"),
        vec!["https"],
        "behind a trusted TLS load balancer"
    );
    assert_eq!(
        rec.header_all("x-forwarded-for").join(",").replace(' ', ""),
        "198.51.100.7,127.0.0.1"
    );

    let untrusted = Gateway::builder(&up)
        .bypass("/static/")
        .plain_http()
        .start()
        .await;
    let r = untrusted
        .raw_get("/static/u", &[("X-Forwarded-Proto", "https")])
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        up.last().header_all("x-forwarded-proto"),
        vec!["http"],
        "an untrusted client cannot claim https"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_hostnames_list_logs_a_warning() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let logs = gw.logs();
    assert!(
        logs.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("warn") && l.contains("hostnames")
        }),
        "SPEC §3: hostnames empty = any (a warning is logged)\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_over_h1_and_h2_all_arrive() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let h2 = gw.client();
    let h1 = gw.client_h1();
    let mut tasks = vec![];
    for i in 0..150 {
        let client = if i % 2 == 0 { h2.clone() } else { h1.clone() };
        let url = gw.url(&format!("/static/c/{i}?ms=20"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .body(vec![i as u8; 10_000])
                .send()
                .await
                .unwrap();
            (r.status(), r.bytes().await.unwrap())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "request {i}");
        assert_eq!(
            echo_of(&body)["uri"],
            format!("/static/c/{i}?ms=20"),
            "responses must not be mixed up"
        );
    }
    assert_eq!(up.count(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_verified_against_ca_file() {
    let upstream_ca = TestCa::new();
    let up = Upstream::start_tls(&upstream_ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &upstream_ca.cert_pem).unwrap();

    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .upstream_extra(&format!("ca_file = {:?}", ca_path.display().to_string()))
        .start()
        .await;
    let r = gw
        .client()
        .get(gw.url("/static/over-tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "https upstream trusted through upstream.ca_file"
    );
    assert_eq!(up.last().uri, "/static/over-tls");

    // Without ca_file the self-signed upstream is not trusted: 502, nothing delivered.
    let before = up.requests().len();
    let gw = Gateway::builder(&up).bypass("/static/").start().await;
    let r = gw
        .client()
        .get(gw.url("/static/untrusted"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        502,
        "an upstream certificate from an unknown CA must be refused"
    );
    assert_eq!(
        up.requests().len(),
        before,
        "a request was sent over an unverified TLS connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_uploads_are_forwarded() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .plain_http()
        .start()
        .await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let head = format!(
        "PUT /static/continue HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
        gw.authority()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    // Either an interim 100 arrives, or (after a short wait) the client sends anyway, as curl does.
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
    tcp.write_all(b"hello world").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let text = String::from_utf8_lossy(&rest).into_owned();
    assert!(
        text.contains("200 OK") || String::from_utf8_lossy(&buf).contains("200 OK"),
        "{text}"
    );
    assert_eq!(up.last().body_len, 11);
}

// ---------------------------------------------------------------- the same rules over HTTP/2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_get_the_same_header_stripping_and_path_checks() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client();
    let r = client
        .get(gw.url("/static/h2-strip"))
        .header("remote-user", "mallory")
        .header("remote_groups", "doctor")
        .header("x-forwarded-user", "mallory")
        .header("x_auth_request_email", "m@evil")
        .header("x-forwarded-for", "1.2.3.4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let rec = up.last();
    for name in [
        "remote-user",
        "remote-groups",
        "x-forwarded-user",
        "x-auth-request-email",
    ] {
        assert!(
            !rec.has_header_like(name),
            "{name} reached the upstream over h2: {:?}",
            rec.headers
        );
    }
    assert_eq!(rec.header_all("x-forwarded-for"), vec!["127.0.0.1"]);

    // (No encoded dot segments here: the URL parser resolves %2e%2e client-side.)
    for path in ["/static/a%2Fb", "/static/a%00b", "/static/a%5Cb"] {
        let r = client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path} over h2");
    }
    let r = client
        .get(gw.url("/st%61tic/h2-norm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().uri, "/static/h2-norm");
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_oversized_headers_are_refused_and_not_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .max_request_header_bytes(16384)
        .start()
        .await;
    let client = gw.client();
    let mut rb = client.get(gw.url("/static/h2-big"));
    for i in 0..40 {
        rb = rb.header(format!("x-filler-{i}"), "b".repeat(1000));
    }
    // A stream/connection reset (Err) is an acceptable refusal over h2 too.
    if let Ok(r) = rb.send().await {
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert!(
            r.status() == 431 || r.status() == 400,
            "40 KiB of h2 headers got {}",
            r.status()
        );
    }
    assert_eq!(
        up.count(),
        0,
        "an over-limit h2 request reached the upstream"
    );
    let mut rb = gw.client().get(gw.url("/static/h2-ok"));
    for i in 0..8 {
        rb = rb.header(format!("x-filler-{i}"), "b".repeat(1000));
    }
    assert_eq!(
        rb.send().await.unwrap().status(),
        200,
        "8 KiB of h2 headers is within the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_outside_allow_list_gets_421() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .hostnames(&["clinic.example"])
        .start()
        .await;
    // The test certificate also covers "localhost", which is not an allowed host.
    let client = gw
        .client_builder()
        .resolve("localhost", gw.addr())
        .resolve("clinic.example", gw.addr())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{}/static/x", gw.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        r.status(),
        421,
        ":authority localhost is not in server.hostnames"
    );
    assert_eq!(up.count(), 0);
    let r = client
        .get(format!("https://clinic.example:{}/static/x", gw.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_host_is_not_forwarded_when_hostnames_are_set() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .hostnames(&["clinic.example"])
        .start()
        .await;
    let r = gw
        .raw(b"GET /static/x HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    assert!(r.status == 400 || r.status == 421, "no Host: got {}", r.raw);
    let r = gw.raw(b"GET /static/x HTTP/1.0\r\n\r\n").await;
    assert!(
        r.status == 400 || r.status == 421,
        "HTTP/1.0 without Host: got {}",
        r.raw
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_matches_whole_segments_only() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/").start().await;
    let r = gw
        .client()
        .get(gw.url("/_vestibulex/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "/_vestibulex is not under the prefix /_vestibule"
    );
    assert_eq!(up.last().uri, "/_vestibulex/page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirect_keeps_encoded_characters_of_the_original_target() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let target = "/app/a%20b/c?x=%26y&z=1+2";
    let r = gw.raw_get(target, &[("Accept", "text/html")]).await;
    assert_eq!(r.status, 302, "{}", r.raw);
    let loc = r.header("location").expect("Location");
    assert_eq!(
        location_rd(&loc).as_deref(),
        Some(target),
        "rd must round-trip the original target exactly: {loc}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_garbage_session_cookies_are_treated_as_no_session() {
    let up = Upstream::start().await;
    let gw = bypass_gateway(&up).await;
    let client = gw.client();
    let long = "A".repeat(4000);
    for value in [
        "garbage",
        "",
        "%00%ff",
        "../../etc/passwd",
        long.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = client
            .get(gw.url("/app/records"))
            .header(
                "Cookie",
                format!("__Host-vestibule_session={value}; vestibule_session={value}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "session cookie {value:.20?} must count as no session"
        );
    }
    assert_eq!(up.count(), 0);
    assert_eq!(
        client
            .get(gw.url("/_vestibule/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
