//! Builds the upstream request from the client's (normalised path, header hygiene,
//! forwarding headers, identity), sends it with a response-header deadline, and
//! streams the answer back. A WebSocket handshake is spliced into a tunnel only when
//! the upstream completes it; any other `101` is an upstream failure (502).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::{COOKIE, HOST, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::upgrade::OnUpgrade;

use super::client::{PooledBody, UpstreamPool};
use super::hop_by_hop;
use super::identity_headers::{Identity, IdentityHeaders};
use super::tunnel::{self, Opening};
use crate::http::body::{Body, BoxError, RequestBody};
use crate::http::client_ip;
use crate::http::error::GatewayError;
use crate::http::peer::Peer;

/// What the forwarder needs, fixed at start-up.
pub struct Forwarder {
    pub upstream: UpstreamPool,
    pub upstream_host: HeaderValue,
    pub preserve_host: bool,
    pub response_timeout: std::time::Duration,
    pub identity: IdentityHeaders,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The gateway's own cookie names, removed from the `Cookie` header.
    pub own_cookies: Vec<String>,
}

/// A request body without its trailers: SPEC §5.2 says trailers are not forwarded.
/// It also notes when the client's own body was malformed, so that failure is answered
/// as the client's (400), not blamed on the upstream (502).
struct NoTrailers<B>(B, Arc<AtomicBool>);

impl<B: RequestBody> hyper::body::Body for NoTrailers<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) if f.is_trailers() => Poll::Ready(None),
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(Some(Err(e))) => {
                self.1.store(true, std::sync::atomic::Ordering::Relaxed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Forwarder {
    /// Removes the gateway's own cookies from every `Cookie` header; others pass.
    fn filter_cookies(&self, headers: &mut http::HeaderMap) {
        let mut kept = String::new();
        let (mut dropped, mut lines) = (false, 0);
        for value in headers.get_all(COOKIE) {
            lines += 1;
            let Ok(value) = value.to_str() else {
                dropped = true;
                continue;
            };
            for pair in value
                .split(';')
                .map(str::trim_ascii)
                .filter(|p| !p.is_empty())
            {
                let name = pair.split_once('=').map_or(pair, |(k, _)| k).trim_ascii();
                if self.own_cookies.iter().any(|c| c == name) {
                    dropped = true;
                    continue;
                }
                if !kept.is_empty() {
                    kept.push_str("; ");
                }
                kept.push_str(pair);
            }
        }
        // Nothing of ours in a single header: leave it exactly as sent.
        if !dropped && lines <= 1 {
            return;
        }
        headers.remove(COOKIE);
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_str(&kept)
        {
            headers.insert(COOKIE, v);
        }
    }

    fn forwarding_headers(
        &self,
        headers: &mut http::HeaderMap,
        peer: Peer,
        host: Option<&HeaderValue>,
    ) {
        let peer_ip = client_ip::canonical(peer.addr.ip());
        let trusted = client_ip::is_trusted(peer_ip, &self.trusted_proxies);
        let peer_value = ip_value(peer_ip);
        let xff = if trusted && headers.contains_key(&X_FORWARDED_FOR) {
            let mut chain = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ");
            chain.push_str(", ");
            chain.push_str(peer_value.to_str().unwrap_or_default());
            HeaderValue::from_str(&chain).ok()
        } else {
            Some(peer_value)
        };
        match xff {
            Some(v) => headers.insert(X_FORWARDED_FOR.clone(), v),
            None => headers.remove(&X_FORWARDED_FOR),
        };
        let proto_ok = trusted
            && headers
                .get(&X_FORWARDED_PROTO)
                .is_some_and(|v| v == "https" || v == "http");
        if !proto_ok {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
            );
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
            match host {
                Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
                None => headers.remove(&X_FORWARDED_HOST),
            };
        }
    }

    /// Forwards `req` (whose path is already normalised into `path_and_query`) with
    /// `identity` (None on bypass paths). `websocket` is set when the request is a
    /// WebSocket handshake (`super::websocket::requested`): only then does an
    /// `Upgrade` reach the upstream, and only then may a `101` come back.
    ///
    /// Building the upstream request and reading the answer are plain functions, so
    /// the only state kept across the wait is what the answer needs: the request's
    /// future (and every future around it, up to hyper's per-request slot) stays small.
    pub async fn forward<B: RequestBody>(
        &self,
        req: Request<B>,
        path_and_query: PathAndQuery,
        peer: Peer,
        identity: Option<&Identity<'_>>,
        websocket: Option<Box<Opening>>,
    ) -> Result<Response<Body>, GatewayError> {
        let (out, client_upgrade, client_body_failed) =
            self.upstream_request(req, path_and_query, peer, identity, websocket.is_some());
        // Boxed: the exchange's state would otherwise sit (and be moved) inline.
        let sent = Box::pin(tokio::time::timeout(
            self.response_timeout,
            self.upstream.send(out),
        ))
        .await;
        let resp = match sent {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(_)) if client_body_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err(GatewayError::BadRequest("malformed request body"));
            }
            Ok(Err(e)) => return Err(GatewayError::UpstreamUnreachable(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        client_response(resp, client_upgrade.zip(websocket))
    }

    /// The request to send upstream, the client's side of a WebSocket upgrade (for a
    /// `websocket` handshake), and the flag that tells a broken client body from an
    /// upstream failure.
    fn upstream_request<B: RequestBody>(
        &self,
        mut req: Request<B>,
        path_and_query: PathAndQuery,
        peer: Peer,
        identity: Option<&Identity<'_>>,
        websocket: bool,
    ) -> (Request<Body>, Option<OnUpgrade>, Arc<AtomicBool>) {
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });

        let headers = &mut parts.headers;
        hop_by_hop::remove(headers, websocket);
        self.identity.strip(headers);
        if let Some(id) = identity {
            self.identity.insert(headers, id);
        }
        self.filter_cookies(headers);
        self.forwarding_headers(headers, peer, host.as_ref());
        let host_header = if self.preserve_host {
            host.unwrap_or_else(|| self.upstream_host.clone())
        } else {
            self.upstream_host.clone()
        };
        headers.insert(HOST, host_header);

        // Origin-form: the connection already goes to the upstream.
        parts.uri = Uri::from(path_and_query);
        parts.version = Version::HTTP_11;
        let client_body_failed = Arc::new(AtomicBool::new(false));
        let out = Request::from_parts(parts, NoTrailers(body, client_body_failed.clone()).boxed());
        (out, client_upgrade, client_body_failed)
    }
}

