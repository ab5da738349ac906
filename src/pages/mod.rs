//! The gateway's own pages under `server.prefix`: sign-in, 2FA setup and challenge,
//! account, logout, health, session API and assets. Pages answer; they never forward.

mod account;
mod assets;
mod challenge;
mod codes;
pub(crate) mod health;
pub mod i18n;
mod jwks;
mod keys;
mod login;
mod logout;
mod metrics;
mod qr;
pub mod render;
mod setup;
pub mod velocity;
mod webauthn;

use std::collections::HashMap;
use std::net::IpAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::app::App;
use crate::http::body::{Body, RequestBody};
use crate::http::client_ip;
use crate::http::error::GatewayError;
use crate::http::peer::Peer;

/// Characters kept as they are when `rd` travels in a query string.
const RD_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Encodes a redirect target as a query value.
pub fn encode_rd(rd: &str) -> String {
    utf8_percent_encode(rd, RD_KEEP).to_string()
}

/// What every page handler gets.
pub struct Ctx<'a> {
    pub app: &'a App,
    /// The host the client addressed (`Host`, or HTTP/2's `:authority`), lower-case,
    /// without port.
    pub host: Option<String>,
    pub ip: IpAddr,
    pub tls: bool,
    pub headers: http::HeaderMap,
    pub query: HashMap<String, String>,
    /// The language of this request's pages.
    pub tr: i18n::Tr,
}

impl Ctx<'_> {
    /// The text of a catalogue key in this request's language.
    pub fn t(&self, key: &str) -> &'static str {
        self.tr.t(key)
    }

    /// `P` + `sub`.
    pub fn p(&self, sub: &str) -> String {
        format!("{}{sub}", self.app.cfg.server.prefix)
    }

    /// Where this request comes from, recorded with a session it starts.
    pub(crate) fn session_meta(&self) -> crate::core::store::SessionMeta {
        crate::core::store::SessionMeta {
            factor_ms: None,
            address: self.ip.to_string(),
            browser: crate::http::user_agent::describe(&self.headers),
        }
    }

    /// The validated redirect target from the query.
    pub fn rd_from_query(&self) -> String {
        self.rd(self.query.get("rd").map(String::as_str).unwrap_or(""))
    }

    /// Where to go after a sign-in step: `rd` when it is on this site or on another
    /// app's host (SPEC §8), `/` when it is anything else, and the landing path of
    /// this host's app when there is none.
    pub fn rd(&self, rd: &str) -> String {
        let apps = self.app.apps.get();
        if rd.is_empty() {
            return apps.landing(self.host.as_deref()).to_string();
        }
        crate::core::redirect::safe_target_among(rd, |h| apps.is_app_host(h))
    }
}

/// A posted form, after its CSRF token was checked.
pub struct Form(HashMap<String, String>);

