//! Store-side admin commands: `users unlock`, `2fa status`, `2fa reset`,
//! `sessions revoke`. They work while `serve` runs and take effect at that user's next
//! request.

use std::path::Path;
use std::sync::Arc;

use super::{CliError, load_config, runtime};
use crate::audit::Audit;
use crate::audit::AuditEvent;
use crate::config::Config;
use crate::core::store::Store;
use crate::core::user::lockout_key;
use crate::pages::render::human_time;

struct Admin {
    cfg: Config,
    store: Arc<dyn Store>,
    audit: Audit,
}

fn open(config: &Path, rt: &tokio::runtime::Runtime) -> Result<Admin, CliError> {
    let cfg = load_config(config)?;
    let store = rt
        .block_on(crate::store::open(&cfg.storage))
        .map_err(CliError::failed)?;
    let audit = Audit::for_admin(&cfg).map_err(CliError::failed)?;
    Ok(Admin { cfg, store, audit })
}

/// The canonical name from the users file (names compare case-insensitively), or
/// from the directory with `users.source = "ldap"`.
fn canonical(a: &Admin, name: &str) -> Result<String, CliError> {
    if let Some(l) = &a.cfg.ldap {
        return super::directory::canonical(l, &a.cfg, name);
    }
    let users = crate::users::file::load(&a.cfg.users.file)
        .map_err(|ps| CliError::Invalid(ps.iter().map(|p| p.to_string()).collect()))?;
    let key = lockout_key(name);
    users
        .into_iter()
        .find(|u| lockout_key(&u.username) == key)
        .map(|u| u.username)
        .ok_or_else(|| {
            CliError::Invalid(vec![format!(
                "no user named {name:?} in {}",
                a.cfg.users.file.display()
            )])
        })
}

#[allow(clippy::print_stdout)]
pub fn unlock(config: &Path, name: &str) -> Result<(), CliError> {
    let rt = runtime()?;
    let a = open(config, &rt)?;
    rt.block_on(a.store.unlock(&lockout_key(name)))
        .map_err(CliError::failed)?;
    a.audit.record(name, None, &AuditEvent::UserUnlocked);
    println!("unlocked {name}");
    Ok(())
}

#[allow(clippy::print_stdout)]
pub fn twofa_status(config: &Path, name: &str) -> Result<(), CliError> {
    let rt = runtime()?;
    let a = open(config, &rt)?;
    let user = canonical(&a, name)?;
    rt.block_on(async {
        let mfa = a.store.mfa_get(&user).await.map_err(CliError::failed)?;
        let keys = a.store.keys_list(&user).await.map_err(CliError::failed)?;
        match mfa {
            None if !keys.is_empty() => {
                println!("user: {user}");
                println!("2fa: enabled (security keys only, no authenticator app)");
            }
            None => {
                let pending = a
                    .store
                    .pending_get(&user)
                    .await
                    .map_err(CliError::failed)?
                    .is_some();
                println!("user: {user}");
                println!(
                    "2fa: disabled{}",
                    if pending {
                        " (enrollment started, not finished)"
                    } else {
                        ""
                    }
                );
            }
            Some(m) => {
                let left = a
                    .store
                    .backup_count(&user)
                    .await
                    .map_err(CliError::failed)?;
                let now = crate::core::clock::now_ms();
                let devices: Vec<_> = a
                    .store
                    .devices_list(&user)
                    .await
                    .map_err(CliError::failed)?
                    .into_iter()
                    .filter(|d| d.expires_ms > now)
                    .collect();
                println!("user: {user}");
                println!("2fa: enabled");
                println!("since: {}", human_time(Some(m.enabled_ms)));
                println!("last used: {}", human_time(m.last_used_ms));
                println!("backup codes left: {left}");
                println!("remembered devices: {}", devices.len());
                for d in devices {
                    println!(
                        "  - {} (remembered {}, until {})",
                        d.label,
                        human_time(Some(d.created_ms)),
                        human_time(Some(d.expires_ms))
                    );
                }
            }
        }
        if !keys.is_empty() {
            println!("security keys: {}", keys.len());
        }
        for k in keys {
            println!(
                "  - {} (added {}, last used {})",
                k.name,
                human_time(Some(k.created_ms)),
                human_time(k.last_used_ms)
            );
        }
        Ok(())
    })
}

#[allow(clippy::print_stdout)]
pub fn twofa_reset(config: &Path, name: &str) -> Result<(), CliError> {
    let rt = runtime()?;
    let a = open(config, &rt)?;
    let user = canonical(&a, name)?;
    let ended = rt.block_on(async {
        a.store.mfa_remove(&user).await?;
        a.store.sessions_delete_user(&user).await
    });
    let ended = ended.map_err(CliError::failed)?;
    a.audit.record(
        &user,
        None,
        &AuditEvent::MfaReset {
            sessions_ended: ended,
        },
    );
    println!(
        "2FA of {user} reset: secret, backup codes and remembered devices removed, {ended} sessions ended; they enroll again at next sign-in"
    );
    Ok(())
}

#[allow(clippy::print_stdout)]
pub fn sessions_revoke(config: &Path, name: &str) -> Result<(), CliError> {
    let rt = runtime()?;
    let a = open(config, &rt)?;
    let user = canonical(&a, name)?;
    let n = rt
        .block_on(a.store.sessions_delete_user(&user))
        .map_err(CliError::failed)?;
    a.audit.record(
        &user,
        None,
        &AuditEvent::SessionsRevoked {
            sessions: n,
            reason: None,
        },
    );
    println!("ended {n} sessions of {user}");
    Ok(())
}
