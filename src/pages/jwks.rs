//! `P/jwks.json`: the public keys that verify the signed identity assertion (SPEC §13),
//! without authentication — an app fetches them as it would from any identity provider.
//! 404 when the assertion is off, so a misconfigured app fails loudly.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::Ctx;
use crate::http::body::{Body, full};
use crate::http::error::GatewayError;

/// How long an app may cache the set: well inside a retired key's five minutes.
const MAX_AGE: &str = "public, max-age=60";

/// The JWK set, or 404.
pub fn serve(ctx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let Some(assertions) = &ctx.app.assertions else {
        return Err(GatewayError::NotFound);
    };
    let mut resp = Response::new(full(assertions.jwks()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static(MAX_AGE));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}
