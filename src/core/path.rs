//! Request-path normalisation (SPEC §5.1 step 2): the rules and the upstream must see
//! the same path, so the path is normalised once and the result is what is forwarded.
//!
//! Upstreams do not all read a path alike. Servlet containers (Tomcat, Jetty, Spring)
//! cut each segment's `;parameters` off before they resolve dot segments, so to them
//! `/static/..;/admin/x` is `/admin/x` and `/admin;x/y` is `/admin/y`; most other
//! servers keep `;x` as part of the segment's name. The normaliser therefore refuses
//! every path whose meaning depends on that choice (a `.`/`..` segment with
//! parameters, an encoded `;`), and [`without_parameters`] gives the servlet reading
//! of what remains, so the rules can be checked against both readings.

use std::borrow::Cow;

/// Why a path cannot be normalised safely; every case is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path contains an encoded '/', '\\', ';', NUL or control character")]
    ForbiddenEncoding,
    #[error("the path contains a raw backslash or control character")]
    ForbiddenCharacter,
    #[error("the path contains a malformed percent-escape")]
    BadEscape,
    #[error("the path's escapes do not decode to UTF-8 (e.g. an overlong form)")]
    NotUtf8,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("a '.' or '..' segment carries ';' parameters")]
    DotSegmentWithParameters,
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escapes of unreserved characters, keeps all others, and refuses escapes of
/// characters that would change the path's structure (`/`, `\`, `;`) or are controls.
/// Escaped bytes above 0x7f must form UTF-8: an overlong form such as `%c0%ae` is a
/// `.` to a lenient decoder and nothing to a strict one, so it has no single meaning.
fn decode_segment(seg: &str) -> Result<String, PathError> {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    // The bytes of the current run of escapes above 0x7f, checked as UTF-8 when it ends.
    let mut high: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEscape),
            };
            let v = h * 16 + l;
            if v == b'/' || v == b'\\' || v == b';' || v < 0x20 || v == 0x7f {
                return Err(PathError::ForbiddenEncoding);
            }
            if v >= 0x80 {
                high.push(v);
            } else {
                utf8_run_ends(&mut high)?;
            }
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(bytes[i + 1].to_ascii_uppercase() as char);
                out.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            if b == b'\\' || b < 0x20 || b == 0x7f {
                return Err(PathError::ForbiddenCharacter);
            }
            utf8_run_ends(&mut high)?;
            out.push(b as char);
            i += 1;
        }
    }
    utf8_run_ends(&mut high)?;
    Ok(out)
}

/// Checks that a finished run of escaped bytes above 0x7f is UTF-8, and empties it.
fn utf8_run_ends(high: &mut Vec<u8>) -> Result<(), PathError> {
    if !high.is_empty() {
        std::str::from_utf8(high).map_err(|_| PathError::NotUtf8)?;
        high.clear();
    }
    Ok(())
}

/// True for the common case that needs no work: printable ASCII without `%`, `\`, `;`,
/// repeated slashes or dot segments. Such a path is its own normal form.
fn is_plain(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.iter()
        .all(|&c| c > 0x20 && c < 0x7f && c != b'%' && c != b'\\' && c != b';')
        && !raw.contains("//")
        && !raw.split('/').any(|s| s == "." || s == "..")
}

/// The part of a segment before its `;parameters`.
fn name_of(segment: &str) -> &str {
    segment.split(';').next().unwrap_or(segment)
}

