//! Differential test against real upstream servers (issue 17, SPEC §5.1 step 2 and §5.2
//! upgrades): the gateway's rules only protect an application if the application reads a
//! forwarded path the way the rules did. Two servers with different path semantics sit
//! behind the real `vestibule` binary — Tomcat (a servlet container: cuts `;parameters`
//! before it resolves dot segments, accepts h2c) and hypercorn running a tiny ASGI app
//! (keeps `;` as data, decodes `%XX`, accepts h2c) — and every case of
//! `tests/data/hostile-paths.txt` is sent through each gateway without a session and with
//! a patient's session. The verdict comes from what each server logged it served (Tomcat's
//! access log with the path it resolved, the ASGI app's log of `path`/`raw_path`), never
//! from the gateway's answer: no client may have reached a resource the rules deny it.
//!
//! Tomcat 10 (Debian `tomcat10`) and hypercorn (PyPI) are installed by `scripts/test.sh`;
//! when either is missing this test fails and says so. Each server is started once, from
//! a temporary directory, on a free loopback port, and awaited by polling that port.
//!
//! The two small tests at the end pin the `;` and case rules against the in-process
//! upstream, without the servers.

mod servers;
mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::flows::*;
use crate::harness::*;
use servers::Server;
use wire::{exchange, use_h2c_tunnel};

const CORPUS: &str = "tests/data/hostile-paths.txt";
const PATIENT: &str = "pat.diff";

/// The rules of the report.
fn with_rules(b: GatewayBuilder) -> GatewayBuilder {
    b.bypass("/static/")
        .rule("path_prefix = \"/admin/\"\naccess = \"authenticated\"\nroles = [\"doctor\"]")
        .rule("path_prefix = \"/internal/\"\naccess = \"deny\"")
}

/// The same rules, as an oracle over the path a server says it served: may this client
/// (no session, or a patient's) see it? Both servers match case-sensitively.
fn rules_allow(reading: &str, patient: bool) -> bool {
    if reading.starts_with("/static/") {
        true
    } else if reading.starts_with("/admin/") || reading.starts_with("/internal/") {
        false
    } else {
        patient
    }
}

// ------------------------------------------------------------------ the corpus

/// One line of the corpus.
#[derive(Debug, Clone)]
struct Case {
    line: usize,
    target: String,
    headers: Vec<(String, String)>,
    text: String,
}

impl Case {
    /// The upgrade token asked for, if this case asks for one.
    fn upgrade(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("upgrade"))
            .map(|(_, v)| v.as_str())
    }

    /// The target with `vt=<marker>` added to its query (before any fragment).
    fn marked_target(&self, marker: &str) -> String {
        let t = &self.target;
        if let Some(q) = t.find('?') {
            format!("{}vt={marker}&{}", &t[..=q], &t[q + 1..])
        } else if let Some(f) = t.find('#') {
            format!("{}?vt={marker}{}", &t[..f], &t[f..])
        } else {
            format!("{t}?vt={marker}")
        }
    }
}

fn corpus() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", path.display()));
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(" | ");
        let target = parts.next().unwrap_or("").trim().to_string();
        assert!(
            !target.is_empty() && !target.contains(char::is_whitespace),
            "{CORPUS}:{}: bad target {target:?}",
            i + 1
        );
        let headers = parts
            .map(|h| {
                let (k, v) = h
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{CORPUS}:{}: bad header {h:?}", i + 1));
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        cases.push(Case {
            line: i + 1,
            target,
            headers,
            text: line.to_string(),
        });
    }
    assert!(
        cases.len() >= 50,
        "the corpus lost its cases: {}",
        cases.len()
    );
    cases
}

// ------------------------------------------------------------------ the run

/// What the gateway answered one case, for the report.
struct Sent {
    status: u16,
    note: String,
}

