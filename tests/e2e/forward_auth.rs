//! Forward-auth mode (SPEC §9) behind the real servers: nginx with `auth_request` and
//! Caddy with `forward_auth` (Debian packages; scripts/test.sh installs them), each
//! run from its binary on a free loopback port with the configuration file of
//! docs/forward-auth/ — the very snippet docs/operations.md shows — and protecting the
//! recording upstream on two hosts, records.clinic.example and lab.clinic.example (the
//! client resolves every name to 127.0.0.1; TLS from a per-test CA, SNI and Host as a
//! browser sends them). nginx: Vestibule's pages under `/_vestibule/` on every host,
//! each host signing in on its own. Caddy: a portal host of its own with
//! `server.portal_url` and `session.cookie_domain`, one sign-in for both hosts.
//!
//! Vestibule (plain HTTP on loopback, behind the TLS-terminating proxy) trusts
//! 127.0.0.1 only; the untrusted client reaches it from 127.0.0.2.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore as _, Jar};

use crate::flows::{
    Authenticator, NAV_ACCEPT, Page, TestUser, query_value, read_setup, users_toml,
};
use crate::harness::*;

/// The snippets of docs/operations.md, as files.
const NGINX_CONF: &str = include_str!("../../docs/forward-auth/nginx.conf");
const CADDYFILE: &str = include_str!("../../docs/forward-auth/Caddyfile");

const RECORDS: &str = "records.clinic.example";
const LAB: &str = "lab.clinic.example";
const PORTAL: &str = "auth.clinic.example";
/// Plain HTTP behind the proxy: the cookie names carry no prefix.
const SESSION_COOKIE: &str = "vestibule_session";
const IDENTITY: [&str; 5] = [
    "remote-user",
    "remote-email",
    "remote-name",
    "remote-groups",
    "remote-mfa",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Nginx,
    Caddy,
}

/// A proxy process in its own process group (the whole group is killed on drop).
struct Server {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("{name} is not installed ({e}): scripts/test.sh installs it from Debian")
        });
        Server { child, name, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `port` accepts connections (or the server exits: its log then).
    async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port} in 30 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `text` with each `from` replaced; every `from` must occur, so an edit of the docs
/// file that drops one fails here instead of testing something else.
fn substitute(text: &str, subs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in subs {
        assert!(
            out.contains(from),
            "the docs file no longer contains {from:?}, which the test replaces"
        );
        out = out.replace(from, to);
    }
    out
}

/// Gateway, proxy and app of one test.
struct Estate {
    kind: Kind,
    up: Upstream,
    gw: Gateway,
    proxy: Server,
    /// The proxy's HTTPS port (every host).
    port: u16,
    ca: TestCa,
    doctor: TestUser,
    patient: TestUser,
    _dir: tempfile::TempDir,
}

