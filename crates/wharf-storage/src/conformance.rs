//! The shared backend conformance suite (feature `conformance`).
//!
//! Every [`Backend`] runs the same cases, the built-in ones and any a user
//! writes: one `pub async fn` per case below, each documented with what it
//! proves, and the [`conformance_tests!`](crate::conformance_tests) macro
//! that turns every case into a `#[tokio::test]` for one backend. The macro
//! holds the one list of cases, so no backend can skip one.
//!
//! The cases check observable behaviour: the backend-level cases call the
//! [`Backend`] trait directly; the others go through [`Store`], the registry
//! semantics every backend must support (uploads that survive restarts,
//! links that keep repositories apart, online garbage collection, ...).
//! The last case is a model-based property test: random sequences of store
//! operations must give the same results as a few `BTreeMap`s.
//!
//! # Running the suite against your backend
//!
//! Implement [`Fixture`] for a type that owns one fresh, empty storage
//! location (a temporary directory, a new bucket or key prefix, ...), then
//! invoke the macro in an integration test with an expression that builds a
//! fixture. The expression is evaluated once per case, inside the async
//! test, so it may `.await`, and it may `return` to skip the case (for
//! example when the service it needs is not configured).
//!
//! Dev-dependencies: `wharf-storage` with the `conformance` feature,
//! `tokio` with the `macros` and `rt-multi-thread` features (the generated
//! tests use `#[tokio::test(flavor = "multi_thread")]`), and `async-trait`.
//!
//! ```
//! // tests/conformance.rs
//! use std::sync::Arc;
//!
//! use wharf_storage::conformance::Fixture;
//! use wharf_storage::{Backend, MemoryBackend};
//!
//! /// One storage location; here in memory, for yours perhaps a bucket and
//! /// a unique prefix created in `new`.
//! struct MyFixture {
//!     backend: MemoryBackend,
//! }
//!
//! #[async_trait::async_trait]
//! impl Fixture for MyFixture {
//!     async fn open(&self) -> Arc<dyn Backend> {
//!         // A real backend would connect to the storage location here.
//!         Arc::new(self.backend.clone())
//!     }
//! }
//!
//! // One `#[tokio::test]` per case, e.g. `backend_blobs`, `gc`, `model`.
//! wharf_storage::conformance_tests!(MyFixture { backend: MemoryBackend::new() });
//!
//! // Skipping when a service is not available:
//! // wharf_storage::conformance_tests!(match S3Fixture::from_env().await {
//! //     Some(fixture) => fixture,
//! //     None => return,
//! // });
//! # fn main() {}
//! ```
//!
//! # What the suite assumes of a backend
//!
//! - A fresh fixture's storage is empty (the catalog and garbage collection
//!   cases count everything they find).
//! - Modification times (`BlobMeta::modified`, `MetaEntry::modified`,
//!   `StageMeta::modified`) are never later than the write, are at most a
//!   second coarser than the clock, and come from a clock close to the
//!   test's (garbage collection compares them with `SystemTime::now()`).
//! - Errors of an input stream given to `stage_append` are returned as
//!   they are (the store tells a failed client from a failed disk by them).
//!
//! Each case takes at most a few seconds; the whole suite runs in well
//! under half a minute per backend on two cores.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{Value, json};
use wharf_types::{
    Algorithm, Descriptor, Digest, Manifest, MediaType, Reference, RepositoryName, Tag, UploadId,
    VerifyError, media_type,
};

use crate::{
    Backend, BackendError, BackendResult, BlobInfo, Body, ByteRange, ByteStream, FinalChunk,
    GcOptions, GcReport, Key, ListOptions, MemoryBackend, MetaOp, PushedManifest, Store,
    StoreConfig, StoreError, StoreResult, UploadStatus,
};

