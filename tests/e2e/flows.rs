//! A small browser for the gateway's own pages: a cookie jar that honours the
//! gateway's `Set-Cookie`, pages fetched and parsed with plain string scanning
//! (forms, hidden fields, ids, classes), forms submitted as a browser would, and
//! redirects followed by hand (so every hop can be checked). Also: users files with
//! real argon2id hashes, an independent RFC 6238 implementation (hmac + sha1, written
//! here, not the product's), admin commands against a running gateway, and leak scans.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::harness::*;

pub const SESSION_COOKIE: &str = "__Host-vestibule_session";
pub const CSRF_COOKIE: &str = "__Host-vestibule_csrf";
pub const DEVICE_COOKIE: &str = "__Host-vestibule_device";

pub fn p(sub: &str) -> String {
    format!("{PREFIX}{sub}")
}

/// Percent-encodes a value for a query string.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Percent-decodes once (bytes kept, invalid UTF-8 replaced).
pub fn dec(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

/// argon2id PHC string of `password` (m=19456, t=2, p=1), cached per password.
pub fn phc(password: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(h) = cache.lock().unwrap().get(password) {
        return h.clone();
    }
    use argon2::PasswordHasher as _;
    let h = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hash")
        .to_string();
    assert!(h.starts_with("$argon2id$"), "{h}");
    cache
        .lock()
        .unwrap()
        .insert(password.to_string(), h.clone());
    h
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub roles: Vec<String>,
    pub disabled: bool,
}

impl TestUser {
    pub fn new(name: &str, roles: &[&str]) -> TestUser {
        TestUser {
            name: name.to_string(),
            // Distinctive, so a leak is found by a plain substring search.
            password: format!("pw-{name}-Zq8!vK2#e2e"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            disabled: false,
        }
    }
    pub fn disabled(mut self) -> TestUser {
        self.disabled = true;
        self
    }
    pub fn email(&self) -> String {
        format!("{}@clinic.example", self.name)
    }
    pub fn display_name(&self) -> String {
        format!("Test {}", self.name.to_uppercase())
    }
}

pub fn users_toml(users: &[TestUser]) -> String {
    let mut t = String::new();
    for u in users {
        t.push_str("[[users]]\n");
        t.push_str(&format!("username = {:?}\n", u.name));
        t.push_str(&format!("display_name = {:?}\n", u.display_name()));
        t.push_str(&format!("email = {:?}\n", u.email()));
        let roles: Vec<String> = u.roles.iter().map(|r| format!("{r:?}")).collect();
        t.push_str(&format!("roles = [{}]\n", roles.join(", ")));
        t.push_str(&format!("password_hash = {:?}\n", phc(&u.password)));
        t.push_str(&format!("disabled = {}\n\n", u.disabled));
    }
    if t.is_empty() {
        t.push_str("users = []\n");
    }
    t
}

// ---------------------------------------------------------------------------
// Admin commands
// ---------------------------------------------------------------------------

/// Runs `vestibule --config <the gateway's config> ARGS…` (stdin from `input`).
pub async fn admin(gw: &Gateway, args: &[&str], input: Option<&str>) -> Output {
    let mut cmd = gw.p.cmd();
    cmd.arg("--config").arg(&gw.p.config_path);
    cmd.args(args);
    let input = input.map(str::to_string);
    tokio::task::spawn_blocking(move || run(cmd, input.as_deref(), Duration::from_secs(60)))
        .await
        .unwrap()
}

/// Audit events (JSON lines with an `event` key) found in `text`.
pub fn audit_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v.get("event").is_some())
        .collect()
}

pub fn has_event(text: &str, event: &str, user: &str) -> bool {
    audit_events(text)
        .iter()
        .any(|e| e["event"] == event && e["user"] == user)
}

// ---------------------------------------------------------------------------
// HTML scanning
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Tag {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    /// Byte offset of `<`.
    pub start: usize,
    /// Byte offset just after `>`.
    pub end: usize,
}

impl Tag {
    pub fn attr(&self, name: &str) -> Option<String> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }
}

pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every start tag of `html`, in order, with unescaped attribute values.
pub fn tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' || i + 1 >= b.len() || !b[i + 1].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let ns = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        let name = html[ns..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                i += 1;
                break;
            }
            let ks = i;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && b[i] != b'='
                && b[i] != b'>'
                && b[i] != b'/'
            {
                i += 1;
            }
            let key = html[ks..i].to_ascii_lowercase();
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < b.len() && b[i] == b'=' {
                i += 1;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    i += 1;
                    let vs = i;
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                    value = html_unescape(&html[vs..i.min(b.len())]);
                    i += 1;
                } else {
                    let vs = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = html_unescape(&html[vs..i]);
                }
            }
            attrs.push((key, value));
        }
        out.push(Tag {
            name,
            attrs,
            start,
            end: i.min(b.len()),
        });
    }
    out
}

