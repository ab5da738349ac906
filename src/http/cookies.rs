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
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
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

/// A `Set-Cookie` value that deletes cookie `name`.
pub(crate) fn clear(name: &str, tls: bool) -> String {
    let c = Cookie::build((name.to_string(), String::new()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(tls)
        .max_age(cookie::time::Duration::ZERO)
        .expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    c.build().to_string()
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
}
