//! The pages' static files, built into the binary: the stylesheet, the optional
//! progressive-enhancement script, and the operator's theme colour and logo.

use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::Ctx;
use crate::http::body::{Body, full};
use crate::http::error::GatewayError;

const STYLE_CSS: &str = include_str!("../../assets/style.css");
const APP_JS: &str = include_str!("../../assets/app.js");

/// An SVG logo opened on its own must not run anything.
const SVG_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

pub fn serve(ctx: &Ctx<'_>, sub: &str) -> Result<Response<Body>, GatewayError> {
    let brand = &ctx.app.brand;
    let (body, ctype): (bytes::Bytes, &'static str) = match sub {
        "/assets/style.css" => (STYLE_CSS.into(), "text/css; charset=utf-8"),
        "/assets/theme.css" => (
            bytes::Bytes::from(brand.theme_css.clone()),
            "text/css; charset=utf-8",
        ),
        "/assets/app.js" => (APP_JS.into(), "application/javascript; charset=utf-8"),
        "/assets/logo" => match &brand.logo {
            Some(logo) => (logo.bytes.clone(), logo.content_type),
            None => return Err(GatewayError::NotFound),
        },
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
    if ctype == "image/svg+xml" {
        resp.headers_mut()
            .insert("content-security-policy", HeaderValue::from_static(SVG_CSP));
    }
    Ok(resp)
}
