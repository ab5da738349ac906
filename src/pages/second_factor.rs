//! Checking a second factor, shared by setup, challenge and the account page: lockout
//! state of the code step, TOTP with replay refusal, backup codes, failure counting.

use serde_json::json;

use super::Ctx;
use crate::app::now_ms;
use crate::core::auth_flow::SecondFactor;
use crate::core::lockout::{LockState, Step};
use crate::core::store::SecretKind;
use crate::core::user::{User, lockout_key};
use crate::core::{backup_codes, totp};
use crate::http::error::GatewayError;
use crate::metrics::{CodeMethod, LockStep};

/// The result of checking a code.
pub enum Verdict {
    /// Accepted; with backup codes, how many are left.
    Accepted(SecondFactor, Option<u32>),
    Wrong,
}

fn locked(ctx: &Ctx<'_>, state: LockState) -> Option<GatewayError> {
    match state {
        LockState::Open => None,
        LockState::Locked { retry_after_ms } => Some(GatewayError::Locked {
            retry_after_secs: retry_after_ms.div_ceil(1000),
        }),
        LockState::Blocked => Some(GatewayError::Locked {
            retry_after_secs: ctx.app.cfg.lockout.max_duration.as_secs(),
        }),
    }
}

/// 429 when the code step of `user` is locked or blocked.
pub async fn ensure_open(ctx: &Ctx<'_>, user: &User) -> Result<(), GatewayError> {
    let rec = ctx
        .app
        .store
        .lock_get(&lockout_key(&user.username), Step::Code)
        .await
        .map_err(Ctx::store_err)?;
    match locked(ctx, rec.state(now_ms())) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Checks `input` as a TOTP code against `secret` (and, with `allow_backup`, as a
/// backup code). A time step is accepted at most once per user.
pub async fn check(
    ctx: &Ctx<'_>,
    user: &User,
    input: &str,
    secret: &[u8],
    allow_backup: bool,
) -> Result<Verdict, GatewayError> {
    let code = totp::normalise_input(input);
    // A TOTP code has exactly `digits` digits; anything else may be a backup code
    // (which can, rarely, be all digits too).
    let all_digits =
        code.len() == ctx.app.cfg.totp.digits as usize && code.bytes().all(|b| b.is_ascii_digit());
    let verdict = verify(ctx, user, &code, all_digits, secret, allow_backup).await?;
    let method = if allow_backup && !all_digits {
        CodeMethod::BackupCode
    } else {
        CodeMethod::Totp
    };
    ctx.app
        .metrics
        .code_check(method, matches!(verdict, Verdict::Accepted(..)));
    Ok(verdict)
}

async fn verify(
    ctx: &Ctx<'_>,
    user: &User,
    code: &str,
    all_digits: bool,
    secret: &[u8],
    allow_backup: bool,
) -> Result<Verdict, GatewayError> {
    let app = ctx.app;
    if !all_digits {
        if !allow_backup {
            return Ok(Verdict::Wrong);
        }
        let Some(norm) = backup_codes::normalise(code) else {
            return Ok(Verdict::Wrong);
        };
        for key in &app
            .keys
            .get()
            .derive_all(crate::store::crypto::BACKUP_CODES_PURPOSE)
        {
            let h = backup_codes::hash(key, &user.username, &norm);
            if let Some(left) = app
                .store
                .backup_consume(&user.username, &h)
                .await
                .map_err(Ctx::store_err)?
            {
                return Ok(Verdict::Accepted(SecondFactor::BackupCode, Some(left)));
            }
        }
        return Ok(Verdict::Wrong);
    }
    let now_secs = now_ms() / 1000;
    let Some(step) = totp::verify(&app.cfg.totp, secret, code, now_secs) else {
        return Ok(Verdict::Wrong);
    };
    if !app
        .store
        .step_accept(&user.username, step)
        .await
        .map_err(Ctx::store_err)?
    {
        return Ok(Verdict::Wrong);
    }
    Ok(Verdict::Accepted(SecondFactor::Totp, None))
}

/// Counts a wrong code. Returns the 429 to answer when this failure imposed a lock.
pub async fn failed(
    ctx: &Ctx<'_>,
    user: &User,
    context: &str,
) -> Result<Option<GatewayError>, GatewayError> {
    let app = ctx.app;
    let (rec, newly_locked) = app
        .store
        .lock_fail(
            &lockout_key(&user.username),
            Step::Code,
            now_ms(),
            &app.lock_policy,
        )
        .await
        .map_err(Ctx::store_err)?;
    app.audit.event(
        "mfa.challenge.failure",
        &user.username,
        Some(ctx.ip),
        json!({ "context": context, "failures": rec.failures }),
    );
    if newly_locked {
        app.metrics.lockout(LockStep::Code);
        let permanent = rec.blocked;
        app.audit.event(
            "mfa.locked",
            &user.username,
            Some(ctx.ip),
            json!({ "failures": rec.failures, "until_unlocked": permanent }),
        );
        return Ok(locked(ctx, rec.state(now_ms())));
    }
    Ok(None)
}

/// Clears the code step's failure counter after a right code.
pub async fn succeeded(ctx: &Ctx<'_>, user: &User) -> Result<(), GatewayError> {
    ctx.app
        .store
        .lock_reset(&lockout_key(&user.username), Step::Code)
        .await
        .map_err(Ctx::store_err)
}

/// Decrypts a stored TOTP secret.
pub fn open_secret(
    ctx: &Ctx<'_>,
    user: &User,
    envelope: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, GatewayError> {
    ctx.app
        .keys
        .open(&user.username, SecretKind::Active, envelope)
        .map_err(|e| {
            tracing::error!(user = %user.username, error = %e, "stored TOTP secret cannot be decrypted (wrong or lost encryption key?)");
            GatewayError::SecretUnreadable
        })
}

/// New backup codes: the plaintexts (shown once) and their stored hashes.
pub fn new_backup_codes(ctx: &Ctx<'_>, user: &User) -> (Vec<String>, Vec<[u8; 32]>) {
    let codes = backup_codes::generate(ctx.app.cfg.backup_codes.count);
    let key = ctx
        .app
        .keys
        .get()
        .derive(crate::store::crypto::BACKUP_CODES_PURPOSE);
    let hashes = codes
        .iter()
        .filter_map(|c| backup_codes::normalise(c))
        .map(|n| backup_codes::hash(&key, &user.username, &n))
        .collect();
    (codes, hashes)
}

/// The backup-codes page (after enrollment or regeneration).
pub fn codes_page(
    ctx: &Ctx<'_>,
    codes: &[String],
    enrolled: bool,
    continue_href: &str,
    set_cookies: &[String],
) -> http::Response<crate::http::body::Body> {
    let text = format!(
        "{}\r\n{}\r\n\r\n{}\r\n",
        ctx.tr.f("codes.file_title", &ctx.app.cfg.totp.issuer),
        ctx.t("codes.file_note"),
        codes.join("\r\n")
    );
    let download = format!("data:text/plain;charset=utf-8,{}", super::encode_rd(&text));
    let page = super::render::BackupCodesPage {
        brand: &ctx.app.brand,
        tr: ctx.tr,
        enrolled,
        codes,
        download_href: &download,
        continue_href,
    };
    super::render::html(http::StatusCode::OK, &page, ctx.tls, set_cookies)
}