/// Generates one `#[tokio::test]` per conformance case for a backend.
///
/// The argument is an expression that builds a [`Fixture`]
/// (`wharf_storage::conformance::Fixture`); it is evaluated at the start
/// of every case, inside the async test. See the
/// [`conformance`](crate::conformance) module for an example.
///
/// Adding a case means adding its function to the list here, so every
/// backend runs it.
///
/// Attributes written before the expression and a `;` are put on every
/// generated test, e.g. `conformance_tests!(#[ignore = "needs an S3
/// server"]; fixture)` for a backend whose service only CI starts.
#[macro_export]
macro_rules! conformance_tests {
    (@cases [$($meta:tt)*] ($fixture:expr)) => {};
    (@cases [$($meta:tt)*] ($fixture:expr) $case:ident $($rest:ident)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($meta)*
        async fn $case() {
            let fixture = $fixture;
            $crate::conformance::run_case(
                stringify!($case),
                $crate::conformance::$case(&fixture),
            )
            .await;
        }
        $crate::conformance_tests!(@cases [$($meta)*] ($fixture) $($rest)*);
    };
    (@cases [$($meta:tt)*] @all ($fixture:expr)) => {
        $crate::conformance_tests!(@cases [$($meta)*] ($fixture)
            backend_blobs
            backend_blob_put_with_meta
            backend_staged_writes
            backend_metadata
            blobs
            concurrent_blob_pushes
            chunked_uploads
            restart
            upload_expiry
            manifests
            tags
            concurrent_tag_moves
            referrers
            catalog
            gc
            gc_push_during_mark
            gc_concurrent_with_pushes
            scrub
            model
        );
    };
    ($(#[$meta:meta])+ ; $fixture:expr $(,)?) => {
        $crate::conformance_tests!(@cases [$(#[$meta])+] @all ($fixture));
    };
    ($fixture:expr $(,)?) => {
        $crate::conformance_tests!(@cases [] @all ($fixture));
    };
}

/// Longest a case may take before it is declared hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs one case with a timeout, so a deadlocked backend fails the case
/// instead of hanging the test run. Used by [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
pub async fn run_case(name: &str, case: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
        panic!(
            "conformance case `{name}` did not finish within {CASE_TIMEOUT:?} (a deadlock or a hung backend call?)"
        );
    }
}

// ---------------------------------------------------------------------------
// Fixtures

/// Storage for one run of a conformance case.
///
/// A fixture owns one storage location, empty when the fixture is created.
/// Cases call [`Fixture::open`] once, and again after dropping every handle
/// from the previous call to simulate a process restart.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// Opens a backend over this fixture's storage. Called again after
    /// every [`Store`] and backend handle from the previous call was
    /// dropped (backends may hold an exclusive lock, as the filesystem
    /// backend does); what was written before must be there.
    async fn open(&self) -> Arc<dyn Backend>;
}

/// A fixture for [`MemoryBackend`]: hands out handles to one backend.
#[derive(Debug, Clone, Default)]
pub struct MemoryFixture {
    backend: MemoryBackend,
}

impl MemoryFixture {
    /// A fixture over a new, empty memory backend.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    async fn open(&self) -> Arc<dyn Backend> {
        Arc::new(self.backend.clone())
    }
}

/// A fixture for [`FsBackend`](crate::FsBackend): a temporary directory,
/// removed when the fixture is dropped.
#[cfg(feature = "fs")]
#[derive(Debug)]
pub struct FsFixture {
    dir: tempfile::TempDir,
    options: crate::FsOptions,
}

#[cfg(feature = "fs")]
impl FsFixture {
    /// A fixture over a new temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wharf-conformance-")
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temporary directory for the fs fixture: {e}"));
        FsFixture {
            dir,
            options: crate::FsOptions::default(),
        }
    }

    /// A fixture over a new temporary directory, opened with `options`.
    pub fn with_options(options: crate::FsOptions) -> Self {
        FsFixture {
            options,
            ..Self::new()
        }
    }

    /// The data directory.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

#[cfg(feature = "fs")]
impl Default for FsFixture {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "fs")]
#[async_trait]
impl Fixture for FsFixture {
    async fn open(&self) -> Arc<dyn Backend> {
        match crate::FsBackend::open_with(self.dir.path(), self.options.clone()) {
            Ok(backend) => Arc::new(backend),
            Err(e) => panic!("open FsBackend at {}: {e}", self.dir.path().display()),
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// Tolerance for modification times compared with the test's clock.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

async fn open_store(fixture: &impl Fixture) -> Store {
    Store::with_config(fixture.open().await, StoreConfig::default())
}

/// Drops the store (the only holder of its backend) and opens a new one.
async fn reopen(fixture: &impl Fixture, store: Store) -> Store {
    drop(store);
    open_store(fixture).await
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).unwrap_or_else(|e| panic!("repository name {name:?}: {e}"))
}

fn tag(t: &str) -> Tag {
    Tag::parse(t).unwrap_or_else(|e| panic!("tag {t:?}: {e}"))
}

fn key(k: &str) -> Key {
    Key::parse(k).unwrap_or_else(|e| panic!("key {k:?}: {e}"))
}

fn sha256(data: &[u8]) -> Digest {
    Digest::sha256(data)
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn len_of(data: &[u8]) -> u64 {
    data.len() as u64
}

/// A request body of one chunk.
fn body(data: &Bytes) -> Body {
    crate::body_from_bytes(data.clone())
}

/// A request body of `pieces` chunks.
fn chunked(data: &Bytes, pieces: usize) -> Body {
    let step = data.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<Result<Bytes, io::Error>> = (0..data.len())
        .step_by(step)
        .map(|at| Ok(data.slice(at..(at + step).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// A request body that sends `prefix` (in two chunks) and then fails, as a
/// client that disconnects mid-request.
fn failing_body(prefix: &Bytes) -> Body {
    let mid = prefix.len() / 2;
    Box::pin(futures::stream::iter(vec![
        Ok(prefix.slice(..mid)),
        Ok(prefix.slice(mid..)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]))
}

/// A backend input stream of the given chunks.
fn stream_of(chunks: &[Bytes]) -> ByteStream {
    let items: Vec<BackendResult<Bytes>> = chunks.iter().cloned().map(Ok).collect();
    Box::pin(futures::stream::iter(items))
}

/// A backend input stream that yields `prefix` and then fails.
fn failing_stream(prefix: &Bytes) -> ByteStream {
    Box::pin(futures::stream::iter(vec![
        Ok(prefix.clone()),
        Err(BackendError::Input(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        ))),
    ]))
}

async fn collect(mut stream: ByteStream, what: &str) -> Bytes {
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => panic!("{what}: the stream failed: {e}"),
        }
    }
    out.freeze()
}

#[track_caller]
fn ok<T>(result: StoreResult<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e} ({e:?})"),
    }
}

#[track_caller]
fn err<T: Debug>(result: StoreResult<T>, what: &str) -> StoreError {
    match result {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

#[track_caller]
fn bok<T>(result: BackendResult<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected backend error: {e} ({e:?})"),
    }
}

#[track_caller]
fn berr<T>(result: BackendResult<T>, what: &str) -> BackendError {
    match result {
        Ok(_) => panic!("{what}: expected a backend error, got Ok"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_blob_unknown<T: Debug>(result: StoreResult<T>, digest: &Digest, what: &str) {
    match err(result, what) {
        StoreError::BlobUnknown { digest: d, .. } if &d == digest => {}
        e => panic!("{what}: expected BlobUnknown for {digest}, got {e} ({e:?})"),
    }
}

#[track_caller]
fn assert_manifest_unknown<T: Debug>(result: StoreResult<T>, what: &str) {
    match err(result, what) {
        StoreError::ManifestUnknown { .. } => {}
        e => panic!("{what}: expected ManifestUnknown, got {e} ({e:?})"),
    }
}

#[track_caller]
fn assert_upload_unknown<T: Debug>(result: StoreResult<T>, what: &str) {
    match err(result, what) {
        StoreError::UploadUnknown(_) => {}
        e => panic!("{what}: expected UploadUnknown, got {e} ({e:?})"),
    }
}

#[track_caller]
fn assert_not_found<T>(result: BackendResult<T>, what: &str) {
    let e = berr(result, what);
    assert!(
        e.is_not_found(),
        "{what}: expected NotFound, got {e} ({e:?})"
    );
}

#[track_caller]
fn assert_recent(t: SystemTime, before: SystemTime, after: SystemTime, what: &str) {
    assert!(
        t + CLOCK_SLACK >= before && t <= after + CLOCK_SLACK,
        "{what}: modification time {t:?} is not between {before:?} and {after:?} (with {CLOCK_SLACK:?} slack)"
    );
}

/// Pushes a blob in one request and checks the answer.
async fn push_blob(store: &Store, r: &RepositoryName, data: &Bytes) -> Digest {
    let d = sha256(data);
    let info = ok(
        store
            .put_blob(r, &d, chunked(data, 3), Some(len_of(data)))
            .await,
        &format!("put blob {d} into {r}"),
    );
    assert_eq!(
        info,
        BlobInfo {
            digest: d.clone(),
            size: len_of(data)
        },
        "put_blob answer"
    );
    d
}

/// Reads a blob (or a range of it) through a repository.
async fn read_blob(
    store: &Store,
    r: &RepositoryName,
    d: &Digest,
    range: Option<ByteRange>,
) -> Bytes {
    let what = format!("read blob {d} from {r} (range {range:?})");
    let reader = ok(store.read_blob(r, d, range).await, &what);
    collect(reader.stream, &what).await
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

fn manifest_descriptor(m: &Manifest) -> Value {
    json!({ "mediaType": m.media_type(), "digest": m.digest(), "size": m.size() })
}

fn parse_manifest(raw: Vec<u8>) -> Manifest {
    let text = String::from_utf8_lossy(&raw).into_owned();
    Manifest::parse(Bytes::from(raw), None)
        .unwrap_or_else(|e| panic!("test manifest is invalid: {e}: {text}"))
}

/// Merges the fields of `extra` (an object) into `doc`.
fn merge(mut doc: Value, extra: Value) -> Value {
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    doc
}

/// An OCI image manifest; `extra` fields are added at the top level.
fn image_manifest(config: &Bytes, layers: &[&Bytes], extra: Value) -> Manifest {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_IMAGE_MANIFEST,
        "config": descriptor(media_type::OCI_IMAGE_CONFIG, config),
        "layers": layers
            .iter()
            .map(|l| descriptor(media_type::OCI_LAYER_TAR_GZIP, l))
            .collect::<Vec<_>>(),
    });
    parse_manifest(serde_json::to_vec(&merge(doc, extra)).unwrap_or_default())
}

/// An OCI image index of `children`.
fn index_manifest(children: &[&Manifest], extra: Value) -> Manifest {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_IMAGE_INDEX,
        "manifests": children.iter().map(|m| manifest_descriptor(m)).collect::<Vec<_>>(),
    });
    parse_manifest(serde_json::to_vec(&merge(doc, extra)).unwrap_or_default())
}

/// An image: its blobs and its manifest.
#[derive(Debug, Clone)]
struct Image {
    config: Bytes,
    layers: Vec<Bytes>,
    manifest: Manifest,
}

impl Image {
    fn new(config: Bytes, layers: Vec<Bytes>, extra: Value) -> Self {
        let manifest = image_manifest(&config, &layers.iter().collect::<Vec<_>>(), extra);
        Image {
            config,
            layers,
            manifest,
        }
    }

    /// A small image whose content is unique to `seed`.
    fn unique(seed: u64) -> Self {
        Image::new(
            Bytes::from(format!("{{\"config\":{seed}}}")),
            vec![pattern(1000 + (seed % 977) as usize, seed)],
            json!({}),
        )
    }

    fn blobs(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    fn digest(&self) -> &Digest {
        self.manifest.digest()
    }

    /// Pushes the blobs, then the manifest by tag or (without one) by digest.
    async fn push(&self, store: &Store, r: &RepositoryName, t: Option<&Tag>) -> PushedManifest {
        for b in self.blobs() {
            push_blob(store, r, b).await;
        }
        let reference = match t {
            Some(t) => Reference::Tag(t.clone()),
            None => Reference::Digest(self.digest().clone()),
        };
        ok(
            store.put_manifest(r, &reference, &self.manifest).await,
            &format!("push manifest {reference} to {r}"),
        )
    }

    /// Pulls the image fully and checks every byte.
    async fn verify(&self, store: &Store, r: &RepositoryName, reference: &Reference) {
        let what = format!("pull {r}:{reference}");
        let m = ok(store.get_manifest(r, reference).await, &what);
        assert_eq!(&m.info.digest, self.digest(), "{what}: digest");
        assert_eq!(&m.bytes, self.manifest.raw(), "{what}: manifest bytes");
        for b in self.blobs() {
            let d = sha256(b);
            assert_eq!(&read_blob(store, r, &d, None).await, b, "{what}: blob {d}");
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Backend level

/// Backend level, blobs: `blob_put`, `blob_stat` (size, digest, a current
/// modification time), `blob_read` whole and by ranges (including ranges
/// that cross read-chunk boundaries of a 700 kB blob), empty blobs, sha512
/// digests, that writing an existing blob leaves it unchanged, `blob_list`
/// in digest order with `start_after` (stored or not) and `limit`, and that
/// `blob_delete` is idempotent and makes the blob `NotFound`.
pub async fn backend_blobs(fixture: &impl Fixture) {
    let b = fixture.open().await;
    let big = pattern(700_001, 1);
    let small = Bytes::from_static(b"a small blob");
    let empty = Bytes::new();
    let long = Bytes::from_static(b"a blob stored under a sha512 digest");
    let blobs = [
        (sha256(&big), big.clone()),
        (sha256(&small), small.clone()),
        (sha256(&empty), empty.clone()),
        (Digest::compute(Algorithm::Sha512, &long), long.clone()),
    ];
    let d_big = &blobs[0].0;
    let d_small = &blobs[1].0;

    assert_not_found(b.blob_stat(d_big).await, "blob_stat before blob_put");
    assert_not_found(b.blob_read(d_big, None).await, "blob_read before blob_put");

    let before = SystemTime::now();
    for (d, data) in &blobs {
        bok(b.blob_put(d, data.clone()).await, &format!("blob_put {d}"));
    }
    let after = SystemTime::now();
    for (d, data) in &blobs {
        let meta = bok(b.blob_stat(d).await, &format!("blob_stat {d}"));
        assert_eq!(&meta.digest, d, "blob_stat digest");
        assert_eq!(meta.size, len_of(data), "blob_stat size of {d}");
        assert_recent(meta.modified, before, after, &format!("blob_stat {d}"));
        let read = collect(bok(b.blob_read(d, None).await, "blob_read"), "blob_read").await;
        assert_eq!(&read, data, "blob_read of {d} returns the bytes written");
    }

    // Writing an existing blob succeeds and changes nothing.
    bok(
        b.blob_put(d_small, Bytes::from_static(b"other bytes"))
            .await,
        "blob_put of an existing blob",
    );
    let read = collect(
        bok(b.blob_read(d_small, None).await, "blob_read"),
        "blob_read",
    )
    .await;
    assert_eq!(
        read, small,
        "blob_put of an existing blob must not change it"
    );

    let size = big.len() as u64;
    let ranges: [Range<u64>; 9] = [
        0..1,
        1..2,
        100..200,
        65_530..65_540,
        262_000..263_000,
        524_287..524_289,
        1..size,
        size - 2..size,
        0..size,
    ];
    for r in ranges {
        let what = format!("blob_read range {r:?}");
        let read = collect(bok(b.blob_read(d_big, Some(r.clone())).await, &what), &what).await;
        assert!(
            read == big.slice(r.start as usize..r.end as usize),
            "{what}: wrong bytes ({} bytes returned)",
            read.len()
        );
    }
    let read = collect(
        bok(b.blob_read(d_small, Some(2..7)).await, "small range"),
        "small range",
    )
    .await;
    assert_eq!(read, small.slice(2..7), "blob_read range of a small blob");

    // Listing: digest order (sha256 before sha512), cursor and limit.
    let mut all: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    all.sort();
    let listed = bok(b.blob_list(None, 100).await, "blob_list");
    assert_eq!(
        listed.iter().map(|m| m.digest.clone()).collect::<Vec<_>>(),
        all,
        "blob_list lists every blob in digest order"
    );
    for m in &listed {
        let (_, data) = blobs
            .iter()
            .find(|(d, _)| d == &m.digest)
            .unwrap_or_else(|| panic!("blob_list returned unknown {}", m.digest));
        assert_eq!(m.size, len_of(data), "blob_list size of {}", m.digest);
        assert_recent(m.modified, before, after, "blob_list modified");
    }
    let page = |v: Vec<crate::BlobMeta>| v.into_iter().map(|m| m.digest).collect::<Vec<_>>();
    assert_eq!(
        page(bok(b.blob_list(None, 2).await, "limit 2")),
        all[..2],
        "blob_list limit"
    );
    assert!(
        bok(b.blob_list(None, 0).await, "limit 0").is_empty(),
        "blob_list limit 0"
    );
    assert_eq!(
        page(bok(b.blob_list(Some(&all[1]), 100).await, "after 2nd")),
        all[2..],
        "blob_list start_after"
    );
    assert!(
        bok(b.blob_list(Some(&all[3]), 100).await, "after last").is_empty(),
        "blob_list after the last blob"
    );
    let mut paged = Vec::new();
    let mut cursor: Option<Digest> = None;
    loop {
        let p = page(bok(b.blob_list(cursor.as_ref(), 1).await, "paging"));
        assert!(p.len() <= 1, "blob_list returned more than the limit");
        let Some(last) = p.last().cloned() else { break };
        paged.push(last.clone());
        cursor = Some(last);
    }
    assert_eq!(paged, all, "paging through blob_list one at a time");
    for probe in ["sha256:0", "sha256:8", "sha256:f", "sha512:0", "sha512:f"] {
        let alg = if probe.starts_with("sha512") { 128 } else { 64 };
        let hex = probe.rsplit(':').next().unwrap_or("0").repeat(alg);
        let cursor_digest = Digest::parse(&format!("{}:{hex}", &probe[..6]))
            .unwrap_or_else(|e| panic!("cursor digest: {e}"));
        let expected: Vec<Digest> = all
            .iter()
            .filter(|d| **d > cursor_digest)
            .cloned()
            .collect();
        assert_eq!(
            page(bok(b.blob_list(Some(&cursor_digest), 100).await, "cursor")),
            expected,
            "blob_list after {cursor_digest}, which is not stored"
        );
    }

    // Deleting is idempotent and complete.
    bok(b.blob_delete(d_small).await, "blob_delete");
    bok(b.blob_delete(d_small).await, "blob_delete again");
    bok(
        b.blob_delete(&sha256(b"never stored")).await,
        "blob_delete of a blob never stored",
    );
    assert_not_found(b.blob_stat(d_small).await, "blob_stat after blob_delete");
    assert_not_found(
        b.blob_read(d_small, None).await,
        "blob_read after blob_delete",
    );
    let listed = page(bok(b.blob_list(None, 100).await, "blob_list after delete"));
    assert!(
        !listed.contains(d_small),
        "blob_list still lists a deleted blob"
    );
    assert_eq!(listed.len(), 3, "blob_list after delete");
    bok(b.check().await, "check");
}

/// Backend level, `blob_put_with_meta`: once it returns, the blob is
/// readable (with its size and a current modification time) and every
/// record of the batch is present, the operations applied in order; for
/// blobs of a few bytes, 300 kB, 1.5 MiB (the filesystem backend keeps the
/// first two in its database, the last as a file) and none. Writing an
/// existing blob this way leaves its bytes unchanged and still applies the
/// records; an empty batch works; concurrent calls for one digest all
/// succeed, and every blob is listed once.
pub async fn backend_blob_put_with_meta(fixture: &impl Fixture) {
    let b = fixture.open().await;
    let get = |k: &str| {
        let b = b.clone();
        let k = key(k);
        async move {
            match b.meta_get(&k).await {
                Ok(v) => Some(v.value),
                Err(e) if e.is_not_found() => None,
                Err(e) => panic!("meta_get {k}: {e}"),
            }
        }
    };
    let text = |s: &'static str| Bytes::from_static(s.as_bytes());
    bok(
        b.meta_apply(vec![
            MetaOp::Put(key("pm/old"), text("old")),
            MetaOp::Put(key("pm/keep"), text("kept")),
        ])
        .await,
        "meta_apply",
    );
    let blobs = [
        pattern(12, 40),
        pattern(300_000, 41),
        pattern(1_500_000, 42),
        Bytes::new(),
    ];
    for (i, data) in blobs.iter().enumerate() {
        let d = sha256(data);
        let what = format!("blob_put_with_meta of {} bytes", data.len());
        let before = SystemTime::now();
        bok(
            b.blob_put_with_meta(
                &d,
                data.clone(),
                vec![
                    MetaOp::Put(key(&format!("pm/{i}/a")), Bytes::from(d.to_string())),
                    MetaOp::PutIfAbsent(key("pm/keep"), text("replaced")),
                    MetaOp::Put(key(&format!("pm/{i}/gone")), text("x")),
                    MetaOp::Delete(key(&format!("pm/{i}/gone"))),
                    MetaOp::Delete(key("pm/old")),
                ],
            )
            .await,
            &what,
        );
        let after = SystemTime::now();
        let meta = bok(b.blob_stat(&d).await, &what);
        assert_eq!(meta.size, len_of(data), "{what}: blob_stat size");
        assert_recent(meta.modified, before, after, &what);
        let read = collect(bok(b.blob_read(&d, None).await, &what), &what).await;
        assert!(read == *data, "{what}: the blob reads back");
        assert_eq!(
            get(&format!("pm/{i}/a")).await.as_deref(),
            Some(d.to_string().as_bytes()),
            "{what}: Put applied"
        );
        assert_eq!(
            get("pm/keep").await.as_deref(),
            Some(&b"kept"[..]),
            "{what}: PutIfAbsent keeps an existing record"
        );
        assert_eq!(
            get(&format!("pm/{i}/gone")).await,
            None,
            "{what}: Put then Delete, in order"
        );
        assert_eq!(get("pm/old").await, None, "{what}: Delete applied");
    }

    // An existing blob: its bytes stay, the records are applied.
    let d1 = sha256(&blobs[1]);
    bok(
        b.blob_put_with_meta(
            &d1,
            text("other bytes"),
            vec![MetaOp::Put(key("pm/again"), text("yes"))],
        )
        .await,
        "blob_put_with_meta of an existing blob",
    );
    let read = collect(bok(b.blob_read(&d1, None).await, "read"), "read").await;
    assert!(read == blobs[1], "an existing blob must not change");
    assert_eq!(
        get("pm/again").await.as_deref(),
        Some(&b"yes"[..]),
        "records of a batch whose blob existed"
    );

    // No records.
    let lone = pattern(1000, 43);
    let d_lone = sha256(&lone);
    bok(
        b.blob_put_with_meta(&d_lone, lone.clone(), Vec::new())
            .await,
        "blob_put_with_meta without records",
    );
    let read = collect(bok(b.blob_read(&d_lone, None).await, "read"), "read").await;
    assert!(read == lone, "blob without records reads back");

    // Concurrent calls for one digest.
    let shared = pattern(50_000, 44);
    let d_shared = sha256(&shared);
    let calls = (0..8).map(|i| {
        let b = b.clone();
        let data = shared.clone();
        let d = d_shared.clone();
        async move {
            b.blob_put_with_meta(
                &d,
                data,
                vec![MetaOp::Put(key(&format!("pm/c/{i}")), Bytes::new())],
            )
            .await
        }
    });
    for r in futures::future::join_all(calls).await {
        bok(r, "concurrent blob_put_with_meta");
    }
    let read = collect(bok(b.blob_read(&d_shared, None).await, "read"), "read").await;
    assert!(read == shared, "concurrently written blob reads back");
    for i in 0..8 {
        assert!(
            get(&format!("pm/c/{i}")).await.is_some(),
            "record of concurrent call {i}"
        );
    }

    let mut expected: Vec<Digest> = blobs
        .iter()
        .chain([&lone, &shared])
        .map(|data| sha256(data))
        .collect();
    expected.sort();
    let listed = bok(b.blob_list(None, 100).await, "blob_list");
    assert_eq!(
        listed.into_iter().map(|m| m.digest).collect::<Vec<_>>(),
        expected,
        "blob_list lists every blob once"
    );
}

/// Backend level, staged writes: appending at the staged length (across
/// calls and in several chunks), `OffsetMismatch` when the offset is past
/// the staged length (also for a new stage, which holds 0 bytes), rewinding
/// to an earlier offset discards the tail, a failing input stream returns
/// its error and the stage can be written again at the acknowledged
/// offset, `stage_commit` makes the first `len` bytes a blob and removes
/// the stage (committing an existing blob leaves it unchanged; committing
/// an absent stage is `NotFound`), zero-byte stages commit, `stage_abort`
/// is idempotent, and `stage_list` reports ids, lengths and times.
pub async fn backend_staged_writes(fixture: &impl Fixture) {
    let b = fixture.open().await;
    let stage_len = |stages: &[crate::StageMeta], id: &UploadId| {
        stages.iter().find(|s| &s.id == id).map(|s| s.len)
    };
    let a = pattern(70_000, 10);
    let bb = pattern(30_000, 11);
    let c = pattern(20_000, 12);
    let d = pattern(5_000, 13);
    let la = len_of(&a);

    // A stage that does not exist holds 0 bytes.
    let fresh = UploadId::random();
    match berr(
        b.stage_append(&fresh, 5, stream_of(std::slice::from_ref(&d)))
            .await,
        "append at 5 to a new stage",
    ) {
        BackendError::OffsetMismatch { id, offset, actual } => {
            assert_eq!((id, offset, actual), (fresh, 5, 0), "OffsetMismatch fields");
        }
        e => panic!("append at 5 to a new stage: expected OffsetMismatch, got {e:?}"),
    }
    bok(b.stage_abort(&fresh).await, "abort");

    let id = UploadId::random();
    let before = SystemTime::now();
    let end = bok(
        b.stage_append(
            &id,
            0,
            stream_of(&[a.slice(..10), a.slice(10..40_000), a.slice(40_000..)]),
        )
        .await,
        "first append",
    );
    assert_eq!(end, la, "stage_append returns offset + bytes written");
    let end = bok(
        b.stage_append(&id, la, stream_of(std::slice::from_ref(&bb)))
            .await,
        "second append",
    );
    assert_eq!(end, la + len_of(&bb), "second append");
    let after = SystemTime::now();
    let stages = bok(b.stage_list().await, "stage_list");
    assert_eq!(stage_len(&stages, &id), Some(end), "stage_list length");
    for s in stages.iter().filter(|s| s.id == id) {
        assert_recent(s.modified, before, after, "stage_list modified");
    }

    match berr(
        b.stage_append(&id, end + 1, stream_of(std::slice::from_ref(&d)))
            .await,
        "append past the end",
    ) {
        BackendError::OffsetMismatch {
            id: i,
            offset,
            actual,
        } => {
            assert_eq!(
                (i, offset, actual),
                (id, end + 1, end),
                "OffsetMismatch fields"
            );
        }
        e => panic!("append past the end: expected OffsetMismatch, got {e:?}"),
    }

    // Rewinding discards the tail (the second append).
    let end = bok(
        b.stage_append(&id, la, stream_of(std::slice::from_ref(&c)))
            .await,
        "rewinding append",
    );
    assert_eq!(end, la + len_of(&c), "rewinding append");
    assert_eq!(
        stage_len(&bok(b.stage_list().await, "stage_list"), &id),
        Some(end),
        "stage length after rewinding"
    );

    // A failing input: its error comes back; writing again at the
    // acknowledged offset works.
    match berr(
        b.stage_append(&id, end, failing_stream(&pattern(40_000, 14)))
            .await,
        "append with a failing input",
    ) {
        BackendError::Input(_) => {}
        e => panic!("append with a failing input: expected BackendError::Input, got {e:?}"),
    }
    let staged = stage_len(&bok(b.stage_list().await, "stage_list"), &id);
    assert!(
        staged.is_some_and(|n| n >= end),
        "after a failed append the stage must keep its first {end} bytes (has {staged:?})"
    );
    let end = bok(
        b.stage_append(&id, end, stream_of(std::slice::from_ref(&d)))
            .await,
        "append after a failed one",
    );
    assert_eq!(
        end,
        la + len_of(&c) + len_of(&d),
        "append after a failed one"
    );

    // Commit the first bytes only: a + c.
    let mut ac = BytesMut::from(&a[..]);
    ac.extend_from_slice(&c);
    let ac = ac.freeze();
    let d_ac = sha256(&ac);
    bok(
        b.stage_commit(&id, len_of(&ac), &d_ac).await,
        "stage_commit",
    );
    let read = collect(
        bok(b.blob_read(&d_ac, None).await, "read committed"),
        "read",
    )
    .await;
    assert!(
        read == ac,
        "stage_commit must commit exactly the first len bytes"
    );
    assert_eq!(
        stage_len(&bok(b.stage_list().await, "stage_list"), &id),
        None,
        "a committed stage is removed"
    );
    assert_not_found(
        b.stage_commit(&id, len_of(&ac), &d_ac).await,
        "stage_commit of a stage already committed",
    );

    // Committing content that is already a blob just removes the stage.
    let again = UploadId::random();
    bok(
        b.stage_append(&again, 0, stream_of(std::slice::from_ref(&ac)))
            .await,
        "append",
    );
    bok(
        b.stage_commit(&again, len_of(&ac), &d_ac).await,
        "commit of an existing blob",
    );
    assert_eq!(
        stage_len(&bok(b.stage_list().await, "stage_list"), &again),
        None,
        "stage removed"
    );
    let read = collect(bok(b.blob_read(&d_ac, None).await, "read"), "read").await;
    assert!(read == ac, "the existing blob is unchanged");

    // Zero bytes.
    let zero = UploadId::random();
    assert_eq!(
        bok(
            b.stage_append(&zero, 0, stream_of(&[])).await,
            "empty append"
        ),
        0,
        "empty append"
    );
    let d_empty = sha256(b"");
    bok(
        b.stage_commit(&zero, 0, &d_empty).await,
        "commit of 0 bytes",
    );
    assert_eq!(
        bok(b.blob_stat(&d_empty).await, "stat").size,
        0,
        "empty blob"
    );

    // Aborting.
    let gone = UploadId::random();
    bok(
        b.stage_append(&gone, 0, stream_of(std::slice::from_ref(&d)))
            .await,
        "append",
    );
    assert_eq!(
        stage_len(&bok(b.stage_list().await, "stage_list"), &gone),
        Some(len_of(&d)),
        "stage listed"
    );
    bok(b.stage_abort(&gone).await, "stage_abort");
    bok(b.stage_abort(&gone).await, "stage_abort again");
    bok(
        b.stage_abort(&UploadId::random()).await,
        "stage_abort of an unknown stage",
    );
    assert_eq!(
        stage_len(&bok(b.stage_list().await, "stage_list"), &gone),
        None,
        "an aborted stage is not listed"
    );
    assert_not_found(
        b.stage_commit(&gone, len_of(&d), &sha256(&d)).await,
        "stage_commit of an aborted stage",
    );
    assert_eq!(
        bok(
            b.stage_append(&gone, 0, stream_of(std::slice::from_ref(&a)))
                .await,
            "append to an aborted id starts over"
        ),
        la,
        "append after abort"
    );
    bok(b.stage_abort(&gone).await, "abort");
}

/// Backend level, metadata: `meta_get` of an absent key is `NotFound`;
/// `Put` creates and overwrites; `PutIfAbsent` keeps an existing value;
/// `Delete` is idempotent; a batch applies in order; `meta_list` returns
/// exactly the keys starting with the prefix (a string prefix), in byte
/// order, after `start_after` (stored or not, before or past the prefix),
/// at most `limit`, with values only when asked; a key may be both a
/// record and a prefix of others; modification times are current and move
/// forward when a record is rewritten.
pub async fn backend_metadata(fixture: &impl Fixture) {
    let b = fixture.open().await;
    let get = |k: &str| {
        let b = b.clone();
        let k = key(k);
        async move { b.meta_get(&k).await }
    };
    let value_of = |k: &str| {
        let get = get(k);
        let k = k.to_owned();
        async move {
            match get.await {
                Ok(v) => Some(v.value),
                Err(e) if e.is_not_found() => None,
                Err(e) => panic!("meta_get {k}: {e}"),
            }
        }
    };
    let apply = |ops: Vec<MetaOp>| {
        let b = b.clone();
        async move { bok(b.meta_apply(ops).await, "meta_apply") }
    };
    let put = |k: &str, v: &'static str| MetaOp::Put(key(k), Bytes::from_static(v.as_bytes()));

    assert_not_found(get("m/a").await, "meta_get of an absent key");
    let before = SystemTime::now();
    apply(vec![put("m/a", "1")]).await;
    let after = SystemTime::now();
    let first = bok(get("m/a").await, "meta_get");
    assert_eq!(first.value, "1", "meta_get after Put");
    assert_recent(first.modified, before, after, "meta_get modified");

    apply(vec![put("m/a", "2")]).await;
    assert_eq!(
        value_of("m/a").await.as_deref(),
        Some(&b"2"[..]),
        "Put overwrites"
    );
    apply(vec![
        MetaOp::PutIfAbsent(key("m/a"), Bytes::from_static(b"3")),
        MetaOp::PutIfAbsent(key("m/new"), Bytes::from_static(b"x")),
    ])
    .await;
    assert_eq!(
        value_of("m/a").await.as_deref(),
        Some(&b"2"[..]),
        "PutIfAbsent keeps"
    );
    assert_eq!(
        value_of("m/new").await.as_deref(),
        Some(&b"x"[..]),
        "PutIfAbsent creates"
    );
    apply(vec![MetaOp::Delete(key("m/new"))]).await;
    assert_not_found(get("m/new").await, "meta_get after Delete");
    apply(vec![MetaOp::Delete(key("m/new"))]).await;
    apply(vec![MetaOp::Delete(key("m/never"))]).await;
    apply(Vec::new()).await;

    // A batch applies in order.
    apply(vec![
        put("m/b", "1"),
        MetaOp::Delete(key("m/b")),
        put("m/c", "1"),
        MetaOp::Delete(key("m/c")),
        put("m/c", "2"),
        MetaOp::PutIfAbsent(key("m/c"), Bytes::from_static(b"3")),
    ])
    .await;
    assert_eq!(value_of("m/b").await, None, "Put then Delete in one batch");
    assert_eq!(
        value_of("m/c").await.as_deref(),
        Some(&b"2"[..]),
        "batch order"
    );

    // Listing.
    let keys = [
        "l/a", "l/a/b", "l/a/b/c", "l/a-b", "l/a.b", "l/a_b", "l/a:b", "l/aa", "l/A", "l/0",
        "l/Z9", "l/b",
    ];
    let decoys = ["l", "k/z", "lz/a", "l0/a", "m/l/a"];
    let ops = keys
        .iter()
        .chain(decoys.iter())
        .map(|k| MetaOp::Put(key(k), Bytes::from(format!("value of {k}"))))
        .collect();
    apply(ops).await;
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let list = |prefix: &str, start_after: Option<&str>, limit: usize, values: bool| {
        let b = b.clone();
        let prefix = prefix.to_owned();
        let options = ListOptions {
            start_after: start_after.map(key),
            limit,
            values,
        };
        async move { bok(b.meta_list(&prefix, options).await, "meta_list") }
    };
    let names = |entries: &[crate::MetaEntry]| {
        entries
            .iter()
            .map(|e| e.key.as_str().to_owned())
            .collect::<Vec<_>>()
    };

    let all = list("l/", None, 100, true).await;
    assert_eq!(
        names(&all),
        sorted,
        "meta_list: exactly the prefix, in byte order"
    );
    for e in &all {
        assert_eq!(
            e.value.as_deref(),
            Some(format!("value of {}", e.key).as_bytes()),
            "meta_list value of {}",
            e.key
        );
    }
    let bare = list("l/", None, 100, false).await;
    assert_eq!(names(&bare), sorted, "meta_list without values");
    assert!(
        bare.iter().all(|e| e.value.is_none()),
        "values must be None when not asked"
    );
    for e in &bare {
        let m = bok(b.meta_get(&e.key).await, "meta_get");
        assert_eq!(
            m.modified, e.modified,
            "listed and read modification times of {}",
            e.key
        );
    }

    assert_eq!(
        names(&list("l/a/", None, 100, false).await),
        ["l/a/b", "l/a/b/c"],
        "nested prefix"
    );
    let expected: Vec<&str> = sorted
        .iter()
        .copied()
        .filter(|k| k.starts_with("l/a"))
        .collect();
    assert_eq!(
        names(&list("l/a", None, 100, false).await),
        expected,
        "string prefix"
    );
    assert_eq!(
        names(&list("l/a/b/c", None, 100, false).await),
        ["l/a/b/c"],
        "key as prefix"
    );
    assert!(list("l/q", None, 100, false).await.is_empty(), "no match");
    assert!(list("l/", None, 0, false).await.is_empty(), "limit 0");
    assert_eq!(
        names(&list("l/", None, 3, false).await),
        sorted[..3],
        "limit"
    );

    for cursor in [
        "l/a.b", "l/a0", "l", "k/zzz", "a", "l/a/b", "l/b", "l/zzz", "m",
    ] {
        let expected: Vec<&str> = sorted.iter().copied().filter(|k| *k > cursor).collect();
        assert_eq!(
            names(&list("l/", Some(cursor), 100, false).await),
            expected,
            "meta_list start_after {cursor}"
        );
    }
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = names(&list("l/", cursor.as_deref(), 2, false).await);
        assert!(p.len() <= 2, "meta_list returned more than the limit");
        let Some(last) = p.last().cloned() else { break };
        paged.extend(p);
        cursor = Some(last);
    }
    assert_eq!(paged, sorted, "paging through meta_list");

    // Rewriting moves the modification time forward.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(vec![put("m/a", "4")]).await;
    let second = bok(get("m/a").await, "meta_get");
    assert!(
        second.modified > first.modified,
        "modification time must move forward on rewrite: {:?} then {:?}",
        first.modified,
        second.modified
    );
    bok(b.check().await, "check");
}

// ---------------------------------------------------------------------------
// 2. Blobs through the store

/// Blobs through the store: `put_blob` then `stat_blob`, `read_blob` whole
/// and by every kind of range (unsatisfiable ones are
/// `RangeNotSatisfiable`); a wrong digest or a wrong declared length leaves
/// nothing readable, nothing listed and no stage behind; a blob is not
/// readable through a repository it is not linked to (invariant 3);
/// mounting from a repository that holds the blob links it, from one that
/// does not returns `None` and links nothing; `delete_blob` unlinks from one
/// repository only; `repositories_holding` follows links.
pub async fn blobs(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let a = repo("blobs/a");
    let b = repo("blobs/b");
    let c = repo("blobs/c");
    let data = pattern(300_000, 2);
    let d = sha256(&data);
    let len = len_of(&data);

    let info = ok(
        store.put_blob(&a, &d, chunked(&data, 7), Some(len)).await,
        "put_blob",
    );
    assert_eq!(
        info,
        BlobInfo {
            digest: d.clone(),
            size: len
        },
        "put_blob answer"
    );
    assert_eq!(
        ok(store.stat_blob(&a, &d).await, "stat_blob"),
        info,
        "stat_blob"
    );
    let whole = ok(store.read_blob(&a, &d, None).await, "read_blob");
    assert_eq!(
        (whole.size, whole.range.clone()),
        (len, 0..len),
        "whole read"
    );
    assert!(
        collect(whole.stream, "read").await == data,
        "read_blob bytes"
    );

    let ranges = [
        (ByteRange::Bounded(0, 0), 0..1),
        (ByteRange::Bounded(10, 19), 10..20),
        (ByteRange::Bounded(len - 5, len + 100), len - 5..len),
        (ByteRange::Bounded(0, u64::MAX), 0..len),
        (ByteRange::From(0), 0..len),
        (ByteRange::From(123_456), 123_456..len),
        (ByteRange::From(len - 1), len - 1..len),
        (ByteRange::Suffix(10), len - 10..len),
        (ByteRange::Suffix(len + 5), 0..len),
    ];
    for (r, expected) in ranges {
        let what = format!("read_blob range {r:?}");
        let reader = ok(store.read_blob(&a, &d, Some(r)).await, &what);
        assert_eq!(reader.size, len, "{what}: size");
        assert_eq!(reader.range, expected, "{what}: range");
        let bytes = collect(reader.stream, &what).await;
        assert!(
            bytes == data.slice(expected.start as usize..expected.end as usize),
            "{what}: wrong bytes"
        );
    }
    for r in [
        ByteRange::From(len),
        ByteRange::From(u64::MAX),
        ByteRange::Bounded(len, len + 10),
        ByteRange::Bounded(5, 4),
        ByteRange::Suffix(0),
    ] {
        match err(
            store.read_blob(&a, &d, Some(r)).await,
            "unsatisfiable range",
        ) {
            StoreError::RangeNotSatisfiable { size, .. } => {
                assert_eq!(size, len, "RangeNotSatisfiable size");
            }
            e => panic!("range {r:?}: expected RangeNotSatisfiable, got {e:?}"),
        }
    }

    // Content that does not match leaves nothing behind.
    let other = pattern(1000, 3);
    let claimed = sha256(b"something else");
    match err(
        store.put_blob(&a, &claimed, chunked(&other, 2), None).await,
        "put_blob with a wrong digest",
    ) {
        StoreError::Verify(VerifyError::DigestMismatch { expected, actual }) => {
            assert_eq!(
                (expected, actual),
                (claimed.clone(), sha256(&other)),
                "mismatch"
            );
        }
        e => panic!("put_blob with a wrong digest: expected Verify(DigestMismatch), got {e:?}"),
    }
    let third = pattern(5000, 4);
    let d3 = sha256(&third);
    match err(
        store
            .put_blob(&a, &d3, chunked(&third, 3), Some(4999))
            .await,
        "put_blob longer than declared",
    ) {
        StoreError::Verify(VerifyError::SizeMismatch { expected: 4999, .. }) => {}
        e => panic!("put_blob longer than declared: expected Verify(SizeMismatch), got {e:?}"),
    }
    match err(
        store.put_blob(&a, &d3, body(&third), Some(5001)).await,
        "put_blob shorter than declared",
    ) {
        StoreError::Verify(VerifyError::SizeMismatch {
            expected: 5001,
            actual: 5000,
        }) => {}
        e => panic!("put_blob shorter than declared: expected Verify(SizeMismatch), got {e:?}"),
    }
    // The same above `StoreConfig::small_blob_bytes`, where the body is
    // streamed instead of read into memory.
    let large = pattern(1_300_000, 5);
    let d_large = sha256(&large);
    let large_len = len_of(&large);
    for (declared, what) in [
        (large_len - 1, "large put_blob longer than declared"),
        (large_len + 1, "large put_blob shorter than declared"),
    ] {
        match err(
            store
                .put_blob(&a, &d_large, chunked(&large, 4), Some(declared))
                .await,
            what,
        ) {
            StoreError::Verify(VerifyError::SizeMismatch { expected, .. }) => {
                assert_eq!(expected, declared, "{what}");
            }
            e => panic!("{what}: expected Verify(SizeMismatch), got {e:?}"),
        }
    }
    for bad in [&claimed, &sha256(&other), &d3, &d_large] {
        assert_blob_unknown(store.stat_blob(&a, bad).await, bad, "a rejected blob");
        assert_eq!(
            ok(store.blob_stored(bad).await, "blob_stored"),
            None,
            "stored {bad}"
        );
    }
    let listed = bok(store.backend().blob_list(None, 100).await, "blob_list");
    assert_eq!(
        listed.iter().map(|m| &m.digest).collect::<Vec<_>>(),
        [&d],
        "only the good blob is stored"
    );
    assert!(
        bok(store.backend().stage_list().await, "stage_list").is_empty(),
        "failed uploads leave no stage"
    );

    // Invariant 3: content stored for `a` is not readable through `b`, and
    // a failed push of it to `b` does not link it there.
    assert_blob_unknown(store.stat_blob(&b, &d).await, &d, "stat through b");
    assert_blob_unknown(store.read_blob(&b, &d, None).await, &d, "read through b");
    err(
        store.put_blob(&b, &d, body(&data), Some(len + 1)).await,
        "push of stored content with a wrong length",
    );
    err(
        store.put_blob(&b, &d, body(&other), None).await,
        "push of other content under a stored digest",
    );
    assert_blob_unknown(
        store.stat_blob(&b, &d).await,
        &d,
        "after failed pushes to b",
    );

    // Mounting.
    let mounted = ok(store.mount_blob(&b, &a, &d).await, "mount from a");
    assert_eq!(mounted, Some(info.clone()), "mount answer");
    assert!(
        read_blob(&store, &b, &d, None).await == data,
        "read mounted blob"
    );
    assert_eq!(
        ok(
            store.mount_blob(&c, &repo("blobs/nowhere"), &d).await,
            "mount"
        ),
        None,
        "mount from a repository without the blob"
    );
    assert_eq!(
        ok(store.mount_blob(&c, &a, &sha256(&other)).await, "mount"),
        None,
        "mount of a blob that is not stored"
    );
    assert_blob_unknown(store.stat_blob(&c, &d).await, &d, "after a failed mount");
    assert!(
        !ok(store.repository_exists(&c).await, "exists"),
        "a failed mount must not create the repository"
    );
    assert_eq!(
        ok(store.repositories_holding(&d, 10).await, "holding"),
        [a.clone(), b.clone()],
        "repositories_holding"
    );
    assert_eq!(
        ok(store.repositories_holding(&d, 1).await, "holding"),
        std::slice::from_ref(&a),
        "repositories_holding limit"
    );

    // Deleting unlinks from one repository only.
    ok(store.delete_blob(&b, &d).await, "delete_blob");
    assert_blob_unknown(store.stat_blob(&b, &d).await, &d, "after delete_blob");
    assert_blob_unknown(store.read_blob(&b, &d, None).await, &d, "after delete_blob");
    assert!(
        read_blob(&store, &a, &d, None).await == data,
        "still readable through a"
    );
    assert_eq!(
        ok(store.repositories_holding(&d, 10).await, "holding"),
        std::slice::from_ref(&a),
        "repositories_holding after delete_blob"
    );
    assert_blob_unknown(store.delete_blob(&b, &d).await, &d, "delete_blob again");
    assert_blob_unknown(
        store.delete_blob(&c, &d).await,
        &d,
        "delete_blob never linked",
    );
    assert_eq!(push_blob(&store, &b, &data).await, d, "push again");
    assert!(read_blob(&store, &b, &d, None).await == data, "relinked");
}

// ---------------------------------------------------------------------------
// 3. Concurrency

/// Concurrent pushes of one blob: 50 tasks push it to one repository and
/// 50 to 50 different repositories at the same time. All succeed, the
/// content is stored exactly once, no stage is left behind, and it reads
/// back correctly through every repository.
pub async fn concurrent_blob_pushes(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let data = pattern(200_000, 20);
    let d = sha256(&data);
    let one = repo("conc/one");
    let many: Vec<RepositoryName> = (0..50)
        .map(|i| repo(&format!("conc/many/r{i:02}")))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let r = if i % 2 == 0 {
            one.clone()
        } else {
            many[i / 2].clone()
        };
        let (store, data, d) = (store.clone(), data.clone(), d.clone());
        tasks.spawn(async move {
            let result = store
                .put_blob(&r, &d, chunked(&data, 4), Some(len_of(&data)))
                .await;
            (r, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (r, result) = joined.unwrap_or_else(|e| panic!("push task: {e}"));
        let info = ok(result, &format!("concurrent push to {r}"));
        assert_eq!(info.size, len_of(&data), "size");
    }
    let listed = bok(store.backend().blob_list(None, 100).await, "blob_list");
    assert_eq!(
        listed
            .iter()
            .map(|m| (&m.digest, m.size))
            .collect::<Vec<_>>(),
        [(&d, len_of(&data))],
        "exactly one copy is stored"
    );
    assert!(
        bok(store.backend().stage_list().await, "stage_list").is_empty(),
        "no stage is left behind"
    );
    for r in std::iter::once(&one).chain(many.iter()) {
        assert!(
            read_blob(&store, r, &d, None).await == data,
            "read through {r}"
        );
    }
    let mut expected: Vec<RepositoryName> = many.clone();
    expected.push(one);
    expected.sort();
    assert_eq!(
        ok(store.repositories_holding(&d, 100).await, "holding"),
        expected,
        "every repository holds the blob"
    );
}

// ---------------------------------------------------------------------------
// 4. Chunked uploads

fn final_chunk(start: Option<u64>, data: &Bytes, pieces: usize) -> Option<FinalChunk> {
    Some(FinalChunk {
        start,
        body: chunked(data, pieces),
        declared_len: Some(len_of(data)),
    })
}

/// Chunked uploads: appends with and without an explicit start offset,
/// `upload_status`, a wrong offset is `UploadOffset` with the current
/// offset, a wrong chunk length leaves the offset, completing with a final
/// chunk, a digest mismatch on completion leaves nothing readable and the
/// session at its previous offset (completing with the right digest then
/// works), cancelling, ids used with another repository or never issued are
/// `UploadUnknown`, zero-byte uploads, and completing a chunked upload with
/// a sha512 digest.
pub async fn chunked_uploads(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("up/app");
    let other = repo("up/other");
    let status = |id: UploadId, offset: u64| UploadStatus { id, offset };

    let data = pattern(200_000, 5);
    let d = sha256(&data);
    let (p1, p2, p3) = (
        data.slice(..50_000),
        data.slice(50_000..120_000),
        data.slice(120_000..),
    );
    let s = ok(store.start_upload(&r).await, "start_upload");
    assert_eq!(s.offset, 0, "a new upload is empty");
    let id = s.id;
    assert_eq!(
        ok(
            store
                .append_upload(&r, &id, None, chunked(&p1, 3), Some(50_000))
                .await,
            "append"
        ),
        status(id, 50_000),
        "append without a start offset"
    );
    assert_eq!(
        ok(
            store
                .append_upload(&r, &id, Some(50_000), body(&p2), None)
                .await,
            "append"
        ),
        status(id, 120_000),
        "append at the current offset"
    );
    assert_eq!(
        ok(store.upload_status(&r, &id).await, "status"),
        status(id, 120_000),
        "status"
    );
    for wrong in [50_000, 0, 130_000] {
        match err(
            store
                .append_upload(&r, &id, Some(wrong), body(&p3), None)
                .await,
            "append at a wrong offset",
        ) {
            StoreError::UploadOffset { requested, current } => {
                assert_eq!(
                    (requested, current),
                    (wrong, 120_000),
                    "UploadOffset fields"
                );
            }
            e => panic!("append at {wrong}: expected UploadOffset, got {e:?}"),
        }
    }
    match err(
        store
            .append_upload(&r, &id, None, body(&p3), Some(len_of(&p3) + 1))
            .await,
        "append shorter than declared",
    ) {
        StoreError::Verify(VerifyError::SizeMismatch { .. }) => {}
        e => panic!("append shorter than declared: expected Verify(SizeMismatch), got {e:?}"),
    }
    assert_eq!(
        ok(store.upload_status(&r, &id).await, "status"),
        status(id, 120_000),
        "failed appends leave the offset"
    );
    let info = ok(
        store
            .complete_upload(&r, &id, &d, final_chunk(Some(120_000), &p3, 2))
            .await,
        "complete_upload",
    );
    assert_eq!(
        info,
        BlobInfo {
            digest: d.clone(),
            size: len_of(&data)
        },
        "complete answer"
    );
    assert!(
        read_blob(&store, &r, &d, None).await == data,
        "completed upload reads back"
    );
    assert_upload_unknown(
        store.upload_status(&r, &id).await,
        "status after completion",
    );
    assert_upload_unknown(
        store.complete_upload(&r, &id, &d, None).await,
        "complete after completion",
    );

    // A digest mismatch on completion.
    let data2 = pattern(10_000, 6);
    let d2 = sha256(&data2);
    let (q1, q2) = (data2.slice(..4000), data2.slice(4000..));
    let id2 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store.append_upload(&r, &id2, None, body(&q1), None).await,
        "append",
    );
    let wrong = sha256(b"not the content");
    match err(
        store
            .complete_upload(&r, &id2, &wrong, final_chunk(Some(4000), &q2, 1))
            .await,
        "complete with a wrong digest",
    ) {
        StoreError::Verify(VerifyError::DigestMismatch { expected, actual }) => {
            assert_eq!(
                (expected, actual),
                (wrong.clone(), d2.clone()),
                "mismatch fields"
            );
        }
        e => panic!("complete with a wrong digest: expected Verify(DigestMismatch), got {e:?}"),
    }
    for bad in [&wrong, &d2] {
        assert_blob_unknown(
            store.stat_blob(&r, bad).await,
            bad,
            "after a digest mismatch",
        );
        assert_eq!(
            ok(store.blob_stored(bad).await, "stored"),
            None,
            "stored {bad}"
        );
    }
    assert_eq!(
        ok(store.upload_status(&r, &id2).await, "status"),
        status(id2, 4000),
        "a digest mismatch leaves the session at its previous offset"
    );
    ok(
        store
            .complete_upload(&r, &id2, &d2, final_chunk(Some(4000), &q2, 2))
            .await,
        "complete with the right digest after a mismatch",
    );
    assert!(
        read_blob(&store, &r, &d2, None).await == data2,
        "reads back"
    );

    // A fresh session completed by one final chunk (a monolithic push as
    // POST then PUT): a wrong digest or a short body leaves nothing
    // readable and the session open at 0; the right one completes it and
    // ends the session.
    let data_m = pattern(6000, 61);
    let d_m = sha256(&data_m);
    let id_m = ok(store.start_upload(&r).await, "start").id;
    err(
        store
            .complete_upload(&r, &id_m, &wrong, final_chunk(None, &data_m, 3))
            .await,
        "one-chunk complete with a wrong digest",
    );
    let short = FinalChunk {
        start: Some(0),
        body: chunked(&data_m.slice(..5000), 2),
        declared_len: Some(len_of(&data_m)),
    };
    err(
        store.complete_upload(&r, &id_m, &d_m, Some(short)).await,
        "one-chunk complete with a short body",
    );
    assert_blob_unknown(
        store.stat_blob(&r, &d_m).await,
        &d_m,
        "after failed completes",
    );
    assert_eq!(
        ok(store.upload_status(&r, &id_m).await, "status"),
        status(id_m, 0),
        "failed one-chunk completes leave the session at 0"
    );
    ok(
        store
            .complete_upload(&r, &id_m, &d_m, final_chunk(Some(0), &data_m, 2))
            .await,
        "one-chunk complete",
    );
    assert!(
        read_blob(&store, &r, &d_m, None).await == data_m,
        "one-chunk upload reads back"
    );
    assert!(
        store.upload_status(&r, &id_m).await.is_err(),
        "a completed session is gone"
    );

    // Completing without a final chunk.
    let data3 = pattern(33_333, 7);
    let d3 = sha256(&data3);
    let id3 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id3, Some(0), chunked(&data3, 5), None)
            .await,
        "append",
    );
    ok(
        store.complete_upload(&r, &id3, &d3, None).await,
        "complete without a chunk",
    );
    assert!(
        read_blob(&store, &r, &d3, None).await == data3,
        "reads back"
    );

    // Cancelling.
    let data4 = pattern(1000, 8);
    let id4 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id4, None, body(&data4), None)
            .await,
        "append",
    );
    ok(store.cancel_upload(&r, &id4).await, "cancel_upload");
    assert_upload_unknown(store.upload_status(&r, &id4).await, "status after cancel");
    assert_upload_unknown(
        store
            .append_upload(&r, &id4, None, body(&data4), None)
            .await,
        "append after cancel",
    );
    assert_upload_unknown(
        store.complete_upload(&r, &id4, &sha256(&data4), None).await,
        "complete after cancel",
    );
    assert_upload_unknown(store.cancel_upload(&r, &id4).await, "cancel after cancel");
    assert_eq!(
        ok(store.blob_stored(&sha256(&data4)).await, "stored"),
        None,
        "cancelled"
    );

    // Ids belong to their repository.
    let data5 = pattern(2000, 9);
    let d5 = sha256(&data5);
    let id5 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id5, None, body(&data5.slice(..1000)), None)
            .await,
        "append",
    );
    assert_upload_unknown(store.upload_status(&other, &id5).await, "status elsewhere");
    assert_upload_unknown(
        store
            .append_upload(&other, &id5, None, body(&data5), None)
            .await,
        "append elsewhere",
    );
    assert_upload_unknown(
        store
            .complete_upload(
                &other,
                &id5,
                &d5,
                final_chunk(None, &data5.slice(1000..), 1),
            )
            .await,
        "complete elsewhere",
    );
    assert_upload_unknown(store.cancel_upload(&other, &id5).await, "cancel elsewhere");
    assert_eq!(
        ok(store.upload_status(&r, &id5).await, "status"),
        status(id5, 1000),
        "the session is untouched by requests through another repository"
    );
    ok(
        store
            .complete_upload(&r, &id5, &d5, final_chunk(None, &data5.slice(1000..), 1))
            .await,
        "complete",
    );
    assert_blob_unknown(
        store.stat_blob(&other, &d5).await,
        &d5,
        "not linked elsewhere",
    );
    assert_upload_unknown(
        store.upload_status(&r, &UploadId::random()).await,
        "an id never issued",
    );

    // Zero bytes, with an empty final chunk and without one.
    let empty = Bytes::new();
    let d_empty = sha256(&empty);
    let id6 = ok(store.start_upload(&r).await, "start").id;
    let info = ok(
        store
            .complete_upload(&r, &id6, &d_empty, final_chunk(Some(0), &empty, 1))
            .await,
        "complete an empty upload with an empty chunk",
    );
    assert_eq!(info.size, 0, "empty upload size");
    let id7 = ok(store.start_upload(&r).await, "start").id;
    assert_upload_unknown(
        store.complete_upload(&other, &id7, &d_empty, None).await,
        "complete an empty upload through another repository",
    );
    let info = ok(
        store.complete_upload(&r, &id7, &d_empty, None).await,
        "complete empty",
    );
    assert_eq!(info.size, 0, "empty upload size");
    assert!(
        read_blob(&store, &r, &d_empty, None).await.is_empty(),
        "empty blob reads back"
    );

    // sha512, the chunks hashed with sha256 as they arrived.
    let data8 = pattern(70_000, 10);
    let d8 = Digest::compute(Algorithm::Sha512, &data8);
    let id8 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id8, None, body(&data8.slice(..30_000)), None)
            .await,
        "append",
    );
    ok(
        store
            .append_upload(&r, &id8, Some(30_000), body(&data8.slice(30_000..)), None)
            .await,
        "append",
    );
    let info = ok(
        store.complete_upload(&r, &id8, &d8, None).await,
        "complete with sha512",
    );
    assert_eq!(
        info,
        BlobInfo {
            digest: d8.clone(),
            size: 70_000
        },
        "sha512 answer"
    );
    assert!(
        read_blob(&store, &r, &d8, None).await == data8,
        "sha512 blob reads back"
    );
    assert_upload_unknown(
        store.upload_status(&r, &id8).await,
        "status after completion",
    );

