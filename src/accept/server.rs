//! The accept loop: the connection limit, dealing connections to per-core workers, and
//! graceful shutdown (each connection is served by [`super::connection`]). A panic
//! while handling one request ends only that connection's task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{self, Protocols};
use super::tls::Tls;
use super::{Handler, Settings};

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
pub async fn run<H: Handler>(
    handler: Arc<H>,
    settings: Settings,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut workers = Vec::new();
    let mut senders = Vec::new();
    for i in 0..worker_count() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
        let (handler, settings, tls) = (handler.clone(), settings.clone(), tls.clone());
        match std::thread::Builder::new()
            .name(format!("vestibule-worker-{i}"))
            .spawn(move || worker(handler, settings, tls, rx))
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
fn worker<H: Handler>(
    handler: Arc<H>,
    settings: Settings,
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
    // Access lines go to the log writer in batches, not one wake-up per request.
    crate::access_log::batch_on_this_thread();
    rt.block_on(async move {
        let flusher = tokio::spawn(crate::access_log::flush_periodically());
        let protocols = Arc::new(Protocols::new(settings.max_request_header_bytes, settings.metrics.clone()));
        let connections = TaskTracker::new();
        let shutdown = CancellationToken::new();
        while let Some(Accepted { tcp, addr, permit }) = rx.recv().await {
            let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else { continue };
            // Spawned directly (not wrapped in another async block, which would hold the
            // future twice): the task's size is what every idle connection costs.
            connections.spawn(connection::serve(handler.clone(), protocols.clone(), tls.clone(), tcp, addr, shutdown.clone(), permit));
        }
        shutdown.cancel();
        connections.close();
        tokio::select! {
            _ = connections.wait() => {},
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing remaining connections"),
        }
        flusher.abort();
    });
    crate::access_log::flush();
}
