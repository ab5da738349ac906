//! `[headers]` and `[policy]`: which identity headers are set and stripped, and the
//! access rules.

use super::*;
use crate::core::policy::PathCase;

fn header_name(r: &mut Reader, key: &str, value: &str) -> HeaderName {
    match HeaderName::from_bytes(value.trim().as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            r.problem(key, format!("{value:?} is not a valid HTTP header name"));
            HeaderName::from_static("x-invalid")
        }
    }
}

pub(super) fn headers(r: &mut Reader, root: &Table<'_>) -> HeadersConfig {
    let t = r.table(
        root,
        "headers",
        &[
            "user",
            "email",
            "name",
            "roles",
            "mfa",
            "strip",
            "assertion",
            "assertion_key_file",
        ],
    );
    let one = |r: &mut Reader, name: &str, default: &str| {
        let v = r.string(&t, name, default);
        header_name(r, &t.at(name), &v)
    };
    let user = one(r, "user", "Remote-User");
    let email = one(r, "email", "Remote-Email");
    let name = one(r, "name", "Remote-Name");
    let roles = one(r, "roles", "Remote-Groups");
    let mfa = one(r, "mfa", "Remote-MFA");
    let strip = r
        .string_list(&t, "strip", DEFAULT_STRIP)
        .iter()
        .enumerate()
        .map(|(i, s)| header_name(r, &format!("{}[{i}]", t.at("strip")), s))
        .collect();
    let assertion = r
        .optional_string(&t, "assertion")
        .filter(|v| !v.trim().is_empty())
        .map(|v| header_name(r, &t.at("assertion"), &v));
    let assertion_key_file = r
        .optional_string(&t, "assertion_key_file")
        .filter(|v| !v.trim().is_empty())
        .map(std::path::PathBuf::from);
    if assertion.is_some() && assertion_key_file.is_none() {
        r.problem(
            &t.at("assertion_key_file"),
            "required when headers.assertion is set (make a key with `vestibule gen-signing-key`)",
        );
    }
    let cfg = HeadersConfig {
        user,
        email,
        name,
        roles,
        mfa,
        strip,
        assertion,
        assertion_key_file,
    };
    for h in cfg.identity().into_iter().chain(cfg.assertion.as_ref()) {
        if crate::http::hop_by_hop::is_hop_by_hop(h)
            || h == http::header::HOST
            || h == http::header::COOKIE
        {
            r.problem(&t.key, format!("{h} cannot be used as an identity header"));
        }
    }
    cfg
}

/// An app's `[apps.headers]`: the identity header names it expects; a name it does not
/// set is `[headers]`'s. What is stripped and the assertion stay `[headers]`'s.
pub(super) fn app_headers(
    r: &mut Reader,
    app: &Table<'_>,
    global: &HeadersConfig,
) -> HeadersConfig {
    let t = r.table(app, "headers", &["user", "email", "name", "roles", "mfa"]);
    let mut one = |name: &str, base: &HeaderName| match t.get(name) {
        None => base.clone(),
        Some(_) => {
            let v = r.string(&t, name, base.as_str());
            header_name(r, &t.at(name), &v)
        }
    };
    let cfg = HeadersConfig {
        user: one("user", &global.user),
        email: one("email", &global.email),
        name: one("name", &global.name),
        roles: one("roles", &global.roles),
        mfa: one("mfa", &global.mfa),
        ..global.clone()
    };
    for h in cfg.identity() {
        if crate::http::hop_by_hop::is_hop_by_hop(h)
            || h == http::header::HOST
            || h == http::header::COOKIE
            || cfg.assertion.as_ref() == Some(h)
        {
            r.problem(&t.key, format!("{h} cannot be used as an identity header"));
        }
    }
    let mut names: Vec<&str> = cfg.identity().iter().map(|h| h.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() != 5 {
        r.problem(&t.key, "the five identity header names must all differ");
    }
    cfg
}

impl HeadersConfig {
    /// The five identity header names, in a fixed order.
    pub fn identity(&self) -> [&HeaderName; 5] {
        [&self.user, &self.email, &self.name, &self.roles, &self.mfa]
    }
}

pub(super) fn policy(r: &mut Reader, root: &Table<'_>) -> PolicyConfig {
    let t = r.table(
        root,
        "policy",
        &["require_2fa_roles", "case_insensitive_paths", "rules"],
    );
    let require_2fa_roles = r.string_list(&t, "require_2fa_roles", &["doctor", "clerk"]);
    let path_case = if r.boolean(&t, "case_insensitive_paths", false) {
        PathCase::Insensitive
    } else {
        PathCase::Sensitive
    };
    let mut rules = Vec::new();
    for rt in r.tables(
        &t,
        "rules",
        &[
            "path_prefix",
            "path",
            "methods",
            "access",
            "roles",
            "max_factor_age",
        ],
    ) {
        if let Some(rule) = rule(r, &rt) {
            rules.push(rule);
        }
    }
    PolicyConfig {
        require_2fa_roles,
        rules,
        path_case,
    }
}

/// One rule table (`[[policy.rules]]` or `[[apps.rules]]`).
pub(super) fn rule(r: &mut Reader, t: &Table<'_>) -> Option<Rule> {
    let prefix = r.optional_string(t, "path_prefix");
    let exact = r.optional_string(t, "path");
    let matcher = match (prefix, exact) {
        (Some(p), None) if p.starts_with('/') => {
            rule_path(r, &t.at("path_prefix"), &p);
            PathMatch::Prefix(p)
        }
        (None, Some(p)) if p.starts_with('/') => {
            rule_path(r, &t.at("path"), &p);
            PathMatch::Exact(p)
        }
        (Some(_), None) => {
            r.problem(&t.at("path_prefix"), "must start with '/'");
            return None;
        }
        (None, Some(_)) => {
            r.problem(&t.at("path"), "must start with '/'");
            return None;
        }
        (Some(_), Some(_)) => {
            r.problem(&t.key, "give either path or path_prefix, not both");
            return None;
        }
        (None, None) => {
            r.problem(&t.key, "needs path or path_prefix");
            return None;
        }
    };
    let access = if t.has("access") {
        [Access::Bypass, Access::Authenticated, Access::Deny][r.choice(
            t,
            "access",
            "authenticated",
            &["bypass", "authenticated", "deny"],
        )]
    } else {
        r.problem(
            &t.at("access"),
            "is required: bypass, authenticated or deny",
        );
        Access::Deny
    };
    let methods = if t.has("methods") {
        let list = r.string_list(t, "methods", &[]);
        for m in &list {
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                r.problem(&t.at("methods"), format!("{m:?} is not an HTTP method"));
            }
        }
        Some(list.into_iter().map(|m| m.to_ascii_uppercase()).collect())
    } else {
        None
    };
    let roles = r.string_list(t, "roles", &[]);
    if !roles.is_empty() && access != Access::Authenticated {
        r.problem(
            &t.at("roles"),
            "only applies with access = \"authenticated\"",
        );
    }
    let max_factor_age_ms = t.has("max_factor_age").then(|| {
        let d = r.duration(t, "max_factor_age", "5m");
        if access != Access::Authenticated {
            r.problem(
                &t.at("max_factor_age"),
                "only applies with access = \"authenticated\"",
            );
        }
        d.as_millis() as u64
    });
    Some(Rule {
        matcher,
        methods,
        access,
        roles,
        max_factor_age_ms,
    })
}