    let data9 = pattern(9_000, 11);
    let d9 = Digest::compute(Algorithm::Sha512, &data9);
    let id9 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id9, None, body(&data9.slice(..100)), None)
            .await,
        "append",
    );
    ok(
        store
            .complete_upload(
                &r,
                &id9,
                &d9,
                final_chunk(Some(100), &data9.slice(100..), 2),
            )
            .await,
        "complete with sha512 and a final chunk",
    );
    assert!(
        read_blob(&store, &r, &d9, None).await == data9,
        "sha512 blob reads back"
    );

    // sha512 of nothing, with an empty final chunk.
    let d10 = Digest::compute(Algorithm::Sha512, b"");
    let id10 = ok(store.start_upload(&r).await, "start").id;
    let info = ok(
        store
            .complete_upload(&r, &id10, &d10, final_chunk(Some(0), &empty, 1))
            .await,
        "complete an empty upload with sha512",
    );
    assert_eq!(info.size, 0, "empty sha512 upload size");
    assert!(
        read_blob(&store, &r, &d10, None).await.is_empty(),
        "empty sha512 blob reads back"
    );

    // Completed and cancelled uploads leave no staged bytes behind.
    let stages = bok(store.backend().stage_list().await, "stage_list");
    assert!(
        stages.is_empty(),
        "stages left behind by finished uploads: {stages:?}"
    );
}

