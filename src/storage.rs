//! Files for processors, through `object_store` (a local directory by default).

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key is not a valid object path (empty segments, `..`, and the like).
    #[error("invalid storage key '{key}': {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Nothing is stored under the key.
    #[error("nothing stored under '{0}'")]
    NotFound(String),
    /// The backend failed.
    #[error("storage: {0}")]
    Backend(#[from] object_store::Error),
    /// The local directory could not be made.
    #[error("storage directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where processors read inputs and write outputs.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.store)
    }
}

impl Storage {
    /// Storage in a local directory, made if missing.
    pub fn local(dir: &FsPath) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Storage {
            store: Arc::new(fs),
        })
    }

    /// Storage over any `object_store` backend.
    pub fn new(store: Arc<dyn ObjectStore>) -> Storage {
        Storage { store }
    }

    fn path(key: &str) -> Result<Path, StorageError> {
        if key.is_empty() {
            return Err(StorageError::InvalidKey {
                key: key.into(),
                reason: "empty".into(),
            });
        }
        Path::parse(key).map_err(|e| StorageError::InvalidKey {
            key: key.into(),
            reason: e.to_string(),
        })
    }

    /// Writes `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = Self::path(key)?;
        self.store
            .put_opts(&path, PutPayload::from(bytes), PutOptions::default())
            .await?;
        Ok(())
    }

    /// Reads what is stored under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = Self::path(key)?;
        match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(found) => Ok(found.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(key.into())),
            Err(e) => Err(e.into()),
        }
    }
}