/// A rule path must be spelt the one way a request path can reach the rules: in
/// normal form (no dot segments, repeated slashes or escapes of unreserved
/// characters), without `;` (the rules also see every path without its parameters,
/// so a rule naming one would not hold), and with no character that a client may send
/// either raw or escaped (`:`, `@`, `!`, `$`, …): the gateway forwards those as sent,
/// so the upstream would take `/a%3Ab` and `/a:b` for one path while the rule
/// matched only one spelling. Letters, digits, `-._~`, `/` and escapes of non-ASCII
/// bytes (upper-case, as the normaliser writes them) remain.
fn rule_path(r: &mut Reader, key: &str, p: &str) {
    let normal = crate::core::path::normalise(p).is_ok_and(|n| n == p);
    // `normal` already holds the escapes to upper-case, well-formed UTF-8.
    let b = p.as_bytes();
    let mut i = 0;
    let mut one_spelling = true;
    while i < b.len() && one_spelling {
        if b[i] == b'%' {
            one_spelling = b.get(i + 1).is_some_and(|h| b"89ABCDEF".contains(h));
            i += 3;
        } else {
            one_spelling = b[i].is_ascii_alphanumeric() || b"-._~/".contains(&b[i]);
            i += 1;
        }
    }
    if !normal || !one_spelling {
        r.problem(
            key,
            format!(
                "{p:?} cannot be matched reliably: use a normalised path of letters, digits, \
                 '-', '.', '_', '~' and '/' (non-ASCII as upper-case %-escapes), without ';'"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::core::policy::PathCase;

    fn problems(policy: serde_json::Value) -> String {
        super::super::problems_text(&serde_json::json!({ "policy": policy }))
    }

    #[test]
    fn case_insensitive_paths_defaults_to_off_and_is_a_known_key() {
        let cfg = validate(&serde_json::json!({})).unwrap();
        assert_eq!(cfg.policy.path_case, PathCase::Sensitive);
        let on = serde_json::json!({ "policy": { "case_insensitive_paths": true } });
        assert_eq!(
            validate(&on).unwrap().policy.path_case,
            PathCase::Insensitive
        );
        let typo = problems(serde_json::json!({ "case_insensitive_path": true }));
        assert!(typo.contains("unknown key"), "{typo}");
        let bad = problems(serde_json::json!({ "case_insensitive_paths": "yes" }));
        assert!(bad.contains("policy.case_insensitive_paths"), "{bad}");
    }

    #[test]
    fn rule_paths_must_have_one_spelling() {
        let rule = |key: &str, p: &str| {
            problems(serde_json::json!({ "rules": [{ key: p, "access": "deny" }] }))
        };
        for good in ["/admin/", "/static", "/a-b_c.d~e/", "/%C3%A4rzte/", "/"] {
            assert_eq!(rule("path_prefix", good), "", "{good}");
            assert_eq!(rule("path", good), "", "{good}");
        }
        for bad in [
            "/admin;x/",
            "/a/../b",
            "/a//b",
            "/a/./b",
            "/%61dmin/",
            "/a%3Ab/",
            "/a:b/",
            "/a@b",
            "/%c3%a4/",
            "/a%2Fb",
        ] {
            let p = rule("path_prefix", bad);
            assert!(p.contains("cannot be matched reliably"), "{bad}: {p:?}");
        }
    }
}