// ---------------------------------------------------------------------------
// 5. Restarts

/// Restarts: an upload session survives dropping and reopening the backend
/// and continues from its offset; a request body that fails part-way
/// through a chunk leaves the acknowledged offset unchanged, also across a
/// restart, and the upload completes with the right content; everything
/// committed before a restart (blobs, manifests, tags, the catalog) is
/// there after it.
pub async fn restart(fixture: &impl Fixture) {
    let mut store = open_store(fixture).await;
    let r = repo("restart/app");
    let image = Image::unique(30);
    let v1 = tag("v1");
    image.push(&store, &r, Some(&v1)).await;

    let data = pattern(400_000, 31);
    let d = sha256(&data);
    let (p1, p2, p3) = (
        data.slice(..100_000),
        data.slice(100_000..200_000),
        data.slice(200_000..),
    );
    let id = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id, None, chunked(&p1, 2), None)
            .await,
        "append",
    );

    store = reopen(fixture, store).await;
    assert_eq!(
        ok(store.upload_status(&r, &id).await, "status after restart").offset,
        100_000,
        "a session survives a restart"
    );
    ok(
        store
            .append_upload(&r, &id, Some(100_000), chunked(&p2, 3), None)
            .await,
        "append after restart",
    );

    match err(
        store
            .append_upload(
                &r,
                &id,
                Some(200_000),
                failing_body(&p3.slice(..150_000)),
                None,
            )
            .await,
        "append with a failing body",
    ) {
        StoreError::Body(_) => {}
        e => panic!("append with a failing body: expected StoreError::Body, got {e:?}"),
    }
    assert_eq!(
        ok(store.upload_status(&r, &id).await, "status").offset,
        200_000,
        "a failed chunk is not acknowledged"
    );
    store = reopen(fixture, store).await;
    assert_eq!(
        ok(store.upload_status(&r, &id).await, "status after restart").offset,
        200_000,
        "a failed chunk is not acknowledged after a restart either"
    );
    ok(
        store
            .complete_upload(&r, &id, &d, final_chunk(Some(200_000), &p3, 4))
            .await,
        "complete after a failed chunk and a restart",
    );
    assert!(
        read_blob(&store, &r, &d, None).await == data,
        "resumed upload reads back"
    );

    // Completing right after a failed chunk (and a restart) commits exactly
    // the acknowledged bytes, whatever the stage holds past them.
    let id2 = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &id2, None, chunked(&p1, 2), None)
            .await,
        "append",
    );
    err(
        store
            .append_upload(&r, &id2, None, failing_body(&p2), None)
            .await,
        "append with a failing body",
    );
    store = reopen(fixture, store).await;
    let d1 = sha256(&p1);
    ok(
        store.complete_upload(&r, &id2, &d1, None).await,
        "complete at the acknowledged offset",
    );
    assert!(
        read_blob(&store, &r, &d1, None).await == p1,
        "only acknowledged bytes are committed"
    );

    let lost = pattern(50_000, 32);
    match err(
        store
            .put_blob(&r, &sha256(&lost), failing_body(&lost), None)
            .await,
        "put_blob with a failing body",
    ) {
        StoreError::Body(_) => {}
        e => panic!("put_blob with a failing body: expected StoreError::Body, got {e:?}"),
    }

    store = reopen(fixture, store).await;
    image.verify(&store, &r, &Reference::Tag(v1.clone())).await;
    image
        .verify(&store, &r, &Reference::Digest(image.digest().clone()))
        .await;
    assert!(
        read_blob(&store, &r, &d, None).await == data,
        "blob after restart"
    );
    assert_eq!(
        ok(store.list_tags(&r, None, 10).await, "tags").items,
        [v1],
        "tags"
    );
    assert_eq!(
        ok(store.list_repositories(None, 10).await, "catalog").items,
        std::slice::from_ref(&r),
        "catalog after restart"
    );
    assert_eq!(
        ok(store.blob_stored(&sha256(&lost)).await, "stored"),
        None,
        "failed put"
    );
}

