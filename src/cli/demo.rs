//! `demo`: a one-command trial. Everything it needs is generated into `./demo-data/`
//! on the first run and reused afterwards (same certificate, key, users, passwords).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::CliError;
use super::demo_upstream::{self, DemoApp};
use crate::core::password::{self, Cost};
use crate::core::tokens::random_bytes;

const DIR: &str = "demo-data";
/// The configuration the demo writes at every start; admin commands reach the demo
/// with `--config` pointing here.
pub(super) const CONFIG_FILE: &str = "demo-data/vestibule.toml";
const USERS: &[(&str, &str, &str)] = &[
    ("doctor", "Dr. Meredith Grey", "doctor"),
    ("clerk", "Alex Karev (front desk)", "clerk"),
    ("patient", "Pat Patient", "patient"),
];

fn write_new(path: &Path, content: &str) -> Result<(), CliError> {
    if !path.exists() {
        std::fs::write(path, content)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(())
}

/// A password that is easy to type from the terminal: four groups of four letters/digits.
fn demo_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes = random_bytes::<16>();
    let s: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}-{}-{}", &s[0..4], &s[4..8], &s[8..12], &s[12..16])
}

fn prepare(dir: &Path) -> Result<Vec<(String, String)>, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() || !key.exists() {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .map_err(CliError::failed)?;
        std::fs::write(&cert, ck.cert.pem()).map_err(CliError::failed)?;
        let _ = std::fs::remove_file(&key);
        write_new(&key, &ck.signing_key.serialize_pem())?;
    }
    write_new(
        &dir.join("encryption.key"),
        &format!("{}\n", crate::keys::generate_key()),
    )?;
    let pw_file = dir.join("passwords.txt");
    if !pw_file.exists() || !dir.join("users.toml").exists() {
        let mut users = String::from(
            "# Demo users made by `vestibule demo`. Passwords are in passwords.txt.\n",
        );
        let mut pws = String::new();
        for (name, display, role) in USERS {
            let pw = demo_password();
            let hash = password::hash(pw.as_bytes(), Cost::DEFAULT).map_err(CliError::failed)?;
            users.push_str(&format!(
                "\n[[users]]\nusername = \"{name}\"\ndisplay_name = \"{display}\"\nemail = \"{name}@clinic.example\"\nroles = [\"{role}\"]\npassword_hash = \"{hash}\"\n"
            ));
            pws.push_str(&format!("{name} {pw}\n"));
        }
        let _ = std::fs::remove_file(dir.join("users.toml"));
        let _ = std::fs::remove_file(&pw_file);
        write_new(&dir.join("users.toml"), &users)?;
        write_new(&pw_file, &pws)?;
    }
    let text = std::fs::read_to_string(&pw_file).map_err(CliError::failed)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect())
}

/// The header names the staff portal is sent instead of `Remote-User` and
/// `Remote-Groups` (per-app header names, SPEC §8).
const STAFF_USER_HEADER: &str = "X-Staff-User";
const STAFF_ROLES_HEADER: &str = "X-Staff-Roles";

/// The demo's configuration: two apps behind one sign-in (SPEC §8), so a newcomer
/// sees in the first minute what `[[apps]]` does: `records` at `/` for everyone
/// signed in, and the `staff` portal at `/staff` (prefix stripped on the way up)
/// for doctors and clerks only, with its own identity header names.
fn config_text(dir: &Path, listen: SocketAddr, records: SocketAddr, staff: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "# Written by `vestibule demo` at every start.\n[server]\nlisten = \"{listen}\"\ntls_cert = \"{d}/cert.pem\"\ntls_key = \"{d}/key.pem\"\n\n\
[users]\nfile = \"{d}/users.toml\"\n\n[storage]\nbackend = \"embedded\"\npath = \"{d}/data\"\n\
encryption_key_file = \"{d}/encryption.key\"\n\n[totp]\nissuer = \"Vestibule Demo\"\n\n\
# Two apps, one sign-in. Every signed-in user may use records; only doctors and\n\
# clerks the staff portal (a patient gets 403 there).\n\
[[apps]]\nname = \"records\"\npath_prefix = \"/\"\nurl = \"http://{records}\"\n\n\
[[apps]]\nname = \"staff\"\npath_prefix = \"/staff\"\nstrip_prefix = true\nurl = \"http://{staff}\"\n\
roles = [\"doctor\", \"clerk\"]\n\n[apps.headers]\nuser = \"{STAFF_USER_HEADER}\"\nroles = \"{STAFF_ROLES_HEADER}\"\n"
    )
}

