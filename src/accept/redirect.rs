//! The plain-HTTP listener that answers every request with a redirect to https.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{HeaderValue, LOCATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

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

/// Serves redirects on `listener` until the task is dropped.
pub async fn run(listener: TcpListener, server: Arc<ServerConfig>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
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
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
