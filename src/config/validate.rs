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
    let mut r = Reader::default();
    let root = r.root(tree, SECTIONS);
    let config = Config {
        server: server(&mut r, &root),
        upstream: upstream(&mut r, &root),
        headers: headers(&mut r, &root),
        users: users(&mut r, &root),
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
    };
    cross_checks(&mut r, &config);
    if r.problems.is_empty() {
        Ok(config)
    } else {
        Err(r.problems)
    }
}

fn server(r: &mut Reader, root: &Table<'_>) -> ServerConfig {
    let t = r.table(
        root,
        "server",
        &[
            "listen",
            "tls_cert",
            "tls_key",
            "http_redirect_listen",
            "prefix",
            "hostnames",
            "trusted_proxies",
            "max_request_header_bytes",
            "max_connections",
        ],
    );
    let listen = r
        .parsed::<SocketAddr>(
            &t,
            "listen",
            "0.0.0.0:8443",
            "an address such as \"0.0.0.0:8443\"",
        )
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
    let cert = r.optional_string(&t, "tls_cert");
    let key = r.optional_string(&t, "tls_key");
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            r.problem(&t.at("tls_key"), "must be set when tls_cert is set");
            None
        }
        (None, Some(_)) => {
            r.problem(&t.at("tls_cert"), "must be set when tls_key is set");
            None
        }
    };
    if let Some(files) = &tls {
        for (name, path) in [("tls_cert", &files.cert), ("tls_key", &files.key)] {
            if !path.is_file() {
                r.problem(
                    &t.at(name),
                    format!("file {} does not exist", path.display()),
                );
            }
        }
    }
    let http_redirect_listen = match r.optional_string(&t, "http_redirect_listen") {
        None => None,
        Some(s) => match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.problem(
                    &t.at("http_redirect_listen"),
                    format!("{s:?} is not an address such as \"0.0.0.0:8080\""),
                );
                None
            }
        },
    };
    if http_redirect_listen.is_some() && tls.is_none() {
        r.problem(
            &t.at("http_redirect_listen"),
            "needs tls_cert and tls_key: there is no https to redirect to",
        );
    }
    let prefix = r.string(&t, "prefix", "/_vestibule");
    let prefix_ok = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && !prefix.contains("//")
        && !prefix.split('/').any(|s| s == "." || s == "..");
    if !prefix_ok {
        r.problem(&t.at("prefix"), "must be a path like \"/_vestibule\": leading '/', no trailing '/', letters, digits, - _ . ~");
    }
    let mut hostnames = Vec::new();
    for (i, h) in r.string_list(&t, "hostnames", &[]).into_iter().enumerate() {
        let h = h.to_ascii_lowercase();
        if h.is_empty()
            || h.contains(['/', ' ', '@', '?', '#'])
            || h.parse::<http::uri::Authority>().is_err()
        {
            r.problem(
                &format!("{}[{i}]", t.at("hostnames")),
                format!("{h:?} is not a host name"),
            );
        } else {
            hostnames.push(h);
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, p) in r
        .string_list(&t, "trusted_proxies", &[])
        .into_iter()
        .enumerate()
    {
        match p
            .parse::<IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => r.problem(
                &format!("{}[{i}]", t.at("trusted_proxies")),
                format!("{p:?} is not a CIDR such as \"10.0.0.0/8\" or an address"),
            ),
        }
    }
    ServerConfig {
        listen,
        tls,
        http_redirect_listen,
        prefix,
        hostnames,
        trusted_proxies,
        max_request_header_bytes: r.integer(&t, "max_request_header_bytes", 16384, 1024, 1 << 20)
            as usize,
        max_connections: r.integer(&t, "max_connections", 25_000, 1, 1_000_000) as usize,
    }
}

