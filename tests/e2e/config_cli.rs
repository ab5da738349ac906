//! Command line and configuration: SPEC §2 (commands, exit codes, `--config`,
//! `VESTIBULE_CONFIG`) and §3 (validation, env overrides, encryption key).

use std::time::{Duration, Instant};

use crate::harness::*;

const T: Duration = Duration::from_secs(20);

/// A complete, valid configuration (TLS on, hostnames set so nothing warns).
fn valid() -> GatewayBuilder {
    GatewayBuilder::new("http://127.0.0.1:9")
        .hostnames(&["clinic.example"])
        .bypass("/static/")
        .extra(
            "[session]\nidle_timeout = \"30m\"\nabsolute_timeout = \"12h\"\n\n\
             [remember_device]\nduration = \"30d\"\n\n\
             [lockout]\nduration = \"90s\"\nmax_duration = \"1h\"\n\n\
             [totp]\nalgorithm = \"SHA256\"\n",
        )
}

fn check_config(p: &Prepared) -> Output {
    let mut cmd = p.cmd();
    cmd.arg("check-config").arg("--config").arg(&p.config_path);
    run(cmd, None, T)
}

/// True when some output line reads `KEY: …` with KEY starting with `key_start`
/// and containing `key_has` before the first `:` that ends the key.
fn names_key(out: &Output, key_start: &str, key_has: &str) -> bool {
    out.lines()
        .iter()
        .any(|l| line_names_key(l, key_start, key_has))
}

fn line_names_key(line: &str, key_start: &str, key_has: &str) -> bool {
    let l = line.trim_start_matches(['-', '*', ' ']);
    let Some(rest) = l.strip_prefix(key_start) else {
        return false;
    };
    let Some(colon) = rest.find(": ") else {
        return false;
    };
    let key = &l[..key_start.len() + colon];
    !key.contains(' ') && key.contains(key_has)
}

// ---------------------------------------------------------------- check-config

#[test]
fn check_config_accepts_a_valid_config_with_a_one_line_summary() {
    let p = valid().prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(0), "{out}");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "check-config on a valid config prints one summary line on stdout:\n{out}"
    );
}

#[test]
fn check_config_rejects_an_unknown_key_naming_it() {
    let p = valid().server_extra("listn = \"0.0.0.0:1\"").prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        names_key(&out, "server.listn", "listn"),
        "expected a `server.listn: …` line\n{out}"
    );
}

#[test]
fn check_config_rejects_an_unknown_section_naming_it() {
    let p = valid().extra("[sesion]\nidle_timeout = \"30m\"").prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        names_key(&out, "sesion", "sesion"),
        "expected a `sesion…: …` line\n{out}"
    );
}

#[test]
fn check_config_rejects_a_bad_duration_naming_the_key() {
    let p = valid()
        .upstream_extra("response_timeout = \"soon\"")
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        names_key(&out, "upstream.response_timeout", "response_timeout"),
        "{out}"
    );
}

#[test]
fn check_config_rejects_an_upstream_url_that_is_not_http_or_https() {
    let p = GatewayBuilder::new("ftp://127.0.0.1/")
        .hostnames(&["clinic.example"])
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(names_key(&out, "upstream.url", "url"), "{out}");
}

#[test]
fn check_config_rejects_a_bad_access_value_naming_the_rule() {
    let p = valid()
        .rule("path_prefix = \"/x/\"\naccess = \"maybe\"")
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        names_key(&out, "policy.rules", "access"),
        "expected a `policy.rules[…].access: …` line\n{out}"
    );
}

#[test]
fn check_config_rejects_a_bad_totp_algorithm() {
    let p = GatewayBuilder::new("http://127.0.0.1:9")
        .extra("[totp]\nalgorithm = \"MD5\"")
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(names_key(&out, "totp.algorithm", "algorithm"), "{out}");
}

#[test]
fn check_config_reports_every_value_problem_each_on_its_own_line() {
    let p = GatewayBuilder::new("ftp://127.0.0.1/")
        .upstream_extra("response_timeout = \"soon\"")
        .extra("[totp]\nalgorithm = \"MD5\"")
        .rule("path_prefix = \"/x/\"\naccess = \"maybe\"")
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    let lines = out.lines();
    let wanted = [
        ("upstream.url", "url"),
        ("upstream.response_timeout", "response_timeout"),
        ("totp.algorithm", "algorithm"),
        ("policy.rules", "access"),
    ];
    let mut used = vec![];
    for (start, has) in wanted {
        let i = lines
            .iter()
            .position(|l| line_names_key(l, start, has))
            .unwrap_or_else(|| panic!("no line names {start}…{has}\n{out}"));
        assert!(
            !used.contains(&i),
            "two problems share one line: {}",
            lines[i]
        );
        used.push(i);
    }
}

