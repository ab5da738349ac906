//! The `rd` redirect target (SPEC §5.3): honoured only when it is a path on this site.
//! Anything doubtful becomes `/`: a wrong refusal costs a click, a wrong pass is an
//! open redirect.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Characters re-encoded when an accepted target is put into a `Location` header.
const LOCATION_UNSAFE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');

/// Returns a safe on-site target for `rd` (already URL-decoded once), or `/`.
pub fn safe_target(rd: &str) -> String {
    if is_on_site(rd) {
        utf8_percent_encode(rd, LOCATION_UNSAFE).to_string()
    } else {
        "/".to_string()
    }
}

/// As [`safe_target`], and also an absolute `https://` URL whose host
/// `is_app_host` accepts (another app of the gateway, SPEC §8): its host exactly
/// as configured (no user part; a port is kept), its path and query under the same
/// checks as an on-site path.
pub fn safe_target_among(rd: &str, is_app_host: impl Fn(&str) -> bool) -> String {
    let Some(rest) = rd
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &rd[8..])
    else {
        return safe_target(rd);
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && is_app_host(&host.to_ascii_lowercase());
    let path = if path.is_empty() { "/" } else { path };
    if host_ok && is_on_site(path) {
        format!(
            "https://{}{}",
            authority.to_ascii_lowercase(),
            utf8_percent_encode(path, LOCATION_UNSAFE)
        )
    } else {
        "/".to_string()
    }
}

/// True when `rd` can only ever resolve to a path on this origin.
pub fn is_on_site(rd: &str) -> bool {
    if rd.len() > 4096 || rd.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let path = rd.split(['?', '#']).next().unwrap_or("");
    // Browsers and servers decode in layers: check every layer of the path.
    let mut layer = path.to_string();
    for _ in 0..4 {
        if !path_layer_ok(&layer) {
            return false;
        }
        let next = percent_decode_str(&layer).decode_utf8_lossy().to_string();
        if next == layer {
            return true;
        }
        layer = next;
    }
    false
}

fn path_layer_ok(p: &str) -> bool {
    let b = p.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/') | Some(b'\\'))
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control() || c.is_whitespace())
        && !p.split('/').next().is_some_and(|s| s.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_on_site_paths() {
        assert_eq!(safe_target("/chart?id=7"), "/chart?id=7");
        assert_eq!(safe_target("/ok?next=//evil"), "/ok?next=//evil");
        assert_eq!(safe_target("/a:b"), "/a:b");
    }

    #[test]
    fn neutralises_off_site_targets() {
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/%2f/evil.example",
            "/%5cevil.example",
            "/%252f%252fevil.example",
            "\t//evil",
            "/\t/evil",
            "evil.example",
            "",
            "/%09/evil",
            "/.\\evil",
        ] {
            assert_eq!(safe_target(bad), "/", "{bad:?} must not be honoured");
        }
    }

    #[test]
    fn absolute_targets_only_to_app_hosts() {
        let apps = |h: &str| h == "lab.clinic.example" || h == "records.clinic.example";
        assert_eq!(
            safe_target_among("https://lab.clinic.example/results?id=3", apps),
            "https://lab.clinic.example/results?id=3"
        );
        assert_eq!(
            safe_target_among("HTTPS://Records.Clinic.Example:8443", apps),
            "https://records.clinic.example:8443/"
        );
        assert_eq!(safe_target_among("/chart", apps), "/chart");
        for bad in [
            "https://evil.example/",
            "http://lab.clinic.example/",
            "https://lab.clinic.example.evil.example/",
            "https://user@lab.clinic.example/",
            "https://lab.clinic.example@evil.example/",
            "https://lab.clinic.example//evil.example",
            "https://lab.clinic.example/%2f/evil.example",
            "https://lab.clinic.example\\evil.example",
            "https://lab.clinic.example:x/",
            "https://",
            "//lab.clinic.example/",
        ] {
            assert_eq!(
                safe_target_among(bad, apps),
                "/",
                "{bad:?} must not be honoured"
            );
        }
    }

    #[test]
    fn hostile_corpus_ends_on_site() {
        let corpus = include_str!("../../tests/data/open-redirects.txt");
        for line in corpus.lines() {
            let once = percent_decode_str(line).decode_utf8_lossy();
            let t = safe_target(&once);
            assert!(
                t.starts_with('/') && !t.starts_with("//") && !t.starts_with("/\\"),
                "{line:?} -> {t:?}"
            );
        }
    }
}