// ---------------------------------------------------------------------------
// 6. Upload expiry

/// Upload expiry: sessions idle for less than `max_age` are kept, idle ones
/// are removed with their staged bytes, and staged bytes that belong to no
/// session (an interrupted single-request upload) are removed too; a
/// `put_blob` whose body fails leaves no stage behind in the first place.
pub async fn upload_expiry(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("expiry/app");
    let staged = |store: &Store| {
        let b = store.backend().clone();
        async move {
            bok(b.stage_list().await, "stage_list")
                .into_iter()
                .map(|s| s.id)
                .collect::<BTreeSet<_>>()
        }
    };

    let a = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .append_upload(&r, &a, None, body(&Bytes::from_static(b"abcd")), None)
            .await,
        "append",
    );
    let empty_session = ok(store.start_upload(&r).await, "start").id;
    let orphan = UploadId::random();
    bok(
        store
            .backend()
            .stage_append(
                &orphan,
                0,
                stream_of(&[Bytes::from_static(b"orphaned bytes")]),
            )
            .await,
        "an orphaned stage",
    );
    let before = staged(&store).await;
    assert!(before.contains(&orphan), "the orphan is listed");
    let lost = pattern(20_000, 40);
    err(
        store
            .put_blob(&r, &sha256(&lost), failing_body(&lost), None)
            .await,
        "put_blob with a failing body",
    );
    assert_eq!(
        staged(&store).await,
        before,
        "a failed put_blob leaves no stage"
    );

    assert_eq!(
        ok(
            store.expire_uploads(Duration::from_secs(3600)).await,
            "expire"
        ),
        0,
        "nothing is older than an hour"
    );
    assert_eq!(
        ok(store.upload_status(&r, &a).await, "status").offset,
        4,
        "kept"
    );
    ok(store.upload_status(&r, &empty_session).await, "kept");
    assert!(
        staged(&store).await.contains(&orphan),
        "a recent orphan is kept"
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        ok(store.expire_uploads(Duration::ZERO).await, "expire"),
        3,
        "two idle sessions and one orphaned stage expire"
    );
    assert_upload_unknown(store.upload_status(&r, &a).await, "an expired session");
    assert_upload_unknown(
        store.upload_status(&r, &empty_session).await,
        "an expired session",
    );
    let left = staged(&store).await;
    assert!(
        !left.contains(&orphan) && !left.contains(&a),
        "expired stages are removed"
    );

    let data = pattern(3000, 41);
    let id = ok(store.start_upload(&r).await, "start").id;
    ok(
        store
            .complete_upload(&r, &id, &sha256(&data), final_chunk(None, &data, 1))
            .await,
        "an upload after expiry",
    );
}

// ---------------------------------------------------------------------------
// 7. Manifests

/// Manifests: pushing by tag and by digest (an image manifest referencing
/// pushed blobs, a Docker manifest, an index referencing pushed
/// manifests); `get_manifest` returns the exact bytes and media type and
/// `stat_manifest` the identity; `previous` reports tag moves; a referenced
/// blob that is missing or stored only for another repository, and an index
/// child that is missing, are `ManifestBlobUnknown` and store nothing; a
/// digest reference that does not match is `ManifestDigestMismatch`;
/// `delete_tag` keeps the manifest reachable by digest; `delete_manifest`
/// removes it with every tag pointing to it; unknown references are
/// `ManifestUnknown`.
pub async fn manifests(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("man/app");
    let other = repo("man/other");
    let (v1, keep, multi, docker_tag) = (tag("v1"), tag("keep"), tag("multi"), tag("docker"));

    let config = Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let layer = pattern(4000, 50);
    for b in [&config, &layer] {
        push_blob(&store, &r, b).await;
    }
    // Pretty-printed with odd spacing and an unknown field: the bytes must
    // come back exactly.
    let raw = format!(
        "{{\n  \"schemaVersion\" :2,\n\t\"mediaType\": \"{}\",\n  \"config\": {},\n  \"layers\": [ {} ],\n  \"x-unknown\": {{\"kept\": [1, 2.50, \"\\u00e9\"]}}\n}}\n",
        media_type::OCI_IMAGE_MANIFEST,
        descriptor(media_type::OCI_IMAGE_CONFIG, &config),
        descriptor(media_type::OCI_LAYER_TAR_GZIP, &layer),
    );
    let m1 = parse_manifest(raw.into_bytes());
    let pushed = ok(
        store
            .put_manifest(&r, &Reference::Tag(v1.clone()), &m1)
            .await,
        "push by tag",
    );
    assert_eq!(
        pushed,
        PushedManifest {
            digest: m1.digest().clone(),
            subject: None,
            previous: None
        },
        "push answer"
    );
    for reference in [
        Reference::Tag(v1.clone()),
        Reference::Digest(m1.digest().clone()),
    ] {
        let got = ok(store.get_manifest(&r, &reference).await, "get_manifest");
        assert_eq!(
            &got.bytes,
            m1.raw(),
            "get_manifest {reference}: exact bytes"
        );
        assert_eq!(&got.info.digest, m1.digest(), "digest");
        assert_eq!(
            got.info.media_type.as_str(),
            media_type::OCI_IMAGE_MANIFEST,
            "media type"
        );
        assert_eq!(got.info.size, m1.size(), "size");
        assert_eq!(
            ok(store.stat_manifest(&r, &reference).await, "stat_manifest"),
            got.info,
            "stat_manifest {reference}"
        );
    }

    // A Docker manifest, pushed by digest.
    let docker_config = Bytes::from_static(b"{\"docker\":true}");
    push_blob(&store, &r, &docker_config).await;
    let dm = parse_manifest(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST_V2,
            "config": descriptor(media_type::DOCKER_CONFIG, &docker_config),
            "layers": [descriptor(media_type::DOCKER_LAYER_TAR_GZIP, &layer)],
        }))
        .unwrap_or_default(),
    );
    let pushed = ok(
        store
            .put_manifest(&r, &Reference::Digest(dm.digest().clone()), &dm)
            .await,
        "push by digest",
    );
    assert_eq!(pushed.previous, None, "push by digest moves no tag");
    let got = ok(
        store
            .get_manifest(&r, &Reference::Digest(dm.digest().clone()))
            .await,
        "get docker",
    );
    assert_eq!(
        got.info.media_type.as_str(),
        media_type::DOCKER_MANIFEST_V2,
        "docker media type"
    );
    assert_eq!(&got.bytes, dm.raw(), "docker bytes");

    // Tag moves report the previous target.
    let moved = ok(
        store
            .put_manifest(&r, &Reference::Tag(v1.clone()), &dm)
            .await,
        "move",
    );
    assert_eq!(
        moved.previous.as_ref(),
        Some(m1.digest()),
        "previous after a move"
    );
    assert_eq!(
        ok(store.tag_target(&r, &v1).await, "tag_target").as_ref(),
        Some(dm.digest()),
        "the tag moved"
    );
    let back = ok(
        store
            .put_manifest(&r, &Reference::Tag(v1.clone()), &m1)
            .await,
        "move back",
    );
    assert_eq!(
        back.previous.as_ref(),
        Some(dm.digest()),
        "previous after moving back"
    );
    let same = ok(
        store
            .put_manifest(&r, &Reference::Tag(v1.clone()), &m1)
            .await,
        "re-push",
    );
    assert_eq!(
        same.previous, None,
        "re-pushing the same manifest moves nothing"
    );
    ok(
        store
            .put_manifest(&r, &Reference::Tag(keep.clone()), &m1)
            .await,
        "second tag",
    );
    ok(
        store
            .put_manifest(&r, &Reference::Tag(docker_tag.clone()), &dm)
            .await,
        "docker tag",
    );

    // An index of both.
    let index = index_manifest(&[&m1, &dm], json!({ "annotations": { "k": "v" } }));
    ok(
        store
            .put_manifest(&r, &Reference::Tag(multi.clone()), &index)
            .await,
        "push index",
    );
    let got = ok(
        store.get_manifest(&r, &Reference::Tag(multi.clone())).await,
        "get index",
    );
    assert_eq!(&got.bytes, index.raw(), "index bytes");
    assert_eq!(
        got.info.media_type.as_str(),
        media_type::OCI_IMAGE_INDEX,
        "index media type"
    );

    // Missing references.
    let missing_layer = pattern(100, 51);
    let needs_missing = image_manifest(&config, &[&layer, &missing_layer], json!({}));
    let only_elsewhere = pattern(100, 52);
    push_blob(&store, &other, &only_elsewhere).await;
    let needs_other = image_manifest(&config, &[&only_elsewhere], json!({}));
    let child_elsewhere = image_manifest(&only_elsewhere, &[], json!({}));
    ok(
        store
            .put_manifest(
                &other,
                &Reference::Digest(child_elsewhere.digest().clone()),
                &child_elsewhere,
            )
            .await,
        "push to the other repository",
    );
    let index_missing = index_manifest(&[&m1, &child_elsewhere], json!({}));
    let t = tag("broken");
    for (m, missing, what) in [
        (
            &needs_missing,
            sha256(&missing_layer),
            "a blob stored nowhere",
        ),
        (
            &needs_other,
            sha256(&only_elsewhere),
            "a blob stored for another repository",
        ),
        (
            &index_missing,
            child_elsewhere.digest().clone(),
            "a child in another repository",
        ),
    ] {
        for reference in [
            Reference::Tag(t.clone()),
            Reference::Digest(m.digest().clone()),
        ] {
            match err(store.put_manifest(&r, &reference, m).await, what) {
                StoreError::ManifestBlobUnknown { digest, .. } => {
                    assert_eq!(digest, missing, "{what}: the missing digest");
                }
                e => panic!("manifest referencing {what}: expected ManifestBlobUnknown, got {e:?}"),
            }
        }
        assert_manifest_unknown(
            store
                .get_manifest(&r, &Reference::Digest(m.digest().clone()))
                .await,
            "a rejected manifest is not stored",
        );
    }
    assert_eq!(
        ok(store.tag_target(&r, &t).await, "tag_target"),
        None,
        "no tag on failure"
    );

    // A digest reference that does not match.
    let wrong = sha256(b"not this manifest");
    match err(
        store
            .put_manifest(&r, &Reference::Digest(wrong.clone()), &m1)
            .await,
        "push under a wrong digest",
    ) {
        StoreError::ManifestDigestMismatch { expected, actual } => {
            assert_eq!(
                (&expected, &actual),
                (&wrong, m1.digest()),
                "mismatch fields"
            );
        }
        e => panic!("push under a wrong digest: expected ManifestDigestMismatch, got {e:?}"),
    }
    assert_manifest_unknown(
        store
            .get_manifest(&r, &Reference::Digest(wrong.clone()))
            .await,
        "nothing stored under the wrong digest",
    );

    // Deleting a tag keeps the manifest.
    ok(store.delete_tag(&r, &v1).await, "delete_tag");
    assert_manifest_unknown(
        store.get_manifest(&r, &Reference::Tag(v1.clone())).await,
        "deleted tag",
    );
    ok(
        store
            .get_manifest(&r, &Reference::Digest(m1.digest().clone()))
            .await,
        "the manifest stays reachable by digest",
    );
    assert_manifest_unknown(store.delete_tag(&r, &v1).await, "delete_tag again");

    // Deleting a manifest removes every tag pointing to it.
    ok(
        store.delete_manifest(&r, m1.digest()).await,
        "delete_manifest",
    );
    for reference in [
        Reference::Tag(keep.clone()),
        Reference::Digest(m1.digest().clone()),
    ] {
        assert_manifest_unknown(store.get_manifest(&r, &reference).await, "deleted manifest");
        assert_manifest_unknown(
            store.stat_manifest(&r, &reference).await,
            "deleted manifest",
        );
    }
    assert_manifest_unknown(store.delete_manifest(&r, m1.digest()).await, "delete again");
    assert_eq!(
        ok(store.list_tags(&r, None, 100).await, "tags").items,
        [docker_tag.clone(), multi.clone()],
        "only the tags of other manifests remain"
    );
    ok(
        store.get_manifest(&r, &Reference::Tag(docker_tag)).await,
        "another tag stays",
    );

    assert_manifest_unknown(
        store.get_manifest(&r, &Reference::Tag(tag("nope"))).await,
        "unknown tag",
    );
    assert_manifest_unknown(
        store
            .get_manifest(&r, &Reference::Digest(sha256(b"nope")))
            .await,
        "unknown digest",
    );
    assert_manifest_unknown(
        store
            .get_manifest(&other, &Reference::Digest(dm.digest().clone()))
            .await,
        "a manifest of another repository",
    );
    assert_manifest_unknown(
        store.delete_tag(&r, &tag("nope")).await,
        "delete unknown tag",
    );
}

// ---------------------------------------------------------------------------
// 8. Tags

