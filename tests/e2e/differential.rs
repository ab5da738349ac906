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

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::flows::*;
use crate::harness::*;

const CORPUS: &str = "tests/data/hostile-paths.txt";
const PATIENT: &str = "pat.diff";

/// The rules of the report.
fn with_rules(b: GatewayBuilder) -> GatewayBuilder {
    b.bypass("/static/")
        .rule("path_prefix = \"/admin/\"\naccess = \"authenticated\"\nroles = [\"doctor\"]")
        .rule("path_prefix = \"/internal/\"\naccess = \"deny\"")
}

/// The same rules, as an oracle over the path a server says it served: may `client`
/// (None: no session; Some: a patient) see it? Both servers match case-sensitively.
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

// ------------------------------------------------------------------ the servers

/// A real upstream server process, killed on drop.
struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    /// Where the server records what it served.
    log: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_template(name: &str, to: &Path, port: u16) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/differential/tomcat")
        .join(name);
    let text = std::fs::read_to_string(&from).unwrap();
    std::fs::write(to.join(name), text.replace("@PORT@", &port.to_string())).unwrap();
}

impl Server {
    /// Tomcat 10 from the Debian package, run as our own instance: a temporary
    /// CATALINA_BASE (conf, logs, one ROOT application of static files), never the
    /// system service.
    fn tomcat() -> Server {
        let home = PathBuf::from(
            std::env::var("CATALINA_HOME").unwrap_or_else(|_| "/usr/share/tomcat10".into()),
        );
        let jars = [
            home.join("bin/bootstrap.jar"),
            home.join("bin/tomcat-juli.jar"),
        ];
        if !jars.iter().all(|j| j.is_file()) {
            panic!(
                "Tomcat 10 is not installed (no {}): the differential test needs it. \
                 `scripts/test.sh` installs it (apt-get install tomcat10).",
                jars[0].display()
            );
        }
        if Command::new("java").arg("-version").output().is_err() {
            panic!("`java` is not on PATH: Tomcat needs it (apt-get install tomcat10 brings it)");
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in ["conf", "logs", "temp", "work"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let port = free_port();
        for f in ["server.xml", "web.xml", "context.xml"] {
            copy_template(f, &base.join("conf"), port);
        }
        // One file per area of the rules, so a request Tomcat maps there is served.
        for area in ["static", "admin", "internal", "other", "ADMIN", "INTERNAL"] {
            let d = base.join("webapps/ROOT").join(area);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("x"), format!("{area}\n")).unwrap();
        }
        let stderr = base.join("stderr.log");
        let classpath = format!("{}:{}", jars[0].display(), jars[1].display());
        let child = Command::new("java")
            .args([
                "-Xshare:auto",
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
            ])
            .arg(format!("-Dcatalina.home={}", home.display()))
            .arg(format!("-Dcatalina.base={}", base.display()))
            .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
            .args([
                "-cp",
                &classpath,
                "org.apache.catalina.startup.Bootstrap",
                "start",
            ])
            .current_dir(base)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(base.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn java (Tomcat)");
        Server {
            name: "tomcat",
            child,
            port,
            log: base.join("logs/access.log"),
            stderr,
            _dir: dir,
        }
    }

    /// hypercorn (HTTP/1.1 and h2c) serving `tests/data/differential/asgi_app.py`.
    fn hypercorn() -> Server {
        let probe = Command::new("python3")
            .args(["-c", "import hypercorn"])
            .output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            panic!(
                "hypercorn is not installed for `python3` ({}): the differential test needs \
                 it. `scripts/test.sh` installs it (python3 -m pip install hypercorn).",
                probe
                    .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                    .unwrap_or_else(|e| e.to_string())
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("asgi.jsonl");
        std::fs::write(&log, "").unwrap();
        let stderr = dir.path().join("stderr.log");
        let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/differential");
        let child = Command::new("python3")
            .args(["-m", "hypercorn", "--workers", "1", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("asgi_app:app")
            .current_dir(&app_dir)
            .env("VT_LOG", &log)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn python3 -m hypercorn");
        Server {
            name: "hypercorn",
            child,
            port,
            log,
            stderr,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits until the server accepts connections (Tomcat binds only once its
    /// application is deployed), failing early with its output if it exits.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            if TcpStream::connect(self.addr()).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not open port {} within 45 s:\n{}",
                self.name,
                self.port,
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `vt=sentinel` straight to the server and waits until its log shows it:
    /// every request sent before has then been logged too.
    async fn flush_log(&self) {
        let req = format!(
            "GET /static/x?vt=sentinel HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        let (resp, _) = exchange(self.addr(), req.as_bytes()).await;
        assert_eq!(resp.status, 200, "{}: {}", self.name, resp.raw);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("vt=sentinel")
        {
            assert!(
                Instant::now() < deadline,
                "{}: sentinel never logged",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the server says it served, one entry per request it handled.
    fn served(&self) -> Vec<Served> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        match self.name {
            "tomcat" => text.lines().filter_map(tomcat_record).collect(),
            _ => text.lines().filter_map(asgi_record).collect(),
        }
    }
}

/// One request a server handled.
#[derive(Debug)]
struct Served {
    /// The `vt=` marker of its query, if any.
    marker: Option<String>,
    /// The path the server resolved and served; None when it refused before that.
    reading: Option<String>,
    remote_user: Vec<String>,
    line: String,
}

fn marker_of(query: &str) -> Option<String> {
    query
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("vt="))
        .map(String::from)
}

/// `status|method|uri|query|resolved path|Remote-User|protocol` (see server.xml).
fn tomcat_record(line: &str) -> Option<Served> {
    let f: Vec<&str> = line.split('|').collect();
    if f.len() < 7 {
        return None;
    }
    let dash = |s: &str| (s != "-" && !s.is_empty()).then(|| s.to_string());
    Some(Served {
        marker: marker_of(f[3]),
        reading: dash(f[4]),
        remote_user: dash(f[5]).into_iter().collect(),
        line: line.to_string(),
    })
}

/// One JSON line of asgi_app.py. An application that serves files reads the decoded
/// `path` with its dot segments resolved; the oracle does the same.
fn asgi_record(line: &str) -> Option<Served> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let path = v["path"].as_str()?;
    Some(Served {
        marker: marker_of(v["query"].as_str().unwrap_or("")),
        reading: Some(resolve_dots(path)),
        remote_user: v["remote_user"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        line: line.to_string(),
    })
}

fn resolve_dots(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    format!("/{}", stack.join("/"))
}

// ------------------------------------------------------------------ raw client

/// Sends `request` verbatim and reads one response. A `101` hands the connection
/// back (with the bytes read past the response head) for whatever was switched to.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (RawResponse, Option<(TcpStream, Vec<u8>)>) {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before it has read everything.
    let _ = io.write_all(request).await;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let resp = parse_raw(&buf);
            if resp.status == 101 {
                let rest = buf[end + 4..].to_vec();
                return (parse_raw(&buf[..end + 4]), Some((io, rest)));
            }
            if response_complete(&buf) {
                return (resp, None);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (parse_raw(&buf), None),
        }
    }
}

/// One HTTP/2 frame (RFC 9113 §4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2),
/// plain strings shorter than 127 bytes: enough for a few request headers.
fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    block.push(0);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// After an h2c `101`: what an attacker does with the tunnel. Sends the client
/// preface and asks (streams 3 and 5; stream 1 is the upgraded request) for
/// `/internal/x` and `/admin/x` with a forged identity, then reads frames until both
/// are answered or refused, the server goes away, or 5 s pass. Returns what happened.
async fn use_h2c_tunnel(
    mut io: TcpStream,
    mut buf: Vec<u8>,
    authority: &str,
    marker: &str,
) -> String {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    for (sid, path) in [(3u32, "/internal/x"), (5, "/admin/x")] {
        let mut block = Vec::new();
        let target = format!("{path}?vt={marker}.tunnel");
        for (k, v) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", target.as_str()),
            (":authority", authority),
            ("remote-user", "dr.forged"),
            ("remote-groups", "doctor"),
        ] {
            hpack_literal(&mut block, k, v);
        }
        out.extend(h2_frame(1, 0x4 | 0x1, sid, &block)); // END_HEADERS | END_STREAM
    }
    if io.write_all(&out).await.is_err() {
        return "tunnel closed before the HTTP/2 requests were sent".into();
    }
    let mut answered: HashSet<u32> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = vec![0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let sid = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            buf.drain(..9 + len);
            match kind {
                // SETTINGS without ACK: acknowledge, as a client must.
                4 if flags & 1 == 0 => {
                    let _ = io.write_all(&h2_frame(4, 1, 0, &[])).await;
                }
                // HEADERS or RST_STREAM on one of ours: that stream is decided.
                1 | 3 if sid == 3 || sid == 5 => {
                    answered.insert(sid);
                }
                7 => return format!("server sent GOAWAY; answered streams {answered:?}"),
                _ => {}
            }
        }
        if answered.len() == 2 {
            return "both tunnelled HTTP/2 requests were answered".into();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return format!("tunnel closed; answered streams {answered:?}"),
            Err(_) => return format!("no more answers within 5 s; answered streams {answered:?}"),
        }
    }
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