/// Text content of `tag` up to its closing tag (nested tags removed, unescaped, trimmed).
pub fn inner_text(html: &str, tag: &Tag) -> String {
    let rest = &html[tag.end..];
    let close = rest.find(&format!("</{}", tag.name)).unwrap_or(rest.len());
    let raw = &rest[..close];
    let mut text = String::new();
    let mut in_tag = false;
    for c in raw.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    html_unescape(&text).trim().to_string()
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Page {
    pub status: u16,
    pub url: reqwest::Url,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn location(&self) -> Option<String> {
        self.header("location")
    }
    /// `Location` resolved against this page's URL, as a browser would.
    pub fn location_url(&self) -> Option<reqwest::Url> {
        self.url.join(&self.location()?).ok()
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
    /// The raw `Set-Cookie` for cookie `name`, if this response set it.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find(|c| {
            c.split(';')
                .next()
                .and_then(|nv| nv.split_once('='))
                .is_some_and(|(n, _)| n.trim() == name)
        })
    }
    pub fn tags(&self) -> Vec<Tag> {
        tags(&self.body)
    }
    pub fn by_id(&self, id: &str) -> Option<Tag> {
        self.tags()
            .into_iter()
            .find(|t| t.attr("id").as_deref() == Some(id))
    }
    pub fn text_by_id(&self, id: &str) -> Option<String> {
        self.by_id(id).map(|t| inner_text(&self.body, &t))
    }
    pub fn class_texts(&self, class: &str) -> Vec<String> {
        self.tags()
            .iter()
            .filter(|t| t.has_class(class))
            .map(|t| inner_text(&self.body, t))
            .collect()
    }
    /// The value of the first `<input name=NAME>`.
    pub fn input(&self, name: &str) -> Option<String> {
        self.tags()
            .into_iter()
            .find(|t| t.name == "input" && t.attr("name").as_deref() == Some(name))
            .map(|t| t.attr("value").unwrap_or_default())
    }
    pub fn csrf(&self) -> String {
        self.input("csrf_token").unwrap_or_else(|| {
            panic!(
                "no csrf_token on {} ({}):\n{}",
                self.url, self.status, self.body
            )
        })
    }
    /// The `<form>` posting to `action` and its fields (name, value, type) in order.
    pub fn form(&self, action: &str) -> Option<Vec<(String, String, String)>> {
        let all = self.tags();
        let form = all
            .iter()
            .find(|t| t.name == "form" && t.attr("action").as_deref() == Some(action))?;
        let close = self.body[form.end..]
            .find("</form")
            .map(|i| i + form.end)
            .unwrap_or(self.body.len());
        Some(
            all.iter()
                .filter(|t| t.start > form.start && t.start < close)
                .filter(|t| matches!(t.name.as_str(), "input" | "textarea" | "select" | "button"))
                .filter_map(|t| {
                    let name = t.attr("name")?;
                    Some((
                        name,
                        t.attr("value").unwrap_or_default(),
                        t.attr("type").unwrap_or_default().to_ascii_lowercase(),
                    ))
                })
                .collect(),
        )
    }
    pub fn has_form(&self, action: &str) -> bool {
        self.form(action).is_some()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}) from {} ({}): {}",
                self.url, self.status, self.body
            )
        })
    }
    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }
    pub fn describe(&self) -> String {
        let body: String = self.body.chars().take(1500).collect();
        format!(
            "{} {} location={:?}\n{}",
            self.status,
            self.url,
            self.location(),
            body
        )
    }
}

// ---------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct JarCookie {
    pub name: String,
    pub value: String,
    /// The `Set-Cookie` line that set it.
    pub raw: String,
}

/// One browser: its own cookie jar and TLS connections.
pub struct Browser {
    pub client: reqwest::Client,
    pub origin: reqwest::Url,
    jar: Mutex<Vec<JarCookie>>,
    pub user_agent: String,
}

pub const NAV_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

