//! An in-memory backend, for tests and for embedding a throwaway registry.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use wharf_types::{Digest, UploadId};

use crate::backend::{
    Backend, BackendError, BackendResult, BlobMeta, ByteStream, Key, ListOptions, MetaEntry,
    MetaOp, MetaValue, StageMeta,
};

/// Keeps everything in process memory; nothing survives the process.
///
/// Cloning gives another handle to the same data, which is how tests
/// simulate a restart (drop the [`crate::Store`], build a new one on a clone).
///
/// ```
/// use wharf_storage::{MemoryBackend, Store};
/// let store = Store::new(MemoryBackend::new());
/// # let _ = store;
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    blobs: BTreeMap<Digest, (Bytes, SystemTime)>,
    stages: HashMap<UploadId, (BytesMut, SystemTime)>,
    meta: BTreeMap<Key, (Bytes, SystemTime)>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // (every mutation is a single insert/remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Chunks handed out by reads; big enough for throughput, small enough that
/// a consumer's buffering stays bounded.
const READ_CHUNK: usize = 256 * 1024;

#[async_trait]
impl Backend for MemoryBackend {
    async fn blob_stat(&self, digest: &Digest) -> BackendResult<BlobMeta> {
        let inner = self.lock();
        let (data, modified) = inner
            .blobs
            .get(digest)
            .ok_or_else(|| BackendError::NotFound(digest.to_string()))?;
        Ok(BlobMeta {
            digest: digest.clone(),
            size: data.len() as u64,
            modified: *modified,
        })
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<ByteStream> {
        let data = {
            let inner = self.lock();
            let (data, _) = inner
                .blobs
                .get(digest)
                .ok_or_else(|| BackendError::NotFound(digest.to_string()))?;
            data.clone()
        };
        let len = data.len() as u64;
        let r = range.unwrap_or(0..len);
        if r.start > r.end || r.end > len {
            return Err(BackendError::NotSupported("range outside the blob"));
        }
        let slice = data.slice(r.start as usize..r.end as usize);
        let chunks: Vec<BackendResult<Bytes>> = (0..slice.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(slice.slice(at..(at + READ_CHUNK).min(slice.len()))))
            .collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> BackendResult<()> {
        let mut inner = self.lock();
        inner
            .blobs
            .entry(digest.clone())
            .or_insert_with(|| (data, SystemTime::now()));
        Ok(())
    }

    async fn blob_delete(&self, digest: &Digest) -> BackendResult<()> {
        self.lock().blobs.remove(digest);
        Ok(())
    }

    async fn blob_list(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        let inner = self.lock();
        let iter: Box<dyn Iterator<Item = (&Digest, &(Bytes, SystemTime))>> = match start_after {
            Some(after) => Box::new(inner.blobs.range::<Digest, _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(inner.blobs.iter()),
        };
        Ok(iter
            .take(limit)
            .map(|(d, (data, modified))| BlobMeta {
                digest: d.clone(),
                size: data.len() as u64,
                modified: *modified,
            })
            .collect())
    }

    async fn stage_append(
        &self,
        id: &UploadId,
        offset: u64,
        mut data: ByteStream,
    ) -> BackendResult<u64> {
        {
            let mut inner = self.lock();
            let (buf, modified) = inner
                .stages
                .entry(*id)
                .or_insert_with(|| (BytesMut::new(), SystemTime::now()));
            if (buf.len() as u64) < offset {
                return Err(BackendError::OffsetMismatch {
                    id: *id,
                    offset,
                    actual: buf.len() as u64,
                });
            }
            buf.truncate(offset as usize);
            *modified = SystemTime::now();
        }
        let mut written = offset;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            let mut inner = self.lock();
            let Some((buf, modified)) = inner.stages.get_mut(id) else {
                return Err(BackendError::NotFound(id.to_string()));
            };
            // Another writer may have rewound the stage meanwhile; never
            // write at a position other than where this call is.
            if buf.len() as u64 != written {
                return Err(BackendError::OffsetMismatch {
                    id: *id,
                    offset: written,
                    actual: buf.len() as u64,
                });
            }
            buf.extend_from_slice(&chunk);
            *modified = SystemTime::now();
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    async fn stage_commit(&self, id: &UploadId, len: u64, digest: &Digest) -> BackendResult<()> {
        let mut inner = self.lock();
        let staged = inner
            .stages
            .get(id)
            .map(|(buf, _)| buf.len() as u64)
            .ok_or_else(|| BackendError::NotFound(id.to_string()))?;
        // A stage too short to commit stays, so the upload can continue.
        if staged < len {
            return Err(BackendError::OffsetMismatch {
                id: *id,
                offset: len,
                actual: staged,
            });
        }
        let Some((mut buf, _)) = inner.stages.remove(id) else {
            return Err(BackendError::NotFound(id.to_string()));
        };
        buf.truncate(len as usize);
        inner
            .blobs
            .entry(digest.clone())
            .or_insert_with(|| (buf.freeze(), SystemTime::now()));
        Ok(())
    }

    async fn stage_abort(&self, id: &UploadId) -> BackendResult<()> {
        self.lock().stages.remove(id);
        Ok(())
    }

    async fn stage_list(&self) -> BackendResult<Vec<StageMeta>> {
        Ok(self
            .lock()
            .stages
            .iter()
            .map(|(id, (buf, modified))| StageMeta {
                id: *id,
                len: buf.len() as u64,
                modified: *modified,
            })
            .collect())
    }

    async fn meta_get(&self, key: &Key) -> BackendResult<MetaValue> {
        let inner = self.lock();
        let (value, modified) = inner
            .meta
            .get(key)
            .ok_or_else(|| BackendError::NotFound(key.to_string()))?;
        Ok(MetaValue {
            value: value.clone(),
            modified: *modified,
        })
    }

    async fn meta_apply(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        let mut inner = self.lock();
        let now = SystemTime::now();
        for op in ops {
            match op {
                MetaOp::Put(k, v) => {
                    inner.meta.insert(k, (v, now));
                }
                MetaOp::PutIfAbsent(k, v) => {
                    inner.meta.entry(k).or_insert((v, now));
                }
                MetaOp::Delete(k) => {
                    inner.meta.remove(&k);
                }
            }
        }
        Ok(())
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions) -> BackendResult<Vec<MetaEntry>> {
        let inner = self.lock();
        let start = match &options.start_after {
            Some(after) if after.as_str() >= prefix => {
                std::ops::Bound::Excluded(after.as_str().to_owned())
            }
            _ => std::ops::Bound::Included(prefix.to_owned()),
        };
        // Keys compare like their strings; range over strings via a mapped bound.
        let start = match start {
            std::ops::Bound::Excluded(s) => std::ops::Bound::Excluded(Key::bound(s)),
            std::ops::Bound::Included(s) => std::ops::Bound::Included(Key::bound(s)),
            std::ops::Bound::Unbounded => std::ops::Bound::Unbounded,
        };
        Ok(inner
            .meta
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.as_str().starts_with(prefix))
            .take(options.limit)
            .map(|(k, (v, modified))| MetaEntry {
                key: k.clone(),
                value: options.values.then(|| v.clone()),
                modified: *modified,
            })
            .collect())
    }
}
