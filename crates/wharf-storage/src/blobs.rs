//! Blobs: reading, linking, mounting, monolithic uploads.

use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use wharf_types::{Digest, Digester, RepositoryName, UploadId, VerifyError};

use crate::backend::{BackendError, BackendExt, ByteStream, ListOptions, MetaOp};
use crate::error::{StoreError, StoreResult};
use crate::keys;
use crate::store::{Body, Store};

/// A blob as seen through a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// A byte range as a client asks for it (`Range: bytes=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start-end`, both inclusive.
    Bounded(u64, u64),
    /// `start-`: from `start` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open byte range within a blob of `size` bytes, or `None`
    /// when it cannot be satisfied (RFC 9110 section 14.1.2).
    ///
    /// ```
    /// use wharf_storage::ByteRange;
    /// assert_eq!(ByteRange::Bounded(0, 99).resolve(50), Some(0..50));
    /// assert_eq!(ByteRange::Suffix(10).resolve(50), Some(40..50));
    /// assert_eq!(ByteRange::From(50).resolve(50), None);
    /// ```
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::Bounded(start, end) if start <= end && start < size => {
                Some(start..end.saturating_add(1).min(size))
            }
            ByteRange::From(start) if start < size => Some(start..size),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

/// A blob being read.
pub struct BlobReader {
    /// Size of the whole blob.
    pub size: u64,
    /// The bytes served (the whole blob unless a range was asked for).
    pub range: Range<u64>,
    /// The content.
    pub stream: ByteStream,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Size of a blob linked into `repo`. Also marks the link as recently
    /// used, so a push that checked for the blob is safe from garbage
    /// collection until its manifest arrives.
    pub async fn stat_blob(&self, repo: &RepositoryName, digest: &Digest) -> StoreResult<BlobInfo> {
        // Held until the link is touched: a collection that found the link
        // old cannot delete the blob between this check and the touch (and
        // answer "present" to a push that then names it in a manifest).
        let _guard = self.blob_guard(digest).await;
        self.stat_blob_unguarded(repo, digest).await
    }

