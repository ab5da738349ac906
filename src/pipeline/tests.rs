//! The pipeline in-process: an `App` built from a configuration in a temporary
//! directory, requests with a `Full` body handed straight to [`super::handle`], and an
//! upstream that is a plain hyper server on a loopback port recording what reached it.
//! No binary, no client socket: each step of the spine is checked where it decides.
//!
//! Time: the pipeline reads `core::clock::now_ms` directly, so the one session here is
//! issued at the wall clock's "now"; no test depends on time passing.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::handle;
use crate::app::App;
use crate::http::peer::{ConnectionLease, ConnectionSlot, Peer};

/// The connection's slot, as the listeners would give it.
struct Slot(CancellationToken);

impl ConnectionSlot for Slot {
    fn shutdown(&self) -> &CancellationToken {
        &self.0
    }
}

/// An upstream that answers 200 to everything and keeps each request's path and headers.
pub(super) struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let path = req.uri().path().to_string();
                    log.lock().unwrap().push((path, req.headers().clone()));
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("upstream")))) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Self { addr, seen }
    }

    pub(super) fn requests(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }
}

/// An `App` in a temporary directory: embedded store, a key file, one patient (`pat`,
/// password only), the rules of the e2e differential test.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    pub(super) upstream: Upstream,
}

impl Fixture {
    pub(super) async fn new() -> Self {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pw =
            crate::core::password::hash(b"correct horse", crate::core::password::Cost::DEFAULT)
                .unwrap();
        std::fs::write(
            d.join("users.toml"),
            format!(
                "[[users]]\nusername = \"pat\"\nroles = [\"patient\"]\npassword_hash = \"{pw}\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("encryption.key"),
            format!("{}\n", crate::keys::generate_key()),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let q = |name: &str| format!("{:?}", d.join(name).display().to_string());
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n\n\
             [upstream]\nurl = \"http://{}\"\n\n\
             [users]\nfile = {}\n\n\
             [storage]\nbackend = \"embedded\"\npath = {}\nencryption_key_file = {}\n\n\
             [[policy.rules]]\npath_prefix = \"/static/\"\naccess = \"bypass\"\n\n\
             [[policy.rules]]\npath_prefix = \"/admin/\"\naccess = \"authenticated\"\nroles = [\"doctor\"]\n\n\
             [[policy.rules]]\npath_prefix = \"/internal/\"\naccess = \"deny\"\n\n\
             [[policy.rules]]\npath_prefix = \"/rx/\"\naccess = \"authenticated\"\nmax_factor_age = \"5m\"\n",
            upstream.addr,
            q("users.toml"),
            q("data"),
            q("encryption.key"),
        );
        let path = d.join("vestibule.toml");
        std::fs::write(&path, config).unwrap();
        let cfg = crate::config::load(&path).unwrap_or_else(|ps| {
            panic!(
                "config refused: {:?}",
                ps.iter().map(|p| p.to_string()).collect::<Vec<_>>()
            )
        });
        let app = Arc::new(App::build(cfg).await.unwrap_or_else(|e| panic!("{e}")));
        Self {
            _dir: dir,
            app,
            upstream,
        }
    }

    /// Sends `req` through the pipeline as if from a loopback client without TLS.
    pub(super) async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
        self.send_from(Ipv4Addr::LOCALHOST, req).await
    }