/// The identity headers a demo app highlights: `names` and the `[headers]`
/// defaults both apps are sent (email, name, mfa), lower-case as on the wire.
fn identity_names(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .copied()
        .chain(["remote-email", "remote-name", "remote-mfa"])
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The address to type into a browser: a wildcard bind is reached on loopback.
fn browser_addr(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// How this program was invoked (`vestibule`, `target/release/vestibule` …), so the
/// admin command printed can be pasted as it is.
fn invoked_as() -> String {
    std::env::args()
        .next()
        .filter(|a| !a.is_empty() && !a.contains(char::is_whitespace))
        .unwrap_or_else(|| "vestibule".to_string())
}

/// The banner: where to go, whom to sign in as, how to administer the demo. Printed
/// only once the address is bound, so a busy port prints an error and nothing else.
#[allow(clippy::print_stdout)]
fn banner(bound: SocketAddr, passwords: &[(String, String)]) {
    let exe = invoked_as();
    println!();
    println!("  Vestibule demo");
    println!(
        "  Open https://{}/ (self-signed certificate: accept the browser warning)",
        browser_addr(bound)
    );
    println!();
    println!("  Two apps sit behind this one sign-in:");
    println!(
        "    https://{}/         records: everyone signed in",
        browser_addr(bound)
    );
    println!(
        "    https://{}/staff/   staff portal: doctor and clerk only (patient gets 403)",
        browser_addr(bound)
    );
    println!();
    println!("  Sign in as one of:");
    for (u, p) in passwords {
        let note = match u.as_str() {
            "patient" => "password only",
            _ => "staff: sets up two-step sign-in with a phone app on first login",
        };
        println!("    {u:<8} {p}   ({note})");
    }
    println!();
    println!("  Admin commands reach this demo from this directory, e.g.:");
    println!("    {exe} --config {CONFIG_FILE} users list");
    println!("    {exe} --config {CONFIG_FILE} 2fa status doctor");
    println!();
    println!("  Everything lives in ./{DIR}/ and is reused next time. Stop with Ctrl-C.");
    println!();
}

pub fn run(listen: SocketAddr) -> Result<(), CliError> {
    let dir = PathBuf::from(DIR);
    let passwords = prepare(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failed)?;
    rt.block_on(async {
        let prefix = "/_vestibule".to_string();
        let records = demo_upstream::start(DemoApp {
            title: "Records",
            blurb: "The records app: every signed-in user may use it (app \"records\", path /).",
            prefix: prefix.clone(),
            identity: identity_names(&["remote-user", "remote-groups"]),
        })
        .await
        .map_err(CliError::failed)?;
        let staff = demo_upstream::start(DemoApp {
            title: "Staff portal",
            blurb: "The staff portal: doctors and clerks only (app \"staff\", path /staff, \
                    which reaches this app as /). It is sent X-Staff-User and X-Staff-Roles \
                    instead of Remote-User and Remote-Groups.",
            prefix,
            identity: identity_names(&[STAFF_USER_HEADER, STAFF_ROLES_HEADER]),
        })
        .await
        .map_err(CliError::failed)?;
        let cfg_path = PathBuf::from(CONFIG_FILE);
        std::fs::write(
            &cfg_path,
            config_text(
                &dir.canonicalize().unwrap_or(dir.clone()),
                listen,
                records,
                staff,
            ),
        )
        .map_err(CliError::failed)?;
        let mut cfg = super::check::full(&cfg_path)?.cfg;
        // `--listen` beats VESTIBULE__SERVER__LISTEN, which the loader applied.
        cfg.server.listen = listen;
        let _log = crate::logging::init(cfg.log.format);
        let on_bound: super::serve::OnBound = Box::new(move |bound| banner(bound, &passwords));
        super::serve::serve(cfg, None, Some(on_bound)).await
    })
}
