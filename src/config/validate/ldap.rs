//! `[ldap]` (SPEC §11): the directory users come from when `users.source = "ldap"`.
//! The section's keys are checked whenever it is present (a typo must not hide until
//! the day the source is switched); what a working directory needs (URLs, accounts,
//! filter) is required only with `source = "ldap"`.

use super::*;

const KEYS: &[&str] = &[
    "url",
    "start_tls",
    "ca_file",
    "bind_dn",
    "bind_password_file",
    "base_dn",
    "user_filter",
    "display_name_attribute",
    "email_attribute",
    "group_roles",
    "nested_groups",
    "refresh",
    "timeout",
];

pub(super) fn ldap(r: &mut Reader, root: &Table<'_>, source: UserSourceKind) -> Option<LdapConfig> {
    let t = r.table(root, "ldap", KEYS);
    let used = source == UserSourceKind::Ldap;
    let urls = r.string_list(&t, "url", &[]);
    let start_tls = r.boolean(&t, "start_tls", false);
    let ca_file = r.optional_string(&t, "ca_file").map(PathBuf::from);
    let bind_dn = r.string(&t, "bind_dn", "").trim().to_string();
    let bind_password_file = r
        .optional_string(&t, "bind_password_file")
        .map(PathBuf::from);
    let base_dn = r.string(&t, "base_dn", "").trim().to_string();
    let user_filter = r
        .string(
            &t,
            "user_filter",
            "(&(objectClass=user)(sAMAccountName={username}))",
        )
        .trim()
        .to_string();
    let display_name_attribute = r.string(&t, "display_name_attribute", "displayName");
    let email_attribute = r.string(&t, "email_attribute", "mail");
    let group_roles = group_roles(r, &t);
    let nested_groups = r.boolean(&t, "nested_groups", true);
    let refresh = r.duration(&t, "refresh", "5m");
    let timeout = r.duration(&t, "timeout", "5s");

    for (i, u) in urls.iter().enumerate() {
        let key = if urls.len() == 1 {
            t.at("url")
        } else {
            format!("{}[{i}]", t.at("url"))
        };
        if let Err(e) = check_url(u, start_tls) {
            r.problem(&key, e);
        }
    }
    if let Some(ca) = &ca_file
        && !ca.is_file()
    {
        r.problem(
            &t.at("ca_file"),
            format!("file {} does not exist", ca.display()),
        );
    }
    if let Some(f) = &bind_password_file
        && !f.is_file()
    {
        r.problem(
            &t.at("bind_password_file"),
            format!("file {} does not exist", f.display()),
        );
    }
    let username_attribute = match username_attribute(&user_filter) {
        Some(a) => a,
        None => {
            r.problem(
                &t.at("user_filter"),
                "must be a parenthesised LDAP filter containing (ATTRIBUTE={username}) exactly once, e.g. \"(&(objectClass=user)(sAMAccountName={username}))\"",
            );
            String::new()
        }
    };
    for (name, v) in [
        ("display_name_attribute", &display_name_attribute),
        ("email_attribute", &email_attribute),
    ] {
        if !is_attribute(v) {
            r.problem(
                &t.at(name),
                "must be an attribute name (letters, digits, -)",
            );
        }
    }
    if used {
        if urls.is_empty() {
            r.problem(
                &t.at("url"),
                "must name the directory, e.g. \"ldaps://dc1.clinic.example\" (users.source is \"ldap\")",
            );
        }
        if bind_dn.is_empty() {
            r.problem(
                &t.at("bind_dn"),
                "must name the service account that searches the directory (users.source is \"ldap\")",
            );
        }
        if base_dn.is_empty() {
            r.problem(
                &t.at("base_dn"),
                "must name where users are searched, e.g. \"DC=clinic,DC=example\"",
            );
        }
        let env_set = std::env::var(LDAP_BIND_PASSWORD_ENV).is_ok_and(|v| !v.is_empty());
        if bind_password_file.is_none() && !env_set {
            r.problem(
                &t.at("bind_password_file"),
                format!(
                    "the service account's password is needed: name a file here or set {LDAP_BIND_PASSWORD_ENV}"
                ),
            );
        }
    }
    used.then_some(LdapConfig {
        urls,
        start_tls,
        ca_file,
        bind_dn,
        bind_password_file,
        base_dn,
        user_filter,
        username_attribute,
        display_name_attribute,
        email_attribute,
        group_roles,
        nested_groups,
        refresh,
        timeout,
    })
}

