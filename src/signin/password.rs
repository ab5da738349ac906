//! The password step. Unknown users, wrong passwords and disabled accounts get the same
//! answer and (decoy-hash) cost; the attempt is reserved before the password is
//! checked (the regulator), and a right password leads where [`next_step`] says — a
//! remembered browser may take the place of the code step.
//!
//! [`next_step`]: super::next_step

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::factors::{Factor, NewDevice, Proof, RememberedDevice};
use super::next_step::{Next, after_right_password};
use super::regulator::Regulated;
use super::{SignIn, SignInError};
use crate::audit::{AuditEvent, LoginFailure, LoginNext};
use crate::core::auth_flow::SecondFactor;
use crate::core::lockout::{LockState, Step};
use crate::core::user::{MAX_USERNAME_LEN, User, lockout_key};
use crate::metrics::{CodeMethod, LockStep, LoginResult};
use crate::users::source::{Checked, Refusal};

/// What the person typed into the sign-in form.
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
    /// The remember-device cookie's value, if the browser sent one.
    pub device_token: Option<&'a str>,
}

/// How a password attempt ended (one refused unchecked while locked is an error:
/// `SignInError::Locked`).
#[derive(Debug)]
pub enum PasswordOutcome {
    /// Wrong: answer the form again — or, when `locked_secs` is set (this attempt
    /// imposed the lock), the 429 for that long. `checked` is false for input refused
    /// unchecked (empty, or a name longer than any username can be).
    Wrong {
        checked: bool,
        locked_secs: Option<u64>,
    },
    /// Right password of an enabled user: issue a session at `next`'s stage, set the
    /// remembered browser's replacement cookie, then call [`SignIn::signed_in`].
    Right {
        user: Arc<User>,
        next: Next,
        new_device: Option<NewDevice>,
    },
}

impl SignIn {
    /// One password attempt from `ip`, held `pause` after its reservation (the
    /// per-address brake) before the password is checked.
    pub async fn password(
        &self,
        form: Credentials<'_>,
        ip: IpAddr,
        pause: Duration,
    ) -> Result<PasswordOutcome, SignInError> {
        let username = form.username;
        // A name longer than any username can be is answered like a wrong password and
        // never reaches the store (SPEC §6): invented names cannot fill it. No user can
        // have such a name, so answering it unchecked reveals nothing.
        if username.is_empty() || username.len() > MAX_USERNAME_LEN || form.password.is_empty() {
            self.metrics.login(LoginResult::Failure);
            return Ok(PasswordOutcome::Wrong {
                checked: false,
                locked_secs: None,
            });
        }
        let mut reason = LoginFailure::WrongPassword;
        let attempt = self
            .regulator
            .attempt(&lockout_key(username), Step::Password, || {
                self.check_password(username, form.password, pause, &mut reason)
            })
            .await?;
        let user = match attempt {
            Regulated::Right(user) => user,
            Regulated::Refused(state) => {
                self.audit_typed(
                    username,
                    ip,
                    &AuditEvent::LoginFailure {
                        reason: LoginFailure::Locked,
                        failures: None,
                    },
                );
                self.metrics.login(LoginResult::Locked);
                let retry_after_ms = match state {
                    LockState::Locked { retry_after_ms } => retry_after_ms,
                    LockState::Open | LockState::Blocked => 1000,
                };
                return Err(SignInError::Locked {
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                });
            }
            Regulated::Wrong {
                record,
                imposed_lock,
                state,
            } => {
                self.audit_typed(
                    username,
                    ip,
                    &AuditEvent::LoginFailure {
                        reason,
                        failures: Some(record.failures),
                    },
                );
                self.metrics.login(LoginResult::Failure);
                let mut locked_secs = None;
                if imposed_lock {
                    self.metrics.lockout(LockStep::Password);
                    self.audit_typed(
                        username,
                        ip,
                        &AuditEvent::LoginLocked {
                            failures: record.failures,
                            locks: record.locks,
                        },
                    );
                    if let LockState::Locked { retry_after_ms } = state {
                        locked_secs = Some(retry_after_ms.div_ceil(1000));
                    }
                }
                return Ok(PasswordOutcome::Wrong {
                    checked: true,
                    locked_secs,
                });
            }
        };
        let requires = self.requires_2fa(&user);
        let mfa_on = self.has_second_factor(&user).await?;
        let mut next = after_right_password(requires, mfa_on);
        let mut new_device = None;
        if next == Next::Challenge
            && self.remember_enabled()
            && let Some(token) = form.device_token
        {
            let device = RememberedDevice {
                store: &*self.store,
            };
            let proof = Proof::DeviceToken(token);
            if device.recognises(&proof) {
                let verified = device.verify(&user, &proof, self.clock.now_ms()).await?;
                self.metrics
                    .code_check(CodeMethod::RememberedDevice, verified.is_some());
                if let Some(v) = verified {
                    new_device = v.new_device;
                    next = Next::Complete {
                        factor: Some(SecondFactor::RememberedDevice),
                    };
                }
            }
        }
        Ok(PasswordOutcome::Right {
            user,
            next,
            new_device,
        })
    }

    /// The password check the regulator runs: the pause, then the user source's check
    /// (argon2 off the async workers against the user's hash or the decoy, or a
    /// directory bind).
    async fn check_password(
        &self,
        username: &str,
        password: &str,
        pause: Duration,
        reason: &mut LoginFailure,
    ) -> Result<Option<Arc<User>>, SignInError> {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let checked = self
            .users
            .check_password(username, zeroize::Zeroizing::new(password.to_string()))
            .await?;
        match checked {
            Checked::Right(u) => Ok(Some(u)),
            Checked::Wrong(why) => {
                *reason = match why {
                    Refusal::UnknownUser => LoginFailure::UnknownUser,
                    Refusal::Disabled => LoginFailure::Disabled,
                    Refusal::WrongPassword => LoginFailure::WrongPassword,
                };
                Ok(None)
            }
        }
    }

    /// Records a completed password step, once its session is issued.
    pub fn signed_in(&self, user: &User, next: Next, ip: IpAddr) {
        let (next, mfa) = match next {
            Next::Complete { factor } => (LoginNext::Complete, factor),
            Next::Enroll => (LoginNext::Setup, None),
            Next::Challenge | Next::Login | Next::SignInAgain => (LoginNext::Challenge, None),
        };
        self.metrics.login(LoginResult::Success);
        self.audit(&user.username, ip, &AuditEvent::LoginSuccess { next, mfa });
    }

    /// Audits a failed sign-in under a known user's stored name, or — for a name no
    /// account has (perhaps a password typed into the wrong field) — the typed text cut
    /// short and marked `user_exists: false`.
    fn audit_typed(&self, typed: &str, ip: IpAddr, event: &AuditEvent<'_>) {
        match self.users.known(typed) {
            Some(u) => self.audit.record(&u.username, Some(ip), event),
            None => self.audit.record_typed_name(typed, Some(ip), event),
        }
    }
}
