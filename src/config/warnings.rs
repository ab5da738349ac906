//! Settings that are valid but probably not what the operator meant. They do not stop
//! the gateway (tests and special set-ups use them on purpose), but they must not pass
//! silently: `check-config` prints them and `serve` logs them at start.

use super::{Config, ConfigProblem};

/// Every warning about `cfg`, each as `KEY: what is odd`.
pub fn warnings(cfg: &Config) -> Vec<ConfigProblem> {
    let mut w = Vec::new();
    if cfg.server.tls.is_none() {
        w.push(ConfigProblem::new(
            "server.tls_cert",
            "not set: serving plain HTTP. Only do this behind a TLS-terminating load balancer",
        ));
    }
    if cfg.server.hostnames.is_empty() {
        w.push(ConfigProblem::new(
            "server.hostnames",
            "empty: any Host is accepted. List your site's names to refuse others",
        ));
    }
    let s = &cfg.session;
    if s.absolute_timeout < s.idle_timeout {
        w.push(ConfigProblem::new(
            "session.absolute_timeout",
            format!(
                "{} is shorter than session.idle_timeout ({}): every session ends at the absolute timeout, so the idle timeout never applies",
                humantime::format_duration(s.absolute_timeout),
                humantime::format_duration(s.idle_timeout)
            ),
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(session: serde_json::Value) -> Vec<String> {
        let tree = serde_json::json!({
            "server": { "hostnames": ["clinic.example"], "tls_cert": "", "tls_key": "" },
            "session": session,
        });
        let cfg = super::super::validate::validate(&tree).expect("valid");
        warnings(&cfg)
            .iter()
            .map(|p| p.to_string())
            .filter(|l| l.starts_with("session."))
            .collect()
    }

    #[test]
    fn absolute_timeout_shorter_than_idle_timeout_is_named() {
        let w = warned(serde_json::json!({ "idle_timeout": "30m", "absolute_timeout": "10m" }));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "session.absolute_timeout: 10m is shorter than session.idle_timeout (30m)"
            ),
            "{w:?}"
        );
        assert!(
            warned(serde_json::json!({ "idle_timeout": "30m", "absolute_timeout": "12h" }))
                .is_empty()
        );
        assert!(
            warned(serde_json::json!({ "idle_timeout": "1h", "absolute_timeout": "1h" }))
                .is_empty()
        );
    }
}
