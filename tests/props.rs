//! Property tests for the parsers and codecs that face the network: the short, bounded
//! property pass that runs inside the regular `cargo test`. Each property runs
//! `PROPTEST_CASES` cases (proptest's default: 256), so the whole binary takes a few
//! seconds in a debug build. The long, open-ended search is the cargo-fuzz project in
//! `fuzz/`, over the same functions.
//!
//! What is checked, in the order of the request path:
//! - path normalisation (SPEC §5.1 step 2) and rule matching on its output,
//! - the `rd` redirect target (SPEC §5.3: never off-site),
//! - cookie parsing and the CSRF check,
//! - typed TOTP / backup-code input,
//! - the AES-GCM storage envelope (SPEC §6 "At rest"),
//! - the audit file's chain (SPEC §13): any edit of a chained file is detected.

use http::header::{COOKIE, HeaderMap, HeaderValue};
use proptest::prelude::*;
use vestibule::audit::chain;
use vestibule::audit::verify::{VerifyError, verify_texts};
use vestibule::core::backup_codes;
use vestibule::core::path::{PathError, normalise, without_parameters};
use vestibule::core::policy::{self, Access, Decision, PathCase, PathMatch, Roles, Rule};
use vestibule::core::redirect::{is_on_site, safe_target};
use vestibule::core::store::SecretKind;
use vestibule::core::totp::normalise_input;
use vestibule::http::cookies;
use vestibule::http::csrf::Csrf;
use vestibule::keys::{Keyring, generate_key};

// ------------------------------------------------------------------ generators

/// Path pieces chosen to hit every branch of the normaliser: dot segments in all
/// spellings, encoded separators, controls, unreserved escapes, bad escapes.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2e%2e".to_string()),
        Just(".%2e".to_string()),
        Just("%2f".to_string()),
        Just("%2F".to_string()),
        Just("%5c".to_string()),
        Just("%5C".to_string()),
        Just("%00".to_string()),
        Just("%0a".to_string()),
        Just("%7f".to_string()),
        Just("%252f".to_string()),
        Just("%25".to_string()),
        Just("%".to_string()),
        Just("%4".to_string()),
        Just("%zz".to_string()),
        Just("\\".to_string()),
        Just("%41".to_string()),
        Just("%7e".to_string()),
        Just("%20".to_string()),
        Just("%3a".to_string()),
        Just(";".to_string()),
        Just(";x".to_string()),
        Just(";jsessionid=1".to_string()),
        Just("..;".to_string()),
        Just("..;x".to_string()),
        Just(".;".to_string()),
        Just("%2e%2e;".to_string()),
        Just("%3b".to_string()),
        Just("%3B".to_string()),
        Just("%c0%ae".to_string()),
        Just("%c3%a4".to_string()),
        Just("%e2%82%ac".to_string()),
        Just("%252e".to_string()),
        Just("static".to_string()),
        Just("admin".to_string()),
        Just("Admin".to_string()),
        Just("internal".to_string()),
        "[a-zA-Z0-9_~.-]{1,6}",
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.95),
        prop::collection::vec(path_piece(), 0..16),
    )
        .prop_map(|(abs, parts)| format!("{}{}", if abs { "/" } else { "" }, parts.concat()))
}

/// Paths shaped around the clinic rules: their names (in other cases too), dot
/// segments and empty ones, each with or without `;parameters`.
fn clinic_path() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("static"),
        Just("admin"),
        Just("internal"),
        Just("other"),
        Just("Admin"),
        Just("INTERNAL"),
        Just("x"),
        Just(".."),
        Just("."),
        Just(""),
        Just("%2e%2e"),
    ];
    let params =
        prop_oneof![3 => Just(""), 1 => Just(";"), 1 => Just(";x"), 1 => Just(";jsessionid=1")];
    prop::collection::vec((name, params), 1..6).prop_map(|segs| {
        let segs: Vec<String> = segs.iter().map(|(n, p)| format!("{n}{p}")).collect();
        format!("/{}", segs.join("/"))
    })
}

/// Plain segments only (no escapes), for the reference model.
fn plain_segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            3 => "[a-z]{1,3}".prop_map(String::from),
            1 => Just(String::new()),
            1 => Just(".".to_string()),
            2 => Just("..".to_string()),
        ],
        0..12,
    )
}

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

fn is_unreserved(b: u8) -> bool {
    UNRESERVED.contains(&b)
}