/// Tags: listed in byte order (mixed case, digits, `_`, `.`, `-`); every
/// page size pages through the whole list with `more` true exactly before
/// the last page; `n = 0` is empty; a `last` that is not a tag works; an
/// unknown repository is `NameUnknown`; a repository with blobs but no
/// tags lists none.
pub async fn tags(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("tags/app");
    let image = Image::unique(60);
    image.push(&store, &r, None).await;
    let expected = [
        "1", "10", "2", "A", "B-1", "B.1", "B_1", "_x", "a", "a-1", "a.1", "a_1", "b",
    ];
    // Pushed in a scrambled order.
    for i in [7, 3, 12, 0, 9, 5, 1, 11, 4, 8, 2, 10, 6] {
        ok(
            store
                .put_manifest(&r, &Reference::Tag(tag(expected[i])), &image.manifest)
                .await,
            "tag",
        );
    }
    let names = |items: &[Tag]| {
        items
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let all = ok(store.list_tags(&r, None, 100).await, "list_tags");
    assert_eq!(names(&all.items), expected, "tags in byte order");
    assert!(!all.more, "no more after everything");

    for n in 1..=expected.len() + 1 {
        let mut seen = Vec::new();
        let mut last: Option<Tag> = None;
        loop {
            let page = ok(store.list_tags(&r, last.as_ref(), n).await, "page");
            assert!(
                page.items.len() <= n,
                "page of {n} has {} items",
                page.items.len()
            );
            seen.extend(names(&page.items));
            let done = seen.len() == expected.len();
            assert_eq!(
                page.more,
                !done,
                "`more` with n={n} after {} tags",
                seen.len()
            );
            if !page.more {
                break;
            }
            assert_eq!(page.items.len(), n, "a page with more after it is full");
            last = page.items.last().cloned();
        }
        assert_eq!(seen, expected, "paging with n={n}");
    }
    assert!(
        ok(store.list_tags(&r, None, 0).await, "n=0")
            .items
            .is_empty(),
        "n=0"
    );
    let after_b = ok(store.list_tags(&r, Some(&tag("b")), 10).await, "after b");
    assert!(
        after_b.items.is_empty() && !after_b.more,
        "nothing after the last tag"
    );
    let after_gap = ok(store.list_tags(&r, Some(&tag("a0")), 10).await, "after a0");
    assert_eq!(
        names(&after_gap.items),
        ["a_1", "b"],
        "last need not be a tag"
    );
    let after_a = ok(store.list_tags(&r, Some(&tag("a")), 2).await, "after a");
    assert_eq!(
        (names(&after_a.items), after_a.more),
        (vec!["a-1".into(), "a.1".into()], true),
        "after a"
    );

    match err(
        store.list_tags(&repo("tags/nope"), None, 10).await,
        "unknown repository",
    ) {
        StoreError::NameUnknown(n) => assert_eq!(n, repo("tags/nope"), "NameUnknown name"),
        e => panic!("list_tags of an unknown repository: expected NameUnknown, got {e:?}"),
    }
    let blobs_only = repo("tags/app/blobs-only");
    push_blob(&store, &blobs_only, &pattern(10, 61)).await;
    let page = ok(store.list_tags(&blobs_only, None, 10).await, "no tags");
    assert!(
        page.items.is_empty() && !page.more,
        "a repository with no tags"
    );
}

/// Concurrent tag moves: four writers move one tag among 20 pushed
/// manifests while four readers resolve it. Readers only ever see one of
/// the pushed manifests, complete and never an error; after the writers'
/// final, serialized writes the tag holds the last one acknowledged.
pub async fn concurrent_tag_moves(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("tags/moving");
    let t = tag("current");
    let config = Bytes::from_static(b"{\"moving\":true}");
    let layer = pattern(2000, 70);
    push_blob(&store, &r, &config).await;
    push_blob(&store, &r, &layer).await;
    let manifests: Arc<Vec<Manifest>> = Arc::new(
        (0..20)
            .map(|i| {
                image_manifest(
                    &config,
                    &[&layer],
                    json!({ "annotations": { "i": i.to_string() } }),
                )
            })
            .collect(),
    );
    for m in manifests.iter() {
        ok(
            store
                .put_manifest(&r, &Reference::Digest(m.digest().clone()), m)
                .await,
            "push",
        );
    }
    ok(
        store
            .put_manifest(&r, &Reference::Tag(t.clone()), &manifests[0])
            .await,
        "tag",
    );
    let known: Arc<BTreeSet<Digest>> =
        Arc::new(manifests.iter().map(|m| m.digest().clone()).collect());

    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let last = Arc::new(tokio::sync::Mutex::new(None::<Digest>));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, r, t, known, done) = (
            store.clone(),
            r.clone(),
            t.clone(),
            known.clone(),
            done.clone(),
        );
        readers.spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let got = store.get_manifest(&r, &Reference::Tag(t.clone())).await;
                let m = ok(got, "a reader resolving a moving tag");
                assert!(
                    known.contains(&m.info.digest),
                    "a reader saw {}",
                    m.info.digest
                );
                assert_eq!(sha256(&m.bytes), m.info.digest, "a reader saw torn bytes");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        });
    }
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4u64 {
        let (store, r, t, manifests) = (store.clone(), r.clone(), t.clone(), manifests.clone());
        let (barrier, last) = (barrier.clone(), last.clone());
        writers.spawn(async move {
            let mut x = w * 7 + 3;
            for _ in 0..15 {
                x = (x * 13 + 5) % 20;
                let m = &manifests[x as usize];
                ok(
                    store.put_manifest(&r, &Reference::Tag(t.clone()), m).await,
                    "move",
                );
            }
            barrier.wait().await;
            let mut last = last.lock().await;
            let m = &manifests[(w * 5 + 1) as usize];
            ok(
                store.put_manifest(&r, &Reference::Tag(t.clone()), m).await,
                "final move",
            );
            *last = Some(m.digest().clone());
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.unwrap_or_else(|e| panic!("writer task: {e}"));
    }
    done.store(true, Ordering::Release);
    while let Some(joined) = readers.join_next().await {
        let reads = joined.unwrap_or_else(|e| panic!("reader task: {e}"));
        assert!(reads > 0, "every reader read");
    }
    let expected = last.lock().await.clone();
    assert_eq!(
        ok(store.tag_target(&r, &t).await, "tag_target"),
        expected,
        "the tag holds the last acknowledged write"
    );
    let got = ok(store.get_manifest(&r, &Reference::Tag(t)).await, "get");
    assert_eq!(
        Some(got.info.digest),
        expected,
        "get_manifest follows the last write"
    );
}

// ---------------------------------------------------------------------------
// 9. Referrers

/// Referrers: manifests with a `subject` are listed for it, in digest
/// order, with media type, digest, size, artifact type (the config media
/// type when the manifest has none) and annotations; the `artifactType`
/// filter; pagination with `last`, `n` and `more`; deleting a referrer
/// removes it; referrers of a subject that does not exist are listed;
/// other repositories do not see them.
pub async fn referrers(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("ref/app");
    let other = repo("ref/other");
    let subject = Image::unique(80);
    subject.push(&store, &r, Some(&tag("v1"))).await;
    push_blob(&store, &other, &pattern(10, 81)).await;

    let empty = Bytes::from_static(b"{}");
    let sig_blob = Bytes::from_static(b"signature bytes");
    let sbom_blob = Bytes::from_static(b"sbom bytes");
    for b in [&empty, &sig_blob, &sbom_blob] {
        push_blob(&store, &r, b).await;
    }
    let sig_type = "application/vnd.example.signature.v1";
    let sbom_config_type = "application/vnd.example.sbom.config.v1+json";
    let artifact =
        |subject: Value, artifact_type: Option<&str>, config_type: &str, layer: &Bytes, n: u32| {
            let mut doc = json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_IMAGE_MANIFEST,
                "config": descriptor(config_type, &empty),
                "layers": [descriptor("application/octet-stream", layer)],
                "subject": subject,
                "annotations": { "org.example.n": n.to_string() },
            });
            if let Some(a) = artifact_type {
                doc["artifactType"] = json!(a);
            }
            parse_manifest(serde_json::to_vec(&doc).unwrap_or_default())
        };
    let subject_desc = manifest_descriptor(&subject.manifest);
    let sig1 = artifact(
        subject_desc.clone(),
        Some(sig_type),
        media_type::OCI_EMPTY,
        &sig_blob,
        1,
    );
    let sbom = artifact(subject_desc.clone(), None, sbom_config_type, &sbom_blob, 2);
    let sig2 = artifact(
        subject_desc,
        Some(sig_type),
        media_type::OCI_EMPTY,
        &sig_blob,
        3,
    );
    let ghost_subject = sha256(b"a subject that was never pushed");
    let orphan = artifact(
        json!({ "mediaType": media_type::OCI_IMAGE_MANIFEST, "digest": ghost_subject, "size": 123 }),
        Some(sig_type),
        media_type::OCI_EMPTY,
        &sig_blob,
        4,
    );
    for m in [&sig1, &sbom, &sig2, &orphan] {
        let pushed = ok(
            store
                .put_manifest(&r, &Reference::Digest(m.digest().clone()), m)
                .await,
            "push referrer",
        );
        assert_eq!(
            pushed.subject,
            m.subject().map(|s| s.digest.clone()),
            "push answer names the subject"
        );
    }
    let expected_desc = |m: &Manifest, artifact_type: &str, n: u32| {
        let mut d = Descriptor::new(
            MediaType::from_static(media_type::OCI_IMAGE_MANIFEST),
            m.digest().clone(),
            m.size(),
        );
        d.artifact_type =
            Some(MediaType::parse(artifact_type).unwrap_or_else(|e| panic!("media type: {e}")));
        d.annotations.insert("org.example.n".into(), n.to_string());
        d
    };
    let mut all = vec![
        expected_desc(&sig1, sig_type, 1),
        expected_desc(&sbom, sbom_config_type, 2),
        expected_desc(&sig2, sig_type, 3),
    ];
    all.sort_by(|a, b| a.digest.cmp(&b.digest));
    let s = subject.digest();
    let list = |artifact_type: Option<&str>, last: Option<&Digest>, n: usize| {
        let store = store.clone();
        let artifact_type =
            artifact_type.map(|a| MediaType::parse(a).unwrap_or_else(|e| panic!("{e}")));
        let last = last.cloned();
        let (r, s) = (r.clone(), s.clone());
        async move {
            ok(
                store
                    .list_referrers(&r, &s, artifact_type.as_ref(), last.as_ref(), n)
                    .await,
                "list_referrers",
            )
        }
    };

    let page = list(None, None, 100).await;
    assert_eq!(
        page.items, all,
        "every referrer, in digest order, with its descriptor"
    );
    assert!(!page.more, "more");
    let sigs: Vec<Descriptor> = all
        .iter()
        .filter(|d| {
            d.artifact_type
                .as_ref()
                .is_some_and(|a| a.as_str() == sig_type)
        })
        .cloned()
        .collect();
    assert_eq!(sigs.len(), 2, "two signatures");
    assert_eq!(
        list(Some(sig_type), None, 100).await.items,
        sigs,
        "artifactType filter"
    );
    assert_eq!(
        list(Some(sbom_config_type), None, 100).await.items,
        [expected_desc(&sbom, sbom_config_type, 2)],
        "artifactType filter matches the config media type fallback"
    );
    assert!(
        list(Some("application/vnd.example.none"), None, 100)
            .await
            .items
            .is_empty(),
        "a filter nothing matches"
    );

    for n in 1..=4 {
        let mut seen = Vec::new();
        let mut last: Option<Digest> = None;
        loop {
            let p = list(None, last.as_ref(), n).await;
            assert!(p.items.len() <= n, "page size");
            seen.extend(p.items.iter().cloned());
            assert_eq!(
                p.more,
                seen.len() < all.len(),
                "referrers `more` with n={n}"
            );
            if !p.more {
                break;
            }
            last = p.items.last().map(|d| d.digest.clone());
        }
        assert_eq!(seen, all, "paging referrers with n={n}");
    }
    let first = list(Some(sig_type), None, 1).await;
    assert_eq!(
        (first.items.as_slice(), first.more),
        (&sigs[..1], true),
        "filtered page 1"
    );
    let second = list(Some(sig_type), Some(&sigs[0].digest), 1).await;
    assert_eq!(
        (second.items.as_slice(), second.more),
        (&sigs[1..], false),
        "filtered page 2"
    );
    assert!(list(None, None, 0).await.items.is_empty(), "n=0");

    let ghost = ok(
        store
            .list_referrers(&r, &ghost_subject, None, None, 10)
            .await,
        "referrers of a missing subject",
    );
    assert_eq!(
        ghost.items,
        [expected_desc(&orphan, sig_type, 4)],
        "referrers of a subject that was never pushed are listed"
    );
    let elsewhere = ok(
        store.list_referrers(&other, s, None, None, 10).await,
        "other repo",
    );
    assert!(
        elsewhere.items.is_empty(),
        "another repository sees no referrers"
    );

    ok(
        store.delete_manifest(&r, sig1.digest()).await,
        "delete a referrer",
    );
    let remaining: Vec<Descriptor> = all
        .iter()
        .filter(|d| &d.digest != sig1.digest())
        .cloned()
        .collect();
    assert_eq!(
        list(None, None, 100).await.items,
        remaining,
        "a deleted referrer is gone"
    );
}

// ---------------------------------------------------------------------------
// 10. Catalog

