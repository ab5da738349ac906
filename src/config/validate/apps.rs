//! `[[apps]]` (SPEC §8): the applications behind the gateway, each with its hosts,
//! path prefix, upstream, roles, rules and header names — and the checks between
//! them (names, overlaps, hosts the gateway serves and the cookie domain covers).

use super::access::{app_headers, rule};
use super::network::{UPSTREAM_KEYS, upstream_keys};
use super::*;

/// The keys an `[[apps]]` table may have besides the upstream's.
const APP_KEYS: &[&str] = &[
    "name",
    "hosts",
    "path_prefix",
    "roles",
    "strip_prefix",
    "headers",
    "rules",
    "landing",
    "logout_paths",
];

/// The apps of the file; without `[[apps]]`, the one app `default` made of
/// `[upstream]`. With `[[apps]]`, an `[upstream]` section in the file stays as the
/// fallback app `default` (any host, every path no other app takes).
pub(super) fn apps(
    r: &mut Reader,
    root: &Table<'_>,
    upstream: &UpstreamConfig,
    headers: &HeadersConfig,
) -> Vec<AppConfig> {
    let keys: Vec<&str> = APP_KEYS.iter().chain(UPSTREAM_KEYS).copied().collect();
    let tables = r.tables(root, "apps", &keys);
    let mut apps: Vec<AppConfig> = tables
        .iter()
        .map(|t| app(r, t, upstream, headers))
        .collect();
    if tables.is_empty() && root.has("apps") {
        r.problem("apps", "must list at least one app, or be left out");
    }
    if apps.is_empty() || root.has("upstream") {
        apps.push(default_app(upstream, headers));
    }
    apps
}

/// `[upstream]` as an app: every host, every path.
fn default_app(upstream: &UpstreamConfig, headers: &HeadersConfig) -> AppConfig {
    AppConfig {
        name: DEFAULT_APP.to_string(),
        section: "upstream".to_string(),
        hosts: Vec::new(),
        path_prefix: "/".to_string(),
        upstream: upstream.clone(),
        roles: Vec::new(),
        strip_prefix: false,
        headers: headers.clone(),
        rules: Vec::new(),
        landing: None,
        logout_paths: Vec::new(),
    }
}

fn app(
    r: &mut Reader,
    t: &Table<'_>,
    upstream: &UpstreamConfig,
    headers: &HeadersConfig,
) -> AppConfig {
    let name = r.string(t, "name", "");
    let name_ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        r.problem(
            &t.at("name"),
            format!("{name:?} must be 1 to 32 of a-z, 0-9 and '-'"),
        );
    }
    let mut hosts = Vec::new();
    for (i, h) in r.string_list(t, "hosts", &[]).into_iter().enumerate() {
        let h = h.to_ascii_lowercase();
        if is_host_name(&h) {
            hosts.push(h);
        } else {
            r.problem(
                &format!("{}[{i}]", t.at("hosts")),
                format!("{h:?} is not a host name (no port, scheme or path)"),
            );
        }
    }
    let raw_prefix = r.string(t, "path_prefix", "/");
    let path_prefix = match raw_prefix.trim_end_matches('/') {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    if !raw_prefix.starts_with('/') || !one_spelling(&path_prefix) {
        r.problem(
            &t.at("path_prefix"),
            format!(
                "{raw_prefix:?} must be a normalised path of letters, digits, '-', '.', '_', '~' \
                 and '/' starting with '/'"
            ),
        );
    }
    let landing = r.optional_string(t, "landing");
    if let Some(l) = &landing
        && !crate::core::redirect::is_on_site(l)
    {
        r.problem(
            &t.at("landing"),
            format!("{l:?} must be a path on this site, such as \"/jupyter/lab\""),
        );
    }
    let mut logout_paths = Vec::new();
    for (i, p) in r
        .string_list(t, "logout_paths", &[])
        .into_iter()
        .enumerate()
    {
        if p.starts_with('/') && one_spelling(&p) {
            logout_paths.push(p);
        } else {
            r.problem(
                &format!("{}[{i}]", t.at("logout_paths")),
                format!("{p:?} must be a normalised path such as \"/admin/logout/\""),
            );
        }
    }
    let mut rules = Vec::new();
    for rt in r.tables(
        t,
        "rules",
        &["path_prefix", "path", "methods", "access", "roles"],
    ) {
        if let Some(rule) = rule(r, &rt) {
            if path_prefix != "/" && !under_prefix(rule_path(&rule), &path_prefix) {
                r.problem(
                    &rt.key,
                    format!(
                        "{:?} lies outside the app's path_prefix {path_prefix:?}, so it never \
                         matches (rules name the paths clients send)",
                        rule_path(&rule)
                    ),
                );
            }
            rules.push(rule);
        }
    }
    AppConfig {
        name,
        section: t.key.clone(),
        hosts,
        path_prefix,
        upstream: upstream_keys(r, t, Some(upstream)),
        roles: r.string_list(t, "roles", &[]),
        strip_prefix: r.boolean(t, "strip_prefix", false),
        headers: app_headers(r, t, headers),
        rules,
        landing,
        logout_paths,
    }
}

fn rule_path(rule: &Rule) -> &str {
    match &rule.matcher {
        PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
    }
}