/// Every well-formed `%XX` escape in `s`, decoded.
fn escapes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'%' && i + 2 < b.len())
        .filter_map(|i| {
            std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

// ------------------------------------------------------------------ path normalisation

/// The normaliser's answer, owned (it borrows the input when that is already normal).
fn norm(raw: &str) -> Result<String, PathError> {
    normalise(raw).map(|p| p.into_owned())
}

proptest! {
    #[test]
    fn normalise_never_panics_on_any_string(s in any::<String>()) {
        let _ = normalise(&s);
    }

    #[test]
    fn normalise_never_panics_on_any_bytes_as_latin1(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let s: String = b.iter().map(|&c| c as char).collect();
        let _ = normalise(&s);
        let _ = normalise(&format!("/{s}"));
    }

    #[test]
    fn normalised_paths_have_the_safe_shape_and_are_fixed_points(raw in raw_path()) {
        if let Ok(out) = normalise(&raw) {
            prop_assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
            prop_assert!(!out.contains("//"), "{raw:?} -> {out:?}");
            prop_assert!(!out.contains('\\'), "{raw:?} -> {out:?}");
            prop_assert!(out.bytes().all(|b| b > 0x20 && b != 0x7f && b.is_ascii()), "{raw:?} -> {out:?}");
            for seg in out.split('/') {
                prop_assert!(seg != "." && seg != "..", "dot segment left in {raw:?} -> {out:?}");
                // Nor one hidden behind parameters, which a servlet container resolves.
                let name = seg.split(';').next().unwrap_or(seg);
                prop_assert!(name != "." && name != "..", "`;`-hidden dot segment left in {raw:?} -> {out:?}");
            }
            let lower = out.to_ascii_lowercase();
            for bad in ["%2f", "%5c", "%00", "%3b"] {
                prop_assert!(!lower.contains(bad), "{bad} left in {raw:?} -> {out:?}");
            }
            // Escapes that remain are of reserved characters only, upper-case, never
            // of controls (an upstream that decodes once more sees no new structure).
            for v in escapes(&out) {
                prop_assert!(!is_unreserved(v), "escape of unreserved {v:#x} left in {out:?}");
                prop_assert!(v >= 0x20 && v != 0x7f && v != b'/' && v != b'\\', "{out:?}");
            }
            prop_assert_eq!(norm(&out), Ok(out.to_string()), "not idempotent for {:?}", raw);
            // The servlet reading is itself normal, has no parameters left, and is
            // its own servlet reading.
            let bare = without_parameters(&out);
            prop_assert!(!bare.contains(';'), "{out:?} -> {bare:?}");
            prop_assert_eq!(norm(&bare), Ok(bare.to_string()), "{:?} -> {:?}", out, bare);
            prop_assert_eq!(without_parameters(&bare), bare.clone());
        }
    }

    #[test]
    fn normalise_matches_a_reference_resolver(segs in plain_segments()) {
        let raw = format!("/{}", segs.join("/"));
        // Reference: RFC 3986 §5.2.4-style stack, empty segments collapsed, climbing
        // above the root refused rather than clamped.
        let mut stack: Vec<&str> = vec![];
        let mut above = false;
        for s in &segs {
            match s.as_str() {
                "" | "." => {}
                ".." => if stack.pop().is_none() { above = true; break },
                s => stack.push(s),
            }
        }
        let got = norm(&raw);
        if above {
            prop_assert_eq!(got, Err(PathError::AboveRoot), "{:?}", raw);
        } else {
            let trailing = segs.last().is_some_and(|l| matches!(l.as_str(), "" | "." | ".."));
            let mut want = String::new();
            for s in &stack {
                want.push('/');
                want.push_str(s);
            }
            if want.is_empty() || trailing {
                want.push('/');
            }
            prop_assert_eq!(got, Ok(want), "{:?}", raw);
        }
    }

    #[test]
    fn encoding_unreserved_characters_changes_nothing(segs in plain_segments(), mask in any::<u64>()) {
        // %XX of an unreserved character is the same path (RFC 3986 §6.2.2.2), so an
        // encoded dot segment must climb exactly like a plain one.
        let raw = format!("/{}", segs.join("/"));
        let mut enc = String::new();
        for (i, c) in raw.chars().enumerate() {
            if c != '/' && mask & (1 << (i % 64)) != 0 {
                enc.push_str(&format!("%{:02X}", c as u32));
            } else {
                enc.push(c);
            }
        }
        prop_assert_eq!(norm(&raw), norm(&enc), "{:?} vs {:?}", raw, enc);
    }

    #[test]
    fn encoded_separators_controls_and_parameterised_dots_are_always_refused(
        pre in "[a-z/]{0,8}", post in "[a-z/]{0,8}",
        bad in prop_oneof![Just("%2f"), Just("%2F"), Just("%5c"), Just("%5C"), Just("%3b"), Just("%3B"), Just("%00"), Just("%0d"), Just("%0A"), Just("%1f"), Just("%7F"), Just("\\"), Just("\u{0}"), Just("\t"), Just("/..;"), Just("/.;x"), Just("/%2e%2E;")],
    ) {
        let raw = format!("/{pre}{bad}{post}");
        prop_assert!(normalise(&raw).is_err(), "{raw:?} accepted as {:?}", normalise(&raw));
    }
}

// ------------------------------------------------------------------ rule matching

fn rule_strategy() -> impl Strategy<Value = Rule> {
    (
        prop_oneof![
            Just("/static/"),
            Just("/static"),
            Just("/admin"),
            Just("/admin/"),
            Just("/"),
            Just("/api/v1/"),
            Just("/a"),
        ],
        any::<bool>(),
        prop::option::of(prop::sample::subsequence(
            vec!["GET", "HEAD", "POST", "DELETE"],
            1..3,
        )),
        prop_oneof![
            Just(Access::Bypass),
            Just(Access::Authenticated),
            Just(Access::Deny)
        ],
    )
        .prop_map(|(p, exact, methods, access)| Rule {
            matcher: if exact {
                PathMatch::Exact(p.to_string())
            } else {
                PathMatch::Prefix(p.to_string())
            },
            methods: methods.map(|ms| ms.into_iter().map(String::from).collect()),
            access,
            roles: vec![],
            max_factor_age_ms: None,
        })
}

fn reference_decide<'a>(rules: &'a [Rule], method: &str, path: &str) -> Decision<'a> {
    for r in rules {
        let path_ok = match &r.matcher {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        };
        let method_ok = match &r.methods {
            None => true,
            Some(ms) => ms.iter().any(|m| m == method),
        };
        if path_ok && method_ok {
            return match r.access {
                Access::Bypass => Decision::Bypass,
                Access::Deny => Decision::Deny,
                Access::Authenticated => Decision::Authenticated {
                    roles: Roles::one(&r.roles),
                    max_factor_age_ms: r.max_factor_age_ms,
                },
            };
        }
    }
    Decision::Authenticated {
        roles: Roles::ANY,
        max_factor_age_ms: None,
    }
}

