//! Routing: hosts, longest prefix on segment boundaries, both readings of a path,
//! landing paths and `rd` hosts, from a real validated configuration.

use super::*;
use crate::config::validate::validate;

fn apps(toml_apps: serde_json::Value) -> Apps {
    let cfg = validate(&serde_json::json!({
        "server": { "hostnames": ["records.clinic.example", "lab.clinic.example", "other.clinic.example"] },
        "apps": toml_apps,
    }))
    .unwrap_or_else(|p| panic!("{p:?}"));
    let metrics = crate::metrics::Metrics::new("embedded", false).unwrap();
    build(&cfg, &[], &metrics).unwrap()
}

fn clinic() -> Apps {
    apps(serde_json::json!([
        { "name": "records", "hosts": ["records.clinic.example"], "url": "http://127.0.0.1:1",
          "landing": "/start" },
        { "name": "records-admin", "hosts": ["records.clinic.example"], "path_prefix": "/admin/",
          "url": "http://127.0.0.1:2", "roles": ["doctor"] },
        { "name": "lab", "hosts": ["lab.clinic.example"], "path_prefix": "/lab", "strip_prefix": true,
          "url": "http://127.0.0.1:3" },
        { "name": "pacs", "path_prefix": "/pacs", "url": "http://127.0.0.1:4" },
    ]))
}

fn name(a: &Apps, host: Option<&str>, path: &str) -> Result<String, NoApp> {
    a.route(host, path).map(|r| r.name.to_string())
}

#[test]
fn host_then_longest_prefix_on_segment_boundaries() {
    let a = clinic();
    let r = Some("records.clinic.example");
    assert_eq!(name(&a, r, "/").unwrap(), "records");
    assert_eq!(name(&a, r, "/chart/7").unwrap(), "records");
    assert_eq!(name(&a, r, "/admin").unwrap(), "records-admin");
    assert_eq!(name(&a, r, "/admin/users").unwrap(), "records-admin");
    assert_eq!(name(&a, r, "/administration").unwrap(), "records");
    // An any-host app is a candidate on every host, by its prefix.
    assert_eq!(name(&a, r, "/pacs/study/1").unwrap(), "pacs");
    let lab = Some("lab.clinic.example");
    assert_eq!(name(&a, lab, "/lab").unwrap(), "lab");
    assert_eq!(name(&a, lab, "/lab/results").unwrap(), "lab");
    assert_eq!(name(&a, lab, "/laboratory"), Err(NoApp::Unrouted));
    assert_eq!(name(&a, lab, "/"), Err(NoApp::Unrouted));
    assert_eq!(
        name(&a, Some("other.clinic.example"), "/pacs").unwrap(),
        "pacs"
    );
    assert_eq!(
        name(&a, Some("other.clinic.example"), "/"),
        Err(NoApp::Unrouted)
    );
    assert_eq!(name(&a, None, "/chart"), Err(NoApp::Unrouted));
}

#[test]
fn path_parameters_may_not_cross_into_another_app() {
    let a = clinic();
    let r = Some("records.clinic.example");
    // Tomcat reads "/admin;x/users" as "/admin/users": it must not go to "records".
    assert_eq!(name(&a, r, "/admin;x/users"), Err(NoApp::Ambiguous));
    assert_eq!(name(&a, r, "/chart;jsessionid=1").unwrap(), "records");
    assert_eq!(name(&a, r, "/admin/x;y").unwrap(), "records-admin");
}

#[test]
fn without_apps_one_default_app_takes_everything() {
    let cfg = validate(&serde_json::json!({})).unwrap();
    let metrics = crate::metrics::Metrics::new("embedded", false).unwrap();
    let a = build(&cfg, &[], &metrics).unwrap();
    assert!(!a.routes_by_host());
    for (host, path) in [(None, "/"), (Some("anything"), "/x;y/z"), (None, "/a/b")] {
        assert_eq!(name(&a, host, path).unwrap(), "default");
    }
    assert_eq!(a.landing(None), "/");
}

#[test]
fn landing_and_rd_hosts() {
    let a = clinic();
    assert_eq!(a.landing(Some("records.clinic.example")), "/start");
    assert_eq!(a.landing(Some("lab.clinic.example")), "/lab");
    assert_eq!(a.landing(Some("other.clinic.example")), "/pacs");
    assert!(a.is_app_host("lab.clinic.example"));
    assert!(!a.is_app_host("evil.example"));
}

#[test]
fn logout_paths_match_both_readings() {
    let a = apps(serde_json::json!([
        { "name": "django", "url": "http://127.0.0.1:1", "logout_paths": ["/admin/logout/"] },
    ]));
    let r = a.route(None, "/").unwrap();
    assert!(r.is_logout_path("/admin/logout/", PathCase::Sensitive));
    assert!(r.is_logout_path("/admin/logout/;x", PathCase::Sensitive));
    assert!(!r.is_logout_path("/admin/logout/x", PathCase::Sensitive));
    assert!(r.is_logout_path("/ADMIN/logout/", PathCase::Insensitive));
}
