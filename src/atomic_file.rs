//! Replacing a file that a running gateway reads (the users file, the key file) so
//! that a reader sees the old or the new text, never half, and so that nobody else can
//! steer the write.
//!
//! The new text goes to a temporary file created beside the target under a random
//! name with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600, so a symlink or file planted
//! at a predictable name is refused instead of followed and the secret text is never
//! readable by others, not even for a moment. It is written and synced, given the old
//! file's owner and mode (an operator's `root:vestibule 0640` survives an edit), then
//! renamed over the target and the directory synced. A target that is a symlink is
//! resolved first, so the file it points to is the one replaced.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the temporary file, and of a target that did not exist before.
const NEW_FILE_MODE: u32 = 0o600;

/// Why a file could not be replaced; the message names the path.
#[derive(Debug, thiserror::Error)]
#[error("cannot replace {path}: {source}")]
pub struct ReplaceError {
    path: String,
    source: std::io::Error,
}

/// Replaces `path` with `bytes` atomically (see the module doc), keeping its mode.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), ReplaceError> {
    replace_with_mode(path, bytes, None)
}

/// As [`replace`], but the result is always mode 0600 (a key file).
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), ReplaceError> {
    replace_with_mode(path, bytes, Some(NEW_FILE_MODE))
}

fn replace_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), ReplaceError> {
    let fail = |source| ReplaceError {
        path: path.display().to_string(),
        source,
    };
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let old = std::fs::metadata(&target).ok();
    let tmp = temporary_name(&target);
    let result = write_new(&tmp, bytes, old.as_ref(), mode).and_then(|()| {
        std::fs::rename(&tmp, &target)?;
        sync_dir(&target)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// `.<name>.<random>.tmp` in the target's directory (a rename stays on one file system).
fn temporary_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let random: u64 = rand::random();
    target.with_file_name(format!(".{name}.{random:016x}.tmp"))
}

/// Creates `tmp` exclusively, writes and syncs `bytes`, and gives it `old`'s owner and
/// mode (or `mode` when set).
fn write_new(
    tmp: &Path,
    bytes: &[u8],
    old: Option<&std::fs::Metadata>,
    mode: Option<u32>,
) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(NEW_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)?;
    f.write_all(bytes)?;
    if let Some(old) = old {
        // Only root may give a file away; anyone else keeps their own ownership,
        // which is then the same as the old file's or the change is refused below.
        if let Err(e) = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))
            && f.metadata()?.uid() != old.uid()
        {
            return Err(e);
        }
        let mode = mode.unwrap_or(old.mode() & 0o7777);
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    f.sync_all()
}

/// Makes the rename durable.
fn sync_dir(target: &Path) -> std::io::Result<()> {
    match target.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_file_is_private_and_an_old_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        replace(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(mode(&p), 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o640);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_private_replacement_is_0600_whatever_the_old_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("encryption.key");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace_private(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_planted_symlink_at_the_old_fixed_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("users.toml.tmp")).unwrap();
        replace(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn the_temporary_file_is_created_exclusively_and_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("t");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        assert!(write_new(&tmp, b"x", None, None).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    }

    #[test]
    fn a_symlinked_target_replaces_the_file_it_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("users.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
