//! Several app hosts on one gateway (SPEC §8, issue 20): a browser that reaches the
//! gateway at 127.0.0.1 under any test host name (right SNI and `Host`) with a cookie
//! jar that keeps `Domain=`, `Path=` and host-only cookies apart as RFC 6265 says,
//! and `AppUpstream`, a real HTTP server that answers the way legacy apps do:
//! absolute redirects to its own address, relative redirects, path-scoped cookies, a
//! download held half-way until the test lets it finish.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::flows::{NAV_ACCEPT, Page, enc, p};
use crate::harness::*;

// ---------------------------------------------------------------------------
// Cookie jar (RFC 6265 §5.3 storage model, §5.4 what is sent)
// ---------------------------------------------------------------------------

/// One stored cookie.
#[derive(Clone, Debug)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    /// Lower-case, without a leading dot.
    pub domain: String,
    /// No `Domain=`: sent to exactly the host that set it.
    pub host_only: bool,
    pub path: String,
    pub secure: bool,
    /// The `Set-Cookie` line that set it.
    pub raw: String,
}

/// A browser's cookie jar: every host's cookies in one place, sent by the rules a
/// browser follows (domain-match, path-match, Secure only over https).
#[derive(Default)]
pub struct Jar {
    cookies: Mutex<Vec<Cookie>>,
}

/// RFC 6265 §5.1.3.
fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain
        || (host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 §5.1.4.
pub fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// RFC 6265 §5.1.4 default-path.
fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => request_path[..i].to_string(),
    }
}

impl Jar {
    /// Stores (or deletes) what one `Set-Cookie` from `url` says; false when a
    /// browser would ignore the line.
    pub fn store(&self, url: &reqwest::Url, line: &str) -> bool {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return false;
        };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        if name.is_empty() {
            return false;
        }
        let (mut domain, mut path, mut secure, mut expired) = (None, None, false, false);
        for a in parts {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "domain" if !v.is_empty() => {
                    domain = Some(v.trim_start_matches('.').to_ascii_lowercase())
                }
                "path" if v.starts_with('/') => path = Some(v.to_string()),
                "secure" => secure = true,
                "max-age" => expired = v.parse::<i64>().is_ok_and(|n| n <= 0),
                "expires" if v.contains("1970") => expired = true,
                _ => {}
            }
        }
        if secure && url.scheme() != "https" {
            return false;
        }
        // Cookie prefixes (RFC 6265bis §4.1.3).
        if name.starts_with("__Secure-") && !secure {
            return false;
        }
        if name.starts_with("__Host-")
            && (!secure || domain.is_some() || path.as_deref() != Some("/"))
        {
            return false;
        }
        let (domain, host_only) = match domain {
            Some(d) if domain_matches(&host, &d) => (d, false),
            Some(_) => return false,
            None => (host.clone(), true),
        };
        let path = path.unwrap_or_else(|| default_path(url.path()));
        let mut jar = self.cookies.lock().unwrap();
        jar.retain(|c| !(c.name == name && c.domain == domain && c.path == path));
        if !expired {
            jar.push(Cookie {
                name,
                value,
                domain,
                host_only,
                path,
                secure,
                raw: line.to_string(),
            });
        }
        true
    }

    /// The cookies a browser sends to `url`, longest path first.
    pub fn for_url(&self, url: &reqwest::Url) -> Vec<Cookie> {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let https = url.scheme() == "https";
        let mut out: Vec<Cookie> = self
            .cookies
            .lock()
            .unwrap()
            .iter()
            .filter(|c| {
                if c.host_only {
                    c.domain == host
                } else {
                    domain_matches(&host, &c.domain)
                }
            })
            .filter(|c| path_matches(url.path(), &c.path))
            .filter(|c| https || !c.secure)
            .cloned()
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        out
    }

    /// The `Cookie` header for `url` ("" when none).
    pub fn header_for(&self, url: &reqwest::Url) -> String {
        self.for_url(url)
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The cookie `name` this jar would send to `url`.
    pub fn sent_to(&self, url: &reqwest::Url, name: &str) -> Option<Cookie> {
        self.for_url(url).into_iter().find(|c| c.name == name)
    }

    pub fn all(&self) -> Vec<Cookie> {
        self.cookies.lock().unwrap().clone()
    }

    /// Plants a cookie, as if a page had set it.
    pub fn plant(&self, c: Cookie) {
        let mut jar = self.cookies.lock().unwrap();
        jar.retain(|o| !(o.name == c.name && o.domain == c.domain && o.path == c.path));
        jar.push(c);
    }
}

// ---------------------------------------------------------------------------
// Browser for many hosts
// ---------------------------------------------------------------------------

