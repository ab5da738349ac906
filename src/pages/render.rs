//! Templates (compile-checked, auto-escaping askama), the security headers every page
//! carries, and the one catalogue of error pages.

use askama::Template;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, SET_COOKIE};
use http::{HeaderMap, Response, StatusCode};

use crate::http::body::{Body, full};
pub use crate::pages::i18n::{Lang, Tr};

/// What every page shows around its content: the operator's `[ui]` branding.
#[derive(Debug, Clone)]
pub struct Brand {
    /// The clinic's name, in the header and page titles.
    pub name: String,
    /// Who to contact with sign-in problems (footer, error and lockout pages).
    pub support: Option<String>,
    pub prefix: String,
    /// The logo served at `P/assets/logo`, if configured.
    pub logo: Option<Logo>,
    /// `P/assets/theme.css`: the operator's colour as CSS custom properties.
    pub theme_css: String,
    /// `P/assets/favicon`, linked from every page: the logo, else a generated icon.
    pub icon: Logo,
    /// The language when `Accept-Language` names none we have.
    pub default_lang: Lang,
}

/// A logo image, read once at start-up.
#[derive(Clone)]
pub struct Logo {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
}

impl std::fmt::Debug for Logo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Logo({}, {} bytes)", self.content_type, self.bytes.len())
    }
}

impl Brand {
    /// The branding of `cfg` (the logo was read and checked by config validation).
    pub fn from_config(cfg: &crate::config::Config) -> Brand {
        let ui = &cfg.ui;
        let logo = ui.logo.as_ref().map(|l| Logo {
            bytes: bytes::Bytes::copy_from_slice(&l.bytes),
            content_type: l.content_type,
        });
        Brand {
            name: ui.clinic_name.clone(),
            support: ui.support_contact.clone(),
            prefix: cfg.server.prefix.clone(),
            icon: logo.clone().unwrap_or_else(|| {
                super::assets::generated_icon(&ui.clinic_name, &ui.primary_color)
            }),
            logo,
            theme_css: theme_css(&ui.primary_color),
            default_lang: Lang::from_tag(&ui.default_language).unwrap_or(Lang::En),
        }
    }

    /// The icon's media type, for the `<link rel="icon">` of every page.
    pub fn icon_type(&self) -> &'static str {
        self.icon.content_type
    }

    pub fn has_logo(&self) -> bool {
        self.logo.is_some()
    }

    pub fn support_contact(&self) -> Option<&str> {
        self.support.as_deref()
    }
}

/// The generated stylesheet carrying the operator's colour (CSP forbids inline styles).
pub fn theme_css(primary: &str) -> String {
    format!(":root{{--primary:{primary}}}\n")
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub brand: &'a Brand,
    pub tr: Tr,
    pub csrf_token: &'a str,
    pub rd: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
    /// `webauthn.passwordless`: offer "Sign in with a passkey".
    pub passwordless: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage<'a> {
    pub brand: &'a Brand,
    pub tr: Tr,
    pub csrf_token: &'a str,
    pub rd: &'a str,
    pub qr_png_base64: &'a str,
    pub qr_size: u32,
    pub otpauth_uri: &'a str,
    pub secret_grouped: &'a str,
    pub digits: u32,
    pub period: u64,
    pub error: Option<&'a str>,
    /// `[webauthn]` is on: offer a key as the second factor too.
    pub keys_enabled: bool,
    pub key_heading: &'a str,
    pub key_rd: &'a str,
}

#[derive(Template)]
#[template(path = "backup_codes.html")]
pub struct BackupCodesPage<'a> {
    pub brand: &'a Brand,
    pub tr: Tr,
    pub enrolled: bool,
    pub codes: &'a [String],
    pub download_href: &'a str,
    pub continue_href: &'a str,
}

