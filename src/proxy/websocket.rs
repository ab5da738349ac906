//! WebSocket upgrades: recognised, and refused when a browser opens them from another
//! site (cross-site WebSocket hijacking rides on the victim's cookies).

use http::header::{CONNECTION, HOST, HeaderMap, ORIGIN, UPGRADE};
use http::{Method, Uri};

/// An HTTP/1.1 `Upgrade` request (WebSocket or other protocol).
pub fn is_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        443
    } else {
        80
    }
}

/// True when the request's `Origin` (if any) is this site: same scheme, host and port
/// as the `Host` it was sent to. Non-browser clients send no `Origin` and pass.
pub fn origin_allowed(headers: &HeaderMap, tls: bool) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Ok(uri) = origin.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return false;
    };
    let ours = if tls { "https" } else { "http" };
    if !scheme.eq_ignore_ascii_case(ours) {
        return false;
    }
    let Some(Ok(site)) = headers.get(HOST).map(|h| h.to_str()) else {
        return false;
    };
    let Ok(site) = site.parse::<http::uri::Authority>() else {
        return false;
    };
    let origin_port = uri.port_u16().unwrap_or(default_port(scheme));
    let site_port = site.port_u16().unwrap_or(default_port(ours));
    host.eq_ignore_ascii_case(site.host()) && origin_port == site_port
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            m.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        m
    }

    #[test]
    fn same_site_origins_pass_foreign_ones_do_not() {
        assert!(origin_allowed(
            &h(Some("https://clinic.example"), "clinic.example"),
            true
        ));
        assert!(origin_allowed(
            &h(Some("https://127.0.0.1:8443"), "127.0.0.1:8443"),
            true
        ));
        assert!(origin_allowed(&h(None, "clinic.example"), true));
        assert!(!origin_allowed(
            &h(Some("https://evil.example"), "clinic.example"),
            true
        ));
        assert!(!origin_allowed(
            &h(Some("https://127.0.0.1:9999"), "127.0.0.1:8443"),
            true
        ));
        assert!(!origin_allowed(&h(Some("null"), "clinic.example"), true));
        assert!(!origin_allowed(
            &h(Some("http://clinic.example"), "clinic.example"),
            true
        ));
    }
}