#[test]
fn check_config_reports_an_unknown_key_and_a_bad_value_together() {
    let p = valid()
        .server_extra("listn = \"0.0.0.0:1\"")
        .upstream_extra("connect_timeout = \"soon\"")
        .prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(names_key(&out, "server.listn", "listn"), "{out}");
    assert!(
        names_key(&out, "upstream.connect_timeout", "connect_timeout"),
        "all problems at once, not the first only\n{out}"
    );
}

#[test]
fn check_config_rejects_an_unparsable_users_file() {
    let p = valid().users_toml("[[users]\nusername = ").prepare();
    let out = check_config(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.all().to_ascii_lowercase().contains("users"),
        "the problem names the users file\n{out}"
    );
}

#[test]
fn check_config_on_a_missing_config_file_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = vestibule_cmd(dir.path());
    cmd.arg("check-config")
        .arg("--config")
        .arg(dir.path().join("nope.toml"));
    let out = run(cmd, None, T);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.all().contains("nope.toml"), "{out}");
}

// ---------------------------------------------------------------- where the config comes from

#[test]
fn config_option_is_accepted_before_or_after_the_command() {
    let good = valid().prepare();
    let bad = valid().server_extra("listn = \"x\"").prepare();
    for (p, want) in [(&good, 0), (&bad, 2)] {
        let mut before = p.cmd();
        before
            .arg("--config")
            .arg(&p.config_path)
            .arg("check-config");
        let out = run(before, None, T);
        assert_eq!(out.code, Some(want), "--config before the command\n{out}");
        let mut after = p.cmd();
        after
            .arg("check-config")
            .arg("--config")
            .arg(&p.config_path);
        let out = run(after, None, T);
        assert_eq!(out.code, Some(want), "--config after the command\n{out}");
    }
}

#[test]
fn vestibule_config_env_var_selects_the_config_file() {
    let good = valid().prepare();
    let mut cmd = good.cmd();
    cmd.env("VESTIBULE_CONFIG", &good.config_path)
        .arg("check-config");
    let out = run(cmd, None, T);
    assert_eq!(out.code, Some(0), "{out}");

    let bad = valid().server_extra("listn = \"x\"").prepare();
    let mut cmd = bad.cmd();
    cmd.env("VESTIBULE_CONFIG", &bad.config_path)
        .arg("check-config");
    let out = run(cmd, None, T);
    assert_eq!(
        out.code,
        Some(2),
        "VESTIBULE_CONFIG must be the file read\n{out}"
    );
    assert!(names_key(&out, "server.listn", "listn"), "{out}");
}

#[test]
fn env_override_replaces_a_config_value() {
    let p = GatewayBuilder::new("ftp://127.0.0.1/")
        .hostnames(&["clinic.example"])
        .prepare();
    let mut cmd = p.cmd();
    cmd.env("VESTIBULE__UPSTREAM__URL", "http://127.0.0.1:9")
        .arg("check-config")
        .arg("--config")
        .arg(&p.config_path);
    let out = run(cmd, None, T);
    assert_eq!(
        out.code,
        Some(0),
        "VESTIBULE__UPSTREAM__URL must override upstream.url\n{out}"
    );

    let p = valid().prepare();
    let mut cmd = p.cmd();
    cmd.env("VESTIBULE__SESSION__IDLE_TIMEOUT", "soon")
        .arg("check-config")
        .arg("--config")
        .arg(&p.config_path);
    let out = run(cmd, None, T);
    assert_eq!(
        out.code,
        Some(2),
        "an overridden value is validated like the file's\n{out}"
    );
    assert!(
        names_key(&out, "session.idle_timeout", "idle_timeout"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_override_of_upstream_url_is_used_by_serve() {
    let up = Upstream::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::builder_url(&dead)
        .bypass("/static/")
        .env("VESTIBULE__UPSTREAM__URL", &up.url())
        .start()
        .await;
    let r = gw
        .client()
        .get(gw.url("/static/via-env"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "requests go to the overriding upstream URL"
    );
    assert_eq!(up.last().uri, "/static/via-env");
}

// ---------------------------------------------------------------- serve refuses bad input

/// Runs `serve` expecting it to exit by itself; fails if the port ever accepts.
fn serve_expecting_exit(p: &Prepared) -> Output {
    let out_path = p.dir.path().join("serve.out");
    let err_path = p.dir.path().join("serve.err");
    let mut cmd = p.cmd();
    cmd.arg("serve").arg("--config").arg(&p.config_path);
    cmd.stdout(std::fs::File::create(&out_path).unwrap());
    cmd.stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bound = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], p.port).into(),
            Duration::from_millis(100),
        )
        .is_ok()
        {
            bound = true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "serve kept running with a config it should refuse\n{out}"
    );
    assert!(
        !bound,
        "serve bound the port before refusing its configuration\n{out}"
    );
    out
}

#[test]
fn serve_with_a_broken_config_exits_2_without_binding() {
    let p = valid()
        .server_extra("listn = \"x\"")
        .upstream_extra("connect_timeout = \"soon\"")
        .prepare();
    let out = serve_expecting_exit(&p);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        names_key(&out, "server.listn", "listn"),
        "serve reports problems like check-config\n{out}"
    );
}

