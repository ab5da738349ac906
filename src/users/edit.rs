//! Edits the users file for the admin commands, keeping the operator's comments and
//! layout (toml_edit), validating the result before it replaces the file atomically.

use std::path::Path;

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::core::user::lockout_key;

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {0}: {1}")]
    Read(String, String),
    #[error("the users file is not valid TOML: {0}")]
    Parse(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error("the edited file would be invalid: {0}")]
    Invalid(String),
    #[error("cannot write {0}: {1}")]
    Write(String, String),
}

/// Serialises this process's read-modify-write edits of the users file, so two
/// password changes at once cannot lose one another.
static EDITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Replaces `name`'s password hash in the file at `path` (read, edit, validate,
/// atomic replace), as the account page's password change does while the gateway
/// runs. Blocking: call it off the async workers. Returns the stored username.
pub fn set_password_hash_in(path: &Path, name: &str, hash: &str) -> Result<String, EditError> {
    let _guard = EDITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut doc = UsersDoc::open(path)?;
    let stored = doc.set_password_hash(name, hash)?;
    doc.save(path)?;
    Ok(stored)
}

/// A loaded users file being edited.
pub struct UsersDoc {
    doc: DocumentMut,
}

impl UsersDoc {
    /// Loads `path`; a missing file is an empty one.
    pub fn open(path: &Path) -> Result<Self, EditError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(EditError::Read(path.display().to_string(), e.to_string())),
        };
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|e| EditError::Parse(e.to_string()))?;
        Ok(Self { doc })
    }

    fn users(&mut self) -> &mut ArrayOfTables {
        if !self.doc.contains_key("users") || self.doc["users"].as_array_of_tables().is_none() {
            self.doc["users"] = Item::ArrayOfTables(ArrayOfTables::new());
        }
        self.doc["users"]
            .as_array_of_tables_mut()
            .unwrap_or_else(|| unreachable!("set just above"))
    }

    /// The table of `name` (case-insensitive) and its canonical username.
    pub fn find(&mut self, name: &str) -> Result<(&mut Table, String), EditError> {
        let key = lockout_key(name);
        self.users()
            .iter_mut()
            .find_map(|t| {
                let n = t
                    .get("username")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)?;
                (lockout_key(&n) == key).then_some((t, n))
            })
            .ok_or_else(|| EditError::NoSuchUser(name.to_string()))
    }

    /// Appends a new user.
    pub fn add(
        &mut self,
        username: &str,
        display_name: &str,
        email: &str,
        roles: &[String],
        hash: &str,
    ) -> Result<(), EditError> {
        if self.find(username).is_ok() {
            return Err(EditError::Exists(username.to_string()));
        }
        let mut t = Table::new();
        t["username"] = value(username);
        t["display_name"] = value(display_name);
        t["email"] = value(email);
        t["roles"] = value(roles.iter().map(String::as_str).collect::<Array>());
        t["password_hash"] = value(hash);
        t["disabled"] = value(false);
        self.users().push(t);
        Ok(())
    }

    pub fn set_roles(&mut self, name: &str, roles: &[String]) -> Result<String, EditError> {
        let (t, n) = self.find(name)?;
        t["roles"] = value(roles.iter().map(String::as_str).collect::<Array>());
        Ok(n)
    }

    pub fn set_password_hash(&mut self, name: &str, hash: &str) -> Result<String, EditError> {
        let (t, n) = self.find(name)?;
        t["password_hash"] = value(hash);
        Ok(n)
    }

    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<String, EditError> {
        let (t, n) = self.find(name)?;
        t["disabled"] = value(disabled);
        Ok(n)
    }

    /// Validates the edited text and replaces `path` atomically ([`crate::atomic_file`]).
    pub fn save(&self, path: &Path) -> Result<(), EditError> {
        let text = self.doc.to_string();
        super::file::parse(&text).map_err(|ps| {
            EditError::Invalid(
                ps.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        crate::atomic_file::replace(path, text.as_bytes())
            .map_err(|e| EditError::Write(path.display().to_string(), e.to_string()))
    }
}