/// Sends every case as `client` ("anon" or "patient") through `gw` and returns the
/// answers by corpus line. Cases that get a `101` for anything but WebSocket are
/// violations in themselves (SPEC §5.2); after an h2c one the tunnel is used.
async fn send_all(
    gw: &Gateway,
    cases: &[Case],
    client: &str,
    cookie: Option<&str>,
    violations: &mut Vec<String>,
    server: &str,
) -> BTreeMap<usize, Sent> {
    let mut sent = BTreeMap::new();
    for case in cases {
        let marker = format!("L{}.{client}", case.line);
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            case.marked_target(&marker),
            gw.authority()
        );
        if !case
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            req.push_str("Connection: close\r\n");
        }
        for (k, v) in &case.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        req.push_str("\r\n");
        let (resp, switched) = exchange(gw.addr(), req.as_bytes()).await;
        let mut note = String::new();
        if let Some((io, rest)) = switched {
            let token = resp.header("upgrade").unwrap_or_default();
            if !token.eq_ignore_ascii_case("websocket") {
                violations.push(format!(
                    "{server}: line {} `{}` as {client}: the gateway switched protocols to \
                     {token:?} (only websocket may be upgraded, SPEC §5.2) [upgrade case: \
                     depends on issue 17 item 1]",
                    case.line, case.text
                ));
            }
            note = if token.eq_ignore_ascii_case("h2c") {
                use_h2c_tunnel(io, rest, &gw.authority(), &marker).await
            } else {
                format!("switched to {token:?}")
            };
        }
        sent.insert(
            case.line,
            Sent {
                status: resp.status,
                note,
            },
        );
    }
    sent
}

/// Checks every request `server` logged against the rules for the client that sent it.
fn judge(server: &Server, cases: &[Case], violations: &mut Vec<String>) -> usize {
    let by_line: BTreeMap<usize, &Case> = cases.iter().map(|c| (c.line, c)).collect();
    let served = server.served();
    for s in &served {
        let marker = s.marker.as_deref().unwrap_or("");
        if marker == "sentinel" {
            continue;
        }
        // An unattributable request is judged as the strictest client's.
        let patient = marker.contains(".patient");
        let case = marker
            .strip_prefix('L')
            .and_then(|m| m.split('.').next())
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| by_line.get(&n));
        let what = match case {
            Some(c) => format!("line {} `{}`", c.line, c.text),
            None => format!("unattributed request (marker {marker:?})"),
        };
        let upgrade_note =
            if case.is_some_and(|c| c.upgrade().is_some()) || marker.ends_with(".tunnel") {
                " [upgrade case: depends on issue 17 item 1]"
            } else {
                ""
            };
        let who = if patient { "patient" } else { "anon" };
        if let Some(reading) = &s.reading
            && !rules_allow(reading, patient)
        {
            violations.push(format!(
                "{}: {what} as {who}: served {reading:?}, which the rules deny it{upgrade_note}\n    log: {}",
                server.name, s.line
            ));
        }
        let identity_ok = s.remote_user.is_empty()
            || (patient && s.remote_user.len() == 1 && s.remote_user[0] == PATIENT);
        if s.reading.is_some() && !identity_ok {
            violations.push(format!(
                "{}: {what} as {who}: reached the application with Remote-User {:?}{upgrade_note}\n    log: {}",
                server.name, s.remote_user, s.line
            ));
        }
    }
    served.len()
}

