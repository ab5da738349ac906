//! `sessions list [NAME]`: what the account page shows a user about their sessions
//! and remembered browsers (SPEC §12), for operators: when each session started, was
//! last active, from which address and browser, and how far it got. Never an id.

use std::path::Path;

use super::{CliError, load_config, runtime};
use crate::core::auth_flow::{Stage, mfa_label};
use crate::core::clock::now_ms;
use crate::core::user::lockout_key;
use crate::pages::render::human_time;
use crate::session::Sessions;

/// What a session's stage means, for the listing.
fn stage(s: Stage) -> String {
    match s {
        Stage::PasswordDone => "password only (second step pending)".to_string(),
        Stage::Complete { factor } => format!("signed in ({})", mfa_label(factor)),
    }
}

#[allow(clippy::print_stdout)]
pub fn list(config: &Path, name: Option<&str>) -> Result<(), CliError> {
    let cfg = load_config(config)?;
    let users = crate::users::file::load(&cfg.users.file)
        .map_err(|ps| CliError::Invalid(ps.iter().map(|p| p.to_string()).collect()))?;
    let chosen: Vec<_> = match name {
        Some(n) => {
            let key = lockout_key(n);
            let found: Vec<_> = users
                .into_iter()
                .filter(|u| lockout_key(&u.username) == key)
                .collect();
            if found.is_empty() {
                return Err(CliError::Invalid(vec![format!(
                    "NAME: no user named {n:?} in {}",
                    cfg.users.file.display()
                )]));
            }
            found
        }
        None => users,
    };
    let rt = runtime()?;
    let store = rt
        .block_on(crate::store::open(&cfg.storage))
        .map_err(CliError::failed)?;
    let sessions = Sessions::new(
        store.clone(),
        &cfg.session.cookie_name,
        cfg.server.tls.is_some(),
        cfg.session.idle_timeout,
        cfg.session.absolute_timeout,
    )
    .with_role_timeouts(&cfg.session.role_timeouts);
    let now = now_ms();
    println!(
        "{:<20} {:<24} {:<24} {:<40} {:<26} STATE",
        "USER", "STARTED", "LAST ACTIVE", "ADDRESS", "BROWSER"
    );
    let mut devices_out = Vec::new();
    for user in &chosen {
        let live = rt
            .block_on(sessions.live(user, now))
            .map_err(CliError::failed)?;
        for (_, r) in live {
            println!(
                "{:<20} {:<24} {:<24} {:<40} {:<26} {}",
                user.username,
                human_time(Some(r.created_ms)),
                human_time(Some(r.last_seen_ms)),
                if r.meta.address.is_empty() {
                    "-"
                } else {
                    &r.meta.address
                },
                if r.meta.browser.is_empty() {
                    "-"
                } else {
                    &r.meta.browser
                },
                stage(r.stage),
            );
        }
        let devices = rt
            .block_on(store.devices_list(&user.username))
            .map_err(CliError::failed)?;
        for d in devices
            .into_iter()
            .filter(|d| d.expires_ms > now && d.credential == user.credential_fingerprint())
        {
            devices_out.push(format!(
                "{:<20} {:<26} remembered {} until {}",
                user.username,
                d.label,
                human_time(Some(d.created_ms)),
                human_time(Some(d.expires_ms))
            ));
        }
    }
    if !devices_out.is_empty() {
        println!("\nREMEMBERED BROWSERS");
        for l in devices_out {
            println!("{l}");
        }
    }
    Ok(())
}
