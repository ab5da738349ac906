//! `[server]` and `[upstream]`: where the gateway listens and what it forwards to.

use std::time::Duration;

use super::*;

pub(super) fn server(r: &mut Reader, root: &Table<'_>) -> ServerConfig {
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

pub(super) fn upstream(r: &mut Reader, root: &Table<'_>) -> UpstreamConfig {
    let t = r.table(root, "upstream", UPSTREAM_KEYS);
    upstream_keys(r, &t, None)
}

/// The keys of `[upstream]`, which an `[[apps]]` table may also set.
pub(super) const UPSTREAM_KEYS: &[&str] = &[
    "url",
    "connect_timeout",
    "response_timeout",
    "ca_file",
    "preserve_host",
    "websocket_idle_timeout",
];

/// Reads the upstream keys of table `t`; a key `t` does not set comes from `inherit`
/// (an app's table inherits `[upstream]`'s settings), else from the defaults. The URL
/// is required when inheriting: an app without its own upstream is a mistake.
pub(super) fn upstream_keys(
    r: &mut Reader,
    t: &Table<'_>,
    inherit: Option<&UpstreamConfig>,
) -> UpstreamConfig {
    if inherit.is_some() && !t.has("url") {
        r.problem(
            &t.at("url"),
            "is required: the app's upstream, e.g. \"http://10.0.0.5:8080\"",
        );
    }
    let url = r.string(t, "url", "http://127.0.0.1:3000");
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
    let ca_file = r.optional_string(t, "ca_file").map(PathBuf::from);
    if let Some(ca) = &ca_file
        && !ca.is_file()
    {
        r.problem(
            &t.at("ca_file"),
            format!("file {} does not exist", ca.display()),
        );
    }
    let duration = |r: &mut Reader, name: &str, default: &str, base: Option<Duration>| match base {
        Some(b) if !t.has(name) => b,
        _ => r.duration(t, name, default),
    };
    UpstreamConfig {
        scheme,
        authority,
        connect_timeout: duration(
            r,
            "connect_timeout",
            "5s",
            inherit.map(|u| u.connect_timeout),
        ),
        response_timeout: duration(
            r,
            "response_timeout",
            "60s",
            inherit.map(|u| u.response_timeout),
        ),
        ca_file: ca_file.or_else(|| inherit.and_then(|u| u.ca_file.clone())),
        preserve_host: r.boolean(t, "preserve_host", inherit.is_none_or(|u| u.preserve_host)),
        websocket_idle_timeout: duration(
            r,
            "websocket_idle_timeout",
            "10m",
            inherit.map(|u| u.websocket_idle_timeout),
        ),
    }
}
