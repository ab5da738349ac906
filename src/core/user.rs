//! Users and roles as the domain sees them. The users file is parsed elsewhere; this
//! module decides what a user record means.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::fast_map::FastMap;

/// One person who can sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub roles: Vec<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
}

impl User {
    /// Changes whenever the password changes; sessions and remembered devices carry it,
    /// so a password change voids them without touching the store.
    pub fn credential_fingerprint(&self) -> [u8; 8] {
        let d = Sha256::digest(self.password_hash.as_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }

    /// Roles as the comma-separated value of the roles header.
    pub fn roles_joined(&self) -> String {
        self.roles.join(",")
    }
}

/// Why a username is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("must be 1 to 64 characters")]
    Length,
    #[error("may only contain letters, digits and . _ @ -")]
    Characters,
}

/// The longest username, in bytes (a username is ASCII, so also in characters).
/// Sign-in refuses longer names before storing anything (SPEC §6): none can exist.
pub const MAX_USERNAME_LEN: usize = 64;

/// Usernames end up in headers, logs and otpauth labels: keep them plain.
pub fn validate_username(name: &str) -> Result<(), UsernameError> {
    if name.is_empty() || name.len() > MAX_USERNAME_LEN {
        return Err(UsernameError::Length);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
    {
        return Err(UsernameError::Characters);
    }
    Ok(())
}

/// Role names follow the same rule as usernames, so they are safe in a header list.
pub fn validate_role(role: &str) -> bool {
    validate_username(role).is_ok()
}

/// The key under which counters and lockouts are kept: usernames compare
/// case-insensitively, unknown ones included.
pub fn lockout_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Which roles must use a second factor.
#[derive(Debug, Clone, Default)]
pub struct RolePolicy {
    pub require_2fa_roles: Vec<String>,
}

impl RolePolicy {
    /// True when any of `roles` is listed in `policy.require_2fa_roles`.
    pub fn requires_2fa(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.require_2fa_roles.contains(r))
    }
}

/// All users, looked up case-insensitively.
#[derive(Debug, Default)]
pub struct Directory {
    /// Each user with their credential fingerprint, computed once here rather than on
    /// every authenticated request.
    by_key: FastMap<String, (Arc<User>, [u8; 8])>,
}

impl Directory {
    /// Builds the directory; names must already be unique case-insensitively.
    pub fn new(users: Vec<User>) -> Self {
        let by_key = users
            .into_iter()
            .map(|u| {
                let credential = u.credential_fingerprint();
                (lockout_key(&u.username), (Arc::new(u), credential))
            })
            .collect();
        Self { by_key }
    }

    fn entry(&self, name: &str) -> Option<&(Arc<User>, [u8; 8])> {
        // The hot path looks up canonical names from sessions: skip the lower-casing
        // allocation when there is nothing to lower.
        if !name
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace() || !b.is_ascii())
        {
            return self.by_key.get(name);
        }
        self.by_key.get(&lockout_key(name))
    }

    pub fn find(&self, name: &str) -> Option<&Arc<User>> {
        self.entry(name).map(|(u, _)| u)
    }

    /// The user a session (or remembered device) issued under `credential` still
    /// belongs to: enabled, and with the same password as then.
    pub fn holder(&self, name: &str, credential: &[u8; 8]) -> Option<&Arc<User>> {
        self.entry(name)
            .filter(|(u, c)| !u.disabled && c == credential)
            .map(|(u, _)| u)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, roles: &[&str]) -> User {
        User {
            username: name.into(),
            display_name: name.into(),
            email: String::new(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            password_hash: "$argon2id$x".into(),
            disabled: false,
        }
    }

    #[test]
    fn staff_roles_require_2fa_patients_do_not() {
        let p = RolePolicy {
            require_2fa_roles: vec!["doctor".into(), "clerk".into()],
        };
        assert!(p.requires_2fa(&user("d", &["doctor"]).roles));
        assert!(p.requires_2fa(&user("c", &["patient", "clerk"]).roles));
        assert!(!p.requires_2fa(&user("p", &["patient"]).roles));
    }

    #[test]
    fn lookup_is_case_insensitive() {
        let d = Directory::new(vec![user("Dr.Grey", &["doctor"])]);
        assert!(d.find("dr.grey").is_some());
        assert!(d.find("DR.GREY").is_some());
        assert!(d.find("grey").is_none());
    }

    #[test]
    fn a_session_holder_is_enabled_and_has_the_same_password() {
        let u = user("pat", &["patient"]);
        let cred = u.credential_fingerprint();
        let mut off = user("off", &["patient"]);
        off.disabled = true;
        let off_cred = off.credential_fingerprint();
        let d = Directory::new(vec![u, off]);
        assert!(d.holder("pat", &cred).is_some());
        assert!(d.holder("pat", &[0; 8]).is_none(), "password changed since");
        assert!(d.holder("off", &off_cred).is_none(), "disabled");
        assert!(d.holder("nobody", &cred).is_none());
    }

    #[test]
    fn password_change_changes_fingerprint() {
        let mut u = user("a", &[]);
        let before = u.credential_fingerprint();
        u.password_hash = "$argon2id$y".into();
        assert_ne!(before, u.credential_fingerprint());
    }

    #[test]
    fn usernames_are_plain() {
        assert!(validate_username("dr.grey@clinic-1").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("x\ny").is_err());
    }
}