#[derive(Template)]
#[template(path = "challenge.html")]
pub struct ChallengePage<'a> {
    pub brand: &'a Brand,
    pub tr: Tr,
    pub csrf_token: &'a str,
    pub rd: &'a str,
    pub issuer: &'a str,
    pub remember_enabled: bool,
    pub remember_days: u64,
    pub period: u64,
    pub error: Option<&'a str>,
    /// A step-up for a `max_factor_age` rule (the session is already complete).
    pub step_up: bool,
    /// The user has keys (and `[webauthn]` is on): offer them.
    pub keys_on: bool,
    /// The user has TOTP: offer the code form (also the path without JavaScript).
    pub totp_on: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub brand: &'a Brand,
    pub tr: Tr,
    pub csrf_token: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub roles: &'a str,
    pub mfa_on: bool,
    pub since: &'a str,
    pub last_used: &'a str,
    pub backup_left: u32,
    pub devices: &'a [DeviceRow],
    /// The user's sessions (SPEC §12), the current one marked.
    pub sessions: &'a [SessionRow],
    /// Whether there is a session besides the current one.
    pub others: bool,
    pub min_password_length: usize,
    /// Whether the password form is offered (users file; a directory owns passwords).
    pub password_here: bool,
    /// The password form's errors, per field.
    pub pw: PasswordErrors<'a>,
    pub can_disable: bool,
    pub account_path_encoded: &'a str,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
    /// `[webauthn]` is on: the keys section.
    pub keys_enabled: bool,
    pub keys: &'a [KeyRow],
    pub key_heading: &'a str,
    pub key_rd: &'a str,
}

/// One key on the account page.
pub struct KeyRow {
    /// The credential id, base64url: the form value that names the key.
    pub id: String,
    pub name: String,
    pub added: String,
    pub last_used: Option<String>,
}

/// A session as the account page lists it.
pub struct SessionRow {
    pub handle: String,
    pub browser: String,
    pub started: String,
    pub last_seen: String,
    pub address: String,
    pub current: bool,
    /// The revoke button's accessible name (which browser it signs out).
    pub revoke_label: String,
}

/// A remembered browser as the account page lists it.
pub struct DeviceRow {
    pub handle: String,
    pub label: String,
    pub revoke_label: String,
}

/// What was wrong with each field of a password change.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordErrors<'a> {
    pub current: Option<&'a str>,
    pub new: Option<&'a str>,
    pub confirm: Option<&'a str>,
    pub code: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub brand: &'a Brand,
    pub tr: Tr,
    pub title: &'a str,
    pub message: &'a str,
    pub retry_after: Option<String>,
    pub back_href: &'a str,
    pub back_label: &'a str,
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers of SPEC §5.3 to a response of the gateway's own.
pub fn secure_headers(headers: &mut HeaderMap, tls: bool) {
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if tls {
        headers.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// An HTML response with the security headers and any cookies to set.
pub fn html(
    status: StatusCode,
    page: &impl Template,
    tls: bool,
    set_cookies: &[String],
) -> Response<Body> {
    let body = page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template rendering failed");
        "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
    });
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(resp.headers_mut(), tls);
    add_cookies(&mut resp, set_cookies);
    resp
}

/// A JSON response with the security headers.
pub fn json(status: StatusCode, value: &serde_json::Value, tls: bool) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    secure_headers(resp.headers_mut(), tls);
    resp
}

/// A redirect (302 or 303) with the security headers and cookies.
pub fn redirect(
    status: StatusCode,
    location: &str,
    tls: bool,
    set_cookies: &[String],
) -> Response<Body> {
    let mut resp = Response::new(crate::http::body::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    } else {
        resp.headers_mut()
            .insert(http::header::LOCATION, HeaderValue::from_static("/"));
    }
    secure_headers(resp.headers_mut(), tls);
    add_cookies(&mut resp, set_cookies);
    resp
}

pub fn add_cookies(resp: &mut Response<Body>, set_cookies: &[String]) {
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
}

/// "3 minutes", "45 seconds": how long a person has to wait.
pub fn human_wait(secs: u64, tr: Tr) -> String {
    match secs {
        0..=1 => tr.t("wait.second").to_string(),
        2..=89 => tr.f("wait.seconds", secs),
        90..=5399 => tr.f("wait.minutes", secs.div_ceil(60)),
        _ => tr.f("wait.hours", secs.div_ceil(3600)),
    }
}

/// Human date for the admin CLI, e.g. "2026-11-23 14:05 UTC" (English "never").
pub fn human_time(ms: Option<u64>) -> String {
    human_time_in(ms, Tr::new(Lang::En))
}

/// Human date for the account page, e.g. "2026-11-23 14:05 UTC".
pub fn human_time_in(ms: Option<u64>, tr: Tr) -> String {
    match ms
        .and_then(|ms| cookie::time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64).ok())
    {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute()
        ),
        None => tr.t("time.never").to_string(),
    }
}

/// The SPEC §5.1 answer to a non-navigation without a complete session.
pub fn authentication_required(prefix: &str, tls: bool) -> Response<Body> {
    json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "error": "authentication_required", "login": format!("{prefix}/login") }),
        tls,
    )
}