impl Browser {
    pub fn new(gw: &Gateway) -> Browser {
        Browser {
            client: gw.client_builder().build().unwrap(),
            origin: reqwest::Url::parse(&gw.url("/")).unwrap(),
            jar: Mutex::new(Vec::new()),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0".to_string(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.clone())
    }
    pub fn jar_entry(&self, name: &str) -> Option<JarCookie> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }
    /// Plants a cookie as if another page (or an attacker) had set it.
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| c.name != name);
        jar.push(JarCookie {
            name: name.into(),
            value: value.into(),
            raw: format!("{name}={value}"),
        });
    }
    pub fn remove_cookie(&self, name: &str) {
        self.jar.lock().unwrap().retain(|c| c.name != name);
    }
    /// The `Cookie` header this browser sends.
    pub fn cookie_header(&self) -> String {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn store(&self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (
            name.trim().to_string(),
            value.trim().trim_matches('"').to_string(),
        );
        let mut expired = false;
        for a in parts {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "max-age" && v.parse::<i64>().is_ok_and(|n| n <= 0) {
                expired = true;
            }
            if k == "expires" && (v.contains("1970") || v.contains("Jan 1970")) {
                expired = true;
            }
        }
        // A browser refuses a __Host- cookie without Secure and Path=/, or with Domain.
        if name.starts_with("__Host-") {
            let l = set_cookie.to_ascii_lowercase();
            if !l.contains("secure") || !l.contains("path=/") || l.contains("domain=") {
                return;
            }
        }
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| c.name != name);
        if !expired {
            jar.push(JarCookie {
                name,
                value,
                raw: set_cookie.to_string(),
            });
        }
    }

    pub fn url(&self, target: &str) -> reqwest::Url {
        self.origin
            .join(target)
            .unwrap_or_else(|e| panic!("bad target {target:?}: {e}"))
    }

    /// Sends one request with this browser's cookies; stores the answer's cookies.
    pub async fn send(
        &self,
        method: reqwest::Method,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Page {
        let url = self.url(target);
        let mut req = self
            .client
            .request(method, url.clone())
            .header("user-agent", &self.user_agent);
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b);
        }
        let resp = tokio::time::timeout(Duration::from_secs(60), req.send())
            .await
            .unwrap_or_else(|_| panic!("{target}: no answer in 60 s"))
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for v in headers.get_all("set-cookie") {
            self.store(&String::from_utf8_lossy(v.as_bytes()));
        }
        let body = String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).into_owned();
        Page {
            status,
            url,
            headers,
            body,
        }
    }

    /// A navigation: `GET` with a browser's `Accept`.
    pub async fn get(&self, target: &str) -> Page {
        self.send(
            reqwest::Method::GET,
            target,
            &[("accept", NAV_ACCEPT)],
            None,
        )
        .await
    }
    /// An API call (`Accept: application/json`).
    pub async fn api(&self, method: reqwest::Method, target: &str) -> Page {
        self.send(method, target, &[("accept", "application/json")], None)
            .await
    }
    pub async fn post_form(&self, target: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            reqwest::Method::POST,
            target,
            &[
                ("accept", NAV_ACCEPT),
                ("origin", self.origin.as_str().trim_end_matches('/')),
            ],
            Some(body),
        )
        .await
    }

    /// Submits the form of `page` whose action is `action`, as a browser would: its
    /// fields with their values (unchecked checkboxes left out), `set` overriding or
    /// adding fields.
    pub async fn submit(&self, page: &Page, action: &str, set: &[(&str, &str)]) -> Page {
        let form = page
            .form(action)
            .unwrap_or_else(|| panic!("no form for {action} on {}", page.describe()));
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value, ty) in form {
            if ty == "checkbox" || ty == "submit" || ty == "button" || ty == "radio" {
                continue;
            }
            fields.push((name, value));
        }
        for (k, v) in set {
            if let Some(f) = fields.iter_mut().find(|(n, _)| n == k) {
                f.1 = v.to_string();
            } else {
                fields.push((k.to_string(), v.to_string()));
            }
        }
        let refs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.post_form(action, &refs).await
    }

    /// Follows redirects (on this origin only) with navigations; returns the last page.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            if !page.is_redirect() {
                return page;
            }
            let Some(next) = page.location_url() else {
                return page;
            };
            if next.origin() != self.origin.origin() {
                return page;
            }
            let target = match next.query() {
                Some(q) => format!("{}?{q}", next.path()),
                None => next.path().to_string(),
            };
            page = self.get(&target).await;
        }
        panic!("redirect loop ending at {}", page.describe());
    }

    /// `GET P/login?rd=RD` then submits the form with these credentials. Returns the
    /// answer to the `POST` (not followed).
    pub async fn login(&self, user: &str, password: &str, rd: &str) -> Page {
        let form = self.get(&format!("{}?rd={}", p("/login"), enc(rd))).await;
        assert_eq!(form.status, 200, "login form: {}", form.describe());
        self.submit(
            &form,
            &p("/login"),
            &[("username", user), ("password", password)],
        )
        .await
    }

    /// Logs in and asserts the password step succeeded (303); returns its `Location`.
    pub async fn login_ok(&self, user: &TestUser, rd: &str) -> String {
        let r = self.login(&user.name, &user.password, rd).await;
        assert_eq!(
            r.status,
            303,
            "login of {} must succeed: {}",
            user.name,
            r.describe()
        );
        assert!(
            self.cookie(SESSION_COOKIE).is_some(),
            "no session cookie after login of {}",
            user.name
        );
        r.location().unwrap()
    }

    /// Signs out through the logout form of the account page.
    pub async fn logout(&self) -> Page {
        let acc = self.get(&p("/account")).await;
        assert_eq!(acc.status, 200, "account page: {}", acc.describe());
        self.submit(&acc, &p("/logout"), &[]).await
    }
}

