//! One accepted connection: the TLS handshake (bounded in time), the choice between
//! HTTP/2 (by ALPN, or by the prior-knowledge preface) and HTTP/1.1, and the service
//! that runs every request through the pipeline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Handler;
use super::activity::{Activity, ExchangeBody};
use super::conn_io::{ConnIo, join, read_some};
use super::http1::{Http1, IDLE_TIMEOUT};
use super::tls::Tls;
use crate::http::peer::{ConnectionLease, ConnectionSlot, Peer};
use crate::metrics::{Handshake, Metrics};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP settings and the counters every connection of a worker shares.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// The connection and handshake counters.
    metrics: Arc<Metrics>,
}

impl Protocols {
    pub fn new(max_request_header_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let limit = max_request_header_bytes;
        let mut h1 = http1::Builder::new();
        // No hyper header-read timer: `http1::serve` enforces that timeout per
        // connection without a timer allocation per request. The header count stays at
        // hyper's default (100): its parse arrays then live on the stack, where any
        // other limit costs two heap arrays written element by element per request.
        h1.header_read_timeout(None)
            .max_buf_size((limit + 1024).max(64 * 1024))
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(limit as u32)
            .max_concurrent_streams(250)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Self {
            http1: h1,
            http2: h2,
            metrics,
        }
    }
}

/// Serves one connection until it closes or the gateway shuts down; `permit` is its
/// slot under `server.max_connections`, kept until a WebSocket tunnel opened on the
/// connection has ended too.
///
/// Each phase (handshake, HTTP/2, HTTP/1 detection) is boxed: a task is as large as
/// its largest phase, and a connection spends most of its life idle in the smallest.
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    protocols: Arc<Protocols>,
    tls: Option<Arc<Tls>>,
    tcp: TcpStream,
    addr: SocketAddr,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let accepted_at = Instant::now();
    let metrics = protocols.metrics.clone();
    let peer = Peer {
        addr,
        tls: tls.is_some(),
    };
    metrics.connection_opened(true);
    // Held here, by every request and by any WebSocket tunnel opened on the
    // connection: the slot is given back when the last of them ends.
    let lease: ConnectionLease = Arc::new(Slot {
        _permit: permit,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let lease = lease.clone();
            let exchange = activity.begin();
            async move {
                let resp = handler.handle(peer, req, lease).await;
                Ok::<_, Infallible>(resp.map(|body| ExchangeBody::new(body, exchange)))
            }
        })
    };
    let conn = Conn {
        metrics: &metrics,
        protocols: &protocols,
        activity,
        shutdown,
        accepted_at,
    };
    match tls {
        Some(tls) => {
            let handshake = Box::pin(tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                super::tls_stream::TlsStream::accept(tcp, tls.config.clone()),
            ));
            let stream = match handshake.await {
                Ok(Ok(s)) => {
                    metrics.handshake(Handshake::Success);
                    s
                }
                Ok(Err(_)) => return metrics.handshake(Handshake::Failure),
                Err(_) => return metrics.handshake(Handshake::Timeout),
            };
            // Boxed: the TLS state is large, and an idle connection's task would
            // otherwise carry it inline in every phase that holds the stream.
            let stream = Box::new(stream);
            // Also under ALPN h2: HTTP/2 starts once the client's preface has arrived,
            // so the server's SETTINGS never race the end of the handshake at a client
            // that only wanted to see it, and a connection that never sends is closed
            // after the idle timeout like any other.
            Box::pin(conn.detect(stream, service)).await;
        }
        None => Box::pin(conn.detect(tcp, service)).await,
    }
}

/// The connection's place under `server.max_connections`, counted as open until the
/// connection and any WebSocket tunnel spliced from it have ended.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ConnectionSlot for Slot {
    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.connection_opened(false);
    }
}

/// One connection's share of the worker.
struct Conn<'a> {
    metrics: &'a Metrics,
    protocols: &'a Protocols,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
    accepted_at: Instant,
}

impl Conn<'_> {
    /// Waits for the first bytes (at most [`IDLE_TIMEOUT`]) and serves HTTP/2 if they are
    /// its preface, HTTP/1.1 otherwise.
    async fn detect<S, Svc>(self, mut io: S, service: Svc)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Svc: GatewayService,
    {
        let mut first = Bytes::new();
        let deadline = tokio::time::sleep_until(self.accepted_at + IDLE_TIMEOUT);
        tokio::pin!(deadline);
        while first.len() < H2_PREFACE.len() && may_be_h2_preface(&first) {
            let more = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return,
                _ = &mut deadline => return,
                more = read_some(&mut io, H2_PREFACE.len() - first.len()) => more,
            };
            match more {
                Ok(bytes) if !bytes.is_empty() => first = join(first, bytes),
                _ => return,
            }
        }
        if first == H2_PREFACE {
            return Box::pin(self.http2(io, first, service)).await;
        }
        let shutdown = self.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        let ctx = Http1 {
            builder: &self.protocols.http1,
            service,
            activity: self.activity,
            shutdown,
            idle_since: self.accepted_at,
            metrics: self.metrics,
        };
        super::http1::serve(io, first, ctx).await;
    }

    async fn http2<S, Svc>(self, io: S, read_ahead: Bytes, service: Svc)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Svc: GatewayService,
    {
        let stream = ConnIo::new(read_ahead, io, self.activity);
        let conn = self
            .protocols
            .http2
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// The service every connection runs: the pipeline, with its exchange tracked.
trait GatewayService:
    hyper::service::HttpService<
        Incoming,
        ResBody = ExchangeBody,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<T> GatewayService for T where
    T: hyper::service::HttpService<
            Incoming,
            ResBody = ExchangeBody,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Whether a connection's first bytes are (so far) HTTP/2's prior-knowledge preface.
fn may_be_h2_preface(first: &[u8]) -> bool {
    H2_PREFACE.starts_with(first)
}

/// The bytes an HTTP/2 client sends first without ALPN (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_recognised_by_its_prefix_only() {
        assert!(may_be_h2_preface(b"PRI * HT"));
        assert!(may_be_h2_preface(H2_PREFACE));
        assert!(!may_be_h2_preface(b"POST / HTTP/1.1"));
        assert!(!may_be_h2_preface(b"GET"));
    }
}