/// The catalog: repositories (nested names and names differing only in a
/// separator) in byte order; every page size pages through it with `more`
/// exact; `n = 0`, a `last` that is not a repository, and `last` past the
/// end.
pub async fn catalog(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let expected = ["a", "a-b", "a.b", "a/b", "a/b/c", "b"];
    for (i, name) in ["b", "a/b/c", "a.b", "a", "a/b", "a-b"].iter().enumerate() {
        push_blob(&store, &repo(name), &pattern(10, 90 + i as u64)).await;
    }
    let names = |items: &[RepositoryName]| {
        items
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let all = ok(store.list_repositories(None, 100).await, "catalog");
    assert_eq!(names(&all.items), expected, "catalog in byte order");
    assert!(!all.more, "more");
    for n in 1..=expected.len() + 1 {
        let mut seen = Vec::new();
        let mut last: Option<RepositoryName> = None;
        loop {
            let page = ok(store.list_repositories(last.as_ref(), n).await, "page");
            assert!(page.items.len() <= n, "page size");
            seen.extend(names(&page.items));
            assert_eq!(
                page.more,
                seen.len() < expected.len(),
                "catalog `more` with n={n}"
            );
            if !page.more {
                break;
            }
            last = page.items.last().cloned();
        }
        assert_eq!(seen, expected, "paging the catalog with n={n}");
    }
    assert!(
        ok(store.list_repositories(None, 0).await, "n=0")
            .items
            .is_empty(),
        "n=0"
    );
    let p = ok(
        store.list_repositories(Some(&repo("a0")), 10).await,
        "after a0",
    );
    assert_eq!(names(&p.items), ["b"], "last need not be a repository");
    let p = ok(
        store.list_repositories(Some(&repo("a/b")), 10).await,
        "after a/b",
    );
    assert_eq!(names(&p.items), ["a/b/c", "b"], "after a nested name");
    let p = ok(
        store.list_repositories(Some(&repo("b")), 10).await,
        "after b",
    );
    assert!(p.items.is_empty() && !p.more, "nothing after the last");
}

// ---------------------------------------------------------------------------
// 11. Garbage collection

/// Garbage collection: content within the grace period survives; with
/// grace 0 an unreferenced blob is deleted (its links too) with the right
/// counts and bytes, while blobs of a tagged manifest, of an untagged one
/// (kept by default), of an index's children and of referrers of a live
/// manifest survive; with `delete_untagged` an untagged, unreferenced
/// manifest and its blobs go; a dry run deletes nothing and reports the
/// same counts.
pub async fn gc(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("gc/app");
    let s = repo("gc/other");
    let tagged = Image::unique(100);
    let untagged = Image::unique(101);
    let child = Image::unique(102);
    tagged.push(&store, &r, Some(&tag("v1"))).await;
    untagged.push(&store, &r, None).await;
    child.push(&store, &r, None).await;
    let index = index_manifest(&[&child.manifest], json!({}));
    ok(
        store
            .put_manifest(&r, &Reference::Tag(tag("multi")), &index)
            .await,
        "index",
    );
    let referrer = Image::new(
        Bytes::from_static(b"{\"signature\":true}"),
        Vec::new(),
        json!({ "subject": manifest_descriptor(&tagged.manifest) }),
    );
    referrer.push(&store, &r, None).await;
    // Shared with a repository that holds nothing else alive.
    push_blob(&store, &s, &tagged.layers[0]).await;
    let loose = pattern(3000, 103);
    let loose_other = pattern(1234, 104);
    let d_loose = push_blob(&store, &r, &loose).await;
    let d_loose_other = push_blob(&store, &s, &loose_other).await;
    // Stored but linked nowhere: only its own age protects it.
    let unlinked = pattern(777, 105);
    let d_unlinked = push_blob(&store, &r, &unlinked).await;
    ok(store.delete_blob(&r, &d_unlinked).await, "unlink");
    let images = [&tagged, &untagged, &child, &referrer];
    let blob_count = images.iter().map(|i| i.blobs().count()).sum::<usize>() + 3;
    let total = (blob_count + images.len() + 1) as u64; // + manifests, + index

    let everything_readable = |store: Store, with_untagged: bool| {
        let (r, s) = (r.clone(), s.clone());
        let images: Vec<Image> = images.iter().map(|i| (*i).clone()).collect();
        let index = index.clone();
        async move {
            for (i, image) in images.iter().enumerate() {
                if i == 1 && !with_untagged {
                    continue;
                }
                image
                    .verify(&store, &r, &Reference::Digest(image.digest().clone()))
                    .await;
            }
            ok(
                store
                    .get_manifest(&r, &Reference::Digest(index.digest().clone()))
                    .await,
                "index",
            );
            images[0]
                .verify(&store, &r, &Reference::Tag(tag("v1")))
                .await;
            let layer = &images[0].layers[0];
            assert!(
                read_blob(&store, &s, &sha256(layer), None).await == layer,
                "shared layer"
            );
        }
    };

    // Everything is within an hour's grace.
    let report = ok(
        store
            .gc(&GcOptions::with_grace(Duration::from_secs(3600)))
            .await,
        "gc",
    );
    assert_eq!(
        (
            report.blobs_deleted,
            report.blobs_kept,
            report.manifests_deleted,
            report.repositories
        ),
        (0, total, 0, 2),
        "nothing is deleted within the grace period: {report:?}"
    );
    read_blob(&store, &r, &d_loose, None).await;
    assert!(
        ok(store.blob_stored(&d_unlinked).await, "stored").is_some(),
        "a blob written within the grace period survives without links"
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let expected = GcReport {
        repositories: 2,
        blobs_deleted: 3,
        bytes_freed: len_of(&loose) + len_of(&loose_other) + len_of(&unlinked),
        blobs_kept: total - 3,
        manifests_deleted: 0,
        uploads_expired: 0,
    };
    let dry = GcOptions {
        grace: Duration::ZERO,
        dry_run: true,
        ..GcOptions::default()
    };
    assert_eq!(
        ok(store.gc(&dry).await, "dry run"),
        expected,
        "dry run report"
    );
    assert!(
        read_blob(&store, &r, &d_loose, None).await == loose,
        "a dry run deletes nothing"
    );
    assert!(
        read_blob(&store, &s, &d_loose_other, None).await == loose_other,
        "dry run"
    );
    assert!(
        ok(store.blob_stored(&d_unlinked).await, "stored").is_some(),
        "dry run"
    );

    let real = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    assert_eq!(ok(store.gc(&real).await, "gc"), expected, "gc report");
    for (d, holder) in [(&d_loose, &r), (&d_loose_other, &s)] {
        assert_blob_unknown(store.stat_blob(holder, d).await, d, "a collected blob");
        assert_eq!(
            ok(store.blob_stored(d).await, "stored"),
            None,
            "collected content"
        );
        assert!(
            ok(store.repositories_holding(d, 10).await, "holding").is_empty(),
            "links of a collected blob are removed"
        );
    }
    assert_eq!(
        ok(store.blob_stored(&d_unlinked).await, "stored"),
        None,
        "unlinked blob"
    );
    everything_readable(store.clone(), true).await;
    let refs = ok(
        store
            .list_referrers(&r, tagged.digest(), None, None, 10)
            .await,
        "referrers",
    );
    assert_eq!(refs.items.len(), 1, "the referrer survives");

    // Untagged manifests: kept within the grace period, then collected.
    let keep_recent = GcOptions {
        grace: Duration::from_secs(3600),
        delete_untagged: true,
        ..GcOptions::default()
    };
    let report = ok(store.gc(&keep_recent).await, "gc");
    assert_eq!(
        (report.blobs_deleted, report.manifests_deleted),
        (0, 0),
        "recent untagged manifests are kept: {report:?}"
    );
    let gone: u64 = untagged.manifest.size() + untagged.blobs().map(|b| len_of(b)).sum::<u64>();
    let expected = GcReport {
        repositories: 2,
        blobs_deleted: 3,
        bytes_freed: gone,
        blobs_kept: total - 6,
        manifests_deleted: 1,
        uploads_expired: 0,
    };
    let dry = GcOptions {
        grace: Duration::ZERO,
        delete_untagged: true,
        dry_run: true,
        ..GcOptions::default()
    };
    assert_eq!(
        ok(store.gc(&dry).await, "dry run"),
        expected,
        "dry run with delete_untagged"
    );
    everything_readable(store.clone(), true).await;
    let real = GcOptions {
        grace: Duration::ZERO,
        delete_untagged: true,
        ..GcOptions::default()
    };
    assert_eq!(
        ok(store.gc(&real).await, "gc"),
        expected,
        "gc with delete_untagged"
    );
    assert_manifest_unknown(
        store
            .get_manifest(&r, &Reference::Digest(untagged.digest().clone()))
            .await,
        "a collected untagged manifest",
    );
    for b in untagged.blobs() {
        let d = sha256(b);
        assert_blob_unknown(
            store.stat_blob(&r, &d).await,
            &d,
            "a blob of a collected manifest",
        );
        assert_eq!(
            ok(store.blob_stored(&d).await, "stored"),
            None,
            "collected content"
        );
    }
    everything_readable(store.clone(), false).await;
    let refs = ok(
        store
            .list_referrers(&r, tagged.digest(), None, None, 10)
            .await,
        "referrers",
    );
    assert_eq!(
        refs.items.len(),
        1,
        "the referrer of a tagged manifest survives"
    );
}

/// Garbage collection sees manifests pushed while it runs: a manifest
/// referencing old blobs (older than the grace period, links untouched) is
/// pushed right after the mark phase started; the collection must keep its
/// blobs, and the image pulls completely afterwards.
pub async fn gc_push_during_mark(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("gcm/app");
    let image = Image::unique(150);
    for b in image.blobs() {
        push_blob(&store, &r, b).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The progress callback is synchronous; it pushes through a runtime of
    // its own on another thread and waits for the push to finish.
    let outcome = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut fired = false;
    let callback = {
        let (store, r, image, outcome) = (store.clone(), r.clone(), image.clone(), outcome.clone());
        move |p: &crate::Progress| {
            if fired || p.phase != "mark" {
                return;
            }
            fired = true;
            let (store, r, manifest) = (store.clone(), r.clone(), image.manifest.clone());
            let result = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let rt = rt.unwrap_or_else(|e| panic!("a runtime for the push: {e}"));
                rt.block_on(store.put_manifest(&r, &Reference::Tag(tag("v1")), &manifest))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("the push thread panicked".into()));
            let done = match result {
                Ok(()) => "pushed".to_owned(),
                Err(e) => format!("push failed: {e}"),
            };
            *outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(done);
        }
    };
    let options = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    let report = ok(store.gc_with_progress(&options, callback).await, "gc");
    let outcome = outcome.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        outcome.as_deref(),
        Some("pushed"),
        "the push during the mark phase"
    );
    assert_eq!(
        report.blobs_deleted, 0,
        "blobs of a manifest pushed during gc: {report:?}"
    );
    image.verify(&store, &r, &Reference::Tag(tag("v1"))).await;
}

/// Garbage collection concurrent with pushes: for about two seconds, tasks
/// push small images (config, a layer through a chunked upload, a base
/// layer mounted from another repository, manifest by tag; distinct
/// content each) while garbage collection runs in a loop with a one-second
/// grace period and collects garbage seeded in the same repositories
/// before. Every image whose push took less than the grace period is
/// acknowledged and then pulls completely, also after a final collection
/// once everything is older than the grace period; the garbage is gone.
///
/// A push slower than the grace period (only on an overloaded machine) may
/// lose its blobs by design; such pushes may fail with
/// `ManifestBlobUnknown` and are not checked.
pub async fn gc_concurrent_with_pushes(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let grace = Duration::from_secs(1);
    let pushers = 3u64;
    let base_repo = repo("gcc/base");
    let base = Image::unique(200);
    base.push(&store, &base_repo, Some(&tag("latest"))).await;
    let base_layer = base.layers[0].clone();
    let mut garbage = Vec::new();
    for p in 0..=pushers {
        let r = repo(&format!("gcc/p{p}"));
        for g in 0..5 {
            let data = pattern(500 + g, 5000 + p * 100 + g as u64);
            garbage.push((r.clone(), push_blob(&store, &r, &data).await));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);

    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut deleted = 0;
            while !stop.load(Ordering::Acquire) {
                let report = ok(
                    store.gc(&GcOptions::with_grace(grace)).await,
                    "gc during pushes",
                );
                deleted += report.blobs_deleted;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            deleted
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..pushers {
        let (store, base_repo, base_layer) = (store.clone(), base_repo.clone(), base_layer.clone());
        tasks.spawn(async move {
            let r = repo(&format!("gcc/p{p}"));
            let (mut fast, mut slow) = (Vec::new(), 0u32);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let image = Image::new(
                    Bytes::from(format!("{{\"pusher\":{p},\"image\":{i}}}")),
                    vec![
                        pattern(3000 + i as usize, 1000 + p * 10_000 + i),
                        base_layer.clone(),
                    ],
                    json!({}),
                );
                let started = Instant::now();
                push_blob(&store, &r, &image.config).await;
                let layer = &image.layers[0];
                let id = ok(store.start_upload(&r).await, "start").id;
                ok(
                    store
                        .append_upload(&r, &id, None, body(&layer.slice(..1000)), None)
                        .await,
                    "append",
                );
                let rest = final_chunk(Some(1000), &layer.slice(1000..), 1);
                ok(
                    store.complete_upload(&r, &id, &sha256(layer), rest).await,
                    "complete",
                );
                let mounted = store.mount_blob(&r, &base_repo, &sha256(&base_layer)).await;
                assert!(ok(mounted, "mount").is_some(), "the base layer mounts");
                let t = tag(&format!("t{i}"));
                let result = store
                    .put_manifest(&r, &Reference::Tag(t.clone()), &image.manifest)
                    .await;
                let in_time = started.elapsed() + Duration::from_millis(100) < grace;
                match result {
                    Ok(_) if in_time => fast.push((r.clone(), t, image)),
                    Ok(_) | Err(StoreError::ManifestBlobUnknown { .. }) if !in_time => slow += 1,
                    other => {
                        ok(other, &format!("push {r}:{t} in {:?}", started.elapsed()));
                    }
                }
                i += 1;
                // Paced, so a fast backend does not pile up thousands of images.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            (fast, slow)
        });
    }
    let (mut pushed, mut slow) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        let (fast, s) = joined.unwrap_or_else(|e| panic!("push task: {e}"));
        pushed.extend(fast);
        slow += s;
    }
    stop.store(true, Ordering::Release);
    let deleted = collector.await.unwrap_or_else(|e| panic!("gc task: {e}"));
    assert!(
        !pushed.is_empty(),
        "no push finished within the grace period ({slow} were slower)"
    );
    assert!(
        deleted > 0,
        "garbage collection collected garbage while pushes went on"
    );

    for (r, t, image) in &pushed {
        image.verify(&store, r, &Reference::Tag(t.clone())).await;
    }
    tokio::time::sleep(grace + Duration::from_millis(200)).await;
    ok(store.gc(&GcOptions::with_grace(grace)).await, "final gc");
    for (r, t, image) in &pushed {
        image.verify(&store, r, &Reference::Tag(t.clone())).await;
    }
    base.verify(&store, &base_repo, &Reference::Tag(tag("latest")))
        .await;
    for (r, d) in &garbage {
        assert_blob_unknown(
            store.stat_blob(r, d).await,
            d,
            "garbage after the final collection",
        );
        assert_eq!(
            ok(store.blob_stored(d).await, "stored"),
            None,
            "garbage content"
        );
    }
}

// ---------------------------------------------------------------------------
// 13. Scrub

/// Scrub: a clean store reports no corruption and counts every blob and
/// byte; a blob whose bytes do not match its digest (written directly
/// through the backend) is reported with what it hashes to.
pub async fn scrub(fixture: &impl Fixture) {
    let store = open_store(fixture).await;
    let r = repo("scrub/app");
    let clean = pattern(100_000, 110);
    push_blob(&store, &r, &clean).await;
    let report = ok(store.scrub(|_| {}).await, "scrub");
    assert_eq!(
        (report.blobs_checked, report.bytes_checked),
        (1, len_of(&clean)),
        "a clean scrub counts: {report:?}"
    );
    assert!(
        report.corrupt.is_empty() && report.unreadable.is_empty(),
        "clean: {report:?}"
    );

    let a = Bytes::from_static(b"what the digest says");
    let b = pattern(5000, 111);
    let d_a = sha256(&a);
    bok(
        store.backend().blob_put(&d_a, b.clone()).await,
        "blob_put of wrong bytes",
    );
    let mut progress = 0u64;
    let report = ok(store.scrub(|p| progress = p.done).await, "scrub");
    assert_eq!(
        (report.blobs_checked, report.bytes_checked),
        (2, len_of(&clean) + len_of(&b)),
        "scrub counts: {report:?}"
    );
    assert_eq!(
        report.corrupt,
        [(d_a, sha256(&b))],
        "the corrupt blob is reported"
    );
    assert!(report.unreadable.is_empty(), "unreadable: {report:?}");
    assert_eq!(progress, 2, "progress reports every blob");
}

// ---------------------------------------------------------------------------
// 14. Model-based property test

const MODEL_REPOS: [&str; 3] = ["a", "a/b", "b"];
const MODEL_TAGS: [&str; 3] = ["latest", "V1.0", "_x"];
const MODEL_BLOBS: usize = 5;
/// Image manifests 0..4, then two indexes.
const MODEL_MANIFESTS: usize = 6;
const MODEL_CASES: u32 = 24;
const MODEL_MAX_OPS: usize = 60;
const MODEL_MAX_SHRINK_RUNS: u32 = 300;

/// One operation of the model test (indices into the pools above).
#[derive(Debug, Clone)]
enum ModelOp {
    PutBlob {
        repo: usize,
        blob: usize,
    },
    UploadBlob {
        repo: usize,
        blob: usize,
        restart_midway: bool,
    },
    MountBlob {
        repo: usize,
        from: usize,
        blob: usize,
    },
    DeleteBlob {
        repo: usize,
        blob: usize,
    },
    StatBlob {
        repo: usize,
        blob: usize,
    },
    PutManifest {
        repo: usize,
        manifest: usize,
        by: PushBy,
    },
    /// Every blob and child manifest, then the manifest (expands into the
    /// operations above).
    PushImage {
        repo: usize,
        manifest: usize,
        by: PushBy,
    },
    DeleteTag {
        repo: usize,
        tag: usize,
    },
    DeleteManifest {
        repo: usize,
        manifest: usize,
    },
    GetManifest {
        repo: usize,
        by: GetBy,
    },
    ListTags {
        repo: usize,
        last: Option<usize>,
        n: usize,
    },
    ListCatalog {
        last: Option<usize>,
        n: usize,
    },
    Restart,
}

#[derive(Debug, Clone, Copy)]
enum PushBy {
    Tag(usize),
    Digest,
    /// The digest of another manifest of the pool.
    WrongDigest,
}

#[derive(Debug, Clone, Copy)]
enum GetBy {
    Tag(usize),
    Digest(usize),
}

fn model_op() -> impl proptest::strategy::Strategy<Value = ModelOp> {
    use proptest::prelude::*;
    // Skewed choices, so that operations often meet the same repository,
    // manifest and tag.
    let r = || prop_oneof![4 => Just(0), 2 => Just(1), 1 => Just(2)];
    let b = || 0..MODEL_BLOBS;
    let m = || prop_oneof![4 => Just(0), 2 => Just(1), 2 => Just(2), 1 => Just(3), 2 => Just(4), 1 => Just(5)];
    let t = || prop_oneof![3 => Just(0), 2 => Just(1), 1 => Just(2)];
    let push_by = prop_oneof![
        4 => t().prop_map(PushBy::Tag),
        2 => Just(PushBy::Digest),
        1 => Just(PushBy::WrongDigest),
    ];
    let get_by = prop_oneof![t().prop_map(GetBy::Tag), m().prop_map(GetBy::Digest)];
    prop_oneof![
        6 => (r(), b()).prop_map(|(repo, blob)| ModelOp::PutBlob { repo, blob }),
        2 => (r(), b(), any::<bool>()).prop_map(|(repo, blob, restart_midway)| {
            ModelOp::UploadBlob { repo, blob, restart_midway }
        }),
        3 => (r(), r(), b()).prop_map(|(repo, from, blob)| ModelOp::MountBlob { repo, from, blob }),
        2 => (r(), b()).prop_map(|(repo, blob)| ModelOp::DeleteBlob { repo, blob }),
        2 => (r(), b()).prop_map(|(repo, blob)| ModelOp::StatBlob { repo, blob }),
        4 => (r(), m(), push_by.clone())
            .prop_map(|(repo, manifest, by)| ModelOp::PutManifest { repo, manifest, by }),
        4 => (r(), m(), push_by).prop_map(|(repo, manifest, by)| ModelOp::PushImage { repo, manifest, by }),
        2 => (r(), t()).prop_map(|(repo, tag)| ModelOp::DeleteTag { repo, tag }),
        2 => (r(), m()).prop_map(|(repo, manifest)| ModelOp::DeleteManifest { repo, manifest }),
        3 => (r(), get_by).prop_map(|(repo, by)| ModelOp::GetManifest { repo, by }),
        2 => (r(), proptest::option::of(t()), 0..5usize)
            .prop_map(|(repo, last, n)| ModelOp::ListTags { repo, last, n }),
        2 => (proptest::option::of(r()), 0..4usize).prop_map(|(last, n)| ModelOp::ListCatalog { last, n }),
        1 => Just(ModelOp::Restart),
    ]
}

/// The content the model test pushes.
struct ModelPool {
    blobs: Vec<Bytes>,
    manifests: Vec<Manifest>,
    /// For each manifest: the blobs it references, and its children.
    references: Vec<(Vec<usize>, Vec<usize>)>,
}

impl ModelPool {
    fn new() -> Self {
        let blobs: Vec<Bytes> = (0..MODEL_BLOBS)
            .map(|i| {
                let mut v = format!("model blob {i}\n").into_bytes();
                v.extend_from_slice(&pattern(i * 41 + 3, 300 + i as u64));
                Bytes::from(v)
            })
            .collect();
        let image = |config: usize, layers: &[usize]| {
            let layers: Vec<&Bytes> = layers.iter().map(|&l| &blobs[l]).collect();
            image_manifest(&blobs[config], &layers, json!({}))
        };
        let references = vec![
            (vec![0, 1], vec![]),
            (vec![0, 2, 3], vec![]),
            (vec![4], vec![]),
            (vec![3, 1, 4], vec![]),
            (vec![], vec![0, 1]),
            (vec![], vec![2]),
        ];
        let mut manifests: Vec<Manifest> = references[..4]
            .iter()
            .map(|(b, _)| image(b[0], &b[1..]))
            .collect();
        for (_, children) in &references[4..] {
            let children: Vec<&Manifest> = children.iter().map(|&c| &manifests[c]).collect();
            let index = index_manifest(&children, json!({}));
            manifests.push(index);
        }
        ModelPool {
            blobs,
            manifests,
            references,
        }
    }

    /// The primitive operations an operation stands for.
    fn expand(&self, op: &ModelOp, out: &mut Vec<ModelOp>) {
        match *op {
            ModelOp::PushImage { repo, manifest, by } => {
                let (blobs, children) = &self.references[manifest];
                for &child in children {
                    let by = PushBy::Digest;
                    self.expand(
                        &ModelOp::PushImage {
                            repo,
                            manifest: child,
                            by,
                        },
                        out,
                    );
                }
                out.extend(blobs.iter().map(|&blob| ModelOp::PutBlob { repo, blob }));
                out.push(ModelOp::PutManifest { repo, manifest, by });
            }
            ref other => out.push(other.clone()),
        }
    }
}

/// What an operation returned, in a form the model can predict.
#[derive(Debug, Clone, PartialEq)]
enum Obs {
    Done,
    Blob(Digest, u64),
    Mounted(Option<(Digest, u64)>),
    Pushed {
        digest: Digest,
        previous: Option<Digest>,
    },
    Manifest {
        digest: Digest,
        media_type: MediaType,
        size: u64,
        bytes: Bytes,
    },
    Page {
        items: Vec<String>,
        more: bool,
    },
    BlobUnknown(Digest),
    ManifestUnknown(String),
    /// From the model: the digests any of which may be reported; from the
    /// store: the one reported.
    ManifestBlobUnknown(BTreeSet<Digest>),
    ManifestDigestMismatch {
        expected: Digest,
        actual: Digest,
    },
    NameUnknown(String),
    Unexpected(String),
}

impl Obs {
    fn agrees_with(&self, model: &Obs) -> bool {
        match (self, model) {
            (Obs::ManifestBlobUnknown(got), Obs::ManifestBlobUnknown(allowed)) => {
                got.len() == 1 && got.is_subset(allowed)
            }
            _ => self == model,
        }
    }

    fn of<T>(result: StoreResult<T>, f: impl FnOnce(T) -> Obs) -> Obs {
        match result {
            Ok(v) => f(v),
            Err(StoreError::BlobUnknown { digest, .. }) => Obs::BlobUnknown(digest),
            Err(StoreError::ManifestUnknown { reference, .. }) => Obs::ManifestUnknown(reference),
            Err(StoreError::ManifestBlobUnknown { digest, .. }) => {
                Obs::ManifestBlobUnknown(BTreeSet::from([digest]))
            }
            Err(StoreError::ManifestDigestMismatch { expected, actual }) => {
                Obs::ManifestDigestMismatch { expected, actual }
            }
            Err(StoreError::NameUnknown(n)) => Obs::NameUnknown(n.to_string()),
            Err(e) => Obs::Unexpected(format!("{e} ({e:?})")),
        }
    }
}

/// The model: what a registry holds, as plain maps.
#[derive(Debug, Default)]
struct Model {
    catalog: BTreeSet<String>,
    links: BTreeSet<(String, Digest)>,
    manifests: BTreeSet<(String, Digest)>,
    tags: BTreeMap<String, BTreeMap<String, Digest>>,
}

/// One run of an operation sequence, in its own repository namespace.
struct ModelRun<'a> {
    pool: &'a ModelPool,
    namespace: String,
    model: Model,
}

impl ModelRun<'_> {
    fn repo(&self, i: usize) -> RepositoryName {
        repo(&format!("{}/{}", self.namespace, MODEL_REPOS[i]))
    }

    fn blob(&self, i: usize) -> (Digest, &Bytes) {
        (sha256(&self.pool.blobs[i]), &self.pool.blobs[i])
    }

    fn manifest_obs(m: &Manifest) -> Obs {
        Obs::Manifest {
            digest: m.digest().clone(),
            media_type: m.media_type().clone(),
            size: m.size(),
            bytes: m.raw().clone(),
        }
    }

    fn page<T: Clone>(items: impl Iterator<Item = T>, n: usize) -> (Vec<T>, bool) {
        let all: Vec<T> = items.collect();
        let more = all.len() > n;
        (all.into_iter().take(n).collect(), more)
    }

    /// What the model says `op` returns, applying its effects.
    fn expect(&mut self, op: &ModelOp) -> Obs {
        let pool = self.pool;
        let model = &mut self.model;
        let name = |i: usize| format!("{}/{}", self.namespace, MODEL_REPOS[i]);
        let blob = |i: usize| (sha256(&pool.blobs[i]), len_of(&pool.blobs[i]));
        match *op {
            ModelOp::PutBlob { repo, blob: b } | ModelOp::UploadBlob { repo, blob: b, .. } => {
                let (d, size) = blob(b);
                model.links.insert((name(repo), d.clone()));
                model.catalog.insert(name(repo));
                Obs::Blob(d, size)
            }
            ModelOp::MountBlob {
                repo,
                from,
                blob: b,
            } => {
                let (d, size) = blob(b);
                if model.links.contains(&(name(from), d.clone())) {
                    model.links.insert((name(repo), d.clone()));
                    model.catalog.insert(name(repo));
                    Obs::Mounted(Some((d, size)))
                } else {
                    Obs::Mounted(None)
                }
            }
            ModelOp::DeleteBlob { repo, blob: b } => {
                let (d, _) = blob(b);
                if model.links.remove(&(name(repo), d.clone())) {
                    Obs::Done
                } else {
                    Obs::BlobUnknown(d)
                }
            }
            ModelOp::StatBlob { repo, blob: b } => {
                let (d, size) = blob(b);
                if model.links.contains(&(name(repo), d.clone())) {
                    Obs::Blob(d, size)
                } else {
                    Obs::BlobUnknown(d)
                }
            }
            ModelOp::PutManifest { repo, manifest, by } => {
                let m = &pool.manifests[manifest];
                let r = name(repo);
                if let PushBy::WrongDigest = by {
                    let other = &pool.manifests[(manifest + 1) % MODEL_MANIFESTS];
                    return Obs::ManifestDigestMismatch {
                        expected: other.digest().clone(),
                        actual: m.digest().clone(),
                    };
                }
                let missing_blobs: BTreeSet<Digest> = m
                    .blob_references()
                    .map(|d| d.digest.clone())
                    .filter(|d| !model.links.contains(&(r.clone(), d.clone())))
                    .collect();
                let missing_children: BTreeSet<Digest> = m
                    .manifest_references()
                    .map(|d| d.digest.clone())
                    .filter(|d| !model.manifests.contains(&(r.clone(), d.clone())))
                    .collect();
                if !missing_blobs.is_empty() {
                    return Obs::ManifestBlobUnknown(missing_blobs);
                }
                if !missing_children.is_empty() {
                    return Obs::ManifestBlobUnknown(missing_children);
                }
                model.manifests.insert((r.clone(), m.digest().clone()));
                model.catalog.insert(r.clone());
                let previous = match by {
                    PushBy::Tag(t) => model
                        .tags
                        .entry(r)
                        .or_default()
                        .insert(MODEL_TAGS[t].to_owned(), m.digest().clone())
                        .filter(|p| p != m.digest()),
                    _ => None,
                };
                Obs::Pushed {
                    digest: m.digest().clone(),
                    previous,
                }
            }
            ModelOp::DeleteTag { repo, tag } => {
                let removed = model
                    .tags
                    .get_mut(&name(repo))
                    .and_then(|tags| tags.remove(MODEL_TAGS[tag]));
                match removed {
                    Some(_) => Obs::Done,
                    None => Obs::ManifestUnknown(MODEL_TAGS[tag].to_owned()),
                }
            }
            ModelOp::DeleteManifest { repo, manifest } => {
                let d = pool.manifests[manifest].digest().clone();
                let r = name(repo);
                if model.manifests.remove(&(r.clone(), d.clone())) {
                    if let Some(tags) = model.tags.get_mut(&r) {
                        tags.retain(|_, target| *target != d);
                    }
                    Obs::Done
                } else {
                    Obs::ManifestUnknown(d.to_string())
                }
            }
            ModelOp::GetManifest { repo, by } => {
                let r = name(repo);
                let (digest, reference) = match by {
                    GetBy::Tag(t) => (
                        model
                            .tags
                            .get(&r)
                            .and_then(|tags| tags.get(MODEL_TAGS[t]))
                            .cloned(),
                        MODEL_TAGS[t].to_owned(),
                    ),
                    GetBy::Digest(i) => {
                        let d = pool.manifests[i].digest().clone();
                        let present = model.manifests.contains(&(r.clone(), d.clone()));
                        (present.then(|| d.clone()), d.to_string())
                    }
                };
                match digest.and_then(|d| pool.manifests.iter().find(|m| m.digest() == &d)) {
                    Some(m) => Self::manifest_obs(m),
                    None => Obs::ManifestUnknown(reference),
                }
            }
            ModelOp::ListTags { repo, last, n } => {
                let r = name(repo);
                if !model.catalog.contains(&r) {
                    return Obs::NameUnknown(r);
                }
                let last = last.map(|t| MODEL_TAGS[t]);
                let tags = model.tags.get(&r).cloned().unwrap_or_default();
                let (items, more) = Self::page(
                    tags.into_keys()
                        .filter(|t| last.is_none_or(|l| t.as_str() > l)),
                    n,
                );
                Obs::Page { items, more }
            }
            ModelOp::ListCatalog { last, n } => {
                let last = last.map_or_else(|| self.namespace.clone(), name);
                let (items, more) =
                    Self::page(model.catalog.iter().filter(|r| **r > last).cloned(), n);
                Obs::Page { items, more }
            }
            ModelOp::Restart => Obs::Done,
            ModelOp::PushImage { .. } => Obs::Unexpected("PushImage is expanded".into()),
        }
    }
}

