//! The sign-in state machine:
//! anonymous → password done → (needs enrollment | needs challenge) → complete.
//! Roles and the user's own 2FA setting decide which way it goes.

use serde::{Deserialize, Serialize};

/// How the second factor was given; forwarded upstream in the MFA header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondFactor {
    Totp,
    BackupCode,
    RememberedDevice,
    /// A security key or passkey (SPEC §10).
    Webauthn,
    /// A passkey with user verification that was the whole sign-in, without a password
    /// (`webauthn.passwordless`). Its MFA header value is `webauthn` too.
    Passkey,
}

impl SecondFactor {
    /// Whether giving this factor proves the person is present now (a code, a key);
    /// a remembered browser only recalls an earlier proof, so a step-up
    /// (`max_factor_age`) does not count it.
    pub fn is_fresh_proof(self) -> bool {
        !matches!(self, SecondFactor::RememberedDevice)
    }
}

/// How far a session has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Password verified; a second factor may still be needed.
    PasswordDone,
    /// Signed in; `factor` is `None` for password-only users.
    Complete { factor: Option<SecondFactor> },
}

/// What the person must do after the password step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Enroll,
    Challenge,
    Complete,
}

/// The value of the MFA identity header.
pub fn mfa_label(factor: Option<SecondFactor>) -> &'static str {
    match factor {
        None => "none",
        Some(SecondFactor::Totp) => "totp",
        Some(SecondFactor::BackupCode) => "backup-code",
        Some(SecondFactor::RememberedDevice) => "remembered-device",
        Some(SecondFactor::Webauthn | SecondFactor::Passkey) => "webauthn",
    }
}

/// The step after a right password: challenge whoever has 2FA on, make staff enroll,
/// let everyone else through.
pub fn after_password(role_requires_2fa: bool, mfa_enabled: bool) -> Next {
    if mfa_enabled {
        Next::Challenge
    } else if role_requires_2fa {
        Next::Enroll
    } else {
        Next::Complete
    }
}

/// Whether a session at `stage` may reach protected paths. A password-only session of
/// a user whose roles now require 2FA is not complete (roles can change while signed in).
pub fn is_complete(stage: Stage, role_requires_2fa: bool) -> bool {
    match stage {
        Stage::PasswordDone => false,
        Stage::Complete { factor } => factor.is_some() || !role_requires_2fa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_without_2fa_must_enroll() {
        assert_eq!(after_password(true, false), Next::Enroll);
        assert_eq!(after_password(true, true), Next::Challenge);
    }

    #[test]
    fn patients_pass_unless_they_turned_2fa_on() {
        assert_eq!(after_password(false, false), Next::Complete);
        assert_eq!(after_password(false, true), Next::Challenge);
    }

    #[test]
    fn password_only_is_never_complete_for_staff() {
        assert!(!is_complete(Stage::PasswordDone, false));
        assert!(!is_complete(Stage::Complete { factor: None }, true));
        assert!(is_complete(Stage::Complete { factor: None }, false));
        assert!(is_complete(
            Stage::Complete {
                factor: Some(SecondFactor::Totp)
            },
            true
        ));
    }

    #[test]
    fn mfa_header_values_match_the_contract() {
        assert_eq!(mfa_label(None), "none");
        assert_eq!(mfa_label(Some(SecondFactor::BackupCode)), "backup-code");
        assert_eq!(
            mfa_label(Some(SecondFactor::RememberedDevice)),
            "remembered-device"
        );
        assert_eq!(mfa_label(Some(SecondFactor::Webauthn)), "webauthn");
        assert_eq!(mfa_label(Some(SecondFactor::Passkey)), "webauthn");
    }
}
