//! The applications behind the gateway (SPEC §8) as the request path uses them: a
//! routing table from host and path prefix to an [`AppRoute`] — its upstream, rules,
//! roles and header names — swapped whole when the configuration is reloaded.
//!
//! Routing is a hash lookup of the host and a walk over that host's prefixes, longest
//! first; with the one app of a configuration without `[[apps]]` it is a single
//! comparison. Prefixes match on segment boundaries (`/lab` takes `/lab` and `/lab/x`,
//! never `/laboratory`), and a path is routed under both of its readings (with and
//! without `;parameters`, as for the rules): when they name different apps, the
//! request is refused rather than handed to the app one reading picks.

use std::sync::{Arc, RwLock};

use crate::core::fast_map::FastMap;
use crate::core::path::without_parameters;
use crate::core::policy::{PathCase, Rule};
use crate::proxy::forward::Forwarder;

mod build;
mod reload;

pub(crate) use reload::Reloader;

/// One application, ready to serve.
pub(crate) struct AppRoute {
    /// In logs, metrics, audit events and the assertion's `aud`.
    pub(crate) name: Arc<str>,
    /// "/" or a prefix without trailing slash.
    pub(crate) prefix: String,
    pub(crate) strip_prefix: bool,
    /// Who may use the app at all (empty: every signed-in user).
    pub(crate) roles: Vec<String>,
    /// Evaluated before the gateway-wide rules.
    pub(crate) rules: Vec<Rule>,
    /// Its upstream, header names and connection pool.
    pub(crate) forwarder: Forwarder,
    /// Where a sign-in without `rd` lands on its hosts.
    pub(crate) landing: Option<String>,
    /// Paths whose request, once forwarded, also ends the gateway session.
    pub(crate) logout_paths: Vec<String>,
    /// An open WebSocket without traffic this long is closed.
    pub(crate) websocket_idle_timeout: std::time::Duration,
    /// Its series of the per-request metrics (`app="<name>"`).
    pub(crate) metrics: crate::metrics::AppMetrics,
    /// The upstream's own origin (`http://10.0.0.5:8080`), for mapping `Location`s back.
    pub(crate) upstream_origin: String,
}

impl AppRoute {
    /// Whether `path` (normal form) is one of the app's own logout paths, under either
    /// of its readings.
    pub(crate) fn is_logout_path(&self, path: &str, case: PathCase) -> bool {
        if self.logout_paths.is_empty() {
            return false;
        }
        let same = |a: &str, b: &str| match case {
            PathCase::Sensitive => a == b,
            PathCase::Insensitive => a.eq_ignore_ascii_case(b),
        };
        let bare = without_parameters(path);
        self.logout_paths
            .iter()
            .any(|p| same(p, path) || same(p, &bare))
    }
}

/// Why a request has no app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoApp {
    /// No app takes this host and path: 404.
    Unrouted,
    /// The path's two readings fall to different apps: 400.
    Ambiguous,
}

/// One host's candidate apps (indices into [`Apps::all`]): a host's own apps and the
/// any-host ones, longest prefix first, a host's own app before an any-host one at
/// equal length — and indexed by the first segment of their prefix, since a prefix
/// takes a path only on segment boundaries: a request looks at the few apps under its
/// own first segment, then at those of `/`, never at all of a host's apps.
pub(crate) struct Candidates {
    /// All of them, in the order above.
    all: Vec<usize>,
    /// By the first segment of the prefix ("lab" for "/lab/results"; ASCII-lower-case
    /// when paths compare case-insensitively), in the order above.
    by_segment: FastMap<String, Vec<usize>>,
    /// Those with the prefix "/", in the order above.
    root: Vec<usize>,
}

impl Candidates {
    /// Indexes `all` (already in routing order).
    pub(crate) fn new(all: Vec<usize>, apps: &[Arc<AppRoute>], case: PathCase) -> Self {
        let mut by_segment: FastMap<String, Vec<usize>> = FastMap::default();
        let mut root = Vec::new();
        for &i in &all {
            match first_segment(&apps[i].prefix) {
                "" => root.push(i),
                seg => by_segment.entry(fold(seg, case)).or_default().push(i),
            }
        }
        Self {
            all,
            by_segment,
            root,
        }
    }
}

/// The first segment of a normal path ("lab" of "/lab/x"; "" for "/").
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// `seg` as the segment index keys it.
fn fold(seg: &str, case: PathCase) -> String {
    match case {
        PathCase::Sensitive => seg.to_string(),
        PathCase::Insensitive => seg.to_ascii_lowercase(),
    }
}

