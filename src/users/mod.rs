//! The users file (SPEC §4): parsing and validation, live reloading, and the edits the
//! admin commands make.

pub mod edit;
pub mod file;
pub mod watch;

pub use watch::UsersHandle;
