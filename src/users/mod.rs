//! Where users come from: the users file (SPEC §4: parsing and validation, live
//! reloading, the admin commands' edits) or a directory (SPEC §11, [`ldap`]), both
//! behind [`source::UserSource`].

pub mod edit;
pub mod file;
pub(crate) mod ldap;
pub(crate) mod source;
pub mod watch;

pub use watch::UsersHandle;
