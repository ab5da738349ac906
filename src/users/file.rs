//! Parses and validates the users file. Every problem is reported as `KEY: what is
//! wrong`, like the configuration.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigProblem;
use crate::core::password;
use crate::core::user::{User, lockout_key, validate_role, validate_username};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    roles: Vec<String>,
    password_hash: String,
    #[serde(default)]
    disabled: bool,
}

/// Reads and validates the users file at `path`.
pub fn load(path: &Path) -> Result<Vec<User>, Vec<ConfigProblem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigProblem::new(
            "users.file",
            format!("cannot read {}: {e}", path.display()),
        )]
    })?;
    parse(&text)
}

/// Validates users-file text.
pub fn parse(text: &str) -> Result<Vec<User>, Vec<ConfigProblem>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        vec![ConfigProblem::new("users", format!("{msg}{at}"))]
    })?;
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut users = Vec::new();
    for (i, u) in raw.users.into_iter().enumerate() {
        let key = |k: &str| format!("users[{i}].{k}");
        if let Err(e) = validate_username(&u.username) {
            problems.push(ConfigProblem::new(
                &key("username"),
                format!("{:?} {e}", u.username),
            ));
        }
        if !seen.insert(lockout_key(&u.username)) {
            problems.push(ConfigProblem::new(
                &key("username"),
                format!(
                    "{:?} appears twice (names compare case-insensitively)",
                    u.username
                ),
            ));
        }
        for r in &u.roles {
            if !validate_role(r) {
                problems.push(ConfigProblem::new(
                    &key("roles"),
                    format!("{r:?} may only contain letters, digits and . _ @ -"),
                ));
            }
        }
        if let Err(e) = password::check_phc(&u.password_hash) {
            problems.push(ConfigProblem::new(
                &key("password_hash"),
                format!("must be an argon2id PHC string ({e})"),
            ));
        }
        for (field, v) in [("display_name", &u.display_name), ("email", &u.email)] {
            if v.chars().any(|c| c.is_control()) || v.len() > 256 {
                problems.push(ConfigProblem::new(
                    &key(field),
                    "must be at most 256 characters without control characters",
                ));
            }
        }
        users.push(User {
            display_name: if u.display_name.is_empty() {
                u.username.clone()
            } else {
                u.display_name
            },
            username: u.username,
            email: u.email,
            roles: u.roles,
            password_hash: u.password_hash,
            disabled: u.disabled,
        });
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> String {
        password::hash(b"a long enough password", password::Cost::DEFAULT).unwrap()
    }

    #[test]
    fn parses_a_valid_file() {
        let text = format!(
            "[[users]]\nusername = \"dr.grey\"\ndisplay_name = \"Meredith Grey\"\nemail = \"g@c.example\"\nroles = [\"doctor\"]\npassword_hash = \"{}\"\n",
            hash()
        );
        let users = parse(&text).unwrap();
        assert_eq!(users[0].username, "dr.grey");
        assert_eq!(users[0].roles, vec!["doctor"]);
        assert!(!users[0].disabled);
    }

    #[test]
    fn reports_unknown_keys_and_bad_hashes() {
        let unknown = format!(
            "[[users]]\nusername = \"a\"\npassword_hash = \"{}\"\nrole = \"x\"\n",
            hash()
        );
        assert!(parse(&unknown).is_err());
        let bad = "[[users]]\nusername = \"a\"\npassword_hash = \"plain\"\n[[users]]\nusername = \"A\"\npassword_hash = \"plain\"\n";
        let problems = parse(bad).unwrap_err();
        assert!(problems.iter().any(|p| p.key == "users[0].password_hash"));
        assert!(
            problems.iter().any(|p| p.key == "users[1].username"),
            "{problems:?}"
        );
    }
}
