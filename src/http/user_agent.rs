//! A short, human description of a browser ("Firefox on Linux") from its
//! `User-Agent`, for the account page's lists of sessions and remembered browsers.
//! Deliberately coarse: it names, it does not identify.

use http::HeaderMap;

/// The description of the browser that sent `headers`.
pub(crate) fn describe(headers: &HeaderMap) -> String {
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    label(ua)
}

/// The description of the browser `ua` names: browser family on system family.
pub(crate) fn label(ua: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name)
    .unwrap_or("Browser");
    let os = ["Windows", "Android", "iPhone", "iPad", "Mac OS", "Linux"]
        .iter()
        .find(|o| ua.contains(*o))
        .copied()
        .unwrap_or("unknown system");
    format!("{browser} on {os}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_browsers() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(label(chrome), "Chrome on Linux");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0";
        assert_eq!(label(edge), "Edge on Windows");
        let ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(label(ios), "Safari on iPhone");
        assert_eq!(label(""), "Browser on unknown system");
    }
}