/// Normalises a raw (still percent-encoded) request path: decodes unreserved escapes,
/// resolves `.` and `..`, collapses repeated slashes, keeps a trailing slash and every
/// segment's `;parameters`. A plain path comes back borrowed, without allocating.
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    if !raw.is_ascii() {
        return Err(PathError::ForbiddenCharacter);
    }
    let mut segments: Vec<String> = Vec::new();
    let parts: Vec<&str> = raw[1..].split('/').collect();
    let mut trailing_slash = false;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let seg = decode_segment(part)?;
        let name = name_of(&seg);
        if (name == "." || name == "..") && name.len() != seg.len() {
            // `..;x` is `..` to a servlet container and a name to everyone else:
            // no reading of it is safe to forward.
            return Err(PathError::DotSegmentWithParameters);
        }
        match seg.as_str() {
            "" => trailing_slash = last,
            "." => trailing_slash = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            _ => {
                segments.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The servlet container's reading of a normalised path: each segment's
/// `;parameters` removed, and the segments that leave empty dropped (a servlet
/// container merges the `//` they would leave). `/admin;x/y` → `/admin/y`,
/// `/;x/admin/` → `/admin/`. Borrowed, without work, when the path has no `;`.
pub fn without_parameters(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        let name = name_of(seg);
        trailing_slash = name.is_empty();
        if !name.is_empty() {
            out.push('/');
            out.push_str(name);
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &str) -> String {
        normalise(raw).unwrap().into_owned()
    }

    #[test]
    fn resolves_dots_and_repeated_slashes() {
        assert_eq!(n("/static/./a//b/../c.css"), "/static/a/c.css");
        assert_eq!(n("//static/x"), "/static/x");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/a/b/."), "/a/b/");
    }

    #[test]
    fn decodes_only_unreserved_escapes() {
        assert_eq!(n("/st%61tic/%61pp.css"), "/static/app.css");
        assert_eq!(n("/static/a%20b"), "/static/a%20b");
        assert_eq!(n("/a/%2e%2e/b"), "/b");
        assert_eq!(n("/x%3a"), "/x%3A");
        assert_eq!(n("/static/%252e%252e/x"), "/static/%252e%252e/x");
    }

    #[test]
    fn keeps_trailing_slash() {
        assert_eq!(n("/static/dir/"), "/static/dir/");
    }

    #[test]
    fn plain_paths_are_borrowed_and_paths_with_parameters_are_not_plain() {
        assert!(matches!(normalise("/app/x.css"), Ok(Cow::Borrowed(_))));
        assert!(!is_plain("/admin;x/y"));
        assert!(!is_plain("/static/..;/admin"));
    }

    #[test]
    fn keeps_parameters_of_named_segments() {
        assert_eq!(n("/admin;x/y"), "/admin;x/y");
        assert_eq!(
            n("/static/a.css;jsessionid=1"),
            "/static/a.css;jsessionid=1"
        );
        assert_eq!(n("/a;p/../b"), "/b");
        assert_eq!(n("//;x/admin"), "/;x/admin");
    }

    #[test]
    fn refuses_dot_segments_with_parameters_in_every_spelling() {
        for bad in [
            "/static/..;/admin/x",
            "/static/..;x/admin/x",
            "/static/.;/x",
            "/static/.;x=1",
            "/static/%2e%2e;/admin/x",
            "/static/.%2E;/admin/x",
            "/static/%2e;x/y",
            "/a/b/..;",
        ] {
            assert_eq!(
                normalise(bad),
                Err(PathError::DotSegmentWithParameters),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_encoded_semicolons_and_non_utf8_escapes() {
        for bad in ["/static/..%3b/admin", "/admin%3Bx/y", "/a%3b"] {
            assert_eq!(normalise(bad), Err(PathError::ForbiddenEncoding), "{bad}");
        }
        for bad in [
            "/static/%c0%ae%c0%ae/admin/x",
            "/static/%e0%80%ae/x",
            "/static/%c0%af",
            "/a%80",
            "/a%c3",
            "/a%c3%a4%a4",
            "/a%ed%a0%80",
        ] {
            assert_eq!(normalise(bad), Err(PathError::NotUtf8), "{bad}");
        }
        assert_eq!(n("/%c3%a4rzte/%E2%82%AC"), "/%C3%A4rzte/%E2%82%AC");
    }

    #[test]
    fn refuses_what_cannot_be_normalised_safely() {
        for bad in [
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a%00",
            "/a%0A",
            "/a%7f",
            "/..",
            "/a/../../b",
            "/%2e%2e/x",
            "/a\\b",
            "/a%zz",
            "/a%4",
            "x",
        ] {
            assert!(normalise(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn normalising_is_idempotent() {
        for p in [
            "/static/./a//b/../c.css",
            "/st%61tic/%61pp.css",
            "/a%20b/",
            "/x/y/z/../../w",
            "/a;b/c;d/",
        ] {
            let once = n(p);
            assert_eq!(n(&once), once);
        }
    }

    #[test]
    fn without_parameters_is_the_servlet_reading() {
        assert_eq!(without_parameters("/admin;x/y"), "/admin/y");
        assert_eq!(without_parameters("/internal;x/y"), "/internal/y");
        assert_eq!(without_parameters("/;x/admin/y"), "/admin/y");
        assert_eq!(without_parameters("/admin/;x"), "/admin/");
        assert_eq!(without_parameters("/admin;x"), "/admin");
        assert_eq!(without_parameters("/a;x/;y/b;z/"), "/a/b/");
        assert_eq!(without_parameters("/;x"), "/");
        assert!(matches!(without_parameters("/plain/x"), Cow::Borrowed(_)));
    }
}
