//! SPEC §13 signed identity assertion: the token an app can verify instead of trusting
//! `Remote-User`. Verified here with PyJWT (tests/e2e/apps/verify_assertion.py), an
//! implementation independent of the gateway's, fetching the JWKS over HTTP as an app
//! would; expired, re-signed and foreign-audience tokens are refused there too.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::flows::*;
use crate::harness::*;

const HEADER: &str = "remote-assertion";

/// A gateway with the assertion on and a key made by `vestibule gen-signing-key`.
async fn gateway(up: &Upstream, users: &[TestUser], algorithm: &str) -> Gateway {
    let prepared = Gateway::builder(up)
        .bypass("/static/")
        .users_toml(&users_toml(users))
        .extra(
            "[headers]\nassertion = \"Remote-Assertion\"\nassertion_key_file = \"assertion.pem\"\n\n[totp]\nperiod = 15",
        )
        .prepare();
    let mut cmd = prepared.cmd();
    cmd.args(["gen-signing-key", "--algorithm", algorithm]);
    let out = run(cmd, None, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("BEGIN PRIVATE KEY"), "{out}");
    std::fs::write(prepared.dir.path().join("assertion.pem"), &out.stdout).unwrap();
    prepared.start().await
}

/// Runs the PyJWT verifier on `tokens` (token, sub, amr); panics with its output on failure.
fn verify_in_python(gw: &Gateway, tokens: &[(String, &str, &[&str])]) -> String {
    let job = serde_json::json!({
        "jwks_url": gw.url("/_vestibule/jwks.json"),
        "ca_file": gw.p.dir.path().join("ca.pem"),
        "audience": "default",
        "tokens": tokens.iter().map(|(t, sub, amr)| serde_json::json!({
            "token": t, "sub": sub, "amr": amr,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/apps/verify_assertion.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs PyJWT and cryptography)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "PyJWT verification failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assertion_verifies_in_pyjwt_with_amr_per_factor_and_forged_copies_never_pass() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let doc = TestUser::new("doc", &["doctor"]);
    let gw = gateway(&up, &[pat.clone(), doc.clone()], "es256").await;

    // A patient: password only.
    let b = Browser::new(&gw);
    assert_eq!(b.login_ok(&pat, "/chart").await, "/chart");
    let forged = b
        .client
        .get(gw.url("/chart"))
        .header("Remote-Assertion", "forged.by.client")
        .header("remote_assertion", "forged.too")
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let pat_token = up
        .last()
        .header(HEADER)
        .expect("an assertion on an authenticated request");
    assert!(
        !pat_token.starts_with("forged"),
        "the client's copy reached the app"
    );
    assert_eq!(
        up.last().header_all(HEADER).len() + up.last().header_all("remote_assertion").len(),
        1,
        "exactly the gateway's assertion: {:?}",
        up.last().headers
    );
    // The same session's next request reuses the token (one signature per session).
    assert_eq!(b.get("/chart").await.status, 200);
    assert_eq!(
        up.last().header(HEADER).as_deref(),
        Some(pat_token.as_str())
    );

    // A bypass path carries no assertion, and a client's copy is removed there too.
    let r = gw
        .raw_get(
            "/static/app.css",
            &[("Remote-Assertion", "forged.by.client")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header(HEADER), None, "{:?}", up.last().headers);

    // A doctor: password and TOTP.
    let d = Browser::new(&gw);
    let loc = d.login_ok(&doc, "/orders").await;
    assert!(loc.starts_with(&p("/setup")), "{loc}");
    let setup = d.get(&loc).await;
    let auth = Authenticator::new(read_setup(&setup).secret, 15);
    let done = d
        .submit(&setup, &p("/setup"), &[("code", &auth.fresh().await)])
        .await;
    assert_eq!(done.status, 200, "{}", done.describe());
    assert_eq!(d.get("/orders").await.status, 200);
    let doc_token = up.last().header(HEADER).unwrap();

    let report = verify_in_python(
        &gw,
        &[
            (pat_token, "pat", &["pwd"]),
            (doc_token, "doc", &["pwd", "otp"]),
        ],
    );
    assert_eq!(
        report.matches("ok expired token refused").count(),
        2,
        "{report}"
    );
    assert_eq!(
        report.matches("ok re-signed token refused").count(),
        2,
        "{report}"
    );
    assert!(!gw.logs().contains("forged"), "no log line carries a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_keys_work_too_and_the_jwks_is_public_and_cacheable() {
    let up = Upstream::start().await;
    let pat = TestUser::new("pat", &["patient"]);
    let gw = gateway(&up, std::slice::from_ref(&pat), "eddsa").await;
    let jwks = gw
        .client()
        .get(gw.url("/_vestibule/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    assert!(
        jwks.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age"),
    );
    let set: serde_json::Value = jwks.json().await.unwrap();
    assert_eq!(set["keys"][0]["kty"], "OKP");
    assert_eq!(set["keys"][0]["crv"], "Ed25519");
    assert!(set["keys"][0].get("d").is_none(), "never the private part");
    let b = Browser::new(&gw);
    b.login_ok(&pat, "/").await;
    assert_eq!(b.get("/x").await.status, 200);
    let token = up.last().header(HEADER).unwrap();
    verify_in_python(&gw, &[(token, "pat", &["pwd"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_assertion_configured_there_is_no_jwks_and_check_config_wants_a_key() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up).plain_http().start().await;
    let r = reqwest::get(gw.url("/_vestibule/jwks.json")).await.unwrap();
    assert_eq!(r.status(), 404);

    let prepared = Gateway::builder(&up)
        .extra("[headers]\nassertion = \"Remote-Assertion\"\nassertion_key_file = \"missing.pem\"")
        .prepare();
    let mut cmd = prepared.cmd();
    cmd.arg("check-config")
        .arg("--config")
        .arg(&prepared.config_path);
    let out = run(cmd, None, Duration::from_secs(30));
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.all().contains("headers.assertion_key_file"), "{out}");
}
