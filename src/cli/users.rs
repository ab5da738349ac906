//! `users add | list | disable | enable | set-password | set-roles`: edits of the users
//! file, picked up by a running gateway within seconds.

use std::path::Path;

use super::{CliError, load_config, read_password, runtime};
use crate::UsersCommand;
use crate::audit::AuditEvent;
use crate::config::Config;
use crate::core::password::{self, Cost};
use crate::core::password_rules;
use crate::core::user::{validate_role, validate_username};
use crate::users::edit::UsersDoc;

fn check_roles(roles: &[String]) -> Result<(), CliError> {
    let bad: Vec<String> = roles
        .iter()
        .filter(|r| !validate_role(r))
        .map(|r| format!("--role: {r:?} may only contain letters, digits and . _ @ -"))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(CliError::Invalid(bad))
    }
}

/// Reads a new password and hashes it, after `users.min_password_length` and the
/// built-in list of common and breached passwords (SPEC §12: the same list as the
/// account page's password change). The account page also refuses a password that
/// contains the username; an operator setting one here may have reasons (SPEC §2's
/// contract for these commands is unchanged there).
fn new_hash(cfg: &Config) -> Result<String, CliError> {
    let pw = read_password("New password: ")?;
    let min = cfg.users.min_password_length;
    let len = pw.chars().count();
    if len < min {
        return Err(CliError::Invalid(vec![format!(
            "password: too short ({len} characters); users.min_password_length is {min}"
        )]));
    }
    if password_rules::is_common(&pw) || password_rules::is_common(&pw.to_lowercase()) {
        return Err(CliError::Invalid(vec![
            "password: is in the built-in list of common and breached passwords; choose another"
                .to_string(),
        ]));
    }
    password::hash(pw.as_bytes(), Cost::DEFAULT).map_err(CliError::failed)
}

fn edit_err(e: crate::users::edit::EditError) -> CliError {
    use crate::users::edit::EditError::*;
    match e {
        NoSuchUser(_) | Exists(_) | Invalid(_) => CliError::Invalid(vec![e.to_string()]),
        _ => CliError::Failed(e.to_string()),
    }
}

/// Ends a user's sessions and remembered browsers in the store (best effort: the
/// gateway also refuses them by itself once it sees the changed file).
fn end_sessions_and_devices(cfg: &Config, user: &str, why: &str) {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let store = crate::store::open(&cfg.storage)
                .await
                .map_err(CliError::failed)?;
            let s = store
                .sessions_delete_user(user)
                .await
                .map_err(CliError::failed)?;
            let d = store.devices_forget(user).await.map_err(CliError::failed)?;
            match crate::audit::Audit::for_admin(cfg) {
                Ok(audit) => {
                    audit.record(
                        user,
                        None,
                        &AuditEvent::SessionsRevoked {
                            sessions: s,
                            reason: Some(why),
                        },
                    );
                    if d > 0 {
                        audit.record(
                            user,
                            None,
                            &AuditEvent::DevicesForgotten {
                                count: d,
                                by_admin: true,
                                reason: Some(why),
                            },
                        );
                    }
                }
                Err(e) => eprintln!("warning: cannot write the audit events: {e}"),
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        eprintln!(
            "warning: could not end {user}'s sessions in the store now ({e}); the gateway refuses them at their next request anyway"
        );
    }
}

#[allow(clippy::print_stdout)]
pub fn run(config: &Path, cmd: UsersCommand) -> Result<(), CliError> {
    let cfg = load_config(config)?;
    if let Some(l) = &cfg.ldap {
        return match cmd {
            UsersCommand::List => super::directory::list(l, &cfg),
            UsersCommand::Add { .. } => Err(super::directory::refuse_edit("add")),
            UsersCommand::SetPassword { .. } => Err(super::directory::refuse_edit("set-password")),
            UsersCommand::SetRoles { .. } => Err(super::directory::refuse_edit("set-roles")),
            UsersCommand::Disable { .. } => Err(super::directory::refuse_edit("disable")),
            UsersCommand::Enable { .. } => Err(super::directory::refuse_edit("enable")),
            UsersCommand::Unlock { .. } => unreachable!("handled in cli::run"),
        };
    }
    let file = &cfg.users.file;
    let mut doc = UsersDoc::open(file).map_err(edit_err)?;
    match cmd {
        UsersCommand::Add {
            name,
            roles,
            email,
            display_name,
        } => {
            validate_username(&name)
                .map_err(|e| CliError::Invalid(vec![format!("NAME: {name:?} {e}")]))?;
            check_roles(&roles)?;
            if let Ok((_, stored)) = doc.find(&name) {
                // Name the stored spelling: names compare case-insensitively, so the
                // clash may not be visible in the name just typed.
                let same = if stored == name {
                    String::new()
                } else {
                    format!(" (names compare case-insensitively, so {name:?} is taken)")
                };
                return Err(CliError::Invalid(vec![format!(
                    "NAME: a user named {stored:?} already exists{same}"
                )]));
            }
            let hash = new_hash(&cfg)?;
            doc.add(
                &name,
                display_name.as_deref().unwrap_or(&name),
                email.as_deref().unwrap_or(""),
                &roles,
                &hash,
            )
            .map_err(edit_err)?;
            doc.save(file).map_err(edit_err)?;
            println!("added user {name} with roles {}", roles.join(", "));
        }
        UsersCommand::List => {
            let users = crate::users::file::load(file)
                .map_err(|ps| CliError::Invalid(ps.iter().map(|p| p.to_string()).collect()))?;
            println!(
                "{:<24} {:<10} {:<24} {:<30} DISPLAY NAME",
                "USERNAME", "STATUS", "ROLES", "EMAIL"
            );
            for u in users {
                let status = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:<24} {:<10} {:<24} {:<30} {}",
                    u.username,
                    status,
                    u.roles.join(","),
                    u.email,
                    u.display_name
                );
            }
        }
        UsersCommand::Disable { name } => {
            let n = doc.set_disabled(&name, true).map_err(edit_err)?;
            doc.save(file).map_err(edit_err)?;
            end_sessions_and_devices(&cfg, &n, "account disabled");
            println!("disabled {n}");
        }
        UsersCommand::Enable { name } => {
            let n = doc.set_disabled(&name, false).map_err(edit_err)?;
            doc.save(file).map_err(edit_err)?;
            println!("enabled {n}");
        }
        UsersCommand::SetPassword { name } => {
            doc.find(&name).map_err(edit_err)?;
            let hash = new_hash(&cfg)?;
            let n = doc.set_password_hash(&name, &hash).map_err(edit_err)?;
            doc.save(file).map_err(edit_err)?;
            end_sessions_and_devices(&cfg, &n, "password changed");
            println!("password of {n} changed");
        }
        UsersCommand::SetRoles { name, roles } => {
            check_roles(&roles)?;
            let n = doc.set_roles(&name, &roles).map_err(edit_err)?;
            doc.save(file).map_err(edit_err)?;
            println!("roles of {n}: {}", roles.join(", "));
        }
        UsersCommand::Unlock { .. } => unreachable!("handled in cli::run"),
    }
    Ok(())
}
