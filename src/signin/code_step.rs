//! The code step, wherever a code is typed: the challenge (TOTP or a backup code),
//! enrollment (TOTP against the pending secret) and the account page's confirmations
//! (TOTP against the active secret). Every attempt goes through the regulator; the
//! factors a context allows are tried by the shape of what was typed.

use std::net::IpAddr;

use super::factors::{BackupCode, Factor, NewDevice, Proof, Totp, Verified};
use super::regulator::Regulated;
use super::{SignIn, SignInError, code_lock};
use crate::audit::{AuditEvent, CodeContext};
use crate::core::auth_flow::SecondFactor;
use crate::core::lockout::Step;
use crate::core::store::{DeviceRecord, MfaRecord, PendingEnrollment, SecretKind};
use crate::core::tokens::{fingerprint, new_token};
use crate::core::totp;
use crate::core::user::{User, lockout_key};
use crate::metrics::CodeMethod;

/// How a challenge ended (a lock is an error: `SignInError::Locked`).
#[derive(Debug)]
pub enum Challenged {
    /// 2FA is not (or no longer) on: enroll instead.
    NotEnrolled,
    /// Wrong code: ask again.
    Wrong,
    /// Right: the session becomes complete with `verified.factor`.
    Right(Verified),
}

/// How an enrollment attempt ended.
pub enum Enrolled {
    /// Wrong code: show the same secret again.
    Wrong,
    /// 2FA was turned on meanwhile (another tab): nothing changed.
    AlreadyOn,
    /// 2FA is on; `codes` are the backup codes to show once. Rotate the session
    /// (ending the user's others), then call [`SignIn::enrollment_done`].
    Right { codes: Vec<String> },
}

/// Whether an account action's code confirmation passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// 2FA is not on: there is nothing to confirm with.
    NotOn,
    Wrong,
    Right,
}

/// The metric label of a factor.
fn method(f: SecondFactor) -> CodeMethod {
    match f {
        SecondFactor::Totp => CodeMethod::Totp,
        SecondFactor::BackupCode => CodeMethod::BackupCode,
        SecondFactor::RememberedDevice => CodeMethod::RememberedDevice,
        SecondFactor::Webauthn | SecondFactor::Passkey => CodeMethod::Webauthn,
    }
}

impl SignIn {
    /// One regulated attempt at the code step of `user` with `proof`, tried against the
    /// first of `factors` that recognises it. `Ok(None)`: wrong (already counted and
    /// audited); a lock it hits or imposes is `Err(Locked)`.
    pub(crate) async fn code_attempt(
        &self,
        user: &User,
        proof: Proof<'_>,
        factors: &[&dyn Factor],
        context: CodeContext,
        ip: IpAddr,
    ) -> Result<Option<Verified>, SignInError> {
        let attempt = self
            .regulator
            .attempt(&lockout_key(&user.username), Step::Code, || async {
                let Some(factor) = factors.iter().find(|f| f.recognises(&proof)) else {
                    self.metrics.code_check(CodeMethod::Totp, false);
                    return Ok(None);
                };
                let verified = factor.verify(user, &proof, self.clock.now_ms()).await?;
                self.metrics
                    .code_check(method(factor.kind()), verified.is_some());
                Ok::<_, SignInError>(verified)
            })
            .await?;
        let policy = self.regulator.policy();
        match attempt {
            Regulated::Right(v) => Ok(Some(v)),
            Regulated::Refused(state) => {
                Err(code_lock(state, policy).unwrap_or(SignInError::Locked {
                    retry_after_secs: 1,
                }))
            }
            Regulated::Wrong {
                record,
                imposed_lock,
                state,
            } => {
                self.audit(
                    &user.username,
                    ip,
                    &AuditEvent::ChallengeFailure {
                        context,
                        failures: record.failures,
                    },
                );
                if imposed_lock {
                    self.metrics.lockout(crate::metrics::LockStep::Code);
                    self.audit(
                        &user.username,
                        ip,
                        &AuditEvent::MfaLocked {
                            failures: record.failures,
                            until_unlocked: record.blocked,
                        },
                    );
                    if let Some(locked) = code_lock(state, policy) {
                        return Err(locked);
                    }
                }
                Ok(None)
            }
        }
    }

    /// The challenge: `typed` as a TOTP code or a backup code of a user with 2FA on.
    pub async fn challenge(
        &self,
        user: &User,
        typed: &str,
        ip: IpAddr,
    ) -> Result<Challenged, SignInError> {
        self.code_step(user, typed, ip, CodeContext::Challenge)
            .await
    }

    /// A step-up: the challenge again for a complete session whose last proof is too
    /// old for a `max_factor_age` rule (audited as `mfa.step_up.success`). The same
    /// factors and the same lockout as the challenge.
    pub async fn step_up(
        &self,
        user: &User,
        typed: &str,
        ip: IpAddr,
    ) -> Result<Challenged, SignInError> {
        self.code_step(user, typed, ip, CodeContext::StepUp).await
    }

