//! [`S3Backend`]: the storage backend trait on an S3 bucket.
//!
//! Object layout under the configured prefix:
//!
//! - `blobs/<alg>/<hex>`: content, one object per blob;
//! - `meta/<key>`: one small object per metadata record, its value the body;
//! - `stage/<id>/state`: a staged write's segment list (JSON);
//! - `stage/<id>/seg/<offset>-<nonce>`: the staged bytes, in segments of at
//!   most `segment_size` bytes.
//!
//! See `docs/adr/0003-s3-backend.md` for why.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use wharf_storage::{
    Backend, BackendError, BackendResult, BlobMeta, ByteStream, Key, ListOptions, MetaEntry,
    MetaOp, MetaValue, StageMeta,
};
use wharf_types::{Digest, UploadId};

use crate::client::{Body, Client};
use crate::config::MIN_PART;
use crate::error::S3Error;
use crate::time::parse_iso8601;
use crate::{S3Config, xml};

/// Most keys one `ListObjectsV2` page returns.
const LIST_PAGE: usize = 1000;
/// Requests in flight at once for one listing with values, or one commit.
const FAN_OUT: usize = 8;
/// S3's limit on parts of one multipart upload.
const MAX_PARTS: usize = 10_000;

/// A [`Backend`] on an S3-compatible bucket. Any number of processes may
/// share one bucket and prefix: all state, including upload sessions and
/// staged bytes, lives in the bucket.
///
/// ```no_run
/// use wharf_storage::Store;
/// use wharf_storage_s3::{S3Backend, S3Config};
/// # fn main() -> Result<(), wharf_storage_s3::S3Error> {
/// let mut config = S3Config::new("http://127.0.0.1:3900", "garage", "registry");
/// config.access_key_id = "GK...".into();
/// config.secret_access_key = "...".into();
/// let store = Store::new(S3Backend::new(config)?);
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: Arc<Client>,
    prefix: String,
    segment_size: usize,
}

/// A staged write: segments in offset order, each `len` bytes used of an
/// object holding `size` (fewer after a rewind).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StageState {
    segments: Vec<Segment>,
    /// A multipart upload started by a commit, so an abort can clean it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload: Option<PendingUpload>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    start: u64,
    len: u64,
    size: u64,
    /// Object name below `stage/<id>/`.
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingUpload {
    key: String,
    id: String,
}

impl StageState {
    fn len(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.start + s.len)
    }

    /// Keeps the first `offset` bytes; returns the segments dropped whole.
    fn truncate(&mut self, offset: u64) -> Vec<Segment> {
        let keep = self
            .segments
            .iter()
            .take_while(|s| s.start < offset)
            .count();
        let dropped = self.segments.split_off(keep);
        if let Some(last) = self.segments.last_mut() {
            last.len = last.len.min(offset - last.start);
        }
        dropped
    }
}

/// One part of the final object: copied by the store from one segment, or
/// streamed through this process from several small ones.
enum PartPlan {
    Copy {
        name: String,
        range: Range<u64>,
    },
    Stream {
        pieces: Vec<(String, Range<u64>)>,
        len: u64,
    },
}

fn plan_parts(segments: &[Segment]) -> Vec<PartPlan> {
    let total: u64 = segments.iter().map(|s| s.len).sum();
    // Parts grow with the blob so that no blob needs more than MAX_PARTS.
    let target = MIN_PART.max(total.div_ceil(MAX_PARTS as u64 - 10));
    let mut plan = Vec::new();
    let mut pending: Vec<(String, Range<u64>)> = Vec::new();
    let mut pending_len = 0;
    for s in segments.iter().filter(|s| s.len > 0) {
        if pending.is_empty() && s.len >= target {
            plan.push(PartPlan::Copy {
                name: s.name.clone(),
                range: 0..s.len,
            });
            continue;
        }
        pending.push((s.name.clone(), 0..s.len));
        pending_len += s.len;
        if pending_len >= target {
            plan.push(PartPlan::Stream {
                pieces: std::mem::take(&mut pending),
                len: std::mem::take(&mut pending_len),
            });
        }
    }
    if !pending.is_empty() {
        plan.push(PartPlan::Stream {
            pieces: pending,
            len: pending_len,
        });
    }
    plan
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex::encode(b)
}

