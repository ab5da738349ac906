//! Checks of the harness itself (no gateway): when these fail, the other
//! failures say nothing about the product.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_upstream_records_and_echoes_requests() {
    let up = Upstream::start().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = vec![5u8; 70_000];
    let r = client
        .post(format!("{}/static/x?a=1&status=202", up.url()))
        .header("X-Multi", "1")
        .header("X-Multi", "2")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
    let echo = echo_of(&r.bytes().await.unwrap());
    assert_eq!(echo["uri"], "/static/x?a=1&status=202");
    let rec = up.last();
    assert_eq!(rec.header_all("x-multi"), vec!["1", "2"]);
    assert_eq!(rec.body_sha256, sha256_hex(&body));

    let r = client
        .get(format!("{}/static/download?bytes=200000", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 200_000);

    let t = std::time::Instant::now();
    let r = client
        .get(format!("{}/static/slow?ms=300", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(up.count(), 3);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/static/ws", up.addr()))
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
        .await
        .unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_raw_exchange_parses_responses() {
    let up = Upstream::start().await;
    let r = raw_exchange(
        up.addr(),
        None,
        b"POST /static/raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(echo_of(&r.body)["uri"], "/static/raw");
    let rec = up.last();
    assert_eq!(rec.body_len, 5);
    assert_eq!(rec.trailers, vec![("x-t".to_string(), "1".to_string())]);
}

#[test]
fn harness_certificates_are_issued_by_the_test_ca() {
    let ca = TestCa::new();
    let a = ca.issue("a");
    let b = ca.issue("b");
    assert_ne!(a.cert_der, b.cert_der);
    assert!(a.key_pem.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_tls_client_trusts_the_test_ca_and_negotiates_h2() {
    use std::sync::Arc;
    init();
    let ca = TestCa::new();
    let server = ca.issue("selftest");
    let cfg = ca.server_config(&server, &["h2", "http/1.1"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    let client = client_builder_for(&ca, &["h2", "http/1.1"])
        .build()
        .unwrap();
    let r = client
        .get(format!("https://127.0.0.1:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let client = client_builder_for(&ca, &["http/1.1"])
        .http1_only()
        .build()
        .unwrap();
    let r = client
        .get(format!("https://127.0.0.1:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let other = TestCa::new();
    let client = client_builder_for(&other, &["http/1.1"]).build().unwrap();
    assert!(
        client
            .get(format!("https://127.0.0.1:{}/", addr.port()))
            .send()
            .await
            .is_err(),
        "a foreign CA must not be trusted"
    );
    let tls = ca.client_config(&["http/1.1"]);
    let r = raw_exchange(
        addr,
        Some(tls),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_tls_upstream_answers_over_https() {
    let ca = TestCa::new();
    let up = Upstream::start_tls(&ca).await;
    assert!(up.url().starts_with("https://"));
    let client = client_builder_for(&ca, &["http/1.1"]).build().unwrap();
    let r = client
        .get(format!("{}/static/x", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
}