impl Estate {
    async fn start(kind: Kind) -> Estate {
        let up = Upstream::start().await;
        let port = free_port();
        let doctor = TestUser::new("doctor", &["doctor"]);
        let patient = TestUser::new("patient", &["patient"]);
        // Two apps: the records system (a bypass path for its public pages) and the
        // lab, for doctors only. In this mode their `url` is never used.
        let apps = format!(
            "[[apps]]\nname = \"records\"\nhosts = [\"{RECORDS}\"]\nurl = \"{url}\"\n\
             [[apps.rules]]\npath_prefix = \"/public/\"\naccess = \"bypass\"\n\n\
             [[apps]]\nname = \"lab\"\nhosts = [\"{LAB}\"]\nurl = \"{url}\"\nroles = [\"doctor\"]\n",
            url = up.url()
        );
        let mut b = GatewayBuilder::new(up.url())
            .plain_http()
            .hostnames(&[RECORDS, LAB, PORTAL])
            .trusted_proxies(&["127.0.0.1/32"])
            .users_toml(&users_toml(&[doctor.clone(), patient.clone()]));
        if kind == Kind::Caddy {
            b = b
                .server_extra(&format!("portal_url = \"https://{PORTAL}:{port}\""))
                .extra("[session]\ncookie_domain = \"clinic.example\"\n");
        }
        let gw = b.extra(&apps).start().await;

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new();
        let cert = ca.issue_names("clinic.example", &[RECORDS, LAB, PORTAL]);
        let (cert_path, key_path) = (d.join("clinic.crt"), d.join("clinic.key"));
        std::fs::write(&cert_path, &cert.cert_pem).unwrap();
        std::fs::write(&key_path, &cert.key_pem).unwrap();
        let vestibule = gw.addr().to_string();
        let app = up.addr().to_string();
        let cert_path = cert_path.display().to_string();
        let key_path = key_path.display().to_string();
        let mut proxy = match kind {
            Kind::Nginx => nginx(d, port, &vestibule, &app, &cert_path, &key_path),
            Kind::Caddy => caddy(d, port, &vestibule, &app, &cert_path, &key_path),
        };
        proxy.wait_listening(port).await;
        Estate {
            kind,
            up,
            gw,
            proxy,
            port,
            ca,
            doctor,
            patient,
            _dir: dir,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    /// Where the gateway's pages are reached for `host`.
    fn portal(&self, host: &str) -> String {
        match self.kind {
            Kind::Nginx => self.url(host, ""),
            Kind::Caddy => self.url(PORTAL, ""),
        }
    }

    fn visitor(&self) -> Visitor {
        Visitor::new(self, None)
    }

    fn context(&self) -> String {
        format!(
            "--- {} ---\n{}\n--- vestibule ---\n{}",
            self.proxy.name,
            self.proxy.log(),
            self.gw.log_tail()
        )
    }
}

/// nginx from its binary: the docs file inside a test-only main file that keeps every
/// path nginx writes in the temporary directory. One process (`master_process off`):
/// no worker switching to another user, none left behind.
fn nginx(d: &Path, port: u16, vestibule: &str, app: &str, cert: &str, key: &str) -> Server {
    let site = substitute(
        NGINX_CONF,
        &[
            ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
            ("/etc/nginx/tls/clinic.example.crt", cert.to_string()),
            ("/etc/nginx/tls/clinic.example.key", key.to_string()),
            ("127.0.0.1:9091", vestibule.to_string()),
            ("127.0.0.1:8080", app.to_string()),
            ("127.0.0.1:8081", app.to_string()),
        ],
    );
    std::fs::write(d.join("vestibule.conf"), site).unwrap();
    let t = d.display();
    let main = format!(
        "events {{ worker_connections 256; }}\n\
         http {{\n\
           access_log {t}/access.log;\n\
           client_body_temp_path {t}/client_body;\n\
           proxy_temp_path {t}/proxy;\n\
           fastcgi_temp_path {t}/fastcgi;\n\
           uwsgi_temp_path {t}/uwsgi;\n\
           scgi_temp_path {t}/scgi;\n\
           include {t}/vestibule.conf;\n\
         }}\n"
    );
    std::fs::write(d.join("nginx.conf"), main).unwrap();
    // /usr/sbin is not on every user's PATH.
    let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx");
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-e")
        .arg(d.join("error.log"))
        .arg("-g")
        .arg(format!(
            "daemon off; master_process off; pid {t}/nginx.pid; error_log {t}/error.log info;"
        ));
    let mut s = Server::spawn("nginx", cmd, d.join("nginx.out"));
    s.log = d.join("error.log");
    s
}

/// Caddy from its binary: test-only global options (no admin endpoint, no redirect
/// server on port 80, its files in the temporary directory) before the docs file.
fn caddy(d: &Path, port: u16, vestibule: &str, app: &str, cert: &str, key: &str) -> Server {
    let site = substitute(
        CADDYFILE,
        &[
            (".clinic.example {", format!(".clinic.example:{port} {{")),
            ("/etc/caddy/tls/clinic.example.crt", cert.to_string()),
            ("/etc/caddy/tls/clinic.example.key", key.to_string()),
            ("127.0.0.1:9091", vestibule.to_string()),
            ("127.0.0.1:8080", app.to_string()),
            ("127.0.0.1:8081", app.to_string()),
        ],
    );
    let file = format!("{{\n\tadmin off\n\tauto_https disable_redirects\n}}\n\n{site}");
    std::fs::write(d.join("Caddyfile"), file).unwrap();
    let mut cmd = Command::new("caddy");
    cmd.arg("run")
        .arg("--config")
        .arg(d.join("Caddyfile"))
        .arg("--adapter")
        .arg("caddyfile")
        .current_dir(d)
        .env("HOME", d)
        .env("XDG_CONFIG_HOME", d.join("config"))
        .env("XDG_DATA_HOME", d.join("data"));
    Server::spawn("caddy", cmd, d.join("caddy.log"))
}

/// A browser: a cookie jar that honours Domain and Path (reqwest's, on the
/// cookie_store crate), every name resolved to the proxy, redirects followed by hand.
struct Visitor {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Visitor {
    fn new(e: &Estate, local: Option<IpAddr>) -> Visitor {
        let jar = Arc::new(Jar::default());
        let mut b = client_builder_for(&e.ca, &["http/1.1"])
            .cookie_provider(jar.clone())
            .local_address(local);
        for host in [RECORDS, LAB, PORTAL] {
            b = b.resolve(host, SocketAddr::from(([127, 0, 0, 1], e.port)));
        }
        Visitor {
            client: b.build().unwrap(),
            jar,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        form: Option<String>,
    ) -> Page {
        let url = reqwest::Url::parse(url).unwrap();
        let mut req = self.client.request(method, url.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", url.origin().ascii_serialization())
                .body(body);
        }
        let resp = tokio::time::timeout(Duration::from_secs(30), req.send())
            .await
            .unwrap_or_else(|_| panic!("{url}: no answer in 30 s"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).into_owned();
        Page {
            status,
            url,
            headers,
            body,
        }
    }

    /// A navigation, with extra (forged) headers.
    async fn nav(&self, url: &str, extra: &[(&str, &str)]) -> Page {
        let mut h = vec![("accept", NAV_ACCEPT)];
        h.extend_from_slice(extra);
        self.send(reqwest::Method::GET, url, &h, None).await
    }

    async fn get(&self, url: &str) -> Page {
        self.nav(url, &[]).await
    }

    /// Where `page` redirects to, absolute.
    fn next(page: &Page) -> String {
        assert!(
            page.is_redirect(),
            "expected a redirect: {}",
            page.describe()
        );
        page.location_url().unwrap().to_string()
    }

    /// Submits the form of `page` posting to `action` (path), `set` overriding fields.
    async fn submit(&self, page: &Page, action: &str, set: &[(&str, &str)]) -> Page {
        let form = page
            .form(action)
            .unwrap_or_else(|| panic!("no form for {action} on {}", page.describe()));
        let mut fields: Vec<(String, String)> = form
            .into_iter()
            .filter(|(_, _, ty)| !matches!(ty.as_str(), "checkbox" | "submit" | "button"))
            .map(|(n, v, _)| (n, v))
            .collect();
        for (k, v) in set {
            match fields.iter_mut().find(|(n, _)| n == k) {
                Some(f) => f.1 = v.to_string(),
                None => fields.push((k.to_string(), v.to_string())),
            }
        }
        let body = serde_urlencoded::to_string(&fields).unwrap();
        let url = page.url.join(action).unwrap().to_string();
        self.send(
            reqwest::Method::POST,
            &url,
            &[("accept", NAV_ACCEPT)],
            Some(body),
        )
        .await
    }

    /// The `Cookie` header this browser sends to `url`.
    fn cookies(&self, url: &str) -> String {
        self.jar
            .cookies(&reqwest::Url::parse(url).unwrap())
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// One request written verbatim to the proxy over TLS for `host` (paths a client
/// library would normalise first), `Connection: close`; the answer parsed.
async fn raw_get(e: &Estate, host: &str, target: &str, cookie: &str) -> RawResponse {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", e.port))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(e.ca.client_config(&["http/1.1"])));
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}:{}\r\nAccept: {NAV_ACCEPT}\r\nConnection: close\r\n",
        e.port
    );
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut buf)).await;
    parse_raw(&buf)
}

/// Sent from `start` to sign in: the redirect names the portal's sign-in page with the
/// original URL as `rd`; the password step, then enrollment (`enroll`) or the code
/// challenge, and back to `start`. Returns the app's answer.
async fn sign_in(
    e: &Estate,
    v: &Visitor,
    start: &str,
    user: &TestUser,
    phone: Option<&Authenticator>,
) -> (Page, Option<Authenticator>) {
    let host = reqwest::Url::parse(start)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    let sent = v.get(start).await;
    assert_eq!(sent.status, 302, "{}\n{}", sent.describe(), e.context());
    let login = Visitor::next(&sent);
    let portal = e.portal(&host);
    assert!(
        login.starts_with(&format!("{portal}{PREFIX}/login?rd=")),
        "sent to {login}, not to the sign-in of {portal}"
    );
    // The return URL is the original one, query string kept: relative when the pages
    // are on the app's own host, absolute for a portal of its own.
    let rd = query_value(&login, "rd").unwrap();
    let original = reqwest::Url::parse(start).unwrap();
    let expected = match e.kind {
        Kind::Nginx => match original.query() {
            Some(q) => format!("{}?{q}", original.path()),
            None => original.path().to_string(),
        },
        Kind::Caddy => start.to_string(),
    };
    assert_eq!(rd, expected, "rd of {login}");

    let form = v.get(&login).await;
    assert_eq!(form.status, 200, "{}", form.describe());
    let after = v
        .submit(
            &form,
            &format!("{PREFIX}/login"),
            &[("username", &user.name), ("password", &user.password)],
        )
        .await;
    assert_eq!(after.status, 303, "password step: {}", after.describe());
    let step = Visitor::next(&after);
    let mut enrolled = None;
    let back = if step.starts_with(&format!("{portal}{PREFIX}/setup")) {
        let setup = v.get(&step).await;
        let shown = read_setup(&setup);
        let auth = Authenticator::new(shown.secret, 30);
        let code = auth.fresh().await;
        let done = v
            .submit(&setup, &format!("{PREFIX}/setup"), &[("code", &code)])
            .await;
        assert_eq!(done.status, 200, "enrollment: {}", done.describe());
        assert!(!done.class_texts("backup-code").is_empty());
        enrolled = Some(auth);
        let cont = done
            .by_id("continue")
            .and_then(|t| t.attr("href"))
            .unwrap_or_else(|| panic!("no continue link: {}", done.describe()));
        done.url.join(&cont).unwrap().to_string()
    } else if step.starts_with(&format!("{portal}{PREFIX}/challenge")) {
        let page = v.get(&step).await;
        let code = phone.expect("a challenge needs the phone").fresh().await;
        let done = v
            .submit(&page, &format!("{PREFIX}/challenge"), &[("code", &code)])
            .await;
        assert_eq!(done.status, 303, "challenge: {}", done.describe());
        Visitor::next(&done)
    } else {
        step
    };
    assert_eq!(back, start, "back to the original URL, query string kept");
    (v.get(&back).await, enrolled)
}

/// Asserts the app's last request carried exactly this identity.
fn assert_identity(e: &Estate, host: &str, uri: &str, user: &TestUser, mfa: &str) {
    let rec = e.up.last();
    assert_eq!(rec.uri, uri);
    assert_eq!(
        rec.header("host").as_deref(),
        Some(format!("{host}:{}", e.port).as_str())
    );
    assert_eq!(
        rec.header_all("remote-user"),
        vec![user.name.clone()],
        "{rec:?}"
    );
    assert_eq!(rec.header_all("remote-email"), vec![user.email()]);
    assert_eq!(rec.header_all("remote-name"), vec![user.display_name()]);
    assert_eq!(rec.header_all("remote-groups"), vec![user.roles.join(",")]);
    assert_eq!(rec.header_all("remote-mfa"), vec![mfa.to_string()]);
}

/// No identity header with a value in the app's last request (any case, `_` for `-`).
fn assert_no_identity(rec: &Recorded) {
    for (k, v) in &rec.headers {
        let k = k.to_ascii_lowercase().replace('_', "-");
        assert!(
            !IDENTITY.contains(&k.as_str()) || v.is_empty(),
            "{k}: {v} reached the app: {rec:?}"
        );
    }
}

async fn journey(kind: Kind) {
    let e = Estate::start(kind).await;
    let doctor = e.doctor.clone();
    let v = e.visitor();

    // A doctor is sent to sign in, enrolls, and comes back to the URL asked for.
    let chart = e.url(RECORDS, "/chart?id=7&view=full");
    assert_eq!(e.up.count(), 0);
    let (page, phone) = sign_in(&e, &v, &chart, &doctor, None).await;
    let phone = phone.expect("a doctor enrolls at the first sign-in");
    assert_eq!(page.status, 200, "{}\n{}", page.describe(), e.context());
    assert_eq!(
        e.up.count(),
        1,
        "only the signed-in request reached the app"
    );
    assert_identity(&e, RECORDS, "/chart?id=7&view=full", &doctor, "totp");
    // The documented limit of this mode (docs/operations.md): the proxy forwards the
    // browser's cookies, Vestibule's session cookie included.
    let cookie = e.up.last().header("cookie").unwrap_or_default();
    assert!(cookie.contains(SESSION_COOKIE), "{cookie}");

    // A request body reaches the app whole: the proxy keeps it from the sub-request
    // (nginx `proxy_pass_request_body off`; Caddy's forward_auth asks with a GET).
    let body: String = (0..200_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let posted = v
        .send(
            reqwest::Method::POST,
            &e.url(RECORDS, "/chart/notes?id=7"),
            &[("accept", "application/json")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.describe());
    let rec = e.up.last();
    assert_eq!(
        (rec.method.as_str(), rec.uri.as_str()),
        ("POST", "/chart/notes?id=7")
    );
    assert_eq!(rec.body_len, body.len() as u64);
    assert_eq!(rec.body_sha256, sha256_hex(body.as_bytes()));
    assert_eq!(rec.header_all("remote-user"), vec![doctor.name.clone()]);

    // The second host: one sign-in covers it through the portal (cookie_domain);
    // on hosts that serve the pages themselves it signs in on its own (the
    // challenge now: 2FA is on).
    let results = e.url(LAB, "/results?patient=12");
    let page = match kind {
        Kind::Caddy => v.get(&results).await,
        Kind::Nginx => sign_in(&e, &v, &results, &doctor, Some(&phone)).await.0,
    };
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_identity(&e, LAB, "/results?patient=12", &doctor, "totp");

    // A patient is refused the doctors' lab, and let into the records.
    let pv = e.visitor();
    let before = e.up.count();
    let patient = e.patient.clone();
    let (page, _) = sign_in(&e, &pv, &e.url(LAB, "/results?x=1"), &patient, None).await;
    assert_eq!(page.status, 403, "{}", page.describe());
    assert_eq!(
        e.up.count(),
        before,
        "a refused request never reaches the app"
    );
    let records = e.url(RECORDS, "/chart?id=9");
    let page = match kind {
        Kind::Caddy => pv.get(&records).await,
        Kind::Nginx => sign_in(&e, &pv, &records, &patient, None).await.0,
    };
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_identity(&e, RECORDS, "/chart?id=9", &patient, "none");

    // Logout at the portal ends access through the proxy, for this browser and for
    // anyone replaying its old cookie.
    let old = v.cookies(&chart);
    assert!(old.contains(SESSION_COOKIE), "{old}");
    let account = v
        .get(&format!("{}{PREFIX}/account", e.portal(RECORDS)))
        .await;
    assert_eq!(account.status, 200, "{}", account.describe());
    let out = v.submit(&account, &format!("{PREFIX}/logout"), &[]).await;
    assert_eq!(out.status, 303, "{}", out.describe());
    let before = e.up.count();
    let page = v.get(&chart).await;
    assert_eq!(page.status, 302, "after logout: {}", page.describe());
    assert!(Visitor::next(&page).contains(&format!("{PREFIX}/login?rd=")));
    let replay = e
        .visitor()
        .send(
            reqwest::Method::GET,
            &chart,
            &[("cookie", &old), ("accept", "application/json")],
            None,
        )
        .await;
    // Caddy passes the 401 JSON on; the nginx snippet redirects every 401 to sign in.
    let want = if kind == Kind::Caddy { 401 } else { 302 };
    assert_eq!(
        replay.status,
        want,
        "old cookie replayed: {}",
        replay.describe()
    );
    assert_eq!(e.up.count(), before, "nothing reached the app after logout");
}

async fn forgeries(kind: Kind) {
    let e = Estate::start(kind).await;
    let forged: [(&str, &str); 6] = [
        ("Remote-User", "doctor"),
        ("remote-groups", "doctor"),
        ("Remote-Email", "doctor@clinic.example"),
        ("Remote-Name", "doctor"),
        ("Remote-MFA", "totp"),
        ("Remote_User", "doctor"),
    ];

    // A stranger's forged identity: not forwarded on a protected path, and removed on
    // the bypass path (which is allowed without an identity).
    let stranger = e.visitor();
    let chart = e.url(RECORDS, "/chart?id=1");
    let page = stranger.nav(&chart, &forged).await;
    assert_eq!(page.status, 302, "{}\n{}", page.describe(), e.context());
    assert_eq!(e.up.count(), 0);
    let page = stranger
        .nav(&e.url(RECORDS, "/public/info?a=1"), &forged)
        .await;
    assert_eq!(page.status, 200, "{}\n{}", page.describe(), e.context());
    let rec = e.up.last();
    assert_eq!(rec.uri, "/public/info?a=1");
    assert_no_identity(&rec);

    // A signed-in patient's forged identity is replaced by the real one.
    let patient = e.patient.clone();
    let v = e.visitor();
    let (page, _) = sign_in(&e, &v, &chart, &patient, None).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let page = v.nav(&chart, &forged).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_identity(&e, RECORDS, "/chart?id=1", &patient, "none");
    let rec = e.up.last();
    assert!(
        rec.headers.iter().all(|(_, v)| !v.contains("doctor")),
        "a forged value reached the app: {rec:?}"
    );
    let page = v.nav(&e.url(RECORDS, "/public/x"), &forged).await;
    assert_eq!(page.status, 200);
    assert_no_identity(&e.up.last());

    // A path that is not its own normal form never reaches the app: the proxy forwards
    // it as sent, so "/chart/../public/x" would be decided as the public "/public/x"
    // while an app that does not resolve dot segments serves "/chart/…" without an
    // identity. Written raw (a client library would resolve the dots itself).
    let before = e.up.count();
    for target in [
        "/chart/../public/x",
        "/chart/%2e%2e/public/x",
        "/chart;x/../public/x",
        "//public/x",
        "/public/../chart",
        "/public/..;/chart",
    ] {
        let r = raw_get(&e, RECORDS, target, "").await;
        assert!(
            matches!(r.status, 302 | 400 | 403),
            "{target}: {} {}",
            r.status,
            r.body_text()
        );
        assert_eq!(
            e.up.count(),
            before,
            "{target} reached the app: {:?}",
            e.up.last()
        );
    }
    // An ordinary public path still passes.
    let r = raw_get(&e, RECORDS, "/public/x?y=1", "").await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_no_identity(&e.up.last());

    // The client's own description of "the original request" decides nothing through
    // the proxy: the proxy describes the request itself.
    let describe = |host: &str| {
        let url = e.url(host, "/public/x");
        vec![
            ("X-Original-URL", url.clone()),
            ("X-Forwarded-Uri", "/public/x".to_string()),
            ("X-Forwarded-Host", format!("{host}:{}", e.port)),
            ("X-Forwarded-Proto", "https".to_string()),
            ("X-Forwarded-Method", "GET".to_string()),
        ]
    };
    let owned = describe(RECORDS);
    let h: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let before = e.up.count();
    let page = stranger.nav(&chart, &h).await;
    assert_eq!(page.status, 302, "{}", page.describe());
    // The patient on the doctors' lab (signed in there too where each host signs in
    // on its own), describing a public records page.
    if kind == Kind::Nginx {
        let (page, _) = sign_in(&e, &v, &e.url(LAB, "/results"), &patient, None).await;
        assert_eq!(page.status, 403, "{}", page.describe());
    }
    let page = v.nav(&e.url(LAB, "/results"), &h).await;
    assert_eq!(page.status, 403, "{}", page.describe());
    assert_eq!(e.up.count(), before);

    // The authorization endpoints are not reachable through the proxy.
    let endpoint = match kind {
        Kind::Nginx => e.url(RECORDS, &format!("{PREFIX}/api/authz/auth-request")),
        Kind::Caddy => e.url(PORTAL, &format!("{PREFIX}/api/authz/forward-auth")),
    };
    for url in [
        endpoint,
        format!("{}{PREFIX}/api/authz/forward-auth", e.portal(RECORDS)),
    ] {
        let page = v.nav(&url, &h).await;
        assert_eq!(page.status, 404, "{url}: {}", page.describe());
    }

    // Straight to Vestibule from an address that is not a trusted proxy (127.0.0.2),
    // with a valid session and a full description: nothing is decided. The same
    // question from the trusted proxy's address is answered (the test can fail).
    let cookie = v.cookies(&chart);
    assert!(cookie.contains(SESSION_COOKIE), "{cookie}");
    let fa = e.gw.url(&format!("{PREFIX}/api/authz/forward-auth"));
    let ar = e.gw.url(&format!("{PREFIX}/api/authz/auth-request"));
    let chart_owned = [
        ("cookie", cookie.clone()),
        ("accept", NAV_ACCEPT.to_string()),
        ("x-forwarded-proto", "https".to_string()),
        ("x-forwarded-host", format!("{RECORDS}:{}", e.port)),
        ("x-forwarded-uri", "/chart?id=1".to_string()),
        ("x-forwarded-method", "GET".to_string()),
        ("x-original-url", chart.clone()),
        ("x-original-method", "GET".to_string()),
    ];
    let ask: Vec<(&str, &str)> = chart_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let untrusted = Visitor::new(&e, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    let trusted = Visitor::new(&e, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    for url in [&fa, &ar] {
        let page = untrusted.send(reqwest::Method::GET, url, &ask, None).await;
        assert_eq!(page.status, 403, "{url}: {}", page.describe());
        assert_eq!(page.json()["error"], "untrusted_proxy");
        assert!(page.header("remote-user").is_none());
        let page = trusted.send(reqwest::Method::GET, url, &ask, None).await;
        assert_eq!(
            page.status,
            200,
            "{url} from the proxy: {}",
            page.describe()
        );
        assert_eq!(page.header("remote-user").as_deref(), Some("patient"));
    }
    assert_eq!(e.up.count(), before, "the endpoints never forward");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_signs_in_enrolls_returns_and_logs_out() {
    journey(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_through_a_portal_signs_in_enrolls_returns_and_logs_out() {
    journey(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forged_identity_and_descriptions_decide_nothing() {
    forgeries(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forged_identity_and_descriptions_decide_nothing() {
    forgeries(Kind::Caddy).await;
}

/// The snippets docs/operations.md shows are these files, word for word.
#[test]
fn the_operations_guide_shows_the_tested_files() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    for (name, text) in [("nginx.conf", NGINX_CONF), ("Caddyfile", CADDYFILE)] {
        assert!(
            guide.contains(text.trim_end()),
            "docs/operations.md must show docs/forward-auth/{name} exactly as it is"
        );
    }
}
