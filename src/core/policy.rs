//! Access rules, compiled once at configuration load and evaluated per request.
//! First matching rule wins; no match means "authenticated".
//!
//! A path with `;parameters` has two readings (see [`crate::core::path`]): the
//! literal one most servers use and the servlet containers' one without parameters.
//! Both are decided and the stricter decision holds, so a rule cannot be escaped by
//! whichever reading the upstream happens to use.

use crate::core::path::without_parameters;

/// How a rule selects paths. Paths are always the normalised form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// Whether rule paths are compared case-sensitively (the default: the upstreams the
/// gateway is tested with tell `/Admin` from `/admin`) or ASCII case-insensitively,
/// for an upstream that does not (IIS, a case-insensitive file system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathCase {
    #[default]
    Sensitive,
    Insensitive,
}

/// What a matching rule demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Bypass,
    Authenticated,
    Deny,
}

/// One `[[policy.rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: PathMatch,
    /// Upper-case method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub access: Access,
    /// With `Authenticated`: the user needs at least one of these (empty: any user).
    pub roles: Vec<String>,
    /// With `Authenticated`: the session's last second-factor proof must be at most
    /// this old (milliseconds), else a step-up (`max_factor_age`).
    pub max_factor_age_ms: Option<u64>,
}

/// The role lists a request must satisfy: one role of each list (an empty list asks
/// for nothing). Two lists when the path's two readings fall under different rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles<'a>([&'a [String]; 3]);

impl<'a> Roles<'a> {
    /// No role needed: any complete session will do.
    pub const ANY: Roles<'static> = Roles([&[], &[], &[]]);

    /// One rule's `roles`.
    pub fn one(required: &'a [String]) -> Roles<'a> {
        Roles([required, &[], &[]])
    }

    /// Both sets of demands at once (kept canonical so equal demands compare equal):
    /// the first two lists come from the rules, the third from the app.
    fn and(self, other: Roles<'a>) -> Roles<'a> {
        let (a, b) = (self.0[0], other.0[0]);
        match (a.is_empty(), b.is_empty()) {
            (_, true) => self,
            (true, false) => Roles([b, &[], self.0[2]]),
            (false, false) if a == b => self,
            (false, false) => Roles([a, b, self.0[2]]),
        }
    }

    /// These demands and the app's own `roles`.
    fn and_app(self, app: &'a [String]) -> Roles<'a> {
        Roles([self.0[0], self.0[1], app])
    }

    /// The role lists, for a check that must outlive the request (a WebSocket tunnel).
    pub fn lists(&self) -> [&'a [String]; 3] {
        self.0
    }

    /// Whether a user holding `user_roles` satisfies every list.
    pub fn allow(&self, user_roles: &[String]) -> bool {
        self.0.iter().all(|req| roles_allow(req, user_roles))
    }
}

/// The outcome of matching a request against the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    Bypass,
    Deny,
    Authenticated {
        roles: Roles<'a>,
        /// How old the last second-factor proof may be (`None`: any age).
        max_factor_age_ms: Option<u64>,
    },
}

/// `path` starts with `prefix`, compared as `case` says (bytes: no allocation).
fn starts_with(path: &str, prefix: &str, case: PathCase) -> bool {
    match case {
        PathCase::Sensitive => path.starts_with(prefix),
        PathCase::Insensitive => path
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes())),
    }
}

impl Rule {
    fn matches(&self, case: PathCase, method: &str, path: &str) -> bool {
        let path_ok = match &self.matcher {
            PathMatch::Exact(p) => path.len() == p.len() && starts_with(path, p, case),
            PathMatch::Prefix(p) => starts_with(path, p, case),
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == method))
    }
}

/// The first matching rule's decision for one reading of the path: the app's rules
/// first, then the gateway-wide ones.
fn first_match<'a>(
    rules: [&'a [Rule]; 2],
    case: PathCase,
    method: &str,
    path: &str,
) -> Decision<'a> {
    match rules
        .into_iter()
        .flatten()
        .find(|r| r.matches(case, method, path))
    {
        None => Decision::Authenticated {
            roles: Roles::ANY,
            max_factor_age_ms: None,
        },
        Some(r) => match r.access {
            Access::Bypass => Decision::Bypass,
            Access::Deny => Decision::Deny,
            Access::Authenticated => Decision::Authenticated {
                roles: Roles::one(&r.roles),
                max_factor_age_ms: r.max_factor_age_ms,
            },
        },
    }
}

