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

use super::first_byte::FirstByteDeadline;
use super::tls::Tls;
use crate::app::App;
use crate::http::peer::Peer;
use crate::metrics::Handshake;

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

/// One accepted connection on its way to a worker.
struct Accepted {
    tcp: std::net::TcpStream,
    addr: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// How many worker threads serve connections: one per core the process may use.
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Accepts connections until `shutdown` completes, then lets in-flight requests finish
/// (at most [`SHUTDOWN_GRACE`]).
///
/// Connections are served by worker threads, each running its own single-threaded
/// runtime (thread-per-core, as nginx runs one process per core): a connection, its
/// requests and the pooled upstream connections they use stay on one thread, so the
/// hot path pays no cross-thread wake-ups. This task only accepts and deals
/// connections out round-robin.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(app.cfg.server.max_connections));
    let mut workers = Vec::new();
    let mut senders = Vec::new();
    for i in 0..worker_count() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
        let (app, tls) = (app.clone(), tls.clone());
        match std::thread::Builder::new()
            .name(format!("vestibule-worker-{i}"))
            .spawn(move || worker(app, tls, rx))
        {
            Ok(handle) => {
                workers.push(handle);
                senders.push(tx);
            }
            Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
        }
    }
    if senders.is_empty() {
        tracing::error!("no worker thread could be started");
        return;
    }
    tokio::pin!(shutdown);
    let mut next = 0usize;
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
        let Ok(tcp) = tcp.into_std() else { continue };
        let _ = senders[next % senders.len()].send(Accepted { tcp, addr, permit });
        next = next.wrapping_add(1);
    }
    drop(listener);
    drop(senders);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
    tracing::info!("all connections closed");
}

/// One worker thread: serves the connections dealt to it until the channel closes,
/// then drains them (at most [`SHUTDOWN_GRACE`]).
fn worker(
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
) {
    // Blocking work (store writes) is short; a bounded pool keeps a burst of first
    // requests from many returning sessions from spawning hundreds of threads.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        let builder = Arc::new(builder(&app));
        let graceful = GracefulShutdown::new();
        while let Some(Accepted { tcp, addr, permit }) = rx.recv().await {
            let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else { continue };
            tokio::spawn(serve_connection(app.clone(), builder.clone(), graceful.watcher(), tls.clone(), tcp, addr, permit));
        }
        tokio::select! {
            _ = graceful.shutdown() => {},
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing remaining connections"),
        }
    });
}

/// Serves one connection: TLS handshake (bounded), then HTTP/1.1 or HTTP/2.
async fn serve_connection(
    app: Arc<App>,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    tls: Option<Arc<Tls>>,
    tcp: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _permit = permit;
    let metrics = app.metrics.clone();
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
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        metrics.handshake(Handshake::Success);
                        s
                    }
                    Ok(Err(_)) => return metrics.handshake(Handshake::Failure),
                    Err(_) => return metrics.handshake(Handshake::Timeout),
                };
            let stream = FirstByteDeadline::new(stream, HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let _ = watcher.watch(conn.into_owned()).await;
        }
        None => {
            let tcp = FirstByteDeadline::new(tcp, HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
            let _ = watcher.watch(conn.into_owned()).await;
        }
    }
}