/// Who may pass a decision: no session, or a complete session with these roles.
fn allows(d: Decision<'_>, client: Option<&[String]>) -> bool {
    match d {
        Decision::Bypass => true,
        Decision::Deny => false,
        Decision::Authenticated { roles, .. } => client.is_some_and(|have| roles.allow(have)),
    }
}

/// The clients of the issue's report, and one who may see `/admin/`.
fn clients() -> Vec<Option<Vec<String>>> {
    vec![
        None,
        Some(vec!["patient".to_string()]),
        Some(vec!["doctor".to_string()]),
    ]
}

/// A `/static/` bypass, an `/admin/` rule for doctors and an `/internal/` deny.
fn clinic_rules() -> Vec<Rule> {
    let rule = |p: &str, access, roles: &[&str]| Rule {
        matcher: PathMatch::Prefix(p.to_string()),
        methods: None,
        access,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        max_factor_age_ms: None,
    };
    vec![
        rule("/static/", Access::Bypass, &[]),
        rule("/admin/", Access::Authenticated, &["doctor"]),
        rule("/internal/", Access::Deny, &[]),
    ]
}

/// Every `%XX` decoded (as the upstream's router sees the path), lossily.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let h = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], h.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resolves `.`/`..` and empty segments the way a file server would (clamped at
/// the root), keeping a trailing slash.
fn resolve_dots(path: &str) -> String {
    let mut stack: Vec<&str> = vec![];
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for s in &segs {
        match *s {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = String::new();
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || segs.last().is_some_and(|l| matches!(*l, "" | "." | "..")) {
        out.push('/');
    }
    out
}

/// How Tomcat reads a request path (CoyoteAdapter): `;parameters` cut from each
/// segment of the raw path, then decoded, then `//` and dot segments resolved.
fn servlet_reading(forwarded: &str) -> String {
    let cut: Vec<&str> = forwarded
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(seg))
        .collect();
    resolve_dots(&percent_decode(&cut.join("/")))
}

/// How an ASGI app serving files reads it: decoded, `;` kept, dots resolved.
fn literal_reading(forwarded: &str) -> String {
    resolve_dots(&percent_decode(forwarded))
}

proptest! {
    #[test]
    fn first_matching_rule_decides_both_readings_of_the_normalised_path(
        rules in prop::collection::vec(rule_strategy(), 0..6),
        raw in prop_oneof![raw_path(), clinic_path()],
        method in prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("PUT"), Just("DELETE"), Just("get")],
    ) {
        if let Ok(path) = normalise(&raw) {
            let got = policy::decide(&rules, PathCase::Sensitive, method, &path);
            let literal = reference_decide(&rules, method, &path);
            let bare = reference_decide(&rules, method, &without_parameters(&path));
            if !path.contains(';') {
                prop_assert_eq!(got, literal);
            }
            // The stricter of the two readings: whoever passes `got` passes both.
            for c in clients() {
                let c = c.as_deref();
                prop_assert_eq!(allows(got, c), allows(literal, c) && allows(bare, c), "{:?} {:?}", raw, c);
            }
            // The upstream may normalise again; it must land under the same rule.
            let again = normalise(&path).unwrap();
            prop_assert_eq!(policy::decide(&rules, PathCase::Sensitive, method, &again), got);
        }
    }

    #[test]
    fn no_upstream_reading_of_the_forwarded_path_reaches_more_than_the_rules_allow(
        raw in prop_oneof![raw_path(), clinic_path()],
        insensitive in any::<bool>(),
    ) {
        // The forwarded path is the normalised one; whichever way Tomcat or an ASGI
        // app reads it, a client the gateway lets through is one the rules let
        // through under that reading (lower-cased too, for an IIS-like upstream when
        // the gateway is told to match case-insensitively).
        let rules = clinic_rules();
        let case = if insensitive { PathCase::Insensitive } else { PathCase::Sensitive };
        if let Ok(path) = normalise(&raw) {
            let got = policy::decide(&rules, case, "GET", &path);
            let mut readings = vec![servlet_reading(&path), literal_reading(&path)];
            if insensitive {
                readings.extend(readings.clone().iter().map(|r| r.to_ascii_lowercase()));
            }
            for reading in &readings {
                let theirs = reference_decide(&rules, "GET", reading);
                for c in clients() {
                    let c = c.as_deref();
                    prop_assert!(
                        !allows(got, c) || allows(theirs, c),
                        "{raw:?} forwarded as {path:?} passes {c:?}, but the upstream reads {reading:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_bypass_prefix_cannot_be_left_by_dot_segments(tail in prop::collection::vec(path_piece(), 0..10)) {
        // Only `/static/` bypasses; whatever follows it, if the result is a bypass, the
        // normalised (forwarded) path really is under `/static/`, read either way.
        let rules = vec![Rule { matcher: PathMatch::Prefix("/static/".into()), methods: None, access: Access::Bypass, roles: vec![], max_factor_age_ms: None }];
        let raw = format!("/static/{}", tail.concat());
        if let Ok(path) = normalise(&raw) {
            let d = policy::decide(&rules, PathCase::Sensitive, "GET", &path);
            let under = path.starts_with("/static/") && servlet_reading(&path).starts_with("/static/");
            prop_assert_eq!(d == Decision::Bypass, under, "{:?} -> {:?}", raw, path);
        }
    }

    #[test]
    fn roles_allow_needs_one_shared_role(
        req in prop::collection::vec("[a-c]", 0..3), have in prop::collection::vec("[a-c]", 0..3),
    ) {
        let want = req.is_empty() || req.iter().any(|r| have.contains(r));
        prop_assert_eq!(policy::roles_allow(&req, &have), want);
    }
}

// ------------------------------------------------------------------ rd validation

fn hostile_rd() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("/"),
            Just("//"),
            Just("\\"),
            Just("/\\"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%252f"),
            Just("%25252f"),
            Just("evil.example"),
            Just("@"),
            Just(":"),
            Just("https:"),
            Just("javascript:"),
            Just("?"),
            Just("#"),
            Just("\t"),
            Just("\n"),
            Just("\r"),
            Just(" "),
            Just("%09"),
            Just("%0a"),
            Just("%00"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("\u{3002}"),
            Just("\u{ff0f}"),
            Just("\u{2044}"),
            Just("a"),
            Just("chart"),
            Just("%"),
            Just("%%"),
            Just("\u{0}"),
            Just("\u{85}"),
            Just("\u{a0}"),
        ],
        0..10,
    )
    .prop_map(|v| v.concat())
}

/// Checks what a browser would do with `Location: out` sent from https://gw.example.
fn assert_on_site(input: &str, out: &str) -> Result<(), TestCaseError> {
    prop_assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    prop_assert!(
        !out.starts_with("//") && !out.starts_with("/\\"),
        "{input:?} -> {out:?}"
    );
    prop_assert!(
        !out.chars().any(|c| c.is_control() || c.is_whitespace()),
        "{input:?} -> {out:?}"
    );
    prop_assert!(
        HeaderValue::from_str(out).is_ok(),
        "not a header value: {out:?}"
    );
    let base = url::Url::parse("https://gw.example/_vestibule/login?rd=x").unwrap();
    let joined = base.join(out);
    prop_assert!(
        joined.is_ok(),
        "{input:?} -> {out:?} does not resolve: {joined:?}"
    );
    let j = joined.unwrap();
    prop_assert_eq!(j.scheme(), "https", "{:?} -> {:?} -> {}", input, out, j);
    prop_assert_eq!(
        j.host_str(),
        Some("gw.example"),
        "{:?} -> {:?} -> {}",
        input,
        out,
        j
    );
    prop_assert_eq!(j.port(), None);
    prop_assert!(
        j.username().is_empty() && j.password().is_none(),
        "{input:?} -> {j}"
    );
    // A client or server that percent-decodes the target again (in layers) must
    // still resolve it on this site. (Dot segments are not checked here: "/.//x"
    // resolves to https://gw.example//x, which is on-site; see docs/security.md.)
    let mut layer = out.split(['?', '#']).next().unwrap_or("").to_string();
    for _ in 0..3 {
        layer = percent_encoding::percent_decode_str(&layer)
            .decode_utf8_lossy()
            .into_owned();
        prop_assert!(
            !layer.starts_with("//") && !layer.starts_with("/\\"),
            "{input:?} -> decoded layer {layer:?}"
        );
        if let Ok(j) = base.join(&layer) {
            prop_assert_eq!(
                j.host_str(),
                Some("gw.example"),
                "{:?} -> decoded layer {:?} -> {}",
                input,
                layer,
                j
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn safe_target_of_any_string_stays_on_site(s in any::<String>()) {
        let out = safe_target(&s);
        assert_on_site(&s, &out)?;
    }

    #[test]
    fn safe_target_of_hostile_mixtures_stays_on_site(s in hostile_rd()) {
        let out = safe_target(&s);
        assert_on_site(&s, &out)?;
        let slashed = format!("/{s}");
        assert_on_site(&slashed, &safe_target(&slashed))?;
    }

    #[test]
    fn ordinary_paths_are_kept(segs in prop::collection::vec("[a-zA-Z0-9_.~-]{1,8}", 1..6), q in prop::option::of("[a-z0-9=&]{0,12}")) {
        let mut rd = format!("/{}", segs.join("/"));
        if let Some(q) = q {
            rd.push('?');
            rd.push_str(&q);
        }
        prop_assert!(is_on_site(&rd), "{rd:?}");
        prop_assert_eq!(safe_target(&rd), rd);
    }
}

// ------------------------------------------------------------------ cookies and CSRF

fn cookie_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("vestibule_session".to_string()),
        Just("__Host-vestibule_session".to_string()),
        Just("vestibule_sessionx".to_string()),
        Just("xvestibule_session".to_string()),
        Just("__Host-vestibule_csrf".to_string()),
        "[A-Za-z0-9_-]{1,10}",
    ]
}

fn cookie_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_=-]{0,20}",
        Just("vestibule_session=evil".to_string()),
        Just("\"quoted\"".to_string()),
    ]
}

fn headers_from(lines: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        if let Ok(v) = HeaderValue::from_str(l) {
            h.append(COOKIE, v);
        }
    }
    h
}

