//! The accept loop: connection limit, TLS handshake (bounded in time), HTTP/1.1 and
//! HTTP/2 serving with upgrades, and graceful shutdown. A panic while handling one
//! request ends only that connection's task.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::tls::Tls;
use crate::app::App;
use crate::metrics::Handshake;
use crate::proxy::forward::Peer;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn builder(app: &App) -> Builder<TokioExecutor> {
    let limit = app.cfg.server.max_request_header_bytes;
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size((limit + 1024).max(64 * 1024))
        .max_headers(200)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limit as u32)
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Accepts connections until `shutdown` completes, then lets in-flight requests finish
/// (at most [`SHUTDOWN_GRACE`]).
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(builder(&app));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(app.cfg.server.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "connection refused: server.max_connections reached");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (app, builder, watcher, tls) = (
            app.clone(),
            builder.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        let app_metrics = app.metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = Peer {
                addr,
                tls: tls.is_some(),
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(crate::pipeline::handle(app, peer, req).await) }
            });
            match tls {
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => {
                                app_metrics.handshake(Handshake::Success);
                                s
                            }
                            Ok(Err(_)) => return app_metrics.handshake(Handshake::Failure),
                            Err(_) => return app_metrics.handshake(Handshake::Timeout),
                        };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
}
