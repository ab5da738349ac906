//! Issue 23, SPEC §11: users from a directory. Every test runs its own OpenLDAP
//! `slapd` (the Debian package's binary, never the system service) with a throw-away
//! configuration and database on free loopback ports, serving LDAPS and StartTLS with a
//! certificate from a per-test CA that the gateway trusts through `ldap.ca_file`.
//! slapd runs with `-d stats`, so its log lists every BIND and SRCH it received: the
//! tests count binds in it (lockout before any bind, escaping, disabled accounts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::flows::*;
use crate::harness::*;

const SUFFIX: &str = "dc=clinic,dc=example";
const ROOT_DN: &str = "cn=admin,dc=clinic,dc=example";
const ROOT_PW: &str = "root-pw-not-used-by-the-gateway";
const SERVICE_DN: &str = "cn=vestibule,ou=service,dc=clinic,dc=example";
const SERVICE_PW: &str = "svc-Pw-7yQ2";
const DOCTORS: &str = "cn=doctors,ou=groups,dc=clinic,dc=example";
const PATIENTS: &str = "cn=patients,ou=groups,dc=clinic,dc=example";

/// Active Directory's `userAccountControl`, defined for slapd so the disabled-account
/// rule is exercised on the real attribute (512 = normal account, 514 = disabled).
const AD_SCHEMA: &str = "attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )\nobjectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'vestibuleTestAccount' AUXILIARY MAY ( userAccountControl ) )\n";

fn doctor() -> TestUser {
    TestUser::new("doc", &["doctor"])
}
fn patient() -> TestUser {
    TestUser::new("pat", &["patient"])
}
fn dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

/// One person entry; `uac` is the userAccountControl value.
fn person(u: &TestUser, uac: u32) -> String {
    format!(
        "dn: {}\nobjectClass: inetOrgPerson\nobjectClass: vestibuleTestAccount\nuid: {}\ncn: {}\nsn: {}\ndisplayName: {}\nmail: {}\nuserPassword: {}\nuserAccountControl: {uac}\n\n",
        dn(&u.name),
        u.name,
        u.name,
        u.name,
        u.display_name(),
        u.email(),
        u.password
    )
}

/// The directory every test starts from: doc in doctors, pat in patients, `off`
/// disabled (in doctors), `nogroup` in no group, and the service account.
fn base_ldif() -> String {
    let mut t = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Clinic\ndc: clinic\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=service,{SUFFIX}\nobjectClass: organizationalUnit\nou: service\n\n\
         dn: {SERVICE_DN}\nobjectClass: person\ncn: vestibule\nsn: vestibule\nuserPassword: {SERVICE_PW}\n\n"
    );
    t.push_str(&person(&doctor(), 512));
    t.push_str(&person(&patient(), 512));
    t.push_str(&person(&TestUser::new("off", &[]), 514));
    t.push_str(&person(&TestUser::new("nogroup", &[]), 512));
    t.push_str(&person(&TestUser::new("locky", &[]), 512));
    t.push_str(&format!(
        "dn: {DOCTORS}\nobjectClass: groupOfNames\ncn: doctors\nmember: {}\nmember: {}\n\n",
        dn("doc"),
        dn("off")
    ));
    t.push_str(&format!(
        "dn: {PATIENTS}\nobjectClass: groupOfNames\ncn: patients\nmember: {}\nmember: {}\n\n",
        dn("pat"),
        dn("locky")
    ));
    t
}