/// One browser that reaches every test host at the gateway's 127.0.0.1 port, with
/// one jar across all hosts.
pub struct HostBrowser {
    pub client: reqwest::Client,
    pub port: u16,
    pub jar: Jar,
}

impl HostBrowser {
    /// Speaks HTTP/2 or HTTP/1.1 as ALPN decides (HTTP/2 with the gateway: no `Host`
    /// header, the host travels in `:authority`).
    pub fn new(gw: &Gateway, hosts: &[&str]) -> HostBrowser {
        Self::with_builder(gw, gw.client_builder(), hosts)
    }

    /// HTTP/1.1 only (the host travels in `Host`).
    pub fn new_h1(gw: &Gateway, hosts: &[&str]) -> HostBrowser {
        let b = client_builder_for(&gw.p.ca, &["http/1.1"]).http1_only();
        Self::with_builder(gw, b, hosts)
    }

    fn with_builder(gw: &Gateway, mut b: reqwest::ClientBuilder, hosts: &[&str]) -> HostBrowser {
        for h in hosts {
            // reqwest takes the port from the URL; the one given here is ignored.
            b = b.resolve(h, SocketAddr::from(([127, 0, 0, 1], gw.port())));
        }
        HostBrowser {
            client: b.build().unwrap(),
            port: gw.port(),
            jar: Jar::default(),
        }
    }

    /// A browser on `client` for a gateway on `port` (e.g. the demo's, whose host
    /// names resolve by themselves).
    pub fn with_client(client: reqwest::Client, port: u16) -> HostBrowser {
        HostBrowser {
            client,
            port,
            jar: Jar::default(),
        }
    }

    /// `https://HOST:PORT` of the gateway under `host`.
    pub fn origin(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }
    /// `https://HOST:PORT/TARGET`.
    pub fn url(&self, host: &str, target: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("{}{target}", self.origin(host)))
            .unwrap_or_else(|e| panic!("bad target {host} {target:?}: {e}"))
    }

    /// Sends one request with the jar's cookies for its URL; stores the answer's.
    pub async fn send_url(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Page {
        let mut req = self.client.request(method, url.clone());
        let cookies = self.jar.header_for(&url);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b);
        }
        let resp = tokio::time::timeout(Duration::from_secs(60), req.send())
            .await
            .unwrap_or_else(|_| panic!("{url}: no answer in 60 s"))
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for v in headers.get_all("set-cookie") {
            self.jar.store(&url, &String::from_utf8_lossy(v.as_bytes()));
        }
        let body = String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).into_owned();
        Page {
            status,
            url,
            headers,
            body,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        host: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Page {
        self.send_url(method, self.url(host, target), headers, None)
            .await
    }

    /// A navigation (`GET` with a browser's `Accept`).
    pub async fn get(&self, host: &str, target: &str) -> Page {
        self.get_url(self.url(host, target)).await
    }
    pub async fn get_url(&self, url: reqwest::Url) -> Page {
        self.send_url(reqwest::Method::GET, url, &[("accept", NAV_ACCEPT)], None)
            .await
    }
    /// An API call (`Accept: application/json`).
    pub async fn api(&self, host: &str, target: &str) -> Page {
        self.send(
            reqwest::Method::GET,
            host,
            target,
            &[("accept", "application/json")],
        )
        .await
    }

    /// Submits the form of `page` posting to `action` (resolved against the page's
    /// URL, as a browser does), `set` overriding or adding fields.
    pub async fn submit(&self, page: &Page, action: &str, set: &[(&str, &str)]) -> Page {
        let form = page
            .form(action)
            .unwrap_or_else(|| panic!("no form for {action} on {}", page.describe()));
        let mut fields: Vec<(String, String)> = form
            .into_iter()
            .filter(|(_, _, ty)| !matches!(ty.as_str(), "checkbox" | "submit" | "button" | "radio"))
            .map(|(n, v, _)| (n, v))
            .collect();
        for (k, v) in set {
            match fields.iter_mut().find(|(n, _)| n == k) {
                Some(f) => f.1 = v.to_string(),
                None => fields.push((k.to_string(), v.to_string())),
            }
        }
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = page.url.join(action).unwrap();
        self.send_url(
            reqwest::Method::POST,
            url,
            &[("accept", NAV_ACCEPT)],
            Some(body),
        )
        .await
    }

    /// Follows redirects to any host this browser resolves; returns the last page.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            if !page.is_redirect() {
                return page;
            }
            let Some(next) = page.location_url() else {
                return page;
            };
            if next.port_or_known_default() != Some(self.port) {
                return page;
            }
            page = self.get_url(next).await;
        }
        panic!("redirect loop ending at {}", page.describe());
    }

    /// The login form on `host` (with `rd` when given), submitted with these
    /// credentials; the answer to the `POST` (not followed).
    pub async fn login(&self, host: &str, user: &str, password: &str, rd: Option<&str>) -> Page {
        let target = match rd {
            Some(rd) => format!("{}?rd={}", p("/login"), enc(rd)),
            None => p("/login"),
        };
        let form = self.get(host, &target).await;
        assert_eq!(form.status, 200, "login form: {}", form.describe());
        self.submit(
            &form,
            &p("/login"),
            &[("username", user), ("password", password)],
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// A legacy app as an upstream
// ---------------------------------------------------------------------------

/// One request as an `AppUpstream` received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    pub fn has_header_like(&self, name: &str) -> bool {
        let want = name.to_ascii_lowercase().replace('_', "-");
        self.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().replace('_', "-") == want)
    }
}