/// Runs the whole corpus against one server: gateway in front, sign-in, both clients,
/// then the server's log is judged. Returns the report lines and violations.
async fn run_against(mut server: Server, cases: &[Case]) -> (Vec<String>, Vec<String>) {
    server.wait_ready().await;
    let patient = TestUser::new(PATIENT, &["patient"]);
    let gw = with_rules(
        Gateway::builder_url(&format!("http://127.0.0.1:{}", server.port))
            .plain_http()
            .users_toml(&users_toml(std::slice::from_ref(&patient))),
    )
    .start()
    .await;
    let b = Browser::new(&gw);
    let login = b.login(&patient.name, &patient.password, "/static/x").await;
    assert_eq!(
        login.status,
        303,
        "{}: sign-in failed: {}",
        server.name,
        login.describe()
    );
    let cookie = b.cookie_header();

    let mut violations = Vec::new();
    let anon = send_all(&gw, cases, "anon", None, &mut violations, server.name).await;
    let pat = send_all(
        &gw,
        cases,
        "patient",
        Some(&cookie),
        &mut violations,
        server.name,
    )
    .await;
    server.flush_log().await;
    let logged = judge(&server, cases, &mut violations);

    let mut report = vec![format!(
        "{}: {} cases x 2 clients sent, {logged} requests logged by the server",
        server.name,
        cases.len()
    )];
    for c in cases {
        let (a, p) = (&anon[&c.line], &pat[&c.line]);
        let notes = [&a.note, &p.note]
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| format!(" ({n})"))
            .collect::<String>();
        report.push(format!(
            "  {:<9} L{:<3} anon {} patient {}  {}{notes}",
            server.name, c.line, a.status, p.status, c.text
        ));
    }
    (report, violations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_and_upgrades_reach_nothing_the_rules_deny_on_tomcat_and_hypercorn() {
    let started = Instant::now();
    let cases = corpus();
    // Both servers start at once (Tomcat's JVM takes the longest) and run side by side.
    let tomcat = Server::tomcat();
    let hypercorn = Server::hypercorn();
    let ((r1, v1), (r2, v2)) =
        tokio::join!(run_against(tomcat, &cases), run_against(hypercorn, &cases));
    eprintln!("{}\n{}", r1.join("\n"), r2.join("\n"));
    eprintln!("differential run took {:?}", started.elapsed());
    let violations: Vec<String> = v1.into_iter().chain(v2).collect();
    assert!(
        violations.is_empty(),
        "{} request(s) reached what the rules deny (from the servers' own logs):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

// ------------------------------------------------------------------ in-process checks

/// The three reported `;` escapes, and their neighbours, against the recording upstream:
/// a dot segment with parameters is refused, parameters never lift a role or deny rule,
/// and a bypass holds only when both readings of the path are under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_cannot_escape_a_bypass_a_role_or_a_deny_rule() {
    let up = Upstream::start().await;
    let patient = TestUser::new(PATIENT, &["patient"]);
    let gw =
        with_rules(Gateway::builder(&up).users_toml(&users_toml(std::slice::from_ref(&patient))))
            .start()
            .await;
    let b = Browser::new(&gw);
    b.login_ok(&patient, "/chart").await;
    let cookie = b.cookie_header();
    let before = up.count();

    for target in [
        "/static/..;/admin/x",
        "/static/..;x/internal/x",
        "/static/%2e%2e;/admin/x",
        "/static/.;/x",
        "/static/..%3b/admin/x",
        "/static/%c0%ae%c0%ae/admin/x",
    ] {
        let r = gw.raw_get(target, &[]).await;
        assert_eq!(r.status, 400, "{target} without a session: {}", r.raw);
    }
    for target in ["/static;x/y", "/;x/admin/y"] {
        let r = gw.raw_get(target, &[]).await;
        assert_eq!(r.status, 401, "{target} without a session: {}", r.raw);
    }
    for (target, status) in [
        ("/admin;x/y", 403),
        ("/admin;/y", 403),
        ("/;x/admin/y", 403),
        ("/internal;x/y", 403),
        ("/internal;jsessionid=1/y", 403),
        ("/static/..;/admin/x", 400),
    ] {
        let r = gw.raw_get(target, &[("Cookie", &cookie)]).await;
        assert_eq!(r.status, status, "{target} as a patient: {}", r.raw);
    }
    assert_eq!(up.count(), before, "a refused request reached the upstream");

    // Parameters themselves pass untouched where both readings allow the request.
    let r = gw.raw_get("/static/app.css;jsessionid=A1?v=2", &[]).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(up.last().uri, "/static/app.css;jsessionid=A1?v=2");
    let r = gw
        .raw_get("/chart;view=full/7", &[("Cookie", &cookie)])
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(up.last().path(), "/chart;view=full/7");
}

/// Matching is case-sensitive; `policy.case_insensitive_paths = true` (here through
/// the environment) makes `/Internal/` and `/ADMIN/` fall under the lower-case rules,
/// for an upstream that does not tell them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_paths_is_an_opt_in_for_case_blind_upstreams() {
    let up = Upstream::start().await;
    let patient = TestUser::new(PATIENT, &["patient"]);
    let users = users_toml(std::slice::from_ref(&patient));
    let sensitive = with_rules(Gateway::builder(&up).users_toml(&users))
        .start()
        .await;
    let blind = with_rules(Gateway::builder(&up).users_toml(&users))
        .env("VESTIBULE__POLICY__CASE_INSENSITIVE_PATHS", "true")
        .start()
        .await;
    for (gw, want) in [(&sensitive, [200, 200, 401]), (&blind, [403, 403, 200])] {
        let b = Browser::new(gw);
        b.login_ok(&patient, "/chart").await;
        let cookie = b.cookie_header();
        let got = [
            gw.raw_get("/Internal/x", &[("Cookie", &cookie)])
                .await
                .status,
            gw.raw_get("/ADMIN;x/x", &[("Cookie", &cookie)])
                .await
                .status,
            gw.raw_get("/STATIC/x", &[]).await.status,
        ];
        assert_eq!(
            got,
            want,
            "case_insensitive_paths={}",
            std::ptr::eq(gw, &blind)
        );
    }
}
