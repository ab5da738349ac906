//! The upstream's answer, told in the client's addresses (SPEC §5.2, §8): a
//! `Location` or `Content-Location` that points at the upstream's own URL is
//! rewritten to the address the client used (as nginx's `proxy_redirect default`),
//! and for an app whose prefix is stripped on the way up, the paths it answers with
//! — redirects and cookie `Path`s — get the prefix back. Only answers that carry
//! such headers pay anything.

use http::HeaderMap;
use http::header::{CONTENT_LOCATION, HeaderValue, LOCATION, SET_COOKIE};

/// How an app's addresses map to the client's.
pub(crate) struct AnswerPaths<'a> {
    /// The upstream's origin, lower-case (`http://10.0.0.5:8080`).
    pub(crate) upstream_origin: &'a str,
    /// The origin the client used (`https://records.clinic.example`), when known.
    pub(crate) client_origin: Option<&'a str>,
    /// The app's prefix when the gateway strips it (`/lab`), else None.
    pub(crate) stripped_prefix: Option<&'a str>,
}

impl AnswerPaths<'_> {
    /// Rewrites the answer's headers in place.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for name in [LOCATION, CONTENT_LOCATION] {
            let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(mapped) = self.location(v)
                && let Ok(v) = HeaderValue::from_str(&mapped)
            {
                headers.insert(name, v);
            }
        }
        if let Some(prefix) = self.stripped_prefix
            && headers.contains_key(SET_COOKIE)
        {
            let mapped: Vec<HeaderValue> = headers
                .get_all(SET_COOKIE)
                .iter()
                .map(|v| {
                    v.to_str()
                        .ok()
                        .and_then(|s| cookie_path(s, prefix))
                        .and_then(|s| HeaderValue::from_str(&s).ok())
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            headers.remove(SET_COOKIE);
            for v in mapped {
                headers.append(SET_COOKIE, v);
            }
        }
    }

    /// A location in the client's addresses, or None to leave it as it is.
    fn location(&self, value: &str) -> Option<String> {
        let prefix = self.stripped_prefix.unwrap_or("");
        // The upstream's own absolute URL (or scheme-relative, `//host:port/x`).
        let origin_rest = strip_origin(value, self.upstream_origin);
        if let Some(rest) = origin_rest {
            let base = self.client_origin.unwrap_or("");
            return Some(format!("{base}{prefix}{}", path_or_root(rest)));
        }
        if prefix.is_empty() {
            return None;
        }
        // The client's own origin, built by an upstream that was given the client's
        // Host: its paths are the upstream's, without the prefix.
        if let Some(client) = self.client_origin
            && let Some(rest) = strip_origin(value, client)
            && !under(rest, prefix)
        {
            return Some(format!("{client}{prefix}{}", path_or_root(rest)));
        }
        // A path-absolute reference ("/x"), not a scheme-relative one ("//host").
        if value.starts_with('/') && !value.starts_with("//") && !under(value, prefix) {
            return Some(format!("{prefix}{value}"));
        }
        None
    }
}

/// `rest` already carries the prefix (an app that knows its base path).
fn under(rest: &str, prefix: &str) -> bool {
    rest.strip_prefix(prefix)
        .is_some_and(|r| r.is_empty() || r.starts_with(['/', '?', '#']))
}

/// "" and "?q" become "/" and "/?q".
fn path_or_root(rest: &str) -> String {
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

/// What follows `origin` (`scheme://authority`, lower-case) in `value`, when `value`
/// is a URL on that origin — also written scheme-relative. Scheme and host compare
/// case-insensitively.
fn strip_origin<'v>(value: &'v str, origin: &str) -> Option<&'v str> {
    let authority = origin.split_once("://").map(|(_, a)| a)?;
    let rest = match value.get(..origin.len()) {
        Some(head) if head.eq_ignore_ascii_case(origin) => &value[origin.len()..],
        _ => {
            let head = value.get(..2 + authority.len())?;
            if head.starts_with("//") && head[2..].eq_ignore_ascii_case(authority) {
                &value[2 + authority.len()..]
            } else {
                return None;
            }
        }
    };
    (rest.is_empty() || rest.starts_with(['/', '?', '#'])).then_some(rest)
}

