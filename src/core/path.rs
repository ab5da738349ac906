//! Request-path normalisation (SPEC §5.1 step 2): the rules and the upstream must see
//! the same path, so the path is normalised once and the result is what is forwarded.

/// Why a path cannot be normalised safely; every case is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path contains an encoded '/', '\\', NUL or control character")]
    ForbiddenEncoding,
    #[error("the path contains a raw backslash or control character")]
    ForbiddenCharacter,
    #[error("the path contains a malformed percent-escape")]
    BadEscape,
    #[error("the path climbs above the root")]
    AboveRoot,
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escapes of unreserved characters, keeps all others, and refuses escapes of
/// characters that would change the path's structure (`/`, `\`) or are controls.
fn decode_segment(seg: &str) -> Result<String, PathError> {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
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
            if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
                return Err(PathError::ForbiddenEncoding);
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
            out.push(b as char);
            i += 1;
        }
    }
    Ok(out)
}

/// True for the common case that needs no work: printable ASCII without `%`, `\`,
/// repeated slashes or dot segments.
fn is_plain(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.iter()
        .all(|&c| c > 0x20 && c < 0x7f && c != b'%' && c != b'\\')
        && !raw.contains("//")
        && !raw.split('/').any(|s| s == "." || s == "..")
}

/// Normalises a raw (still percent-encoded) request path: decodes unreserved escapes,
/// resolves `.` and `..`, collapses repeated slashes, keeps a trailing slash.
pub fn normalise(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(raw.to_string());
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_dots_and_repeated_slashes() {
        assert_eq!(
            normalise("/static/./a//b/../c.css").unwrap(),
            "/static/a/c.css"
        );
        assert_eq!(normalise("//static/x").unwrap(), "/static/x");
        assert_eq!(normalise("/").unwrap(), "/");
        assert_eq!(normalise("/a/..").unwrap(), "/");
        assert_eq!(normalise("/a/b/.").unwrap(), "/a/b/");
    }

    #[test]
    fn decodes_only_unreserved_escapes() {
        assert_eq!(normalise("/st%61tic/%61pp.css").unwrap(), "/static/app.css");
        assert_eq!(normalise("/static/a%20b").unwrap(), "/static/a%20b");
        assert_eq!(normalise("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(normalise("/x%3a").unwrap(), "/x%3A");
    }

    #[test]
    fn keeps_trailing_slash() {
        assert_eq!(normalise("/static/dir/").unwrap(), "/static/dir/");
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
        ] {
            let once = normalise(p).unwrap();
            assert_eq!(normalise(&once).unwrap(), once);
        }
    }
}
