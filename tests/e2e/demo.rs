//! `vestibule demo` as a new user meets it (issue 19): the address printed is the one
//! bound (`--listen`, `VESTIBULE__SERVER__LISTEN`, port 0), nothing but an error is
//! printed when the port is busy, `--config` is refused rather than ignored, and the
//! admin command the demo prints works as printed; and (issue 20) it shows two apps
//! behind one sign-in, the staff portal refusing a patient.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A running `vestibule demo` in its own directory; killed on drop.
struct Demo {
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = vestibule_cmd(dir.path());
        cmd.arg("demo").args(args).envs(env.iter().copied());
        cmd.stdout(std::fs::File::create(dir.path().join("out")).unwrap());
        cmd.stderr(std::fs::File::create(dir.path().join("err")).unwrap());
        cmd.stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn vestibule demo");
        Demo { dir, child }
    }

    fn output(&self) -> Output {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        Output {
            code: None,
            stdout: read("out"),
            stderr: read("err"),
        }
    }

    /// Waits until the banner is complete or the process ended; returns the exit code
    /// (None while running) and the output so far.
    fn settle(&mut self) -> (Option<i32>, Output) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = self.output();
                out.code = status.code();
                return (status.code(), out);
            }
            let out = self.output();
            if out.stdout.contains("Stop with Ctrl-C") {
                return (None, out);
            }
            assert!(Instant::now() < deadline, "demo did not start\n{out}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn passwords(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("demo-data/passwords.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string()))
            .collect()
    }
}

/// The `https://HOST:PORT/` the banner tells the user to open.
fn opened_address(out: &Output) -> String {
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("Open https://"))
        .unwrap_or_else(|| panic!("no address printed\n{out}"));
    let start = line.find("https://").unwrap() + "https://".len();
    let rest = &line[start..];
    rest[..rest.find('/').unwrap()].to_string()
}

async fn healthy(authority: &str) -> bool {
    init();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://{authority}{PREFIX}/health");
    matches!(client.get(url).send().await, Ok(r) if r.status() == 200)
}

