//! Storage backends behind [`crate::core::store::Store`]. The encryption of secrets at
//! rest is not theirs: secrets arrive sealed by [`crate::keys`].

pub mod change_marker;
pub mod embedded;
pub mod redis;
pub mod session_cache;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

use crate::config::{Backend, StorageConfig};
use crate::core::store::{Store, StoreError};

/// Opens the configured backend.
pub async fn open(cfg: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    match cfg.backend {
        Backend::Embedded => Ok(Arc::new(embedded::EmbeddedStore::open(&cfg.path)?)),
        Backend::Redis => Ok(Arc::new(redis::RedisStore::open(cfg).await?)),
    }
}
