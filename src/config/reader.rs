//! A cursor over the generic configuration tree that records every problem it meets
//! (unknown keys, wrong types, bad values) instead of stopping at the first.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::ConfigProblem;

/// Collects problems while typed values are pulled out of the tree.
#[derive(Default)]
pub struct Reader {
    pub problems: Vec<ConfigProblem>,
}

/// One table of the tree and the dotted key it lives at.
pub struct Table<'a> {
    pub key: String,
    map: Option<&'a Map<String, Value>>,
}

impl Reader {
    pub fn problem(&mut self, key: &str, msg: impl Into<String>) {
        self.problems.push(ConfigProblem::new(key, msg));
    }

    /// The top-level table, with unknown sections reported.
    pub fn root<'a>(&mut self, tree: &'a Value, sections: &[&str]) -> Table<'a> {
        match tree.as_object() {
            Some(map) => {
                let table = Table {
                    key: String::new(),
                    map: Some(map),
                };
                self.unknown_keys(&table, sections);
                table
            }
            None => {
                self.problem("config", "the file must be a TOML table");
                Table {
                    key: String::new(),
                    map: None,
                }
            }
        }
    }

    /// A sub-table (`[server]`), with its unknown keys reported. Missing: empty.
    pub fn table<'a>(&mut self, parent: &Table<'a>, name: &str, keys: &[&str]) -> Table<'a> {
        let key = join(&parent.key, name);
        let map = match parent.get(name) {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                self.problem(&key, "must be a table");
                None
            }
        };
        let table = Table { key, map };
        self.unknown_keys(&table, keys);
        table
    }

    /// An array of tables (`[[policy.rules]]`), each with its unknown keys reported.
    pub fn tables<'a>(&mut self, parent: &Table<'a>, name: &str, keys: &[&str]) -> Vec<Table<'a>> {
        let key = join(&parent.key, name);
        match parent.get(name) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item_key = format!("{key}[{i}]");
                    match item.as_object() {
                        Some(map) => {
                            let t = Table {
                                key: item_key,
                                map: Some(map),
                            };
                            self.unknown_keys(&t, keys);
                            Some(t)
                        }
                        None => {
                            self.problem(&item_key, "must be a table");
                            None
                        }
                    }
                })
                .collect(),
            Some(_) => {
                self.problem(&key, "must be an array of tables ([[...]])");
                Vec::new()
            }
        }
    }

    fn unknown_keys(&mut self, table: &Table<'_>, known: &[&str]) {
        let Some(map) = table.map else { return };
        let known: BTreeSet<&str> = known.iter().copied().collect();
        for k in map.keys() {
            if !known.contains(k.as_str()) {
                self.problem(
                    &join(&table.key, k),
                    "unknown key (a typo here must not silently weaken security)",
                );
            }
        }
    }

    pub fn string(&mut self, t: &Table<'_>, name: &str, default: &str) -> String {
        match t.get(name) {
            None => default.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                self.problem(&t.at(name), "must be a string");
                default.to_string()
            }
        }
    }

    /// A string that may be empty; empty means "not set".
    pub fn optional_string(&mut self, t: &Table<'_>, name: &str) -> Option<String> {
        let s = self.string(t, name, "");
        (!s.trim().is_empty()).then_some(s)
    }

    pub fn boolean(&mut self, t: &Table<'_>, name: &str, default: bool) -> bool {
        match t.get(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                self.problem(&t.at(name), "must be true or false");
                default
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&mut self, t: &Table<'_>, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let raw = match t.get(name) {
            None => return default,
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match raw {
            Some(v) if v >= 0 && (v as u64) >= min && (v as u64) <= max => v as u64,
            _ => {
                self.problem(
                    &t.at(name),
                    format!("must be a whole number from {min} to {max}"),
                );
                default
            }
        }
    }

    /// A duration written as a string like "90s", "30m", "12h" or "30d"; must be > 0.
    pub fn duration(&mut self, t: &Table<'_>, name: &str, default: &str) -> Duration {
        let fallback = humantime::parse_duration(default).unwrap_or(Duration::from_secs(1));
        let s = match t.get(name) {
            None => return fallback,
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.problem(
                    &t.at(name),
                    "must be a duration string such as \"90s\", \"30m\", \"12h\" or \"30d\"",
                );
                return fallback;
            }
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problem(&t.at(name), "must be longer than zero");
                fallback
            }
            Err(_) => {
                self.problem(
                    &t.at(name),
                    format!(
                        "{s:?} is not a duration; write e.g. \"90s\", \"30m\", \"12h\" or \"30d\""
                    ),
                );
                fallback
            }
        }
    }

    pub fn string_list(&mut self, t: &Table<'_>, name: &str, default: &[&str]) -> Vec<String> {
        match t.get(name) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.trim().to_string()),
                        _ => self.problem(&format!("{}[{i}]", t.at(name)), "must be a string"),
                    }
                }
                out.retain(|s| !s.is_empty());
                out
            }
            Some(Value::String(s)) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            Some(_) => {
                self.problem(&t.at(name), "must be a list of strings");
                Vec::new()
            }
        }
    }

    /// A value parsed with `FromStr`, with `what` describing the expected form.
    pub fn parsed<T: FromStr>(
        &mut self,
        t: &Table<'_>,
        name: &str,
        default: &str,
        what: &str,
    ) -> Option<T> {
        let s = self.string(t, name, default);
        match s.trim().parse::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.problem(&t.at(name), format!("{s:?} is not {what}"));
                None
            }
        }
    }

    /// One of a fixed set of words, compared case-insensitively; returns the index.
    pub fn choice(&mut self, t: &Table<'_>, name: &str, default: &str, options: &[&str]) -> usize {
        let s = self.string(t, name, default);
        match options
            .iter()
            .position(|o| o.eq_ignore_ascii_case(s.trim()))
        {
            Some(i) => i,
            None => {
                self.problem(
                    &t.at(name),
                    format!("{s:?} is not one of: {}", options.join(", ")),
                );
                options.iter().position(|o| *o == default).unwrap_or(0)
            }
        }
    }
}

impl<'a> Table<'a> {
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The dotted key of a value in this table, as problems name it.
    pub fn at(&self, name: &str) -> String {
        join(&self.key, name)
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}