#[test]
fn serve_without_an_encryption_key_refuses_and_says_how_to_fix_it() {
    let p = valid().no_key_file().prepare();
    let out = serve_expecting_exit(&p);
    assert_ne!(out.code, Some(0), "{out}");
    let all = out.all();
    for needle in ["encryption_key_file", "VESTIBULE_ENCRYPTION_KEY", "gen-key"] {
        assert!(
            all.contains(needle),
            "the refusal must mention {needle}\n{out}"
        );
    }
}

#[test]
fn serve_with_a_malformed_encryption_key_refuses() {
    let p = valid().prepare();
    std::fs::write(p.dir.path().join("encryption.key"), "dG9vLXNob3J0\n").unwrap();
    let out = serve_expecting_exit(&p);
    assert_ne!(
        out.code,
        Some(0),
        "a key that is not 32 bytes must be refused\n{out}"
    );
    assert!(
        !out.all().contains("dG9vLXNob3J0"),
        "the key material must not be echoed\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_accepts_the_key_from_vestibule_encryption_key() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/static/")
        .key_in_env()
        .start()
        .await;
    assert_eq!(
        gw.client()
            .get(gw.url("/static/k"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

// ---------------------------------------------------------------- small commands

#[test]
fn gen_key_prints_a_fresh_base64_32_byte_key_each_run() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let mut keys = vec![];
    for _ in 0..2 {
        let mut cmd = vestibule_cmd(dir.path());
        cmd.arg("gen-key");
        let out = run(cmd, None, T);
        assert_eq!(out.code, Some(0), "{out}");
        let key = out.stdout.trim().to_string();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&key)
            .unwrap_or_else(|e| panic!("not base64 ({e}): {key:?}"));
        assert_eq!(bytes.len(), 32, "{key:?}");
        keys.push(key);
    }
    assert_ne!(keys[0], keys[1], "gen-key must be random");
}

#[test]
fn help_is_available_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["demo"],
        &["check-config"],
        &["hash-password"],
        &["gen-key"],
        &["users"],
        &["users", "add"],
        &["users", "list"],
        &["users", "disable"],
        &["users", "enable"],
        &["users", "set-password"],
        &["users", "set-roles"],
        &["users", "unlock"],
        &["2fa"],
        &["2fa", "status"],
        &["2fa", "reset"],
        &["sessions"],
        &["sessions", "revoke"],
        &["sessions", "list"],
    ];
    let mut failures = vec![];
    for c in commands {
        let mut cmd = vestibule_cmd(dir.path());
        cmd.args(*c).arg("--help");
        let out = run(cmd, None, T);
        if out.code != Some(0) || out.stdout.trim().is_empty() {
            failures.push(format!("vestibule {} --help: {out}", c.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    let mut cmd = vestibule_cmd(dir.path());
    cmd.arg("--help");
    let out = run(cmd, None, T);
    for name in [
        "serve",
        "demo",
        "check-config",
        "hash-password",
        "gen-key",
        "users",
        "2fa",
        "sessions",
    ] {
        assert!(
            out.stdout.contains(name),
            "top-level help lists {name}\n{out}"
        );
    }
}

#[test]
fn unknown_command_or_option_is_bad_usage_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["frobnicate"][..],
        &["serve", "--no-such-flag"][..],
        &["users", "add"][..],
    ] {
        let mut cmd = vestibule_cmd(dir.path());
        cmd.args(args);
        let out = run(cmd, None, T);
        assert_eq!(out.code, Some(2), "vestibule {}\n{out}", args.join(" "));
    }
}

/// `[webauthn]` (SPEC §10) from the environment alone: validated like the file's, every
/// problem named by its key, and a right value accepted.
#[test]
fn webauthn_keys_are_checked_and_overridden_from_the_environment() {
    let p = valid().prepare();
    let mut cmd = p.cmd();
    cmd.env("VESTIBULE__WEBAUTHN__ENABLED", "true")
        .env("VESTIBULE__WEBAUTHN__RP_ID", "10.0.0.5")
        .env("VESTIBULE__WEBAUTHN__USER_VERIFICATION", "sometimes")
        .arg("check-config")
        .arg("--config")
        .arg(&p.config_path);
    let out = run(cmd, None, T);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(names_key(&out, "webauthn.rp_id", "rp_id"), "{out}");
    assert!(
        names_key(&out, "webauthn.user_verification", "user_verification"),
        "{out}"
    );
    let mut cmd = p.cmd();
    cmd.env("VESTIBULE__WEBAUTHN__ENABLED", "true")
        .env("VESTIBULE__WEBAUTHN__PASSWORDLESS", "true")
        .arg("check-config")
        .arg("--config")
        .arg(&p.config_path);
    let out = run(cmd, None, T);
    assert_eq!(
        out.code,
        Some(0),
        "rp_id defaults to server.hostnames[0]\n{out}"
    );
}