    /// The challenge or a step-up (`context` says which).
    async fn code_step(
        &self,
        user: &User,
        typed: &str,
        ip: IpAddr,
        context: CodeContext,
    ) -> Result<Challenged, SignInError> {
        let Some(mfa) = self.store.mfa_get(&user.username).await? else {
            return Ok(Challenged::NotEnrolled);
        };
        let secret = self.open_secret(user, SecretKind::Active, &mfa.secret)?;
        let totp = Totp {
            settings: &self.settings.totp,
            secret: &secret,
            store: &*self.store,
        };
        let backup = BackupCode {
            totp: &self.settings.totp,
            keys: self.keys.get(),
            store: &*self.store,
        };
        let factors: [&dyn Factor; 2] = [&totp, &backup];
        let Some(verified) = self
            .code_attempt(user, Proof::Typed(typed), &factors, context, ip)
            .await?
        else {
            return Ok(Challenged::Wrong);
        };
        self.store
            .mfa_mark_used(&user.username, self.clock.now_ms())
            .await?;
        if let Some(remaining) = verified.backup_left {
            self.metrics.backup_code_used();
            self.audit(
                &user.username,
                ip,
                &AuditEvent::BackupCodeUsed { remaining },
            );
        }
        let event = if context == CodeContext::StepUp {
            AuditEvent::StepUpSuccess {
                method: verified.factor,
            }
        } else {
            AuditEvent::ChallengeSuccess {
                method: verified.factor,
            }
        };
        self.audit(&user.username, ip, &event);
        Ok(Challenged::Right(verified))
    }

    /// Remembers this browser for `user` (after a right code): the token for its cookie.
    /// `None` when the feature is off.
    pub async fn remember_browser(
        &self,
        user: &User,
        label: String,
        ip: IpAddr,
    ) -> Result<Option<NewDevice>, SignInError> {
        let Some(duration) = self.settings.remember_for else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        let token = new_token();
        let rec = DeviceRecord {
            user: user.username.clone(),
            created_ms: now,
            expires_ms: now + duration.as_millis() as u64,
            label,
            credential: user.credential_fingerprint(),
        };
        self.store.device_put(&fingerprint(&token), &rec).await?;
        self.audit(
            &user.username,
            ip,
            &AuditEvent::DeviceRemembered {
                browser: &rec.label,
            },
        );
        Ok(Some(NewDevice {
            token,
            max_age_secs: duration.as_secs(),
        }))
    }

    /// The secret `user` is enrolling with: the pending one, or a new one (created,
    /// stored sealed, and audited on first sight).
    pub async fn pending_secret(
        &self,
        user: &User,
        ip: IpAddr,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, SignInError> {
        if let Some(p) = self.store.pending_get(&user.username).await?
            && let Ok(secret) = self
                .keys
                .open(&user.username, SecretKind::Pending, &p.secret)
        {
            return Ok(secret);
        }
        let secret = totp::new_secret();
        let sealed = self
            .keys
            .get()
            .seal(&user.username, SecretKind::Pending, secret.expose());
        self.store
            .pending_put(
                &user.username,
                &PendingEnrollment {
                    secret: sealed,
                    created_ms: self.clock.now_ms(),
                },
            )
            .await?;
        self.audit(&user.username, ip, &AuditEvent::EnrollStarted);
        Ok(zeroize::Zeroizing::new(secret.expose().clone()))
    }

    /// Enrollment: `typed` checked against the pending `secret`; when right, 2FA is
    /// turned on with new backup codes. The caller then rotates the enrolling session
    /// and ends the user's others (`Sessions::rotate_ending_others`).
    pub async fn enroll(
        &self,
        user: &User,
        typed: &str,
        secret: &[u8],
        ip: IpAddr,
    ) -> Result<Enrolled, SignInError> {
        let totp = Totp {
            settings: &self.settings.totp,
            secret,
            store: &*self.store,
        };
        if self
            .code_attempt(user, Proof::Typed(typed), &[&totp], CodeContext::Setup, ip)
            .await?
            .is_none()
        {
            return Ok(Enrolled::Wrong);
        }
        let (codes, hashes) = self.new_backup_codes(user);
        let now = self.clock.now_ms();
        let rec = MfaRecord {
            secret: self
                .keys
                .get()
                .seal(&user.username, SecretKind::Active, secret),
            enabled_ms: now,
            last_used_ms: Some(now),
        };
        if !self.store.mfa_enable(&user.username, &rec, &hashes).await? {
            return Ok(Enrolled::AlreadyOn);
        }
        Ok(Enrolled::Right { codes })
    }

    /// Records a completed enrollment, once the enrolling session was rotated.
    pub fn enrollment_done(&self, user: &User, backup_codes: usize, ip: IpAddr) {
        self.metrics.enrollment_completed();
        self.audit(
            &user.username,
            ip,
            &AuditEvent::EnrollCompleted { backup_codes },
        );
    }

    /// An account action's confirmation: `typed` as a current TOTP code (no backup
    /// codes here), regulated like every code.
    pub async fn confirm_code(
        &self,
        user: &User,
        typed: &str,
        ip: IpAddr,
    ) -> Result<Confirmed, SignInError> {
        let Some(mfa) = self.store.mfa_get(&user.username).await? else {
            return Ok(Confirmed::NotOn);
        };
        let secret = self.open_secret(user, SecretKind::Active, &mfa.secret)?;
        let totp = Totp {
            settings: &self.settings.totp,
            secret: &secret,
            store: &*self.store,
        };
        let right = self
            .code_attempt(
                user,
                Proof::Typed(typed),
                &[&totp],
                CodeContext::Account,
                ip,
            )
            .await?;
        Ok(if right.is_some() {
            Confirmed::Right
        } else {
            Confirmed::Wrong
        })
    }
}
