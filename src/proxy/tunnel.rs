//! A spliced WebSocket: the client's and the upstream's upgraded connections copied
//! into each other, on terms. A tunnel is no longer an HTTP request, so nothing else
//! bounds it: it keeps its client connection's place under `server.max_connections`
//! (the [`ConnectionLease`]), ends after `upstream.websocket_idle_timeout` without
//! traffic either way, ends at shutdown, and ends within 60 s of the session that
//! opened it ending. The proxy cannot see sessions; the pipeline hands it a
//! [`Revalidate`] that answers "may this tunnel still run?", and the tunnel asks it
//! every [`RECHECK`] (with jitter, so many tunnels do not ask the store at once).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::websocket::WebSocketRequest;
use crate::http::peer::ConnectionLease;

/// When a tunnel's session is checked, and how failing checks are treated.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// How often (at most: each wait is drawn between 3/4 of this and this, so many
    /// tunnels do not ask the store at once).
    recheck: Duration,
    /// How long one check may take before it counts as failed.
    check_timeout: Duration,
    /// How long checks may keep failing (store unreachable) before the tunnel is
    /// closed: fail closed, but let one short store hiccup pass.
    failing_grace: Duration,
}

/// With these values a tunnel ends at most 45 s after its session did, whatever the
/// store does (SPEC §5.2 asks for 60 s).
const SCHEDULE: Schedule = Schedule {
    recheck: RECHECK,
    check_timeout: Duration::from_secs(5),
    failing_grace: Duration::from_secs(30),
};

/// How often a tunnel's session is checked, at most.
const RECHECK: Duration = Duration::from_secs(10);

/// The answer to "may this tunnel still run?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The session that opened the tunnel is still complete and still allowed here.
    Valid,
    /// It ended (logout, revoke, expiry, reset, disabled user, changed password) or no
    /// longer qualifies: close now.
    Ended,
    /// The answer could not be had (store error): close once that lasts too long.
    Unknown,
}

/// The pipeline's side of a tunnel: re-validates the session that opened it, the same
/// way a request's session is validated, without counting as the user's activity.
#[async_trait::async_trait]
pub trait Revalidate: Send + Sync {
    async fn check(&self) -> Verdict;
}

/// What a WebSocket tunnel runs under, given by the pipeline.
pub struct Terms {
    pub lease: ConnectionLease,
    pub idle_timeout: Duration,
    /// `None` on bypass paths: no session to outlive, only the idle timeout applies.
    pub session: Option<Box<dyn Revalidate>>,
}

/// A WebSocket handshake to forward, and the terms its tunnel will run under if the
/// upstream completes it.
pub struct Opening {
    pub handshake: WebSocketRequest,
    pub terms: Terms,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// One side closed (or failed).
    Closed,
    /// No traffic either way for the idle timeout.
    Idle,
    /// The session that opened it ended (logout, revocation, expiry, user disabled).
    Session,
    /// The gateway began to shut down.
    Shutdown,
}

/// Copies both ways between `client` and `upstream` until one side closes or the terms
/// end the tunnel; dropping both connections closes them.
pub async fn splice(client: Upgraded, upstream: Upgraded, terms: Terms) -> Ended {
    let traffic = Traffic::new();
    let mut client = Watched {
        io: TokioIo::new(client),
        traffic: &traffic,
    };
    let mut upstream = Watched {
        io: TokioIo::new(upstream),
        traffic: &traffic,
    };
    let ended = tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut upstream,
            TUNNEL_BUFFER,
            TUNNEL_BUFFER,
        ) => Ended::Closed,
        _ = traffic.idle_for(terms.idle_timeout) => Ended::Idle,
        _ = session_ended(terms.session.as_deref(), SCHEDULE) => Ended::Session,
        _ = terms.lease.shutdown().cancelled() => Ended::Shutdown,
    };
    // Both connections close here, and then the lease gives the slot back.
    ended
}

/// Each direction's copy buffer. A tunnel holds both for its whole life, idle or not,
/// so their size is most of an open WebSocket's memory: tokio's default (8 KiB each)
/// made 5,000 idle WebSockets cost 1.11× nginx's memory over plain HTTP. 4 KiB is
/// nginx's own `proxy_buffer_size` on this platform; larger frames simply pass in
/// more reads (issue 26, `scripts/bench-websockets.sh`).
const TUNNEL_BUFFER: usize = 4 * 1024;