proptest! {
    #[test]
    fn cookie_get_never_panics(lines in prop::collection::vec(any::<Vec<u8>>(), 0..4), name in any::<String>()) {
        let mut h = HeaderMap::new();
        for l in &lines {
            if let Ok(v) = HeaderValue::from_bytes(l) {
                h.append(COOKIE, v);
            }
        }
        if let Some(v) = cookies::get(&h, &name) {
            prop_assert!(!v.contains(';'));
        }
    }

    #[test]
    fn cookie_get_finds_exactly_the_first_pair_with_that_name(
        pairs in prop::collection::vec((cookie_name(), cookie_value()), 0..8),
        split in 1usize..4,
        spaces in any::<bool>(),
        wanted in cookie_name(),
    ) {
        // Spread the pairs over `split` Cookie headers (HTTP/2 sends one per cookie).
        let sep = if spaces { "; " } else { ";" };
        let per = pairs.len().div_ceil(split).max(1);
        let lines: Vec<String> = pairs
            .chunks(per)
            .map(|c| c.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(sep))
            .collect();
        let h = headers_from(&lines);
        let want = pairs.iter().find(|(k, _)| *k == wanted).map(|(_, v)| v.trim_matches('"').to_string());
        prop_assert_eq!(cookies::get(&h, &wanted).map(str::to_string), want, "{:?}", lines);
    }

    #[test]
    fn csrf_accepts_only_the_token_issued_for_this_browser(
        junk_token in any::<String>(), junk_cookie in "[ -~]{0,60}", tls in any::<bool>(),
    ) {
        let csrf = Csrf::new([7; 32], tls);
        let (token, set) = csrf.issue(&HeaderMap::new());
        let set = set.expect("a new browser gets a cookie");
        let pair = set.split(';').next().unwrap().to_string();
        let mine = headers_from(std::slice::from_ref(&pair));
        prop_assert!(csrf.verify(&mine, Some(&token)));
        // Re-issuing for the same browser gives the same token and no new cookie.
        let (again, none) = csrf.issue(&mine);
        prop_assert_eq!(&again, &token);
        prop_assert!(none.is_none());
        if junk_token != token {
            prop_assert!(!csrf.verify(&mine, Some(&junk_token)));
        }
        prop_assert!(!csrf.verify(&mine, None));
        // Any other cookie value: the token does not verify, and nothing panics.
        let name = csrf.cookie_name().to_string();
        let other = headers_from(&[format!("{name}={junk_cookie}")]);
        if !pair.ends_with(&format!("={}", junk_cookie.trim())) {
            prop_assert!(!csrf.verify(&other, Some(&token)));
        }
        let _ = csrf.verify(&other, Some(&junk_token));
        // The other scheme's cookie name does not count.
        let other_scheme = Csrf::new([7; 32], !tls);
        prop_assert!(!other_scheme.verify(&mine, Some(&token)));
    }

    #[test]
    fn form_decoding_never_panics_and_feeds_the_csrf_check(body in any::<Vec<u8>>()) {
        let csrf = Csrf::new([3; 32], true);
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
            let map: std::collections::HashMap<String, String> = pairs.into_iter().collect();
            prop_assert!(!csrf.verify(&HeaderMap::new(), map.get("csrf_token").map(String::as_str)));
        }
    }
}

