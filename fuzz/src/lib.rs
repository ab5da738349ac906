//! The checks behind every fuzz target, kept here so the libFuzzer targets
//! (`fuzz_targets/*.rs`) and the libFuzzer-free `smoke` runner run exactly the same
//! code. Each function must never panic on any input; an assertion failure is a
//! finding (a product bug), not a fuzzer problem.

use http::header::{COOKIE, HeaderMap, HeaderValue};
use vestibule::core::backup_codes;
use vestibule::core::path::normalise;
use vestibule::core::redirect::safe_target;
use vestibule::core::totp::normalise_input;
use vestibule::http::cookies;
use vestibule::http::csrf::Csrf;
use vestibule::store::crypto::Keyring;

/// Every target by name, for the smoke runner.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("path_normalise", path_normalise),
    ("redirect_target", redirect_target),
    ("cookie_header", cookie_header),
    ("form_decode", form_decode),
    ("code_input", code_input),
    ("envelope_open", envelope_open),
];

/// SPEC §5.1 step 2: whatever the raw path, the result is refused or safe and stable.
pub fn path_normalise(data: &[u8]) {
    // The request line is bytes; hyper hands the path over as a str of visible ASCII,
    // but the normaliser must not rely on that.
    let s = String::from_utf8_lossy(data);
    if let Ok(out) = normalise(&s) {
        assert!(out.starts_with('/'), "{s:?} -> {out:?}");
        assert!(!out.contains("//"), "{s:?} -> {out:?}");
        assert!(!out.contains('\\'), "{s:?} -> {out:?}");
        // A raw space is not a control: hyper refuses it in a request target before this
        // runs, and the pipeline's PathAndQuery check would refuse it after.
        assert!(
            out.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{s:?} -> {out:?}"
        );
        // No dot segment, not even one hidden behind `;parameters` (servlet reading).
        assert!(
            out.split('/')
                .map(|seg| seg.split(';').next().unwrap_or(seg))
                .all(|name| name != "." && name != ".."),
            "{s:?} -> {out:?}"
        );
        let lower = out.to_ascii_lowercase();
        for bad in ["%2f", "%5c", "%00", "%3b"] {
            assert!(!lower.contains(bad), "{s:?} -> {out:?}");
        }
        assert_eq!(
            normalise(&out).as_deref(),
            Ok(&*out),
            "not idempotent: {s:?}"
        );
    }
}

/// SPEC §5.3: `rd` always ends on this site.
pub fn redirect_target(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let out = safe_target(&s);
    assert!(out.starts_with('/'), "{s:?} -> {out:?}");
    assert!(
        !out.starts_with("//") && !out.starts_with("/\\"),
        "{s:?} -> {out:?}"
    );
    assert!(
        !out.chars().any(|c| c.is_control() || c.is_whitespace()),
        "{s:?} -> {out:?}"
    );
    assert!(
        HeaderValue::from_str(&out).is_ok(),
        "{s:?} -> {out:?} is no header value"
    );
    // Decoded layers of the path must never become scheme-relative.
    let mut layer = out.split(['?', '#']).next().unwrap_or("").to_string();
    for _ in 0..3 {
        layer = percent_decode(&layer);
        assert!(
            !layer.starts_with("//") && !layer.starts_with("/\\"),
            "{s:?} -> {out:?} decodes to {layer:?}"
        );
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const COOKIE_NAMES: &[&str] = &[
    "vestibule_session",
    "__Host-vestibule_session",
    "__Host-vestibule_csrf",
    "a",
    "",
];

/// Cookie headers as sent by any client: one or more `Cookie` lines (split at `\n`).
pub fn cookie_header(data: &[u8]) {
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(COOKIE, v);
        }
    }
    for name in COOKIE_NAMES {
        if let Some(v) = cookies::get(&h, name) {
            assert!(!v.contains(';'), "{v:?}");
        }
    }
    let csrf = Csrf::new([5; 32], true);
    let (token, set) = csrf.issue(&h);
    assert!(
        csrf.verify(&h, Some(&token)) || set.is_some(),
        "issued token does not verify with the browser's cookie"
    );
    assert!(!csrf.verify(&h, Some("")));
}

/// A posted form body, then the CSRF check that every form goes through.
pub fn form_decode(data: &[u8]) {
    // First line (up to '\n'): the Cookie header; the rest: the form body.
    let (cookie, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else {
        return;
    };
    let map: std::collections::HashMap<String, String> = pairs.into_iter().collect();
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        h.insert(COOKIE, v);
    }
    let csrf = Csrf::new([9; 32], true);
    let token = map.get("csrf_token").map(String::as_str);
    let ok = csrf.verify(&h, token);
    if ok {
        // Only possible when the token is the HMAC of the browser's cookie.
        let (expected, set) = csrf.issue(&h);
        assert!(
            set.is_none() && Some(expected.as_str()) == token,
            "a forged CSRF token verified"
        );
    }
}

/// What a person types into the code field.
pub fn code_input(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let n = normalise_input(&s);
    assert!(!n.chars().any(|c| c.is_whitespace() || c == '-'));
    assert_eq!(normalise_input(&n), n);
    if let Some(b) = backup_codes::normalise(&s) {
        assert_eq!(b.len(), 10);
        assert!(
            b.bytes()
                .all(|c| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&c)),
            "{b:?}"
        );
        assert_eq!(backup_codes::normalise(&b).as_deref(), Some(b.as_str()));
    }
}

fn keyring() -> &'static Keyring {
    static RING: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
    // Two fixed keys (primary first), so rotation lookups are exercised too.
    RING.get_or_init(|| {
        Keyring::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nHx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=\n").expect("fixed keys")
    })
}

/// A stored envelope from a tampered database: must fail to open, never panic.
pub fn envelope_open(data: &[u8]) {
    let k = keyring();
    // First byte: length of the user name taken from the front.
    let (user, env) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize).min(rest.len())),
        None => (&data[..0], data),
    };
    let user = String::from_utf8_lossy(user);
    assert!(k.open(&user, env).is_err(), "a forged envelope opened");
    let _ = Keyring::envelope_key_id(env);
    let _ = k.is_primary(env);
    // A real envelope for this user and plaintext opens, and any change to it fails.
    let sealed = k.seal(&user, env);
    assert_eq!(
        k.open(&user, &sealed).expect("own envelope").as_slice(),
        env
    );
    if !env.is_empty() {
        let mut bad = sealed.clone();
        let i = env[0] as usize % bad.len();
        bad[i] ^= 1 << (env.len() % 8);
        assert!(
            k.open(&user, &bad).is_err(),
            "flipped bit at {i} still opened"
        );
    }
}
