//! Turns the generic tree into a typed [`Config`], reporting every problem found.
//! Values are never echoed for secret-bearing keys (there are none in the file: the
//! encryption key lives in its own file).

use std::net::SocketAddr;
use std::path::PathBuf;

use http::Uri;
use http::header::HeaderName;
use ipnet::IpNet;
use serde_json::Value;

use super::ConfigProblem;
use super::reader::{Reader, Table};
use super::types::*;
use crate::core::policy::{Access, PathMatch, Rule};
use crate::core::totp::{Algorithm, TotpSettings};

mod access;
mod apps;
mod ldap;
mod network;
mod storage;
mod ui;
mod webauthn;

use access::{headers, policy};
use network::{server, upstream};
use storage::storage;
use ui::ui;

const SECTIONS: &[&str] = &[
    "server",
    "upstream",
    "headers",
    "users",
    "policy",
    "session",
    "storage",
    "totp",
    "backup_codes",
    "remember_device",
    "lockout",
    "log",
    "limits",
    "ui",
    "apps",
    "ldap",
    "webauthn",
];

/// Default extra header names removed from every client request (SPEC §3).
pub const DEFAULT_STRIP: &[&str] = &[
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Original-URL",
    "X-Rewrite-URL",
];

/// Validates the whole tree; `Err` carries every problem.
pub fn validate(tree: &Value) -> Result<Config, Vec<ConfigProblem>> {
    let (config, problems) = validate_all(tree);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Validates the whole tree and returns the configuration even when problems were
/// found (a bad value replaced by its default), so `check-config` can go on checking
/// the files the configuration names and report every problem in one run.
pub fn validate_all(tree: &Value) -> (Config, Vec<ConfigProblem>) {
    let mut r = Reader::default();
    let root = r.root(tree, SECTIONS);
    let upstream = upstream(&mut r, &root);
    let headers = headers(&mut r, &root);
    let apps = apps::apps(&mut r, &root, &upstream, &headers);
    let users = users(&mut r, &root);
    let ldap = ldap::ldap(&mut r, &root, users.source);
    let mut config = Config {
        server: server(&mut r, &root),
        headers,
        apps,
        users,
        policy: policy(&mut r, &root),
        session: session(&mut r, &root),
        storage: storage(&mut r, &root),
        totp: totp(&mut r, &root),
        backup_codes: backup_codes(&mut r, &root),
        remember_device: remember_device(&mut r, &root),
        lockout: lockout(&mut r, &root),
        log: log(&mut r, &root),
        limits: limits(&mut r, &root),
        ui: ui(&mut r, &root),
        ldap,
        webauthn: webauthn::webauthn(&mut r, &root),
    };
    webauthn::resolve_rp_id(&mut r, &mut config);
    cross_checks(&mut r, &config);
    apps::cross_checks(&mut r, &config);
    (config, r.problems)
}

fn users(r: &mut Reader, root: &Table<'_>) -> UsersConfig {
    let t = r.table(root, "users", &["file", "min_password_length", "source"]);
    UsersConfig {
        file: PathBuf::from(r.string(&t, "file", "config/users.toml")),
        min_password_length: r.integer(&t, "min_password_length", 12, 8, 1024) as usize,
        source: [UserSourceKind::File, UserSourceKind::Ldap]
            [r.choice(&t, "source", "file", &["file", "ldap"])],
    }
}

fn session(r: &mut Reader, root: &Table<'_>) -> SessionConfig {
    let t = r.table(
        root,
        "session",
        &[
            "cookie_name",
            "cookie_domain",
            "idle_timeout",
            "absolute_timeout",
            "role_timeouts",
        ],
    );
    let cookie_domain = r
        .optional_string(&t, "cookie_domain")
        .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase());
    if let Some(d) = &cookie_domain
        && (!d.contains('.')
            || d.parse::<std::net::IpAddr>().is_ok()
            || !d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
    {
        r.problem(
            &t.at("cookie_domain"),
            format!("{d:?} must be a domain name such as \"clinic.example\" (not an address)"),
        );
    }
    let cookie_name = r.string(&t, "cookie_name", "vestibule_session");
    let token_ok = !cookie_name.is_empty()
        && cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !cookie_name.starts_with("__");
    if !token_ok {
        r.problem(&t.at("cookie_name"), "must be letters, digits, - _ . and not start with \"__\" (the __Host- prefix is added under TLS)");
    }
    let role_timeouts = role_timeouts(r, &t);
    SessionConfig {
        cookie_name,
        cookie_domain,
        idle_timeout: r.duration(&t, "idle_timeout", "30m"),
        absolute_timeout: r.duration(&t, "absolute_timeout", "12h"),
        role_timeouts,
    }
}

/// `[[session.role_timeouts]]`: each entry names a valid role once and sets at least
/// one of the two timeouts.
fn role_timeouts(r: &mut Reader, t: &Table<'_>) -> Vec<crate::config::types::RoleTimeout> {
    let mut out: Vec<crate::config::types::RoleTimeout> = Vec::new();
    for rt in r.tables(
        t,
        "role_timeouts",
        &["role", "idle_timeout", "absolute_timeout"],
    ) {
        let role = r.string(&rt, "role", "");
        if role.is_empty() {
            r.problem(
                &rt.at("role"),
                "is required: the role these timeouts apply to",
            );
            continue;
        }
        if !crate::core::user::validate_role(&role) {
            r.problem(
                &rt.at("role"),
                format!("{role:?} may only contain letters, digits and . _ @ -"),
            );
        }
        if out.iter().any(|o| o.role == role) {
            r.problem(&rt.at("role"), format!("{role:?} is listed twice"));
        }
        let idle_timeout = rt
            .has("idle_timeout")
            .then(|| r.duration(&rt, "idle_timeout", "30m"));
        let absolute_timeout = rt
            .has("absolute_timeout")
            .then(|| r.duration(&rt, "absolute_timeout", "12h"));
        if idle_timeout.is_none() && absolute_timeout.is_none() {
            r.problem(&rt.key, "set idle_timeout, absolute_timeout or both");
        }
        out.push(crate::config::types::RoleTimeout {
            role,
            idle_timeout,
            absolute_timeout,
        });
    }
    out
}

fn totp(r: &mut Reader, root: &Table<'_>) -> TotpSettings {
    let t = r.table(
        root,
        "totp",
        &["issuer", "algorithm", "digits", "period", "skew"],
    );
    let issuer = r.string(&t, "issuer", "Clinic");
    if issuer.trim().is_empty() || issuer.contains(':') {
        r.problem(&t.at("issuer"), "must be a non-empty name without ':'");
    }
    let algorithm = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
        [r.choice(&t, "algorithm", "SHA1", &["SHA1", "SHA256", "SHA512"])];
    TotpSettings {
        issuer,
        algorithm,
        digits: r.integer(&t, "digits", 6, 6, 8) as u32,
        period: r.integer(&t, "period", 30, 15, 300),
        skew: r.integer(&t, "skew", 1, 0, 3),
    }
}

fn backup_codes(r: &mut Reader, root: &Table<'_>) -> BackupCodesConfig {
    let t = r.table(root, "backup_codes", &["count"]);
    BackupCodesConfig {
        count: r.integer(&t, "count", 10, 1, 50) as usize,
    }
}

fn remember_device(r: &mut Reader, root: &Table<'_>) -> RememberDeviceConfig {
    let t = r.table(root, "remember_device", &["enabled", "duration"]);
    RememberDeviceConfig {
        enabled: r.boolean(&t, "enabled", true),
        duration: r.duration(&t, "duration", "30d"),
    }
}

fn lockout(r: &mut Reader, root: &Table<'_>) -> LockoutConfig {
    let t = r.table(
        root,
        "lockout",
        &[
            "max_failures",
            "duration",
            "max_duration",
            "code_max_failures",
            "ip_failures_per_minute",
        ],
    );
    LockoutConfig {
        max_failures: r.integer(&t, "max_failures", 5, 1, 1_000_000) as u32,
        duration: r.duration(&t, "duration", "1m"),
        max_duration: r.duration(&t, "max_duration", "1h"),
        code_max_failures: r.integer(&t, "code_max_failures", 100, 1, 1_000_000) as u32,
        ip_failures_per_minute: r.integer(&t, "ip_failures_per_minute", 30, 1, 1_000_000) as u32,
    }
}

fn log(r: &mut Reader, root: &Table<'_>) -> LogConfig {
    let t = r.table(root, "log", &["format", "audit_file", "access_log"]);
    LogConfig {
        format: [LogFormat::Text, LogFormat::Json]
            [r.choice(&t, "format", "text", &["text", "json"])],
        audit_file: r.optional_string(&t, "audit_file").map(PathBuf::from),
        access_log: r.boolean(&t, "access_log", true),
    }
}

fn limits(r: &mut Reader, root: &Table<'_>) -> LimitsConfig {
    let t = r.table(root, "limits", &["max_form_bytes", "own_pages_per_minute"]);
    LimitsConfig {
        max_form_bytes: r.integer(&t, "max_form_bytes", 16 * 1024, 1024, 1 << 20) as usize,
        own_pages_per_minute: r.integer(&t, "own_pages_per_minute", 6000, 10, 10_000_000) as u32,
    }
}

/// Rules between keys of different sections.
fn cross_checks(r: &mut Reader, c: &Config) {
    if c.lockout.max_duration < c.lockout.duration {
        r.problem(
            "lockout.max_duration",
            "must not be shorter than lockout.duration",
        );
    }
    if c.lockout.code_max_failures < c.lockout.max_failures {
        r.problem(
            "lockout.code_max_failures",
            "must not be smaller than lockout.max_failures",
        );
    }
    let mut names: Vec<String> = c
        .headers
        .identity()
        .iter()
        .map(|h| h.as_str().to_string())
        .collect();
    names.sort();
    names.dedup();
    if names.len() != 5 {
        r.problem("headers", "the five identity header names must all differ");
    }
    for rule in &c.policy.rules {
        let p = match &rule.matcher {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
        };
        if p.starts_with(&c.server.prefix) {
            r.problem(
                "policy.rules",
                format!(
                    "{p:?} lies under server.prefix {:?}, which the gateway reserves",
                    c.server.prefix
                ),
            );
        }
    }
}

/// Every problem `validate` reports for `tree`, one per line ("" when valid): the
/// validation tests of every section read their results this way.
#[cfg(test)]
pub(super) fn problems_text(tree: &Value) -> String {
    match validate(tree) {
        Ok(_) => String::new(),
        Err(p) => p
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::ui::contrast_with_white;
    use super::*;

    fn problems(ui: serde_json::Value) -> Vec<String> {
        match validate(&serde_json::json!({ "ui": ui })) {
            Ok(_) => vec![],
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn ui_defaults_brand_as_vestibule_in_english() {
        let cfg = validate(&serde_json::json!({})).unwrap();
        assert_eq!(cfg.ui.clinic_name, "Vestibule");
        assert_eq!(cfg.ui.primary_color, "#0b5cad");
        assert_eq!(cfg.ui.default_language, "en");
        assert!(cfg.ui.logo.is_none() && cfg.ui.support_contact.is_none());
    }

    #[test]
    fn ui_accepts_a_dark_colour_a_contact_and_german() {
        let p = problems(serde_json::json!({
            "clinic_name": "Praxis Dr. Grey",
            "primary_color": "#1E4D2B",
            "support_contact": "Front desk, ext. 210",
            "default_language": "de",
        }));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn ui_rejects_bad_colours_languages_and_logos() {
        let all = problems(serde_json::json!({
            "primary_color": "blue",
            "default_language": "fr",
            "logo_file": "/nonexistent/logo.png",
            "clinic_name": "",
        }))
        .join("\n");
        for key in [
            "ui.primary_color",
            "ui.default_language",
            "ui.logo_file",
            "ui.clinic_name",
        ] {
            assert!(all.contains(key), "{key} not reported in:\n{all}");
        }
        let light = problems(serde_json::json!({ "primary_color": "#ffcc00" })).join("\n");
        assert!(light.contains("too light"), "{light}");
    }

    #[test]
    fn ui_logo_must_be_a_small_png_or_svg() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("logo.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nrest").unwrap();
        let svg = dir.path().join("logo.svg");
        std::fs::write(&svg, b"<svg xmlns='http://www.w3.org/2000/svg'/>").unwrap();
        let txt = dir.path().join("logo.txt");
        std::fs::write(&txt, b"hello").unwrap();
        let big = dir.path().join("big.png");
        let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
        data.resize(300 * 1024, 0);
        std::fs::write(&big, data).unwrap();
        let ok = |p: &std::path::Path| problems(serde_json::json!({ "logo_file": p.to_str() }));
        assert!(ok(&png).is_empty());
        assert!(ok(&svg).is_empty());
        assert!(ok(&txt).join("").contains("neither a PNG nor an SVG"));
        assert!(ok(&big).join("").contains("256 KiB"));
        let cfg = validate(&serde_json::json!({ "ui": { "logo_file": svg.to_str() } })).unwrap();
        assert_eq!(cfg.ui.logo.unwrap().content_type, "image/svg+xml");
    }

    #[test]
    fn contrast_of_default_colour_is_readable() {
        assert!(contrast_with_white([0x0b, 0x5c, 0xad]) > 4.5);
        assert!((contrast_with_white([0, 0, 0]) - 21.0).abs() < 0.01);
    }
}
