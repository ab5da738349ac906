//! `demo`: a one-command trial. Everything it needs is generated into `./demo-data/`
//! on the first run and reused afterwards (same certificate, key, users, passwords).

use std::path::{Path, PathBuf};

use super::CliError;
use crate::core::password::{self, Cost};
use crate::core::tokens::random_bytes;

const DIR: &str = "demo-data";
const LISTEN: &str = "127.0.0.1:8443";
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
        &format!("{}\n", crate::store::crypto::generate_key()),
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

fn config_text(dir: &Path, upstream: std::net::SocketAddr) -> String {
    let d = dir.display();
    format!(
        "# Written by `vestibule demo` at every start.\n[server]\nlisten = \"{LISTEN}\"\ntls_cert = \"{d}/cert.pem\"\ntls_key = \"{d}/key.pem\"\n\n\
[upstream]\nurl = \"http://{upstream}\"\n\n[users]\nfile = \"{d}/users.toml\"\n\n[storage]\nbackend = \"embedded\"\npath = \"{d}/data\"\n\
encryption_key_file = \"{d}/encryption.key\"\n\n[totp]\nissuer = \"Vestibule Demo\"\n"
    )
}

#[allow(clippy::print_stdout)]
pub fn run() -> Result<(), CliError> {
    let dir = PathBuf::from(DIR);
    let passwords = prepare(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failed)?;
    rt.block_on(async {
        let upstream = super::demo_upstream::start("/_vestibule".into())
            .await
            .map_err(CliError::failed)?;
        let cfg_path = dir.join("vestibule.toml");
        std::fs::write(
            &cfg_path,
            config_text(&dir.canonicalize().unwrap_or(dir.clone()), upstream),
        )
        .map_err(CliError::failed)?;
        let cfg = super::load_config(&cfg_path)?;
        let _log = crate::logging::init(cfg.log.format);
        println!();
        println!("  Vestibule demo");
        println!(
            "  Open https://127.0.0.1:8443/ (self-signed certificate: accept the browser warning)"
        );
        println!();
        println!("  Sign in as one of:");
        for (u, p) in &passwords {
            let note = match u.as_str() {
                "patient" => "password only",
                _ => "staff: sets up two-step sign-in with a phone app on first login",
            };
            println!("    {u:<8} {p}   ({note})");
        }
        println!();
        println!("  Everything lives in ./{DIR}/ and is reused next time. Stop with Ctrl-C.");
        println!();
        super::serve::serve(cfg, None).await
    })
}
