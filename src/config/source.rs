//! Reads the TOML file and the `VESTIBULE__SECTION__KEY` environment overrides into one
//! generic tree, so validation can walk it and report every problem at once.

use std::path::Path;

use serde_json::Value;

use super::ConfigProblem;

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "server.hostnames",
    "server.trusted_proxies",
    "headers.strip",
    "policy.require_2fa_roles",
    "ldap.url",
];

/// The merged configuration tree (file, then environment on top).
pub fn read_tree(path: &Path) -> Result<Value, Vec<ConfigProblem>> {
    if !path.is_file() {
        return Err(vec![ConfigProblem::new(
            "config",
            format!("file {} does not exist or is not a file", path.display()),
        )]);
    }
    let mut env = config::Environment::with_prefix("VESTIBULE")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        env = env.with_list_parse_key(key);
    }
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(env)
        .build()
        .map_err(|e| vec![ConfigProblem::new("config", clean_message(&e.to_string()))])?;
    built
        .try_deserialize::<Value>()
        .map_err(|e| vec![ConfigProblem::new("config", clean_message(&e.to_string()))])
}

/// The `config` crate's messages carry the file path and value; keep them to one line.
fn clean_message(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}