fn upstream(r: &mut Reader, root: &Table<'_>) -> UpstreamConfig {
    let t = r.table(
        root,
        "upstream",
        &[
            "url",
            "connect_timeout",
            "response_timeout",
            "ca_file",
            "preserve_host",
        ],
    );
    let url = r.string(&t, "url", "http://127.0.0.1:3000");
    let fallback = (
        http::uri::Scheme::HTTP,
        http::uri::Authority::from_static("127.0.0.1:3000"),
    );
    let (scheme, authority) = match url.trim().parse::<Uri>() {
        Ok(uri) => {
            let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
            let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
            match (scheme_ok, uri.scheme().cloned(), uri.authority().cloned()) {
                (true, Some(s), Some(a)) if path_ok && !a.as_str().contains('@') => (s, a),
                (false, _, _) => {
                    r.problem(
                        &t.at("url"),
                        format!("{url:?} must start with http:// or https://"),
                    );
                    fallback
                }
                _ => {
                    r.problem(
                        &t.at("url"),
                        format!("{url:?} must be scheme://host[:port] with no path, query or user"),
                    );
                    fallback
                }
            }
        }
        Err(_) => {
            r.problem(
                &t.at("url"),
                format!("{url:?} is not a URL such as \"http://127.0.0.1:3000\""),
            );
            fallback
        }
    };
    let ca_file = r.optional_string(&t, "ca_file").map(PathBuf::from);
    if let Some(ca) = &ca_file
        && !ca.is_file()
    {
        r.problem(
            &t.at("ca_file"),
            format!("file {} does not exist", ca.display()),
        );
    }
    UpstreamConfig {
        scheme,
        authority,
        connect_timeout: r.duration(&t, "connect_timeout", "5s"),
        response_timeout: r.duration(&t, "response_timeout", "60s"),
        ca_file,
        preserve_host: r.boolean(&t, "preserve_host", true),
    }
}

fn header_name(r: &mut Reader, key: &str, value: &str) -> HeaderName {
    match HeaderName::from_bytes(value.trim().as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            r.problem(key, format!("{value:?} is not a valid HTTP header name"));
            HeaderName::from_static("x-invalid")
        }
    }
}