    async fn stat_blob_unguarded(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> StoreResult<BlobInfo> {
        let link = keys::blob_link(repo, digest);
        let unknown = || StoreError::BlobUnknown {
            repo: repo.clone(),
            digest: digest.clone(),
        };
        let link_meta = match self.backend.meta_get(&link).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let meta = match self.backend.blob_stat(digest).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let age = SystemTime::now()
            .duration_since(link_meta.modified)
            .unwrap_or_default();
        if age > self.config.link_touch_interval {
            self.backend
                .meta_apply(Self::link_ops(repo, digest))
                .await?;
        }
        Ok(BlobInfo {
            digest: digest.clone(),
            size: meta.size,
        })
    }

    /// Streams a blob linked into `repo`, whole or a byte range.
    pub async fn read_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StoreResult<BlobReader> {
        let info = self.stat_blob(repo, digest).await?;
        let range = match range {
            None => 0..info.size,
            Some(r) => r
                .resolve(info.size)
                .ok_or_else(|| range_error(r, info.size))?,
        };
        if info.size <= self.config.small_blob_bytes {
            // Small blobs are read whole into memory anyway (the filesystem
            // backend keeps them in its database): verifying them costs one
            // hash, and storage corruption becomes an error instead of
            // wrong bytes served as the digest.
            let data = self.verified_bytes(repo, digest).await?;
            if data.len() as u64 != info.size {
                return Err(StoreError::Corrupt(format!(
                    "{digest} is recorded as {} bytes but {} are stored",
                    info.size,
                    data.len()
                )));
            }
            let part = data.slice(range.start as usize..range.end as usize);
            return Ok(BlobReader {
                size: info.size,
                range,
                stream: Box::pin(futures::stream::iter([Ok(part)])),
            });
        }
        let whole = range.start == 0 && range.end == info.size;
        let stream = match self
            .backend
            .blob_read(digest, (!whole).then(|| range.clone()))
            .await
        {
            Ok(s) => s,
            Err(e) if e.is_not_found() => {
                return Err(StoreError::BlobUnknown {
                    repo: repo.clone(),
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(BlobReader {
            size: info.size,
            range,
            stream,
        })
    }

    /// The whole content of a blob, checked against its digest.
    async fn verified_bytes(&self, repo: &RepositoryName, digest: &Digest) -> StoreResult<Bytes> {
        let data = match self.backend.blob_bytes(digest).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(StoreError::BlobUnknown {
                    repo: repo.clone(),
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        verify_stored(digest, &data)?;
        Ok(data)
    }

    /// Unlinks a blob from `repo`. The content itself is removed by garbage
    /// collection once nothing links or references it.
    pub async fn delete_blob(&self, repo: &RepositoryName, digest: &Digest) -> StoreResult<()> {
        let link = keys::blob_link(repo, digest);
        if self.backend.meta_value(&link).await?.is_none() {
            return Err(StoreError::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            });
        }
        self.backend
            .meta_apply(vec![
                MetaOp::Delete(link),
                MetaOp::Delete(keys::holder(digest, repo)),
            ])
            .await?;
        Ok(())
    }

    /// Links a blob that `from` holds into `repo` without copying it.
    /// Returns `false` (and changes nothing) when `from` does not hold it.
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
    ) -> StoreResult<Option<BlobInfo>> {
        let _guard = self.blob_guard(digest).await;
        match self.stat_blob_unguarded(from, digest).await {
            Ok(info) => {
                self.backend
                    .meta_apply(Self::link_ops(repo, digest))
                    .await?;
                Ok(Some(info))
            }
            Err(StoreError::BlobUnknown { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Repositories that link `digest` (at most `limit`), for automatic
    /// cross-repository mounts: the caller picks one it may read.
    pub async fn repositories_holding(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> StoreResult<Vec<RepositoryName>> {
        let prefix = keys::holders_prefix(digest);
        let entries = self
            .backend
            .meta_list(
                &prefix,
                ListOptions {
                    limit,
                    ..ListOptions::default()
                },
            )
            .await?;
        Ok(entries
            .iter()
            .filter_map(|e| RepositoryName::parse(keys::after_prefix(&e.key, &prefix)).ok())
            .collect())
    }

    /// Uploads a whole blob in one request, verifying it against `digest`
    /// (and `declared_len`, the request's Content-Length, when given).
    /// Nothing becomes readable unless every byte arrived and matched.
    ///
    /// A blob whose declared length is at most
    /// [`StoreConfig::small_blob_bytes`](crate::StoreConfig::small_blob_bytes)
    /// is read into memory and stored with its link in one backend call;
    /// larger ones are streamed through a staged write.
    pub async fn put_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        body: Body,
        declared_len: Option<u64>,
    ) -> StoreResult<BlobInfo> {
        // A blob found stored is linked before collection may delete it.
        let _guard = self.blob_guard(digest).await;
        if let Some(len) = declared_len
            && len <= self.config.small_blob_bytes
            && self.config.small_blob_bytes > 0
        {
            return self.put_small_blob(repo, digest, body, len).await;
        }
        let digester = Digester::new(digest.algorithm());
        let (stream, hashed) = hashing(body, digester, declared_len);
        let size = match self.backend.blob_stat(digest).await {
            // Already stored: verify the body without writing it again.
            Ok(_) => {
                let mut stream = stream;
                while let Some(chunk) = stream.next().await {
                    chunk?;
                }
                hashed.len()
            }
            Err(e) if e.is_not_found() => {
                let id = UploadId::random();
                let written = match self.backend.stage_append(&id, 0, stream).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = self.backend.stage_abort(&id).await;
                        return Err(e.into());
                    }
                };
                if let Err(e) = hashed.verify(digest, declared_len) {
                    let _ = self.backend.stage_abort(&id).await;
                    return Err(e);
                }
                self.backend.stage_commit(&id, written, digest).await?;
                written
            }
            Err(e) => return Err(e.into()),
        };
        hashed.verify(digest, declared_len)?;
        self.backend
            .meta_apply(Self::link_ops(repo, digest))
            .await?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size,
        })
    }

    /// [`Store::put_blob`] of a body declared to be `len` (small) bytes:
    /// reads it into memory (failing as soon as it overruns `len`),
    /// verifies it, then stores the blob and its link in one step. A blob
    /// that is stored already is verified but not written again (the
    /// backend leaves an existing blob as it is).
    async fn put_small_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        body: Body,
        len: u64,
    ) -> StoreResult<BlobInfo> {
        let data = read_verified(body, digest, len).await?;
        self.backend
            .blob_put_with_meta(digest, data, Self::link_ops(repo, digest))
            .await?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: len,
        })
    }

    /// Whether the content is stored at all (in any repository).
    pub async fn blob_stored(&self, digest: &Digest) -> StoreResult<Option<u64>> {
        match self.backend.blob_stat(digest).await {
            Ok(m) => Ok(Some(m.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Checks bytes read from storage against the digest they are stored
/// under: a mismatch is corruption in storage.
pub(crate) fn verify_stored(digest: &Digest, data: &[u8]) -> StoreResult<()> {
    let mut d = Digester::new(digest.algorithm());
    d.update(data);
    let actual = d.finish();
    if &actual != digest {
        return Err(StoreError::Corrupt(format!(
            "the content of {digest} hashes to {actual}; run `wharf fsck`"
        )));
    }
    Ok(())
}

pub(crate) fn range_error(r: ByteRange, size: u64) -> StoreError {
    let (start, end) = match r {
        ByteRange::Bounded(s, e) => (s, e),
        ByteRange::From(s) => (s, u64::MAX),
        ByteRange::Suffix(n) => (0, n),
    };
    StoreError::RangeNotSatisfiable { start, end, size }
}

/// The hasher shared between a body stream and the code that checks it.
#[derive(Clone)]
pub(crate) struct Hashed(Arc<Mutex<Option<Digester>>>);

impl Hashed {
    fn with<T>(&self, f: impl FnOnce(&Digester) -> T) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    pub(crate) fn len(&self) -> u64 {
        self.with(Digester::len).unwrap_or(0)
    }

    /// Takes the hasher (once the stream is done).
    pub(crate) fn take(&self) -> Option<Digester> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Checks the content hashed so far against the expectations.
    pub(crate) fn verify(&self, digest: &Digest, declared_len: Option<u64>) -> StoreResult<()> {
        let Some(d) = self.with(Digester::clone) else {
            return Err(StoreError::Corrupt("hash state lost".into()));
        };
        check_digester(d, digest, declared_len)
    }
}

pub(crate) fn check_digester(
    d: Digester,
    digest: &Digest,
    declared_len: Option<u64>,
) -> StoreResult<()> {
    if let Some(n) = declared_len
        && d.len() != n
    {
        return Err(VerifyError::SizeMismatch {
            expected: n,
            actual: d.len(),
        }
        .into());
    }
    let actual = d.finish();
    if &actual != digest {
        return Err(VerifyError::DigestMismatch {
            expected: digest.clone(),
            actual,
        }
        .into());
    }
    Ok(())
}

/// Wraps a request body: hashes every chunk on its way to the backend and
/// stops with an error as soon as the body overruns `limit`.
pub(crate) fn hashing(body: Body, digester: Digester, limit: Option<u64>) -> (ByteStream, Hashed) {
    let hashed = Hashed(Arc::new(Mutex::new(Some(digester))));
    let stream = HashingStream {
        body,
        hashed: hashed.clone(),
        limit,
        seen: 0,
        done: false,
    };
    (Box::pin(stream), hashed)
}

struct HashingStream {
    body: Body,
    hashed: Hashed,
    limit: Option<u64>,
    seen: u64,
    done: bool,
}

impl Stream for HashingStream {
    type Item = Result<Bytes, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.body.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(BackendError::Input(e))))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if let Some(limit) = self.limit
                    && self.seen > limit
                {
                    self.done = true;
                    let err = VerifyError::SizeMismatch {
                        expected: limit,
                        actual: self.seen,
                    };
                    return Poll::Ready(Some(Err(BackendError::Input(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        err,
                    )))));
                }
                if let Some(d) = self
                    .hashed
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    d.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }
}

/// Reads a body declared to be `len` (small) bytes into memory, failing as
/// soon as it overruns `len`, and verifies it against `digest`.
pub(crate) async fn read_verified(body: Body, digest: &Digest, len: u64) -> StoreResult<Bytes> {
    let (mut stream, hashed) = hashing(body, Digester::new(digest.algorithm()), Some(len));
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    hashed.verify(digest, Some(len))?;
    let data = match <[Bytes; 1]>::try_from(chunks) {
        Ok([one]) => one,
        Err(chunks) => {
            let mut buf = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
            for c in chunks {
                buf.extend_from_slice(&c);
            }
            buf.freeze()
        }
    };
    Ok(data)
}
