//! The tamper-evident audit file (SPEC §13): lines written by the real gateway carry
//! `seq`, `instance` and `chain`; `vestibule audit verify` passes the untouched file
//! and names the first changed, removed, inserted, reordered or cut line; the chain
//! runs on across SIGHUP rotation, a restart and admin commands appending while the
//! gateway runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::flows::*;
use crate::harness::*;

fn chained_gateway(up: &Upstream, users: &[TestUser]) -> GatewayBuilder {
    Gateway::builder(up)
        .users_toml(&users_toml(users))
        .extra("[log]\nformat = \"json\"\naudit_file = \"audit.log\"\n")
}

fn audit_path(gw: &Gateway) -> PathBuf {
    gw.p.dir.path().join("audit.log")
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.join("\n") + "\n").unwrap();
}

/// `vestibule audit verify FILES…` against the gateway's configuration.
fn verify<'a>(gw: &'a Gateway, files: &[&Path]) -> impl Future<Output = Output> + use<'a> {
    let mut args = vec!["audit".to_string(), "verify".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        admin(gw, &args, None).await
    }
}

async fn wait_for(mut cond: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond()
}

/// A failed sign-in of `who`: one `login.failure` line.
async fn fail(b: &Browser, who: &str) {
    assert_eq!(b.login(who, "wrong-password-123", "/").await.status, 401);
}

fn assert_intact(out: &Output, events: usize) {
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout
            .contains(&format!("{events} events, chain intact")),
        "{}",
        out.all()
    );
}

/// Exit 1, naming `file` line `line` and saying `what`.
fn assert_broken(out: &Output, file: &Path, line: usize, what: &str) {
    assert_eq!(out.code, Some(1), "{}", out.all());
    let expect = format!("{}, line {line}: ", file.display());
    assert!(
        out.stderr.contains(&expect) && out.stderr.contains(what),
        "expected {expect:?} … {what:?} in:\n{}",
        out.all()
    );
}

#[tokio::test]
async fn audit_verify_passes_the_untouched_file_and_names_each_kind_of_tampering() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let gw = chained_gateway(&up, std::slice::from_ref(&pat))
        .start()
        .await;
    let b = Browser::new(&gw);
    for who in ["alice", "bob", "carol"] {
        fail(&b, who).await;
    }
    b.login_ok(&pat, "/").await;
    fail(&b, "dave").await;
    fail(&b, "erin").await;
    let live = audit_path(&gw);
    let lines = read_lines(&live);
    assert_eq!(lines.len(), 6, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("{{\"seq\":{},\"instance\":\"", i + 1)),
            "{l}"
        );
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["instance"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{}", gw.port())),
            "instance is host:port: {l}"
        );
        assert_eq!(v["chain"].as_str().unwrap().len(), 64, "{l}");
        assert!(l.ends_with("\"}"), "chain is the last member: {l}");
    }
    let ok = verify(&gw, &[&live]).await;
    assert_intact(&ok, 6);
    let key = std::fs::read_to_string(gw.p.dir.path().join("encryption.key")).unwrap();
    assert!(!ok.all().contains(key.trim()), "the key is never printed");

    let copy = gw.p.dir.path().join("tampered.log");
    let check = |edited: Vec<String>| {
        write_lines(&copy, &edited);
        verify(&gw, &[&copy])
    };

    // A field changed: the line names itself.
    let mut changed = lines.clone();
    changed[2] = changed[2].replace("\"user\":\"carol\"", "\"user\":\"carl\"");
    assert_ne!(changed, lines);
    assert_broken(&check(changed).await, &copy, 3, "seq 3 was changed");

    // A line deleted.
    let mut removed = lines.clone();
    removed.remove(3);
    assert_broken(
        &check(removed).await,
        &copy,
        4,
        "seq 5 follows seq 3: 1 line removed before line 4",
    );

    // A forged line inserted, with the next seq and a made-up chain.
    let mut inserted = lines.clone();
    let forged = lines[3]
        .replace("\"user\":\"pat\"", "\"user\":\"mallory\"")
        .replace("\"seq\":4,", "\"seq\":5,");
    inserted.insert(4, forged);
    assert_broken(
        &check(inserted).await,
        &copy,
        5,
        "seq 5 was changed or inserted",
    );

    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert_broken(
        &check(swapped).await,
        &copy,
        2,
        "seq 3 follows seq 1: lines were reordered",
    );

    // The file cut in the middle of a line.
    let text = std::fs::read(&live).unwrap();
    let cut = text.len() - lines[5].len() / 2;
    std::fs::write(&copy, &text[..cut]).unwrap();
    assert_broken(
        &verify(&gw, &[&copy]).await,
        &copy,
        6,
        "ends in the middle of this line",
    );

    // And the live file is still intact after all that.
    assert_intact(&verify(&gw, &[&live]).await, 6);
}

