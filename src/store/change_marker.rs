//! A file that tells every process sharing the embedded database "sessions were
//! ended". The admin commands write the same SQLite file while `serve` runs; the
//! serving process caches sessions, and this marker is how it learns that its cache
//! may be stale, at the cost of one `fstat` per lookup instead of a database read.
//!
//! Every process that deletes sessions appends one byte after its commit, so the
//! file's size only grows. A reader remembers the size, modification time and link
//! count it last saw through an open descriptor; any difference, an unlinked file or
//! any error means "changed". Growth is one byte per ended session batch (a logout, a
//! privilege change, a revoke): a few hundred kilobytes a year for a busy clinic.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a reader compares between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    mtime_s: i64,
    mtime_ns: i64,
}

/// The marker file next to the database.
pub struct ChangeMarker {
    path: PathBuf,
}

/// An open view of the marker for one reader.
pub struct MarkerView {
    file: File,
    seen: Stamp,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

fn stamp_of(file: &File) -> std::io::Result<Option<Stamp>> {
    let m = file.metadata()?;
    if m.nlink() == 0 {
        // Deleted under us: whatever happens next happens in another file.
        return Ok(None);
    }
    Ok(Some(Stamp {
        len: m.len(),
        mtime_s: m.mtime(),
        mtime_ns: m.mtime_nsec(),
    }))
}

impl ChangeMarker {
    /// The marker for the database in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("vestibule.sessions-changed"),
        }
    }

    /// Records that sessions were ended. Call after the deleting commit.
    pub fn bump(&self) -> std::io::Result<()> {
        open_append(&self.path)?.write_all(b".")
    }

    /// Opens a view that has seen the marker as it is now.
    pub fn view(&self) -> std::io::Result<MarkerView> {
        let file = open_append(&self.path)?;
        let seen = stamp_of(&file)?.ok_or_else(|| std::io::Error::other("marker unlinked"))?;
        Ok(MarkerView { file, seen })
    }
}

impl MarkerView {
    /// True when the marker is exactly as last seen. False (and the view must be
    /// replaced) on any change, deletion or error: the caller then forgets its cache.
    pub fn unchanged(&self) -> bool {
        matches!(stamp_of(&self.file), Ok(Some(s)) if s == self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_from_another_handle_is_seen_and_a_quiet_marker_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let writer = ChangeMarker::in_dir(dir.path());
        let reader = ChangeMarker::in_dir(dir.path()).view().unwrap();
        assert!(reader.unchanged());
        assert!(reader.unchanged());
        writer.bump().unwrap();
        assert!(!reader.unchanged());
        let fresh = ChangeMarker::in_dir(dir.path()).view().unwrap();
        assert!(fresh.unchanged());
    }

    #[test]
    fn deleting_or_replacing_the_marker_counts_as_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let marker = ChangeMarker::in_dir(dir.path());
        let view = marker.view().unwrap();
        std::fs::remove_file(&marker.path).unwrap();
        assert!(!view.unchanged(), "an unlinked marker must read as changed");
        let view = marker.view().unwrap();
        let tmp = dir.path().join("other");
        std::fs::write(&tmp, b"").unwrap();
        std::fs::rename(&tmp, &marker.path).unwrap();
        assert!(!view.unchanged(), "a replaced marker must read as changed");
    }
}
