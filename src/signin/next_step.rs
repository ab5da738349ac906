//! The one answer to "where does this person go next", for every caller: the proxy's
//! redirect of a navigation, the gates of the setup, challenge and account pages, the
//! session API and the WebSocket tunnel's session watch. Pure and allocation-free: the
//! hot path asks [`completed`] (no store call); only a session that is not complete
//! needs the user's 2FA enrollment looked up for [`next_step`].
//!
//! The machine: no session → `Login`; a session whose stage is complete for the
//! user's current roles → `Complete`; otherwise the user's 2FA decides: on →
//! `Challenge`, off and required by a role → `Enroll`, off and not required →
//! `SignInAgain` (a password-done session the password step would have completed: the
//! roles or the enrollment changed under it).

use crate::core::auth_flow::{SecondFactor, Stage, after_password, is_complete};

/// Where a person goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// No valid session: the password step.
    Login,
    /// Password done; a role requires 2FA and none is set up.
    Enroll,
    /// Password done; 2FA is on: the code step.
    Challenge,
    /// Password done long enough ago that nothing is left to give but the session is
    /// not complete either; a fresh password step completes it.
    SignInAgain,
    /// May reach protected paths; `factor` is the second factor given, if any.
    Complete { factor: Option<SecondFactor> },
}

/// The second factor of a session complete for a user whose roles do (`true`) or do
/// not require 2FA; `None` when the session is not complete. The hot path's question.
#[inline]
pub fn completed(stage: Stage, requires_2fa: bool) -> Option<Option<SecondFactor>> {
    match stage {
        Stage::Complete { factor } if is_complete(stage, requires_2fa) => Some(factor),
        _ => None,
    }
}

/// The next step of a session at `stage` (`None`: no session) of a user whose roles
/// do or do not require 2FA and whose 2FA is or is not on. `mfa_on` is only read for a
/// session that is not complete.
pub fn next_step(stage: Option<Stage>, requires_2fa: bool, mfa_on: impl FnOnce() -> bool) -> Next {
    let Some(stage) = stage else {
        return Next::Login;
    };
    if let Some(factor) = completed(stage, requires_2fa) {
        return Next::Complete { factor };
    }
    match after_password(requires_2fa, mfa_on()) {
        crate::core::auth_flow::Next::Enroll => Next::Enroll,
        crate::core::auth_flow::Next::Challenge => Next::Challenge,
        crate::core::auth_flow::Next::Complete => Next::SignInAgain,
    }
}

/// The step right after a right password (no session yet): where `after_password`
/// leads, as a [`Next`]. A remembered browser may still turn `Challenge` into complete.
pub fn after_right_password(requires_2fa: bool, mfa_on: bool) -> Next {
    match after_password(requires_2fa, mfa_on) {
        crate::core::auth_flow::Next::Enroll => Next::Enroll,
        crate::core::auth_flow::Next::Challenge => Next::Challenge,
        crate::core::auth_flow::Next::Complete => Next::Complete { factor: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: Option<Stage> = Some(Stage::PasswordDone);
    const DONE_NONE: Option<Stage> = Some(Stage::Complete { factor: None });
    const DONE_TOTP: Option<Stage> = Some(Stage::Complete {
        factor: Some(SecondFactor::Totp),
    });

    fn never() -> bool {
        panic!("2FA enrollment looked up for a complete or absent session")
    }

    #[test]
    fn no_session_goes_to_login_without_a_lookup() {
        assert_eq!(next_step(None, true, never), Next::Login);
        assert_eq!(next_step(None, false, never), Next::Login);
    }

    #[test]
    fn complete_sessions_pass_without_a_lookup() {
        assert_eq!(
            next_step(DONE_NONE, false, never),
            Next::Complete { factor: None }
        );
        assert_eq!(
            next_step(DONE_TOTP, true, never),
            Next::Complete {
                factor: Some(SecondFactor::Totp)
            }
        );
        for f in [SecondFactor::BackupCode, SecondFactor::RememberedDevice] {
            let s = Stage::Complete { factor: Some(f) };
            assert_eq!(completed(s, true), Some(Some(f)));
        }
    }

    #[test]
    fn password_done_goes_to_the_code_step_when_2fa_is_on() {
        assert_eq!(next_step(PW, true, || true), Next::Challenge);
        assert_eq!(next_step(PW, false, || true), Next::Challenge);
    }

    #[test]
    fn password_done_staff_without_2fa_enroll() {
        assert_eq!(next_step(PW, true, || false), Next::Enroll);
    }

    #[test]
    fn password_done_with_nothing_left_signs_in_again() {
        assert_eq!(next_step(PW, false, || false), Next::SignInAgain);
    }

    #[test]
    fn password_only_session_of_someone_now_staff_is_not_complete() {
        assert_eq!(completed(Stage::Complete { factor: None }, true), None);
        assert_eq!(next_step(DONE_NONE, true, || false), Next::Enroll);
        assert_eq!(next_step(DONE_NONE, true, || true), Next::Challenge);
        assert_eq!(completed(Stage::PasswordDone, false), None);
    }

    #[test]
    fn right_password_leads_where_roles_and_enrollment_say() {
        assert_eq!(after_right_password(true, false), Next::Enroll);
        assert_eq!(after_right_password(true, true), Next::Challenge);
        assert_eq!(after_right_password(false, true), Next::Challenge);
        assert_eq!(
            after_right_password(false, false),
            Next::Complete { factor: None }
        );
    }
}
