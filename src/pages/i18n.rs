//! Message catalogues for every word a person reads on the gateway's pages, and the
//! choice of language per request (`Accept-Language`, q-values honoured, first
//! supported wins, `[ui] default_language` otherwise).
//!
//! The catalogues are TOML files under `assets/i18n/`, embedded at build time. Keys are
//! dotted (`login.heading`); values may hold `{0}` and `{1}` for arguments. A unit test
//! keeps every catalogue on exactly the same keys, and every key the templates use
//! present.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::OnceLock;

pub use crate::core::lang::Lang;

const SOURCES: [&str; 3] = [
    include_str!("../../assets/i18n/en.toml"),
    include_str!("../../assets/i18n/de.toml"),
    include_str!("../../assets/i18n/es.toml"),
];

type Catalogue = HashMap<String, String>;

fn flatten(prefix: &str, table: &toml::Table, out: &mut Catalogue) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

fn parse(source: &str) -> Catalogue {
    let mut out = Catalogue::new();
    match source.parse::<toml::Table>() {
        Ok(t) => flatten("", &t, &mut out),
        Err(e) => tracing::error!(error = %e, "a message catalogue does not parse"),
    }
    out
}

fn catalogues() -> &'static [Catalogue; 3] {
    static CATALOGUES: OnceLock<[Catalogue; 3]> = OnceLock::new();
    CATALOGUES.get_or_init(|| SOURCES.map(parse))
}

/// The words of one language, for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tr {
    lang: Lang,
}

impl Tr {
    pub fn new(lang: Lang) -> Tr {
        Tr { lang }
    }

    /// The language code for `<html lang>`.
    pub fn lang(&self) -> &'static str {
        self.lang.code()
    }

    /// The text of `key`; English when a catalogue lacks it, empty when all do.
    pub fn t(&self, key: &str) -> &'static str {
        let all = catalogues();
        all[self.lang.index()]
            .get(key)
            .or_else(|| all[Lang::En.index()].get(key))
            .map(String::as_str)
            .unwrap_or_else(|| {
                tracing::error!(key, "message key missing from the catalogues");
                ""
            })
    }

    /// The text of `key` with `{0}` replaced by `a`.
    pub fn f(&self, key: &str, a: impl Display) -> String {
        self.t(key).replace("{0}", &a.to_string())
    }

    /// The text of `key` with `{0}` and `{1}` replaced.
    pub fn f2(&self, key: &str, a: impl Display, b: impl Display) -> String {
        self.t(key)
            .replace("{0}", &a.to_string())
            .replace("{1}", &b.to_string())
    }
}

/// The language for a request: the first supported one in `Accept-Language` by
/// descending q-value (ties keep the header's order), else `default`.
pub fn negotiate(accept_language: Option<&str>, default: Lang) -> Lang {
    let Some(header) = accept_language else {
        return default;
    };
    let mut ranged: Vec<(u16, usize, &str)> = header
        .split(',')
        .take(32)
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let mut q = 1000u16;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .map(|q| (q * 1000.0).round() as u16)
                        .unwrap_or(0);
                }
            }
            (!tag.is_empty() && q > 0).then_some((q, i, tag))
        })
        .collect();
    ranged.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranged
        .into_iter()
        .find_map(|(_, _, tag)| {
            if tag == "*" {
                Some(default)
            } else {
                Lang::from_tag(tag)
            }
        })
        .unwrap_or(default)
}

/// The language for a request's headers.
pub fn for_request(headers: &http::HeaderMap, default: Lang) -> Tr {
    let al = headers
        .get(http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Tr::new(negotiate(al, default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lang::ALL;
    use std::collections::BTreeSet;

    fn keys(i: usize) -> BTreeSet<String> {
        catalogues()[i].keys().cloned().collect()
    }

    #[test]
    fn every_catalogue_has_exactly_the_same_keys() {
        let en = keys(0);
        assert!(en.len() > 50, "English catalogue looks empty: {}", en.len());
        for lang in ALL {
            let other = keys(lang.index());
            let missing: Vec<_> = en.difference(&other).collect();
            let extra: Vec<_> = other.difference(&en).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{}: missing {missing:?}, extra {extra:?}",
                lang.code()
            );
        }
    }

    #[test]
    fn no_catalogue_has_an_empty_text() {
        for lang in ALL {
            for (k, v) in &catalogues()[lang.index()] {
                assert!(!v.trim().is_empty(), "{}: {k} is empty", lang.code());
            }
        }
    }

    #[test]
    fn placeholders_match_across_languages() {
        for (k, en) in &catalogues()[0] {
            for lang in ALL {
                let v = &catalogues()[lang.index()][k];
                for ph in ["{0}", "{1}"] {
                    assert_eq!(
                        en.contains(ph),
                        v.contains(ph),
                        "{}: {k} placeholder {ph}",
                        lang.code()
                    );
                }
            }
        }
    }

    /// Every `tr.t("…")`, `tr.f("…"` and `tr.f2("…"` key in the templates exists.
    #[test]
    fn every_key_the_templates_use_exists() {
        let templates = [
            include_str!("../../assets/templates/base.html"),
            include_str!("../../assets/templates/login.html"),
            include_str!("../../assets/templates/setup.html"),
            include_str!("../../assets/templates/backup_codes.html"),
            include_str!("../../assets/templates/challenge.html"),
            include_str!("../../assets/templates/account.html"),
            include_str!("../../assets/templates/error.html"),
        ];
        let en = keys(0);
        let mut used = 0;
        for t in templates {
            for marker in ["tr.t(\"", "tr.f(\"", "tr.f2(\""] {
                for part in t.split(marker).skip(1) {
                    let key = part.split('"').next().unwrap_or("");
                    used += 1;
                    assert!(en.contains(key), "template key {key:?} is not in en.toml");
                }
            }
        }
        assert!(used > 40, "templates use only {used} keys");
    }

    #[test]
    fn accept_language_picks_the_first_supported_by_q_value() {
        let d = Lang::En;
        assert_eq!(negotiate(None, d), Lang::En);
        assert_eq!(negotiate(Some(""), Lang::De), Lang::De);
        assert_eq!(negotiate(Some("de-DE,de;q=0.9,en;q=0.8"), d), Lang::De);
        assert_eq!(
            negotiate(Some("fr-FR,fr;q=0.9,es;q=0.5,en;q=0.4"), d),
            Lang::Es
        );
        assert_eq!(negotiate(Some("en;q=0.2, de;q=0.7"), d), Lang::De);
        assert_eq!(negotiate(Some("es;q=0, de;q=0.1"), d), Lang::De);
        assert_eq!(negotiate(Some("fr, *;q=0.5"), Lang::Es), Lang::Es);
        assert_eq!(negotiate(Some("ES-mx"), d), Lang::Es);
        assert_eq!(negotiate(Some("xx;q=abc, ;;;, de"), d), Lang::De);
        assert_eq!(negotiate(Some("fr"), Lang::De), Lang::De);
    }

    #[test]
    fn lookups_fill_in_arguments() {
        let tr = Tr::new(Lang::En);
        assert_eq!(tr.lang(), "en");
        assert!(tr.f("wait.seconds", 45).contains("45"));
        assert_eq!(Tr::new(Lang::De).lang(), "de");
    }
}