/// The stricter of two decisions: deny over authenticated over bypass, and every
/// role demand kept.
fn stricter<'a>(a: Decision<'a>, b: Decision<'a>) -> Decision<'a> {
    use Decision::*;
    match (a, b) {
        (Deny, _) | (_, Deny) => Deny,
        (
            Authenticated {
                roles: x,
                max_factor_age_ms: ax,
            },
            Authenticated {
                roles: y,
                max_factor_age_ms: ay,
            },
        ) => Authenticated {
            roles: x.and(y),
            max_factor_age_ms: match (ax, ay) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        },
        (Authenticated { .. }, Bypass) => a,
        (Bypass, other) => other,
    }
}

/// Decides a request by the first rule matching `method` and the normalised `path`,
/// under both of the path's readings (with and without `;parameters`).
pub fn decide<'a>(rules: &'a [Rule], case: PathCase, method: &str, path: &str) -> Decision<'a> {
    decide_for_app(&[], &[], rules, case, method, path)
}

/// As [`decide`] for a request to an app with its own rules (evaluated first) and
/// `roles` (demanded on every authenticated path of the app, SPEC §8).
pub fn decide_for_app<'a>(
    app_rules: &'a [Rule],
    app_roles: &'a [String],
    rules: &'a [Rule],
    case: PathCase,
    method: &str,
    path: &str,
) -> Decision<'a> {
    let rules = [app_rules, rules];
    let decision = decide_readings(rules, case, method, path);
    match decision {
        Decision::Authenticated {
            roles,
            max_factor_age_ms,
        } if !app_roles.is_empty() => Decision::Authenticated {
            roles: roles.and_app(app_roles),
            max_factor_age_ms,
        },
        other => other,
    }
}

/// Both readings of the path decided, the stricter holding.
fn decide_readings<'a>(
    rules: [&'a [Rule]; 2],
    case: PathCase,
    method: &str,
    path: &str,
) -> Decision<'a> {
    let literal = first_match(rules, case, method, path);
    match without_parameters(path) {
        std::borrow::Cow::Borrowed(_) => literal,
        std::borrow::Cow::Owned(bare) => stricter(literal, first_match(rules, case, method, &bare)),
    }
}

