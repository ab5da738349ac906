//! Access rules, compiled once at configuration load and evaluated per request.
//! First matching rule wins; no match means "authenticated".

/// How a rule selects paths. Paths are always the normalised form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
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
}

/// The outcome of matching a request against the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    Bypass,
    Deny,
    Authenticated { roles: &'a [String] },
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.matcher {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == method))
    }
}

/// Decides a request by the first rule matching `method` and the normalised `path`.
pub fn decide<'a>(rules: &'a [Rule], method: &str, path: &str) -> Decision<'a> {
    match rules.iter().find(|r| r.matches(method, path)) {
        None => Decision::Authenticated { roles: &[] },
        Some(r) => match r.access {
            Access::Bypass => Decision::Bypass,
            Access::Deny => Decision::Deny,
            Access::Authenticated => Decision::Authenticated { roles: &r.roles },
        },
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
        }
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
        assert_eq!(decide(&rules, "GET", "/static/a.css"), Decision::Bypass);
        assert_eq!(decide(&rules, "POST", "/static/a.css"), Decision::Deny);
        assert_eq!(decide(&rules, "GET", "/exact"), Decision::Bypass);
        assert_eq!(
            decide(&rules, "GET", "/exact/more"),
            Decision::Authenticated { roles: &[] }
        );
        assert_eq!(
            decide(&rules, "GET", "/exactly"),
            Decision::Authenticated { roles: &[] }
        );
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
