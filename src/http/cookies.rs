//! Reading request cookies and writing the gateway's own.

use cookie::{Cookie, SameSite};
use http::header::{COOKIE, HeaderMap};

/// The value of cookie `name` in the request (all `Cookie` headers are searched).
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            // A header value that is a `str` holds only visible ASCII, spaces and
            // tabs: ASCII trimming is the whole of it.
            let (k, v) = pair.trim_ascii().split_once('=')?;
            (k.trim_ascii() == name).then(|| v.trim_ascii().trim_matches('"'))
        })
}

/// A `Set-Cookie` value with the attributes of SPEC §6: HttpOnly, SameSite=Lax,
/// Path=/, no Domain, Secure under TLS. `max_age_secs` of `None` makes a session cookie.
pub(crate) fn set(name: &str, value: &str, tls: bool, max_age_secs: Option<i64>) -> String {
    let mut c = Cookie::build((name.to_string(), value.to_string()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(tls);
    if let Some(age) = max_age_secs {
        c = c.max_age(cookie::time::Duration::seconds(age));
    }
    c.build().to_string()
}

/// One of the gateway's own cookies with the scope it is sent with: host-only
/// (`__Host-` under TLS, SPEC §6), or for a whole domain with `session.cookie_domain`
/// (`__Secure-` under TLS, since `__Host-` forbids a `Domain`; SPEC §8).
#[derive(Debug, Clone)]
pub(crate) struct OwnCookie {
    name: String,
    tls: bool,
    domain: Option<String>,
}

impl OwnCookie {
    pub(crate) fn new(base: &str, tls: bool, domain: Option<&str>) -> Self {
        let name = match (tls, domain) {
            (true, Some(_)) => format!("__Secure-{base}"),
            _ => wire_name(base, tls),
        };
        Self {
            name,
            tls,
            domain: domain.map(str::to_string),
        }
    }

    /// The name on the wire.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its value in the request, if sent.
    pub(crate) fn get<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        get(headers, &self.name)
    }

    /// The `Set-Cookie` value that sets it (`None`: a browser-session cookie).
    pub(crate) fn set(&self, value: &str, max_age_secs: Option<i64>) -> String {
        self.build(value, max_age_secs.map(cookie::time::Duration::seconds))
    }

    /// The `Set-Cookie` value that removes it (with the same scope, or it would stay).
    pub(crate) fn clear(&self) -> String {
        self.build("", Some(cookie::time::Duration::ZERO))
    }

    fn build(&self, value: &str, max_age: Option<cookie::time::Duration>) -> String {
        let mut c = Cookie::build((self.name.clone(), value.to_string()))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.tls);
        if let Some(d) = &self.domain {
            c = c.domain(d.clone());
        }
        if let Some(age) = max_age {
            c = c.max_age(age);
            if age.is_zero() {
                c = c.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
            }
        }
        c.build().to_string()
    }
}

/// The cookie name as sent: `__Host-` prefixed under TLS (SPEC §6).
pub(crate) fn wire_name(base: &str, tls: bool) -> String {
    if tls {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_cookies_across_headers() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "c"), Some("3"));
        assert_eq!(get(&h, "d"), None);
    }

    #[test]
    fn set_cookie_has_the_security_attributes() {
        let s = set("__Host-x", "v", true, None);
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
            assert!(s.contains(attr), "{s}");
        }
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn a_domain_cookie_is_secure_prefixed_and_carries_its_domain() {
        let host_only = OwnCookie::new("vestibule_session", true, None);
        assert_eq!(host_only.name(), "__Host-vestibule_session");
        assert!(!host_only.set("v", None).contains("Domain"));
        let shared = OwnCookie::new("vestibule_session", true, Some("clinic.example"));
        assert_eq!(shared.name(), "__Secure-vestibule_session");
        for s in [shared.set("v", Some(60)), shared.clear()] {
            for attr in ["Domain=clinic.example", "Secure", "HttpOnly", "Path=/"] {
                assert!(s.contains(attr), "{s}");
            }
        }
        assert!(shared.clear().contains("Max-Age=0"));
        let plain = OwnCookie::new("vestibule_session", false, Some("clinic.example"));
        assert_eq!(plain.name(), "vestibule_session");
    }
}