/// Runs a command line as the banner printed it (the program replaced by this
/// build's binary, which is what was run), from the demo's directory.
fn run_printed(dir: &Path, line: &str) -> Output {
    let mut words = line.split_whitespace();
    let program = words.next().expect("a command");
    assert!(program.ends_with("vestibule"), "{line}");
    let mut cmd: Command = vestibule_cmd(dir);
    cmd.args(words);
    run(cmd, None, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_port_it_bound_and_an_admin_command_that_works() {
    // VESTIBULE_CONFIG in the environment is not a `--config` flag: no refusal.
    let mut demo = Demo::spawn(
        &["--listen", "127.0.0.1:0"],
        &[("VESTIBULE_CONFIG", "/nonexistent/vestibule.toml")],
    );
    let (code, out) = demo.settle();
    assert_eq!(code, None, "demo exited\n{out}");
    let authority = opened_address(&out);
    assert!(authority.starts_with("127.0.0.1:"), "{out}");
    assert_ne!(authority, "127.0.0.1:0", "the bound port is printed\n{out}");
    assert!(
        healthy(&authority).await,
        "nothing healthy at {authority}\n{out}"
    );

    let admin_line = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with("users list"))
        .unwrap_or_else(|| panic!("no admin command printed\n{out}"));
    assert!(
        admin_line.contains("--config demo-data/vestibule.toml"),
        "{admin_line}"
    );
    let listed = run_printed(demo.dir.path(), admin_line);
    assert_eq!(listed.code, Some(0), "{listed}");
    for user in ["doctor", "clerk", "patient"] {
        assert!(listed.stdout.contains(user), "{listed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_follows_vestibule_server_listen_and_the_flag_beats_it() {
    let port = free_port();
    let mut demo = Demo::spawn(
        &[],
        &[("VESTIBULE__SERVER__LISTEN", &format!("127.0.0.1:{port}"))],
    );
    let (code, out) = demo.settle();
    assert_eq!(code, None, "demo exited\n{out}");
    assert_eq!(opened_address(&out), format!("127.0.0.1:{port}"), "{out}");
    assert!(healthy(&format!("127.0.0.1:{port}")).await, "{out}");
    drop(demo);

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_env = busy.local_addr().unwrap().to_string();
    let mut demo = Demo::spawn(
        &["--listen", "127.0.0.1:0"],
        &[("VESTIBULE__SERVER__LISTEN", &busy_env)],
    );
    let (code, out) = demo.settle();
    assert_eq!(code, None, "--listen must win over the environment\n{out}");
    assert_ne!(opened_address(&out), busy_env, "{out}");
}

#[test]
fn demo_on_a_busy_port_prints_the_error_and_no_passwords() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut demo = Demo::spawn(&["--listen", &addr], &[]);
    let (code, out) = demo.settle();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.stderr.contains("cannot listen on"), "{out}");
    let passwords = demo.passwords();
    assert_eq!(passwords.len(), 3, "demo data was prepared");
    for pw in passwords {
        assert!(!out.all().contains(&pw), "a password was printed\n{out}");
    }
    assert!(!out.stdout.contains("Sign in as"), "{out}");
}

#[test]
fn demo_refuses_a_config_flag_instead_of_ignoring_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["demo", "--config", "mine.toml"][..],
        &["--config", "mine.toml", "demo"][..],
    ] {
        let mut cmd = vestibule_cmd(dir.path());
        cmd.args(args);
        let out = run(cmd, None, Duration::from_secs(30));
        assert_eq!(out.code, Some(2), "vestibule {}\n{out}", args.join(" "));
        assert!(out.stderr.starts_with("--config: "), "{out}");
        assert!(
            !dir.path().join("demo-data").exists(),
            "refused before writing anything"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_two_apps_behind_one_sign_in_and_the_staff_portal_refuses_a_patient() {
    let mut demo = Demo::spawn(&["--listen", "127.0.0.1:0"], &[]);
    let (code, out) = demo.settle();
    assert_eq!(code, None, "demo exited\n{out}");
    let authority = opened_address(&out);
    assert!(
        out.stdout.contains(&format!("https://{authority}/staff/")),
        "the banner names the second app\n{out}"
    );
    let port: u16 = authority.rsplit(':').next().unwrap().parse().unwrap();
    init();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let b = crate::multihost::HostBrowser::with_client(client, port);
    let host = "127.0.0.1";
    let passwords =
        std::fs::read_to_string(demo.dir.path().join("demo-data/passwords.txt")).unwrap();
    let pw = passwords
        .lines()
        .find_map(|l| l.strip_prefix("patient "))
        .expect("the patient's password")
        .to_string();
    let r = b.login(host, "patient", &pw, Some("/")).await;
    assert_eq!(r.status, 303, "{}", r.describe());

    let records = b.get(host, "/").await;
    assert_eq!(records.status, 200, "{}", records.describe());
    assert!(
        records.body.contains("<h1>Records</h1>"),
        "{}",
        records.describe()
    );
    assert!(
        records.body.contains("remote-user"),
        "{}",
        records.describe()
    );
    let staff = b.get(host, "/staff/").await;
    assert_eq!(
        staff.status,
        403,
        "a patient may not use the staff portal: {}",
        staff.describe()
    );
    assert!(
        !staff.body.contains("Staff portal (demo app)"),
        "{}",
        staff.describe()
    );

    // A clerk, once enrolled, reaches the portal, which sees "/" and its own headers.
    let clerk = crate::multihost::HostBrowser::with_client(b.client.clone(), port);
    let pw = passwords
        .lines()
        .find_map(|l| l.strip_prefix("clerk "))
        .expect("the clerk's password")
        .to_string();
    let r = clerk.login(host, "clerk", &pw, Some("/staff/")).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    let setup = clerk.get_url(r.location_url().unwrap()).await;
    let shown = crate::flows::read_setup(&setup);
    let phone = crate::flows::Authenticator::new(shown.secret, 30);
    let code = phone.fresh().await;
    let done = clerk
        .submit(&setup, &crate::flows::p("/setup"), &[("code", &code)])
        .await;
    assert_eq!(done.status, 200, "{}", done.describe());
    let staff = clerk.get(host, "/staff/").await;
    assert_eq!(staff.status, 200, "{}", staff.describe());
    assert!(
        staff.body.contains("<h1>Staff portal</h1>"),
        "{}",
        staff.describe()
    );
    assert!(
        staff.body.contains("<code>GET /</code>"),
        "{}",
        staff.describe()
    );
    assert!(staff.body.contains("x-staff-user"), "{}", staff.describe());
    assert!(!staff.body.contains("remote-user"), "{}", staff.describe());
}