struct AppState {
    name: String,
    addr: SocketAddr,
    seen: Mutex<Vec<Seen>>,
    /// Downloads send their first half, then wait until this is set.
    release: AtomicBool,
    /// Downloads that have sent their first half.
    held: AtomicUsize,
}

type UBody = BoxBody<Bytes, Infallible>;

/// A real HTTP/1.1 server on 127.0.0.1:0 that behaves like a legacy app. What it
/// does depends on the last path segment it receives:
///
/// - `abs-redirect?to=/x`: 302 to `http://127.0.0.1:PORT/x`, its own address, as an
///   app that builds redirects from its configured URL does (Django, Jupyter);
/// - `rel-redirect?to=/x`: 302 to `/x`;
/// - `foreign-redirect`: 302 to `http://elsewhere.test/away` (not its own address);
/// - `content-location`: 200 with `Content-Location: http://127.0.0.1:PORT/doc/1`;
/// - `set-cookies`: cookies with `Path=/`, `Path=/sub` and no `Path`;
/// - `download?bytes=N`: N bytes of `pattern_chunk()`, the second half only once
///   the test calls `release()`;
/// - anything else: 200 JSON `{"app":NAME,"uri":…,"headers":[[k,v],…]}`.
pub struct AppUpstream {
    st: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AppUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(b: impl Into<Bytes>) -> UBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| crate::flows::dec(v))
    })
}

async fn app_handle(
    st: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<UBody>, Infallible> {
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    st.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: uri.clone(),
        headers: headers.clone(),
    });
    let _ = req.into_body().collect().await;
    let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
    let last = path.rsplit('/').next().unwrap_or("");
    let own = format!("http://{}", st.addr);
    let to = param(query, "to").unwrap_or_else(|| "/".to_string());
    let r = Response::builder().header("x-app", &st.name);
    let resp = match last {
        "abs-redirect" => r
            .status(StatusCode::FOUND)
            .header("location", format!("{own}{to}"))
            .body(full("")),
        "rel-redirect" => r
            .status(StatusCode::FOUND)
            .header("location", to)
            .body(full("")),
        "foreign-redirect" => r
            .status(StatusCode::FOUND)
            .header("location", "http://elsewhere.test/away")
            .body(full("")),
        "content-location" => r
            .header("content-location", format!("{own}/doc/1"))
            .header("content-type", "text/plain")
            .body(full("doc")),
        "set-cookies" => r
            .header("set-cookie", "root_c=1; Path=/")
            .header("set-cookie", "sub_c=2; Path=/sub; HttpOnly")
            .header("set-cookie", "nopath_c=3")
            .header("content-type", "text/plain")
            .body(full("cookies")),
        "download" => {
            let total: u64 = param(query, "bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let half = total / 2;
            let st2 = st.clone();
            let stream = futures_util::stream::unfold((0u64, false), move |(sent, waited)| {
                let st = st2.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let mut waited = waited;
                    if sent >= half && !waited {
                        st.held.fetch_add(1, Ordering::SeqCst);
                        while !st.release.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        waited = true;
                    }
                    let chunk = pattern_chunk();
                    let limit = if waited { total } else { half };
                    let n = (limit - sent).min(chunk.len() as u64) as usize;
                    Some((
                        Ok::<_, Infallible>(Frame::data(chunk.slice(..n))),
                        (sent + n as u64, waited),
                    ))
                }
            });
            r.header("content-type", "application/octet-stream")
                .header("content-length", total.to_string())
                .body(BodyExt::boxed(StreamBody::new(stream)))
        }
        _ => {
            let json = serde_json::json!({ "app": st.name, "uri": uri, "headers": headers });
            r.header("content-type", "application/json")
                .body(full(json.to_string()))
        }
    };
    Ok(resp.unwrap())
}