/// The upstream's answer as the client gets it: hop-by-hop headers removed, or for a
/// completed WebSocket handshake both sides spliced together.
fn client_response(
    mut resp: Response<PooledBody>,
    websocket: Option<(OnUpgrade, Box<Opening>)>,
) -> Result<Response<Body>, GatewayError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A 101 to anything but a WebSocket handshake (an h2c upgrade the upstream
        // took from somewhere) or one that does not complete the handshake: never
        // splice, the connection would leave the gateway's hands.
        let Some((client_upgrade, opening)) = websocket else {
            return Err(GatewayError::UpstreamUnreachable(
                "101 to a request that was not a WebSocket handshake".into(),
            ));
        };
        if !opening.handshake.completed_by(resp.headers()) {
            return Err(GatewayError::UpstreamUnreachable(
                "101 that does not complete the WebSocket handshake".into(),
            ));
        }
        hop_by_hop::remove(resp.headers_mut(), true);
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                let ended = tunnel::splice(c, u, opening.terms).await;
                tracing::debug!(?ended, "websocket tunnel closed");
            }
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, crate::http::body::empty()));
    }
    hop_by_hop::remove(resp.headers_mut(), false);
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed()))
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// An address as a header value; IPv4 (the common case) without the formatter.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    };
    let mut out = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(octet).as_bytes();
        out[len..len + digits.len()].copy_from_slice(digits);
        len += digits.len();
    }
    HeaderValue::from_bytes(&out[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The whole error chain on one line, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
