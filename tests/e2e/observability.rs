//! Observability (SPEC §3 [log], §5.3 P/health and P/metrics, §6 audit events):
//! health parts, the Prometheus exposition and its counters, access lines and request
//! ids, the audit file and its rotation on SIGHUP, and leak scans over all output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::flows::*;
use crate::harness::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Parses Prometheus text format strictly enough to catch a broken exposition:
/// every non-comment line is `name{labels} value`, names match
/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, values are floats. Keys are `name{labels}` as written.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let valid_name = |n: &str| {
        let mut b = n.bytes();
        b.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    };
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                let name = it.next().unwrap_or("");
                assert!(valid_name(name), "bad metric name in TYPE line: {line}");
                let kind = it.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type: {line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name: {line:?}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels: {line:?}"
            );
            for pair in labels[1..labels.len() - 1]
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line:?}"));
                assert!(valid_name(k), "bad label name: {line:?}");
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "bad label value: {line:?}"
                );
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line:?}")),
        };
        out.insert(series.to_string(), v);
    }
    out
}

async fn scrape(gw: &Gateway) -> HashMap<String, f64> {
    let r = gw
        .client()
        .get(gw.url(&format!("{PREFIX}/metrics")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = content_type(&r);
    assert!(ct.starts_with("text/plain"), "{ct}");
    parse_prometheus(&r.text().await.unwrap())
}

fn val(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| {
        panic!(
            "series {series} missing; have {:?}",
            m.keys().collect::<Vec<_>>()
        )
    })
}

async fn health(gw: &Gateway) -> (u16, serde_json::Value) {
    let r = gw
        .client()
        .get(gw.url(&format!("{PREFIX}/health")))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Polls health until `want` (status) or the deadline; returns the last answer.
async fn health_until(gw: &Gateway, want: u16, within: Duration) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + within;
    loop {
        let h = health(gw).await;
        if h.0 == want || Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .collect()
}

fn stdout_of(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.p.dir.path().join("stdout.log")).unwrap_or_default()
}

fn access_lines(gw: &Gateway) -> Vec<serde_json::Value> {
    json_lines(&stdout_of(gw))
        .into_iter()
        .filter(|v| v["message"] == "access")
        .collect()
}

async fn wait_for(mut cond: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// A rustls client that accepts any server certificate: for looking at a gateway
/// that serves an expired certificate, which a verifying client refuses to talk to.
fn insecure_tls() -> rustls::ClientConfig {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

// ---------------------------------------------------------------------------
// P/health
// ---------------------------------------------------------------------------

#[tokio::test]
async fn health_keeps_serving_a_stale_users_file_and_names_an_unreadable_one() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&[TestUser::new("pat", &["patient"])]))
        .start()
        .await;
    assert_eq!(
        health(&gw).await,
        (200, serde_json::json!({ "status": "ok" }))
    );

    // A file that no longer parses: the last good version stays in force, so the
    // gateway is still healthy (one typo must not empty the load balancer).
    std::fs::write(&gw.p.users_path, "[[users]\nthis is = = not toml").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(health(&gw).await.0, 200);
    assert!(
        gw.logs().contains("users file not reloaded"),
        "the parse failure is logged"
    );

    std::fs::remove_file(&gw.p.users_path).unwrap();
    let (status, body) = health_until(&gw, 503, Duration::from_secs(8)).await;
    assert_eq!(
        (status, body["failing"].as_str()),
        (503, Some("users_file")),
        "{body}"
    );
}

