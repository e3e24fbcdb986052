//! The backend trait: what a storage system must provide for Wharf.
//!
//! A backend holds two kinds of data, kept apart because they have opposite
//! shapes:
//!
//! - **Content** (blobs and manifest bytes): large, immutable, addressed by
//!   digest, written once through a *staged* write that may arrive in many
//!   chunks, possibly across restarts or nodes, then committed atomically.
//! - **Metadata** (links, tags, manifest revisions, referrers, upload
//!   sessions, the catalog): small records under ordered string keys, read
//!   by key and listed by prefix in key order with a start-after cursor.
//!
//! Registry semantics (what a tag means, which blobs a repository may read,
//! garbage collection) are written once in [`crate::Store`] on top of this
//! trait. See `docs/adr/0002-storage-backend-trait.md` for why the trait has
//! this shape and how S3 maps onto it.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use wharf_types::{Digest, UploadId};

/// A stream of byte chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BackendError>> + Send>>;

/// Result of backend operations.
pub type BackendResult<T> = Result<T, BackendError>;

/// A failure in a backend, named by meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The object or record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A create-only write found an existing value.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A staged write was appended at an offset other than its length.
    #[error("staged write {id} is {actual} bytes long; cannot write at offset {offset}")]
    OffsetMismatch {
        /// The staging id.
        id: UploadId,
        /// Where the caller wanted to write.
        offset: u64,
        /// The staged length.
        actual: u64,
    },
    /// The input stream failed (for example the client disconnected).
    #[error("input stream failed: {0}")]
    Input(#[source] std::io::Error),
    /// The backend cannot do this.
    #[error("operation not supported: {0}")]
    NotSupported(&'static str),
    /// An I/O failure of the storage itself.
    #[error("storage I/O error: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure.
    #[error("storage error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// An [`BackendError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackendError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is [`BackendError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound(_))
    }
}

/// A metadata key: `/`-separated, built by the store from validated values.
///
/// Keys sort byte-wise; listing returns them in that order. Valid keys use
/// only `[A-Za-z0-9._:/-]`, have no empty component, and no `.` or `..`
/// component, so backends can map them onto paths or object names as is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Longest accepted key, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Validates a key.
    ///
    /// ```
    /// use wharf_storage::Key;
    /// assert!(Key::parse("repo/library/busybox/_tag/latest").is_ok());
    /// assert!(Key::parse("repo/../etc").is_err());
    /// ```
    pub fn parse(s: impl Into<String>) -> Result<Self, BackendError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-')
            })
            && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if ok {
            Ok(Key(s))
        } else {
            Err(BackendError::NotSupported("invalid metadata key"))
        }
    }

    /// Internal constructor for keys built from validated parts.
    pub(crate) fn from_parts(s: String) -> Self {
        debug_assert!(Key::parse(s.clone()).is_ok(), "invalid key {s:?}");
        Key(s)
    }

    /// A range bound that need not be a valid key (a listing prefix).
    pub(crate) fn bound(s: String) -> Self {
        Key(s)
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

/// Facts about a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The blob's digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// When it was written (committed).
    pub modified: SystemTime,
}

/// A metadata record as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEntry {
    /// The key.
    pub key: Key,
    /// The value, when the listing asked for values.
    pub value: Option<Bytes>,
    /// When the record was last written.
    pub modified: SystemTime,
}

/// A metadata record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaValue {
    /// The value.
    pub value: Bytes,
    /// When the record was last written.
    pub modified: SystemTime,
}

/// How a metadata listing is bounded.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Return only keys strictly greater than this one.
    pub start_after: Option<Key>,
    /// Return at most this many entries.
    pub limit: usize,
    /// Include values.
    pub values: bool,
}

/// One write in a [`Backend::meta_apply`] batch.
#[derive(Debug, Clone)]
pub enum MetaOp {
    /// Create or replace a record.
    Put(Key, Bytes),
    /// Create a record only if absent; an existing record is left as is
    /// (not an error, so batches stay idempotent).
    PutIfAbsent(Key, Bytes),
    /// Remove a record; removing an absent record is not an error.
    Delete(Key),
}

/// A staged (in-progress) content write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMeta {
    /// The staging id.
    pub id: UploadId,
    /// Bytes staged so far.
    pub len: u64,
    /// Last time bytes were appended.
    pub modified: SystemTime,
}

