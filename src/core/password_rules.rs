//! What a new password must be (SPEC §12, NIST SP 800-63B §3.1.1.2): at least
//! `users.min_password_length` characters, not containing the username (compared
//! case-insensitively), and not in the built-in list of common and breached passwords.
//!
//! The list is SecLists' `Passwords/Common-Credentials/10-million-password-list-top-100000.txt`
//! (100,000 passwords, MIT licence, © Daniel Miessler; see `assets/common-passwords.LICENSE`),
//! stored sorted by bytes in `assets/common-passwords.txt` and embedded in the binary.
//! A lookup is a binary search over the embedded text: no allocation, no index, about
//! 17 line comparisons. A password is refused when it, or its lower-case form, is listed
//! (so `PASSWORD1` is refused with `password1`).

/// The embedded list: one password a line, sorted by bytes, no duplicates.
static LIST: &str = include_str!("../../assets/common-passwords.txt");

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too short ({len} characters); users.min_password_length is {min}")]
    TooShort { len: usize, min: usize },
    #[error("contains the username")]
    ContainsUsername,
    #[error("is in the list of common and breached passwords")]
    Common,
}

/// Checks `password` for `username` against the rules.
pub fn check(password: &str, username: &str, min_len: usize) -> Result<(), Refused> {
    let len = password.chars().count();
    if len < min_len {
        return Err(Refused::TooShort { len, min: min_len });
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err(Refused::ContainsUsername);
    }
    if is_common(password) || is_common(&lower) {
        return Err(Refused::Common);
    }
    Ok(())
}

/// Whether `password` is in the embedded list, exactly.
pub fn is_common(password: &str) -> bool {
    listed(LIST, password)
}

/// Binary search for the line `needle` in `list` (sorted lines, each ending in `\n`).
/// `lo` is always the start of a line, so the line around a midpoint starts at or
/// after it.
fn listed(list: &str, needle: &str) -> bool {
    let b = list.as_bytes();
    let needle = needle.as_bytes();
    if needle.is_empty() || needle.contains(&b'\n') {
        return false;
    }
    let (mut lo, mut hi) = (0usize, b.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = b[lo..mid]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(lo, |i| lo + i + 1);
        let end = b[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |i| start + i);
        match b[start..end].cmp(needle) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = end + 1,
            std::cmp::Ordering::Greater => hi = start,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_100000_sorted_unique_entries_and_each_is_found() {
        let lines: Vec<&str> = LIST.lines().collect();
        assert_eq!(lines.len(), 100_000);
        assert!(
            lines.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()),
            "the list must be sorted by bytes without duplicates"
        );
        for l in &lines {
            assert!(is_common(l), "{l:?} not found");
        }
    }

    #[test]
    fn unlisted_passwords_are_not_found() {
        for p in [
            "",
            "\n",
            "correct horse battery staple plain",
            "zzzzzzzzzzzzzzzzzzzzzzzzzz9",
            "0",
        ] {
            assert!(!is_common(p), "{p:?}");
        }
        assert!(!listed("b\nd\n", "a"));
        assert!(!listed("b\nd\n", "c"));
        assert!(!listed("b\nd\n", "e"));
        assert!(listed("b\nd\n", "d"));
    }

    #[test]
    fn rules_refuse_short_listed_and_username_passwords() {
        assert_eq!(
            check("short", "ann", 12),
            Err(Refused::TooShort { len: 5, min: 12 })
        );
        // Counted in characters, not bytes.
        assert!(check("ääääääääääää", "ann", 12).is_ok());
        assert_eq!(
            check("my-DR.Grey-password", "dr.grey", 12),
            Err(Refused::ContainsUsername)
        );
        assert_eq!(check("password1234", "ann", 12), Err(Refused::Common));
        assert_eq!(check("PASSWORD1234", "ann", 12), Err(Refused::Common));
        assert_eq!(check("qwertyuiop123", "ann", 8), Err(Refused::Common));
        assert!(check("violet staple harbour 42", "ann", 12).is_ok());
    }
}
