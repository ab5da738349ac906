//! The one place a refused request becomes its response, for proxied requests and the
//! gateway's own pages alike: a branded page in the request's language for browsers,
//! JSON for everything else, `Retry-After` where waiting helps. The detail is logged
//! here, once; the client sees only the user-facing message.

use std::time::Instant;

use http::header::{ACCEPT_LANGUAGE, HeaderValue, RETRY_AFTER};
use http::uri::Uri;
use http::{HeaderMap, Method, Request, Response};
use serde_json::json;

use super::Trace;
use crate::access_log::{self, Access};
use crate::app::App;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::http::facts;
use crate::http::peer::Peer;
use crate::http::request_id::{self, X_REQUEST_ID};
use crate::metrics::{Outcome, UpstreamError};
use crate::pages::render::{self, Brand, ErrorPage, Tr};

/// What the answer to a request needs from the request itself, taken before the
/// request moves down the pipeline: its id, whether a person reads the answer (and in
/// which language), and what the access line names. Cheap: refcount bumps only.
pub(super) struct Answering {
    started: Instant,
    rid: HeaderValue,
    html: bool,
    language: Option<HeaderValue>,
    logged: Option<(Method, Uri)>,
}

impl Answering {
    /// Assigns the request id (sent upstream and back to the client) and keeps the rest.
    pub(super) fn begin<B>(app: &App, peer: Peer, req: &mut Request<B>) -> Self {
        let started = Instant::now();
        let rid = request_id::assign(
            req.headers_mut(),
            peer.addr.ip(),
            &app.cfg.server.trusted_proxies,
        );
        let html = facts::accepts_html(req.headers());
        // Error pages for people speak their language; keep the header (a refcount bump).
        let language = html
            .then(|| req.headers().get(ACCEPT_LANGUAGE).cloned())
            .flatten();
        // Cheap clones (shared bytes), kept only when an access line will be written.
        let logged = app
            .cfg
            .log
            .access_log
            .then(|| (req.method().clone(), req.uri().clone()));
        Self {
            started,
            rid,
            html,
            language,
            logged,
        }
    }

    /// The response to a refused request, in the request's language.
    pub(super) fn refused(
        &self,
        app: &App,
        trace: &Trace,
        e: GatewayError,
        tls: bool,
    ) -> Response<Body> {
        let metrics = trace
            .app
            .as_ref()
            .map_or(app.metrics.no_app(), |a| &a.metrics);
        match e {
            GatewayError::UpstreamUnreachable(_) => metrics.upstream_error(UpstreamError::Connect),
            GatewayError::UpstreamTimeout => metrics.upstream_error(UpstreamError::Timeout),
            _ => {}
        }
        let mut lang_headers = HeaderMap::new();
        if let Some(v) = self.language.clone() {
            lang_headers.insert(ACCEPT_LANGUAGE, v);
        }
        let tr = crate::pages::i18n::for_request(&lang_headers, app.brand.default_lang);
        error(e, self.html, &app.brand, tr, tls)
    }

    /// Counts the outcome, writes the access line and sends the request id back.
    pub(super) fn finish(
        self,
        app: &App,
        trace: Trace,
        mut resp: Response<Body>,
    ) -> Response<Body> {
        let metrics = trace
            .app
            .as_ref()
            .map_or(app.metrics.no_app(), |a| &a.metrics);
        metrics.request(
            trace
                .outcome
                .unwrap_or_else(|| Outcome::from_status(resp.status())),
        );
        if let Some((method, uri)) = self.logged {
            access_log::write(&Access {
                method: &method,
                path: trace.path.as_deref().unwrap_or(uri.path()),
                status: resp.status(),
                upstream: trace.upstream,
                total: self.started.elapsed(),
                request_id: self.rid.to_str().unwrap_or(""),
                user: trace.user.as_deref().map(|u| u.username.as_str()),
                app: trace.app.as_deref().map(|a| &*a.name),
            });
        }
        resp.headers_mut().insert(&X_REQUEST_ID, self.rid);
        resp
    }
}

/// The page title and the message a person reads, in `tr`'s language.
fn title_and_message(e: &GatewayError, tr: Tr) -> (&'static str, &'static str) {
    let name = e.catalogue_name();
    (
        tr.t(&format!("error.{name}.title")),
        tr.t(&format!("error.{name}.message")),
    )
}

/// Logs `e` at the level its kind deserves (refusals of the client's own making at
/// debug, failures of the gateway or its upstream louder).
fn log(e: &GatewayError) {
    match e {
        GatewayError::UpstreamUnreachable(d) => {
            tracing::warn!(detail = %d, "upstream unreachable")
        }
        GatewayError::UpstreamTimeout => tracing::warn!("upstream response timeout"),
        GatewayError::StoreUnavailable(d) => {
            tracing::error!(detail = %d, "store unavailable; failing closed")
        }
        GatewayError::DirectoryUnavailable(d) => {
            tracing::error!(detail = %d, "directory unavailable; failing closed")
        }
        GatewayError::Internal(d) => tracing::error!(detail = %d, "internal error"),
        _ => tracing::debug!(error = %e, "request refused"),
    }
}

/// The response for `e`, its words in `tr`'s language; `html` chooses the branded
/// page over JSON.
fn error(e: GatewayError, html: bool, brand: &Brand, tr: Tr, tls: bool) -> Response<Body> {
    let status = e.status();
    log(&e);
    let locked = matches!(e, GatewayError::Locked { .. });
    let retry = match &e {
        GatewayError::Locked { retry_after_secs }
        | GatewayError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
        GatewayError::StoreUnavailable(_) | GatewayError::DirectoryUnavailable(_) => Some(5),
        _ => None,
    };
    let mut resp = if html {
        let (title, message) = title_and_message(&e, tr);
        let back = format!("{}/login", brand.prefix);
        let to_login = locked || matches!(e, GatewayError::Csrf);
        let page = ErrorPage {
            brand,
            tr,
            title,
            message,
            retry_after: retry.filter(|_| locked).map(|s| render::human_wait(s, tr)),
            back_href: if to_login { &back } else { "/" },
            back_label: if to_login {
                tr.t("error.back_login")
            } else {
                tr.t("error.back_start")
            },
        };
        render::html(status, &page, tls, &[])
    } else {
        let (_, message) = title_and_message(&e, tr);
        render::json(
            status,
            &json!({ "error": e.code(), "message": message }),
            tls,
        )
    };
    if let Some(secs) = retry {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}
