//! The demo's built-in upstream: a page that shows the request headers it received,
//! so a trial user sees exactly what the application behind Vestibule would get.
//! The demo runs two of them as two apps (SPEC §8), each saying which app it is.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::http::body::{Body, full};

/// What one demo app says about itself on its page.
pub(super) struct DemoApp {
    /// The page's heading, e.g. "Records".
    pub title: &'static str,
    /// One sentence: who may use it and what the gateway does for it.
    pub blurb: &'static str,
    /// The gateway's `server.prefix`, for the account link.
    pub prefix: String,
    /// Identity header names (lower-case) this app is sent: highlighted on the page.
    pub identity: Vec<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(req: &Request<Incoming>, app: &DemoApp) -> String {
    let mut rows = String::new();
    for (k, v) in req.headers() {
        let identity = app.identity.iter().any(|n| n == k.as_str());
        rows.push_str(&format!(
            "<tr{}><th>{}</th><td>{}</td></tr>\n",
            if identity { " class=\"id\"" } else { "" },
            escape(k.as_str()),
            escape(&String::from_utf8_lossy(v.as_bytes()))
        ));
    }
    let prefix = escape(&app.prefix);
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} (demo app)</title><style>body{{font:16px system-ui;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}\
th,td{{text-align:left;padding:.25rem .75rem;border-bottom:1px solid #ddd;font-family:monospace}}tr.id{{background:#e6f4ea;font-weight:bold}}\
nav a{{margin-right:1rem}}</style>\
<nav><a href=\"/\">Records (everyone)</a><a href=\"/staff/\">Staff portal (doctor, clerk)</a><a href=\"{prefix}/account\">Your account (2FA settings, sign out)</a></nav>\
<h1>{title}</h1><p>{blurb}</p><p>This page is an <em>upstream</em> app: Vestibule forwarded your request here after you signed in, \
once for both apps. The highlighted rows are the identity headers it vouches for.</p>\
<p>Request as this app received it: <code>{} {}</code></p><table>{rows}</table></html>",
        escape(req.method().as_str()),
        escape(
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        ),
        title = escape(app.title),
        blurb = escape(app.blurb),
    )
}

/// Starts one demo app on a free loopback port and returns its address.
pub(super) async fn start(app: DemoApp) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Arc::new(app);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let html = page(&req, &app);
                    async move {
                        let mut resp: Response<Body> = Response::new(full(html));
                        resp.headers_mut().insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static("text/html; charset=utf-8"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
