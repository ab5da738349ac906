//! Every audit event the gateway writes, as a type: a variant cannot be misspelled, and
//! its fields are the ones `docs/operations.md` lists. The wire names and field names
//! are fixed here and nowhere else ([`AuditEvent::name`], [`AuditEvent::details`]).
//! Fields hold names, counts and reasons only — never a secret.

use serde_json::{Value, json};

use crate::core::auth_flow::{SecondFactor, mfa_label};

/// Why a password attempt failed (`login.failure` `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    UnknownUser,
    WrongPassword,
    Disabled,
    /// Refused unchecked: the step was locked.
    Locked,
}

impl LoginFailure {
    fn as_str(self) -> &'static str {
        match self {
            LoginFailure::UnknownUser => "unknown_user",
            LoginFailure::WrongPassword => "wrong_password",
            LoginFailure::Disabled => "disabled",
            LoginFailure::Locked => "locked",
        }
    }
}

/// Where a code was typed (`mfa.challenge.failure` `context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeContext {
    Setup,
    Challenge,
    Account,
    /// The code step again for a `max_factor_age` rule.
    StepUp,
}

impl CodeContext {
    fn as_str(self) -> &'static str {
        match self {
            CodeContext::Setup => "setup",
            CodeContext::Challenge => "challenge",
            CodeContext::Account => "account",
            CodeContext::StepUp => "step_up",
        }
    }
}

/// The step a successful password leads to (`login.success` `next`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginNext {
    Complete,
    Setup,
    Challenge,
}

/// One audit event and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent<'a> {
    LoginSuccess {
        next: LoginNext,
        mfa: Option<SecondFactor>,
    },
    /// `failures` is absent for [`LoginFailure::Locked`].
    LoginFailure {
        reason: LoginFailure,
        failures: Option<u32>,
    },
    LoginLocked {
        failures: u32,
        locks: u32,
    },
    EnrollStarted,
    EnrollCompleted {
        backup_codes: usize,
    },
    ChallengeSuccess {
        method: SecondFactor,
    },
    ChallengeFailure {
        context: CodeContext,
        failures: u32,
    },
    MfaLocked {
        failures: u32,
        until_unlocked: bool,
    },
    BackupCodeUsed {
        remaining: u32,
    },
    BackupCodesRegenerated {
        count: usize,
    },
    DeviceRemembered {
        browser: &'a str,
    },
    /// `reason` only for the admin commands that caused it.
    DevicesForgotten {
        count: u64,
        by_admin: bool,
        reason: Option<&'a str>,
    },
    MfaDisabledByUser,
    MfaReset {
        sessions_ended: u64,
    },
    Logout,
    /// A signed-in user's request to one of an app's `logout_paths` (SPEC §8): the
    /// gateway session ended with the app's.
    LogoutAtApp {
        app: &'a str,
    },
    /// Always by an administrator; `reason` when caused by disable / set-password.
    SessionsRevoked {
        sessions: u64,
        reason: Option<&'a str>,
    },
    UserUnlocked,
    /// A fresh second factor for a `max_factor_age` rule.
    StepUpSuccess {
        method: SecondFactor,
    },
    /// The user ended sessions of their own from the account page.
    SessionsRevokedByUser {
        sessions: u64,
        all_others: bool,
    },
    /// The user changed their password on the account page; their other sessions
    /// and remembered browsers ended.
    PasswordChanged {
        sessions_ended: u64,
        devices_forgotten: u64,
    },
    KeyRotated {
        primary: &'a str,
        reencrypted: usize,
        skipped: usize,
    },
    KeyOldDropped {
        primary: &'a str,
    },
    /// The directory refresh (SPEC §11) ended a user's sessions and remembered
    /// browsers: removed, disabled, moved, or other groups. Wire name
    /// `session.revoked` with `by: "directory"`.
    SessionsEndedByDirectory {
        sessions: u64,
        devices: u64,
        reason: &'a str,
    },
    /// A security key or passkey was registered (`key`: the name the user gave it).
    WebauthnRegistered {
        key: &'a str,
    },
    /// A key signed a sign-in; `passwordless` when it was the whole sign-in.
    WebauthnSuccess {
        key: &'a str,
        passwordless: bool,
    },
    /// A key's answer was refused. `reason`: `signature` (not valid for the challenge
    /// or the key), `unknown_key`, `expired` (no such ceremony, or used), or
    /// `counter_regressed` (a cloned key); `key` when it is known.
    WebauthnFailure {
        reason: &'static str,
        key: Option<&'a str>,
    },
    WebauthnRemoved {
        key: &'a str,
    },
}

