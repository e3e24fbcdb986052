//! Resumable upload sessions.
//!
//! A session's state (repository, acknowledged length, hash state) is a
//! metadata record written after each chunk is durably staged, so the
//! acknowledged offset is always backed by bytes on storage. After a crash
//! or restart, or on another node sharing the backend, the session continues
//! from that offset; bytes staged past it (a chunk that was never
//! acknowledged) are overwritten by the next chunk.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wharf_types::{Algorithm, Digest, Digester, DigesterState, RepositoryName, UploadId};

use crate::backend::{BackendExt, ListOptions, MetaOp};
use crate::blobs::{BlobInfo, check_digester, hashing};
use crate::error::{StoreError, StoreResult};
use crate::keys;
use crate::store::{Body, Store, unix_secs};

/// Where an upload session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The session id.
    pub id: UploadId,
    /// Bytes received and acknowledged so far.
    pub offset: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    repo: RepositoryName,
    offset: u64,
    hash: DigesterState,
    started: u64,
}

/// The final chunk of an upload, sent with the completing request.
pub struct FinalChunk {
    /// Where the client says the chunk starts (from `Content-Range`), if it said.
    pub start: Option<u64>,
    /// The bytes.
    pub body: Body,
    /// The request's `Content-Length`, if given.
    pub declared_len: Option<u64>,
}

