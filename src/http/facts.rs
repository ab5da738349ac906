//! Facts about a request that several steps need.

use http::Method;
use http::header::{ACCEPT, HeaderMap};

/// A browser navigation (SPEC §5.1 step 4): `GET`/`HEAD` whose `Accept` includes
/// `text/html`. Only these are redirected to the login page.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD) && accepts_html(headers)
}

/// Whether error answers should be an HTML page rather than JSON.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.to_ascii_lowercase().contains("text/html"))
    })
}