// ------------------------------------------------------------------ code input

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

proptest! {
    #[test]
    fn totp_input_loses_only_spaces_and_dashes(s in any::<String>()) {
        let n = normalise_input(&s);
        prop_assert!(!n.chars().any(|c| c.is_whitespace() || c == '-'));
        prop_assert_eq!(normalise_input(&n), n.clone());
        let kept: String = s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        prop_assert_eq!(n, kept);
    }

    #[test]
    fn typed_totp_codes_with_separators_normalise_to_the_digits(digits in "[0-9]{6,8}", seps in prop::collection::vec(prop_oneof![Just(""), Just(" "), Just("-"), Just("\t"), Just("\u{a0}")], 9)) {
        let mut typed = String::new();
        for (i, c) in digits.chars().enumerate() {
            typed.push_str(seps[i]);
            typed.push(c);
        }
        typed.push_str(seps[8]);
        prop_assert_eq!(normalise_input(&typed), digits);
    }

    #[test]
    fn backup_code_normalisation_is_canonical(s in any::<String>()) {
        if let Some(n) = backup_codes::normalise(&s) {
            prop_assert_eq!(n.len(), 10);
            prop_assert!(n.bytes().all(|b| CROCKFORD.contains(&b)), "{n:?}");
            prop_assert_eq!(backup_codes::normalise(&n), Some(n.clone()));
        }
    }

    #[test]
    fn backup_codes_read_back_whatever_the_typing(code in "[0-9A-HJKMNP-TV-Z]{10}", lower in any::<u16>(), dash in 0usize..11, pad in prop_oneof![Just(""), Just(" "), Just("  ")]) {
        let mut typed: String = code
            .chars()
            .enumerate()
            .map(|(i, c)| if lower & (1 << i) != 0 { c.to_ascii_lowercase() } else { c })
            .collect();
        typed.insert(dash, '-');
        let typed = format!("{pad}{typed}{pad}");
        prop_assert_eq!(backup_codes::normalise(&typed), Some(code.clone()));
        // Look-alike letters read as digits.
        let look = code.replace('0', "O").replace('1', "l");
        prop_assert_eq!(backup_codes::normalise(&look), Some(code));
    }

    #[test]
    fn generated_backup_codes_have_the_contract_shape(n in 1usize..20) {
        for c in backup_codes::generate(n) {
            prop_assert_eq!(c.len(), 11);
            prop_assert_eq!(&c[5..6], "-");
            prop_assert_eq!(backup_codes::normalise(&c), Some(c.replace('-', "")));
        }
    }
}

