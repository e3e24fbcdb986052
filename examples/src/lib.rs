//! Examples of embedding Wharf's libraries; see the `[[example]]` targets.
//!
//! [`CountingBackend`] is the custom backend used by the `custom-backend`
//! example: it forwards to another backend and counts operations. It lives
//! in the library so that its conformance test (`tests/custom_backend.rs`)
//! can run the shared suite against it.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use wharf_storage::{
    Backend, BackendResult, BlobMeta, ByteStream, Key, ListOptions, MetaEntry, MetaOp, MetaValue,
    StageMeta,
};
use wharf_types::{Digest, UploadId};

/// Operation counters of a [`CountingBackend`].
#[derive(Debug, Default)]
pub struct Counters {
    /// Content reads (stat, read, list).
    pub content_reads: AtomicU64,
    /// Content writes (put, stage, commit, delete).
    pub content_writes: AtomicU64,
    /// Metadata reads.
    pub meta_reads: AtomicU64,
    /// Metadata write batches.
    pub meta_writes: AtomicU64,
}

impl Counters {
    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "content reads {}, content writes {}, metadata reads {}, metadata write batches {}",
            self.content_reads.load(Ordering::Relaxed),
            self.content_writes.load(Ordering::Relaxed),
            self.meta_reads.load(Ordering::Relaxed),
            self.meta_writes.load(Ordering::Relaxed),
        )
    }
}

/// A backend that forwards to another and counts what it forwards.
#[derive(Debug)]
pub struct CountingBackend<B> {
    inner: B,
    counters: Arc<Counters>,
}

impl<B: Backend> CountingBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        CountingBackend {
            inner,
            counters: Arc::default(),
        }
    }

    /// The counters (shared; they keep counting).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<B: Backend> Backend for CountingBackend<B> {
    async fn blob_stat(&self, digest: &Digest) -> BackendResult<BlobMeta> {
        self.count(&self.counters.content_reads);
        self.inner.blob_stat(digest).await
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<ByteStream> {
        self.count(&self.counters.content_reads);
        self.inner.blob_read(digest, range).await
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> BackendResult<()> {
        self.count(&self.counters.content_writes);
        self.inner.blob_put(digest, data).await
    }

    async fn blob_delete(&self, digest: &Digest) -> BackendResult<()> {
        self.count(&self.counters.content_writes);
        self.inner.blob_delete(digest).await
    }

    async fn blob_list(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        self.count(&self.counters.content_reads);
        self.inner.blob_list(start_after, limit).await
    }

    async fn stage_append(
        &self,
        id: &UploadId,
        offset: u64,
        data: ByteStream,
    ) -> BackendResult<u64> {
        self.count(&self.counters.content_writes);
        self.inner.stage_append(id, offset, data).await
    }

    async fn stage_commit(&self, id: &UploadId, len: u64, digest: &Digest) -> BackendResult<()> {
        self.count(&self.counters.content_writes);
        self.inner.stage_commit(id, len, digest).await
    }

    async fn stage_abort(&self, id: &UploadId) -> BackendResult<()> {
        self.count(&self.counters.content_writes);
        self.inner.stage_abort(id).await
    }

    async fn stage_list(&self) -> BackendResult<Vec<StageMeta>> {
        self.count(&self.counters.content_reads);
        self.inner.stage_list().await
    }

    async fn meta_get(&self, key: &Key) -> BackendResult<MetaValue> {
        self.count(&self.counters.meta_reads);
        self.inner.meta_get(key).await
    }

    async fn meta_apply(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        self.count(&self.counters.meta_writes);
        self.inner.meta_apply(ops).await
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions) -> BackendResult<Vec<MetaEntry>> {
        self.count(&self.counters.meta_reads);
        self.inner.meta_list(prefix, options).await
    }

    async fn check(&self) -> BackendResult<()> {
        self.inner.check().await
    }
}
