//! Configuration: raw TOML + environment → validated, typed [`Config`].
//!
//! Loading never stops at the first mistake: every problem is reported as
//! `KEY: what is wrong`, because an operator fixing a file wants the whole list.

mod reader;
mod source;
mod types;
mod validate;

use std::fmt;
use std::path::Path;

pub use types::*;
pub use validate::DEFAULT_STRIP;

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
