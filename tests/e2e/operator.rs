//! The operator's first hour (issue 19): `check-config` reports every problem of every
//! stage in one run, messages name the right key once, `gen-cert` writes a pair that
//! passes the checks, and the sign-in pages carry an icon that resolves.

use std::time::Duration;

use crate::flows::{Browser, TestUser, admin, p, users_toml};
use crate::harness::*;

const T: Duration = Duration::from_secs(30);

fn valid() -> GatewayBuilder {
    GatewayBuilder::new("http://127.0.0.1:9").hostnames(&["clinic.example"])
}

fn check_config(p: &Prepared) -> Output {
    let mut cmd = p.cmd();
    cmd.arg("check-config").arg("--config").arg(&p.config_path);
    run(cmd, None, T)
}

/// The problem lines of `out` whose key is exactly `key`.
fn lines_for(out: &Output, key: &str) -> Vec<String> {
    let start = format!("{key}: ");
    out.lines()
        .into_iter()
        .filter(|l| l.starts_with(&start))
        .collect()
}

// ---------------------------------------------------------------- every stage at once

#[test]
fn a_bad_upstream_url_does_not_hide_swapped_certificate_and_key() {
    let p = GatewayBuilder::new("ftp://127.0.0.1/")
        .hostnames(&["clinic.example"])
        .prepare();
    let cert = std::fs::read(&p.cert_path).unwrap();
    let key = std::fs::read(&p.key_path).unwrap();
    std::fs::write(&p.cert_path, key).unwrap();
    std::fs::write(&p.key_path, cert).unwrap();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(lines_for(&out, "upstream.url").len(), 1, "{out}");
    let cert_lines = lines_for(&out, "server.tls_cert");
    let key_lines = lines_for(&out, "server.tls_key");
    assert_eq!(
        cert_lines.len(),
        1,
        "the certificate file is checked\n{out}"
    );
    assert_eq!(key_lines.len(), 1, "the key file is checked too\n{out}");
    assert!(cert_lines[0].contains("swapped"), "{out}");
    assert!(key_lines[0].contains("swapped"), "{out}");
    for l in cert_lines.iter().chain(&key_lines) {
        assert_eq!(
            l.matches("server.tls_").count(),
            1,
            "the key is named once per line: {l}"
        );
    }
}

#[test]
fn a_bad_upstream_url_does_not_hide_missing_key_files() {
    let p = GatewayBuilder::new("ftp://127.0.0.1/")
        .hostnames(&["clinic.example"])
        .prepare();
    std::fs::remove_file(&p.key_path).unwrap();
    std::fs::remove_file(p.dir.path().join("encryption.key")).unwrap();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(lines_for(&out, "upstream.url").len(), 1, "{out}");
    assert_eq!(lines_for(&out, "server.tls_key").len(), 1, "{out}");
    assert_eq!(
        lines_for(&out, "storage.encryption_key_file").len(),
        1,
        "{out}"
    );
}

#[test]
fn a_missing_certificate_does_not_hide_a_missing_users_file() {
    let p = valid().prepare();
    std::fs::remove_file(&p.cert_path).unwrap();
    std::fs::remove_file(&p.users_path).unwrap();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(lines_for(&out, "server.tls_cert").len(), 1, "{out}");
    assert_eq!(lines_for(&out, "users.file").len(), 1, "{out}");
}

#[test]
fn serve_reports_every_stage_at_once_too() {
    let p = valid().prepare();
    std::fs::remove_file(&p.cert_path).unwrap();
    std::fs::remove_file(&p.users_path).unwrap();
    let mut cmd = p.cmd();
    cmd.arg("serve").arg("--config").arg(&p.config_path);
    let out = run(cmd, None, T);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(lines_for(&out, "server.tls_cert").len(), 1, "{out}");
    assert_eq!(lines_for(&out, "users.file").len(), 1, "{out}");
}

// ---------------------------------------------------------------- wording

