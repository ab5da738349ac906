//! Every way a request can fail, and — in exactly one place — the response each gets:
//! a branded page for browsers, JSON for everything else. The logged detail stays in
//! the log; the client sees only the user-facing message.

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::json;

use super::body::Body;
use crate::pages::render::{self, Brand, ErrorPage};

/// A request that cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("host not served here")]
    MisdirectedHost,
    #[error("forbidden by access rule")]
    Denied,
    #[error("user lacks a required role")]
    MissingRole,
    #[error("missing or invalid CSRF token")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("websocket origin not allowed")]
    ForeignOrigin,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream sent no response headers in time")]
    UpstreamTimeout,
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("too many attempts")]
    Locked { retry_after_secs: u64 },
    #[error("too many requests from one address")]
    RateLimited { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("stored second factor cannot be decrypted")]
    SecretUnreadable,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            MisdirectedHost => StatusCode::MISDIRECTED_REQUEST,
            Denied | MissingRole | Csrf | ForeignOrigin => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Locked { .. } | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) | SecretUnreadable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code in JSON answers.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            BadRequest(_) => "bad_request",
            MisdirectedHost => "misdirected_request",
            Denied | MissingRole | ForeignOrigin => "forbidden",
            Csrf => "csrf_token_invalid",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            HeadersTooLarge => "request_header_fields_too_large",
            PayloadTooLarge => "payload_too_large",
            UpstreamUnreachable(_) => "upstream_unreachable",
            UpstreamTimeout => "upstream_timeout",
            StoreUnavailable(_) => "service_unavailable",
            Locked { .. } => "too_many_attempts",
            RateLimited { .. } => "too_many_requests",
            Internal(_) => "internal_error",
            SecretUnreadable => "second_factor_unreadable",
        }
    }

    fn title_and_message(&self) -> (&'static str, &'static str) {
        use GatewayError::*;
        match self {
            BadRequest(_) => (
                "Bad request",
                "The address or request could not be understood.",
            ),
            MisdirectedHost => ("Wrong address", "This site is not served at this address."),
            Denied | ForeignOrigin => ("Access denied", "This page is not available."),
            MissingRole => (
                "Access denied",
                "Your account does not have access to this page. Ask your administrator if you need it.",
            ),
            Csrf => (
                "Form expired",
                "This form has expired or was sent from elsewhere. Go back, reload the page and try again.",
            ),
            NotFound => ("Not found", "There is nothing at this address."),
            MethodNotAllowed => ("Not allowed", "This action is not possible here."),
            HeadersTooLarge => (
                "Request too large",
                "Your browser sent too much data (often: too many cookies). Clear this site's cookies and try again.",
            ),
            PayloadTooLarge => ("Request too large", "The form sent too much data."),
            UpstreamUnreachable(_) => (
                "Application unavailable",
                "The clinic application is not answering right now. Please try again in a minute.",
            ),
            UpstreamTimeout => (
                "Application too slow",
                "The clinic application took too long to answer. Please try again.",
            ),
            StoreUnavailable(_) => (
                "Temporarily unavailable",
                "Sign-in is temporarily unavailable. Please try again in a minute.",
            ),
            Locked { .. } => (
                "Too many attempts",
                "For your security, sign-in is paused for this account after several failed attempts.",
            ),
            RateLimited { .. } => (
                "Too many requests",
                "Too many requests came from your network in the last minute. Please wait a moment and try again.",
            ),
            Internal(_) => (
                "Something went wrong",
                "Something went wrong on our side. Please try again.",
            ),
            SecretUnreadable => (
                "Two-step sign-in needs a reset",
                "Your two-step sign-in cannot be checked right now. Please ask your administrator to reset it; you will then set it up again.",
            ),
        }
    }

    /// The response for this error; `html` chooses the branded page over JSON.
    pub fn into_response(self, html: bool, brand: &Brand, tls: bool) -> Response<Body> {
        let status = self.status();
        match &self {
            GatewayError::UpstreamUnreachable(d) => {
                tracing::warn!(detail = %d, "upstream unreachable")
            }
            GatewayError::UpstreamTimeout => tracing::warn!("upstream response timeout"),
            GatewayError::StoreUnavailable(d) => {
                tracing::error!(detail = %d, "store unavailable; failing closed")
            }
            GatewayError::Internal(d) => tracing::error!(detail = %d, "internal error"),
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let retry = match &self {
            GatewayError::Locked { retry_after_secs }
            | GatewayError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            GatewayError::StoreUnavailable(_) => Some(5),
            _ => None,
        };
        let mut resp = if html {
            let (title, message) = self.title_and_message();
            let back = format!("{}/login", brand.prefix);
            let page = ErrorPage {
                brand,
                title,
                message,
                retry_after: retry
                    .filter(|_| matches!(self, GatewayError::Locked { .. }))
                    .map(render::human_wait),
                back_href: if matches!(self, GatewayError::Locked { .. } | GatewayError::Csrf) {
                    &back
                } else {
                    "/"
                },
                back_label: if matches!(self, GatewayError::Locked { .. } | GatewayError::Csrf) {
                    "Back to sign-in"
                } else {
                    "Go to the start page"
                },
            };
            render::html(status, &page, tls, &[])
        } else {
            let (_, message) = self.title_and_message();
            render::json(
                status,
                &json!({ "error": self.code(), "message": message }),
                tls,
            )
        };
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

/// The SPEC §5.1 answer to a non-navigation without a complete session.
pub fn authentication_required(prefix: &str, tls: bool) -> Response<Body> {
    render::json(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": "authentication_required", "login": format!("{prefix}/login") }),
        tls,
    )
}
