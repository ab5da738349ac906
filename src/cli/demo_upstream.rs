//! The demo's built-in upstream: a page that shows the request headers it received,
//! so a trial user sees exactly what the application behind Vestibule would get.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::http::body::{Body, full};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(req: &Request<Incoming>, prefix: &str) -> String {
    let mut rows = String::new();
    for (k, v) in req.headers() {
        let identity = k.as_str().starts_with("remote-");
        rows.push_str(&format!(
            "<tr{}><th>{}</th><td>{}</td></tr>\n",
            if identity { " class=\"id\"" } else { "" },
            escape(k.as_str()),
            escape(&String::from_utf8_lossy(v.as_bytes()))
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Demo clinic application</title><style>body{{font:16px system-ui;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}\
th,td{{text-align:left;padding:.25rem .75rem;border-bottom:1px solid #ddd;font-family:monospace}}tr.id{{background:#e6f4ea;font-weight:bold}}</style>\
<h1>Demo clinic application</h1><p>This page is the <em>upstream</em>: Vestibule forwarded your request here after you signed in. \
The highlighted <code>Remote-*</code> headers are the identity it vouches for.</p><p>{} {}</p><table>{rows}</table>\
<p><a href=\"{prefix}/account\">Your account (2FA settings, sign out)</a></p></html>",
        escape(req.method().as_str()),
        escape(
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        ),
    )
}

/// Starts the demo upstream on a free loopback port and returns its address.
pub async fn start(prefix: String) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let html = page(&req, &prefix);
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
