//! `vestibule audit verify FILE…`: checks the chain of audit files (SPEC §13) with the
//! audit key derived from every key in the configured key file, so files written
//! before a `rotate-key` still verify. Prints only counts, seqs and the last chain
//! value (an HMAC output, not a secret); never a key.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::{CliError, load_config};
use crate::audit::chain::PURPOSE;
use crate::audit::verify::{Verifier, VerifyError};
use crate::keys::Keyring;

/// Exit 0 and `N events, chain intact`; exit 1 naming the first bad line; exit 2 for
/// an unusable configuration, key, or file argument.
#[allow(clippy::print_stdout)]
pub fn verify(config: &Path, files: &[PathBuf]) -> Result<(), CliError> {
    let cfg = load_config(config)?;
    let ring = Keyring::load(cfg.storage.encryption_key_file.as_deref())
        .map_err(|e| CliError::Invalid(vec![format!("storage.encryption_key_file: {e}")]))?;
    let keys = ring.derive_all(PURPOSE);
    let mut v = Verifier::new(&keys);
    for f in files {
        let name = f.display().to_string();
        let file = std::fs::File::open(f)
            .map_err(|e| CliError::Invalid(vec![format!("cannot open {name}: {e}")]))?;
        match v.file(&name, BufReader::with_capacity(1 << 16, file)) {
            Ok(()) => {}
            Err(VerifyError::Broken(b)) => {
                return Err(CliError::Failed(format!("chain broken: {b}")));
            }
            Err(e @ VerifyError::Io(..)) => return Err(CliError::Invalid(vec![e.to_string()])),
        }
    }
    let s = v.finish();
    for note in &s.notes {
        println!("note: {note}");
    }
    println!("{} events, chain intact", s.events);
    if let (Some(first), Some(last), Some(chain)) = (s.first_seq, s.last_seq, &s.last_chain) {
        println!(
            "seq {first} to {last}; last chain {chain} (write it down: a later check must find seq {last} with this chain)"
        );
    }
    Ok(())
}
