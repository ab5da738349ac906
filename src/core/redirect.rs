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