impl AppUpstream {
    pub async fn start(name: &str) -> AppUpstream {
        init();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = Arc::new(AppState {
            name: name.to_string(),
            addr,
            seen: Mutex::new(Vec::new()),
            release: AtomicBool::new(false),
            held: AtomicUsize::new(0),
        });
        let st2 = st.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let st = st2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| app_handle(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        AppUpstream { st, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.st.addr)
    }
    pub fn name(&self) -> &str {
        &self.st.name
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.st.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.st.seen.lock().unwrap().len()
    }
    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("app {} received no request", self.st.name))
    }
    /// Lets every held download send its second half.
    pub fn release(&self) {
        self.st.release.store(true, Ordering::SeqCst);
    }
    /// Downloads that have sent their first half and wait for `release()`.
    pub fn held(&self) -> usize {
        self.st.held.load(Ordering::SeqCst)
    }
}

/// Polls `cond` every 50 ms until it holds or `within` has passed.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Self-tests of the jar and the browser (they must hold before any app test can
// be believed)
// ---------------------------------------------------------------------------

#[test]
fn jar_keeps_domain_path_and_host_only_cookies_apart_like_a_browser() {
    let jar = Jar::default();
    let u = |s: &str| reqwest::Url::parse(s).unwrap();
    let rec = u("https://records.clinic.test:8443/a/b");
    assert!(jar.store(&rec, "d=1; Domain=clinic.test; Path=/; Secure"));
    assert!(jar.store(&rec, "h=2; Path=/"));
    assert!(jar.store(&rec, "l=3; Path=/lab"));
    assert!(jar.store(&rec, "n=4")); // default path: /a
    assert!(!jar.store(&rec, "x=5; Domain=other.test"), "foreign domain");
    assert!(!jar.store(&rec, "__Host-y=6; Secure; Path=/; Domain=clinic.test"));
    assert!(
        !jar.store(&rec, "__Host-y=6; Path=/"),
        "__Host- without Secure"
    );
    assert!(
        !jar.store(&rec, "__Secure-z=7; Path=/"),
        "__Secure- without Secure"
    );
    assert!(jar.store(&rec, "__Host-ok=8; Secure; Path=/"));
    let names =
        |url: &str| -> Vec<String> { jar.for_url(&u(url)).into_iter().map(|c| c.name).collect() };
    assert_eq!(names("https://lab.clinic.test/"), ["d"]);
    assert_eq!(
        names("http://lab.clinic.test/"),
        Vec::<String>::new(),
        "Secure"
    );
    assert_eq!(names("https://clinic.test/"), ["d"]);
    assert_eq!(names("https://evil.test/"), Vec::<String>::new());
    assert_eq!(names("https://xclinic.test/"), Vec::<String>::new());
    let mut r = names("https://records.clinic.test/lab/x");
    r.sort();
    assert_eq!(r, ["__Host-ok", "d", "h", "l"]);
    assert!(!names("https://records.clinic.test/laboratory").contains(&"l".to_string()));
    assert!(names("https://records.clinic.test/a/c").contains(&"n".to_string()));
    assert!(!names("https://records.clinic.test/ab").contains(&"n".to_string()));
    // Deletion needs the same name, domain and path.
    assert!(jar.store(&rec, "d=; Path=/; Max-Age=0"));
    assert_eq!(
        names("https://lab.clinic.test/"),
        ["d"],
        "host-only delete misses it"
    );
    assert!(jar.store(&rec, "d=; Domain=clinic.test; Path=/; Secure; Max-Age=0"));
    assert_eq!(names("https://lab.clinic.test/"), Vec::<String>::new());
}

#[tokio::test]
async fn host_browser_reaches_the_gateway_under_any_test_name() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(&up)
        .bypass("/pub/")
        .cert_names(&["records.clinic.test", "lab.clinic.test"])
        .start()
        .await;
    let b = HostBrowser::new(&gw, &["records.clinic.test", "lab.clinic.test"]);
    for host in ["records.clinic.test", "lab.clinic.test"] {
        let r = b.api(host, "/pub/x").await;
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            up.last().header("host"),
            Some(format!("{host}:{}", gw.port()))
        );
    }
    // The upstream's Path=/ cookies went into the jar for that host only.
    let lab = b.url("lab.clinic.test", "/");
    let rec = b.url("records.clinic.test", "/");
    assert!(b.jar.sent_to(&lab, "up_a").is_some());
    assert!(b.jar.sent_to(&rec, "up_a").is_some());
    assert!(
        b.jar
            .sent_to(&b.url("clinic.example", "/"), "up_a")
            .is_none()
    );
}