/// Only encrypted connections: `ldaps://`, or `ldap://` with StartTLS. A bind sends
/// the typed password, so a clear-text connection is refused outright.
fn check_url(u: &str, start_tls: bool) -> Result<(), String> {
    let lower = u.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("ldaps://") {
        if start_tls {
            return Err("is ldaps:// (already TLS); ldap.start_tls is for ldap:// URLs".into());
        }
        rest
    } else if let Some(rest) = lower.strip_prefix("ldap://") {
        if !start_tls {
            return Err(
                "ldap:// without ldap.start_tls = true would send passwords in clear; use ldaps:// or set start_tls"
                    .into(),
            );
        }
        rest
    } else {
        return Err(format!("{u:?} must start with ldaps:// or ldap://"));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.trim_end_matches('/').contains(['/', '?']) {
        return Err(format!(
            "{u:?} must be a server address only, e.g. \"ldaps://dc1.clinic.example:636\""
        ));
    }
    Ok(())
}

fn is_attribute(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 64
        && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && a.as_bytes()[0].is_ascii_alphabetic()
}

/// The attribute compared with `{username}` in `filter`, when the filter is
/// parenthesised and contains `(ATTRIBUTE={username})` exactly once.
pub(crate) fn username_attribute(filter: &str) -> Option<String> {
    if !filter.starts_with('(')
        || !filter.ends_with(')')
        || filter.matches("{username}").count() != 1
    {
        return None;
    }
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    if depth != 0 {
        return None;
    }
    let at = filter.find("={username})")?;
    let open = filter[..at].rfind('(')?;
    let attr = &filter[open + 1..at];
    is_attribute(attr).then(|| attr.to_string())
}

/// `group_roles`: a table `{ "GROUP DN" = "role" }`, or (from the environment) a
/// string `"GROUP DN=role; GROUP DN=role"` — the role follows the last `=`.
fn group_roles(r: &mut Reader, t: &Table<'_>) -> Vec<(String, String)> {
    let key = t.at("group_roles");
    let pairs: Vec<(String, String)> = match t.get("group_roles") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(dn, role)| match role.as_str() {
                Some(role) => Some((dn.trim().to_string(), role.trim().to_string())),
                None => {
                    r.problem(&format!("{key}.{dn}"), "must be a role name (a string)");
                    None
                }
            })
            .collect(),
        Some(Value::String(s)) => s
            .split(';')
            .filter(|p| !p.trim().is_empty())
            .filter_map(|p| match p.rsplit_once('=') {
                Some((dn, role)) => Some((dn.trim().to_string(), role.trim().to_string())),
                None => {
                    r.problem(&key, format!("{p:?} is not GROUP_DN=role"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            r.problem(&key, "must be a table of group DN = role");
            Vec::new()
        }
    };
    for (dn, role) in &pairs {
        if dn.is_empty() || !dn.contains('=') {
            r.problem(&key, format!("{dn:?} is not a group DN"));
        }
        if !crate::core::user::validate_role(role) {
            r.problem(
                &format!("{key}.{dn}"),
                format!("{role:?} may only contain letters, digits and . _ @ -"),
            );
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(users: serde_json::Value, ldap: serde_json::Value) -> Vec<String> {
        match validate(&serde_json::json!({ "users": users, "ldap": ldap })) {
            Ok(_) => vec![],
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_username_attribute_is_read_from_the_filter() {
        assert_eq!(
            username_attribute("(&(objectClass=user)(sAMAccountName={username}))").as_deref(),
            Some("sAMAccountName")
        );
        assert_eq!(
            username_attribute("(uid={username})").as_deref(),
            Some("uid")
        );
        assert_eq!(username_attribute("uid={username}"), None);
        assert_eq!(
            username_attribute("(&(uid={username})(cn={username}))"),
            None
        );
        assert_eq!(username_attribute("(&(uid={username})"), None);
        assert_eq!(username_attribute("(|(uid=*{username}))"), None);
    }

    #[test]
    fn a_file_source_ignores_an_absent_ldap_section() {
        let cfg = validate(&serde_json::json!({})).unwrap();
        assert_eq!(cfg.users.source, UserSourceKind::File);
        assert!(cfg.ldap.is_none());
    }

    #[test]
    fn an_ldap_source_reports_every_missing_or_bad_key() {
        let all = problems(
            serde_json::json!({ "source": "ldap" }),
            serde_json::json!({
                "url": ["ldap://dc1.example", "http://x", "ldaps://"],
                "user_filter": "(uid=x)",
                "group_roles": { "not a dn": "doc tor" },
                "bogus": 1,
                "ca_file": "/nonexistent/ca.pem",
            }),
        )
        .join("\n");
        for needle in [
            "ldap.url[0]: ldap:// without ldap.start_tls",
            "ldap.url[1]:",
            "ldap.url[2]:",
            "ldap.bind_dn:",
            "ldap.base_dn:",
            "ldap.bind_password_file:",
            "ldap.user_filter:",
            "ldap.group_roles: \"not a dn\" is not a group DN",
            "ldap.group_roles.not a dn:",
            "ldap.bogus: unknown key",
            "ldap.ca_file:",
        ] {
            assert!(all.contains(needle), "{needle} not reported in:\n{all}");
        }
    }

    #[test]
    fn a_complete_ldap_section_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("bind.pw");
        std::fs::write(&pw, "secret").unwrap();
        let cfg = validate(&serde_json::json!({
            "users": { "source": "ldap" },
            "ldap": {
                "url": ["ldaps://dc1.example", "ldaps://dc2.example:636"],
                "bind_dn": "CN=svc,DC=example",
                "bind_password_file": pw.to_str(),
                "base_dn": "DC=example",
                "group_roles": { "CN=Doctors,OU=Groups,DC=example": "doctor" },
                "refresh": "1m",
            },
        }))
        .unwrap();
        let l = cfg.ldap.unwrap();
        assert_eq!(l.urls.len(), 2);
        assert_eq!(l.username_attribute, "sAMAccountName");
        assert_eq!(
            l.group_roles,
            vec![(
                "CN=Doctors,OU=Groups,DC=example".to_string(),
                "doctor".to_string()
            )]
        );
        assert!(l.nested_groups);
    }

    #[test]
    fn group_roles_from_the_environment_are_dn_equals_role_pairs() {
        let mut r = Reader::default();
        let tree = serde_json::json!({ "ldap": { "group_roles": "CN=Doctors,DC=x=doctor; CN=Clerks,DC=x=clerk" } });
        let root = r.root(&tree, &["ldap"]);
        let t = r.table(&root, "ldap", KEYS);
        let pairs = group_roles(&mut r, &t);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(pairs[0], ("CN=Doctors,DC=x".into(), "doctor".into()));
        assert_eq!(pairs[1], ("CN=Clerks,DC=x".into(), "clerk".into()));
    }
}

#[cfg(test)]
mod file_tests {
    /// Group DNs are table keys with `=` and `,` (and, in AD, capitals): read from a
    /// real file they must arrive exactly as written.
    #[test]
    fn group_dns_are_read_from_the_file_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("bind.pw");
        std::fs::write(&pw, "secret\n").unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(
            &path,
            format!(
                "[users]\nsource = \"ldap\"\n\n[ldap]\nurl = \"ldaps://dc1.clinic.example\"\nbind_dn = \"CN=svc,DC=clinic,DC=example\"\nbind_password_file = {:?}\nbase_dn = \"DC=clinic,DC=example\"\n\n[ldap.group_roles]\n\"CN=Doctors,OU=Groups,DC=clinic,DC=example\" = \"doctor\"\n\"CN=Front Desk,OU=Groups,DC=clinic,DC=example\" = \"clerk\"\n",
                pw.display().to_string()
            ),
        )
        .unwrap();
        let cfg = crate::config::load(&path).unwrap();
        let mut got = cfg.ldap.unwrap().group_roles;
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "CN=Doctors,OU=Groups,DC=clinic,DC=example".to_string(),
                    "doctor".to_string()
                ),
                (
                    "CN=Front Desk,OU=Groups,DC=clinic,DC=example".to_string(),
                    "clerk".to_string()
                ),
            ]
        );
    }
}
