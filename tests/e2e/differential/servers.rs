//! The real upstream servers of the differential test: Tomcat 10 and hypercorn, each
//! its own process from a temporary directory on a free loopback port, and the parsers
//! of what each logs it served.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::wire::exchange;
use crate::harness::*;
/// A real upstream server process, killed on drop.
pub(super) struct Server {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) port: u16,
    /// Where the server records what it served.
    pub(super) log: PathBuf,
    pub(super) stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    /// Kills the server's whole process group: hypercorn serves from a worker process
    /// that outlived a kill of its parent alone (leaked across test runs).
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
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
    pub(super) fn tomcat() -> Server {
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
            .process_group(0)
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
    pub(super) fn hypercorn() -> Server {
        let probe = Command::new("python3")
            .args(["-c", "import hypercorn"])
            .output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            panic!(
                "hypercorn is not installed for `python3` ({}): the differential test needs \
                 it. `scripts/test.sh` installs it (python3 -m pip install hypercorn).",
                probe
                    .map(|o| String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                        .to_string())
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
            .process_group(0)
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

    pub(super) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits until the server accepts connections (Tomcat binds only once its
    /// application is deployed), failing early with its output if it exits.
    pub(super) async fn wait_ready(&mut self) {
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
    pub(super) async fn flush_log(&self) {
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
    pub(super) fn served(&self) -> Vec<Served> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        match self.name {
            "tomcat" => text.lines().filter_map(tomcat_record).collect(),
            _ => text.lines().filter_map(asgi_record).collect(),
        }
    }
}

/// One request a server handled.
#[derive(Debug)]
pub(super) struct Served {
    /// The `vt=` marker of its query, if any.
    pub(super) marker: Option<String>,
    /// The path the server resolved and served; None when it refused before that.
    pub(super) reading: Option<String>,
    pub(super) remote_user: Vec<String>,
    pub(super) line: String,
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
