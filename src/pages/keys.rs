//! The account page's security keys (SPEC §10): the list, and the rename and remove
//! forms (`P/account/keys/rename`, `P/account/keys/remove`; field `key` names a key by
//! its credential id, base64url). Adding a key is a ceremony (`pages::webauthn`).
//! Removing the last second factor of a user whose role requires 2FA is refused.

use data_encoding::BASE64URL_NOPAD;
use http::{Response, StatusCode};

use super::account::{complete, page};
use super::render::{self, KeyRow, human_time_in};
use super::{Ctx, Form};
use crate::core::store::KeyRemoval;
use crate::core::user::User;
use crate::http::body::Body;
use crate::http::error::GatewayError;
use crate::signin::security_keys::clean_name;

/// The rows of the keys list (none when `[webauthn]` is off).
pub(super) async fn rows(ctx: &Ctx<'_>, user: &User) -> Result<Vec<KeyRow>, GatewayError> {
    if !ctx.app.signin.keys_enabled() {
        return Ok(Vec::new());
    }
    Ok(ctx
        .app
        .signin
        .keys_of(user)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: BASE64URL_NOPAD.encode(&k.id),
            name: k.name,
            added: human_time_in(Some(k.created_ms), ctx.tr),
            last_used: k.last_used_ms.map(|t| human_time_in(Some(t), ctx.tr)),
        })
        .collect())
}

/// The key a form names; `None` for a value that is no credential id.
fn key_id(form: &Form) -> Option<Vec<u8>> {
    BASE64URL_NOPAD.decode(form.get("key").as_bytes()).ok()
}

fn back(ctx: &Ctx<'_>, done: &str) -> Response<Body> {
    render::redirect(
        StatusCode::SEE_OTHER,
        &format!("{}?done={done}", ctx.p("/account")),
        ctx.tls,
        &[],
    )
}

pub async fn rename(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    if !ctx.app.signin.keys_enabled() {
        return Err(GatewayError::NotFound);
    }
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let name = clean_name(form.get("name"), ctx.t("webauthn.name_default"));
    let found = match key_id(&form) {
        Some(id) => ctx.app.signin.key_rename(&cur.user, &id, &name).await?,
        None => false,
    };
    if !found {
        return page(
            ctx,
            &cur,
            StatusCode::NOT_FOUND,
            None,
            Some(ctx.t("webauthn.not_found")),
        )
        .await;
    }
    Ok(back(ctx, "key-renamed"))
}

pub async fn remove(ctx: &Ctx<'_>, form: Form) -> Result<Response<Body>, GatewayError> {
    if !ctx.app.signin.keys_enabled() {
        return Err(GatewayError::NotFound);
    }
    let cur = match complete(ctx).await? {
        Ok(c) => c,
        Err(resp) => return Ok(resp),
    };
    let outcome = match key_id(&form) {
        Some(id) => ctx.app.signin.key_remove(&cur.user, &id, ctx.ip).await?,
        None => KeyRemoval::NotFound,
    };
    match outcome {
        KeyRemoval::Removed => Ok(back(ctx, "key-removed")),
        KeyRemoval::NotFound => {
            page(
                ctx,
                &cur,
                StatusCode::NOT_FOUND,
                None,
                Some(ctx.t("webauthn.not_found")),
            )
            .await
        }
        KeyRemoval::LastFactor => {
            page(
                ctx,
                &cur,
                StatusCode::CONFLICT,
                None,
                Some(ctx.t("webauthn.last_factor")),
            )
            .await
        }
    }
}