#[tokio::test]
async fn health_names_the_store_when_the_database_is_gone() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).start().await;
    assert_eq!(health(&gw).await.0, 200);
    // Replacing the database file with a directory breaks it for root too (chmod
    // would not: root reads through permissions).
    let db = gw.p.dir.path().join("data").join("vestibule.sqlite3");
    assert!(
        db.is_file(),
        "expected the embedded database at {}",
        db.display()
    );
    std::fs::remove_file(&db).unwrap();
    std::fs::create_dir(&db).unwrap();
    let (status, body) = health_until(&gw, 503, Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failing"], "store", "{body}");
    // Protected requests fail closed meanwhile; the process stays up.
    let r = gw.client().get(gw.url("/private")).send().await.unwrap();
    assert_ne!(r.status(), 200);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn health_names_an_expired_certificate() {
    let up = Upstream::start().await;
    let p = Gateway::builder(&up).prepare();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(&p.cert_path, cert.pem()).unwrap();
    std::fs::write(&p.key_path, key.serialize_pem()).unwrap();
    let mut gw = p.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let resp = loop {
        assert!(
            gw.try_exit().is_none(),
            "gateway exited:\n{}",
            gw.log_tail()
        );
        if tokio::net::TcpStream::connect(gw.addr()).await.is_ok() {
            let req = format!(
                "GET {PREFIX}/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                gw.authority()
            );
            break raw_exchange(gw.addr(), Some(insecure_tls()), req.as_bytes()).await;
        }
        assert!(Instant::now() < deadline, "gateway did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resp.status, 503, "{}", resp.body_text());
    let body: serde_json::Value = serde_json::from_str(&resp.body_text()).unwrap();
    assert_eq!(body["failing"], "certificate", "{body}");
    assert!(
        wait_for(
            || stdout_of(&gw).contains("certificate has expired"),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        gw.log_tail()
    );
}

// ---------------------------------------------------------------------------
// P/metrics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_what_happens() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/public/")
        .users_toml(&users_toml(&[TestUser::new("pat", &["patient"])]))
        .start()
        .await;
    let before = scrape(&gw).await;
    for name in [
        "vestibule_requests_total{app=\"default\",outcome=\"forwarded\"}",
        "vestibule_upstream_errors_total{app=\"default\",kind=\"timeout\"}",
        "vestibule_logins_total{result=\"locked\"}",
        "vestibule_code_checks_total{method=\"remembered_device\",result=\"success\"}",
        "vestibule_lockouts_total{step=\"code\"}",
        "vestibule_enrollments_completed_total",
        "vestibule_backup_codes_used_total",
        "vestibule_store_errors_total{backend=\"embedded\"}",
        "vestibule_tls_handshakes_total{result=\"failure\"}",
    ] {
        val(&before, name);
    }
    let left = val(&before, "vestibule_tls_certificate_expiry_seconds");
    assert!(left > 86_400.0, "certificate expiry gauge: {left}");
    assert!(
        val(
            &before,
            "vestibule_tls_handshakes_total{result=\"success\"}"
        ) >= 1.0
    );

    let c = gw.client();
    assert_eq!(
        c.get(gw.url("/public/a")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(gw.url("/private")).send().await.unwrap().status(),
        401
    );
    let nav = c
        .get(gw.url("/private"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(nav.status(), 302);
    let b = Browser::new(&gw);
    assert_eq!(b.login("pat", "wrong password here", "/").await.status, 401);
    b.login_ok(&TestUser::new("pat", &["patient"]), "/").await;
    assert_eq!(b.get("/private/x").await.status, 200);

    let after = scrape(&gw).await;
    let delta = |s: &str| val(&after, s) - before.get(s).copied().unwrap_or(0.0);
    assert_eq!(
        delta("vestibule_requests_total{app=\"default\",outcome=\"bypassed\"}"),
        1.0
    );
    assert_eq!(
        delta("vestibule_requests_total{app=\"default\",outcome=\"forwarded\"}"),
        1.0
    );
    assert_eq!(
        delta("vestibule_requests_total{app=\"default\",outcome=\"unauthorized_401\"}")
            + delta("vestibule_requests_total{app=\"\",outcome=\"unauthorized_401\"}"),
        2.0,
        "the 401 JSON (app default) and the failed login (own page: no app)"
    );
    assert_eq!(
        delta("vestibule_requests_total{app=\"default\",outcome=\"redirected_to_login\"}"),
        1.0
    );
    assert_eq!(delta("vestibule_logins_total{result=\"failure\"}"), 1.0);
    assert_eq!(delta("vestibule_logins_total{result=\"success\"}"), 1.0);
    assert_eq!(
        delta("vestibule_upstream_response_seconds_count{app=\"default\"}"),
        2.0
    );
    assert!(delta("vestibule_store_operation_seconds_count{backend=\"embedded\"}") >= 3.0);
    assert!(
        val(
            &after,
            "vestibule_upstream_response_seconds_bucket{app=\"default\",le=\"+Inf\"}"
        ) >= 2.0
    );
    // The gauge is refreshed at scrape time (at most every 10 s): the first scrape counted 0.
    assert!(val(&after, "vestibule_active_sessions") >= 0.0);
    // No username and no path is ever a label.
    let text = c
        .get(gw.url(&format!("{PREFIX}/metrics")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("pat\"") && !text.contains("/private") && !text.contains("/public"),
        "{text}"
    );
}

/// The refusal itself (peers outside loopback and `trusted_proxies` get 403) cannot be
/// shown end to end here: every address this machine can connect from to itself is
/// loopback (127.0.0.0/8, ::1), and loopback is always allowed by SPEC §5.3. The
/// decision function is unit-tested with 10.1.2.3 and 192.0.2.1 in `src/metrics`. Here:
/// a loopback peer is served even with trusted proxies set, and a spoofed
/// `X-Forwarded-For` changes nothing (the TCP peer decides).
#[tokio::test]
async fn metrics_are_served_to_loopback_peers_whatever_they_claim() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .trusted_proxies(&["10.9.9.0/24"])
        .start()
        .await;
    let r = gw
        .raw_get(
            &format!("{PREFIX}/metrics"),
            &[("X-Forwarded-For", "192.0.2.1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body_text().contains("vestibule_requests_total"));
    let post = gw
        .client()
        .post(gw.url(&format!("{PREFIX}/metrics")))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

// ---------------------------------------------------------------------------
// Access lines, request ids, audit file
// ---------------------------------------------------------------------------

fn json_log_gateway(up: &Upstream, users: &[TestUser]) -> GatewayBuilder {
    Gateway::builder(up)
        .users_toml(&users_toml(users))
        .bypass("/public/")
        .extra("[log]\nformat = \"json\"\naudit_file = \"audit.log\"\n")
}

#[tokio::test]
async fn access_and_audit_lines_are_json_with_their_fields_and_no_secrets() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let mut p = json_log_gateway(&up, std::slice::from_ref(&pat)).prepare();
    // A relative audit path is taken relative to the working directory (the temp dir).
    let audit_path = p.dir.path().join("audit.log");
    p.env.push(("RUST_LOG".into(), "info".into()));
    let gw = p.start().await;

    let b = Browser::new(&gw);
    assert_eq!(
        b.login("pat", "not-the-password-XYZ", "/").await.status,
        401
    );
    b.login_ok(&pat, "/").await;
    let session = b.cookie(SESSION_COOKIE).unwrap();
    let page = b
        .send(
            reqwest::Method::GET,
            "/private/doc?token=QUERYSECRET123",
            &[
                ("x-request-id", "client-chosen-id"),
                ("authorization", "Bearer AUTHSECRET456"),
            ],
            None,
        )
        .await;
    assert_eq!(page.status, 200);
    let rid = page
        .header("x-request-id")
        .expect("x-request-id in the response");
    assert_ne!(
        rid, "client-chosen-id",
        "an untrusted client cannot choose the request id"
    );
    assert_eq!(rid.len(), 16);
    assert_eq!(
        up.last().header("x-request-id").as_deref(),
        Some(rid.as_str()),
        "the upstream gets the same id"
    );
    let anon = gw
        .client()
        .get(gw.url("/public/x?q=1"))
        .send()
        .await
        .unwrap();
    let anon_rid = anon.headers()["x-request-id"].to_str().unwrap().to_string();

    assert!(
        wait_for(
            || access_lines(&gw)
                .iter()
                .any(|l| l["request_id"] == anon_rid.as_str()),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        gw.log_tail()
    );
    let lines = access_lines(&gw);
    let line = lines
        .iter()
        .find(|l| l["request_id"] == rid.as_str())
        .unwrap_or_else(|| panic!("no access line for {rid}: {lines:?}"));
    assert_eq!(line["method"], "GET");
    assert_eq!(
        line["path"], "/private/doc",
        "normalised path without the query"
    );
    assert_eq!(line["status"], 200);
    assert_eq!(line["user"], "pat");
    assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
    assert!(
        line["total_ms"].as_f64().unwrap() >= line["upstream_ms"].as_f64().unwrap(),
        "{line}"
    );
    let anon_line = lines
        .iter()
        .find(|l| l["request_id"] == anon_rid.as_str())
        .unwrap();
    assert_eq!(anon_line["path"], "/public/x");
    assert!(anon_line.get("user").is_none(), "{anon_line}");
    let own = lines.iter().find(|l| {
        l["path"] == format!("{PREFIX}/login") && l["method"] == "POST" && l["status"] == 303
    });
    assert!(own.is_some(), "own pages get access lines too: {lines:?}");

    // Audit events go to the file (not stdout), one JSON object per line.
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let events = json_lines(&audit);
    assert_eq!(
        events.len(),
        audit.lines().count(),
        "every audit line is JSON: {audit}"
    );
    let failure = events
        .iter()
        .find(|e| e["event"] == "login.failure")
        .unwrap();
    for k in ["ts", "event", "user", "ip"] {
        assert!(failure.get(k).is_some(), "{k} missing: {failure}");
    }
    assert_eq!(failure["reason"], "wrong_password");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "login.success" && e["user"] == "pat")
    );
    assert!(
        !has_event(&stdout_of(&gw), "login.success", "pat"),
        "audit events go to the audit file only"
    );

    // Nothing secret anywhere.
    let all = format!("{}\n{audit}", gw.logs());
    for secret in [
        pat.password.as_str(),
        "not-the-password-XYZ",
        session.as_str(),
        "QUERYSECRET123",
        "AUTHSECRET456",
    ] {
        assert!(!all.contains(secret), "{secret:?} leaked into the logs");
    }
    for l in all.lines() {
        let low = l.to_ascii_lowercase();
        assert!(
            !low.contains("set-cookie") && !low.contains("authorization:"),
            "header value logged: {l}"
        );
    }
}

#[tokio::test]
async fn trusted_proxies_pass_their_request_id_through() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/")
        .trusted_proxies(&["127.0.0.0/8"])
        .start()
        .await;
    let r = gw
        .client()
        .get(gw.url("/x"))
        .header("x-request-id", "lb-7f3a-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a-0001");
    assert_eq!(
        up.last().header("x-request-id").as_deref(),
        Some("lb-7f3a-0001")
    );
    let bad = gw
        .client()
        .get(gw.url("/x"))
        .header("x-request-id", "has spaces \"and quotes\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.headers()["x-request-id"].len(),
        16,
        "unsafe ids are replaced"
    );
}

#[tokio::test]
async fn access_log_can_be_turned_off() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/")
        .extra("[log]\nformat = \"json\"\naccess_log = false\n")
        .start()
        .await;
    let r = gw.client().get(gw.url("/quiet")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(access_lines(&gw).is_empty(), "{}", gw.log_tail());
}

#[tokio::test]
async fn audit_file_survives_rotation_by_rename_and_sighup() {
    let up = Upstream::start().await;
    let gw = json_log_gateway(&up, &[]).start().await;
    let dir = gw.p.dir.path();
    let (live, rotated) = (dir.join("audit.log"), dir.join("audit.log.1"));
    let b = Browser::new(&gw);
    let fail = |who: &'static str| {
        let b = &b;
        async move { assert_eq!(b.login(who, "wrong-password-123", "/").await.status, 401) }
    };
    fail("before-rename").await;
    std::fs::rename(&live, &rotated).unwrap();
    // Between the rename and the signal, events still go to the renamed file.
    fail("between").await;
    gw.signal(libc::SIGHUP);
    assert!(
        wait_for(
            || stdout_of(&gw).contains("audit file reopened"),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        gw.log_tail()
    );
    fail("after-signal").await;

    let users = |p: &std::path::Path| -> Vec<String> {
        json_lines(&std::fs::read_to_string(p).unwrap_or_default())
            .iter()
            .map(|e| e["user"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(users(&rotated), vec!["before-rename", "between"]);
    assert_eq!(users(&live), vec!["after-signal"]);
    // The TLS reloader listens to SIGHUP as well: both happen.
    assert!(
        stdout_of(&gw).contains("TLS certificate reloaded"),
        "{}",
        gw.log_tail()
    );
    assert_eq!(health(&gw).await.0, 200);
}