// ---------------------------------------------------------------------------
// TOTP, written independently of the product (RFC 4226 / RFC 6238, HMAC-SHA1)
// ---------------------------------------------------------------------------

/// RFC 4226 HOTP with HMAC-SHA1 and dynamic truncation.
pub fn hotp_sha1(secret: &[u8], counter: u64, digits: u32) -> String {
    use hmac::{KeyInit, Mac as _};
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[h.len() - 1] & 0x0f) as usize;
    let bin = ((h[off] as u32 & 0x7f) << 24)
        | ((h[off + 1] as u32) << 16)
        | ((h[off + 2] as u32) << 8)
        | (h[off + 3] as u32);
    format!(
        "{:0width$}",
        bin % 10u32.pow(digits),
        width = digits as usize
    )
}
/// RFC 4648 base32 (upper or lower case; spaces, dashes and padding ignored).
pub fn base32_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'-' && *c != b'=')
    {
        let v = A
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("not base32: {c:?} in {s:?}")) as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

pub fn base32_encode(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for b in data {
        buf = (buf << 8) | *b as u64;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(A[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(A[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The phone of one user: the secret shown at setup, and which time steps were
/// already spent (the gateway accepts each step once and only ever later ones).
pub struct Authenticator {
    pub secret: Vec<u8>,
    pub period: u64,
    pub digits: u32,
    last: Mutex<Option<u64>>,
}

impl Authenticator {
    pub fn new(secret: Vec<u8>, period: u64) -> Authenticator {
        Authenticator {
            secret,
            period,
            digits: 6,
            last: Mutex::new(None),
        }
    }
    pub fn step_now(&self) -> u64 {
        (unix_now() as u64) / self.period
    }
    /// Seconds left in the current step.
    pub fn remaining(&self) -> f64 {
        let now = unix_now();
        self.period as f64 - (now % self.period as f64)
    }
    pub fn code_at(&self, step: u64) -> String {
        hotp_sha1(&self.secret, step, self.digits)
    }
    /// Records that the gateway has seen a code for `step`.
    pub fn spend(&self, step: u64) {
        let mut last = self.last.lock().unwrap();
        *last = Some(last.map_or(step, |l| l.max(step)));
    }
    /// A code for an unspent step the gateway accepts (skew = 1): the current step,
    /// or the next; waits for the clock when both are spent. Marks it spent.
    pub async fn fresh(&self) -> String {
        loop {
            let cur = self.step_now();
            let cand = match *self.last.lock().unwrap() {
                None => cur,
                Some(l) => cur.max(l + 1),
            };
            if cand <= cur + 1 {
                self.spend(cand);
                return self.code_at(cand);
            }
            tokio::time::sleep(Duration::from_secs_f64(self.remaining() + 0.05)).await;
        }
    }
    /// Waits until at least `secs` seconds are left in the current step.
    pub async fn wait_for_room(&self, secs: f64) {
        assert!(secs < self.period as f64);
        let left = self.remaining();
        if left < secs {
            tokio::time::sleep(Duration::from_secs_f64(left + 0.05)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Setup page reading
// ---------------------------------------------------------------------------

/// What the enrollment page shows.
pub struct SetupShown {
    pub secret_text: String,
    pub secret: Vec<u8>,
    pub otpauth_uri: String,
    pub qr_png: Vec<u8>,
}

pub fn read_setup(page: &Page) -> SetupShown {
    assert_eq!(page.status, 200, "setup page: {}", page.describe());
    let secret_text = page
        .text_by_id("totp-secret")
        .unwrap_or_else(|| panic!("no #totp-secret: {}", page.describe()));
    let link = page
        .by_id("otpauth-uri")
        .unwrap_or_else(|| panic!("no #otpauth-uri: {}", page.describe()));
    assert_eq!(link.name, "a", "#otpauth-uri must be a link");
    let otpauth_uri = link.attr("href").unwrap_or_default();
    let img = page
        .tags()
        .into_iter()
        .find(|t| {
            t.name == "img"
                && t.attr("src")
                    .is_some_and(|s| s.starts_with("data:image/png;base64,"))
        })
        .unwrap_or_else(|| panic!("no data:image/png QR image: {}", page.describe()));
    use base64::Engine as _;
    let b64 = img.attr("src").unwrap()["data:image/png;base64,".len()..].to_string();
    let qr_png = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("QR image is not base64");
    SetupShown {
        secret: base32_decode(&secret_text),
        secret_text,
        otpauth_uri,
        qr_png,
    }
}

/// Decodes a PNG and reads the one QR code in it.
pub fn decode_qr(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("QR image is not a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let line = info.line_size;
    let img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let px = &buf[y * line + x * channels..];
        match channels {
            1 | 2 => px[0],
            _ => ((px[0] as u32 + px[1] as u32 + px[2] as u32) / 3) as u8,
        }
    });
    let mut img = img;
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "expected exactly one QR code in the image");
    grids[0].decode().expect("QR code does not decode").1
}

/// The value of query parameter `name` of an URI like `otpauth://totp/…?secret=…`.
pub fn query_value(uri: &str, name: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| dec(v))
    })
}

/// `XXXXX-XXXXX`, upper-case letters and digits.
pub fn is_backup_code_shape(c: &str) -> bool {
    let b = c.as_bytes();
    b.len() == 11
        && b[5] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, ch)| i == 5 || ch.is_ascii_digit() || ch.is_ascii_uppercase())
}

/// Backup codes of a codes page, and the text of its plain-text download.
pub async fn read_backup_codes(b: &Browser, page: &Page) -> (Vec<String>, String) {
    let codes = page.class_texts("backup-code");
    let link = page
        .tags()
        .into_iter()
        .find(|t| t.name == "a" && t.attr("download").is_some())
        .unwrap_or_else(|| {
            panic!(
                "no download link on the backup codes page: {}",
                page.describe()
            )
        });
    let href = link.attr("href").unwrap_or_default();
    let text = if let Some(rest) = href.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').expect("data: URI without a comma");
        assert!(
            meta.starts_with("text/plain"),
            "download is not plain text: {meta}"
        );
        if meta.ends_with(";base64") {
            use base64::Engine as _;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap(),
            )
            .unwrap()
        } else {
            dec(data)
        }
    } else {
        let d = b.get(&href).await;
        assert_eq!(d.status, 200, "download link: {}", d.describe());
        assert!(
            d.header("content-type")
                .unwrap_or_default()
                .starts_with("text/plain"),
            "download is not plain text"
        );
        d.body
    };
    (codes, text)
}

// ---------------------------------------------------------------------------
// Leak scanning
// ---------------------------------------------------------------------------

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// True when `code` (digits) appears in `text` as a number of its own (not inside a
/// longer digit run, a fraction of a second or a time of day).
pub fn contains_numeric_code(text: &str, code: &str) -> bool {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(code) {
        let s = from + i;
        let e = s + code.len();
        let before = if s > 0 { b[s - 1] } else { b' ' };
        let after = if e < b.len() { b[e] } else { b' ' };
        if !before.is_ascii_digit() && before != b'.' && before != b':' && !after.is_ascii_digit() {
            return true;
        }
        from = s + 1;
    }
    false
}

/// WebSocket handshake through the gateway (TLS, HTTP/1.1) with a `Cookie` header.
/// `Ok(status 101 response)` or the refusal's status.
pub async fn ws_handshake(gw: &Gateway, path: &str, origin: &str, cookie: &str) -> Result<(), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(gw.tls_config(&["http/1.1"])));
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut req = format!("wss://{}{}", gw.authority(), path)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed without an HTTP answer: {e}"),
    }
}
