//! One headless Chromium behind its own `chromedriver`, with the helpers the journeys
//! need: fill and press keys, wait for a page, photograph it at two sizes, run axe.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::free_port;

pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

const AXE: &str = include_str!("vendor/axe.min.js");

/// The sizes every page is photographed at.
pub const SIZES: [(&str, u32, u32); 2] = [("desktop", 1280, 900), ("phone", 390, 844)];

/// Only one browser at a time: the machine has two cores, and timings must hold.
pub static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chromium_bin() -> String {
    std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

fn chromedriver_bin() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_string())
}

/// `target/screenshots/` (or under `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How the browser presents itself.
pub struct Options {
    /// `intl.accept_languages`, e.g. "en-US,en".
    pub languages: &'static str,
    pub javascript: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            languages: "en-US,en",
            javascript: true,
        }
    }
}

pub struct Chrome {
    pub c: Client,
    driver: Child,
    profile: tempfile::TempDir,
    pub downloads: PathBuf,
    javascript: bool,
}

impl Chrome {
    pub async fn start(opts: Options) -> Chrome {
        for bin in [chromium_bin(), chromedriver_bin()] {
            assert!(
                Path::new(&bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let driver = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let lang = opts.languages.split(',').next().unwrap_or("en-US");
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium_bin(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--no-default-browser-check", "--disable-quic",
                    "--ignore-certificate-errors", "--disable-extensions",
                    "--password-store=basic", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--font-render-hinting=none",
                    "--disable-features=Translate,PasswordLeakDetection,OptimizationHints,MediaRouter",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                    "--window-size=1280,900",
                ],
                "prefs": {
                    "intl.accept_languages": opts.languages,
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                    "profile.managed_default_content_settings.javascript":
                        if opts.javascript { 1 } else { 2 },
                },
            },
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let c = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    panic!("chromium/chromedriver did not start: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        c.update_timeouts(TimeoutConfiguration::new(
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(5)),
        ))
        .await
        .unwrap();
        c.set_window_size(1280, 900).await.unwrap();
        Chrome {
            c,
            driver,
            profile,
            downloads,
            javascript: opts.javascript,
        }
    }

    /// Ends the browser session (Chromium exits) and chromedriver.
    pub async fn quit(self) {
        let _ = self.c.clone().close().await;
        // Drop kills chromedriver and any Chromium left over.
    }

    pub async fn goto(&self, url: &str) {
        self.c.goto(url).await.unwrap();
    }

    pub async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    pub async fn url(&self) -> url::Url {
        self.c.current_url().await.unwrap()
    }

    /// Waits until the browser shows a page at `path`.
    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to arrive at {path}, still at {now}:\n{}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn source(&self) -> String {
        self.c.source().await.unwrap_or_default()
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.path().await,
                self.source().await
            ),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.c.find_all(Locator::Css(css)).await.unwrap()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.unwrap()
    }

    /// Types into the element `css` (after clicking it, as a person would).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.click().await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Types into whatever has the focus (keys as a keyboard sends them).
    pub async fn keys(&self, text: &str) {
        self.c
            .active_element()
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    /// The `id` of the focused element.
    pub async fn focused_id(&self) -> String {
        let e = self.c.active_element().await.unwrap();
        e.attr("id").await.unwrap().unwrap_or_default()
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub async fn js(&self, script: &str) -> Value {
        assert!(self.javascript, "JavaScript is off in this browser");
        self.c.execute(script, vec![]).await.unwrap()
    }

    /// The visible viewport's size in CSS pixels.
    async fn viewport(&self) -> (u64, u64) {
        let v = self
            .js("return [window.innerWidth, window.innerHeight];")
            .await;
        (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0))
    }

    /// Saves the page as `target/screenshots/NAME-desktop.png` and `NAME-phone.png`.
    pub async fn shot(&self, name: &str) {
        self.shot_at(name, None).await;
    }

    /// As [`Chrome::shot`], with the element `css` scrolled to the top of the picture
    /// (a section further down a page, for the staff guide).
    pub async fn shot_at(&self, name: &str, css: Option<&str>) {
        let dir = screenshot_dir();
        for (label, w, h) in SIZES {
            self.c.set_window_size(w, h).await.unwrap();
            if self.javascript {
                // The window is a little larger than the page's viewport: grow it by
                // the difference so the picture is exactly w×h.
                let (vw, vh) = self.viewport().await;
                if (vw, vh) != (w as u64, h as u64) {
                    let grow = |want: u32, got: u64| (2 * want as u64).saturating_sub(got) as u32;
                    self.c
                        .set_window_size(grow(w, vw), grow(h, vh))
                        .await
                        .unwrap();
                }
                let (vw, vh) = self.viewport().await;
                assert_eq!(
                    (vw, vh),
                    (w as u64, h as u64),
                    "viewport of the {label} screenshot"
                );
                match css {
                    None => {
                        self.js("window.scrollTo(0, 0); return document.readyState;")
                            .await;
                    }
                    Some(css) => {
                        self.js(&format!(
                            "document.querySelector({css:?}).scrollIntoView({{block: 'start'}}); return 1;"
                        ))
                        .await;
                    }
                }
            }
            let png = self.c.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{label}.png")), png).unwrap();
        }
        self.c.set_window_size(1280, 900).await.unwrap();
    }

    /// Runs axe-core on the page at desktop and at phone size (see [`Chrome::axe`]).
    pub async fn axe_sizes(&self, name: &str) {
        for (label, w, h) in SIZES {
            self.c.set_window_size(w, h).await.unwrap();
            self.axe(&format!("{name} ({label})")).await;
        }
        self.c.set_window_size(1280, 900).await.unwrap();
    }

    /// Runs axe-core on the page; fails on any serious or critical violation, and
    /// writes every finding to `target/screenshots/axe-report.txt`.
    pub async fn axe(&self, name: &str) {
        self.c
            .execute(&format!("{AXE}\nreturn typeof axe;"), vec![])
            .await
            .unwrap();
        let raw = self
            .c
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] })
  .then(r => done(JSON.stringify(r.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '')) })))))
  .catch(e => done('axe failed: ' + e));"#,
                vec![],
            )
            .await
            .unwrap();
        let raw = raw.as_str().unwrap_or_default().to_string();
        let violations: Vec<Value> = serde_json::from_str(&raw)
            .unwrap_or_else(|_| panic!("axe did not run on {name}: {raw}"));
        let mut report = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(screenshot_dir().join("axe-report.txt"))
            .unwrap();
        writeln!(report, "== {name}: {} violation(s)", violations.len()).unwrap();
        for v in &violations {
            writeln!(report, "{v}").unwrap();
        }
        let bad: Vec<&Value> = violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(
            bad.is_empty(),
            "axe: serious/critical violations on {name}:\n{}",
            serde_json::to_string_pretty(&bad).unwrap()
        );
    }

    /// Waits for a finished download named `name` and returns its text.
    pub async fn downloaded(&self, name: &str) -> String {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.is_empty()
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not downloaded into {}",
                self.downloads.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium processes of this profile that outlived their driver (a failed test).
        let marker = self.profile.path().display().to_string();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&marker) {
                    // A process this test started (through chromedriver), by its id.
                    let _ = Command::new("kill")
                        .arg("-9")
                        .arg(pid.to_string())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}
