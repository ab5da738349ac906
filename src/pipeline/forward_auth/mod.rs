//! Forward-auth mode (SPEC §9): an nginx, Traefik or Caddy in front asks, per
//! request, whether to let it through. The answer is the decision the proxy mode
//! makes (host → app, normal path, rules, complete session, roles), taken on the
//! original request the proxy describes in its headers — believed only from
//! `server.trusted_proxies`, since a client that reached this endpoint directly could
//! otherwise describe any request it liked.
//!
//! `P/api/authz/forward-auth` (Traefik, Caddy): 200 with the identity headers, 302 to
//! the portal's sign-in for a browser navigation that is not signed in (401 JSON for
//! anything else), 403 when a rule or role forbids. `P/api/authz/auth-request`
//! (nginx): the same, except that "not signed in" is always 401 with the sign-in URL
//! in `Location`, and every other refusal is 403 — nginx turns any other status of an
//! auth sub-request into a 500.

use std::sync::Arc;

use http::header::{COOKIE, HOST, HeaderName, HeaderValue, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use super::Trace;
use super::access::{self, Access};
use super::target;
use crate::app::App;
use crate::core::auth_flow::mfa_label;
use crate::core::clock::now_ms;
use crate::http::body::{Body, empty};
use crate::http::client_ip;
use crate::http::error::GatewayError;
use crate::http::facts;
use crate::http::peer::Peer;
use crate::metrics::Outcome;
use crate::pages;
use crate::pages::render;
use crate::signin::Next;

/// Which proxy's contract an answer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// Traefik `ForwardAuth`, Caddy `forward_auth`.
    ForwardAuth,
    /// nginx `auth_request`.
    AuthRequest,
}

/// The forward-auth endpoint `path` names, if any (a cheap test for every request).
pub(super) fn endpoint(prefix: &str, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix(prefix)?.strip_prefix("/api/authz/")?;
    match rest {
        "forward-auth" => Some(Endpoint::ForwardAuth),
        "auth-request" => Some(Endpoint::AuthRequest),
        _ => None,
    }
}

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// The request the proxy asks about, as it described it.
struct Original {
    method: Method,
    /// `https` or `http`.
    scheme: &'static str,
    /// As the client sent it (may carry a port).
    host: String,
    /// Path and query.
    uri: String,
}

impl Original {
    /// Reads the description: `X-Original-URL` (+ `X-Original-Method`) for nginx
    /// when present, else the `X-Forwarded-*` set. None when it is incomplete.
    fn from_headers(h: &HeaderMap, endpoint: Endpoint) -> Option<Original> {
        let text = |name: &HeaderName| h.get(name).and_then(|v| v.to_str().ok());
        if endpoint == Endpoint::AuthRequest
            && let Some(url) = text(&X_ORIGINAL_URL)
        {
            let uri: Uri = url.parse().ok()?;
            let scheme = match uri.scheme_str()? {
                s if s.eq_ignore_ascii_case("https") => "https",
                s if s.eq_ignore_ascii_case("http") => "http",
                _ => return None,
            };
            let method = text(&X_ORIGINAL_METHOD).unwrap_or("GET");
            return Some(Original {
                method: Method::from_bytes(method.as_bytes()).ok()?,
                scheme,
                host: uri.authority()?.as_str().to_string(),
                uri: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            });
        }
        let scheme = match text(&X_FORWARDED_PROTO)? {
            s if s.eq_ignore_ascii_case("https") => "https",
            s if s.eq_ignore_ascii_case("http") => "http",
            _ => return None,
        };
        // A list (a proxy chain) has no one answer: refuse rather than pick.
        let host = text(&X_FORWARDED_HOST).filter(|h| !h.contains(','))?;
        let uri = text(&X_FORWARDED_URI).filter(|u| u.starts_with('/'))?;
        let method = text(&X_FORWARDED_METHOD).unwrap_or("GET");
        Some(Original {
            method: Method::from_bytes(method.as_bytes()).ok()?,
            scheme,
            host: host.to_string(),
            uri: uri.to_string(),
        })
    }

    /// The original request, rebuilt with the headers the decision reads (the
    /// session cookie, what the client accepts).
    fn request(&self, asked: &HeaderMap) -> Option<Request<()>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str())
            .header(HOST, self.host.as_str());
        for name in [COOKIE, http::header::ACCEPT] {
            for v in asked.get_all(&name) {
                b = b.header(&name, v.clone());
            }
        }
        b.body(()).ok()
    }

    /// The original URL, absolute.
    fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.uri)
    }
}

/// Answers the proxy's question about the request it describes.
pub(super) async fn answer<B>(
    app: &Arc<App>,
    peer: Peer,
    asked: Request<B>,
    endpoint: Endpoint,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    if !client_ip::is_trusted(peer.addr.ip(), &app.cfg.server.trusted_proxies) {
        return Ok(refusal(StatusCode::FORBIDDEN, "untrusted_proxy", app.tls));
    }
    let decided = decide(app, asked.headers(), endpoint, trace).await;
    match (decided, endpoint) {
        (Ok(resp), _) => Ok(resp),
        // nginx accepts only 2xx, 401 and 403 from an auth sub-request.
        (Err(e), Endpoint::AuthRequest) if e.status() != StatusCode::FORBIDDEN => {
            Ok(refusal(StatusCode::FORBIDDEN, e.code(), app.tls))
        }
        (Err(e), _) => Err(e),
    }
}

/// A JSON refusal with its stable code.
fn refusal(status: StatusCode, code: &str, tls: bool) -> Response<Body> {
    render::json(status, &serde_json::json!({ "error": code }), tls)
}