impl std::fmt::Debug for FinalChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinalChunk")
            .field("start", &self.start)
            .field("declared_len", &self.declared_len)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a new upload session in `repo`.
    pub async fn start_upload(&self, repo: &RepositoryName) -> StoreResult<UploadStatus> {
        let id = UploadId::random();
        let state = UploadState {
            repo: repo.clone(),
            offset: 0,
            hash: Digester::new(Algorithm::Sha256).save_state(),
            started: unix_secs(SystemTime::now()),
        };
        // Not waited on to be durable: a session lost in a crash before
        // its first chunk answers BLOB_UPLOAD_UNKNOWN and the client starts
        // again, which costs less than an fsync for every push.
        let raw = serde_json::to_vec(&state)
            .map_err(|e| StoreError::Corrupt(format!("upload state: {e}")))?;
        self.backend
            .meta_apply_relaxed(vec![MetaOp::Put(keys::upload(&id), Bytes::from(raw))])
            .await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    /// The acknowledged length of a session.
    pub async fn upload_status(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> StoreResult<UploadStatus> {
        let state = self.load_upload(repo, id).await?;
        Ok(UploadStatus {
            id: *id,
            offset: state.offset,
        })
    }

    /// Appends a chunk. `start` is where the client says the chunk begins
    /// (it must equal the current length); `declared_len` is the request's
    /// Content-Length. On any failure the session keeps its previous length.
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        start: Option<u64>,
        body: Body,
        declared_len: Option<u64>,
    ) -> StoreResult<UploadStatus> {
        let _guard = self.lock_upload(id).await;
        let mut state = self.load_upload(repo, id).await?;
        let digester = self
            .append_chunk(id, &state, start, body, declared_len)
            .await?;
        state.offset = digester.len();
        state.hash = digester.save_state();
        self.save_upload(id, &state).await?;
        Ok(UploadStatus {
            id: *id,
            offset: state.offset,
        })
    }

    /// Completes a session: appends the optional final chunk, verifies the
    /// whole content against `digest`, makes the blob readable and links it
    /// into `repo`. On a digest mismatch nothing becomes readable and the
    /// session stays open at its previous length.
    pub async fn complete_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        last: Option<FinalChunk>,
    ) -> StoreResult<BlobInfo> {
        let _guard = self.lock_upload(id).await;
        let state = self.load_upload(repo, id).await?;
        if let Some(chunk) = last {
            match self.complete_small(repo, id, &state, digest, chunk).await? {
                Ok(done) => return Ok(done),
                Err(chunk) => {
                    return self
                        .complete_staged(repo, id, &state, digest, Some(chunk))
                        .await;
                }
            }
        }
        self.complete_staged(repo, id, &state, digest, None).await
    }

    /// Completes a session that has nothing staged with a small final chunk
    /// of declared length (a monolithic push through POST then PUT), in
    /// memory: the blob, its link and the session's removal are one backend
    /// step. Gives the chunk back when the session does not qualify.
    async fn complete_small(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        state: &UploadState,
        digest: &Digest,
        chunk: FinalChunk,
    ) -> StoreResult<Result<BlobInfo, FinalChunk>> {
        let small = |len: u64| len > 0 && len <= self.config.small_blob_bytes;
        let qualifies = state.offset == 0
            && matches!(chunk.start, None | Some(0))
            && chunk.declared_len.is_some_and(small);
        let (true, Some(len)) = (qualifies, chunk.declared_len) else {
            return Ok(Err(chunk));
        };
        let data = crate::blobs::read_verified(chunk.body, digest, len).await?;
        let mut ops = Self::link_ops(repo, digest);
        ops.push(MetaOp::Delete(keys::upload(id)));
        let guard = self.blob_guard(digest).await;
        self.backend.blob_put_with_meta(digest, data, ops).await?;
        drop(guard);
        // Nothing was appended, but an earlier failed append may have left
        // a partial stage behind. The blob is stored either way; a stage
        // left by a failure here is removed with abandoned uploads.
        if let Err(e) = self.backend.stage_abort(id).await {
            tracing::warn!(upload = %id, error = %e, "could not remove an upload's stage");
        }
        Ok(Ok(BlobInfo {
            digest: digest.clone(),
            size: len,
        }))
    }

    /// Completes a session through its stage.
    async fn complete_staged(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        state: &UploadState,
        digest: &Digest,
        last: Option<FinalChunk>,
    ) -> StoreResult<BlobInfo> {
        let digester = match last {
            Some(chunk) => {
                self.append_chunk(id, state, chunk.start, chunk.body, chunk.declared_len)
                    .await?
            }
            None => restore(state)?,
        };
        let size = digester.len();
        // From "already stored" to the link: not collected in between.
        let _guard = self.blob_guard(digest).await;
        if digest.algorithm() != digester.algorithm() {
            self.commit_with_other_algorithm(id, digester, digest)
                .await?;
        } else {
            check_digester(digester, digest, None)?;
            if self.blob_stored(digest).await?.is_some() {
                self.backend.stage_abort(id).await?;
            } else if size == 0 {
                self.backend.blob_put(digest, Bytes::new()).await?;
                self.backend.stage_abort(id).await?;
            } else {
                match self.backend.stage_commit(id, size, digest).await {
                    Ok(()) => {}
                    // A retry after a crash between commit and the session's
                    // removal: the content is already in place.
                    Err(e) if e.is_not_found() && self.blob_stored(digest).await? == Some(size) => {
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mut ops = Self::link_ops(repo, digest);
        ops.push(MetaOp::Delete(keys::upload(id)));
        self.backend.meta_apply(ops).await?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size,
        })
    }

    /// Cancels a session and discards its bytes.
    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &UploadId) -> StoreResult<()> {
        let _guard = self.lock_upload(id).await;
        self.load_upload(repo, id).await?;
        self.backend.meta_delete(keys::upload(id)).await?;
        self.backend.stage_abort(id).await?;
        Ok(())
    }

    /// Removes sessions with no activity for `max_age`, and staged bytes
    /// that belong to no session (left by interrupted single-request
    /// uploads) and are as old. Returns how many were removed.
    pub async fn expire_uploads(&self, max_age: Duration) -> StoreResult<usize> {
        let now = SystemTime::now();
        let stale = |t: SystemTime| now.duration_since(t).unwrap_or_default() > max_age;
        let mut removed = 0;
        let mut live = std::collections::HashSet::new();
        let mut after = None;
        loop {
            let page = self
                .backend
                .meta_list(
                    keys::UPLOAD_PREFIX,
                    ListOptions {
                        start_after: after.clone(),
                        limit: 1000,
                        values: false,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for entry in page {
                let Ok(id) = UploadId::parse(keys::last_segment(&entry.key)) else {
                    continue;
                };
                if stale(entry.modified) {
                    let _guard = self.lock_upload(&id).await;
                    // Re-check under the lock: a chunk may have just landed.
                    match self.backend.meta_get(&entry.key).await {
                        Ok(m) if stale(m.modified) => {
                            self.backend.meta_delete(entry.key.clone()).await?;
                            self.backend.stage_abort(&id).await?;
                            removed += 1;
                        }
                        Ok(_) => {
                            live.insert(id);
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    live.insert(id);
                }
            }
        }
        for stage in self.backend.stage_list().await? {
            if !live.contains(&stage.id) && stale(stage.modified) {
                let key = keys::upload(&stage.id);
                // A session created after the listing above owns it.
                if self.backend.meta_value(&key).await?.is_none() {
                    self.backend.stage_abort(&stage.id).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Lists open sessions' ids (for garbage collection and operators).
    pub async fn open_uploads(&self) -> StoreResult<Vec<UploadId>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .backend
                .meta_list(
                    keys::UPLOAD_PREFIX,
                    ListOptions {
                        start_after: after.clone(),
                        limit: 1000,
                        values: false,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            out.extend(
                page.iter()
                    .filter_map(|e| UploadId::parse(keys::last_segment(&e.key)).ok()),
            );
        }
        Ok(out)
    }

    async fn append_chunk(
        &self,
        id: &UploadId,
        state: &UploadState,
        start: Option<u64>,
        body: Body,
        declared_len: Option<u64>,
    ) -> StoreResult<Digester> {
        if let Some(start) = start
            && start != state.offset
        {
            return Err(StoreError::UploadOffset {
                requested: start,
                current: state.offset,
            });
        }
        let (stream, hashed) = hashing(body, restore(state)?, declared_len);
        let end = self.backend.stage_append(id, state.offset, stream).await?;
        let digester = hashed
            .take()
            .ok_or_else(|| StoreError::Corrupt("hash state lost".into()))?;
        if digester.len() != end {
            return Err(StoreError::Corrupt(format!(
                "staged {end} bytes but hashed {}",
                digester.len()
            )));
        }
        if let Some(n) = declared_len {
            let got = end - state.offset;
            if got != n {
                return Err(wharf_types::VerifyError::SizeMismatch {
                    expected: n,
                    actual: got,
                }
                .into());
            }
        }
        Ok(digester)
    }

    /// Verifies staged bytes with another algorithm than the session hashed
    /// with (a chunked upload completed with a sha512 digest): commits them
    /// under their own sha256 digest, then re-reads them through the other
    /// hash into a second stage that becomes the requested blob. Rare, so
    /// simplicity wins over speed. The first copy is unlinked and left to
    /// garbage collection. On a mismatch the session is closed.
    async fn commit_with_other_algorithm(
        &self,
        id: &UploadId,
        digester: Digester,
        digest: &Digest,
    ) -> StoreResult<()> {
        let size = digester.len();
        let own = digester.finish();
        if size == 0 {
            self.backend.blob_put(&own, Bytes::new()).await?;
            // An empty chunk may have created the stage; nothing commits it.
            self.backend.stage_abort(id).await?;
        } else {
            self.backend.stage_commit(id, size, &own).await?;
        }
        self.backend.meta_delete(keys::upload(id)).await?;
        let source = self.backend.blob_read(&own, None).await?;
        let body: Body = Box::pin(futures::StreamExt::map(source, |r| {
            r.map_err(std::io::Error::other)
        }));
        let (stream, hashed) = hashing(body, Digester::new(digest.algorithm()), Some(size));
        let second = UploadId::random();
        let written = self.backend.stage_append(&second, 0, stream).await?;
        if let Err(e) = hashed.verify(digest, Some(size)) {
            self.backend.stage_abort(&second).await?;
            return Err(e);
        }
        if written == 0 {
            self.backend.blob_put(digest, Bytes::new()).await?;
            self.backend.stage_abort(&second).await?;
        } else {
            self.backend.stage_commit(&second, written, digest).await?;
        }
        Ok(())
    }

    async fn load_upload(&self, repo: &RepositoryName, id: &UploadId) -> StoreResult<UploadState> {
        let unknown = || StoreError::UploadUnknown(id.to_string());
        let raw = self
            .backend
            .meta_value(&keys::upload(id))
            .await?
            .ok_or_else(unknown)?;
        let state: UploadState = serde_json::from_slice(&raw)
            .map_err(|e| StoreError::Corrupt(format!("upload {id} state: {e}")))?;
        // An id from another repository names no upload here.
        if &state.repo != repo {
            return Err(unknown());
        }
        Ok(state)
    }

    async fn save_upload(&self, id: &UploadId, state: &UploadState) -> StoreResult<()> {
        let raw = serde_json::to_vec(state)
            .map_err(|e| StoreError::Corrupt(format!("upload state: {e}")))?;
        self.backend
            .meta_put(keys::upload(id), Bytes::from(raw))
            .await?;
        Ok(())
    }
}

fn restore(state: &UploadState) -> StoreResult<Digester> {
    Digester::restore(&state.hash)
        .map_err(|e| StoreError::Corrupt(format!("upload hash state: {e}")))
}