/// The store side of the model test; `store` is taken out on restarts.
struct ModelStore<'f, F> {
    fixture: &'f F,
    store: Option<Store>,
}

impl<F: Fixture> ModelStore<'_, F> {
    fn store(&self) -> &Store {
        match &self.store {
            Some(s) => s,
            None => panic!("the model store is always open between operations"),
        }
    }

    async fn restart(&mut self) {
        drop(self.store.take());
        self.store = Some(open_store(self.fixture).await);
    }

    async fn perform(&mut self, run: &ModelRun<'_>, op: &ModelOp) -> Obs {
        let blob_obs = |i: BlobInfo| Obs::Blob(i.digest, i.size);
        match *op {
            ModelOp::PutBlob { repo, blob } => {
                let (d, data) = run.blob(blob);
                let r = run.repo(repo);
                Obs::of(
                    self.store()
                        .put_blob(&r, &d, chunked(data, 2), Some(len_of(data)))
                        .await,
                    blob_obs,
                )
            }
            ModelOp::UploadBlob {
                repo,
                blob,
                restart_midway,
            } => {
                let (d, data) = run.blob(blob);
                let r = run.repo(repo);
                let mid = data.len() / 2;
                let id = match self.store().start_upload(&r).await {
                    Ok(s) => s.id,
                    Err(e) => return Obs::of(Err::<(), _>(e), |_| Obs::Done),
                };
                let first = data.slice(..mid);
                if let Err(e) = self
                    .store()
                    .append_upload(&r, &id, None, body(&first), None)
                    .await
                {
                    return Obs::of(Err::<(), _>(e), |_| Obs::Done);
                }
                if restart_midway {
                    self.restart().await;
                }
                let last = final_chunk(Some(mid as u64), &data.slice(mid..), 1);
                Obs::of(
                    self.store().complete_upload(&r, &id, &d, last).await,
                    blob_obs,
                )
            }
            ModelOp::MountBlob { repo, from, blob } => {
                let (d, _) = run.blob(blob);
                Obs::of(
                    self.store()
                        .mount_blob(&run.repo(repo), &run.repo(from), &d)
                        .await,
                    |m| Obs::Mounted(m.map(|i| (i.digest, i.size))),
                )
            }
            ModelOp::DeleteBlob { repo, blob } => {
                let (d, _) = run.blob(blob);
                Obs::of(self.store().delete_blob(&run.repo(repo), &d).await, |()| {
                    Obs::Done
                })
            }
            ModelOp::StatBlob { repo, blob } => {
                let (d, _) = run.blob(blob);
                Obs::of(self.store().stat_blob(&run.repo(repo), &d).await, blob_obs)
            }
            ModelOp::PutManifest { repo, manifest, by } => {
                let m = &run.pool.manifests[manifest];
                let reference = match by {
                    PushBy::Tag(t) => Reference::Tag(tag(MODEL_TAGS[t])),
                    PushBy::Digest => Reference::Digest(m.digest().clone()),
                    PushBy::WrongDigest => Reference::Digest(
                        run.pool.manifests[(manifest + 1) % MODEL_MANIFESTS]
                            .digest()
                            .clone(),
                    ),
                };
                Obs::of(
                    self.store()
                        .put_manifest(&run.repo(repo), &reference, m)
                        .await,
                    |p| {
                        if p.subject.is_some() {
                            return Obs::Unexpected(format!("a subject in {p:?}"));
                        }
                        Obs::Pushed {
                            digest: p.digest,
                            previous: p.previous,
                        }
                    },
                )
            }
            ModelOp::DeleteTag { repo, tag: t } => Obs::of(
                self.store()
                    .delete_tag(&run.repo(repo), &tag(MODEL_TAGS[t]))
                    .await,
                |()| Obs::Done,
            ),
            ModelOp::DeleteManifest { repo, manifest } => Obs::of(
                self.store()
                    .delete_manifest(&run.repo(repo), run.pool.manifests[manifest].digest())
                    .await,
                |()| Obs::Done,
            ),
            ModelOp::GetManifest { repo, by } => {
                let reference = match by {
                    GetBy::Tag(t) => Reference::Tag(tag(MODEL_TAGS[t])),
                    GetBy::Digest(i) => Reference::Digest(run.pool.manifests[i].digest().clone()),
                };
                Obs::of(
                    self.store().get_manifest(&run.repo(repo), &reference).await,
                    |m| Obs::Manifest {
                        digest: m.info.digest,
                        media_type: m.info.media_type,
                        size: m.info.size,
                        bytes: m.bytes,
                    },
                )
            }
            ModelOp::ListTags { repo, last, n } => {
                let last = last.map(|t| tag(MODEL_TAGS[t]));
                Obs::of(
                    self.store()
                        .list_tags(&run.repo(repo), last.as_ref(), n)
                        .await,
                    |p| Obs::Page {
                        items: p.items.iter().map(|t| t.as_str().to_owned()).collect(),
                        more: p.more,
                    },
                )
            }
            ModelOp::ListCatalog { last, n } => {
                let last = match last {
                    Some(i) => run.repo(i),
                    None => repo(&run.namespace),
                };
                Obs::of(self.store().list_repositories(Some(&last), n).await, |p| {
                    Obs::Page {
                        items: p.items.iter().map(|r| r.as_str().to_owned()).collect(),
                        more: p.more,
                    }
                })
            }
            ModelOp::Restart => {
                self.restart().await;
                Obs::Done
            }
            ModelOp::PushImage { .. } => Obs::Unexpected("PushImage is expanded".into()),
        }
    }

    /// Runs a sequence in a fresh namespace; `Err` describes the first
    /// divergence from the model.
    async fn run(
        &mut self,
        pool: &ModelPool,
        namespace: String,
        ops: &[ModelOp],
    ) -> Result<(), String> {
        let mut run = ModelRun {
            pool,
            namespace,
            model: Model::default(),
        };
        for (i, op) in ops.iter().enumerate() {
            let mut primitives = Vec::new();
            pool.expand(op, &mut primitives);
            for primitive in &primitives {
                let expected = run.expect(primitive);
                let got = self.perform(&run, primitive).await;
                if !got.agrees_with(&expected) {
                    return Err(format!(
                        "step {i}, {primitive:?} (repositories {:?} under {}):\n  store: {got:?}\n  model: {expected:?}",
                        MODEL_REPOS, run.namespace
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Model-based property test: random sequences of up to 60 store
/// operations (push, upload across a restart, mount and delete blobs; push
/// manifests and indexes by tag, by digest and under a wrong digest;
/// delete tags and manifests; stat blobs; get manifests; list tag and
/// catalog pages; restart) give the same results (values, or which error)
/// as a model made of a few `BTreeMap`s. A failing sequence is shrunk to a
/// minimal one before the case fails. `PROPTEST_CASES` overrides the
/// number of sequences (24).
pub async fn model(fixture: &impl Fixture) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, TestRunner};

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(MODEL_CASES);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let strategy = proptest::collection::vec(model_op(), 1..=MODEL_MAX_OPS);
    let pool = ModelPool::new();
    let mut store = ModelStore {
        fixture,
        store: Some(open_store(fixture).await),
    };
    // Each run gets a namespace that sorts after every earlier one, so a
    // catalog page after the namespace sees only this run's repositories.
    let mut runs = 0u32;
    let mut namespace = || {
        runs += 1;
        format!("model{runs:06}")
    };
    for _ in 0..cases {
        let mut tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("generate an operation sequence: {e}"));
        let Err(mut failure) = store.run(&pool, namespace(), &tree.current()).await else {
            continue;
        };
        let mut minimal = tree.current();
        let mut shrink_runs = 0;
        if tree.simplify() {
            while shrink_runs < MODEL_MAX_SHRINK_RUNS {
                shrink_runs += 1;
                match store.run(&pool, namespace(), &tree.current()).await {
                    Ok(()) => {
                        if !tree.complicate() {
                            break;
                        }
                    }
                    Err(e) => {
                        failure = e;
                        minimal = tree.current();
                        if !tree.simplify() {
                            break;
                        }
                    }
                }
            }
        }
        panic!(
            "the store diverged from the model ({shrink_runs} shrinking runs); minimal sequence:\n{minimal:#?}\nat {failure}"
        );
    }
}
