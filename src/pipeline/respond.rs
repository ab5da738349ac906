//! The one place a refused request becomes its response, for proxied requests and the
//! gateway's own pages alike: a branded page in the request's language for browsers,
//! JSON for everything else, `Retry-After` where waiting helps. The detail is logged
//! here, once; the client sees only the user-facing message.

use http::Response;
use http::header::{HeaderValue, RETRY_AFTER};
use serde_json::json;

use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::pages::render::{self, Brand, ErrorPage, Tr};

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
        GatewayError::Internal(d) => tracing::error!(detail = %d, "internal error"),
        _ => tracing::debug!(error = %e, "request refused"),
    }
}

/// The response for `e`, its words in `tr`'s language; `html` chooses the branded
/// page over JSON.
pub(crate) fn error(
    e: GatewayError,
    html: bool,
    brand: &Brand,
    tr: Tr,
    tls: bool,
) -> Response<Body> {
    let status = e.status();
    log(&e);
    let locked = matches!(e, GatewayError::Locked { .. });
    let retry = match &e {
        GatewayError::Locked { retry_after_secs }
        | GatewayError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
        GatewayError::StoreUnavailable(_) => Some(5),
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