fn headers(r: &mut Reader, root: &Table<'_>) -> HeadersConfig {
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

fn users(r: &mut Reader, root: &Table<'_>) -> UsersConfig {
    let t = r.table(root, "users", &["file", "min_password_length"]);
    UsersConfig {
        file: PathBuf::from(r.string(&t, "file", "config/users.toml")),
        min_password_length: r.integer(&t, "min_password_length", 12, 8, 1024) as usize,
    }
}

fn policy(r: &mut Reader, root: &Table<'_>) -> PolicyConfig {
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

fn session(r: &mut Reader, root: &Table<'_>) -> SessionConfig {
    let t = r.table(
        root,
        "session",
        &["cookie_name", "idle_timeout", "absolute_timeout"],
    );
    let cookie_name = r.string(&t, "cookie_name", "vestibule_session");
    let token_ok = !cookie_name.is_empty()
        && cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !cookie_name.starts_with("__");
    if !token_ok {
        r.problem(&t.at("cookie_name"), "must be letters, digits, - _ . and not start with \"__\" (the __Host- prefix is added under TLS)");
    }
    SessionConfig {
        cookie_name,
        idle_timeout: r.duration(&t, "idle_timeout", "30m"),
        absolute_timeout: r.duration(&t, "absolute_timeout", "12h"),
    }
}

fn storage(r: &mut Reader, root: &Table<'_>) -> StorageConfig {
    let t = r.table(
        root,
        "storage",
        &[
            "backend",
            "path",
            "redis_url",
            "redis_mode",
            "redis_nodes",
            "redis_sentinel_master",
            "redis_ca_file",
            "key_prefix",
            "encryption_key_file",
            "timeout",
        ],
    );
    let backend = [Backend::Embedded, Backend::Redis]
        [r.choice(&t, "backend", "embedded", &["embedded", "redis"])];
    let redis_url = r.string(&t, "redis_url", "redis://127.0.0.1:6379/0");
    let redis_mode = [
        RedisMode::Standalone,
        RedisMode::Sentinel,
        RedisMode::Cluster,
    ][r.choice(
        &t,
        "redis_mode",
        "standalone",
        &["standalone", "sentinel", "cluster"],
    )];
    let redis_nodes = r.string_list(&t, "redis_nodes", &[]);
    let redis_sentinel_master = r.string(&t, "redis_sentinel_master", "mymaster");
    let redis_ca_file = r.optional_string(&t, "redis_ca_file").map(PathBuf::from);
    if backend == Backend::Redis {
        let url_ok = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
        match redis_mode {
            RedisMode::Standalone if !url_ok(&redis_url) => {
                r.problem(&t.at("redis_url"), "must start with redis:// or rediss://");
            }
            RedisMode::Cluster | RedisMode::Sentinel if redis_nodes.is_empty() => {
                r.problem(
                    &t.at("redis_nodes"),
                    "must list the cluster nodes or sentinels, e.g. [\"redis://10.0.0.1:6379\"]",
                );
            }
            _ => {}
        }
        for (i, n) in redis_nodes.iter().enumerate() {
            if !url_ok(n) {
                r.problem(
                    &format!("{}[{i}]", t.at("redis_nodes")),
                    "must start with redis:// or rediss://",
                );
            }
        }
        if let Some(ca) = &redis_ca_file
            && !ca.is_file()
        {
            r.problem(
                &t.at("redis_ca_file"),
                format!("file {} does not exist", ca.display()),
            );
        }
    }
    let key_prefix = r.string(&t, "key_prefix", "vestibule:");
    if key_prefix.contains(['{', '}', ' ']) {
        r.problem(
            &t.at("key_prefix"),
            "must not contain braces or spaces (braces would break Redis Cluster hash tags)",
        );
    }
    StorageConfig {
        backend,
        path: PathBuf::from(r.string(&t, "path", "data/")),
        redis_url,
        redis_mode,
        redis_nodes,
        redis_sentinel_master,
        redis_ca_file,
        key_prefix,
        encryption_key_file: r
            .optional_string(&t, "encryption_key_file")
            .map(PathBuf::from),
        timeout: r.duration(&t, "timeout", "2s"),
    }
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

/// Largest logo accepted (it is served from memory on every page view).
const MAX_LOGO_BYTES: u64 = 256 * 1024;

fn ui(r: &mut Reader, root: &Table<'_>) -> UiConfig {
    let t = r.table(
        root,
        "ui",
        &[
            "clinic_name",
            "logo_file",
            "primary_color",
            "support_contact",
            "default_language",
        ],
    );
    let clinic_name = r.string(&t, "clinic_name", "Vestibule").trim().to_string();
    if clinic_name.is_empty() || clinic_name.chars().count() > 80 {
        r.problem(&t.at("clinic_name"), "must be a name of 1 to 80 characters");
    }
    let logo = r
        .optional_string(&t, "logo_file")
        .and_then(|p| logo_file(r, &t.at("logo_file"), PathBuf::from(p)));
    let primary_color = r
        .string(&t, "primary_color", "#0b5cad")
        .trim()
        .to_ascii_lowercase();
    match parse_hex_color(&primary_color) {
        None => r.problem(
            &t.at("primary_color"),
            format!("{primary_color:?} is not a colour written as \"#rrggbb\""),
        ),
        Some(rgb) => {
            let ratio = contrast_with_white(rgb);
            if ratio < 4.5 {
                r.problem(
                    &t.at("primary_color"),
                    format!(
                        "{primary_color} is too light: its contrast with white is {ratio:.1}:1, and buttons and links need at least 4.5:1 to be readable; choose a darker shade"
                    ),
                );
            }
        }
    }
    let support_contact = r
        .optional_string(&t, "support_contact")
        .map(|s| s.trim().to_string());
    if support_contact
        .as_ref()
        .is_some_and(|s| s.chars().count() > 200)
    {
        r.problem(&t.at("support_contact"), "must be at most 200 characters");
    }
    let default_language = r
        .string(&t, "default_language", "en")
        .trim()
        .to_ascii_lowercase();
    if crate::pages::i18n::Lang::from_tag(&default_language).is_none()
        || default_language.contains(['-', '_'])
    {
        let known: Vec<&str> = crate::pages::i18n::ALL.iter().map(|l| l.code()).collect();
        r.problem(
            &t.at("default_language"),
            format!("{default_language:?} is not one of {}", known.join(", ")),
        );
    }
    UiConfig {
        clinic_name,
        logo,
        primary_color,
        support_contact,
        default_language,
    }
}

/// Reads and checks a logo: PNG or SVG, at most [`MAX_LOGO_BYTES`].
fn logo_file(r: &mut Reader, key: &str, path: PathBuf) -> Option<LogoFile> {
    let size = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            r.problem(key, format!("file {} does not exist", path.display()));
            return None;
        }
    };
    if size > MAX_LOGO_BYTES {
        r.problem(
            key,
            format!(
                "file {} is {size} bytes; a logo may have at most {MAX_LOGO_BYTES} (256 KiB)",
                path.display()
            ),
        );
        return None;
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            r.problem(key, format!("file {} cannot be read: {e}", path.display()));
            return None;
        }
    };
    let content_type = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        && std::str::from_utf8(&bytes).is_ok_and(|s| s.contains("<svg"))
    {
        "image/svg+xml"
    } else {
        r.problem(
            key,
            format!("file {} is neither a PNG nor an SVG image", path.display()),
        );
        return None;
    };
    Some(LogoFile {
        path,
        bytes: bytes.into(),
        content_type,
    })
}

/// `#rrggbb` as three bytes.
fn parse_hex_color(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// WCAG 2 contrast ratio of a colour against white.
fn contrast_with_white(rgb: [u8; 3]) -> f64 {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(rgb[0]) + 0.7152 * lin(rgb[1]) + 0.0722 * lin(rgb[2]);
    1.05 / (l + 0.05)
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

#[cfg(test)]
mod tests {
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