/// The routing table: every app, and per host the candidates, longest prefix first.
pub(crate) struct Apps {
    all: Vec<Arc<AppRoute>>,
    /// The candidates of each host an app names.
    by_host: FastMap<String, Candidates>,
    /// The candidates of a host no app names (the any-host apps).
    any_host: Candidates,
    /// The gateway-wide rules (`[[policy.rules]]`), reloaded with the apps.
    pub(crate) rules: Vec<Rule>,
    pub(crate) path_case: PathCase,
    /// Every host an app names or `server.hostnames` lists: where an absolute `rd`
    /// may go.
    hosts: Vec<String>,
}

impl Apps {
    /// The app for `host` (lower-case, without port; None: no Host) and the normal
    /// `path`.
    pub(crate) fn route(&self, host: Option<&str>, path: &str) -> Result<&Arc<AppRoute>, NoApp> {
        let candidates = match host {
            Some(h) if !self.by_host.is_empty() => self.by_host.get(h).unwrap_or(&self.any_host),
            _ => &self.any_host,
        };
        let literal = self.longest(candidates, path);
        if path.contains(';') {
            let bare = self.longest(candidates, &without_parameters(path));
            if bare.map(Arc::as_ptr) != literal.map(Arc::as_ptr) {
                return Err(NoApp::Ambiguous);
            }
        }
        literal.ok_or(NoApp::Unrouted)
    }

    fn longest(&self, candidates: &Candidates, path: &str) -> Option<&Arc<AppRoute>> {
        let seg = first_segment(path);
        let under_segment = match self.path_case {
            PathCase::Sensitive => candidates.by_segment.get(seg),
            PathCase::Insensitive => candidates.by_segment.get(&fold(seg, self.path_case)),
        };
        under_segment
            .into_iter()
            .flatten()
            .map(|&i| &self.all[i])
            .find(|a| takes(&a.prefix, path, self.path_case))
            .or_else(|| candidates.root.first().map(|&i| &self.all[i]))
    }

    /// The access decision for `method` on the normal `path` of a request `route`
    /// takes: the app's rules before the gateway's, and the app's `roles` (SPEC §8).
    pub(crate) fn decide<'a>(
        &'a self,
        route: &'a AppRoute,
        method: &str,
        path: &str,
    ) -> crate::core::policy::Decision<'a> {
        crate::core::policy::decide_for_app(
            &route.rules,
            &route.roles,
            &self.rules,
            self.path_case,
            method,
            path,
        )
    }

    /// Whether any app names hosts (else routing needs no host at all).
    pub(crate) fn routes_by_host(&self) -> bool {
        !self.by_host.is_empty()
    }

    /// Whether `host` is one an app names (an absolute `rd` may go there).
    pub(crate) fn is_app_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }

    /// Where a sign-in without `rd` lands on `host`: the landing of the app that takes
    /// the host's `/`, else the landing (or prefix) of the host's first app, else `/`.
    pub(crate) fn landing(&self, host: Option<&str>) -> &str {
        let candidates = match host {
            Some(h) => self.by_host.get(h).unwrap_or(&self.any_host),
            None => &self.any_host,
        };
        if let Some(root) = self.longest(candidates, "/") {
            return root.landing.as_deref().unwrap_or("/");
        }
        // The host's own apps before those of every host, in the order configured.
        let mut ordered: Vec<usize> = candidates.all.clone();
        ordered.sort_by_key(|i| (self.any_host.all.contains(i), *i));
        ordered
            .first()
            .map(|&i| {
                let a = &self.all[i];
                a.landing.as_deref().unwrap_or(a.prefix.as_str())
            })
            .unwrap_or("/")
    }

    /// Every app, for the metrics and the health page.
    pub(crate) fn all(&self) -> &[Arc<AppRoute>] {
        &self.all
    }
}

/// `prefix` takes `path` on a segment boundary, compared as `case` says.
fn takes(prefix: &str, path: &str, case: PathCase) -> bool {
    if prefix == "/" {
        return true;
    }
    let head = match path.get(..prefix.len()) {
        Some(h) => h,
        None => return false,
    };
    let same = match case {
        PathCase::Sensitive => head == prefix,
        PathCase::Insensitive => head.eq_ignore_ascii_case(prefix),
    };
    same && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// The table in force, swapped whole on reload; a request holds the version it
/// started with to its end (a long download outlives a reload untouched).
pub(crate) struct AppsHandle {
    current: RwLock<Arc<Apps>>,
}

impl AppsHandle {
    pub(crate) fn new(apps: Apps) -> Self {
        Self {
            current: RwLock::new(Arc::new(apps)),
        }
    }

    /// The table in force now.
    pub(crate) fn get(&self) -> Arc<Apps> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn replace(&self, apps: Apps) {
        let new = Arc::new(apps);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }
}

pub(crate) use build::build;

#[cfg(test)]
mod tests;
