//! Builds the routing table from a validated configuration: one forwarder (pool,
//! header names) per app, and the per-host candidate lists in the order routing
//! needs them.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;

use super::{AppRoute, Apps, Candidates};
use crate::config::{AppConfig, Config, HeadersConfig};
use crate::metrics::Metrics;
use crate::proxy::client::{ClientError, UpstreamPool};
use crate::proxy::forward::Forwarder;
use crate::proxy::identity_headers::IdentityHeaders;

/// The table for `cfg`; `own_cookies` are the gateway's cookie names, which no
/// upstream ever receives.
pub(crate) fn build(
    cfg: &Config,
    own_cookies: &[String],
    metrics: &Metrics,
) -> Result<Apps, ClientError> {
    // A name one app is told the identity under is one no client may send to any app.
    let every_identity_name: Vec<_> = cfg
        .apps
        .iter()
        .flat_map(|a| a.headers.identity().map(Clone::clone))
        .collect();
    let all = cfg
        .apps
        .iter()
        .map(|a| route(cfg, a, &every_identity_name, own_cookies, metrics).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let order = |list: &mut Vec<usize>| {
        // Longest prefix first; at equal length, a host's own app before an any-host one.
        list.sort_by_key(|&i| {
            (
                std::cmp::Reverse(cfg.apps[i].path_prefix.len()),
                cfg.apps[i].hosts.is_empty(),
            )
        });
    };
    let mut any_host: Vec<usize> = (0..cfg.apps.len())
        .filter(|&i| cfg.apps[i].hosts.is_empty())
        .collect();
    order(&mut any_host);
    let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, a) in cfg.apps.iter().enumerate() {
        for h in &a.hosts {
            by_host.entry(h.clone()).or_default().push(i);
        }
    }
    for list in by_host.values_mut() {
        list.extend(&any_host);
        order(list);
    }
    // The hosts an absolute `rd` may name: every app's, and those the gateway serves
    // itself (a protected host in forward-auth mode is one of them).
    let mut hosts: Vec<String> = by_host
        .keys()
        .chain(&cfg.server.hostnames)
        .cloned()
        .collect();
    hosts.sort();
    hosts.dedup();
    let case = cfg.policy.path_case;
    let by_host = by_host
        .into_iter()
        .map(|(h, list)| (h, Candidates::new(list, &all, case)))
        .collect();
    let any_host = Candidates::new(any_host, &all, case);
    Ok(Apps {
        all,
        by_host,
        any_host,
        rules: cfg.policy.rules.clone(),
        path_case: cfg.policy.path_case,
        hosts,
    })
}

fn route(
    cfg: &Config,
    a: &AppConfig,
    every_identity_name: &[http::HeaderName],
    own_cookies: &[String],
    metrics: &Metrics,
) -> Result<AppRoute, ClientError> {
    let up = &a.upstream;
    let headers = HeadersConfig {
        strip: a
            .headers
            .strip
            .iter()
            .chain(every_identity_name)
            .cloned()
            .collect(),
        ..a.headers.clone()
    };
    let forwarder = Forwarder {
        upstream: UpstreamPool::new(up)?,
        upstream_host: HeaderValue::from_str(up.authority.as_str())
            .unwrap_or(HeaderValue::from_static("localhost")),
        preserve_host: up.preserve_host,
        response_timeout: up.response_timeout,
        identity: IdentityHeaders::new(&headers),
        trusted_proxies: cfg.server.trusted_proxies.clone(),
        own_cookies: own_cookies.to_vec(),
    };
    Ok(AppRoute {
        name: Arc::from(a.name.as_str()),
        prefix: a.path_prefix.clone(),
        strip_prefix: a.strip_prefix && a.path_prefix != "/",
        roles: a.roles.clone(),
        rules: a.rules.clone(),
        forwarder,
        landing: a.landing.clone(),
        logout_paths: a.logout_paths.clone(),
        websocket_idle_timeout: up.websocket_idle_timeout,
        metrics: metrics.for_app(&a.name),
        upstream_origin: format!("{}://{}", up.scheme, up.authority).to_ascii_lowercase(),
    })
}