// ------------------------------------------------------------------ storage envelope

fn ring() -> Keyring {
    Keyring::parse(&generate_key()).unwrap()
}

proptest! {
    #[test]
    fn envelopes_round_trip_for_any_bytes_and_user(plain in prop::collection::vec(any::<u8>(), 0..256), user in any::<String>()) {
        let k = ring();
        let env = k.seal(&user, SecretKind::Active, &plain);
        prop_assert_eq!(env.len(), 1 + 8 + 12 + plain.len() + 16);
        let opened = k.open(&user, SecretKind::Active, &env).unwrap();
        prop_assert_eq!(opened.as_slice(), plain.as_slice());
        prop_assert!(Keyring::envelope_key_id(&env).is_some());
        prop_assert!(k.is_primary(&env));
    }

    #[test]
    fn any_single_bit_flip_fails_to_open(plain in prop::collection::vec(any::<u8>(), 0..64), user in "[a-z.]{0,12}", pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = ring();
        let mut env = k.seal(&user, SecretKind::Active, &plain);
        let i = pos.index(env.len());
        env[i] ^= 1 << bit;
        prop_assert!(k.open(&user, SecretKind::Active, &env).is_err(), "flip of bit {bit} at byte {i} of {} still opened", env.len());
    }

    #[test]
    fn another_user_or_a_truncated_envelope_fails(plain in prop::collection::vec(any::<u8>(), 0..64), user in any::<String>(), other in any::<String>(), cut in any::<prop::sample::Index>()) {
        let k = ring();
        let env = k.seal(&user, SecretKind::Active, &plain);
        if other != user {
            prop_assert!(k.open(&other, SecretKind::Active, &env).is_err());
        }
        let n = cut.index(env.len());
        prop_assert!(k.open(&user, SecretKind::Active, &env[..n]).is_err());
    }

    #[test]
    fn opening_arbitrary_bytes_never_panics(env in prop::collection::vec(any::<u8>(), 0..80), user in any::<String>()) {
        let k = ring();
        prop_assert!(k.open(&user, SecretKind::Active, &env).is_err());
        let _ = Keyring::envelope_key_id(&env);
        let _ = k.is_primary(&env);
    }
}

