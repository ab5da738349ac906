//! The keep-alive connections to the upstream (http or https, with an optional extra
//! CA for private upstream certificates), pooled per worker thread.
//!
//! Each worker runs its own single-threaded runtime, so a pooled connection, its
//! driver task and the requests that use it stay on one thread: no lock, no
//! cross-thread wake-up and no hashing of a pool key per request (one gateway has one
//! upstream). A connection goes back to its thread's pool when the response body has
//! been read to the end, and is taken most-recently-used first, so a steady load keeps
//! reusing the same warm connections. hyper's connection-level client does the HTTP;
//! hyper-rustls's connector does TCP, the connect timeout and TLS.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower_service::Service;

use crate::config::UpstreamConfig;
use crate::http::body::{Body, BoxError};

/// A pooled connection that has been idle this long is closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this many idle connections per worker thread; more are closed.
const MAX_IDLE_PER_THREAD: usize = 2048;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("upstream.ca_file {0}: {1}")]
    CaFile(String, String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect: {0}")]
    Connect(BoxError),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

type Connector = HttpsConnector<HttpConnector>;

/// Builds the connector (TCP + optional TLS) from `[upstream]`.
fn connector(cfg: &UpstreamConfig) -> Result<Connector, ClientError> {
    let tls = crate::client_tls::client_config(cfg.ca_file.as_deref()).map_err(|e| match e {
        crate::client_tls::ClientTlsError::CaFile(f, m) => ClientError::CaFile(f, m),
        crate::client_tls::ClientTlsError::Tls(m) => ClientError::Tls(m),
    })?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The upstream's connections, one pool per worker thread.
pub struct UpstreamPool {
    id: u64,
    connector: Connector,
    /// `scheme://authority/`, what the connector connects to.
    target: Uri,
}

/// One idle connection and since when it waits.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

thread_local! {
    /// This thread's idle connections, per pool (tests run several gateways in one
    /// process), oldest first.
    static IDLE: RefCell<Vec<(u64, VecDeque<Idle>)>> = const { RefCell::new(Vec::new()) };
}

fn with_idle<T>(pool: u64, f: impl FnOnce(&mut VecDeque<Idle>) -> T) -> Option<T> {
    IDLE.try_with(|all| {
        let mut all = all.try_borrow_mut().ok()?;
        let at = match all.iter().position(|(id, _)| *id == pool) {
            Some(at) => at,
            None => {
                all.push((pool, VecDeque::new()));
                all.len() - 1
            }
        };
        Some(f(&mut all[at].1))
    })
    .ok()
    .flatten()
}

impl UpstreamPool {
    /// Checks that the connector can be built (CA file readable, TLS set up).
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, ClientError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let target = Uri::builder()
            .scheme(cfg.scheme.clone())
            .authority(cfg.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ClientError::Tls(format!("upstream address: {e}")))?;
        Ok(Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            connector: connector(cfg)?,
            target,
        })
    }

    /// Sends `req` (origin-form URI, headers ready) on an idle connection of this
    /// thread, or on a new one. A request the pooled connection could not even start
    /// (the upstream had just closed it) is sent again on a new connection.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<PooledBody>, SendError> {
        let mut req = req;
        if let Some(mut sender) = self.checkout().await {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(resp, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: connecting is rare, and its futures would weigh on every request.
        let mut sender = Box::pin(self.connect()).await?;
        let resp = sender.send_request(req).await?;
        Ok(self.pooled(resp, sender))
    }

    fn pooled(&self, resp: Response<Incoming>, sender: SendRequest<Body>) -> Response<PooledBody> {
        // A switched connection belongs to the upgrade now.
        let reusable = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
        resp.map(|body| PooledBody {
            inner: body,
            sender: reusable.then_some((self.id, sender)),
        })
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self) -> Option<SendRequest<Body>> {
        let now = Instant::now();
        loop {
            let mut candidate = with_idle(self.id, |idle| {
                while idle
                    .front()
                    .is_some_and(|c| now.duration_since(c.since) > IDLE_TIMEOUT)
                {
                    idle.pop_front();
                }
                idle.pop_back()
            })??;
            if candidate.sender.is_closed() {
                continue;
            }
            // Usually ready at once; just after a response the connection's own task
            // may still have to finish reading it.
            if candidate.sender.ready().await.is_ok() {
                return Some(candidate.sender);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let mut connector = self.connector.clone();
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(conn.with_upgrades());
        Ok(sender)
    }
}

/// Puts a connection back into this thread's pool.
fn checkin(pool: u64, sender: SendRequest<Body>) {
    if sender.is_closed() {
        return;
    }
    with_idle(pool, |idle| {
        if idle.len() >= MAX_IDLE_PER_THREAD {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    });
}

/// The upstream's response body; once read to the end, its connection goes back to
/// the pool. Dropped early, the connection is closed (hyper cannot reuse it).
pub struct PooledBody {
    inner: Incoming,
    sender: Option<(u64, SendRequest<Body>)>,
}

impl PooledBody {
    fn release_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some((pool, sender)) = self.sender.take()
        {
            checkin(pool, sender);
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some((pool, sender)) = self.sender.take() {
                    checkin(pool, sender);
                }
            }
            Poll::Ready(Some(Ok(_))) => self.release_if_done(),
            Poll::Ready(Some(Err(_))) => self.sender = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body without content (HEAD, 204, 304) is never polled.
        self.release_if_done();
    }
}