async fn decide(
    app: &Arc<App>,
    asked: &HeaderMap,
    endpoint: Endpoint,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    let original = Original::from_headers(asked, endpoint).ok_or(GatewayError::BadRequest(
        "the proxy did not describe the original request",
    ))?;
    let req = original.request(asked).ok_or(GatewayError::BadRequest(
        "the original request is malformed",
    ))?;
    let server = &app.cfg.server;
    let host_ok = crate::router::host_name(&req)
        .is_some_and(|h| server.hostnames.is_empty() || server.hostnames.contains(&h));
    if !host_ok {
        return Err(GatewayError::MisdirectedHost);
    }
    let target = target::resolve(app, &req)?;
    // The proxy forwards the path as the client sent it, not its normal form: a path
    // that normalises to another ("/chart/../public/x" is "/public/x") would be decided
    // on a path the app never sees, and an app that does not resolve dot segments
    // serves "/chart/…" without an identity. Only a path already normal is decided.
    if !target.is_normal() {
        return Err(GatewayError::BadRequest(
            "the original path is not in normal form",
        ));
    }
    let apps = app.apps.get();
    let route = target.app(&apps, &req)?;
    trace.app = Some(route.clone());
    let decision = apps.decide(route, req.method().as_str(), &target.path);
    let holder = match access::check(app, &req, decision, trace).await? {
        Access::Open => {
            trace.outcome = Some(Outcome::Bypassed);
            return Ok(allowed(None, app.tls));
        }
        Access::Granted(holder) => holder,
        Access::SignIn(current) => {
            let step = match current {
                None => Next::Login,
                Some(c) => app.signin.next(Some((c.record.stage, &*c.user))).await?,
            };
            let to = match step {
                Next::Enroll => Continue::Setup,
                Next::Challenge => Continue::Challenge,
                Next::Login | Next::SignInAgain | Next::Complete { .. } => Continue::Login,
            };
            return Ok(sign_in(app, &original, &req, to, endpoint, trace));
        }
        // A fresh second factor first (`max_factor_age`, SPEC §12).
        Access::StepUp => {
            return Ok(sign_in(
                app,
                &original,
                &req,
                Continue::StepUp,
                endpoint,
                trace,
            ));
        }
    };
    let roles = holder.user.roles_joined();
    let assertion = match &app.assertions {
        Some(signer) => Some(
            signer
                .header_for(
                    &holder.id,
                    &route.name,
                    &holder.user,
                    holder.factor,
                    now_ms(),
                )
                .map_err(|e| GatewayError::Internal(e.to_string()))?,
        ),
        None => None,
    };
    let id = crate::proxy::identity_headers::Identity {
        user: &holder.user.username,
        email: &holder.user.email,
        name: &holder.user.display_name,
        roles: &roles,
        mfa: mfa_label(holder.factor),
        assertion,
    };
    trace.outcome = Some(Outcome::Forwarded);
    Ok(allowed(Some((&route.forwarder.identity, &id)), app.tls))
}

/// 200: let it through, with the identity the app is to be told (none on a bypass
/// path — the proxy's configuration removes client copies either way).
fn allowed(
    identity: Option<(
        &crate::proxy::identity_headers::IdentityHeaders,
        &crate::proxy::identity_headers::Identity<'_>,
    )>,
    tls: bool,
) -> Response<Body> {
    let mut resp = Response::new(empty());
    if let Some((names, id)) = identity {
        names.insert(resp.headers_mut(), id);
    }
    render::secure_headers(resp.headers_mut(), tls);
    resp
}

/// The portal page a request that may not pass yet continues at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    Login,
    Setup,
    Challenge,
    /// The challenge again for a complete session whose second factor is too old.
    StepUp,
}

/// Not signed in far enough: where the portal continues, with the original URL as
/// `rd` — a 302 for a browser navigation through Traefik or Caddy, else 401 (with
/// the sign-in URL in `Location` for nginx, which redirects itself).
fn sign_in(
    app: &App,
    original: &Original,
    req: &Request<()>,
    to: Continue,
    endpoint: Endpoint,
    trace: &mut Trace,
) -> Response<Body> {
    let step = match to {
        Continue::Setup => "setup",
        Continue::Challenge | Continue::StepUp => "challenge",
        Continue::Login => "login",
    };
    let prefix = &app.cfg.server.prefix;
    // The portal: its own host when configured, else the protected host itself
    // (a proxy that routes P to the gateway on every host); rd then stays relative.
    let (base, rd) = match &app.cfg.server.portal_url {
        Some(portal) => (portal.clone(), original.url()),
        None => (
            format!("{}://{}", original.scheme, original.host),
            original.uri.clone(),
        ),
    };
    let location = format!("{base}{prefix}/{step}?rd={}", pages::encode_rd(&rd));
    let navigation = facts::is_navigation(req.method(), req.headers());
    let tls = app.tls;
    if endpoint == Endpoint::ForwardAuth && navigation {
        trace.outcome = Some(Outcome::RedirectedToLogin);
        return render::redirect(StatusCode::FOUND, &location, tls, &[]);
    }
    trace.outcome = Some(Outcome::Unauthorized401);
    let mut resp = match to {
        Continue::StepUp => render::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "error": "step_up_required", "login": format!("{prefix}/challenge") }),
            tls,
        ),
        _ => render::authentication_required(prefix, tls),
    };
    if endpoint == Endpoint::AuthRequest
        && let Ok(v) = HeaderValue::from_str(&location)
    {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests;