impl Form {
    pub fn get(&self, k: &str) -> &str {
        self.0.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

/// Reads a url-encoded form (bounded) and checks its CSRF token: 403 otherwise.
async fn read_form<B: RequestBody>(ctx: &Ctx<'_>, body: B) -> Result<Form, GatewayError> {
    let bytes: Bytes = Limited::new(body, ctx.app.cfg.limits.max_form_bytes)
        .collect()
        .await
        .map_err(|_| GatewayError::PayloadTooLarge)?
        .to_bytes();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| GatewayError::BadRequest("malformed form"))?;
    let map: HashMap<String, String> = pairs.into_iter().collect();
    if !ctx
        .app
        .csrf
        .verify(&ctx.headers, map.get("csrf_token").map(String::as_str))
    {
        return Err(GatewayError::Csrf);
    }
    Ok(Form(map))
}

/// Serves a request under `server.prefix`.
pub async fn serve<B: RequestBody>(
    app: &App,
    peer: Peer,
    req: Request<B>,
) -> Result<Response<Body>, GatewayError> {
    let host = crate::router::host_name(&req);
    let (parts, body) = req.into_parts();
    let sub = parts
        .uri
        .path()
        .strip_prefix(app.cfg.server.prefix.as_str())
        .unwrap_or("")
        .to_string();
    let xff = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip::client_ip(peer.addr, xff, &app.cfg.server.trusted_proxies);
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default();
    let tr = i18n::for_request(&parts.headers, app.brand.default_lang);
    let ctx = Ctx {
        app,
        host,
        ip,
        tls: peer.tls,
        headers: parts.headers,
        query,
        tr,
    };
    // Errors go back to the pipeline, which answers them as it answers its own.
    dispatch(&ctx, &parts.method, &sub, peer, body).await
}

/// Routes a request under `server.prefix` to its page.
async fn dispatch<B: RequestBody>(
    ctx: &Ctx<'_>,
    method: &Method,
    sub: &str,
    peer: Peer,
    body: B,
) -> Result<Response<Body>, GatewayError> {
    let app = ctx.app;
    let ip = ctx.ip;
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    if post {
        let (n, left) = app.page_posts.hit(ip);
        if n > app.cfg.limits.own_pages_per_minute {
            if n == app.cfg.limits.own_pages_per_minute + 1 {
                tracing::warn!(client = %ip, limit = app.cfg.limits.own_pages_per_minute, "own-page request limit reached for a client address");
            }
            return Err(GatewayError::RateLimited {
                retry_after_secs: left.as_secs().max(1),
            });
        }
    }
    match sub {
        "/login" if get => login::show(ctx).await,
        "/login" if post => login::submit(ctx, read_form(ctx, body).await?).await,
        "/setup" if get => setup::show(ctx).await,
        "/setup" if post => setup::submit(ctx, read_form(ctx, body).await?).await,
        "/challenge" if get => challenge::show(ctx).await,
        "/challenge" if post => challenge::submit(ctx, read_form(ctx, body).await?).await,
        "/account" if get => account::show(ctx).await,
        "/account/backup-codes" if post => {
            account::regenerate_codes(ctx, read_form(ctx, body).await?).await
        }
        "/account/forget-devices" if post => {
            account::forget_devices(ctx, read_form(ctx, body).await?).await
        }
        "/account/disable-2fa" if post => {
            account::disable_2fa(ctx, read_form(ctx, body).await?).await
        }
        "/account/sessions/revoke" if post => {
            account::revoke_session(ctx, read_form(ctx, body).await?).await
        }
        "/account/devices/revoke" if post => {
            account::revoke_device(ctx, read_form(ctx, body).await?).await
        }
        "/account/password" if post => {
            account::change_password(ctx, read_form(ctx, body).await?).await
        }
        "/account/keys/rename" if post => keys::rename(ctx, read_form(ctx, body).await?).await,
        "/account/keys/remove" if post => keys::remove(ctx, read_form(ctx, body).await?).await,
        s if post && s.starts_with("/webauthn/") => {
            let req = webauthn::read_json(ctx, body).await?;
            match s {
                "/webauthn/register/start" => webauthn::register_start(ctx, req).await,
                "/webauthn/register/finish" => webauthn::register_finish(ctx, req).await,
                "/webauthn/challenge/start" => webauthn::challenge_start(ctx, req).await,
                "/webauthn/challenge/finish" => webauthn::challenge_finish(ctx, req).await,
                "/webauthn/passwordless/start" => webauthn::passwordless_start(ctx, req).await,
                "/webauthn/passwordless/finish" => webauthn::passwordless_finish(ctx, req).await,
                _ => Err(GatewayError::NotFound),
            }
        }
        "/logout" if post => logout::submit(ctx, read_form(ctx, body).await?).await,
        "/health" if get => health::health(ctx).await,
        "/metrics" if get => metrics::serve(ctx, peer.addr.ip()).await,
        "/api/session" if get => health::session_api(ctx).await,
        "/jwks.json" if get => jwks::serve(ctx),
        s if get && s.starts_with("/assets/") => assets::serve(ctx, s),
        "" | "/" if get => Ok(render::redirect(
            StatusCode::FOUND,
            &ctx.p("/account"),
            ctx.tls,
            &[],
        )),
        "/login"
        | "/setup"
        | "/challenge"
        | "/account"
        | "/account/backup-codes"
        | "/account/forget-devices"
        | "/account/disable-2fa"
        | "/account/sessions/revoke"
        | "/account/devices/revoke"
        | "/account/password"
        | "/account/keys/rename"
        | "/account/keys/remove"
        | "/logout"
        | "/health"
        | "/metrics"
        | "/api/session"
        | "/jwks.json" => Err(GatewayError::MethodNotAllowed),
        _ => Err(GatewayError::NotFound),
    }
}

/// The request's session, if valid (store errors fail closed).
async fn current(ctx: &Ctx<'_>) -> Result<Option<crate::session::Current>, GatewayError> {
    ctx.app
        .sessions
        .load(&ctx.headers, &*ctx.app.users, crate::core::clock::now_ms())
        .await
        .map_err(GatewayError::from)
}

/// Where the request's session (none: no session) goes next, as the sign-in service
/// decides for every caller.
async fn next_step(
    ctx: &Ctx<'_>,
    cur: Option<&crate::session::Current>,
) -> Result<crate::signin::Next, GatewayError> {
    Ok(ctx
        .app
        .signin
        .next(cur.map(|c| (c.record.stage, &*c.user)))
        .await?)
}

/// Sends a person without the needed session back to the sign-in page.
fn to_login(ctx: &Ctx<'_>, rd: &str) -> Response<Body> {
    render::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}?rd={}", ctx.p("/login"), encode_rd(rd)),
        ctx.tls,
        &[],
    )
}
