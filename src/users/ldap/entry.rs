//! The pure part of the directory: filters built from typed input (RFC 4515 escaping),
//! the group → role mapping, and a directory entry turned into a [`User`]. No I/O, so
//! every rule here has a unit test.

use std::collections::HashMap;

use ldap3::ldap_escape;

use crate::core::user::{User, lockout_key, validate_username};

/// Active Directory's `LDAP_MATCHING_RULE_IN_CHAIN`: matches a group whose `member`
/// reaches the user through any depth of nested groups.
pub(crate) const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// Active Directory's `userAccountControl` flag `ACCOUNTDISABLE`.
pub(crate) const ACCOUNT_DISABLE: u32 = 0x2;

/// The attribute carrying Active Directory's account flags.
pub(crate) const USER_ACCOUNT_CONTROL: &str = "userAccountControl";

/// `user_filter` with `{username}` replaced by the typed name, escaped for an LDAP
/// filter (RFC 4515: `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`,
/// `\00`), so typed text can only ever be a value, never filter syntax.
pub(crate) fn user_filter(template: &str, username: &str) -> String {
    template.replace("{username}", &ldap_escape(username))
}

/// The filter that matches a group (searched at its own DN, base scope) when the user
/// `user_dn` is a member: directly (`member` of groupOfNames and AD groups,
/// `uniqueMember` of groupOfUniqueNames), or — `nested` — through nested groups with
/// AD's in-chain rule. The DN is escaped like any value.
pub(crate) fn group_filter(user_dn: &str, nested: bool) -> String {
    let dn = ldap_escape(user_dn);
    if nested {
        format!("(member:{IN_CHAIN}:={dn})")
    } else {
        format!("(|(member={dn})(uniqueMember={dn}))")
    }
}

/// The roles of a user who is a member of the groups at `member_of` (indexes into
/// `group_roles`): each mapped role once, in the order the mapping lists them. A user
/// in no mapped group has no roles.
pub(crate) fn roles_of(group_roles: &[(String, String)], member_of: &[usize]) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for (i, (_, role)) in group_roles.iter().enumerate() {
        if member_of.contains(&i) && !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    roles
}

/// Whether an entry's `userAccountControl` marks the account disabled. Absent (an
/// OpenLDAP entry, say): not disabled by this rule — such directories disable by
/// making `user_filter` not match (see docs/operations.md). Present but unreadable:
/// disabled (fail closed).
pub(crate) fn is_disabled(attrs: &HashMap<String, Vec<String>>) -> bool {
    match first(attrs, USER_ACCOUNT_CONTROL) {
        None => false,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(flags) => (flags as u32) & ACCOUNT_DISABLE != 0,
            Err(_) => true,
        },
    }
}

/// The first value of `name` (attribute names compare case-insensitively).
pub(crate) fn first<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// Display names and e-mail addresses end up in headers: no control characters, at
/// most 256 characters (longer or unsafe values are dropped, not cut).
fn clean(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty() && v.chars().count() <= 256 && !v.chars().any(char::is_control))
        .map(str::to_string)
}

/// What the directory says about one person.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub user: User,
    pub dn: String,
    pub disabled: bool,
}

/// Why an entry cannot be a user of the gateway.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("the entry has no {0} attribute")]
    NoUsername(String),
    #[error("its {0} is not a usable username (letters, digits and . _ @ - only, at most 64)")]
    BadUsername(String),
}