    /// As [`Fixture::send`] from `ip` (10.x is a trusted proxy).
    pub(super) async fn send_from(
        &self,
        ip: Ipv4Addr,
        req: Request<Full<Bytes>>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let peer = Peer {
            addr: (ip, 40000).into(),
            tls: false,
        };
        let lease: ConnectionLease = Arc::new(Slot(CancellationToken::new()));
        let resp = handle(self.app.clone(), peer, req, lease).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    /// The `Cookie` header of a complete session of `pat`, put straight in the store.
    pub(super) async fn signed_in(&self) -> String {
        let user = self.app.users.known("pat").unwrap();
        let complete = crate::core::auth_flow::Stage::Complete { factor: None };
        let now = crate::core::clock::now_ms();
        let set_cookie = self
            .app
            .sessions
            .issue(&user, complete, None, None, now, Default::default())
            .await
            .unwrap();
        set_cookie.split(';').next().unwrap().to_string()
    }

    /// The `Cookie` header of a complete session of `pat` whose second factor
    /// (`factor`) was last proven `proven_ago_ms` ago.
    pub(super) async fn signed_in_with(
        &self,
        factor: Option<crate::core::auth_flow::SecondFactor>,
        proven_ago_ms: u64,
    ) -> String {
        let user = self.app.users.known("pat").unwrap();
        let now = crate::core::clock::now_ms();
        let meta = crate::core::store::SessionMeta {
            factor_ms: factor.map(|_| now - proven_ago_ms),
            ..Default::default()
        };
        let set_cookie = self
            .app
            .sessions
            .issue(
                &user,
                crate::core::auth_flow::Stage::Complete { factor },
                None,
                None,
                now,
                meta,
            )
            .await
            .unwrap();
        set_cookie.split(';').next().unwrap().to_string()
    }

    pub(super) fn prefix(&self) -> &str {
        &self.app.cfg.server.prefix
    }
}

pub(super) fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(uri).header("host", "gateway.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

pub(super) const BROWSER: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

#[tokio::test]
async fn a_bypass_path_is_forwarded_without_identity_headers() {
    let f = Fixture::new().await;
    let (status, _, body) = f.send(get("/static/app.css", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"upstream");
    let seen = f.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/static/app.css");
    for name in [
        "remote-user",
        "remote-email",
        "remote-name",
        "remote-groups",
        "remote-mfa",
    ] {
        assert!(
            !seen[0].1.contains_key(name),
            "{name} reached the upstream on a bypass path"
        );
    }
}

#[tokio::test]
async fn a_client_sent_identity_header_is_stripped() {
    let f = Fixture::new().await;
    let (status, _, _) = f
        .send(get(
            "/static/x",
            &[("remote-user", "admin"), ("remote-groups", "doctor")],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = f.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].1.contains_key("remote-user"), "{:?}", seen[0].1);
    assert!(!seen[0].1.contains_key("remote-groups"), "{:?}", seen[0].1);
}

#[tokio::test]
async fn a_protected_navigation_without_a_session_goes_to_login() {
    let f = Fixture::new().await;
    let (status, headers, _) = f.send(get("/admin/chart?id=7", &[BROWSER])).await;
    assert_eq!(status, StatusCode::FOUND);
    let location = headers.get("location").unwrap().to_str().unwrap();
    assert_eq!(
        location,
        format!("{}/login?rd=/admin/chart%3Fid%3D7", f.prefix())
    );
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn an_api_request_without_a_session_gets_the_401_json() {
    let f = Fixture::new().await;
    let (status, headers, body) = f
        .send(get("/admin/chart", &[("accept", "application/json")]))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "authentication_required");
    assert_eq!(json["login"], format!("{}/login", f.prefix()));
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_deny_rule_gives_403() {
    let f = Fixture::new().await;
    let (status, _, _) = f.send(get("/internal/x", &[BROWSER])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = f.send(get("/internal;jsessionid=1/y", &[])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn parameter_and_dot_segment_tricks_are_refused() {
    let f = Fixture::new().await;
    for target in [
        "/static/..;/admin/x",
        "/static/..;x/internal/x",
        "/static/%2e%2e;/admin/x",
        "/static/.;/x",
        "/static/..%3b/admin/x",
    ] {
        let (status, _, _) = f.send(get(target, &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}");
    }
    for target in ["/static;x/y", "/;x/admin/y"] {
        let (status, _, _) = f.send(get(target, &[])).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{target}");
    }
    assert!(
        f.upstream.requests().is_empty(),
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn own_pages_are_served_in_process() {
    let f = Fixture::new().await;
    let (status, _, body) = f
        .send(get(&format!("{}/login", f.prefix()), &[BROWSER]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(std::str::from_utf8(&body).unwrap().contains("csrf_token"));
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_complete_session_is_forwarded_with_its_identity_only() {
    let f = Fixture::new().await;
    let cookie = f.signed_in().await;
    let (status, _, _) = f
        .send(get(
            "/chart/7",
            &[("cookie", &cookie), ("remote-user", "admin"), BROWSER],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = f.upstream.requests();
    assert_eq!(seen.len(), 1);
    let users: Vec<_> = seen[0].1.get_all("remote-user").iter().collect();
    assert_eq!(users, ["pat"], "the client's identity header survived");
    assert!(
        !seen[0].1.get_all("cookie").iter().any(|v| v
            .as_bytes()
            .starts_with(cookie.split('=').next().unwrap().as_bytes())),
        "the session cookie reached the upstream"
    );
}

#[tokio::test]
async fn a_session_without_the_rules_role_gives_403() {
    let f = Fixture::new().await;
    let cookie = f.signed_in().await;
    let (status, _, _) = f
        .send(get("/admin/x", &[("cookie", &cookie), BROWSER]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.upstream.requests().is_empty());
}