/// Completes once the session has ended, or checks have failed for longer than the
/// grace; never without a session.
async fn session_ended(session: Option<&dyn Revalidate>, plan: Schedule) {
    let Some(session) = session else {
        return std::future::pending().await;
    };
    let mut last_valid = Instant::now();
    loop {
        tokio::time::sleep(jittered(plan.recheck)).await;
        let verdict = tokio::time::timeout(plan.check_timeout, session.check())
            .await
            .unwrap_or(Verdict::Unknown);
        match verdict {
            Verdict::Valid => last_valid = Instant::now(),
            Verdict::Ended => return,
            Verdict::Unknown if last_valid.elapsed() >= plan.failing_grace => return,
            Verdict::Unknown => {}
        }
    }
}

/// A wait between 3/4 of `d` and `d`.
fn jittered(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::random_range(ms * 3 / 4..=ms))
}

/// When bytes last moved through the tunnel, in either direction.
struct Traffic {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Traffic {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn note(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.start + Duration::from_millis(self.last.load(Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of the tunnel; every read that brings bytes counts as traffic.
struct Watched<'a, T> {
    io: T,
    traffic: &'a Traffic,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.traffic.note();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_waits_stay_within_three_quarters_and_the_whole() {
        for _ in 0..1000 {
            let d = jittered(RECHECK);
            assert!(d >= RECHECK * 3 / 4 && d <= RECHECK, "{d:?}");
        }
    }

    #[test]
    fn a_session_that_ended_closes_its_tunnel_within_sixty_seconds() {
        // Worst case: the session ends just after a successful check, and every later
        // check hangs until it times out.
        let s = SCHEDULE;
        let bound = s.failing_grace + s.recheck + s.check_timeout;
        assert!(bound <= Duration::from_secs(60), "{bound:?}");
    }

    /// The schedule scaled down to milliseconds (real time; tokio's paused clock needs
    /// a feature this crate does not build with).
    const FAST: Schedule = Schedule {
        recheck: Duration::from_millis(40),
        check_timeout: Duration::from_millis(20),
        failing_grace: Duration::from_millis(200),
    };

    /// Answers from a script, popped from the end; then `Valid`.
    struct Scripted(std::sync::Mutex<Vec<Verdict>>);

    #[async_trait::async_trait]
    impl Revalidate for Scripted {
        async fn check(&self) -> Verdict {
            self.0.lock().unwrap().pop().unwrap_or(Verdict::Valid)
        }
    }

    /// Never answers.
    struct Hung;

    #[async_trait::async_trait]
    impl Revalidate for Hung {
        async fn check(&self) -> Verdict {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn failing_checks_end_the_tunnel_after_the_grace_not_at_once() {
        let s = Scripted(std::sync::Mutex::new(vec![Verdict::Unknown; 100]));
        let started = Instant::now();
        session_ended(Some(&s), FAST).await;
        let took = started.elapsed();
        assert!(took >= FAST.failing_grace, "{took:?}");
        assert!(took < FAST.failing_grace + FAST.recheck * 3, "{took:?}");
    }

    #[tokio::test]
    async fn hanging_checks_count_as_failed() {
        let started = Instant::now();
        session_ended(Some(&Hung), FAST).await;
        let took = started.elapsed();
        assert!(took >= FAST.failing_grace, "{took:?}");
        let bound = FAST.failing_grace + FAST.recheck + FAST.check_timeout;
        assert!(took < bound + FAST.recheck * 2, "{took:?}");
    }

    #[tokio::test]
    async fn an_ended_session_ends_the_tunnel_at_the_next_check() {
        let s = Scripted(std::sync::Mutex::new(vec![
            Verdict::Ended,
            Verdict::Valid,
            Verdict::Unknown,
        ]));
        let started = Instant::now();
        session_ended(Some(&s), FAST).await;
        let took = started.elapsed();
        assert!(took >= FAST.recheck * 9 / 4, "three checks: {took:?}");
        assert!(took < FAST.failing_grace, "{took:?}");
    }

    #[tokio::test]
    async fn idle_counts_from_the_last_traffic() {
        let t = Traffic::new();
        let idle = Duration::from_millis(300);
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.note();
        let noted = Instant::now();
        t.idle_for(idle).await;
        let waited = noted.elapsed();
        assert!(waited >= Duration::from_millis(290), "{waited:?}");
        assert!(waited < Duration::from_millis(450), "{waited:?}");
    }
}