/// What a storage system must provide. Implement this to store Wharf's data
/// anywhere; then run the conformance suite (`wharf_storage::conformance_tests!`)
/// against the implementation.
///
/// Every method must be safe to call concurrently. Writes that return `Ok`
/// must be durable (survive a crash of the process or machine) unless the
/// backend documents otherwise.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    // ---- content ----

    /// Size and commit time of a blob, or `NotFound`.
    async fn blob_stat(&self, digest: &Digest) -> BackendResult<BlobMeta>;

    /// Streams a blob, or the byte range of it (already checked against its size).
    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<ByteStream>;

    /// Writes a small blob in one go, atomically and durably. The caller has
    /// verified that `data` hashes to `digest`. Writing an existing blob
    /// succeeds without changing it.
    async fn blob_put(&self, digest: &Digest, data: Bytes) -> BackendResult<()>;

    /// Writes a small blob together with metadata records: the blob first,
    /// then `ops` in order. Backends that can make this one atomic, durable
    /// step (the filesystem backend keeps small blobs in its metadata
    /// database and commits both with one fsync) override it; the default
    /// is [`Backend::blob_put`] then [`Backend::meta_apply`].
    async fn blob_put_with_meta(
        &self,
        digest: &Digest,
        data: Bytes,
        ops: Vec<MetaOp>,
    ) -> BackendResult<()> {
        self.blob_put(digest, data).await?;
        self.meta_apply(ops).await
    }

    /// Removes a blob; removing an absent blob is not an error.
    async fn blob_delete(&self, digest: &Digest) -> BackendResult<()>;

    /// Lists blobs in digest order, after `start_after`, at most `limit`.
    async fn blob_list(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>>;

    // ---- staged writes ----

    /// Writes `data` into staged write `id` starting at `offset`, discarding
    /// anything the stage held at or after `offset`. The stage must hold at
    /// least `offset` bytes (a stage that does not exist holds 0), otherwise
    /// [`BackendError::OffsetMismatch`]. If the stream fails, the stage keeps
    /// its first `offset` bytes and may hold part of the failed chunk after
    /// them; callers track the acknowledged length and write again at it.
    /// An error yielded by `data` is returned as it is (the store tells a
    /// failed client from a failed disk by it).
    /// Returns `offset` plus the number of bytes written.
    async fn stage_append(
        &self,
        id: &UploadId,
        offset: u64,
        data: ByteStream,
    ) -> BackendResult<u64>;

    /// Makes the first `len` bytes of the stage durable and readable as
    /// blob `digest`, atomically, and removes the stage. The caller has
    /// verified the digest. If the blob already exists, the stage is just
    /// removed.
    async fn stage_commit(&self, id: &UploadId, len: u64, digest: &Digest) -> BackendResult<()>;

    /// Discards a stage; discarding an absent stage is not an error.
    async fn stage_abort(&self, id: &UploadId) -> BackendResult<()>;

    /// Lists stages (for expiry of abandoned ones).
    async fn stage_list(&self) -> BackendResult<Vec<StageMeta>>;

    // ---- metadata ----

    /// Reads a record, or `NotFound`.
    async fn meta_get(&self, key: &Key) -> BackendResult<MetaValue>;

    /// Applies writes in order. Backends that can make the batch atomic
    /// should; all must apply the operations in the given order, so that a
    /// crash part-way leaves a prefix applied.
    async fn meta_apply(&self, ops: Vec<MetaOp>) -> BackendResult<()>;

    /// Applies operations like [`Backend::meta_apply`] (atomically, and
    /// visible to every later read when the call returns), but without
    /// waiting for them to be durable: a crash soon after may lose the whole
    /// batch (never part of it). Later durable writes persist it. For
    /// records whose loss is harmless, such as a new upload session (a
    /// client that finds it gone starts again). The default is
    /// [`Backend::meta_apply`].
    async fn meta_apply_relaxed(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        self.meta_apply(ops).await
    }

    /// Lists records whose key starts with `prefix`, in key order.
    async fn meta_list(&self, prefix: &str, options: ListOptions) -> BackendResult<Vec<MetaEntry>>;

    /// Checks that the backend is reachable and writable (for readiness probes).
    async fn check(&self) -> BackendResult<()> {
        Ok(())
    }

    /// A URL from which a client may read blob `digest` directly, valid for
    /// `ttl` (an object store's presigned URL), or `None` when the backend
    /// has no such thing (the default). The caller has checked that the
    /// client may read the blob; the backend does not check that it exists.
    async fn blob_url(
        &self,
        digest: &Digest,
        ttl: std::time::Duration,
    ) -> BackendResult<Option<String>> {
        let _ = (digest, ttl);
        Ok(None)
    }
}

/// Convenience methods on any [`Backend`]; implemented once here so wrappers
/// cannot forget to forward them.
#[async_trait]
pub trait BackendExt: Backend {
    /// Reads a record's value, or `None` when absent.
    async fn meta_value(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        match self.meta_get(key).await {
            Ok(v) => Ok(Some(v.value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one record.
    async fn meta_put(&self, key: Key, value: Bytes) -> BackendResult<()> {
        self.meta_apply(vec![MetaOp::Put(key, value)]).await
    }

    /// Removes one record.
    async fn meta_delete(&self, key: Key) -> BackendResult<()> {
        self.meta_apply(vec![MetaOp::Delete(key)]).await
    }

    /// Reads a whole blob into memory. Only for small blobs (manifests).
    async fn blob_bytes(&self, digest: &Digest) -> BackendResult<Bytes> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.blob_read(digest, None).await?.try_collect().await?;
        if chunks.len() == 1 {
            return Ok(chunks.into_iter().next().unwrap_or_default());
        }
        let mut buf = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for c in chunks {
            buf.extend_from_slice(&c);
        }
        Ok(buf.freeze())
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}
