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
    /// The backend failed; the message names the key, never a path on disk.
    #[error("storage could not {action} '{key}': {kind}")]
    Backend {
        /// `read` or `write`.
        action: &'static str,
        /// The key.
        key: String,
        /// A short, stable description.
        kind: &'static str,
        /// The backend's error, for logs.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The stored object is larger than the caller accepts; nothing of it was read.
    #[error("'{key}' holds {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The key.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The local directory could not be made.
    #[error("storage directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The longest name one path segment may have, in bytes: most filesystems' limit (255) less
/// room for the suffix a local write's staging file adds (`#N`).
const MAX_SEGMENT: usize = 240;
/// Top-level names the processors write under by default: a file there would block them.
const RESERVED: [&str; 4] = ["exports", "images", "mail", "models"];

/// Where processors read inputs and write outputs.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// For a local directory: its canonical path, so that no key reaches outside it.
    root: Option<Arc<std::path::PathBuf>>,
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
        let root = dir
            .canonicalize()
            .map_err(|source| StorageError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        let fs =
            LocalFileSystem::new_with_prefix(&root).map_err(|source| StorageError::Directory {
                path: dir.display().to_string(),
                source: std::io::Error::other(source.to_string()),
            })?;
        Ok(Storage {
            store: Arc::new(fs),
            root: Some(Arc::new(root)),
        })
    }

    /// Storage over any `object_store` backend.
    pub fn new(store: Arc<dyn ObjectStore>) -> Storage {
        Storage { store, root: None }
    }

    fn path(key: &str) -> Result<Path, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidKey {
            key: key.into(),
            reason: reason.into(),
        };
        if key.is_empty() {
            return Err(invalid("empty"));
        }
        if key.starts_with('/') {
            return Err(invalid(
                "it starts with '/': keys are relative to the storage root",
            ));
        }
        if key.split('/').any(|segment| segment.len() > MAX_SEGMENT) {
            return Err(invalid(&format!(
                "a segment is longer than {MAX_SEGMENT} bytes"
            )));
        }
        Path::parse(key).map_err(|e| invalid(&e.to_string()))
    }

    /// For a local directory: refuses a key whose way passes through a link (which could lead
    /// outside the root), or that names a directory.
    fn check_local(&self, key: &str, path: &Path) -> Result<(), StorageError> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let invalid = |reason: &str| StorageError::InvalidKey {
            key: key.into(),
            reason: reason.into(),
        };
        let mut at = root.to_path_buf();
        let parts: Vec<_> = path.parts().collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(part.as_ref());
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(invalid(
                        "it passes through a link, which may lead outside the storage root",
                    ));
                }
                Ok(meta) if i + 1 < parts.len() && !meta.is_dir() => {
                    return Err(invalid(&format!(
                        "'{}' in it is a file, not a folder",
                        part.as_ref()
                    )));
                }
                Ok(_) => {}
                Err(_) => break, // nothing further exists yet
            }
        }
        if std::fs::metadata(root.join(path.as_ref())).is_ok_and(|m| m.is_dir()) {
            return Err(invalid("it names a directory"));
        }
        Ok(())
    }

    /// The path `key` names, when something may be written there: not a reserved folder
    /// itself, and (on local disk) not through or onto a directory.
    fn writable_path(&self, key: &str) -> Result<Path, StorageError> {
        let path = Self::path(key)?;
        if RESERVED.contains(&path.as_ref()) {
            return Err(StorageError::InvalidKey {
                key: key.into(),
                reason: "reserved: the built-in processors write their default outputs under it"
                    .into(),
            });
        }
        self.check_local(key, &path)?;
        Ok(path)
    }

    /// Writes `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.writable_path(key)?;
        self.store
            .put_opts(&path, PutPayload::from(bytes), PutOptions::default())
            .await
            .map_err(|source| backend("write", key, source))?;
        Ok(())
    }

    /// Reads what is stored under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.get_limited(key, u64::MAX).await
    }

    /// Reads what is stored under `key`, refusing before reading it when it holds more than
    /// `max` bytes.
    pub async fn get_limited(&self, key: &str, max: u64) -> Result<Bytes, StorageError> {
        let (size, stream) = self.stream(key).await?;
        if size > max {
            return Err(StorageError::TooLarge {
                key: key.into(),
                size,
                max,
            });
        }
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        futures::pin_mut!(stream);
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk?;
            if (out.len() + chunk.len()) as u64 > max {
                // It grew while read.
                return Err(StorageError::TooLarge {
                    key: key.into(),
                    size: (out.len() + chunk.len()) as u64,
                    max,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// The size of what is stored under `key` and its bytes as a stream of chunks, for reading
    /// in bounded memory.
    pub async fn stream(
        &self,
        key: &str,
    ) -> Result<
        (
            u64,
            impl futures::Stream<Item = Result<Bytes, StorageError>> + Send + 'static,
        ),
        StorageError,
    > {
        let path = Self::path(key)?;
        self.check_local(key, &path)?;
        match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(result) => {
                let size = result.meta.size;
                let owned_key = key.to_string();
                let stream = futures::StreamExt::map(result.into_stream(), move |chunk| {
                    chunk.map_err(|source| backend("read", &owned_key, source))
                });
                Ok((size, stream))
            }
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(key.into())),
            Err(source) => Err(backend("read", key, source)),
        }
    }

    /// A writer to `key`, for output made in pieces: it uploads in parts as it fills, and
    /// the object appears whole when the writer is shut down (`AsyncWriteExt::shutdown`).
    pub fn writer(&self, key: &str) -> Result<object_store::buffered::BufWriter, StorageError> {
        let path = self.writable_path(key)?;
        Ok(object_store::buffered::BufWriter::new(
            Arc::clone(&self.store),
            path,
        ))
    }
}

fn backend(action: &'static str, key: &str, source: object_store::Error) -> StorageError {
    let kind = match &source {
        object_store::Error::NotFound { .. } => "not found",
        object_store::Error::AlreadyExists { .. } => "already exists",
        object_store::Error::PermissionDenied { .. } => "permission denied",
        object_store::Error::InvalidPath { .. } => "invalid path",
        _ => "backend error",
    };
    StorageError::Backend {
        action,
        key: key.into(),
        kind,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, tempfile::TempDir, Storage) {
        let root = tempfile::tempdir().expect("root");
        let outside = tempfile::tempdir().expect("outside");
        let storage = Storage::local(root.path()).expect("storage");
        (root, outside, storage)
    }

    fn refused(result: Result<impl std::fmt::Debug, StorageError>) -> String {
        match result {
            Err(StorageError::InvalidKey { reason, .. }) => reason,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn no_key_reaches_outside_the_root_through_a_link() {
        let (root, outside, storage) = storage();
        std::fs::write(outside.path().join("secret"), "s").expect("write");
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).expect("link");
        let reason = refused(storage.get("out/secret").await);
        assert!(reason.contains("link"), "{reason}");
        refused(storage.put("out/new.csv", Bytes::from_static(b"x")).await);
        assert!(
            !outside.path().join("new.csv").exists(),
            "nothing written outside"
        );
    }

    #[tokio::test]
    async fn keys_that_would_shadow_a_directory_or_that_no_filesystem_holds_are_refused() {
        let (_root, _outside, storage) = storage();
        refused(storage.put("exports", Bytes::from_static(b"x")).await);
        refused(storage.put("exports/", Bytes::from_static(b"x")).await);
        refused(storage.put("/exports", Bytes::from_static(b"x")).await);
        let longest = "b".repeat(MAX_SEGMENT);
        storage
            .put(&format!("x/{longest}"), Bytes::from_static(b"x"))
            .await
            .expect("the longest segment allowed is written");
        storage
            .put("dir/file", Bytes::from_static(b"x"))
            .await
            .expect("put");
        refused(storage.put("dir", Bytes::from_static(b"x")).await);
        let reason = refused(
            storage
                .put("dir/file/under", Bytes::from_static(b"x"))
                .await,
        );
        assert!(reason.contains("is a file"), "{reason}");
        let reason = refused(storage.put("/abs.csv", Bytes::from_static(b"x")).await);
        assert!(reason.contains("relative"), "{reason}");
        let long = "a".repeat(MAX_SEGMENT + 1);
        refused(
            storage
                .put(&format!("x/{long}"), Bytes::from_static(b"x"))
                .await,
        );
    }

    #[tokio::test]
    async fn errors_name_the_key_not_the_path_on_disk() {
        let (root, _outside, storage) = storage();
        std::fs::create_dir(root.path().join("ro")).expect("dir");
        let err = storage.get("missing.json").await.expect_err("missing");
        let text = err.to_string();
        assert!(text.contains("missing.json"), "{text}");
        assert!(!text.contains(&*root.path().to_string_lossy()), "{text}");
    }
}
