//! `[webauthn]` (SPEC §10): security keys and passkeys. Off by default; when on, the
//! relying party id must be a domain name the gateway is reached under, because a key
//! registered for one name never signs for another.

use super::super::reader::{Reader, Table};
use super::super::types::{Config, UserVerification, WebauthnConfig};

/// The section as written (the relying party id is resolved by [`resolve_rp_id`]).
pub fn webauthn(r: &mut Reader, root: &Table<'_>) -> WebauthnConfig {
    let t = r.table(
        root,
        "webauthn",
        &[
            "enabled",
            "rp_id",
            "rp_name",
            "user_verification",
            "passwordless",
        ],
    );
    let rp_name = r.string(&t, "rp_name", "Clinic");
    if rp_name.trim().is_empty() || rp_name.len() > 64 {
        r.problem(&t.at("rp_name"), "must be a name of 1 to 64 characters");
    }
    let user_verification = [
        UserVerification::Required,
        UserVerification::Preferred,
        UserVerification::Discouraged,
    ][r.choice(
        &t,
        "user_verification",
        "preferred",
        &["required", "preferred", "discouraged"],
    )];
    WebauthnConfig {
        enabled: r.boolean(&t, "enabled", false),
        rp_id: r.string(&t, "rp_id", "").trim().to_ascii_lowercase(),
        rp_name,
        user_verification,
        passwordless: r.boolean(&t, "passwordless", false),
    }
}

/// Whether `name` is a DNS name a browser accepts as a relying party id (not an IP
/// address: WebAuthn refuses those).
fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Defaults the relying party id to `session.cookie_domain`, else the first
/// `server.hostnames` entry, and checks it
/// against the names the gateway answers to.
pub fn resolve_rp_id(r: &mut Reader, c: &mut Config) {
    let w = &mut c.webauthn;
    if w.passwordless && !w.enabled {
        r.problem(
            "webauthn.passwordless",
            "needs webauthn.enabled = true (a passkey is a WebAuthn credential)",
        );
    }
    if !w.enabled {
        w.rp_id.clear();
        return;
    }
    // The cookie domain first (SPEC §10): one key then serves every app host under it.
    if w.rp_id.is_empty()
        && let Some(d) = &c.session.cookie_domain
    {
        w.rp_id = d.clone();
    }
    if w.rp_id.is_empty() {
        match c.server.hostnames.first() {
            Some(h) => w.rp_id = h.to_ascii_lowercase(),
            None => {
                r.problem(
                    "webauthn.rp_id",
                    "must be set when server.hostnames is empty (keys are bound to one domain name)",
                );
                return;
            }
        }
    }
    if !is_domain(&w.rp_id) {
        r.problem(
            "webauthn.rp_id",
            format!(
                "{:?} is not a domain name (browsers refuse IP addresses and ports here)",
                w.rp_id
            ),
        );
        return;
    }
    let covered = |h: &String| {
        let h = h.to_ascii_lowercase();
        h == w.rp_id || h.ends_with(&format!(".{}", w.rp_id))
    };
    if !c.server.hostnames.is_empty() && !c.server.hostnames.iter().any(covered) {
        r.problem(
            "webauthn.rp_id",
            format!(
                "{:?} is neither one of server.hostnames nor a parent domain of one: no page of the gateway could use a key",
                w.rp_id
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::is_domain;
    use crate::config::UserVerification;

    fn problems(tree: serde_json::Value) -> String {
        super::super::problems_text(&tree)
    }

    #[test]
    fn off_by_default_and_nothing_changes() {
        let cfg = validate(&serde_json::json!({})).unwrap();
        assert!(!cfg.webauthn.enabled && !cfg.webauthn.passwordless);
        assert_eq!(cfg.webauthn.rp_id, "");
        assert_eq!(cfg.webauthn.user_verification, UserVerification::Preferred);
    }

    #[test]
    fn the_relying_party_defaults_to_the_first_hostname() {
        let cfg = validate(&serde_json::json!({
            "server": { "hostnames": ["records.clinic.example", "lab.clinic.example"] },
            "webauthn": { "enabled": true, "user_verification": "required" },
        }))
        .unwrap();
        assert_eq!(cfg.webauthn.rp_id, "records.clinic.example");
        assert_eq!(cfg.webauthn.user_verification, UserVerification::Required);
        let cfg = validate(&serde_json::json!({
            "server": { "hostnames": ["records.clinic.example"] },
            "webauthn": { "enabled": true, "rp_id": "clinic.example", "passwordless": true },
        }))
        .unwrap();
        assert_eq!(cfg.webauthn.rp_id, "clinic.example", "a parent domain");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let all = problems(serde_json::json!({
            "webauthn": { "enabled": true, "user_verification": "sometimes", "rp_name": "", "typo": 1 },
        }));
        for key in [
            "webauthn.rp_id",
            "webauthn.user_verification",
            "webauthn.rp_name",
            "webauthn.typo",
        ] {
            assert!(all.contains(key), "{key} not reported in:\n{all}");
        }
        let ip =
            problems(serde_json::json!({ "webauthn": { "enabled": true, "rp_id": "10.0.0.5" } }));
        assert!(
            ip.contains("webauthn.rp_id") && ip.contains("not a domain"),
            "{ip}"
        );
        let foreign = problems(serde_json::json!({
            "server": { "hostnames": ["records.clinic.example"] },
            "webauthn": { "enabled": true, "rp_id": "other.example" },
        }));
        assert!(foreign.contains("webauthn.rp_id"), "{foreign}");
        let off = problems(serde_json::json!({ "webauthn": { "passwordless": true } }));
        assert!(off.contains("webauthn.passwordless"), "{off}");
    }

    #[test]
    fn relying_party_ids_are_domain_names() {
        for ok in ["clinic.example", "localhost", "a-b.c1.example"] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1",
            "::1",
            "clinic.example:8443",
            "-a.example",
            "a..b",
            "Clinic.example",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
