//! The Django example of docs/upstream-apps.md, checked against real Django (from PyPI;
//! scripts/test.sh installs it): a one-file project (tests/upstream_apps/django_app.py)
//! configured as the guide says runs behind the real gateway with a renamed user header,
//! and `request.user` is the signed-in user; client-sent copies of the header never
//! make anyone a Django user; Django's own CSRF check passes for a form posted through
//! the gateway.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use crate::flows::{Browser, TestUser, users_toml};
use crate::harness::*;

/// The Django process; killed on drop.
struct Django(Child);

impl Drop for Django {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Django {
    /// Starts the project on `port` and waits for its "ready" line.
    fn start(port: u16, origin: &str) -> Django {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/upstream_apps/django_app.py"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .env("VESTIBULE_USER_HEADER", "X-Clinic-User")
            .env("VESTIBULE_GROUPS_HEADER", "X-Clinic-Roles")
            .env("VESTIBULE_ORIGIN", origin)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 must be installed (scripts/test.sh installs Django for it)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        // Blocks until Django prints "ready" or exits (EOF); no timing guess involved.
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the Django test project did not start (is Django installed? scripts/test.sh installs it):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Django(child)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_remote_user_middleware_sees_the_signed_in_user() {
    let django_port = free_port();
    let patient = TestUser::new("patient", &["patient"]);
    let prepared = GatewayBuilder::new(format!("http://127.0.0.1:{django_port}"))
        .bypass("/static/")
        .extra("[headers]\nuser = \"X-Clinic-User\"\nroles = \"X-Clinic-Roles\"")
        .users_toml(&users_toml(std::slice::from_ref(&patient)))
        .prepare();
    let origin = format!("https://127.0.0.1:{}", prepared.port);
    let _django = tokio::task::spawn_blocking(move || Django::start(django_port, &origin))
        .await
        .unwrap();
    let gw = prepared.start().await;

    // Nobody becomes a Django user by sending the header: not in its own spelling,
    // not with underscores (which WSGI maps to the same META key).
    let stranger = Browser::new(&gw);
    for spoof in ["x-clinic-user", "x_clinic_user"] {
        let r = stranger
            .send(
                reqwest::Method::GET,
                "/static/whoami",
                &[(spoof, "doctor")],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            r.json()["user"],
            serde_json::Value::Null,
            "{spoof}: {}",
            r.body
        );
    }

    let b = Browser::new(&gw);
    b.login_ok(&patient, "/whoami").await;
    let me = b.get("/whoami").await;
    assert_eq!(me.status, 200, "{}", me.describe());
    let me = me.json();
    assert_eq!(
        me["user"], "patient",
        "request.user is the signed-in user: {me}"
    );
    assert_eq!(
        me["secure"], true,
        "SECURE_PROXY_SSL_HEADER makes is_secure() true"
    );
    assert_eq!(me["groups"], "patient");

    // Django's CSRF check (Origin against CSRF_TRUSTED_ORIGINS) passes through the gateway.
    let token = b.get("/form").await.json()["csrf"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    let posted = b
        .post_form("/form", &[("csrfmiddlewaretoken", &token)])
        .await;
    assert_eq!(posted.status, 200, "{}", posted.describe());
    assert_eq!(posted.body, "posted by patient");

    // On a bypass path the gateway sends no user header, and RemoteUserMiddleware
    // signs the Django session out instead of keeping the earlier user.
    let bypass = b.get("/static/whoami").await.json();
    assert_eq!(bypass["user"], serde_json::Value::Null, "{bypass}");
}