#[tokio::test]
async fn the_chain_runs_on_across_sighup_rotation_and_a_restart() {
    let up = Upstream::start().await;
    let mut gw = chained_gateway(&up, &[]).start().await;
    let dir = gw.p.dir.path().to_path_buf();
    let (live, rotated) = (dir.join("audit.log"), dir.join("audit.log.1"));
    let b = Browser::new(&gw);
    fail(&b, "before-rename").await;
    std::fs::rename(&live, &rotated).unwrap();
    fail(&b, "between").await;
    gw.signal(libc::SIGHUP);
    let stdout = dir.join("stdout.log");
    assert!(
        wait_for(
            || std::fs::read_to_string(&stdout)
                .unwrap_or_default()
                .contains("audit file reopened"),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        gw.log_tail()
    );
    fail(&b, "after-signal").await;
    gw.kill9_and_restart().await;
    let b = Browser::new(&gw);
    fail(&b, "after-restart").await;

    assert_eq!(read_lines(&rotated).len(), 2);
    let today = read_lines(&live);
    assert_eq!(today.len(), 2);
    assert!(today[0].starts_with("{\"seq\":3,"), "{}", today[0]);
    assert!(today[1].starts_with("{\"seq\":4,"), "{}", today[1]);
    assert_intact(&verify(&gw, &[&rotated, &live]).await, 4);

    // Today's file alone: verified from its first line, and the output says so.
    let alone = verify(&gw, &[&live]).await;
    assert_intact(&alone, 2);
    assert!(
        alone.stdout.contains("starts at seq 3, not 1"),
        "{}",
        alone.all()
    );

    // Files in the wrong order, and yesterday's last line cut off: both found.
    assert_broken(
        &verify(&gw, &[&live, &rotated]).await,
        &rotated,
        1,
        "a new chain starts here",
    );
    let mut old = read_lines(&rotated);
    old.pop();
    write_lines(&rotated, &old);
    assert_broken(
        &verify(&gw, &[&rotated, &live]).await,
        &live,
        1,
        "seq 3 follows seq 1: 1 line removed before line 1",
    );
}

#[tokio::test]
async fn admin_commands_appending_while_serve_runs_keep_one_chain() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let gw = chained_gateway(&up, std::slice::from_ref(&pat))
        .start()
        .await;
    let live = audit_path(&gw);
    // Sign-ins on the gateway and unlocks from the command line, all at once.
    let signins = async {
        for i in 0..12 {
            let b = Browser::new(&gw);
            fail(&b, &format!("user{i}")).await;
        }
    };
    let unlocks = async {
        let runs = (0..4).map(|_| admin(&gw, &["users", "unlock", "pat"], None));
        for out in futures_util::future::join_all(runs).await {
            assert_eq!(out.code, Some(0), "{}", out.all());
        }
    };
    tokio::join!(signins, unlocks);
    let lines = read_lines(&live);
    assert_eq!(lines.len(), 16, "{lines:?}");
    let instances: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["instance"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        instances.iter().filter(|i| i.ends_with(":admin")).count(),
        4
    );
    assert_eq!(
        instances
            .iter()
            .filter(|i| i.ends_with(&format!(":{}", gw.port())))
            .count(),
        12
    );
    assert_intact(&verify(&gw, &[&live]).await, 16);
}

#[tokio::test]
async fn audit_verify_refuses_bad_usage_and_a_missing_key_with_exit_2() {
    let up = Upstream::start().await;
    let gw = chained_gateway(&up, &[]).start().await;
    let b = Browser::new(&gw);
    fail(&b, "someone").await;
    let live = audit_path(&gw);
    assert_eq!(admin(&gw, &["audit", "verify"], None).await.code, Some(2));
    let missing = gw.p.dir.path().join("no-such.log");
    let out = verify(&gw, &[&missing]).await;
    assert_eq!(out.code, Some(2), "{}", out.all());
    // Without the key, nothing can be checked: exit 2, not a verdict.
    let key = gw.p.dir.path().join("encryption.key");
    std::fs::rename(&key, gw.p.dir.path().join("elsewhere.key")).unwrap();
    let out = verify(&gw, &[&live]).await;
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.stderr.contains("encryption_key_file"), "{}", out.all());
}

/// The Python check printed in docs/operations.md "Verifying the audit log".
fn documented_python_check() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let section = &doc[doc.find("### Verifying the audit log").unwrap()..];
    let start = section.find("```python\n").unwrap() + "```python\n".len();
    section[start..start + section[start..].find("```").unwrap()].to_string()
}

/// Runs the documented Python check in `dir` (which holds `encryption.key` and
/// `audit.log`).
fn python_check(dir: &Path) -> Output {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c")
        .arg(documented_python_check())
        .current_dir(dir);
    run(cmd, None, Duration::from_secs(30))
}

#[tokio::test]
async fn the_documented_rule_reimplemented_in_python_accepts_the_file_and_catches_an_edit() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let gw = chained_gateway(&up, std::slice::from_ref(&pat))
        .start()
        .await;
    let b = Browser::new(&gw);
    fail(&b, "alice").await;
    b.login_ok(&pat, "/").await;
    fail(&b, "bob").await;
    let out = python_check(gw.p.dir.path());
    assert_eq!(out.code, Some(0), "{}", out.all());

    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        gw.p.dir.path().join("encryption.key"),
        other.path().join("encryption.key"),
    )
    .unwrap();
    let mut lines = read_lines(&audit_path(&gw));
    lines[1] = lines[1].replace("\"user\":\"pat\"", "\"user\":\"bob\"");
    write_lines(&other.path().join("audit.log"), &lines);
    let out = python_check(other.path());
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(out.stderr.contains("line 2: changed"), "{}", out.all());
}
