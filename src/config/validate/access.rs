//! `[headers]` and `[policy]`: which identity headers are set and stripped, and the
//! access rules.

use super::*;

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
        &["user", "email", "name", "roles", "mfa", "strip"],
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
    let cfg = HeadersConfig {
        user,
        email,
        name,
        roles,
        mfa,
        strip,
    };
    for h in cfg.identity() {
        if crate::proxy::hop_by_hop::is_hop_by_hop(h)
            || h == http::header::HOST
            || h == http::header::COOKIE
        {
            r.problem(&t.key, format!("{h} cannot be used as an identity header"));
        }
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
    let t = r.table(root, "policy", &["require_2fa_roles", "rules"]);
    let require_2fa_roles = r.string_list(&t, "require_2fa_roles", &["doctor", "clerk"]);
    let mut rules = Vec::new();
    for rt in r.tables(
        &t,
        "rules",
        &["path_prefix", "path", "methods", "access", "roles"],
    ) {
        if let Some(rule) = rule(r, &rt) {
            rules.push(rule);
        }
    }
    PolicyConfig {
        require_2fa_roles,
        rules,
    }
}

fn rule(r: &mut Reader, t: &Table<'_>) -> Option<Rule> {
    let prefix = r.optional_string(t, "path_prefix");
    let exact = r.optional_string(t, "path");
    let matcher = match (prefix, exact) {
        (Some(p), None) if p.starts_with('/') => PathMatch::Prefix(p),
        (None, Some(p)) if p.starts_with('/') => PathMatch::Exact(p),
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
    Some(Rule {
        matcher,
        methods,
        access,
        roles,
    })
}