/// Whether a user holding `user_roles` satisfies a rule's `required` roles.
pub fn roles_allow(required: &[String], user_roles: &[String]) -> bool {
    required.is_empty() || required.iter().any(|r| user_roles.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(m: PathMatch, methods: Option<&[&str]>, access: Access) -> Rule {
        Rule {
            matcher: m,
            methods: methods.map(|ms| ms.iter().map(|s| s.to_string()).collect()),
            access,
            roles: vec![],
            max_factor_age_ms: None,
        }
    }

    const ANY: Decision<'static> = Decision::Authenticated {
        roles: Roles::ANY,
        max_factor_age_ms: None,
    };

    fn d<'a>(rules: &'a [Rule], method: &str, path: &str) -> Decision<'a> {
        decide(rules, PathCase::Sensitive, method, path)
    }

    #[test]
    fn first_matching_rule_wins_and_default_is_authenticated() {
        let rules = vec![
            rule(
                PathMatch::Prefix("/static/".into()),
                Some(&["GET", "HEAD"]),
                Access::Bypass,
            ),
            rule(PathMatch::Prefix("/static/".into()), None, Access::Deny),
            rule(PathMatch::Exact("/exact".into()), None, Access::Bypass),
        ];
        assert_eq!(d(&rules, "GET", "/static/a.css"), Decision::Bypass);
        assert_eq!(d(&rules, "POST", "/static/a.css"), Decision::Deny);
        assert_eq!(d(&rules, "GET", "/exact"), Decision::Bypass);
        assert_eq!(d(&rules, "GET", "/exact/more"), ANY);
        assert_eq!(d(&rules, "GET", "/exactly"), ANY);
    }

    /// The three rules of the report: a bypass, a role rule and a deny rule.
    fn clinic() -> Vec<Rule> {
        let mut admin = rule(
            PathMatch::Prefix("/admin/".into()),
            None,
            Access::Authenticated,
        );
        admin.roles = vec!["doctor".to_string()];
        vec![
            rule(PathMatch::Prefix("/static/".into()), None, Access::Bypass),
            admin,
            rule(PathMatch::Prefix("/internal/".into()), None, Access::Deny),
        ]
    }

    #[test]
    fn parameters_do_not_escape_a_role_or_deny_rule() {
        let rules = clinic();
        let doctor = Decision::Authenticated {
            roles: Roles::one(&rules[1].roles),
            max_factor_age_ms: None,
        };
        assert_eq!(d(&rules, "GET", "/admin;x/y"), doctor);
        assert_eq!(d(&rules, "GET", "/;x/admin/y"), doctor);
        assert_eq!(d(&rules, "GET", "/internal;x/y"), Decision::Deny);
        assert_eq!(d(&rules, "GET", "/internal;jsessionid=1/y"), Decision::Deny);
    }

    #[test]
    fn a_bypass_holds_only_when_both_readings_bypass() {
        let rules = clinic();
        assert_eq!(d(&rules, "GET", "/static/a.css;v=2"), Decision::Bypass);
        // Literally not under /static/ (a server that keeps `;x` serves `/static;x/a`).
        assert_eq!(d(&rules, "GET", "/static;x/a"), ANY);
        // Literally under /static/, but a servlet container serves `/admin/x`... only
        // through a dot segment, which the normaliser refuses; parameters alone cannot.
        assert_eq!(d(&rules, "GET", "/static/;x/a"), Decision::Bypass);
    }

    #[test]
    fn two_role_demands_are_both_kept() {
        let mut a = rule(
            PathMatch::Prefix("/a;b/".into()),
            None,
            Access::Authenticated,
        );
        a.roles = vec!["x".to_string()];
        let mut b = rule(PathMatch::Prefix("/a/".into()), None, Access::Authenticated);
        b.roles = vec!["y".to_string()];
        let rules = vec![a, b];
        let Decision::Authenticated { roles, .. } = d(&rules, "GET", "/a;b/c") else {
            panic!("not authenticated")
        };
        assert!(!roles.allow(&["x".to_string()]));
        assert!(!roles.allow(&["y".to_string()]));
        assert!(roles.allow(&["x".to_string(), "y".to_string()]));
    }

    #[test]
    fn case_is_significant_unless_configured_otherwise() {
        let rules = clinic();
        assert_eq!(d(&rules, "GET", "/Internal/x"), ANY);
        assert_eq!(d(&rules, "GET", "/STATIC/x"), ANY);
        let ci = |p| decide(&rules, PathCase::Insensitive, "GET", p);
        assert_eq!(ci("/Internal/x"), Decision::Deny);
        assert_eq!(ci("/INTERNAL;x/y"), Decision::Deny);
        assert_eq!(ci("/STATIC/x"), Decision::Bypass);
        assert_eq!(
            ci("/aDmIn/x"),
            Decision::Authenticated {
                roles: Roles::one(&rules[1].roles),
                max_factor_age_ms: None,
            }
        );
        let exact = vec![rule(PathMatch::Exact("/exact".into()), None, Access::Deny)];
        assert_eq!(
            decide(&exact, PathCase::Insensitive, "GET", "/EXACT"),
            Decision::Deny
        );
        assert_eq!(
            decide(&exact, PathCase::Insensitive, "GET", "/EXACTLY"),
            ANY
        );
    }

    #[test]
    fn the_stricter_step_up_of_two_readings_holds() {
        let mut a = rule(
            PathMatch::Prefix("/rx;b/".into()),
            None,
            Access::Authenticated,
        );
        a.max_factor_age_ms = Some(60_000);
        let mut b = rule(
            PathMatch::Prefix("/rx/".into()),
            None,
            Access::Authenticated,
        );
        b.max_factor_age_ms = Some(300_000);
        let rules = vec![a, b];
        let Decision::Authenticated {
            max_factor_age_ms, ..
        } = d(&rules, "GET", "/rx;b/c")
        else {
            panic!("not authenticated")
        };
        assert_eq!(max_factor_age_ms, Some(60_000));
        let Decision::Authenticated {
            max_factor_age_ms, ..
        } = d(&rules, "GET", "/rx/c")
        else {
            panic!("not authenticated")
        };
        assert_eq!(max_factor_age_ms, Some(300_000));
    }

    #[test]
    fn roles_need_one_in_common() {
        let req = vec!["admin".to_string()];
        assert!(roles_allow(&[], &[]));
        assert!(!roles_allow(&req, &["doctor".to_string()]));
        assert!(roles_allow(
            &req,
            &["doctor".to_string(), "admin".to_string()]
        ));
    }
}
