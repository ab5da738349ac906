//! `gen-key`, `gen-signing-key` and `hash-password`.

use super::{CliError, read_password};
use crate::core::password::{self, Cost};

#[allow(clippy::print_stdout)]
pub fn gen_key() -> Result<(), CliError> {
    println!("{}", crate::keys::generate_key());
    Ok(())
}

/// Prints a new assertion signing key (PEM) to standard output.
#[allow(clippy::print_stdout)]
pub fn gen_signing_key(algorithm: super::SigningAlgorithm) -> Result<(), CliError> {
    let kind = match algorithm {
        super::SigningAlgorithm::Es256 => crate::assertion::KeyKind::Es256,
        super::SigningAlgorithm::Eddsa => crate::assertion::KeyKind::EdDsa,
    };
    let pem = crate::assertion::generate_key_pem(kind).map_err(CliError::failed)?;
    print!("{pem}");
    Ok(())
}

#[allow(clippy::print_stdout)]
pub fn hash_password() -> Result<(), CliError> {
    let pw = read_password("Password: ")?;
    if pw.is_empty() {
        return Err(CliError::Invalid(vec![
            "password: empty; nothing to hash".into(),
        ]));
    }
    let h = password::hash(pw.as_bytes(), Cost::DEFAULT).map_err(CliError::failed)?;
    println!("{h}");
    Ok(())
}