/// A `Set-Cookie` value with its `Path` moved under `prefix`, or None when it has no
/// path attribute to move (the browser's default path is already the client's).
fn cookie_path(set_cookie: &str, prefix: &str) -> Option<String> {
    let mut out = String::with_capacity(set_cookie.len() + prefix.len());
    let mut changed = false;
    for (i, part) in set_cookie.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        let trimmed = part.trim_start();
        let is_path = i > 0
            && trimmed
                .get(..5)
                .is_some_and(|h| h.eq_ignore_ascii_case("path="));
        match is_path {
            true if trimmed[5..].starts_with('/') && !under(&trimmed[5..], prefix) => {
                let lead = &part[..part.len() - trimmed.len()];
                let path = &trimmed[5..];
                out.push_str(lead);
                out.push_str(&trimmed[..5]);
                out.push_str(prefix);
                if path != "/" {
                    out.push_str(path);
                }
                changed = true;
            }
            _ => out.push_str(part),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(
        upstream: &str,
        client: Option<&str>,
        prefix: Option<&str>,
        loc: &str,
    ) -> Option<String> {
        AnswerPaths {
            upstream_origin: upstream,
            client_origin: client,
            stripped_prefix: prefix,
        }
        .location(loc)
    }

    const UP: &str = "http://127.0.0.1:19211";
    const CLIENT: Option<&str> = Some("https://records.clinic.example");

    #[test]
    fn the_upstreams_own_address_becomes_the_clients() {
        assert_eq!(
            map(UP, CLIENT, None, "http://127.0.0.1:19211/admin/").as_deref(),
            Some("https://records.clinic.example/admin/")
        );
        assert_eq!(
            map(UP, CLIENT, None, "HTTP://127.0.0.1:19211").as_deref(),
            Some("https://records.clinic.example/")
        );
        assert_eq!(
            map(UP, CLIENT, None, "//127.0.0.1:19211/x?y").as_deref(),
            Some("https://records.clinic.example/x?y")
        );
        // Another port, another host, a longer host: not the upstream.
        for other in [
            "http://127.0.0.1:19212/x",
            "http://127.0.0.1:192110/x",
            "https://elsewhere.example/x",
            "/relative",
            "relative",
        ] {
            assert_eq!(map(UP, CLIENT, None, other), None, "{other}");
        }
    }

    #[test]
    fn a_stripped_prefix_is_put_back_into_redirects() {
        let lab = Some("/lab");
        assert_eq!(map(UP, CLIENT, lab, "/x").as_deref(), Some("/lab/x"));
        assert_eq!(map(UP, CLIENT, lab, "/").as_deref(), Some("/lab/"));
        assert_eq!(
            map(UP, CLIENT, lab, "http://127.0.0.1:19211/x?a=1").as_deref(),
            Some("https://records.clinic.example/lab/x?a=1")
        );
        assert_eq!(
            map(UP, CLIENT, lab, "https://records.clinic.example/x").as_deref(),
            Some("https://records.clinic.example/lab/x")
        );
        // Already under the prefix, relative, or elsewhere: left alone.
        for keep in [
            "/lab/x",
            "/lab",
            "x",
            "../x",
            "//evil.example/x",
            "https://evil.example/",
        ] {
            assert_eq!(map(UP, CLIENT, lab, keep), None, "{keep}");
        }
    }

    #[test]
    fn cookie_paths_move_under_the_prefix() {
        assert_eq!(
            cookie_path("sid=1; Path=/; HttpOnly", "/lab").as_deref(),
            Some("sid=1; Path=/lab; HttpOnly")
        );
        assert_eq!(
            cookie_path("a=b;path=/sub;Secure", "/lab").as_deref(),
            Some("a=b;path=/lab/sub;Secure")
        );
        assert_eq!(cookie_path("a=b; HttpOnly", "/lab"), None);
        assert_eq!(cookie_path("path=/x; Max-Age=1", "/lab"), None);
        assert_eq!(cookie_path("a=b; Path=/lab/x", "/lab"), None);
    }
}