impl AuditEvent<'_> {
    /// The `event` member on the wire.
    pub fn name(&self) -> &'static str {
        use AuditEvent::*;
        match self {
            LoginSuccess { .. } => "login.success",
            LoginFailure { .. } => "login.failure",
            LoginLocked { .. } => "login.locked",
            EnrollStarted => "mfa.enroll.started",
            EnrollCompleted { .. } => "mfa.enroll.completed",
            ChallengeSuccess { .. } => "mfa.challenge.success",
            ChallengeFailure { .. } => "mfa.challenge.failure",
            MfaLocked { .. } => "mfa.locked",
            BackupCodeUsed { .. } => "mfa.backup_code.used",
            BackupCodesRegenerated { .. } => "mfa.backup_codes.regenerated",
            DeviceRemembered { .. } => "mfa.device.remembered",
            DevicesForgotten { .. } => "mfa.devices.forgotten",
            MfaDisabledByUser => "mfa.disabled",
            MfaReset { .. } => "mfa.reset",
            Logout | LogoutAtApp { .. } => "session.logout",
            SessionsRevoked { .. } => "session.revoked",
            UserUnlocked => "user.unlocked",
            StepUpSuccess { .. } => "mfa.step_up.success",
            SessionsRevokedByUser { .. } => "session.revoked",
            PasswordChanged { .. } => "user.password_changed",
            KeyRotated { .. } => "key.rotated",
            KeyOldDropped { .. } => "key.old_dropped",
            SessionsEndedByDirectory { .. } => "session.revoked",
            WebauthnRegistered { .. } => "mfa.webauthn.registered",
            WebauthnSuccess { .. } => "mfa.webauthn.success",
            WebauthnFailure { .. } => "mfa.webauthn.failure",
            WebauthnRemoved { .. } => "mfa.webauthn.removed",
        }
    }

    /// The event's own fields, as a JSON object.
    pub fn details(&self) -> Value {
        use AuditEvent::*;
        let by = |admin: bool| if admin { "admin" } else { "user" };
        match self {
            LoginSuccess { next, mfa } => {
                let next = match next {
                    LoginNext::Complete => "complete",
                    LoginNext::Setup => "setup",
                    LoginNext::Challenge => "challenge",
                };
                json!({ "next": next, "mfa": mfa_label(*mfa) })
            }
            LoginFailure {
                reason,
                failures: Some(n),
            } => json!({ "reason": reason.as_str(), "failures": n }),
            LoginFailure {
                reason,
                failures: None,
            } => json!({ "reason": reason.as_str() }),
            LoginLocked { failures, locks } => json!({ "failures": failures, "locks": locks }),
            EnrollStarted | Logout => json!({}),
            LogoutAtApp { app } => json!({ "app": app }),
            EnrollCompleted { backup_codes } => json!({ "backup_codes": backup_codes }),
            ChallengeSuccess { method } => json!({ "method": mfa_label(Some(*method)) }),
            ChallengeFailure { context, failures } => {
                json!({ "context": context.as_str(), "failures": failures })
            }
            MfaLocked {
                failures,
                until_unlocked,
            } => json!({ "failures": failures, "until_unlocked": until_unlocked }),
            BackupCodeUsed { remaining } => json!({ "remaining": remaining }),
            BackupCodesRegenerated { count } => json!({ "count": count }),
            DeviceRemembered { browser } => json!({ "browser": browser }),
            DevicesForgotten {
                count,
                by_admin,
                reason,
            } => match reason {
                Some(r) => json!({ "reason": r, "count": count, "by": by(*by_admin) }),
                None => json!({ "count": count, "by": by(*by_admin) }),
            },
            MfaDisabledByUser => json!({ "by": "user" }),
            MfaReset { sessions_ended } => {
                json!({ "by": "admin", "sessions_ended": sessions_ended })
            }
            SessionsRevoked { sessions, reason } => match reason {
                Some(r) => json!({ "reason": r, "sessions": sessions, "by": "admin" }),
                None => json!({ "by": "admin", "sessions": sessions }),
            },
            UserUnlocked => json!({ "by": "admin" }),
            StepUpSuccess { method } => json!({ "method": mfa_label(Some(*method)) }),
            SessionsRevokedByUser {
                sessions,
                all_others,
            } => json!({ "by": "user", "sessions": sessions, "all_others": all_others }),
            PasswordChanged {
                sessions_ended,
                devices_forgotten,
            } => json!({
                "by": "user",
                "sessions_ended": sessions_ended,
                "devices_forgotten": devices_forgotten
            }),
            KeyRotated {
                primary,
                reencrypted,
                skipped,
            } => json!({ "primary": primary, "reencrypted": reencrypted, "skipped": skipped }),
            KeyOldDropped { primary } => json!({ "primary": primary }),
            SessionsEndedByDirectory {
                sessions,
                devices,
                reason,
            } => {
                json!({ "by": "directory", "sessions": sessions, "devices": devices, "reason": reason })
            }
            WebauthnRegistered { key } => json!({ "key": key }),
            WebauthnSuccess { key, passwordless } => {
                json!({ "key": key, "passwordless": passwordless })
            }
            WebauthnFailure {
                reason,
                key: Some(k),
            } => json!({ "reason": reason, "key": k }),
            WebauthnFailure { reason, key: None } => json!({ "reason": reason }),
            WebauthnRemoved { key } => json!({ "key": key, "by": "user" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_and_fields_are_the_documented_ones() {
        let e = AuditEvent::LoginSuccess {
            next: LoginNext::Challenge,
            mfa: None,
        };
        assert_eq!(e.name(), "login.success");
        assert_eq!(e.details(), json!({ "next": "challenge", "mfa": "none" }));
        let e = AuditEvent::LoginFailure {
            reason: LoginFailure::Locked,
            failures: None,
        };
        assert_eq!(e.details(), json!({ "reason": "locked" }));
        let e = AuditEvent::ChallengeFailure {
            context: CodeContext::Account,
            failures: 3,
        };
        assert_eq!(e.name(), "mfa.challenge.failure");
        assert_eq!(e.details(), json!({ "context": "account", "failures": 3 }));
        let e = AuditEvent::DevicesForgotten {
            count: 2,
            by_admin: true,
            reason: Some("account disabled"),
        };
        assert_eq!(
            e.details(),
            json!({ "count": 2, "by": "admin", "reason": "account disabled" })
        );
    }

    /// Every name appears in the operator's table, so the docs and the code agree.
    #[test]
    fn every_event_is_documented() {
        let doc = include_str!("../../docs/operations.md");
        let all = [
            AuditEvent::LoginSuccess {
                next: LoginNext::Complete,
                mfa: None,
            },
            AuditEvent::LoginFailure {
                reason: LoginFailure::Disabled,
                failures: Some(1),
            },
            AuditEvent::LoginLocked {
                failures: 1,
                locks: 1,
            },
            AuditEvent::EnrollStarted,
            AuditEvent::EnrollCompleted { backup_codes: 1 },
            AuditEvent::ChallengeSuccess {
                method: SecondFactor::Totp,
            },
            AuditEvent::ChallengeFailure {
                context: CodeContext::Setup,
                failures: 1,
            },
            AuditEvent::MfaLocked {
                failures: 1,
                until_unlocked: false,
            },
            AuditEvent::BackupCodeUsed { remaining: 1 },
            AuditEvent::BackupCodesRegenerated { count: 1 },
            AuditEvent::DeviceRemembered { browser: "b" },
            AuditEvent::DevicesForgotten {
                count: 1,
                by_admin: false,
                reason: None,
            },
            AuditEvent::MfaDisabledByUser,
            AuditEvent::MfaReset { sessions_ended: 1 },
            AuditEvent::Logout,
            AuditEvent::SessionsRevoked {
                sessions: 1,
                reason: None,
            },
            AuditEvent::UserUnlocked,
            AuditEvent::StepUpSuccess {
                method: SecondFactor::Totp,
            },
            AuditEvent::PasswordChanged {
                sessions_ended: 1,
                devices_forgotten: 0,
            },
            AuditEvent::SessionsEndedByDirectory {
                sessions: 1,
                devices: 0,
                reason: "r",
            },
            AuditEvent::WebauthnRegistered { key: "k" },
            AuditEvent::WebauthnSuccess {
                key: "k",
                passwordless: false,
            },
            AuditEvent::WebauthnFailure {
                reason: "counter_regressed",
                key: None,
            },
            AuditEvent::WebauthnRemoved { key: "k" },
        ];
        for e in all {
            assert!(
                doc.contains(&format!("| `{}` |", e.name())),
                "{} missing from docs/operations.md",
                e.name()
            );
        }
    }
}