fn io_err(what: String, e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    BackendError::io(what, io::Error::other(e))
}

impl S3Backend {
    /// A backend on the bucket `config` names. Checks the settings (filling
    /// credentials from `AWS_*` variables) but sends no request; see
    /// [`Backend::check`].
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        let config = config.resolve()?;
        Ok(S3Backend {
            client: Arc::new(Client::new(&config)?),
            prefix: config.object_prefix(),
            segment_size: config.segment_size,
        })
    }

    /// A presigned URL that reads blob `digest` directly from the object
    /// store for `ttl`, for redirecting clients (`307`) so that bytes do not
    /// pass through the registry. The URL is only as reachable as the
    /// configured endpoint.
    pub fn presigned_blob_url(&self, digest: &Digest, ttl: Duration) -> String {
        self.client.presign_get(&self.blob_key(digest), ttl)
    }

    /// Aborts multipart uploads under this backend's prefix started more
    /// than `older_than` ago (left by a process that died while committing
    /// a blob). Returns how many were aborted. Staged writes themselves are
    /// expired by the store's upload expiry.
    pub async fn abort_stale_multipart_uploads(
        &self,
        older_than: Duration,
    ) -> Result<usize, S3Error> {
        let now = SystemTime::now();
        let mut n = 0;
        for u in self.client.list_multipart(&self.prefix).await? {
            let started = parse_iso8601(&u.initiated).unwrap_or(now);
            if now.duration_since(started).unwrap_or_default() > older_than {
                self.client.abort_multipart(&u.key, &u.upload_id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn blob_key(&self, d: &Digest) -> String {
        format!("{}blobs/{}/{}", self.prefix, d.algorithm(), d.hex())
    }

    fn blobs_prefix(&self) -> String {
        format!("{}blobs/", self.prefix)
    }

    fn meta_key(&self, k: &str) -> String {
        format!("{}meta/{k}", self.prefix)
    }

    fn stages_prefix(&self) -> String {
        format!("{}stage/", self.prefix)
    }

    fn stage_dir(&self, id: &UploadId) -> String {
        format!("{}stage/{id}/", self.prefix)
    }

    async fn load_state(&self, id: &UploadId) -> BackendResult<Option<StageState>> {
        match self
            .client
            .get_bytes(&format!("{}state", self.stage_dir(id)))
            .await
        {
            Ok((raw, _)) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| io_err(format!("stage {id}: bad state"), e)),
            Err(S3Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn save_state(&self, id: &UploadId, state: &StageState) -> BackendResult<()> {
        let raw = serde_json::to_vec(state).map_err(|e| io_err(format!("stage {id}"), e))?;
        self.client
            .put(&format!("{}state", self.stage_dir(id)), Bytes::from(raw))
            .await?;
        Ok(())
    }

    /// Every object key under `prefix`, with size and time.
    async fn list_all(&self, prefix: &str) -> BackendResult<Vec<xml::Object>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list(prefix, None, token.as_deref(), LIST_PAGE)
                .await?;
            out.extend(page.contents);
            match page.next_continuation_token {
                Some(t) if page.is_truncated => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Lists keys under `prefix` after `start_after`, at most `limit`.
    async fn list_limited(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
    ) -> BackendResult<Vec<xml::Object>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < limit {
            let want = (limit - out.len()).min(LIST_PAGE);
            let page = self
                .client
                .list(prefix, start_after.as_deref(), token.as_deref(), want)
                .await?;
            out.extend(page.contents.into_iter().take(want));
            match page.next_continuation_token {
                Some(t) if page.is_truncated => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete_all(&self, keys: Vec<String>) -> BackendResult<()> {
        futures::stream::iter(keys)
            .map(|k| async move { self.client.delete(&k).await })
            .buffer_unordered(FAN_OUT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Removes a stage: its state first (from then on it does not exist),
    /// then its segments and any multipart upload a commit left.
    async fn remove_stage(&self, id: &UploadId, state: Option<&StageState>) -> BackendResult<()> {
        let dir = self.stage_dir(id);
        self.client.delete(&format!("{dir}state")).await?;
        if let Some(u) = state.and_then(|s| s.upload.as_ref()) {
            self.client.abort_multipart(&u.key, &u.id).await?;
        }
        let keys = self
            .list_all(&dir)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        self.delete_all(keys).await
    }

    /// Reads the pieces one after the other, as one stream.
    fn concat(&self, dir: String, pieces: Vec<(String, Range<u64>)>) -> ByteStream {
        let client = self.client.clone();
        futures::stream::iter(pieces)
            .then(move |(name, range)| {
                let client = client.clone();
                let key = format!("{dir}{name}");
                async move {
                    let resp = client.get(&key, Some(range)).await?;
                    Ok::<_, BackendError>(
                        resp.bytes_stream().map(move |r| {
                            r.map_err(|e| io_err("reading a staged segment".into(), e))
                        }),
                    )
                }
            })
            .try_flatten()
            .boxed()
    }

    async fn upload_planned(
        &self,
        dir: &str,
        key: &str,
        upload_id: &str,
        number: usize,
        part: &PartPlan,
    ) -> BackendResult<String> {
        match part {
            PartPlan::Copy { name, range } => Ok(self
                .client
                .upload_part_copy(
                    key,
                    upload_id,
                    number,
                    &format!("{dir}{name}"),
                    range.clone(),
                )
                .await?),
            PartPlan::Stream { pieces, len } => {
                // The body is a stream, which the client cannot replay; retry here.
                let mut attempt = 0;
                loop {
                    let stream = self
                        .concat(dir.to_owned(), pieces.clone())
                        .map_err(io::Error::other);
                    let body = Body::Stream {
                        stream: Box::pin(stream),
                        len: *len,
                    };
                    match self.client.upload_part(key, upload_id, number, body).await {
                        Ok(etag) => return Ok(etag),
                        Err(e) if attempt < 3 && !matches!(e, S3Error::NotFound(_)) => {
                            tracing::debug!(error = %e, "retrying a part upload");
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Builds the blob object from the staged segments.
    async fn compose(&self, id: &UploadId, state: &mut StageState, key: &str) -> BackendResult<()> {
        let dir = self.stage_dir(id);
        if let [only] = state.segments.as_slice()
            && only.len == only.size
        {
            self.client
                .copy(&format!("{dir}{}", only.name), key)
                .await?;
            return Ok(());
        }
        let plan = plan_parts(&state.segments);
        if plan.len() > MAX_PARTS {
            return Err(BackendError::NotSupported(
                "blob too large for one multipart upload",
            ));
        }
        let upload_id = self.client.create_multipart(key).await?;
        state.upload = Some(PendingUpload {
            key: key.to_owned(),
            id: upload_id.clone(),
        });
        let result = async {
            self.save_state(id, state).await?;
            let parts: Vec<(usize, PartPlan, String, String, String)> = plan
                .into_iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p, dir.clone(), key.to_owned(), upload_id.clone()))
                .collect();
            let this = self.clone();
            let etags: Vec<String> = futures::stream::iter(parts)
                .map(move |(n, part, dir, key, upload_id)| {
                    let this = this.clone();
                    async move { this.upload_planned(&dir, &key, &upload_id, n, &part).await }
                })
                .buffered(FAN_OUT.min(4))
                .try_collect()
                .await?;
            match self
                .client
                .complete_multipart(key, &upload_id, &etags)
                .await
            {
                Ok(()) => Ok(()),
                // A retried completion whose first attempt succeeded.
                Err(S3Error::NotFound(_)) if self.client.head(key).await.is_ok() => Ok(()),
                Err(e) => Err(BackendError::from(e)),
            }
        }
        .await;
        if result.is_err() {
            let _ = self.client.abort_multipart(key, &upload_id).await;
        }
        result
    }
}

#[async_trait]
impl Backend for S3Backend {
    async fn blob_stat(&self, digest: &Digest) -> BackendResult<BlobMeta> {
        let head = self.client.head(&self.blob_key(digest)).await?;
        Ok(BlobMeta {
            digest: digest.clone(),
            size: head.size,
            modified: head.modified,
        })
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<ByteStream> {
        let key = self.blob_key(digest);
        if let Some(r) = &range
            && r.start >= r.end
        {
            self.client.head(&key).await?;
            return Ok(futures::stream::empty().boxed());
        }
        let resp = self.client.get(&key, range).await?;
        let what = digest.to_string();
        Ok(resp
            .bytes_stream()
            .map(move |r| r.map_err(|e| io_err(format!("reading {what}"), e)))
            .boxed())
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> BackendResult<()> {
        let key = self.blob_key(digest);
        // Content is immutable: never overwrite (a concurrent writer of the
        // same digest writes the same bytes).
        match self.client.head(&key).await {
            Ok(_) => return Ok(()),
            Err(S3Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.client.put(&key, data).await?;
        Ok(())
    }

    async fn blob_delete(&self, digest: &Digest) -> BackendResult<()> {
        self.client.delete(&self.blob_key(digest)).await?;
        Ok(())
    }

    async fn blob_list(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = self.blobs_prefix();
        let mut out = Vec::new();
        let mut after = start_after.map(|d| self.blob_key(d));
        // Objects that are not blobs (none are written, but a bucket is
        // shared ground) are skipped, so page until the limit is reached.
        loop {
            let page = self
                .list_limited(&prefix, after.clone(), limit - out.len())
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let full = page.len() == limit - out.len();
            for o in page {
                let Some((alg, hex)) = o.key[prefix.len()..].split_once('/') else {
                    continue;
                };
                let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) else {
                    continue;
                };
                out.push(BlobMeta {
                    digest,
                    size: o.size,
                    modified: parse_iso8601(&o.last_modified).unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
            if !full || out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn stage_append(
        &self,
        id: &UploadId,
        offset: u64,
        mut data: ByteStream,
    ) -> BackendResult<u64> {
        let mut state = self.load_state(id).await?.unwrap_or_default();
        let staged = state.len();
        if staged < offset {
            return Err(BackendError::OffsetMismatch {
                id: *id,
                offset,
                actual: staged,
            });
        }
        let dropped = state.truncate(offset);
        let dir = self.stage_dir(id);
        let mut written = offset;
        let mut buf = BytesMut::new();
        // One segment is uploaded while the next one is read from the
        // client, so memory per request is at most two segments, whatever
        // the chunk size.
        let mut uploading: Option<tokio::task::JoinHandle<BackendResult<()>>> = None;
        let finish = |h: Option<tokio::task::JoinHandle<BackendResult<()>>>| async move {
            match h {
                Some(h) => h
                    .await
                    .map_err(|e| io_err("uploading a segment".into(), e))?,
                None => Ok(()),
            }
        };
        loop {
            let next = data.next().await;
            let end = match next {
                Some(Ok(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    false
                }
                Some(Err(e)) => {
                    // Segments written so far are not in the state: the
                    // stage keeps what it had, and they go with it.
                    let _ = finish(uploading.take()).await;
                    return Err(e);
                }
                None => true,
            };
            while buf.len() >= self.segment_size || (end && !buf.is_empty()) {
                let piece = buf.split_to(buf.len().min(self.segment_size)).freeze();
                let name = format!("seg/{written:020}-{}", random_hex());
                let len = piece.len() as u64;
                finish(uploading.take()).await?;
                let client = self.client.clone();
                let key = format!("{dir}{name}");
                uploading = Some(tokio::spawn(async move {
                    client.put(&key, piece).await.map_err(BackendError::from)
                }));
                state.segments.push(Segment {
                    start: written,
                    len,
                    size: len,
                    name,
                });
                written += len;
            }
            if end {
                break;
            }
        }
        finish(uploading.take()).await?;
        // The state is written once every segment is in place: a stage
        // never names bytes that are not there. (An empty append creates
        // the stage, or records a rewind.)
        self.save_state(id, &state).await?;
        let garbage = dropped
            .into_iter()
            .map(|s| format!("{dir}{}", s.name))
            .collect();
        self.delete_all(garbage).await?;
        Ok(written)
    }

    async fn stage_commit(&self, id: &UploadId, len: u64, digest: &Digest) -> BackendResult<()> {
        let mut state = self
            .load_state(id)
            .await?
            .ok_or_else(|| BackendError::NotFound(format!("stage {id}")))?;
        let staged = state.len();
        if staged < len {
            return Err(BackendError::OffsetMismatch {
                id: *id,
                offset: len,
                actual: staged,
            });
        }
        state.truncate(len);
        let key = self.blob_key(digest);
        match self.client.head(&key).await {
            Ok(_) => {}
            Err(S3Error::NotFound(_)) if len == 0 => self.client.put(&key, Bytes::new()).await?,
            Err(S3Error::NotFound(_)) => self.compose(id, &mut state, &key).await?,
            Err(e) => return Err(e.into()),
        }
        state.upload = None;
        self.remove_stage(id, Some(&state)).await
    }

    async fn stage_abort(&self, id: &UploadId) -> BackendResult<()> {
        let state = self.load_state(id).await?;
        self.remove_stage(id, state.as_ref()).await
    }

    async fn stage_list(&self) -> BackendResult<Vec<StageMeta>> {
        let prefix = self.stages_prefix();
        let mut stages: std::collections::BTreeMap<UploadId, (bool, SystemTime)> =
            std::collections::BTreeMap::new();
        for o in self.list_all(&prefix).await? {
            let rest = &o.key[prefix.len()..];
            let Some((id, name)) = rest.split_once('/') else {
                continue;
            };
            let Ok(id) = UploadId::parse(id) else {
                continue;
            };
            let t = parse_iso8601(&o.last_modified).unwrap_or(SystemTime::UNIX_EPOCH);
            let e = stages.entry(id).or_insert((false, t));
            e.0 |= name == "state";
            e.1 = e.1.max(t);
        }
        futures::stream::iter(stages)
            .map(|(id, (has_state, modified))| async move {
                // Segments without a state (a removal that stopped half-way)
                // are listed as empty, so expiry removes them.
                let len = if has_state {
                    self.load_state(&id).await?.map(|s| s.len())
                } else {
                    Some(0)
                };
                Ok::<_, BackendError>(len.map(|len| StageMeta { id, len, modified }))
            })
            .buffered(FAN_OUT)
            .try_filter_map(|s| async move { Ok(s) })
            .try_collect()
            .await
    }

    async fn meta_get(&self, key: &Key) -> BackendResult<MetaValue> {
        let object = self.meta_key(key.as_str());
        // The listing carries the write time to the millisecond (GET only
        // to the second), and listings are where garbage collection reads
        // times from: take it from there, in parallel with the read.
        let (got, listed) = tokio::join!(
            self.client.get_bytes(&object),
            self.client.list(&object, None, None, 1)
        );
        let (value, header_time) = match got {
            Ok(v) => v,
            Err(S3Error::NotFound(_)) => return Err(BackendError::NotFound(key.to_string())),
            Err(e) => return Err(e.into()),
        };
        let listed_time = listed
            .ok()
            .and_then(|l| l.contents.into_iter().next())
            .filter(|o| o.key == object)
            .and_then(|o| parse_iso8601(&o.last_modified));
        Ok(MetaValue {
            value,
            modified: listed_time.or(header_time).unwrap_or_else(SystemTime::now),
        })
    }

    async fn meta_apply(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        // In order, one request at a time: a failure part-way leaves a
        // prefix of the batch applied, which is what the store relies on.
        for op in ops {
            match op {
                MetaOp::Put(k, v) => self.client.put(&self.meta_key(k.as_str()), v).await?,
                MetaOp::PutIfAbsent(k, v) => {
                    let object = self.meta_key(k.as_str());
                    match self.client.head(&object).await {
                        Ok(_) => {}
                        Err(S3Error::NotFound(_)) => self.client.put(&object, v).await?,
                        Err(e) => return Err(e.into()),
                    }
                }
                MetaOp::Delete(k) => self.client.delete(&self.meta_key(k.as_str())).await?,
            }
        }
        Ok(())
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions) -> BackendResult<Vec<MetaEntry>> {
        if options.limit == 0 {
            return Ok(Vec::new());
        }
        let object_prefix = self.meta_key(prefix);
        let start_after = options
            .start_after
            .as_ref()
            .map(|k| self.meta_key(k.as_str()))
            .filter(|s| *s >= object_prefix);
        let objects = self
            .list_limited(&object_prefix, start_after, options.limit)
            .await?;
        let meta_root = self.meta_key("");
        let entries = objects.into_iter().filter_map(|o| {
            let key = Key::parse(&o.key[meta_root.len()..]).ok()?;
            let modified = parse_iso8601(&o.last_modified).unwrap_or(SystemTime::UNIX_EPOCH);
            Some((o.key, key, modified))
        });
        if !options.values {
            return Ok(entries
                .map(|(_, key, modified)| MetaEntry {
                    key,
                    value: None,
                    modified,
                })
                .collect());
        }
        futures::stream::iter(entries)
            .map(|(object, key, modified)| async move {
                match self.client.get_bytes(&object).await {
                    Ok((value, _)) => Ok(Some(MetaEntry {
                        key,
                        value: Some(value),
                        modified,
                    })),
                    // Deleted since it was listed.
                    Err(S3Error::NotFound(_)) => Ok(None),
                    Err(e) => Err(BackendError::from(e)),
                }
            })
            .buffered(FAN_OUT)
            .try_filter_map(|e| async move { Ok(e) })
            .try_collect()
            .await
    }

    async fn blob_url(&self, digest: &Digest, ttl: Duration) -> BackendResult<Option<String>> {
        Ok(Some(self.presigned_blob_url(digest, ttl)))
    }

    async fn check(&self) -> BackendResult<()> {
        let probe = format!("{}check/{}", self.prefix, random_hex());
        self.client.put(&probe, Bytes::from_static(b"ok")).await?;
        self.client.delete(&probe).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: u64, len: u64) -> Segment {
        Segment {
            start,
            len,
            size: len,
            name: format!("s{start}"),
        }
    }

    #[test]
    fn truncating_keeps_a_prefix() {
        let mut s = StageState {
            segments: vec![seg(0, 10), seg(10, 10), seg(20, 5)],
            upload: None,
        };
        let dropped = s.truncate(15);
        assert_eq!(dropped.len(), 1);
        assert_eq!(s.len(), 15);
        assert_eq!(s.segments[1].len, 5);
        assert!(s.truncate(15).is_empty());
        assert_eq!(s.truncate(0).len(), 2);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn parts_respect_the_minimum_size() {
        let mib = 1 << 20;
        // Small chunks are merged; a big segment after a small tail is
        // streamed with it; only the last part may be small.
        let segments = vec![
            seg(0, 8 * mib),
            seg(8 * mib, mib),
            seg(9 * mib, 3 * mib),
            seg(12 * mib, 8 * mib),
            seg(20 * mib, 8 * mib),
            seg(28 * mib, 100),
        ];
        let plan = plan_parts(&segments);
        let sizes: Vec<u64> = plan
            .iter()
            .map(|p| match p {
                PartPlan::Copy { range, .. } => range.end - range.start,
                PartPlan::Stream { len, .. } => *len,
            })
            .collect();
        assert_eq!(sizes.iter().sum::<u64>(), 28 * mib + 100);
        for s in &sizes[..sizes.len() - 1] {
            assert!(*s >= MIN_PART, "{sizes:?}");
        }
        assert!(matches!(plan[0], PartPlan::Copy { .. }));
        assert!(matches!(plan[2], PartPlan::Copy { .. }));
    }
}
