//! Configuration: raw TOML + environment → validated, typed [`Config`].
//!
//! Loading never stops at the first mistake: every problem is reported as
//! `KEY: what is wrong`, because an operator fixing a file wants the whole list.

mod reader;
mod source;
mod types;
pub(crate) mod validate;
mod warnings;

use std::fmt;
use std::path::Path;

pub use types::*;
pub use warnings::warnings;

/// One configuration problem, printed as `KEY: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Reads and validates the configuration file at `path` (plus environment overrides).
pub fn load(path: &Path) -> Result<Config, Vec<ConfigProblem>> {
    let tree = source::read_tree(path)?;
    validate::validate(&tree)
}

/// Like [`load`], but a file that parses yields its configuration together with its
/// problems (bad values replaced by defaults), so later checks can still run. `Err`
/// only when the file cannot be read or parsed at all.
pub fn load_all(path: &Path) -> Result<(Config, Vec<ConfigProblem>), Vec<ConfigProblem>> {
    let tree = source::read_tree(path)?;
    Ok(validate::validate_all(&tree))
}
