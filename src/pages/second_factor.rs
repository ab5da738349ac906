//! Checking a second factor, shared by setup, challenge and the account page: an
//! attempt at the code step is reserved (counted) before the code is checked, then
//! TOTP with replay refusal or a backup code, then the outcome is recorded.

use serde_json::json;

use super::Ctx;
use crate::core::auth_flow::SecondFactor;
use crate::core::clock::now_ms;
use crate::core::lockout::{LockRecord, LockState, Reservation, Step};
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

/// The 429 for a locked or blocked step (`None` when it is open).
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

/// One attempt at the code step, reserved before the code is looked at: it already
/// counts as a failure, so however many arrive at once, at most `max_failures` wrong
/// codes are checked before the lock holds (SPEC §6).
#[must_use = "a reserved attempt ends as right or wrong"]
pub struct Attempt {
    record: LockRecord,
    imposed_lock: bool,
}

/// Reserves one attempt at the code step of `user`: 429 while the step is locked or
/// blocked, 503 when the attempt cannot be counted — both before any code is checked.
pub async fn reserve(ctx: &Ctx<'_>, user: &User) -> Result<Attempt, GatewayError> {
    let reservation = ctx
        .app
        .store
        .lock_reserve(
            &lockout_key(&user.username),
            Step::Code,
            now_ms(),
            &ctx.app.lock_policy,
        )
        .await?;
    match reservation {
        Reservation::Granted {
            record,
            imposed_lock,
        } => Ok(Attempt {
            record,
            imposed_lock,
        }),
        Reservation::Refused(state) => Err(locked(ctx, state).unwrap_or(GatewayError::Locked {
            retry_after_secs: 1,
        })),
    }
}

impl Attempt {
    /// The code was wrong: it is already counted. Audits it, and the lock this attempt
    /// imposed; returns the 429 to answer then.
    pub fn wrong(self, ctx: &Ctx<'_>, user: &User, context: &str) -> Option<GatewayError> {
        let app = ctx.app;
        let rec = self.record;
        app.audit.event(
            "mfa.challenge.failure",
            &user.username,
            Some(ctx.ip),
            json!({ "context": context, "failures": rec.failures }),
        );
        if !self.imposed_lock {
            return None;
        }
        app.metrics.lockout(LockStep::Code);
        app.audit.event(
            "mfa.locked",
            &user.username,
            Some(ctx.ip),
            json!({ "failures": rec.failures, "until_unlocked": rec.blocked }),
        );
        locked(ctx, rec.state(now_ms()))
    }

    /// The code was right: clears the counter, which also lifts a lock this attempt
    /// imposed in advance (no lock event is written for it).
    pub async fn right(self, ctx: &Ctx<'_>, user: &User) -> Result<(), GatewayError> {
        ctx.app
            .store
            .lock_reset(&lockout_key(&user.username), Step::Code)
            .await?;
        Ok(())
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
            if let Some(left) = app.store.backup_consume(&user.username, &h).await? {
                return Ok(Verdict::Accepted(SecondFactor::BackupCode, Some(left)));
            }
        }
        return Ok(Verdict::Wrong);
    }
    let now_secs = now_ms() / 1000;
    let Some(step) = totp::verify(&app.cfg.totp, secret, code, now_secs) else {
        return Ok(Verdict::Wrong);
    };
    if !app.store.step_accept(&user.username, step).await? {
        return Ok(Verdict::Wrong);
    }
    Ok(Verdict::Accepted(SecondFactor::Totp, None))
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
