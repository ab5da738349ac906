//! Process lifecycle: graceful shutdown on SIGTERM, certificate reload without a
//! restart, and bounded memory while multi-gigabyte bodies stream through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::harness::*;

const GIB: u64 = 1 << 30;
const RSS_BUDGET_KIB: u64 = 64 * 1024;

/// Samples the gateway's VmRSS every 50 ms until dropped; reports the peak.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kib) = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    p.fetch_max(kib, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssSampler {
            peak,
            stop,
            task: Some(task),
        }
    }
    async fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.peak.load(Ordering::SeqCst)
    }
}

async fn warmed_up_gateway(up: &Upstream) -> (Gateway, u64) {
    let gw = Gateway::builder(up)
        .bypass("/static/")
        .response_timeout("60s")
        .start()
        .await;
    // Warm up both directions so allocator pools and TLS buffers exist before the baseline.
    let c = gw.client_h1();
    for _ in 0..3 {
        let _ = c
            .post(gw.url("/static/warm"))
            .body(vec![1u8; 4 << 20])
            .send()
            .await
            .unwrap()
            .bytes()
            .await;
        let _ = c
            .get(gw.url("/static/download?bytes=4194304"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = gw.rss_kib();
    assert!(base > 0, "could not read VmRSS of pid {}", gw.pid());
    (gw, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_through_with_bounded_gateway_memory() {
    let up = Upstream::start().await;
    let (gw, base) = warmed_up_gateway(&up).await;
    let chunk = pattern_chunk();
    let expected_sha = {
        let mut h = Sha256::new();
        for _ in 0..(GIB / chunk.len() as u64) {
            h.update(&chunk);
        }
        hex(&h.finalize())
    };
    let records_before = up.requests().len();
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= GIB {
                return None;
            }
            let n = chunk.len() as u64;
            Some((Ok::<_, std::io::Error>(chunk), sent + n))
        }
    });
    let sampler = RssSampler::start(gw.pid());
    let t0 = Instant::now();
    let resp = gw
        .client_h1()
        .post(gw.url("/static/upload"))
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("1 GiB upload through the gateway");
    let status = resp.status();
    let _ = resp.bytes().await;
    let took = t0.elapsed();
    let peak = sampler.finish().await;
    assert_eq!(status, 200);
    let recs = up
        .wait_records(records_before + 1, Duration::from_secs(10))
        .await;
    let rec = recs.last().unwrap();
    assert_eq!(rec.uri, "/static/upload");
    assert_eq!(rec.body_len, GIB, "upstream received a different length");
    assert_eq!(rec.body_sha256, expected_sha, "upload altered on the way");
    eprintln!("1 GiB upload: {took:?}, RSS base {base} KiB, peak {peak} KiB");
    assert!(
        peak.saturating_sub(base) < RSS_BUDGET_KIB,
        "gateway RSS grew by {} KiB (base {base}, peak {peak}) during a 1 GiB upload: the body is being buffered",
        peak.saturating_sub(base)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_download_streams_through_with_bounded_gateway_memory() {
    let up = Upstream::start().await;
    let (gw, base) = warmed_up_gateway(&up).await;
    let sampler = RssSampler::start(gw.pid());
    let t0 = Instant::now();
    let resp = gw
        .client_h1()
        .get(gw.url(&format!("/static/download?bytes={GIB}")))
        .send()
        .await
        .expect("1 GiB download through the gateway");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got: u64 = 0;
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("download interrupted");
        if first.is_none() && chunk.len() >= 256 {
            first = Some(chunk.slice(..256));
        }
        got += chunk.len() as u64;
    }
    let took = t0.elapsed();
    let peak = sampler.finish().await;
    assert_eq!(got, GIB, "client received a different length");
    assert_eq!(
        first.as_deref(),
        Some(&pattern_chunk()[..256]),
        "download content altered"
    );
    eprintln!("1 GiB download: {took:?}, RSS base {base} KiB, peak {peak} KiB");
    assert!(
        peak.saturating_sub(base) < RSS_BUDGET_KIB,
        "gateway RSS grew by {} KiB (base {base}, peak {peak}) during a 1 GiB download: the body is being buffered",
        peak.saturating_sub(base)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_request_finish_then_exits_zero() {
    let up = Upstream::start().await;
    let mut gw = Gateway::builder(&up).bypass("/static/").start().await;
    let client = gw.client_h1();
    let url = gw.url("/static/slow?ms=2000");
    let inflight = tokio::spawn(async move {
        let r = client.get(url).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.count() < 1 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t_signal = Instant::now();
    gw.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(400)).await;

    // New connections are refused once shutdown has begun.
    let fresh = gw.client_h1();
    let after = tokio::time::timeout(
        Duration::from_secs(5),
        fresh.get(gw.url("/static/after-signal")).send(),
    )
    .await;
    if let Ok(Ok(r)) = after {
        panic!("a new request after SIGTERM was served with {}", r.status())
    }
    assert!(
        !up.requests()
            .iter()
            .any(|r| r.uri == "/static/after-signal"),
        "a request made after SIGTERM reached the upstream"
    );

    let (status, body) = inflight
        .await
        .unwrap()
        .expect("the in-flight request must complete after SIGTERM");
    assert_eq!(status, 200, "in-flight request must complete normally");
    assert_eq!(echo_of(&body)["uri"], "/static/slow?ms=2000");
    let exit = gw.wait_exit(Duration::from_secs(10)).await;
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "vestibule still running 10 s after SIGTERM + drain\n{}",
            gw.log_tail()
        )
    });
    assert_eq!(
        exit.code(),
        Some(0),
        "graceful shutdown must exit 0\n{}",
        gw.log_tail()
    );
    assert!(t_signal.elapsed() < Duration::from_secs(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_idle_gateway_exits_zero_promptly() {
    let up = Upstream::start().await;
    let mut gw = Gateway::builder(&up).bypass("/static/").start().await;
    gw.signal(libc::SIGTERM);
    let exit = gw
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM\n{}", gw.log_tail()));
    assert_eq!(exit.code(), Some(0), "{}", gw.log_tail());
}

fn write_atomically(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_without_restart() {
    let up = Upstream::start().await;
    let mut gw = Gateway::builder(&up).bypass("/static/").start().await;
    let before = gw.peer_certificate().await.expect("TLS handshake");
    assert_eq!(
        before, gw.p.server_cert_der,
        "the configured certificate is served"
    );

    // Hold a connection open across the reload: it must keep working.
    let old_client = gw.client_h1();
    assert_eq!(
        old_client
            .get(gw.url("/static/before"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let new = gw.p.ca.issue("vestibule-test-reloaded");
    write_atomically(&gw.p.key_path, &new.key_pem);
    write_atomically(&gw.p.cert_path, &new.cert_pem);

    let t0 = Instant::now();
    let mut sighup_sent = false;
    let mut seen = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(cert) = gw.peer_certificate().await
            && cert == new.cert_der
        {
            seen = Some(t0.elapsed());
            break;
        }
        if !sighup_sent && t0.elapsed() > Duration::from_secs(5) {
            // The files alone did not do it (yet): try the operator's other lever.
            gw.signal(libc::SIGHUP);
            sighup_sent = true;
        }
        if let Some(s) = gw.try_exit() {
            panic!(
                "vestibule exited ({s}) during certificate reload (sighup sent: {sighup_sent})\n{}",
                gw.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = seen.unwrap_or_else(|| {
        panic!(
            "the new certificate was not served within 10 s (SIGHUP sent: {sighup_sent})\n{}",
            gw.log_tail()
        )
    });
    eprintln!("certificate reload seen after {took:?} (SIGHUP sent: {sighup_sent})");
    assert!(gw.try_exit().is_none(), "the process must not restart");
    assert_eq!(
        old_client
            .get(gw.url("/static/after"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A broken replacement keeps the last good certificate in force.
    std::fs::write(
        &gw.p.cert_path,
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    if sighup_sent {
        gw.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        gw.try_exit().is_none(),
        "a broken certificate file on disk killed the gateway\n{}",
        gw.log_tail()
    );
    assert_eq!(
        gw.peer_certificate().await.as_ref(),
        Some(&new.cert_der),
        "last good certificate stays in force"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_does_not_stop_the_gateway() {
    // SPEC is silent on SIGHUP; the conventional meaning for a daemon is "reload",
    // never "exit". An operator's `kill -HUP` must not take the clinic offline.
    let up = Upstream::start().await;
    let mut gw = Gateway::builder(&up).bypass("/static/").start().await;
    gw.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        gw.try_exit().is_none(),
        "SIGHUP terminated vestibule\n{}",
        gw.log_tail()
    );
    assert_eq!(
        gw.client()
            .get(gw.url("/static/after-hup"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_websocket_does_not_block_sigterm_forever() {
    use futures_util::SinkExt as _;
    let up = Upstream::start().await;
    let mut gw = Gateway::builder(&up).bypass("/static/").start().await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(gw.tls_config(&["http/1.1"])));
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let url = format!("wss://{}/static/ws", gw.authority());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("websocket through the gateway");
    ws.send(tokio_tungstenite::tungstenite::Message::text("x"))
        .await
        .unwrap();
    gw.signal(libc::SIGTERM);
    let exit = gw.wait_exit(Duration::from_secs(40)).await;
    assert!(
        exit.is_some(),
        "an open WebSocket kept vestibule alive 40 s after SIGTERM\n{}",
        gw.log_tail()
    );
    drop(ws);
}
