//! A signed-in user changes their own password (SPEC §12): the current password (the
//! password step's lockout counts it), a code when 2FA is on (the code step's
//! lockout), the rules of [`password_rules`], then the new hash — made on the hashing
//! threads — replaces the old one in the users file atomically, and the file is
//! reloaded at once so the new password is in force before the answer goes out. The
//! page then moves the current session to the new credential and ends the others.
//!
//! [`password_rules`]: crate::core::password_rules

use std::net::IpAddr;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::code_step::Confirmed;
use super::regulator::Regulated;
use super::{SignIn, SignInError};
use crate::audit::{AuditEvent, LoginFailure};
use crate::core::lockout::{LockState, Step};
use crate::core::password_rules::{self, Refused};
use crate::core::user::{User, lockout_key};
use crate::hash_pool::HashPoolError;
use crate::metrics::LockStep;

/// What was typed into the password form.
pub struct PasswordChange<'a> {
    pub current: &'a str,
    pub new: &'a str,
    pub confirm: &'a str,
    /// The code field (only read when the user has 2FA on).
    pub code: &'a str,
}

/// What is wrong with the new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewProblem {
    Rules(Refused),
    SameAsCurrent,
}

/// What is wrong with the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeProblem {
    Missing,
    Wrong,
}

/// Every field's problem, found together where they can be (nothing was changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeProblems {
    pub current_wrong: bool,
    pub new: Option<NewProblem>,
    pub mismatch: bool,
    pub code: Option<CodeProblem>,
}

impl ChangeProblems {
    fn any(&self) -> bool {
        self.current_wrong || self.new.is_some() || self.mismatch || self.code.is_some()
    }
}

/// How a password change ended (a lock, a busy hashing pool or a failed write is an
/// error).
#[derive(Debug)]
pub enum Changed {
    /// Nothing changed; the form again with these problems.
    Refused(ChangeProblems),
    /// The new password is in force: `user` is the user as the reloaded file has them.
    Done { user: Arc<User> },
}

/// Why the users file could not take the new password.
fn write_failed(e: impl std::fmt::Display) -> SignInError {
    SignInError::UsersFile(e.to_string())
}

impl SignIn {
    /// Changes `user`'s password as the form says; `min_len` is
    /// `users.min_password_length`.
    pub async fn change_password(
        &self,
        user: &User,
        form: PasswordChange<'_>,
        min_len: usize,
        ip: IpAddr,
    ) -> Result<Changed, SignInError> {
        let mfa_on = self.store.mfa_get(&user.username).await?.is_some();
        // The checks that need no secret first: every one of them is reported at once.
        let mut problems = ChangeProblems {
            new: password_rules::check(form.new, &user.username, min_len)
                .err()
                .map(NewProblem::Rules),
            mismatch: form.new != form.confirm,
            code: (mfa_on && form.code.trim().is_empty()).then_some(CodeProblem::Missing),
            ..Default::default()
        };
        let Some(file) = self.password_file.clone() else {
            return Err(SignInError::PasswordElsewhere);
        };
        if form.current.is_empty() {
            problems.current_wrong = true;
        }
        if problems.any() {
            return Ok(Changed::Refused(problems));
        }
        // The current password, counted like a sign-in attempt: a stolen session
        // cannot guess it without the lockout noticing.
        let attempt = self
            .regulator
            .attempt(&lockout_key(&user.username), Step::Password, || async {
                let ok = file
                    .hashing
                    .verify(
                        Zeroizing::new(form.current.to_string()),
                        user.password_hash.clone(),
                    )
                    .await
                    .map_err(hashing_error)?;
                Ok::<_, SignInError>(ok.then_some(()))
            })
            .await?;
        // A wrong current password is audited like a wrong sign-in (and a lock it
        // imposes like a sign-in lock): the same secret, the same counter.
        if let Regulated::Wrong {
            record,
            imposed_lock,
            ..
        } = &attempt
        {
            self.audit(
                &user.username,
                ip,
                &AuditEvent::LoginFailure {
                    reason: LoginFailure::WrongPassword,
                    failures: Some(record.failures),
                },
            );
            if *imposed_lock {
                self.metrics.lockout(LockStep::Password);
                self.audit(
                    &user.username,
                    ip,
                    &AuditEvent::LoginLocked {
                        failures: record.failures,
                        locks: record.locks,
                    },
                );
            }
        }
        match attempt {
            Regulated::Right(()) => {}
            Regulated::Refused(state) | Regulated::Wrong { state, .. }
                if matches!(state, LockState::Locked { .. }) =>
            {
                let LockState::Locked { retry_after_ms } = state else {
                    unreachable!("matched just above")
                };
                return Err(SignInError::Locked {
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                });
            }
            Regulated::Refused(_) => {
                return Err(SignInError::Locked {
                    retry_after_secs: 1,
                });
            }
            Regulated::Wrong { .. } => {
                problems.current_wrong = true;
                return Ok(Changed::Refused(problems));
            }
        }
        if mfa_on {
            match self.confirm_code(user, form.code, ip).await? {
                Confirmed::Right | Confirmed::NotOn => {}
                Confirmed::Wrong => {
                    problems.code = Some(CodeProblem::Wrong);
                    return Ok(Changed::Refused(problems));
                }
            }
        }
        if form.new == form.current {
            problems.new = Some(NewProblem::SameAsCurrent);
            return Ok(Changed::Refused(problems));
        }
        let hash = file
            .hashing
            .hash(Zeroizing::new(form.new.to_string()))
            .await
            .map_err(hashing_error)?;
        let users = file.handle.clone();
        let name = user.username.clone();
        tokio::task::spawn_blocking(move || {
            crate::users::edit::set_password_hash_in(users.path(), &name, &hash)?;
            // In force before the answer: the session moves to the new credential.
            users.reload_if_changed();
            Ok::<_, crate::users::edit::EditError>(())
        })
        .await
        .map_err(write_failed)?
        .map_err(write_failed)?;
        let snapshot = file.handle.get();
        match snapshot.directory.find(&user.username) {
            Some(now) if now.credential_fingerprint() != user.credential_fingerprint() => {
                Ok(Changed::Done { user: now.clone() })
            }
            _ => Err(write_failed("the changed file did not load")),
        }
    }
}

fn hashing_error(e: HashPoolError) -> SignInError {
    match e {
        HashPoolError::Busy => SignInError::HashingBusy,
        HashPoolError::Gone | HashPoolError::Failed(_) => SignInError::HashingGone(e.to_string()),
    }
}