#[test]
fn a_bad_key_in_the_environment_is_blamed_on_the_environment() {
    let mut p = valid().key_in_env().prepare();
    for (k, v) in p.env.iter_mut() {
        if k == "VESTIBULE_ENCRYPTION_KEY" {
            *v = "dG9vLXNob3J0".to_string();
        }
    }
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert_eq!(
        lines_for(&out, "VESTIBULE_ENCRYPTION_KEY").len(),
        1,
        "{out}"
    );
    assert!(
        lines_for(&out, "storage.encryption_key_file").is_empty(),
        "no key file is configured: it is not to blame\n{out}"
    );
    assert!(!out.all().contains("dG9vLXNob3J0"), "key echoed\n{out}");
}

#[test]
fn a_missing_key_file_says_the_environment_was_tried_too() {
    let p = valid().prepare();
    std::fs::remove_file(p.dir.path().join("encryption.key")).unwrap();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    let l = lines_for(&out, "storage.encryption_key_file");
    assert_eq!(l.len(), 1, "{out}");
    assert!(
        l[0].contains("VESTIBULE_ENCRYPTION_KEY") && l[0].contains("gen-key"),
        "{out}"
    );
}

#[test]
fn absolute_timeout_shorter_than_idle_timeout_is_a_warning() {
    let p = valid()
        .extra("[session]\nidle_timeout = \"30m\"\nabsolute_timeout = \"10m\"")
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout.trim().lines().count(), 1, "{out}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("warning: session.absolute_timeout: 10m is shorter")),
        "{out}"
    );
    let quiet = check_config(&valid().prepare());
    assert!(!quiet.stderr.contains("warning"), "{quiet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_name_that_differs_only_in_case_names_the_stored_user() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .users_toml(&users_toml(&[TestUser::new("dr.house", &["doctor"])]))
        .start()
        .await;
    let out = admin(
        &gw,
        &["users", "add", "Dr.House", "--role", "doctor"],
        Some("a long enough password\n"),
    )
    .await;
    assert_eq!(out.code, Some(2), "{out}");
    let all = out.all();
    assert!(
        all.contains("a user named \"dr.house\" already exists"),
        "{out}"
    );
    assert!(!all.contains("named \"Dr.House\" already exists"), "{out}");
}

// ---------------------------------------------------------------- gen-cert

#[test]
fn gen_cert_writes_the_configured_files_once_and_they_pass_the_checks() {
    let p = valid().prepare();
    std::fs::remove_file(&p.cert_path).unwrap();
    std::fs::remove_file(&p.key_path).unwrap();
    let gen_cert = |extra: &[&str]| {
        let mut cmd = p.cmd();
        cmd.arg("--config")
            .arg(&p.config_path)
            .args([
                "gen-cert",
                "--name",
                "clinic.example",
                "--name",
                "127.0.0.1",
            ])
            .args(extra);
        run(cmd, None, T)
    };
    let out = gen_cert(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&p.key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");
    let first = std::fs::read(&p.cert_path).unwrap();
    let out = check_config(&p);
    assert_eq!(out.code, Some(0), "{out}");

    let again = gen_cert(&[]);
    assert_eq!(again.code, Some(1), "existing files are kept\n{again}");
    assert_eq!(std::fs::read(&p.cert_path).unwrap(), first);
    let forced = gen_cert(&["--force"]);
    assert_eq!(forced.code, Some(0), "{forced}");
    assert_ne!(std::fs::read(&p.cert_path).unwrap(), first);
    assert_eq!(check_config(&p).code, Some(0));
}

// ---------------------------------------------------------------- the icon

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_links_an_icon_that_resolves_to_an_image() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).start().await;
    let b = Browser::new(&gw);
    let login = b.get(&p("/login")).await;
    assert_eq!(login.status, 200, "{}", login.describe());
    let icon = login
        .tags()
        .into_iter()
        .find(|t| t.name == "link" && t.attr("rel").is_some_and(|r| r.contains("icon")))
        .unwrap_or_else(|| panic!("no <link rel=icon> on {}", login.describe()));
    let href = icon.attr("href").expect("icon href");
    assert!(
        href.starts_with(PREFIX),
        "the icon is the gateway's, not the upstream's /favicon.ico: {href}"
    );
    let url = login.url.join(&href).unwrap();
    let r = b.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ctype = content_type(&r);
    assert!(ctype.starts_with("image/"), "{ctype}");
    assert_eq!(Some(ctype.as_str()), icon.attr("type").as_deref());
    let body = r.text().await.unwrap();
    assert!(body.contains("<svg") && body.contains(">V<"), "{body}");
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}
