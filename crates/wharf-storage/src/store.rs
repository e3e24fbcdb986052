//! The registry-level store: registry semantics over a [`Backend`].

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use wharf_types::{Digest, RepositoryName, UploadId};

use crate::backend::{Backend, BackendExt, MetaOp};
use crate::error::{StoreError, StoreResult};
use crate::keys;

/// A request body: chunks of bytes, or an I/O error when the client fails.
pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Tunables of a [`Store`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Bytes of manifest content kept in memory for fast reads (manifests
    /// are immutable, so the cache is always coherent). 0 disables it.
    pub manifest_cache_bytes: usize,
    /// A blob link older than this is rewritten when a client checks the
    /// blob, so garbage collection sees the blob as recently used. Keep it
    /// well below the GC grace period.
    pub link_touch_interval: Duration,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: u64,
    /// Blobs pushed in one request ([`Store::put_blob`]) with a declared
    /// length of at most this many bytes are read into memory, verified,
    /// and handed to the backend in one step together with their
    /// repository link ([`Backend::blob_put_with_meta`](crate::Backend::blob_put_with_meta);
    /// the filesystem backend commits both in one transaction with one
    /// fsync), instead of being streamed through a staged write and
    /// committed, then linked. It bounds the memory one such request
    /// holds. Larger blobs and bodies of unknown length are streamed. 0
    /// streams every blob.
    pub small_blob_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            manifest_cache_bytes: 8 << 20,
            link_touch_interval: Duration::from_secs(60),
            max_manifest_size: wharf_types::Manifest::DEFAULT_MAX_SIZE,
            small_blob_bytes: 1 << 20,
        }
    }
}

/// Registry storage: blobs, repository links, manifests, tags, referrers,
/// upload sessions, the catalog and garbage collection, over any backend.
///
/// Cheap to clone; clones share the backend and caches.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use bytes::Bytes;
/// use wharf_storage::{MemoryBackend, Store};
/// use wharf_types::{Digest, RepositoryName};
///
/// let store = Store::new(MemoryBackend::new());
/// let repo: RepositoryName = "library/hello".parse().unwrap();
/// let data = Bytes::from_static(b"hello layer");
/// let digest = Digest::sha256(&data);
/// store.put_blob(&repo, &digest, wharf_storage::body_from_bytes(data), None).await.unwrap();
/// assert_eq!(store.stat_blob(&repo, &digest).await.unwrap().size, 11);
/// # });
/// ```
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: Arc<StoreConfig>,
    pub(crate) cache: Arc<Mutex<ManifestCache>>,
    pub(crate) upload_locks: Arc<Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Sharded by digest: held (shared) by a request from the moment it
    /// finds a blob stored until it has linked or touched it, and taken
    /// exclusively, without waiting, by garbage collection to delete one.
    pub(crate) blob_guards: Arc<[tokio::sync::RwLock<()>]>,
}

/// Shards of [`Store::blob_guards`].
const BLOB_GUARD_SHARDS: usize = 64;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("config", &self.config)
            .finish()
    }
}

impl Store {
    /// A store over `backend` with default settings.
    pub fn new(backend: impl Backend) -> Self {
        Self::with_config(Arc::new(backend), StoreConfig::default())
    }

    /// A store over a shared backend with explicit settings.
    pub fn with_config(backend: Arc<dyn Backend>, config: StoreConfig) -> Self {
        Store {
            cache: Arc::new(Mutex::new(ManifestCache::new(config.manifest_cache_bytes))),
            backend,
            config: Arc::new(config),
            upload_locks: Arc::new(Mutex::new(HashMap::new())),
            blob_guards: (0..BLOB_GUARD_SHARDS)
                .map(|_| tokio::sync::RwLock::new(()))
                .collect(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Whether the repository has ever had content.
    pub async fn repository_exists(&self, repo: &RepositoryName) -> StoreResult<bool> {
        Ok(self
            .backend
            .meta_value(&keys::catalog(repo))
            .await?
            .is_some())
    }

    /// Fails with `NameUnknown` unless the repository exists.
    pub(crate) async fn require_repository(&self, repo: &RepositoryName) -> StoreResult<()> {
        if self.repository_exists(repo).await? {
            Ok(())
        } else {
            Err(StoreError::NameUnknown(repo.clone()))
        }
    }

    /// Checks the backend is reachable and writable.
    pub async fn check(&self) -> StoreResult<()> {
        Ok(self.backend.check().await?)
    }

    /// The writes that link a blob into a repository (and register the
    /// repository in the catalog).
    pub(crate) fn link_ops(repo: &RepositoryName, digest: &Digest) -> Vec<MetaOp> {
        vec![
            MetaOp::PutIfAbsent(keys::catalog(repo), Bytes::new()),
            MetaOp::PutIfAbsent(keys::holder(digest, repo), Bytes::new()),
            MetaOp::Put(keys::blob_link(repo, digest), Bytes::new()),
        ]
    }

    pub(crate) fn cached_manifest(&self, digest: &Digest) -> Option<Bytes> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
    }

    pub(crate) fn cache_manifest(&self, digest: &Digest, bytes: &Bytes) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), bytes.clone());
    }

    pub(crate) fn forget_manifest(&self, digest: &Digest) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
    }

    fn blob_guard_shard(&self, digest: &Digest) -> &tokio::sync::RwLock<()> {
        let h = digest.hex().as_bytes();
        let n = h
            .iter()
            .take(4)
            .fold(0usize, |n, b| n * 31 + usize::from(*b));
        &self.blob_guards[n % self.blob_guards.len()]
    }

    /// Keeps garbage collection (in this process) from deleting `digest`
    /// while the guard is held: taken by requests that find a blob stored
    /// and then link it or mark it as used.
    pub(crate) async fn blob_guard(&self, digest: &Digest) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.blob_guard_shard(digest).read().await
    }

    /// For garbage collection: exclusive use of `digest`, or `None` when a
    /// request holds it (the blob is then kept this time).
    pub(crate) fn try_sweep_guard(
        &self,
        digest: &Digest,
    ) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        self.blob_guard_shard(digest).try_write().ok()
    }

    /// Serializes operations on one upload session within this process.
    pub(crate) async fn lock_upload(&self, id: &UploadId) -> UploadGuard {
        let lock = {
            let mut map = self.upload_locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(*id).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        UploadGuard {
            _guard: guard,
            id: *id,
            map: self.upload_locks.clone(),
            lock,
        }
    }
}

