//! The pages' static files, built into the binary: the stylesheet, the optional
//! progressive-enhancement script, and the operator's theme colour, logo and icon.
//!
//! The icon is served at `P/assets/favicon` and every page links it with
//! `<link rel="icon">`, so a browser on the sign-in pages never asks for `/favicon.ico`:
//! that path belongs to the upstream application (and, before sign-in, would only get
//! the gateway's 401).

use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::Ctx;
use crate::http::body::{Body, full};
use crate::http::error::GatewayError;

const STYLE_CSS: &str = include_str!("../../assets/style.css");
const APP_JS: &str = include_str!("../../assets/app.js");

/// An SVG logo opened on its own must not run anything.
const SVG_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// The icon when no logo is configured: the clinic name's initial, white on the
/// operator's colour (which validation made dark enough to read white on).
pub(super) fn generated_icon(clinic_name: &str, primary_color: &str) -> super::render::Logo {
    let initial: String = clinic_name
        .chars()
        .find(|c| c.is_alphanumeric())
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_else(|| "V".to_string());
    let initial = initial
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let color: String = primary_color
        .chars()
        .filter(|c| *c == '#' || c.is_ascii_hexdigit())
        .collect();
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"6\" fill=\"{color}\"/>\
<text x=\"16\" y=\"23\" font-family=\"system-ui,sans-serif\" font-size=\"20\" font-weight=\"700\" text-anchor=\"middle\" fill=\"#fff\">{initial}</text></svg>\n"
    );
    super::render::Logo {
        bytes: svg.into(),
        content_type: "image/svg+xml",
    }
}

pub fn serve(ctx: &Ctx<'_>, sub: &str) -> Result<Response<Body>, GatewayError> {
    let brand = &ctx.app.brand;
    let (body, ctype): (bytes::Bytes, &'static str) = match sub {
        "/assets/style.css" => (STYLE_CSS.into(), "text/css; charset=utf-8"),
        "/assets/theme.css" => (
            bytes::Bytes::from(brand.theme_css.clone()),
            "text/css; charset=utf-8",
        ),
        "/assets/app.js" => (APP_JS.into(), "application/javascript; charset=utf-8"),
        "/assets/favicon" => (brand.icon.bytes.clone(), brand.icon.content_type),
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
