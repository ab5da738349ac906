//! HTTP/1.1 keep-alive without holding hyper's buffers while a connection waits.
//!
//! hyper keeps about 29 KiB per HTTP/1 connection (a read buffer, a write buffer, the
//! boxed service future) for the connection's whole life, so 10,000 idle keep-alive
//! connections would hold about 300 MiB. Here a connection that has sat idle between
//! two requests for a [`TICK`] is *parked*: hyper's connection is ended at the message
//! boundary without closing the socket, its state is dropped, and only the socket
//! (and any bytes of a next request already read) is kept until the client sends
//! again. A fresh hyper connection then continues with those bytes. Connections that
//! keep sending never park, so the hot path pays nothing for it.
//!
//! The same tick enforces the header-read / keep-alive timeout ([`IDLE_TIMEOUT`]): a
//! connection on which no request head arrives for that long while no exchange is
//! running is closed, whether it is silent, trickling a head (slowloris) or parked.
//! That replaces hyper's own header-read timer, which costs a boxed timer per request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::activity::Activity;
use super::conn_io::{ConnIo, join, read_some};
use crate::http::body::BoxError;
use crate::metrics::Metrics;

/// How long a connection may go without a request head while no exchange runs: the
/// keep-alive idle time, the header-read timeout and the first-byte deadline.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a serving connection checks whether it is idle. A connection parks one
/// to two ticks after its last exchange ended: late enough that a client sending
/// requests back to back never parks, early enough that a burst of requests on many
/// connections does not hold thousands of hyper buffers at once. A tick costs a timer
/// wake-up of a connection that is not parked (10 a second).
pub const TICK: Duration = Duration::from_millis(100);

/// What every phase of one connection shares.
pub struct Http1<'a, Svc> {
    pub builder: &'a http1::Builder,
    pub service: Svc,
    pub activity: Arc<Activity>,
    /// Completes when the gateway shuts down.
    pub shutdown: Pin<&'a mut WaitForCancellationFutureOwned>,
    /// Since when the connection has had no request head (its accept time at first).
    pub idle_since: Instant,
    pub metrics: &'a Metrics,
}

/// How an active phase ended.
enum Ended<S> {
    /// The connection is finished (closed, failed, timed out or upgraded).
    Closed,
    /// Idle at a message boundary: the socket, the bytes already read of a next request,
    /// and since when it is idle.
    Parked(S, Bytes, Instant),
}

/// Serves HTTP/1.1 on `io`, starting with `read_ahead` (bytes already read from it),
/// until the client closes, a timeout, an upgrade or shutdown.
pub async fn serve<S, Svc, B>(mut io: S, mut read_ahead: Bytes, mut ctx: Http1<'_, Svc>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: HttpService<Incoming, ResBody = B> + Clone,
    Svc::Error: Into<BoxError>,
    Svc::Future: Send + 'static,
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut timer = Box::pin(tokio::time::sleep(TICK));
    let mut wait_for_bytes = read_ahead.is_empty();
    loop {
        if wait_for_bytes {
            timer.as_mut().reset(ctx.idle_since + IDLE_TIMEOUT);
            let more = tokio::select! {
                biased;
                _ = ctx.shutdown.as_mut() => return,
                _ = timer.as_mut() => return,
                more = read_some(&mut io, 64) => more,
            };
            match more {
                Ok(bytes) if !bytes.is_empty() => read_ahead = join(read_ahead, bytes),
                _ => return,
            }
        }
        // Boxed: the hyper connection's phase is freed whole when the connection parks.
        match Box::pin(active(io, read_ahead, &mut ctx, timer.as_mut())).await {
            Ended::Closed => return,
            Ended::Parked(socket, bytes, since) => {
                io = socket;
                read_ahead = bytes;
                ctx.idle_since = since;
                wait_for_bytes = true;
            }
        }
    }
}

/// One hyper connection over `io`, until it ends or parks.
async fn active<S, Svc, B>(
    io: S,
    read_ahead: Bytes,
    ctx: &mut Http1<'_, Svc>,
    mut timer: Pin<&mut Sleep>,
) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: HttpService<Incoming, ResBody = B> + Clone,
    Svc::Error: Into<BoxError>,
    Svc::Future: Send + 'static,
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = ctx.activity.clone();
    let started_at = activity.exchanges();
    let stream = ConnIo::new(read_ahead, io, activity.clone());
    let mut conn = Box::pin(
        ctx.builder
            .serve_connection(TokioIo::new(stream), ctx.service.clone())
            .with_upgrades(),
    );
    let mut seen = started_at;
    let mut quiet_since = Some(ctx.idle_since);
    let mut closing = false;
    timer.as_mut().reset(Instant::now() + TICK);
    loop {
        tokio::select! {
            biased;
            // Ended by hyper: the client closed, asked to close, failed, or upgraded.
            _ = conn.as_mut() => return Ended::Closed,
            _ = ctx.shutdown.as_mut(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = timer.as_mut() => {
                let now = Instant::now();
                let exchanges = activity.exchanges();
                if activity.busy() || exchanges != seen {
                    seen = exchanges;
                    quiet_since = None;
                } else {
                    let since = *quiet_since.get_or_insert(now);
                    if now >= since + IDLE_TIMEOUT {
                        return Ended::Closed;
                    }
                    if !closing && exchanges != started_at && !activity.write_blocked() {
                        // hyper closes an idle connection (between two messages) at once on a
                        // graceful shutdown; anywhere else it only stops keeping it alive. So
                        // "finished in this very poll" is the proof of a message boundary.
                        activity.set_parking(true);
                        conn.as_mut().graceful_shutdown();
                        let polled =
                            std::future::poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx))).await;
                        activity.set_parking(false);
                        match polled {
                            Poll::Ready(Ok(())) => {
                                return match Pin::into_inner(conn).into_parts() {
                                    Some(parts) => {
                                        let (unread, socket) = parts.io.into_inner().into_parts();
                                        // Copy: the frozen read buffer would pin hyper's whole
                                        // allocation.
                                        let next = Bytes::copy_from_slice(&parts.read_buf);
                                        ctx.metrics.connection_parked();
                                        Ended::Parked(socket, join(unread, next), since)
                                    }
                                    None => Ended::Closed,
                                };
                            }
                            Poll::Ready(Err(_)) => return Ended::Closed,
                            // Mid-exchange after all: hyper now closes after it.
                            Poll::Pending => closing = true,
                        }
                    }
                }
                timer.as_mut().reset(now + TICK);
            }
        }
    }
}