/// Holds an upload's lock; removes the map entry when the last holder leaves.
pub(crate) struct UploadGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    id: UploadId,
    map: Arc<Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Ours, the map's, and the guard's own: nobody else is waiting.
        if Arc::strong_count(&self.lock) <= 3 {
            map.remove(&self.id);
        }
    }
}

/// Turns an in-memory buffer into a [`Body`].
pub fn body_from_bytes(data: Bytes) -> Body {
    Box::pin(futures::stream::once(async move { Ok(data) }))
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A byte-bounded FIFO cache of manifest bytes by digest.
pub(crate) struct ManifestCache {
    capacity: usize,
    used: usize,
    map: HashMap<Digest, Bytes>,
    order: VecDeque<Digest>,
}

impl ManifestCache {
    fn new(capacity: usize) -> Self {
        ManifestCache {
            capacity,
            used: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.map.get(digest).cloned()
    }

    fn insert(&mut self, digest: Digest, bytes: Bytes) {
        // Large manifests would evict everything for one entry; skip them.
        if bytes.len() > self.capacity / 8 || self.map.contains_key(&digest) {
            return;
        }
        while self.used + bytes.len() > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.map.remove(&old) {
                self.used -= b.len();
            }
        }
        self.used += bytes.len();
        self.order.push_back(digest.clone());
        self.map.insert(digest, bytes);
    }

    fn remove(&mut self, digest: &Digest) {
        if let Some(b) = self.map.remove(digest) {
            self.used -= b.len();
            self.order.retain(|d| d != digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_by_bytes() {
        let mut c = ManifestCache::new(800);
        for i in 0..100u32 {
            c.insert(Digest::sha256(&i.to_le_bytes()), Bytes::from(vec![0; 90]));
        }
        assert!(c.used <= 800);
        assert_eq!(c.map.len(), c.order.len());
        assert!(c.get(&Digest::sha256(&99u32.to_le_bytes())).is_some());
        assert!(c.get(&Digest::sha256(&0u32.to_le_bytes())).is_none());
        c.insert(Digest::sha256(b"big"), Bytes::from(vec![0; 500]));
        assert!(c.get(&Digest::sha256(b"big")).is_none());
    }

    /// A blob a request holds (found stored, not yet linked or touched) is
    /// kept by garbage collection until the request lets go.
    #[tokio::test]
    async fn gc_keeps_a_blob_a_request_holds() {
        #![allow(clippy::unwrap_used)]
        use crate::GcOptions;
        use crate::backend::BackendExt;
        use wharf_types::RepositoryName;

        let store = Store::new(crate::MemoryBackend::new());
        let repo: RepositoryName = "gc/guard".parse().unwrap();
        let data = Bytes::from_static(b"held by a request");
        let digest = Digest::sha256(&data);
        store
            .put_blob(&repo, &digest, body_from_bytes(data), None)
            .await
            .unwrap();
        store.delete_blob(&repo, &digest).await.unwrap();
        let options = GcOptions::with_grace(Duration::ZERO);
        let guard = store.blob_guard(&digest).await;
        let report = store.gc(&options).await.unwrap();
        assert_eq!(report.blobs_deleted, 0, "{report:?}");
        assert!(store.backend.blob_bytes(&digest).await.is_ok());
        drop(guard);
        let report = store.gc(&options).await.unwrap();
        assert_eq!(report.blobs_deleted, 1, "{report:?}");
    }
}
