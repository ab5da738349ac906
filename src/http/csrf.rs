//! CSRF protection for every form, including the login form before any session
//! exists: a random per-browser cookie, and a form token that is an HMAC of it under
//! a server key. A token copied from another browser does not match this browser's
//! cookie; a cross-site form cannot read the cookie to forge one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;

use super::cookies;
use crate::core::tokens::{ct_eq, hmac, looks_like_token, new_token};

/// Base name of the CSRF cookie (`__Host-` prefixed under TLS).
pub(crate) const COOKIE_BASE: &str = "vestibule_csrf";

/// Issues and checks CSRF tokens.
pub struct Csrf {
    key: [u8; 32],
    cookie: String,
    tls: bool,
}

impl Csrf {
    pub fn new(key: [u8; 32], tls: bool) -> Self {
        Self {
            key,
            cookie: cookies::wire_name(COOKIE_BASE, tls),
            tls,
        }
    }

    /// The cookie's name on the wire.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    fn token_for(&self, browser: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(&self.key, browser.as_bytes()))
    }

    /// The form token for this browser, and a `Set-Cookie` when the browser has no
    /// valid CSRF cookie yet.
    pub fn issue(&self, headers: &HeaderMap) -> (String, Option<String>) {
        match cookies::get(headers, &self.cookie).filter(|v| looks_like_token(v)) {
            Some(b) => (self.token_for(b), None),
            None => {
                let b = new_token();
                (
                    self.token_for(&b),
                    Some(cookies::set(&self.cookie, &b, self.tls, None)),
                )
            }
        }
    }

    /// True when `token` was issued to the browser that sent `headers`.
    pub fn verify(&self, headers: &HeaderMap, token: Option<&str>) -> bool {
        match (
            cookies::get(headers, &self.cookie).filter(|v| looks_like_token(v)),
            token,
        ) {
            (Some(b), Some(t)) => ct_eq(self.token_for(b).as_bytes(), t.as_bytes()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::COOKIE;

    fn headers_with(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn token_is_bound_to_the_browser_cookie() {
        let csrf = Csrf::new([1; 32], true);
        let (token, set) = csrf.issue(&HeaderMap::new());
        let set = set.unwrap();
        let value = set
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        let mine = headers_with(&format!("__Host-vestibule_csrf={value}"));
        assert!(csrf.verify(&mine, Some(&token)));
        let other = headers_with(&format!("__Host-vestibule_csrf={}", new_token()));
        assert!(!csrf.verify(&other, Some(&token)));
        assert!(!csrf.verify(&mine, None));
        assert!(!csrf.verify(&HeaderMap::new(), Some(&token)));
    }
}
