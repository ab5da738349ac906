//! Issue 17's findings that are not about paths, upgrades or lockout: trust headers,
//! sessions left complete after 2FA is turned on, the redirect listener's limits, and a
//! health check that must not answer from a stale cache.

use std::time::{Duration, Instant};

use crate::flows::*;
use crate::harness::*;

/// SPEC §5.2: headers upstream frameworks believe from their proxy, removed always.
const TRUST_HEADERS: &[&str] = &[
    "Forwarded",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Ssl",
    "X-Forwarded-Scheme",
    "X-Url-Scheme",
    "X-Forwarded-Uri",
    "X-Forwarded-Method",
    "X-Host",
    "X-Original-Host",
    "X-Original-Method",
    "X-Remote-User",
    "X-WEBAUTH-USER",
    "X-HTTP-Method-Override",
    "X-Method-Override",
];

/// Sends every trust header (as named and in `_` spelling) on a bypass path and
/// returns what the upstream received.
async fn send_trust_headers(gw: &Gateway, up: &Upstream) -> Recorded {
    let mut req = format!(
        "GET /static/trust HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        gw.authority()
    );
    for (i, name) in TRUST_HEADERS.iter().enumerate() {
        req.push_str(&format!("{name}: forged-{i}\r\n"));
        req.push_str(&format!(
            "{}: forged-u{i}\r\n",
            name.to_ascii_lowercase().replace('-', "_")
        ));
    }
    req.push_str("X-Ordinary-Header: kept\r\n\r\n");
    let resp = gw.raw(req.as_bytes()).await;
    assert_eq!(resp.status, 200, "bypass request failed: {}", resp.raw);
    up.last()
}

fn assert_no_trust_header(rec: &Recorded) {
    for name in TRUST_HEADERS {
        assert!(
            !rec.has_header_like(name),
            "client-sent {name} reached the upstream: {:?}",
            rec.headers
        );
    }
    assert!(
        !rec.headers.iter().any(|(_, v)| v.starts_with("forged-")),
        "a forged trust-header value reached the upstream: {:?}",
        rec.headers
    );
    assert_eq!(rec.header("x-ordinary-header").as_deref(), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_headers_from_clients_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).bypass("/static/").start().await;
    assert_no_trust_header(&send_trust_headers(&gw, &up).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_strip_list_and_a_trusted_peer_do_not_let_trust_headers_through() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .trusted_proxies(&["127.0.0.1/32"])
        .extra("[headers]\nstrip = []")
        .start()
        .await;
    assert_no_trust_header(&send_trust_headers(&gw, &up).await);
}

// ---------------------------------------------------------------- turning 2FA on

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_two_factor_on_ends_the_users_other_password_only_sessions() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(std::slice::from_ref(&pat)))
        .extra("[totp]\nperiod = 15")
        .start()
        .await;
    // The phisher's session, complete with the password alone.
    let phisher = Browser::new(&gw);
    assert_eq!(phisher.login_ok(&pat, "/records").await, "/records");
    assert_eq!(phisher.get("/records").await.status, 200);
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("none"));

    // The patient turns 2FA on from their own browser.
    let own = Browser::new(&gw);
    assert_eq!(own.login_ok(&pat, "/").await, "/");
    let setup = own.get(&p("/setup")).await;
    assert_eq!(setup.status, 200, "{}", setup.describe());
    let auth = Authenticator::new(read_setup(&setup).secret, 15);
    let done = own
        .submit(&setup, &p("/setup"), &[("code", &auth.fresh().await)])
        .await;
    assert_eq!(done.status, 200, "{}", done.describe());

    // The enrolling browser carries on; the other session is gone.
    let forwarded = up.count();
    assert_eq!(own.get("/mine").await.status, 200);
    assert_eq!(up.last().header("remote-mfa").as_deref(), Some("totp"));
    let nav = phisher.get("/records").await;
    assert_eq!(nav.status, 302, "{}", nav.describe());
    assert!(
        nav.location().is_some_and(|l| l.starts_with(&p("/login"))),
        "the other session must sign in again: {}",
        nav.describe()
    );
    assert_eq!(
        phisher.api(reqwest::Method::GET, "/records").await.status,
        401
    );
    assert_eq!(
        up.count(),
        forwarded + 1,
        "only the enrolling browser was forwarded"
    );
}

// ---------------------------------------------------------------- redirect listener

/// Reads until the peer closes (Some(elapsed)) or `limit` passes (None).
async fn closed_within(tcp: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt as _;
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, tcp.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_keeps_the_connection_limit_and_cuts_slow_headers() {
    use tokio::io::AsyncWriteExt as _;
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/")
        .http_redirect()
        .server_extra("max_connections = 5")
        .start()
        .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], gw.p.redirect_port.unwrap()));
    // Five slow-header clients hold every slot …
    let mut slow = vec![];
    for _ in 0..5 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(tcp);
    }
    // … so a sixth is closed unanswered at once.
    let mut sixth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = sixth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        closed_within(&mut sixth, Duration::from_secs(5))
            .await
            .is_some(),
        "a sixth connection was held open past server.max_connections"
    );
    // The slow clients are cut off by the idle timeout (30 s), not kept for ever.
    let mut first = slow.remove(0);
    let took = closed_within(&mut first, Duration::from_secs(45))
        .await
        .expect("a slow-header connection to the redirect listener outlived 45 s");
    assert!(
        took >= Duration::from_secs(20),
        "closed too early: {took:?}"
    );
    for tcp in &mut slow {
        assert!(closed_within(tcp, Duration::from_secs(5)).await.is_some());
    }
    // Freed slots serve again.
    let r = raw_exchange(addr, None, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(r.status, 308, "{}", r.raw);
}

// ---------------------------------------------------------------- metrics behind a proxy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_relayed_by_a_trusted_proxy_are_served_only_to_allowed_clients() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/")
        .trusted_proxies(&["127.0.0.1/32"])
        .start()
        .await;
    let metrics = "/_vestibule/metrics";
    let outside = gw
        .raw_get(metrics, &[("X-Forwarded-For", "203.0.113.5")])
        .await;
    assert_eq!(
        outside.status, 403,
        "an outside client relayed by the trusted proxy read the metrics: {}",
        outside.raw
    );
    assert_eq!(
        gw.raw_get(metrics, &[]).await.status,
        200,
        "the proxy itself"
    );
    assert_eq!(
        gw.raw_get(metrics, &[("X-Forwarded-For", "127.0.0.1")])
            .await
            .status,
        200,
        "a loopback client behind the proxy"
    );
    assert_eq!(up.count(), 0);
}
