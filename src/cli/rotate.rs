//! `rotate-key`: online key rotation. The key file lists keys one per line, primary
//! first; all of them decrypt, only the primary encrypts. Rotation is three steps:
//! write a new primary in front of the old keys, wait until running gateways have
//! reloaded the file (they poll it every 2 s), then re-encrypt every stored secret
//! under the new key with a compare-and-set per secret. No restart, no downtime.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{CliError, load_config, runtime};
use crate::audit::AuditEvent;
use crate::core::store::Store;
use crate::keys::{Keyring, generate_key};

/// Replaces the key file: private from the first byte, never through a planted link.
fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    crate::atomic_file::replace_private(path, text.as_bytes()).map_err(CliError::failed)
}

/// Secrets per key id.
async fn census(store: &dyn Store) -> Result<BTreeMap<String, usize>, CliError> {
    let mut by_key = BTreeMap::new();
    for s in store.secrets_list().await.map_err(CliError::failed)? {
        *by_key
            .entry(Keyring::envelope_key_id(&s.envelope).unwrap_or_else(|| "unreadable".into()))
            .or_insert(0) += 1;
    }
    Ok(by_key)
}

#[allow(clippy::print_stdout)]
pub fn run(config: &Path, status: bool, drop_old: bool, wait: Duration) -> Result<(), CliError> {
    let cfg = load_config(config)?;
    let Some(file) = cfg.storage.encryption_key_file.clone() else {
        return Err(CliError::Invalid(vec![
            "storage.encryption_key_file: rotate-key needs the key in a file (keys from VESTIBULE_ENCRYPTION_KEY cannot be rotated in place)".into(),
        ]));
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))?;
    let ring = Keyring::parse(&text)
        .map_err(|e| CliError::Invalid(vec![format!("storage.encryption_key_file: {e}")]))?;
    let rt = runtime()?;
    let store = rt
        .block_on(crate::store::open(&cfg.storage))
        .map_err(CliError::failed)?;
    let audit = crate::audit::Audit::for_admin(&cfg).map_err(CliError::failed)?;

    if status {
        let counts = rt.block_on(census(&*store))?;
        for (i, id) in ring.ids().iter().enumerate() {
            let role = if i == 0 { "primary" } else { "decrypt only" };
            println!(
                "key {id}  {role:<12}  seals {} secrets",
                counts.get(id).copied().unwrap_or(0)
            );
        }
        for (id, n) in counts.iter().filter(|(id, _)| !ring.ids().contains(id)) {
            println!("key {id}  MISSING       seals {n} secrets (cannot be decrypted!)");
        }
        return Ok(());
    }

    if drop_old {
        let counts = rt.block_on(census(&*store))?;
        let primary = ring.ids()[0].clone();
        let needed: Vec<_> = counts
            .iter()
            .filter(|(id, n)| **id != primary && **n > 0)
            .collect();
        if !needed.is_empty() {
            return Err(CliError::Failed(format!(
                "old keys still seal secrets ({needed:?}); run `vestibule rotate-key` again to re-encrypt them first"
            )));
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        write_atomically(&file, &format!("# primary key {primary}\n{first}\n"))?;
        audit.record("-", None, &AuditEvent::KeyOldDropped { primary: &primary });
        println!(
            "kept only the primary key {primary}. Backup codes made before it became primary no longer work; users can make new ones on their account page."
        );
        return Ok(());
    }

    let new_key = generate_key();
    let new_ring = Keyring::parse(&format!("{new_key}\n{text}")).map_err(CliError::failed)?;
    let new_id = new_ring.ids()[0].clone();
    write_atomically(
        &file,
        &format!("# primary key {new_id} (rotate-key)\n{new_key}\n{text}"),
    )?;
    println!(
        "new primary key {new_id} written to {}; old keys {:?} still decrypt",
        file.display(),
        ring.ids()
    );
    println!(
        "waiting {} for running gateways to load it …",
        humantime::format_duration(wait)
    );
    std::thread::sleep(wait);

    let (mut done, mut skipped) = (0usize, 0usize);
    rt.block_on(async {
        for s in store.secrets_list().await.map_err(CliError::failed)? {
            if new_ring.is_primary(&s.envelope) {
                continue;
            }
            let plain = match new_ring.open(&s.user, s.kind, &s.envelope) {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("warning: the secret of {} cannot be decrypted with any configured key; left as it is", s.user);
                    skipped += 1;
                    continue;
                }
            };
            let sealed = new_ring.seal(&s.user, s.kind, &plain);
            if store.secret_swap(&s.user, s.kind, &s.envelope, &sealed).await.map_err(CliError::failed)? {
                done += 1;
            } else {
                // Changed meanwhile (enrollment finished, reset): it was written with
                // whatever key the gateway had; a second run picks it up.
                skipped += 1;
            }
        }
        Ok::<_, CliError>(())
    })?;
    audit.record(
        "-",
        None,
        &AuditEvent::KeyRotated {
            primary: &new_id,
            reencrypted: done,
            skipped,
        },
    );
    println!("re-encrypted {done} secrets under {new_id}; {skipped} skipped");
    if skipped > 0 {
        println!("run `vestibule rotate-key --status` to see which keys still seal secrets");
    }
    Ok(())
}
