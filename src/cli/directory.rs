//! The directory's upkeep while `serve` runs (SPEC §11): every `ldap.refresh` the
//! signed-in users are re-read, and the sessions and remembered browsers of those who
//! were removed, disabled, moved or regrouped are ended and audited.

use std::sync::Arc;

use super::CliError;
use crate::app::App;
use crate::audit::AuditEvent;
use crate::users::ldap::LdapDirectory;

/// Refreshes `dir` forever.
pub(super) async fn refresh_forever(app: Arc<App>, dir: Arc<LdapDirectory>) {
    let mut tick = tokio::time::interval(dir.refresh_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let refreshed = dir.refresh().await;
        for (user, why) in refreshed.ended {
            end(&app, &user, why).await;
        }
    }
}

/// Ends `user`'s sessions and remembered browsers, auditing why. The cache already
/// refuses them; this also clears them from the store for every instance.
async fn end(app: &App, user: &str, why: &str) {
    let sessions = app.store.sessions_delete_user(user).await;
    let devices = app.store.devices_forget(user).await;
    match (sessions, devices) {
        (Ok(sessions), Ok(devices)) => app.audit.record(
            user,
            None,
            &AuditEvent::SessionsEndedByDirectory {
                sessions,
                devices,
                reason: why,
            },
        ),
        (s, d) => {
            let e = s
                .err()
                .or(d.err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::error!(user = %user, error = %e, "could not end the sessions or remembered browsers of a user the directory changed; they are refused anyway")
        }
    }
}

/// The directory of an admin command, or why it cannot be opened.
fn open(
    l: &crate::config::LdapConfig,
    cfg: &crate::config::Config,
) -> Result<LdapDirectory, CliError> {
    LdapDirectory::new(l, cfg.session.idle_timeout).map_err(CliError::failed)
}

/// The canonical (directory) name of `name`, for `2fa` and `sessions` with
/// `users.source = "ldap"`.
pub(super) fn canonical(
    l: &crate::config::LdapConfig,
    cfg: &crate::config::Config,
    name: &str,
) -> Result<String, CliError> {
    let dir = open(l, cfg)?;
    let rt = super::runtime()?;
    match rt.block_on(dir.canonical(name)) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(CliError::Invalid(vec![format!(
            "no user named {name:?} in the directory (ldap.user_filter under ldap.base_dn)"
        )])),
        // A directory name is the lower-cased name, so the typed one (lower-cased) is
        // exact when the directory cannot confirm it: revoking sessions or resetting
        // 2FA must still work during an outage.
        Err(e) => {
            eprintln!(
                "warning: directory unavailable ({}); acting on {:?} without confirming it exists",
                e.0,
                crate::core::user::lockout_key(name)
            );
            Ok(crate::core::user::lockout_key(name))
        }
    }
}

/// `users list` with `users.source = "ldap"`: what the directory returns.
#[allow(clippy::print_stdout)]
pub(super) fn list(
    l: &crate::config::LdapConfig,
    cfg: &crate::config::Config,
) -> Result<(), CliError> {
    let dir = open(l, cfg)?;
    let rt = super::runtime()?;
    let users = rt
        .block_on(dir.list())
        .map_err(|e| CliError::Failed(format!("directory unavailable: {}", e.0)))?;
    println!(
        "{:<24} {:<10} {:<24} {:<30} DISPLAY NAME",
        "USERNAME", "STATUS", "ROLES", "EMAIL"
    );
    for (u, disabled) in users {
        let status = if disabled { "disabled" } else { "active" };
        println!(
            "{:<24} {:<10} {:<24} {:<30} {}",
            u.username,
            status,
            u.roles.join(","),
            u.email,
            u.display_name
        );
    }
    Ok(())
}

/// Why `users add/set-password/set-roles/disable/enable` do not run with
/// `users.source = "ldap"` (SPEC §11).
pub(super) fn refuse_edit(command: &str) -> CliError {
    CliError::Invalid(vec![format!(
        "users {command}: users come from the directory (users.source = \"ldap\"); make this change in LDAP / Active Directory, where the gateway reads it within ldap.refresh"
    )])
}