/// Builds the user of an entry. The username is the entry's `username_attribute`
/// value, lower-cased (the key of sessions, 2FA records and lockouts: stable whatever
/// case is typed). `password_hash` holds no hash for a directory user but the entry's
/// DN and roles, so the credential fingerprint that sessions and remembered browsers
/// carry changes when the user is moved or their groups change, voiding them.
pub(crate) fn to_user(
    dn: &str,
    attrs: &HashMap<String, Vec<String>>,
    roles: Vec<String>,
    username_attribute: &str,
    display_name_attribute: &str,
    email_attribute: &str,
) -> Result<Found, EntryError> {
    let raw = first(attrs, username_attribute)
        .ok_or_else(|| EntryError::NoUsername(username_attribute.to_string()))?;
    let username = lockout_key(raw);
    validate_username(&username)
        .map_err(|_| EntryError::BadUsername(username_attribute.to_string()))?;
    let display_name =
        clean(first(attrs, display_name_attribute)).unwrap_or_else(|| username.clone());
    let email = clean(first(attrs, email_attribute)).unwrap_or_default();
    let stamp = format!("directory:{}\n{}", dn.to_lowercase(), roles.join(","));
    Ok(Found {
        disabled: is_disabled(attrs),
        dn: dn.to_string(),
        user: User {
            username,
            display_name,
            email,
            roles,
            password_hash: stamp,
            disabled: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn typed_filter_syntax_becomes_a_plain_value() {
        let t = "(&(objectClass=user)(sAMAccountName={username}))";
        assert_eq!(
            user_filter(t, "dr.grey"),
            "(&(objectClass=user)(sAMAccountName=dr.grey))"
        );
        assert_eq!(
            user_filter(t, "*"),
            "(&(objectClass=user)(sAMAccountName=\\2a))"
        );
        assert_eq!(
            user_filter(t, ")(uid=*"),
            "(&(objectClass=user)(sAMAccountName=\\29\\28uid=\\2a))"
        );
        assert_eq!(
            user_filter(t, "a\\b\0"),
            "(&(objectClass=user)(sAMAccountName=a\\5cb\\00))"
        );
        // A name that itself contains the placeholder is replaced once, as a value.
        assert_eq!(
            user_filter("(uid={username})", "{username}"),
            "(uid={username})"
        );
    }

    #[test]
    fn group_filters_escape_the_dn_and_use_the_in_chain_rule_when_nested() {
        assert_eq!(
            group_filter("uid=a(1),ou=people,dc=x", false),
            "(|(member=uid=a\\281\\29,ou=people,dc=x)(uniqueMember=uid=a\\281\\29,ou=people,dc=x))"
        );
        assert_eq!(
            group_filter("CN=Grey\\, M,DC=x", true),
            "(member:1.2.840.113556.1.4.1941:=CN=Grey\\5c, M,DC=x)"
        );
    }

    #[test]
    fn roles_come_from_mapped_groups_once_each_in_mapping_order() {
        let map = vec![
            ("cn=doctors,dc=x".to_string(), "doctor".to_string()),
            ("cn=clerks,dc=x".to_string(), "clerk".to_string()),
            ("cn=surgeons,dc=x".to_string(), "doctor".to_string()),
            ("cn=patients,dc=x".to_string(), "patient".to_string()),
        ];
        assert_eq!(roles_of(&map, &[]), Vec::<String>::new());
        assert_eq!(roles_of(&map, &[3, 0]), vec!["doctor", "patient"]);
        assert_eq!(roles_of(&map, &[2, 0, 1]), vec!["doctor", "clerk"]);
    }

    #[test]
    fn user_account_control_bit_two_disables() {
        assert!(!is_disabled(&attrs(&[])));
        assert!(!is_disabled(&attrs(&[("userAccountControl", "512")])));
        assert!(is_disabled(&attrs(&[("userAccountControl", "514")])));
        assert!(is_disabled(&attrs(&[("useraccountcontrol", "66050")])));
        assert!(is_disabled(&attrs(&[("userAccountControl", "garbage")])));
    }

    #[test]
    fn an_entry_becomes_a_user_keyed_by_its_lower_cased_name() {
        let a = attrs(&[
            ("sAMAccountName", "Dr.Grey"),
            ("displayName", "Meredith Grey"),
            ("mail", "grey@clinic.example"),
        ]);
        let f = to_user(
            "CN=Grey,DC=x",
            &a,
            vec!["doctor".into()],
            "sAMAccountName",
            "displayName",
            "mail",
        )
        .unwrap();
        assert_eq!(f.user.username, "dr.grey");
        assert_eq!(f.user.display_name, "Meredith Grey");
        assert_eq!(f.user.email, "grey@clinic.example");
        assert!(!f.disabled);
        // The fingerprint follows the roles and the DN.
        let fewer = to_user(
            "CN=Grey,DC=x",
            &a,
            vec![],
            "sAMAccountName",
            "displayName",
            "mail",
        )
        .unwrap();
        assert_ne!(
            f.user.credential_fingerprint(),
            fewer.user.credential_fingerprint()
        );
        let moved = to_user(
            "CN=Grey,OU=Old,DC=x",
            &a,
            vec!["doctor".into()],
            "sAMAccountName",
            "displayName",
            "mail",
        )
        .unwrap();
        assert_ne!(
            f.user.credential_fingerprint(),
            moved.user.credential_fingerprint()
        );
        let bad = attrs(&[("sAMAccountName", "grey m")]);
        assert!(
            to_user(
                "CN=x",
                &bad,
                vec![],
                "sAMAccountName",
                "displayName",
                "mail"
            )
            .is_err()
        );
        let control = attrs(&[("sAMAccountName", "g"), ("displayName", "a\nb")]);
        assert_eq!(
            to_user(
                "CN=x",
                &control,
                vec![],
                "sAMAccountName",
                "displayName",
                "mail"
            )
            .unwrap()
            .user
            .display_name,
            "g"
        );
    }
}
