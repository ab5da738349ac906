//! Identity headers: first every client-sent copy is removed (configured identity
//! names and `headers.strip`, case-insensitively and in their `_` spelling), then the
//! gateway inserts its own for authenticated requests. Strip-then-insert is the only
//! order in which a client can never smuggle an identity upstream.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::HeadersConfig;

/// The identity of an authenticated request, as it will be forwarded.
pub struct Identity<'a> {
    pub user: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub roles: &'a str,
    pub mfa: &'a str,
    /// The signed assertion (when `headers.assertion` is on).
    pub assertion: Option<HeaderValue>,
}

/// Client-sent headers that upstream frameworks believe from their proxy (client address,
/// scheme, host, prefix, original URL or method, a pre-authenticated user). The gateway
/// removes them from every request whatever `headers.strip` says (SPEC §5.2): the
/// configured list adds names, it can never shorten this one. `X-Forwarded-For`,
/// `-Proto` and `-Host` are not here because the forwarder rebuilds them.
pub(crate) const ALWAYS_STRIPPED: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-url-scheme",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-host",
    "x-original-host",
    "x-original-method",
    "x-remote-user",
    "x-webauth-user",
    "x-http-method-override",
    "x-method-override",
];

/// Precomputed at configuration load: which names to strip and which to set.
pub struct IdentityHeaders {
    names: [HeaderName; 5],
    /// Where the signed assertion goes, when it is on.
    assertion: Option<HeaderName>,
    /// Lower-case, `-` spelling; a handful of names, so a list beats hashing each header.
    strip: Vec<String>,
    /// Bit `n` set: some name in `strip` is `n` bytes long (`n` < 64). Most request
    /// headers are ruled out by their length alone, before any comparison.
    lengths: u64,
    /// Some name in `strip` is 64 bytes or longer.
    long_names: bool,
}

/// `Remote_User` and `remote-user` are the same header to many upstream frameworks
/// (CGI-style environments map `-` to `_`), so both spellings are one name here.
fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Whether a header name as received (lower-case, as every `HeaderName` is) is
/// `canonical` in either spelling.
fn same_name(received: &str, canonical: &str) -> bool {
    received.len() == canonical.len()
        && received
            .bytes()
            .zip(canonical.bytes())
            .all(|(r, c)| r == c || (r == b'_' && c == b'-'))
}

impl IdentityHeaders {
    pub fn new(cfg: &HeadersConfig) -> Self {
        let names = [
            cfg.user.clone(),
            cfg.email.clone(),
            cfg.name.clone(),
            cfg.roles.clone(),
            cfg.mfa.clone(),
        ];
        let mut strip: Vec<String> = names
            .iter()
            .chain(cfg.strip.iter())
            .chain(cfg.assertion.iter())
            .map(|h| canonical(h.as_str()))
            .chain(ALWAYS_STRIPPED.iter().map(|h| canonical(h)))
            .collect();
        strip.sort();
        strip.dedup();
        let lengths = strip
            .iter()
            .filter(|s| s.len() < 64)
            .fold(0u64, |m, s| m | (1u64 << s.len()));
        let long_names = strip.iter().any(|s| s.len() >= 64);
        Self {
            names,
            assertion: cfg.assertion.clone(),
            strip,
            lengths,
            long_names,
        }
    }

    /// Whether a received header name is one to strip.
    fn doomed(&self, received: &str) -> bool {
        let len = received.len();
        let possible = if len < 64 {
            self.lengths & (1u64 << len) != 0
        } else {
            self.long_names
        };
        possible && self.strip.iter().any(|s| same_name(received, s))
    }

    /// Removes every client-sent identity or strip-listed header.
    pub fn strip(&self, headers: &mut HeaderMap) {
        // Almost every request carries none: look before collecting anything.
        if !headers.keys().any(|k| self.doomed(k.as_str())) {
            return;
        }
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.doomed(k.as_str()))
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
    }

    /// Sets the gateway's identity headers (after [`IdentityHeaders::strip`]).
    pub fn insert(&self, headers: &mut HeaderMap, id: &Identity<'_>) {
        let values = [id.user, id.email, id.name, id.roles, id.mfa];
        for (name, value) in self.names.iter().zip(values) {
            if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.insert(name.clone(), v);
            }
        }
        if let (Some(name), Some(v)) = (&self.assertion, &id.assertion) {
            headers.insert(name.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HeadersConfig {
        HeadersConfig {
            user: HeaderName::from_static("remote-user"),
            email: HeaderName::from_static("remote-email"),
            name: HeaderName::from_static("remote-name"),
            roles: HeaderName::from_static("remote-groups"),
            mfa: HeaderName::from_static("remote-mfa"),
            strip: vec![HeaderName::from_static("x-forwarded-user")],
            assertion: Some(HeaderName::from_static("remote-assertion")),
            assertion_key_file: None,
        }
    }

    #[test]
    fn strips_spoofed_identity_header_in_every_spelling() {
        let ih = IdentityHeaders::new(&cfg());
        let mut h = HeaderMap::new();
        for n in [
            "remote-user",
            "remote_user",
            "REMOTE_GROUPS",
            "x_forwarded_user",
            "x-forwarded-user",
            "remote_assertion",
            "x-other",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        ih.strip(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-other"]
        );
    }

    /// Sends each of `names` (as received) plus `x-other` through `strip`; what is left.
    fn left_after_strip(ih: &IdentityHeaders, names: &[String]) -> Vec<String> {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        h.append("x-other", HeaderValue::from_static("kept"));
        ih.strip(&mut h);
        h.keys().map(|k| k.as_str().to_owned()).collect()
    }

    #[test]
    fn strips_trust_headers_even_when_the_configured_list_is_empty() {
        let mut c = cfg();
        c.strip.clear();
        let ih = IdentityHeaders::new(&c);
        let sent: Vec<String> = ALWAYS_STRIPPED
            .iter()
            .flat_map(|n| [n.to_string(), n.replace('-', "_")])
            .collect();
        assert_eq!(left_after_strip(&ih, &sent), ["x-other"]);
    }

    #[test]
    fn strips_names_of_every_length_the_length_filter_sees() {
        // 63, 64 and 70 bytes: either side of the 64-bit length mask.
        let names = [
            "x".repeat(61) + "-a",
            "x".repeat(63) + "-",
            "y".repeat(68) + "-b",
        ];
        let mut c = cfg();
        c.strip = names
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        let ih = IdentityHeaders::new(&c);
        let spoofed: Vec<String> = names.iter().map(|n| n.replace('-', "_")).collect();
        assert_eq!(left_after_strip(&ih, &spoofed), ["x-other"]);
    }

    #[test]
    fn inserts_identity_after_strip() {
        let ih = IdentityHeaders::new(&cfg());
        let mut h = HeaderMap::new();
        h.append("remote-user", HeaderValue::from_static("evil"));
        ih.strip(&mut h);
        ih.insert(
            &mut h,
            &Identity {
                user: "pat",
                email: "p@x",
                name: "Pät",
                roles: "patient",
                mfa: "none",
                assertion: Some(HeaderValue::from_static("a.b.c")),
            },
        );
        assert_eq!(h.get_all("remote-user").iter().count(), 1);
        assert_eq!(h["remote-user"], "pat");
        assert_eq!(h["remote-mfa"], "none");
        assert_eq!(h["remote-assertion"], "a.b.c");
    }
}
