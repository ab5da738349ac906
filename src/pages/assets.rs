//! The pages' stylesheet, built into the binary.

use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::Ctx;
use crate::http::body::{Body, full};
use crate::http::error::GatewayError;

const STYLE_CSS: &str = include_str!("../../assets/style.css");

pub fn serve(_ctx: &Ctx<'_>, sub: &str) -> Result<Response<Body>, GatewayError> {
    let (body, ctype) = match sub {
        "/assets/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return Err(GatewayError::NotFound),
    };
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}