#[test]
fn rotated_keyring_opens_old_envelopes_and_dropping_the_old_key_does_not() {
    let old = generate_key();
    let new = generate_key();
    let before = Keyring::parse(&old).unwrap();
    let env = before.seal("dr.grey", SecretKind::Active, b"JBSWY3DPEHPK3PXP");
    let rotated = Keyring::parse(&format!("{new}\n{old}\n")).unwrap();
    assert_eq!(
        rotated
            .open("dr.grey", SecretKind::Active, &env)
            .unwrap()
            .as_slice(),
        b"JBSWY3DPEHPK3PXP"
    );
    assert!(!rotated.is_primary(&env));
    let resealed = rotated.seal("dr.grey", SecretKind::Active, b"JBSWY3DPEHPK3PXP");
    assert!(rotated.is_primary(&resealed));
    let dropped = Keyring::parse(&new).unwrap();
    assert!(dropped.open("dr.grey", SecretKind::Active, &env).is_err());
    assert_eq!(
        dropped
            .open("dr.grey", SecretKind::Active, &resealed)
            .unwrap()
            .as_slice(),
        b"JBSWY3DPEHPK3PXP"
    );
}

// ------------------------------------------------------------------ audit chain

const AUDIT_KEY: [u8; 32] = [42; 32];