/// `path` lies at or under `prefix` ("/" or without trailing slash), on a segment
/// boundary: "/lab" holds "/lab" and "/lab/x", not "/laboratory".
pub(crate) fn under_prefix(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A host name as `Host` carries it, without port.
fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A path spelt the one way the normaliser writes it, of unreserved characters only
/// (the same demand as a rule's path).
fn one_spelling(p: &str) -> bool {
    crate::core::path::normalise(p).is_ok_and(|n| n == p)
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
}

/// The checks between apps and the rest: unique names, no two apps taking the same
/// host and prefix, every host served (`server.hostnames`) and covered by the cookie
/// domain, and nothing under the gateway's reserved prefix.
pub(super) fn cross_checks(r: &mut Reader, c: &Config) {
    for (i, a) in c.apps.iter().enumerate() {
        let key = &a.section;
        if let Some(b) = c.apps[..i].iter().find(|b| b.name == a.name) {
            r.problem(
                &format!("{key}.name"),
                format!("{:?} is already the name of {}", a.name, b.section),
            );
        }
        for b in &c.apps[..i] {
            let same_hosts = a.hosts.is_empty() && b.hosts.is_empty()
                || a.hosts.iter().any(|h| b.hosts.contains(h));
            if same_hosts && a.path_prefix == b.path_prefix {
                r.problem(
                    key,
                    format!(
                        "overlaps {} ({:?}): both take path_prefix {:?} on the same host",
                        b.section, b.name, a.path_prefix
                    ),
                );
            }
        }
        for (h_i, h) in a.hosts.iter().enumerate() {
            let hkey = format!("{key}.hosts[{h_i}]");
            if !c.server.hostnames.is_empty() && !c.server.hostnames.contains(h) {
                r.problem(
                    &hkey,
                    format!("{h:?} is not in server.hostnames, so its requests would get 421"),
                );
            }
            if let Some(domain) = &c.session.cookie_domain
                && !(h == domain || h.ends_with(&format!(".{domain}")))
            {
                r.problem(
                    &hkey,
                    format!(
                        "{h:?} is not under session.cookie_domain {domain:?}: its users could \
                         not share the sign-in"
                    ),
                );
            }
        }
        if crate::router::is_own_path(&c.server.prefix, &a.path_prefix) {
            r.problem(
                &format!("{key}.path_prefix"),
                format!(
                    "{:?} lies under server.prefix {:?}, which the gateway reserves",
                    a.path_prefix, c.server.prefix
                ),
            );
        }
    }
    if let Some(domain) = &c.session.cookie_domain {
        for (i, h) in c.server.hostnames.iter().enumerate() {
            if !(h == domain || h.ends_with(&format!(".{domain}"))) {
                r.problem(
                    &format!("server.hostnames[{i}]"),
                    format!("{h:?} is not under session.cookie_domain {domain:?}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;

    fn problems(v: serde_json::Value) -> String {
        super::super::problems_text(&v)
    }

    #[test]
    fn every_mistake_between_apps_is_reported_at_once() {
        let all = problems(serde_json::json!({
            "server": { "hostnames": ["records.clinic.example", "lab.clinic.example"] },
            "session": { "cookie_domain": "clinic.example" },
            "apps": [
                { "name": "records", "hosts": ["records.clinic.example"], "url": "http://10.0.0.5:8080" },
                { "name": "records", "hosts": ["lab.clinic.example"], "url": "ftp://10.0.0.6" },
                { "name": "copy", "hosts": ["records.clinic.example"], "path_prefix": "/", "url": "http://10.0.0.7" },
                { "name": "pacs", "hosts": ["pacs.elsewhere.example"], "url": "http://10.0.0.8" },
                { "name": "Bad Name", "url": "http://10.0.0.9", "path_prefix": "/x" },
                { "name": "nourl", "path_prefix": "/y" },
                { "name": "inside", "path_prefix": "/_vestibule/x", "url": "http://10.0.0.9" },
            ],
        }));
        for want in [
            "apps[1].name: \"records\" is already the name of apps[0]",
            "apps[1].url",
            "apps[2]: overlaps apps[0]",
            "apps[3].hosts[0]: \"pacs.elsewhere.example\" is not in server.hostnames",
            "apps[3].hosts[0]: \"pacs.elsewhere.example\" is not under session.cookie_domain",
            "apps[4].name",
            "apps[5].url: is required",
            "apps[6].path_prefix",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn an_app_table_rejects_unknown_keys_and_rules_outside_its_prefix() {
        let all = problems(serde_json::json!({
            "apps": [{
                "name": "lab", "url": "http://10.0.0.5", "path_prefix": "/lab", "strip_prefx": true,
                "rules": [{ "path_prefix": "/public/", "access": "bypass" }],
                "headers": { "user": "X-User", "group": "X-Groups" },
            }],
        }));
        for want in [
            "apps[0].strip_prefx: unknown key",
            "apps[0].rules[0]: \"/public/\" lies outside",
            "apps[0].headers.group: unknown key",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn upstream_stays_as_the_fallback_app_and_apps_inherit_its_settings() {
        let cfg = validate(&serde_json::json!({
            "upstream": { "url": "http://10.0.0.1:80", "response_timeout": "7s" },
            "apps": [{ "name": "lab", "path_prefix": "/lab", "url": "http://10.0.0.2" }],
        }))
        .unwrap();
        let names: Vec<&str> = cfg.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["lab", "default"]);
        assert_eq!(cfg.apps[0].upstream.response_timeout.as_secs(), 7);
        let only_apps = validate(&serde_json::json!({
            "apps": [{ "name": "lab", "path_prefix": "/lab", "url": "http://10.0.0.2" }],
        }))
        .unwrap();
        assert_eq!(only_apps.apps.len(), 1, "no [upstream]: no fallback app");
    }
}