/// A real slapd on two free loopback ports: `ldap://` (StartTLS) and `ldaps://`.
struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    tls_port: u16,
    log: PathBuf,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Slapd {
    /// Writes a configuration and certificate, loads `ldif` with slapadd, starts slapd.
    fn start(ca: &TestCa, ldif: &str) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cert = ca.issue("slapd");
        std::fs::write(d.join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(d.join("cert.pem"), &cert.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), &cert.key_pem).unwrap();
        std::fs::write(d.join("ad.schema"), AD_SCHEMA).unwrap();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let p = |f: &str| d.join(f).display().to_string();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude {}\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {}\n\
             TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n\
             directory {}\nmaxsize 10485760\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by users read by * none\n",
            p("ad.schema"),
            p("slapd.pid"),
            p("ca.pem"),
            p("cert.pem"),
            p("key.pem"),
            p("db"),
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        std::fs::write(d.join("init.ldif"), ldif).unwrap();
        let out = Command::new("/usr/sbin/slapadd")
            .args(["-f", &p("slapd.conf"), "-l", &p("init.ldif")])
            .output()
            .expect("slapadd (scripts/test.sh installs the slapd package)");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            log: d.join("slapd.log"),
            dir,
            child: None,
            port: free_port(),
            tls_port: free_port(),
        };
        s.run();
        s
    }

    /// Starts slapd (again) on the same ports and database; returns when it accepts.
    fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
                self.port, self.tls_port
            ))
            .args(["-d", "stats"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "slapd did not listen: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops slapd and waits until it has exited (its ports are then closed).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ldaps(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// BIND operations slapd received as `bind_dn` (any DN when `None`).
    fn binds(&self, bind_dn: Option<&str>) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" BIND dn=\"") && l.contains(" method="))
            .filter(|l| bind_dn.is_none_or(|d| l.contains(&format!("BIND dn=\"{d}\""))))
            .count()
    }

    /// Applies an LDIF change with ldapmodify, as the directory's administrator,
    /// over StartTLS.
    fn modify(&self, ldif: &str) {
        use std::io::Write as _;
        let mut child = Command::new("ldapmodify")
            .env("LDAPTLS_CACERT", self.ca_file())
            .args(["-x", "-ZZ", "-H"])
            .arg(format!("ldap://127.0.0.1:{}", self.port))
            .args(["-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (scripts/test.sh installs ldap-utils)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `[ldap]` section for `urls`, trusting `ca_file`.
fn ldap_toml(urls: &[String], ca_file: &Path, refresh: &str, extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[ldap]\nurl = [{}]\nca_file = {:?}\nbind_dn = {SERVICE_DN:?}\nbase_dn = \"ou=people,{SUFFIX}\"\n\
         user_filter = \"(&(objectClass=inetOrgPerson)(uid={{username}}))\"\n\
         display_name_attribute = \"displayName\"\nemail_attribute = \"mail\"\nnested_groups = false\n\
         refresh = {refresh:?}\ntimeout = \"2s\"\n{extra}\n\
         [ldap.group_roles]\n{DOCTORS:?} = \"doctor\"\n{PATIENTS:?} = \"patient\"\n",
        urls.join(", "),
        ca_file.display().to_string(),
    )
}

/// A gateway whose users come from `urls`; `/staff/` needs the doctor role.
async fn gateway(
    up: &Upstream,
    urls: &[String],
    ca_file: &Path,
    refresh: &str,
    more: &str,
) -> Gateway {
    Gateway::builder(up)
        .env("VESTIBULE__USERS__SOURCE", "ldap")
        .env("VESTIBULE_LDAP_BIND_PASSWORD", SERVICE_PW)
        .extra(&format!(
            "[lockout]\nip_failures_per_minute = 100000\n{more}\n\n{}",
            ldap_toml(urls, ca_file, refresh, "")
        ))
        .rule("path_prefix = \"/staff/\"\naccess = \"authenticated\"\nroles = [\"doctor\"]")
        .start()
        .await
}

/// Polls `check` every 100 ms until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs a doctor in, enrolls, and returns the phone (the session is complete).
async fn enroll_doctor(b: &Browser, doc: &TestUser) -> Authenticator {
    let loc = b.login_ok(doc, "/staff/x").await;
    assert!(
        loc.starts_with(&p("/setup")),
        "a doctor from the directory must be sent to setup, got {loc}"
    );
    let setup = b.get(&loc).await;
    let shown = read_setup(&setup);
    let auth = Authenticator::new(shown.secret, 30);
    let code = auth.fresh().await;
    let done = b.submit(&setup, &p("/setup"), &[("code", &code)]).await;
    assert_eq!(done.status, 200, "setup: {}", done.describe());
    auth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_enrolls_and_is_challenged_patient_signs_in_wrong_password_refused() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "5m", "").await;
    let doc = doctor();

    // doctors group → doctor role → enrollment → the staff path with identity headers.
    let b = Browser::new(&gw);
    let auth = enroll_doctor(&b, &doc).await;
    let page = b.get("/staff/x").await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let rec = up.last();
    assert_eq!(rec.header("remote-user").as_deref(), Some("doc"));
    assert_eq!(rec.header("remote-groups").as_deref(), Some("doctor"));
    assert_eq!(
        rec.header("remote-email").as_deref(),
        Some("doc@clinic.example")
    );
    assert_eq!(rec.header("remote-name").as_deref(), Some("Test DOC"));
    assert_eq!(rec.header("remote-mfa").as_deref(), Some("totp"));

    // Next sign-in (any case typed): the challenge, then through.
    let b2 = Browser::new(&gw);
    let loc = b2
        .login_ok(
            &TestUser {
                name: "DOC".into(),
                ..doc.clone()
            },
            "/staff/y",
        )
        .await;
    assert!(loc.starts_with(&p("/challenge")), "got {loc}");
    let ch = b2.get(&loc).await;
    let code = auth.fresh().await;
    let r = b2.submit(&ch, &p("/challenge"), &[("code", &code)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(b2.get("/staff/y").await.status, 200);
    assert_eq!(up.last().header("remote-user").as_deref(), Some("doc"));

    // A patient: password only, no staff path.
    let pat = patient();
    let bp = Browser::new(&gw);
    let loc = bp.login_ok(&pat, "/records").await;
    assert_eq!(loc, "/records");
    assert_eq!(bp.get("/records").await.status, 200);
    assert_eq!(
        up.last().header("remote-groups").as_deref(),
        Some("patient")
    );
    assert_eq!(bp.get("/staff/x").await.status, 403);

    // A wrong password: the form again, 401, no session; a user in no mapped group
    // signs in with no roles.
    let bw = Browser::new(&gw);
    let wrong = bw.login("pat", "not-the-password", "/").await;
    assert_eq!(wrong.status, 401, "{}", wrong.describe());
    assert!(bw.cookie(SESSION_COOKIE).is_none());
    let ng = TestUser::new("nogroup", &[]);
    let bn = Browser::new(&gw);
    bn.login_ok(&ng, "/plain").await;
    assert_eq!(bn.get("/plain").await.status, 200);
    assert_eq!(up.last().header("remote-groups").as_deref(), Some(""));
    let logs = gw.logs();
    assert!(has_event(&logs, "login.failure", "pat"), "{logs}");
    assert!(!logs.contains(&pat.password) && !logs.contains(&doc.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_metacharacters_in_a_username_match_no_one_and_never_bind() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "5m", "").await;
    let doc = doctor();
    let before = slapd.binds(Some(&dn("doc")));
    for typed in ["*", ")(uid=*", "do*", "doc)(uid=doc", "*)(|(uid=*", "doc\\"] {
        let b = Browser::new(&gw);
        let r = b.login(typed, &doc.password, "/").await;
        assert_eq!(
            r.status,
            401,
            "{typed:?} with doc's password: {}",
            r.describe()
        );
        assert!(
            b.cookie(SESSION_COOKIE).is_none(),
            "{typed:?} got a session"
        );
    }
    assert_eq!(
        slapd.binds(Some(&dn("doc"))),
        before,
        "a username with filter syntax reached doc's entry"
    );
    // The search carried the escaped value, not filter syntax.
    let log = slapd.log();
    assert!(
        log.contains("(uid=\\2A)") || log.contains("(uid=\\2a)"),
        "{log}"
    );
    // doc still signs in normally.
    Browser::new(&gw).login_ok(&doc, "/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_refused_like_a_wrong_password_without_a_bind() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "5m", "").await;
    let off = TestUser::new("off", &[]);
    let b = Browser::new(&gw);
    let disabled = b.login(&off.name, &off.password, "/").await;
    let wrong = b.login("pat", "not-the-password", "/").await;
    assert_eq!(disabled.status, 401, "{}", disabled.describe());
    assert_eq!(wrong.status, 401);
    let strip = |p: &Page| {
        p.body
            .replace(&p.csrf(), "")
            .replace("value=\"off\"", "")
            .replace("value=\"pat\"", "")
    };
    assert_eq!(
        strip(&disabled),
        strip(&wrong),
        "the answers must not differ"
    );
    assert_eq!(
        slapd.binds(Some(&dn("off"))),
        0,
        "a disabled account was bound"
    );
    let logs = gw.logs();
    assert!(
        audit_events(&logs)
            .iter()
            .any(|e| e["event"] == "login.failure"
                && e["user"] == "off"
                && e["reason"] == "disabled"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_from_the_doctors_group_loses_staff_access_within_refresh() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "1s", "").await;
    let doc = doctor();
    let b = Browser::new(&gw);
    enroll_doctor(&b, &doc).await;
    assert_eq!(b.get("/staff/x").await.status, 200);
    slapd.modify(&format!(
        "dn: {DOCTORS}\nchangetype: modify\ndelete: member\nmember: {}\n",
        dn("doc")
    ));
    let removed_at = Instant::now();
    let lost = eventually(Duration::from_secs(6), || async {
        b.get("/staff/x").await.status != 200
    })
    .await;
    assert!(
        lost,
        "staff access survived the group removal: {}",
        gw.log_tail()
    );
    assert!(
        removed_at.elapsed() < Duration::from_secs(4),
        "took {:?}",
        removed_at.elapsed()
    );
    // The session ended (not merely a 403): the next navigation goes to sign-in.
    let page = b.get("/staff/x").await;
    assert_eq!(page.status, 302, "{}", page.describe());
    assert!(
        page.location()
            .unwrap_or_default()
            .starts_with(&p("/login"))
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            audit_events(&gw.logs()).iter().any(|e| {
                e["event"] == "session.revoked" && e["user"] == "doc" && e["by"] == "directory"
            })
        })
        .await,
        "no session.revoked for doc: {}",
        gw.log_tail()
    );
    // Signing in again works (the password is unchanged), now without the role.
    b.remove_cookie(SESSION_COOKIE);
    let again = b.login(&doc.name, &doc.password, "/staff/x").await;
    assert_eq!(again.status, 303, "{}", again.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_stopped_answers_503_at_sign_in_sessions_until_refresh_and_recovers() {
    let ca = TestCa::new();
    let mut slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "1s", "").await;
    let pat = patient();
    let b = Browser::new(&gw);
    b.login_ok(&pat, "/").await;
    assert_eq!(b.get("/records").await.status, 200);

    slapd.stop();
    // Sign-in: 503 "directory unavailable", nothing guessed, no session.
    let other = Browser::new(&gw);
    let r = other.login(&doctor().name, &doctor().password, "/").await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert!(r.header("retry-after").is_some());
    assert!(
        r.body.to_lowercase().contains("directory"),
        "{}",
        r.describe()
    );
    assert!(other.cookie(SESSION_COOKIE).is_none());
    // The complete session works until its refresh fails, then 503 (never a 200
    // after the refresh reported the directory unavailable).
    let failed_refresh = "directory unavailable at refresh";
    let forwarded = std::sync::atomic::AtomicUsize::new(up.count());
    let turned = eventually(Duration::from_secs(6), || async {
        let s = b.get("/records").await.status;
        if s == 200 {
            forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let refreshed_failed = gw.logs().contains(failed_refresh);
        assert!(
            s == 200 || (s == 503 && refreshed_failed),
            "status {s} before the refresh failed: {}",
            gw.log_tail()
        );
        s == 503
    })
    .await;
    assert!(turned, "the session never answered 503: {}", gw.log_tail());
    assert_eq!(
        up.count(),
        forwarded.into_inner(),
        "a request answered 503 was forwarded"
    );

    // The directory returns: the session works again after a refresh, sign-in too.
    slapd.run();
    assert!(
        eventually(Duration::from_secs(8), || async {
            b.get("/records").await.status == 200
        })
        .await,
        "the session did not recover: {}",
        gw.log_tail()
    );
    Browser::new(&gw).login_ok(&doctor(), "/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_fails_over_to_the_second_slapd() {
    let ca = TestCa::new();
    let mut first = Slapd::start(&ca, &base_ldif());
    let second = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(
        &up,
        &[first.ldaps(), second.ldaps()],
        &first.ca_file(),
        "5m",
        "",
    )
    .await;
    let pat = patient();
    Browser::new(&gw).login_ok(&pat, "/").await;
    assert_eq!(
        first.binds(Some(&dn("pat"))),
        1,
        "the first server is preferred"
    );
    assert_eq!(second.binds(Some(&dn("pat"))), 0);
    first.stop();
    let b = Browser::new(&gw);
    b.login_ok(&pat, "/").await;
    assert_eq!(b.get("/r").await.status, 200);
    assert_eq!(
        second.binds(Some(&dn("pat"))),
        1,
        "the second server took over"
    );
    assert_eq!(
        second.binds(Some(SERVICE_DN)),
        1,
        "one pooled service connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_applies_before_any_bind() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(
        &up,
        &[slapd.ldaps()],
        &slapd.ca_file(),
        "5m",
        "max_failures = 3\nduration = \"1m\"",
    )
    .await;
    let locky = TestUser::new("locky", &[]);
    let b = Browser::new(&gw);
    for i in 0..3 {
        let r = b.login(&locky.name, "wrong-password", "/").await;
        assert!(
            r.status == 401 || (i == 2 && r.status == 429),
            "{}",
            r.describe()
        );
    }
    assert_eq!(
        slapd.binds(Some(&dn("locky"))),
        3,
        "each checked attempt is one bind"
    );
    let all_before = slapd.binds(None);
    for pw in ["wrong-again", locky.password.as_str(), "another"] {
        let r = b.login(&locky.name, pw, "/").await;
        assert_eq!(r.status, 429, "{}", r.describe());
    }
    // An unknown name is locked the same way once it failed enough.
    for _ in 0..3 {
        b.login("nobody-here", "x-wrong", "/").await;
    }
    let unknown_before = slapd.binds(None);
    assert_eq!(b.login("nobody-here", "x-wrong", "/").await.status, 429);
    assert_eq!(
        slapd.binds(None),
        unknown_before,
        "a locked unknown name reached slapd"
    );
    assert_eq!(
        slapd.binds(Some(&dn("locky"))),
        3,
        "a locked attempt reached slapd"
    );
    assert!(slapd.binds(None) >= all_before);
    let srch_for_locky = |log: &str| {
        log.lines()
            .filter(|l| l.contains("SRCH") && l.contains("uid=locky"))
            .count()
    };
    let searches = srch_for_locky(&slapd.log());
    assert_eq!(b.login(&locky.name, &locky.password, "/").await.status, 429);
    assert_eq!(
        srch_for_locky(&slapd.log()),
        searches,
        "a locked attempt searched the directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_binds_once_and_admin_commands_follow_the_directory() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "5m", "").await;
    let service_binds = slapd.binds(Some(SERVICE_DN));

    let ok = admin(&gw, &["check-config"], None).await;
    assert_eq!(ok.code, Some(0), "{ok}");
    assert!(ok.stdout.contains("service account bound"), "{ok}");
    assert_eq!(
        slapd.binds(Some(SERVICE_DN)),
        service_binds + 1,
        "check-config binds once"
    );

    // A wrong service password: one line naming the key, exit 2.
    let mut cmd = gw.p.cmd();
    cmd.env("VESTIBULE_LDAP_BIND_PASSWORD", "wrong")
        .arg("--config")
        .arg(&gw.p.config_path)
        .arg("check-config");
    let bad = tokio::task::spawn_blocking(move || run(cmd, None, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(bad.code, Some(2), "{bad}");
    assert!(
        bad.stderr
            .contains("ldap.url: no directory server accepted the service account"),
        "{bad}"
    );

    // Edits refuse and say why; list shows what the directory returns.
    for args in [
        &["users", "add", "x", "--role", "doctor"][..],
        &["users", "set-password", "doc"],
        &["users", "set-roles", "doc", "--role", "clerk"],
        &["users", "disable", "doc"],
        &["users", "enable", "doc"],
    ] {
        let o = admin(&gw, args, Some("a-long-enough-password\n")).await;
        assert_eq!(o.code, Some(2), "{args:?}: {o}");
        assert!(
            o.stderr.contains("users.source = \"ldap\""),
            "{args:?}: {o}"
        );
    }
    let list = admin(&gw, &["users", "list"], None).await;
    assert_eq!(list.code, Some(0), "{list}");
    let line = |name: &str| {
        list.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
            .to_string()
    };
    assert!(line("doc").contains("doctor") && line("doc").contains("active"));
    assert!(line("pat").contains("patient"));
    assert!(line("off").contains("disabled"));

    // 2fa, sessions and unlock work on directory names.
    let doc = doctor();
    let b = Browser::new(&gw);
    enroll_doctor(&b, &doc).await;
    let st = admin(&gw, &["2fa", "status", "DOC"], None).await;
    assert_eq!(st.code, Some(0), "{st}");
    assert!(st.stdout.contains("user: doc"), "{st}");
    let rv = admin(&gw, &["sessions", "revoke", "doc"], None).await;
    assert_eq!(rv.code, Some(0), "{rv}");
    assert_ne!(
        b.get("/staff/x").await.status,
        200,
        "revoked session still works"
    );
    let un = admin(&gw, &["users", "unlock", "doc"], None).await;
    assert_eq!(un.code, Some(0), "{un}");
    let none = admin(&gw, &["2fa", "status", "nobody"], None).await;
    assert_eq!(none.code, Some(2), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_lists_every_ldap_problem_at_once() {
    let up = Upstream::start().await;
    let prepared = Gateway::builder(&up)
        .env("VESTIBULE__USERS__SOURCE", "ldap")
        .extra(
            "[ldap]\nurl = [\"ldap://dc1.clinic.example\", \"ftp://x\"]\nuser_filter = \"(uid=x)\"\nbogus = 1\n\n[ldap.group_roles]\n\"cn=doctors,dc=x\" = \"doc tor\"\n",
        )
        .prepare();
    let mut cmd = prepared.cmd();
    cmd.arg("--config")
        .arg(&prepared.config_path)
        .arg("check-config");
    let out = tokio::task::spawn_blocking(move || run(cmd, None, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "{out}");
    for key in [
        "ldap.url[0]: ldap:// without ldap.start_tls",
        "ldap.url[1]:",
        "ldap.user_filter:",
        "ldap.bogus: unknown key",
        "ldap.bind_dn:",
        "ldap.base_dn:",
        "ldap.bind_password_file:",
        "ldap.group_roles.cn=doctors,dc=x:",
    ] {
        assert!(out.stderr.contains(key), "{key} not reported: {out}");
    }
    // The users file is not read with source = "ldap": no complaint about it.
    assert!(!out.stderr.contains("users.file"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_tls_works_and_an_untrusted_directory_certificate_is_refused() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let start_tls = Gateway::builder(&up)
        .env("VESTIBULE__USERS__SOURCE", "ldap")
        .env("VESTIBULE_LDAP_BIND_PASSWORD", SERVICE_PW)
        .extra(&ldap_toml(
            &[format!("ldap://127.0.0.1:{}", slapd.port)],
            &slapd.ca_file(),
            "5m",
            "start_tls = true",
        ))
        .start()
        .await;
    Browser::new(&start_tls).login_ok(&patient(), "/").await;
    assert_eq!(slapd.binds(Some(&dn("pat"))), 1);

    // A CA that did not sign slapd's certificate: nothing is sent, sign-in fails closed.
    let other = TestCa::new();
    let other_ca = start_tls.p.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, &other.cert_pem).unwrap();
    let untrusted = gateway(&up, &[slapd.ldaps()], &other_ca, "5m", "").await;
    let r = Browser::new(&untrusted)
        .login(&patient().name, &patient().password, "/")
        .await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(
        slapd.binds(Some(&dn("pat"))),
        1,
        "a bind crossed an untrusted connection"
    );
    assert_eq!(
        slapd.binds(Some(SERVICE_DN)),
        1,
        "the service password crossed an untrusted connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_in_the_directory_ends_the_session_and_remembered_browser_within_refresh() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let up = Upstream::start().await;
    let gw = gateway(&up, &[slapd.ldaps()], &slapd.ca_file(), "1s", "").await;
    let doc = doctor();
    // The doctor enrolls, then remembers a browser: the next sign-in skips the code.
    let b = Browser::new(&gw);
    let auth = enroll_doctor(&b, &doc).await;
    let b2 = Browser::new(&gw);
    let loc = b2.login_ok(&doc, "/staff/a").await;
    let ch = b2.get(&loc).await;
    let code = auth.fresh().await;
    let r = b2
        .submit(
            &ch,
            &p("/challenge"),
            &[("code", &code), ("remember_device", "on")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(b2.cookie(DEVICE_COOKIE).is_some(), "no remembered browser");
    b2.remove_cookie(SESSION_COOKIE);
    assert_eq!(
        b2.login_ok(&doc, "/staff/b").await,
        "/staff/b",
        "the remembered browser must skip the code before the change"
    );
    // A patient too.
    let bp = Browser::new(&gw);
    bp.login_ok(&patient(), "/").await;
    assert_eq!(bp.get("/r").await.status, 200);

    // Disabled in the directory: both sessions end within refresh.
    for who in ["doc", "pat"] {
        slapd.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n",
            dn(who)
        ));
    }
    assert!(
        eventually(Duration::from_secs(6), || async {
            b.get("/staff/x").await.status != 200 && bp.get("/r").await.status != 200
        })
        .await,
        "sessions survived the disabling: {}",
        gw.log_tail()
    );
    let logs = gw.logs();
    assert!(
        audit_events(&logs)
            .iter()
            .any(|e| e["event"] == "session.revoked"
                && e["user"] == "doc"
                && e["by"] == "directory"
                && e["devices"] == 1
                && e["reason"] == "account disabled in the directory"),
        "{logs}"
    );
    // Enabled again, the doctor signs in, but the remembered browser is void: the code
    // is asked again.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n",
        dn("doc")
    ));
    b2.remove_cookie(SESSION_COOKIE);
    let loc = b2.login_ok(&doc, "/staff/c").await;
    assert!(
        loc.starts_with(&p("/challenge")),
        "a remembered browser survived the disabling: {loc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_another_instance_is_confirmed_with_the_directory() {
    let ca = TestCa::new();
    let slapd = Slapd::start(&ca, &base_ldif());
    let redis = crate::redis::Redis::start();
    let up = Upstream::start().await;
    let key = gen_key_b64();
    let mk = || {
        Gateway::builder(&up)
            .no_key_file()
            .env("VESTIBULE_ENCRYPTION_KEY", &key)
            .env("VESTIBULE__STORAGE__BACKEND", "redis")
            .env("VESTIBULE__STORAGE__REDIS_URL", &redis.url())
            .env("VESTIBULE__USERS__SOURCE", "ldap")
            .env("VESTIBULE_LDAP_BIND_PASSWORD", SERVICE_PW)
            .extra(&ldap_toml(&[slapd.ldaps()], &slapd.ca_file(), "5m", ""))
    };
    let a = mk().start().await;
    let b = mk().start().await;
    let on_a = Browser::new(&a);
    on_a.login_ok(&patient(), "/").await;
    // slapd logs each search's filter once, on its "SRCH base=" line.
    let searches = |log: &str| {
        log.lines()
            .filter(|l| l.contains("SRCH base=") && l.contains("(uid=pat))"))
            .count()
    };
    let before = searches(&slapd.log());
    let on_b = Browser::new(&b);
    on_b.set_cookie(SESSION_COOKIE, &on_a.cookie(SESSION_COOKIE).unwrap());
    let r = on_b.get("/chart").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(up.last().header("remote-user").as_deref(), Some("pat"));
    assert_eq!(
        up.last().header("remote-groups").as_deref(),
        Some("patient")
    );
    assert_eq!(
        searches(&slapd.log()),
        before + 1,
        "instance b read the user once"
    );
    assert_eq!(on_b.get("/chart2").await.status, 200);
    assert_eq!(searches(&slapd.log()), before + 1, "then from its cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_service_password_file_is_a_configuration_error_for_check_config_and_serve() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("bind.pw");
    std::fs::write(&pw, "\n").unwrap();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let prepared = Gateway::builder(&up)
        .env("VESTIBULE__USERS__SOURCE", "ldap")
        .extra(&ldap_toml(
            &["ldaps://127.0.0.1:1".to_string()],
            &ca_file,
            "5m",
            &format!("bind_password_file = {:?}", pw.display().to_string()),
        ))
        .prepare();
    for command in ["check-config", "serve"] {
        let mut cmd = prepared.cmd();
        cmd.arg("--config").arg(&prepared.config_path).arg(command);
        let out = tokio::task::spawn_blocking(move || run(cmd, None, Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(out.code, Some(2), "{command}: {out}");
        assert!(
            out.stderr
                .contains("ldap.bind_password_file: the service account's password is empty"),
            "{command}: {out}"
        );
    }
}
