//! The plain-HTTP listener that answers every request with a redirect to https.
//!
//! It faces the same internet as the main listener, so it keeps the same limits
//! (SPEC §3): at most `server.max_connections` open connections, one request per
//! connection, and [`IDLE_TIMEOUT`] for a connection's whole life — a slow-header
//! client is cut off instead of holding a socket for ever. Accept errors (for example
//! out of file descriptors) pause the loop briefly instead of spinning.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, LOCATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::http1::IDLE_TIMEOUT;
use crate::config::ServerConfig;
use crate::http::body::{Body, empty};

fn target(server: &ServerConfig, req: &Request<Incoming>) -> String {
    let host = crate::router::host_name(req)
        .filter(|h| server.hostnames.is_empty() || server.hostnames.contains(h))
        .or_else(|| server.hostnames.first().cloned())
        .unwrap_or_else(|| server.listen.ip().to_string());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let port = server.listen.port();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    }
}

/// How long the accept loop pauses after an accept error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves redirects on `listener` until the task is dropped.
pub async fn run(listener: TcpListener, server: Arc<ServerConfig>) {
    let slots = Arc::new(Semaphore::new(server.max_connections));
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "redirect listener: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "redirect listener: connection refused, server.max_connections reached");
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let location = target(&server, &req);
                async move {
                    let mut resp: Response<Body> = Response::new(empty());
                    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(LOCATION, v);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), svc);
            // The whole exchange, slow headers included, within the idle timeout.
            let _ = tokio::time::timeout(IDLE_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}