/// A chained audit file of `users.len()` lines, as the gateway writes it.
fn chained_file(users: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = String::new();
    for (i, u) in users.iter().enumerate() {
        let head = format!(
            r#"{{"seq":{},"instance":"gw1:8443","ts":"2026-05-01T08:00:00.000Z","event":"login.failure","user":{}"#,
            i + 1,
            serde_json::Value::from(u.as_str())
        );
        let (line, c) = chain::seal(&AUDIT_KEY, prev.as_bytes(), &head);
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        prev = c;
    }
    out
}

/// One edit an attacker (or an accident) could make to the file.
#[derive(Debug, Clone)]
enum Edit {
    /// XOR one byte (anywhere, newlines included) with a non-zero value.
    Flip(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    /// Insert a copy of an existing line.
    Copy(prop::sample::Index, prop::sample::Index),
    /// Insert a line sealed under another key, with the seq it would need.
    Forge(prop::sample::Index, String),
    Swap(prop::sample::Index, prop::sample::Index),
    /// Cut the file at a byte offset.
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    use prop::sample::Index;
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Copy(a, b)),
        (any::<Index>(), "[a-z]{1,8}").prop_map(|(a, u)| Edit::Forge(a, u)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &[u8], e: &Edit) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let n = lines.len();
    let join = |ls: &[Vec<u8>]| {
        let mut out = Vec::new();
        for l in ls {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    };
    match e {
        Edit::Flip(i, x) => {
            let mut t = text.to_vec();
            let at = i.index(t.len());
            t[at] ^= x;
            t
        }
        Edit::Delete(i) => {
            lines.remove(i.index(n));
            join(&lines)
        }
        Edit::Copy(at, from) => {
            let copy = lines[from.index(n)].clone();
            lines.insert(at.index(n + 1), copy);
            join(&lines)
        }
        Edit::Forge(at, user) => {
            let at = at.index(n + 1);
            let prev = if at > 0 {
                chain::parse(&lines[at - 1])
                    .map(|l| l.chain.to_vec())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let head = format!(
                r#"{{"seq":{},"instance":"gw1:8443","event":"login.success","user":{}"#,
                at + 1,
                serde_json::Value::from(user.as_str())
            );
            let (line, _) = chain::seal(&[7; 32], &prev, &head);
            lines.insert(at, line.into_bytes());
            join(&lines)
        }
        Edit::Swap(a, b) => {
            let (a, b) = (a.index(n), b.index(n));
            lines.swap(a, if a == b { (a + 1) % n } else { b });
            join(&lines)
        }
        Edit::Truncate(i) => text[..i.index(text.len())].to_vec(),
    }
}

/// 1-based number of the first line (with its newline) where `edited` differs from
/// `original`.
fn first_difference(original: &[u8], edited: &[u8]) -> usize {
    let a: Vec<&[u8]> = original.split_inclusive(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = edited.split_inclusive(|&b| b == b'\n').collect();
    a.iter().zip(&b).take_while(|(x, y)| x == y).count() + 1
}

proptest! {
    #[test]
    fn any_edit_of_a_chained_audit_file_is_detected(
        users in prop::collection::vec("[a-z]{1,8}", 2..10),
        e in edit(),
    ) {
        let text = chained_file(&users);
        let keys = [AUDIT_KEY];
        let intact = verify_texts(&keys, &[("f", &text)]).unwrap();
        prop_assert_eq!(intact.events, users.len() as u64);
        let edited = apply(&text, &e);
        prop_assume!(edited != text);
        let result = verify_texts(&keys, &[("f", &edited)]);
        let d = first_difference(&text, &edited);
        // Whole lines cut from the end leave a shorter, intact chain: only the last
        // chain value (which `audit verify` prints for the auditor to keep) shows it.
        let cut_at_line_end = text.starts_with(&edited) && edited.last().is_none_or(|&b| b == b'\n');
        if d > 1 && !cut_at_line_end {
            // The first line that differs is the one named.
            match result {
                Err(VerifyError::Broken(b)) => prop_assert_eq!(b.line as usize, d, "{} after {:?}", b, e),
                other => prop_assert!(false, "{:?} not detected: {:?}", e, other),
            }
        } else {
            // An edit of line 1 or of the end: the chain breaks, or what verify reports
            // (first seq and its note, count, last chain) is not what it was.
            if let Ok(s) = result {
                prop_assert_ne!(s, intact, "{:?} went unseen", e);
            }
        }
    }
}
