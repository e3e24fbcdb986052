//! The filesystem backend (feature `fs`): large blobs and staged writes as
//! files, metadata records and small blobs in an embedded
//! [redb](https://docs.rs/redb) database.
//!
//! Layout under the root directory:
//!
//! ```text
//! blobs/<algorithm>/<first two hex chars>/<hex>   one file per large blob
//! stage/<upload-id>                               one file per staged write
//! tmp/                                            temp files; emptied on open
//! meta.redb                                       metadata records, small blobs
//! ```
//!
//! Durability: every file that becomes visible under a final name was
//! written to a temp name (or the stage), `fdatasync`ed and then renamed,
//! and the directories involved were `fsync`ed before the call returns.
//! Database writes are committed with [`redb::Durability::Immediate`]; the
//! batches of concurrent callers are grouped into one transaction (one
//! fsync) by a single writer thread. [`FsOptions::fsync`] `false` leaves
//! blob files to the kernel's write-back instead (for storage made durable
//! by other means); database commits stay durable.
//!
//! Small blobs (up to [`FsOptions::inline_threshold`], 64 KiB by default) are
//! kept *inline*, in the database: a put is one batch for the writer thread,
//! so it costs one share of a group commit instead of a file write, an
//! `fdatasync`, a rename and directory fsyncs, and
//! [`Backend::blob_put_with_meta`] commits the blob together with its
//! records (repository link, manifest revision, tag) atomically. Staged
//! writes that commit to a small blob are moved inline too. Every blob method
//! looks in both places; a digest found in both (possible only after a
//! crash or a change of the threshold) is one blob. Inline blobs are cut into
//! pieces that each fill one database page of 4 KiB to 1 MiB exactly (redb
//! gives a leaf holding one large value a whole power-of-two page, so a
//! 1 MiB value would take, and write, 2 MiB), plus a tail of less than 4 KiB
//! kept apart, where it shares pages with other small records; their sizes
//! and times sit in a small index table, so listing and `blob_stat` never
//! touch the content.
//!
//! Staged writes: the input stream is polled on the async side (where the
//! caller hashes it) and handed to one writer thread per call through a
//! queue bounded to a few MiB, small chunks gathered into large writes.
//! Every 4 MiB a helper thread starts an `fdatasync`, so the disk works
//! while input still arrives and the final sync has little left. Appends,
//! commits and aborts of one stage are ordered: an append overtaken by a
//! newer operation on its stage stops before its next write.
//!
//! Read-only storage: a data directory that cannot be written (a
//! read-only mount, a snapshot, files owned by another user) is opened for
//! reading: everything stored can be read, every write fails with an error
//! that says the storage is read-only, and [`Backend::check`] fails. The
//! backend tries to reopen the database for writing (at most once a second,
//! when a write or a check needs it), so writes work again once the
//! storage does, without a restart. A database that was not closed
//! cleanly (a crash, or storage that turned read-only under a running
//! server) needs a repair, which writes: on read-only storage it is
//! repaired in memory (the file is left as it is) and then read.
//!
//! Deletions (`blob_delete`, `stage_abort`) are not fsynced: a crash right
//! after one may bring the file (or the inline blob: its removal is
//! committed without waiting for the disk, and made durable by the next
//! commit) back, which is harmless (a blob is complete and content
//! addressed, and garbage collection or upload expiry removes it again).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
};
use tokio::sync::{Semaphore, oneshot};
use wharf_types::{Digest, UploadId};

mod overlay;

use crate::backend::{
    Backend, BackendError, BackendResult, BlobMeta, ByteStream, Key, ListOptions, MetaEntry,
    MetaOp, MetaValue, StageMeta,
};

/// The one metadata table: key text -> 8-byte little-endian modification
/// time (unix milliseconds) followed by the value bytes.
const META_TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// The metadata database file, under the root.
const META_FILE: &str = "meta.redb";
/// Most memory redb may use for its page cache. Small: the operating
/// system's page cache holds the database file anyway, and a large cache
/// filled by inline blob traffic is memory the server keeps for good
/// (whole-run peak RSS of the benchmark: 128 MiB cache 298 MiB, 16 MiB
/// 47 MiB, 8 MiB 38 MiB, at the same throughput and manifest GET rate).
const META_CACHE_BYTES: usize = 8 << 20;
/// Most caller batches folded into one metadata transaction.
const MAX_GROUP_BATCHES: usize = 1024;
/// Most bytes (inline blob content and record values) folded into one
/// transaction; a larger batch still goes, alone. Bounded so that a
/// group of inline blobs held for one commit stays small: with 64 KiB
/// inline blobs, 2 MiB is 32 concurrent pushes' worth.
const MAX_GROUP_BYTES: usize = 2 << 20;

/// The index of inline blobs: digest text -> 8-byte little-endian commit
/// time (unix milliseconds) and 8-byte little-endian size.
const BLOB_TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("blobs");
/// The page-sized pieces of inline blobs, in order: digest text followed by
/// the 4-byte big-endian piece number -> the piece.
const PIECE_TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("blob_pieces");
/// The last bytes of inline blobs (shorter than the smallest piece):
/// digest text -> bytes. Absent when the pieces hold everything.
const TAIL_TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("blob_tails");
/// redb's page size.
const DB_PAGE: usize = 4096;
/// Pieces fill pages of `DB_PAGE << order` bytes for `order` up to this
/// (1 MiB pages): few, large pieces are written with few, contiguous
/// writes, which the commit's fsync finishes sooner than many small ones.
const PIECE_MAX_ORDER: u32 = 8;
/// Room left in a piece's page for the leaf header and the key (at most
/// 152 bytes for a sha512 digest), so that a piece never needs the next,
/// twice as large, page.
const PIECE_HEADROOM: usize = 256;

/// Staged writes are written to disk in units of about this size.
const WRITE_CHUNK: usize = 1 << 20;
/// Most bytes of one staged write in flight between the input stream and
/// the writer thread (queued or being written): what a push holds when the
/// disk is slower than the network. 2 MiB keeps up with the disk (1 GiB
/// pushes ran at the same speed as with 4 MiB) and is most of the
/// difference between the peak RSS of short and long pushes.
const WRITE_IN_FLIGHT: usize = 2 << 20;
/// Input chunks smaller than this are copied together before being queued
/// (larger ones are queued as they are, without copying).
const SMALL_CHUNK: usize = 16 << 10;
/// Size at which a run of small input chunks is queued.
const SMALL_BATCH: usize = 64 << 10;

/// A staged write starts flushing to disk in the background (an `fdatasync`
/// on a helper thread, while writing goes on) each time this many bytes
/// were written since the last start, so that the final `fdatasync` has
/// little left to do and the disk works while the input is still arriving.
/// Small against a chunk: a 16 MiB `PATCH` used to wait for a final flush
/// of all 16 MiB with 32 MiB here (1 GiB in 16 MiB chunks: 486 MB/s), and
/// waits for at most 4 MiB now (790 MB/s; single-request pushes unchanged).
const BACKGROUND_SYNC_EVERY: u64 = 4 << 20;

/// Chunk size of blob reads.
const READ_CHUNK: usize = 1 << 20;
/// Chunks a blob reader may have queued ahead of the consumer.
const READ_QUEUE: usize = 2;

/// Settings of an [`FsBackend`], for [`FsBackend::open_with`].
///
/// ```no_run
/// use wharf_storage::{FsBackend, FsOptions};
/// let backend = FsBackend::open_with(
///     "/var/lib/wharf",
///     FsOptions::default().with_inline_threshold(256 << 10),
/// )?;
/// # let _ = backend;
/// # Ok::<(), wharf_storage::BackendError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FsOptions {
    /// Blobs of at most this many bytes are stored inline, in the metadata
    /// database, instead of as files: a put is then one share of a group
    /// commit (one fsync for all concurrent writers) instead of a file
    /// write, an `fdatasync`, a rename and directory fsyncs, and a blob put
    /// with its metadata records is one atomic transaction. Inline blobs
    /// are read whole into memory, so this also bounds the memory a read
    /// or write of one takes. 0 stores every blob as a file; values above
    /// [`FsOptions::MAX_INLINE_THRESHOLD`] are lowered to it. Changing it
    /// between runs is safe: every blob is found wherever it was stored.
    pub inline_threshold: u64,
    /// Whether blob files are flushed to disk (`fdatasync` of the file,
    /// `fsync` of the directories it is renamed through) before a write
    /// returns. `true` (the default) makes every acknowledged blob survive
    /// a power loss. `false` relaxes that for storage that is durable by
    /// other means (replicated, battery-backed write cache): blob files
    /// are left to the kernel to write back, which survives a crash of the
    /// process but not of the machine (after one, run `wharf fsck`: a blob
    /// file may be cut short). Metadata records and inline blobs are
    /// committed durably either way.
    pub fsync: bool,
}

impl FsOptions {
    /// The default [`FsOptions::inline_threshold`]: 64 KiB. Larger values
    /// trade memory for write latency: a blob up to it is held whole by
    /// every read and write of it, and its commit writes it through the
    /// database (measured under a mixed push/pull load: 64 KiB peaked at
    /// 47 MiB resident, 1 MiB at 65 MiB, at the same throughput; a lone
    /// 1 MiB put took 2.8x longer inline than as a file).
    pub const DEFAULT_INLINE_THRESHOLD: u64 = 64 << 10;
    /// The largest [`FsOptions::inline_threshold`]: 16 MiB.
    pub const MAX_INLINE_THRESHOLD: u64 = 16 << 20;

    /// Sets [`FsOptions::fsync`].
    #[must_use]
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets [`FsOptions::inline_threshold`].
    #[must_use]
    pub fn with_inline_threshold(mut self, bytes: u64) -> Self {
        self.inline_threshold = bytes;
        self
    }
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            inline_threshold: Self::DEFAULT_INLINE_THRESHOLD,
            fsync: true,
        }
    }
}

/// Stores large blobs and staged writes as files under a root directory,
/// and metadata records and small blobs in an embedded redb database
/// (`meta.redb`) there (see [`FsOptions::inline_threshold`]).
///
/// Only one `FsBackend` (in any process) may have a root open at a time;
/// [`FsBackend::open`] fails with a clear error otherwise. Cloning gives
/// another handle to the same open backend. The database is closed when
/// the last clone is dropped.
///
/// Blocking file and database work runs on tokio's blocking thread pool, so
/// the methods of [`Backend`] must be called from within a tokio runtime.
/// Long-running streams (staged writes and blob reads) each use one
/// dedicated thread, so that slow clients never tie up the blocking pool.
///
/// ```no_run
/// use wharf_storage::FsBackend;
/// let backend = FsBackend::open("/var/lib/wharf")?;
/// # let _ = backend;
/// # Ok::<(), wharf_storage::BackendError>(())
/// ```
#[derive(Clone)]
pub struct FsBackend {
    inner: Arc<Inner>,
}

/// The handle state; dropping the last handle stops the metadata writer
/// and closes the database.
struct Inner {
    shared: Arc<Shared>,
    writer: Option<mpsc::Sender<WriteRequest>>,
    writer_thread: Option<JoinHandle<()>>,
}

/// What blocking work needs. Work whose caller went away may still hold
/// it after the last handle is dropped, so it must own nothing that has
/// to be released then (the database is closed through [`MetaDb::close`]).
struct Shared {
    root: PathBuf,
    blobs: PathBuf,
    stage: PathBuf,
    tmp: PathBuf,
    db: Arc<MetaDb>,
    stages: Arc<StageLocks>,
    tmp_seq: AtomicU64,
    /// Blobs up to this size are stored inline; 0 for none.
    inline_threshold: u64,
    /// [`FsOptions::fsync`].
    fsync: bool,
}

impl fmt::Debug for FsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsBackend")
            .field("root", &self.inner.shared.root)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer after the batches it holds;
        // waiting for it releases the database (and its lock) before the
        // last handle is gone, so the root can be reopened right away.
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(root = %self.shared.root.display(), "metadata writer thread panicked");
        }
        // Reads whose callers went away (a dropped future does not stop its
        // blocking task) may still hold the database: close it under them.
        self.shared.db.close();
    }
}

impl FsBackend {
    /// Opens (creating if needed) a data directory, with default
    /// [`FsOptions`].
    ///
    /// Creates the layout, opens the metadata database (which takes an
    /// exclusive lock on it: a directory in use by another `FsBackend`, in
    /// this or another process, is an error), and empties `tmp/` of what an
    /// interrupted run left there.
    pub fn open(root: impl AsRef<Path>) -> Result<FsBackend, BackendError> {
        Self::open_with(root, FsOptions::default())
    }

    /// Opens (creating if needed) a data directory, like [`FsBackend::open`],
    /// with explicit settings.
    pub fn open_with(
        root: impl AsRef<Path>,
        options: FsOptions,
    ) -> Result<FsBackend, BackendError> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            fs::create_dir_all(&root)
                .map_err(|e| BackendError::io(format!("create {}", root.display()), e))?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let blobs = root.join("blobs");
        let stage = root.join("stage");
        let tmp = root.join("tmp");
        for dir in [&blobs, &stage, &tmp] {
            if dir.is_dir() {
                continue;
            }
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(BackendError::io(format!("create {}", dir.display()), e)),
            }
        }
        let db_path = root.join(META_FILE);
        // The database lock is what makes the directory ours: only clean
        // tmp/ once it is held.
        let handle = open_handle(&db_path, &root)?;
        if matches!(handle, Handle::ReadOnly(_) | Handle::Repaired(_)) {
            tracing::warn!(
                root = %root.display(),
                "storage is read-only: serving reads only; writes fail until it is writable"
            );
        } else {
            empty_dir(&tmp)?;
            sync_dir(&root)?;
        }

        let db = Arc::new(MetaDb {
            path: db_path,
            root: root.clone(),
            slot: RwLock::new(DbSlot {
                db: Some(handle),
                generation: 0,
                closed: false,
            }),
            last_writable_attempt: Mutex::new(Instant::now()),
            cache: Mutex::new(ReadCache::default()),
        });
        let (writer, requests) = mpsc::channel();
        let writer_db = db.clone();
        let writer_thread = std::thread::Builder::new()
            .name("wharf-fs-meta".into())
            .spawn(move || db_writer(&writer_db, &requests))
            .map_err(|e| BackendError::io("start the metadata writer thread", e))?;
        Ok(FsBackend {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    root,
                    blobs,
                    stage,
                    tmp,
                    db,
                    stages: Arc::new(StageLocks::default()),
                    tmp_seq: AtomicU64::new(0),
                    inline_threshold: options
                        .inline_threshold
                        .min(FsOptions::MAX_INLINE_THRESHOLD),
                    fsync: options.fsync,
                }),
                writer: Some(writer),
                writer_thread: Some(writer_thread),
            }),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.shared.root
    }

    /// Whether the storage is open for reading only (it could not be
    /// written when it was opened, or at the last attempt since): every
    /// write fails until a write or [`Backend::check`] finds it writable.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self.inner.shared.db.read_slot().db,
            Some(Handle::ReadOnly(_) | Handle::Repaired(_))
        )
    }

    /// The writer thread's queue.
    fn writer(&self) -> BackendResult<&mpsc::Sender<WriteRequest>> {
        self.inner.writer.as_ref().ok_or_else(writer_stopped)
    }

    /// Commits a batch through the writer thread (grouped with the batches
    /// of concurrent callers) and waits until it is durable.
    async fn write(&self, batch: Batch) -> BackendResult<()> {
        submit(self.writer()?, batch)?
            .await
            .map_err(|_| writer_stopped())?
    }
}

// ---------------------------------------------------------------------------
// Paths and small file helpers

impl Shared {
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs
            .join(digest.algorithm().as_str())
            .join(hex.get(..2).unwrap_or(hex))
            .join(hex)
    }

    fn stage_path(&self, id: &UploadId) -> PathBuf {
        self.stage.join(id.as_str())
    }

    /// `fsync`s a directory whose entries a blob write changed, unless
    /// blob files are not flushed ([`FsOptions::fsync`]).
    fn sync_blob_dir(&self, dir: &Path) -> BackendResult<()> {
        if self.fsync { sync_dir(dir) } else { Ok(()) }
    }

    /// Whether a blob of `len` bytes is stored inline.
    fn inlines(&self, len: u64) -> bool {
        self.inline_threshold > 0 && len <= self.inline_threshold
    }

    fn tmp_path(&self, kind: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{kind}-{n}"))
    }

    /// Creates `blobs/<alg>/<shard>` if needed (fsyncing each parent whose
    /// entries changed) and returns it.
    fn ensure_shard(&self, digest: &Digest) -> BackendResult<PathBuf> {
        let alg = self.blobs.join(digest.algorithm().as_str());
        ensure_dir(&alg, &self.blobs)?;
        let hex = digest.hex();
        let shard = alg.join(hex.get(..2).unwrap_or(hex));
        ensure_dir(&shard, &alg)?;
        Ok(shard)
    }
}

/// Creates `dir` (whose parent `parent` exists) if it does not exist, and
/// makes its entry durable.
fn ensure_dir(dir: &Path, parent: &Path) -> BackendResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Created concurrently; fsync the parent anyway, since the creator
        // may not have done so yet.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(BackendError::io(format!("create {}", dir.display()), e)),
    }
    sync_dir(parent)
}

fn sync_dir(dir: &Path) -> BackendResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackendError::io(format!("fsync directory {}", dir.display()), e))
}

/// Removes everything inside `dir`.
fn empty_dir(dir: &Path) -> BackendResult<()> {
    let ctx = |e| BackendError::io(format!("clean {}", dir.display()), e);
    for entry in fs::read_dir(dir).map_err(ctx)? {
        let entry = entry.map_err(ctx)?;
        let path = entry.path();
        let result = if entry.file_type().map_err(ctx)?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackendError::io(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Removes a file; an absent file is not an error.
fn remove_if_exists(path: &Path) -> BackendResult<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackendError::io(format!("remove {}", path.display()), e)),
    }
}

/// Writes every byte of `bufs` at the file's position.
fn write_all_vectored(file: &mut File, bufs: &[Bytes]) -> io::Result<()> {
    if let [one] = bufs {
        return file.write_all(one);
    }
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `len` bytes from the file's position.
fn read_exact_bytes(file: &mut File, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file is shorter than expected",
        ));
    }
    Ok(Bytes::from(buf))
}

fn file_mtime(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(UNIX_EPOCH)
}

/// Runs blocking work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> BackendResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> BackendResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Other(Box::new(e)))?
}

// ---------------------------------------------------------------------------
// Errors

/// A failure of the metadata database, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("metadata database: {context}: {source}")]
struct MetaDbError {
    context: &'static str,
    #[source]
    source: redb::Error,
}

fn db_error(context: &'static str, source: impl Into<redb::Error>) -> BackendError {
    BackendError::Other(Box::new(MetaDbError {
        context,
        source: source.into(),
    }))
}

/// Another `FsBackend` holds the data directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "data directory {} is in use by another process (or another FsBackend in this process): {} is locked",
    .root.display(),
    .db.display()
)]
struct InUse {
    root: PathBuf,
    db: PathBuf,
}

/// A record in the metadata table is malformed.
#[derive(Debug, thiserror::Error)]
#[error("metadata database: corrupt record {0:?}")]
struct CorruptRecord(String);

fn closed() -> BackendError {
    BackendError::Other(Box::new(Stopped("the backend was closed")))
}

fn writer_stopped() -> BackendError {
    BackendError::Other(Box::new(Stopped("metadata writer thread stopped")))
}

fn corrupt(key: &str) -> BackendError {
    BackendError::Other(Box::new(CorruptRecord(key.to_owned())))
}

/// An internal thread went away.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Stopped(&'static str);

// ---------------------------------------------------------------------------
// Metadata database

/// The database handle, replaceable: after an I/O failure redb refuses all
/// work (`PreviousIo`) until the database is reopened, which any thread
/// that meets such an error does through [`MetaDb::reopen`]; a handle open
/// for reading only (read-only storage) is replaced by a writable one once
/// the storage can be written.
struct MetaDb {
    path: PathBuf,
    root: PathBuf,
    slot: RwLock<DbSlot>,
    /// When a read-only handle was last opened or tried to become writable.
    last_writable_attempt: Mutex<Instant>,
    /// Small records recently read (see [`ReadCache`]).
    cache: Mutex<ReadCache>,
}

/// Small metadata records recently read, so that a hot lookup (a tag, a
/// manifest's record) skips the database's read transaction. Coherent
/// because this process is the database's only writer and every write goes
/// through the writer thread, which drops the keys it wrote once they are
/// committed (before any caller hears of the write); a reopen drops all.
/// `epoch` counts commits begun and ended: a read inserts what it read only
/// if it started while no commit was in flight (`writing`) and none began
/// since, so what it read is the latest committed value. (Between a commit
/// and the drop of its keys, two reads could otherwise insert an old and a
/// new value in either order.)
#[derive(Default)]
struct ReadCache {
    epoch: u64,
    writing: bool,
    map: HashMap<Box<str>, MetaValue>,
    bytes: usize,
}

impl ReadCache {
    /// What an entry counts against [`CACHE_BYTES`].
    fn size(key: &str, value: &MetaValue) -> usize {
        key.len() + value.value.len() + 64
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// Records larger than this are not cached.
const CACHE_VALUE_MAX: usize = 1024;
/// When the cached keys and values pass this, the cache starts over.
const CACHE_BYTES: usize = 1 << 20;

/// How often, at most, a read-only database is tried for writing.
const WRITABLE_RETRY: Duration = Duration::from_secs(1);

struct DbSlot {
    /// `None` after a failed reopen (the next user tries again) or once
    /// closed.
    db: Option<Handle>,
    /// Bumped by every reopen, so that concurrent users reopen once.
    generation: u64,
    /// Set when the last backend handle is dropped; never reopened then.
    closed: bool,
}

/// The open database.
enum Handle {
    Writable(Database),
    /// The storage could not be written when the database was opened.
    ReadOnly(ReadOnlyDatabase),
    /// The storage could not be written and the database was not closed
    /// cleanly: repaired in memory ([`overlay::MemoryOverlay`]), read only.
    Repaired(Database),
}

impl Handle {
    fn reader(&self) -> &dyn ReadableDatabase {
        match self {
            Handle::Writable(db) | Handle::Repaired(db) => db,
            Handle::ReadOnly(db) => db,
        }
    }
}

/// How every handle to the metadata database is opened.
fn db_builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(META_CACHE_BYTES);
    builder
}

/// Opens (creating if needed) the database for writing, with its tables.
fn open_database(path: &Path) -> Result<Database, redb::Error> {
    #[cfg(test)]
    if READ_ONLY_FILES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|p| p == path)
    {
        return Err(redb::Error::Io(io::ErrorKind::ReadOnlyFilesystem.into()));
    }
    let db = db_builder().create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(META_TABLE)?;
    txn.open_table(BLOB_TABLE)?;
    txn.open_table(PIECE_TABLE)?;
    txn.open_table(TAIL_TABLE)?;
    txn.commit()?;
    Ok(db)
}

/// Tests: database files that act as if on read-only storage.
#[cfg(test)]
static READ_ONLY_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether opening for writing failed because the storage cannot be
/// written (as opposed to failing).
fn is_read_only_storage(e: &redb::Error) -> bool {
    let redb::Error::Io(io) = e else {
        return false;
    };
    matches!(
        io.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

/// Opens the database for writing or, when the storage cannot be written,
/// for reading.
fn open_handle(path: &Path, root: &Path) -> BackendResult<Handle> {
    let error = match open_database(path) {
        Ok(db) => return Ok(Handle::Writable(db)),
        Err(redb::Error::DatabaseAlreadyOpen) => {
            return Err(BackendError::Other(Box::new(InUse {
                root: root.to_path_buf(),
                db: path.to_path_buf(),
            })));
        }
        Err(e) if is_read_only_storage(&e) => e,
        Err(e) => return Err(db_error("open", e)),
    };
    let builder = db_builder();
    match builder.open_read_only(path) {
        Ok(db) => Ok(Handle::ReadOnly(db)),
        Err(redb::DatabaseError::RepairAborted) => {
            // Not closed cleanly: repair it with the repair's writes kept in
            // memory, the file untouched.
            let repaired = overlay::MemoryOverlay::open(path)
                .map_err(redb::DatabaseError::from)
                .and_then(|o| builder.create_with_backend(o));
            match repaired {
                Ok(db) => {
                    tracing::warn!(
                        db = %path.display(),
                        "metadata database was not closed cleanly and cannot be written: repaired in memory for reading"
                    );
                    Ok(Handle::Repaired(db))
                }
                Err(e) => Err(BackendError::Other(Box::new(NeedsRepair {
                    db: path.to_path_buf(),
                    cause: error,
                    repair: e,
                }))),
            }
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(BackendError::Other(Box::new(InUse {
                root: root.to_path_buf(),
                db: path.to_path_buf(),
            })))
        }
        // The first error says why writing was not possible; a database
        // that is missing on read-only storage fails with it too.
        Err(_) => Err(db_error("open", error)),
    }
}

/// The database is on storage that cannot be written, was not closed
/// cleanly, and could not be repaired in memory either.
#[derive(Debug, thiserror::Error)]
#[error(
    "metadata database {} cannot be written ({cause}) and was not closed cleanly; repairing it in memory failed ({repair}): open it once on writable storage, which repairs it",
    .db.display()
)]
struct NeedsRepair {
    db: PathBuf,
    cause: redb::Error,
    repair: redb::DatabaseError,
}

/// A write to storage that is open read-only.
fn read_only_error(root: &Path) -> BackendError {
    BackendError::io(
        format!("data directory {} is read-only", root.display()),
        io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
    )
}

/// Whether an error latches the database until it is reopened.
fn needs_reopen(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::PreviousIo | redb::Error::Io(_) | redb::Error::DatabaseClosed
    )
}

impl MetaDb {
    fn read_slot(&self) -> std::sync::RwLockReadGuard<'_, DbSlot> {
        self.slot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a read `f` on the database; after an error that latches the
    /// database (or when a reopen failed before), reopens it and runs `f`
    /// once more.
    fn with_db<T>(
        &self,
        context: &'static str,
        f: impl Fn(&dyn ReadableDatabase) -> Result<T, redb::Error>,
    ) -> BackendResult<T> {
        self.run(context, |handle| Some(f(handle.reader())))
    }

    /// Runs a write `f` on the database, like [`MetaDb::with_db`]; on a
    /// database open read-only, first tries to reopen it for writing
    /// (at most once per [`WRITABLE_RETRY`]), and fails if it stays
    /// read-only.
    fn with_writable_db<T>(
        &self,
        context: &'static str,
        f: impl Fn(&Database) -> Result<T, redb::Error>,
    ) -> BackendResult<T> {
        self.run(context, |handle| match handle {
            Handle::Writable(db) => Some(f(db)),
            Handle::ReadOnly(_) | Handle::Repaired(_) => None,
        })
    }

    /// `f` answers `None` for a handle it cannot use (read-only).
    fn run<T>(
        &self,
        context: &'static str,
        f: impl Fn(&Handle) -> Option<Result<T, redb::Error>>,
    ) -> BackendResult<T> {
        let mut retried = false;
        loop {
            let (generation, result) = {
                let slot = self.read_slot();
                if slot.closed {
                    return Err(closed());
                }
                (slot.generation, slot.db.as_ref().map(&f))
            };
            match result {
                Some(Some(Ok(value))) => return Ok(value),
                Some(Some(Err(e))) if retried || !needs_reopen(&e) => {
                    return Err(db_error(context, e));
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "reopening the metadata database");
                }
                // Reopening is tried only once the file can be opened for
                // writing: reopening a database repaired in memory repairs
                // it again, which reads all of it.
                Some(None)
                    if retried
                        || !self.writable_retry_due()
                        || OpenOptions::new().write(true).open(&self.path).is_err() =>
                {
                    return Err(read_only_error(&self.root));
                }
                Some(None) => {}
                None if retried => {
                    return Err(BackendError::Other(Box::new(Stopped(
                        "metadata database is closed after an I/O error and could not be reopened",
                    ))));
                }
                None => {}
            }
            retried = true;
            self.reopen(generation)?;
        }
    }

    /// Whether it is time to try a read-only database for writing again
    /// (and if so, notes the attempt).
    fn writable_retry_due(&self) -> bool {
        let mut last = self
            .last_writable_attempt
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < WRITABLE_RETRY {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Closes and reopens the database, unless another thread already did
    /// since `seen_generation`.
    fn reopen(&self, seen_generation: u64) -> BackendResult<()> {
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        if slot.closed {
            return Err(closed());
        }
        if slot.generation != seen_generation && slot.db.is_some() {
            return Ok(());
        }
        // The old handle must be gone (and its file lock released) before
        // the file can be opened again.
        let was_read_only = matches!(slot.db, Some(Handle::ReadOnly(_) | Handle::Repaired(_)));
        drop(slot.db.take());
        slot.generation += 1;
        let handle = open_handle(&self.path, &self.root)?;
        match (&handle, was_read_only) {
            (Handle::Writable(_), true) => {
                tracing::info!(root = %self.root.display(), "storage is writable again");
            }
            (Handle::ReadOnly(_) | Handle::Repaired(_), false) => {
                tracing::warn!(root = %self.root.display(), "storage became read-only: serving reads only");
            }
            _ => {}
        }
        slot.db = Some(handle);
        // Reads in progress will not cache what they read.
        let mut cache = self.cache();
        cache.epoch += 1;
        cache.clear();
        Ok(())
    }

    fn cache(&self) -> MutexGuard<'_, ReadCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached record, or the epoch a read of it starts in.
    fn cached(&self, key: &str) -> Result<MetaValue, u64> {
        let cache = self.cache();
        cache.map.get(key).cloned().ok_or(cache.epoch)
    }

    /// Caches `value`, read from the database since `epoch` (not if a
    /// commit began since, or is in flight: a read that started during it
    /// has its epoch).
    fn cache_insert(&self, epoch: u64, key: &str, value: &MetaValue) {
        if value.value.len() > CACHE_VALUE_MAX {
            return;
        }
        let mut cache = self.cache();
        if cache.writing || cache.epoch != epoch {
            return;
        }
        let size = ReadCache::size(key, value);
        if cache.bytes + size > CACHE_BYTES {
            cache.clear();
        }
        if cache.map.insert(key.into(), value.clone()).is_none() {
            cache.bytes += size;
        }
    }

    /// Runs a commit of `keys`: reads in progress or starting meanwhile
    /// cache nothing, and the cached records of `keys` are dropped once it
    /// is done, before any caller hears of it.
    fn commit<'k>(
        &self,
        keys: impl Iterator<Item = &'k str>,
        commit: impl Fn(&Database) -> Result<(), redb::Error>,
    ) -> BackendResult<()> {
        {
            let mut cache = self.cache();
            cache.epoch += 1;
            cache.writing = true;
        }
        let result = self.with_writable_db("write", commit);
        self.cache_drop(keys);
        result
    }

    /// Drops the cached records of `keys` (a commit of them has ended).
    fn cache_drop<'k>(&self, keys: impl Iterator<Item = &'k str>) {
        let mut cache = self.cache();
        cache.epoch += 1;
        cache.writing = false;
        for key in keys {
            if let Some((key, value)) = cache.map.remove_entry(key) {
                cache.bytes -= ReadCache::size(&key, &value);
            }
        }
    }

    /// Closes the database for good (waiting for the reads in progress).
    fn close(&self) {
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        slot.closed = true;
        drop(slot.db.take());
    }

    #[cfg(test)]
    fn generation(&self) -> u64 {
        self.read_slot().generation
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn encode_record(modified_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + value.len());
    record.extend_from_slice(&modified_ms.to_le_bytes());
    record.extend_from_slice(value);
    record
}

/// Splits a stored record into modification time and value.
fn decode_record(key: &str, record: Vec<u8>) -> BackendResult<(SystemTime, Bytes)> {
    let Some(time) = record.first_chunk::<8>() else {
        return Err(BackendError::Other(Box::new(CorruptRecord(key.to_owned()))));
    };
    let modified = UNIX_EPOCH + Duration::from_millis(u64::from_le_bytes(*time));
    Ok((modified, Bytes::from(record).slice(8..)))
}

/// One caller's write, committed in one transaction: an inline blob change
/// first, then the metadata operations in order.
struct Batch {
    blob: Option<BlobChange>,
    ops: Vec<MetaOp>,
    /// The caller does not need the batch durable when it returns.
    relaxed: bool,
}

impl Batch {
    /// The metadata keys the batch writes.
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|op| {
            let (MetaOp::Put(key, _) | MetaOp::PutIfAbsent(key, _) | MetaOp::Delete(key)) = op;
            key.as_str()
        })
    }
}

/// A change to the inline blobs.
enum BlobChange {
    /// Stores a blob inline, unless it is stored already (inline, or as
    /// the file `file`): an existing blob is left as it is.
    Put {
        key: String,
        data: Bytes,
        file: PathBuf,
    },
    /// Removes an inline blob (absent is fine).
    Delete { key: String },
}

impl Batch {
    fn meta(ops: Vec<MetaOp>) -> Batch {
        Batch {
            blob: None,
            ops,
            relaxed: false,
        }
    }

    fn blob(change: BlobChange, ops: Vec<MetaOp>) -> Batch {
        Batch {
            blob: Some(change),
            ops,
            relaxed: false,
        }
    }

    /// Bytes the batch adds to a transaction (roughly).
    fn bytes(&self) -> usize {
        let blob = match &self.blob {
            Some(BlobChange::Put { data, .. }) => data.len(),
            _ => 0,
        };
        self.ops.iter().fold(blob, |n, op| {
            n.saturating_add(match op {
                MetaOp::Put(k, v) | MetaOp::PutIfAbsent(k, v) => k.as_str().len() + v.len(),
                MetaOp::Delete(k) => k.as_str().len(),
            })
        })
    }

    /// Whether the caller waits for durability. A relaxed batch does not,
    /// nor does the removal of an inline blob on its own (like the removal
    /// of a blob file, it is not fsynced); the next durable commit persists
    /// them.
    fn durable(&self) -> bool {
        !(self.relaxed
            || (self.ops.is_empty() && matches!(self.blob, Some(BlobChange::Delete { .. }))))
    }
}

/// Tests: metadata keys whose write fails inside the transaction, to check
/// that a batch is all or nothing.
#[cfg(test)]
static FAIL_ON_KEYS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The inline blob tables, open in a write transaction.
struct BlobTables<'txn> {
    index: redb::Table<'txn, &'static str, &'static [u8]>,
    pieces: redb::Table<'txn, &'static [u8], &'static [u8]>,
    tails: redb::Table<'txn, &'static str, &'static [u8]>,
}

impl BlobTables<'_> {
    fn apply(&mut self, change: &BlobChange, now: u64) -> Result<(), redb::Error> {
        match change {
            BlobChange::Put { key, data, file } => {
                // Stat the file only when needed; an error there is taken
                // as "absent" (storing a blob twice is harmless).
                if self.index.get(key.as_str())?.is_some() || matches!(file.try_exists(), Ok(true))
                {
                    return Ok(());
                }
                self.index.insert(
                    key.as_str(),
                    encode_blob_index(now, data.len() as u64).as_slice(),
                )?;
                let mut at = 0;
                for (number, size) in (0u32..).zip(piece_sizes(data.len())) {
                    let piece = data.get(at..at + size).unwrap_or_default();
                    self.pieces
                        .insert(piece_key(key, number).as_slice(), piece)?;
                    at += size;
                }
                let tail = data.get(at..).unwrap_or_default();
                if !tail.is_empty() {
                    self.tails.insert(key.as_str(), tail)?;
                }
            }
            BlobChange::Delete { key } => {
                self.index.remove(key.as_str())?;
                let (first, last) = (piece_key(key, 0), piece_key(key, u32::MAX));
                self.pieces
                    .retain_in(first.as_slice()..=last.as_slice(), |_, _| false)?;
                self.tails.remove(key.as_str())?;
            }
        }
        Ok(())
    }
}

/// Applies a group of batches in one transaction, durable unless no batch
/// needs it.
fn apply_group(db: &Database, batches: &[&Batch]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    let durable = batches.iter().any(|b| b.durable());
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut table = txn.open_table(META_TABLE)?;
        let mut blobs = if batches.iter().any(|b| b.blob.is_some()) {
            Some(BlobTables {
                index: txn.open_table(BLOB_TABLE)?,
                pieces: txn.open_table(PIECE_TABLE)?,
                tails: txn.open_table(TAIL_TABLE)?,
            })
        } else {
            None
        };
        let now = unix_millis(SystemTime::now());
        for batch in batches {
            if let (Some(change), Some(blobs)) = (&batch.blob, blobs.as_mut()) {
                blobs.apply(change, now)?;
            }
            for op in &batch.ops {
                #[cfg(test)]
                {
                    let (MetaOp::Put(key, _) | MetaOp::PutIfAbsent(key, _) | MetaOp::Delete(key)) =
                        op;
                    let fail = FAIL_ON_KEYS.lock().unwrap_or_else(|p| p.into_inner());
                    if fail.iter().any(|k| k == key.as_str()) {
                        return Err(redb::Error::Corrupted(format!(
                            "injected failure writing {key}"
                        )));
                    }
                }
                match op {
                    MetaOp::Put(key, value) => {
                        table.insert(key.as_str(), encode_record(now, value).as_slice())?;
                    }
                    MetaOp::PutIfAbsent(key, value) => {
                        if table.get(key.as_str())?.is_none() {
                            table.insert(key.as_str(), encode_record(now, value).as_slice())?;
                        }
                    }
                    MetaOp::Delete(key) => {
                        table.remove(key.as_str())?;
                    }
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// One caller's batch, waiting for the writer thread.
struct WriteRequest {
    batch: Batch,
    reply: oneshot::Sender<BackendResult<()>>,
}

/// Queues a batch for the writer thread; the answer comes when it is
/// committed.
fn submit(
    writer: &mpsc::Sender<WriteRequest>,
    batch: Batch,
) -> BackendResult<oneshot::Receiver<BackendResult<()>>> {
    let (reply, answer) = oneshot::channel();
    writer
        .send(WriteRequest { batch, reply })
        .map_err(|_| writer_stopped())?;
    Ok(answer)
}

/// The database writer: owns all write transactions. Takes every batch
/// that is waiting (up to a count and a size), applies them in arrival
/// order in one transaction, commits (one fsync) and answers them all.
fn db_writer(db: &MetaDb, rx: &mpsc::Receiver<WriteRequest>) {
    let mut held: Option<WriteRequest> = None;
    loop {
        let first = match held.take() {
            Some(request) => request,
            None => match rx.recv() {
                Ok(request) => request,
                Err(_) => break,
            },
        };
        let mut bytes = first.batch.bytes();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES {
            let Ok(request) = rx.try_recv() else { break };
            let more = request.batch.bytes();
            if bytes.saturating_add(more) > MAX_GROUP_BYTES {
                // It starts the next group.
                held = Some(request);
                break;
            }
            bytes += more;
            group.push(request);
        }
        // Batches that need no fsync are committed first, on their own
        // (a commit without an fsync is cheap), so their callers never wait
        // for the durable commit of the others. Concurrent callers' batches
        // have no order among themselves; one caller's are never in the
        // same group (each waits for its reply).
        let (relaxed, durable): (Vec<_>, Vec<_>) =
            group.into_iter().partition(|r| !r.batch.durable());
        if !relaxed.is_empty() {
            commit_group(db, relaxed);
        }
        if !durable.is_empty() {
            commit_group(db, durable);
        }
    }
}

fn commit_group(db: &MetaDb, mut group: Vec<WriteRequest>) {
    let batches: Vec<&Batch> = group.iter().map(|r| &r.batch).collect();
    let result = db.commit(batches.iter().flat_map(|b| b.keys()), |db| {
        apply_group(db, &batches)
    });
    match result {
        Ok(()) => {
            for request in group {
                let _ = request.reply.send(Ok(()));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(request) = group.pop() {
                let _ = request.reply.send(Err(e));
            }
        }
        Err(e) => {
            // Keep one failing batch from failing the others: apply each on
            // its own.
            tracing::warn!(error = %e, batches = group.len(), "grouped metadata commit failed; retrying batch by batch");
            for request in group {
                let result = db.commit(request.batch.keys(), |db| {
                    apply_group(db, &[&request.batch])
                });
                let _ = request.reply.send(result);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Inline blobs

/// The sizes of the pieces a blob of `len` bytes is stored in: pieces that
/// fill 1 MiB pages while they can, then pieces filling smaller pages (512
/// KiB down to 4 KiB), largest first. What is left (less than a 4 KiB
/// page's worth) is the tail.
fn piece_sizes(len: usize) -> impl Iterator<Item = usize> {
    let mut rest = len;
    let mut order = PIECE_MAX_ORDER;
    std::iter::from_fn(move || {
        loop {
            let size = (DB_PAGE << order) - PIECE_HEADROOM;
            if rest >= size {
                rest -= size;
                return Some(size);
            }
            if order == 0 {
                return None;
            }
            order -= 1;
        }
    })
}

/// The key of a blob's piece: digest text, then the big-endian number, so
/// that a blob's pieces are adjacent and in order (digests of one algorithm
/// have one length, so no digest's keys fall between another's).
fn piece_key(digest: &str, number: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(digest.len() + 4);
    key.extend_from_slice(digest.as_bytes());
    key.extend_from_slice(&number.to_be_bytes());
    key
}

fn encode_blob_index(modified_ms: u64, size: u64) -> [u8; 16] {
    let mut record = [0u8; 16];
    record[..8].copy_from_slice(&modified_ms.to_le_bytes());
    record[8..].copy_from_slice(&size.to_le_bytes());
    record
}

/// The commit time and size in an inline blob's index record.
fn decode_blob_index(record: &[u8]) -> Option<(SystemTime, u64)> {
    let (time, size) = record.split_first_chunk::<8>()?;
    let size: &[u8; 8] = size.try_into().ok()?;
    Some((
        UNIX_EPOCH + Duration::from_millis(u64::from_le_bytes(*time)),
        u64::from_le_bytes(*size),
    ))
}

/// Reads bytes `range` (default: all) of an inline blob in one read
/// transaction: `None` when the blob is not inline; the inner error for a
/// range outside the blob or missing pieces.
fn read_inline(
    db: &dyn ReadableDatabase,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<Option<BackendResult<Bytes>>, redb::Error> {
    let txn = db.begin_read()?;
    let index = txn.open_table(BLOB_TABLE)?;
    let Some(record) = index.get(key)? else {
        return Ok(None);
    };
    let Some((_, size)) = decode_blob_index(record.value()) else {
        return Ok(Some(Err(corrupt(key))));
    };
    let r = range.unwrap_or(0..size);
    if r.start > r.end || r.end > size {
        return Ok(Some(Err(BackendError::NotSupported(
            "range outside the blob",
        ))));
    }
    let want = r.end - r.start;
    let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    // Copies the part of a piece at `pos` that falls in the range.
    let mut take = |piece: &[u8], pos: u64| {
        let end = pos + piece.len() as u64;
        let (from, to) = (r.start.max(pos), r.end.min(end));
        if from < to
            && let Some(part) = piece.get((from - pos) as usize..(to - pos) as usize)
        {
            out.extend_from_slice(part);
        }
        end
    };
    let mut pos = 0;
    if want > 0 {
        let pieces = txn.open_table(PIECE_TABLE)?;
        let (first, last) = (piece_key(key, 0), piece_key(key, u32::MAX));
        for item in pieces.range::<&[u8]>(first.as_slice()..=last.as_slice())? {
            if pos >= r.end {
                break;
            }
            let (_, piece) = item?;
            pos = take(piece.value(), pos);
        }
        if pos < r.end {
            let tails = txn.open_table(TAIL_TABLE)?;
            if let Some(tail) = tails.get(key)? {
                take(tail.value(), pos);
            }
        }
    }
    if out.len() as u64 != want {
        return Ok(Some(Err(corrupt(key))));
    }
    Ok(Some(Ok(Bytes::from(out))))
}

impl Shared {
    /// Size and commit time of an inline blob, or `None`.
    fn inline_meta(&self, digest: &Digest) -> BackendResult<Option<BlobMeta>> {
        let key = digest.as_str();
        let record = self.db.with_db("read", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(BLOB_TABLE)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })?;
        let Some(record) = record else {
            return Ok(None);
        };
        let (modified, size) = decode_blob_index(&record).ok_or_else(|| corrupt(key))?;
        Ok(Some(BlobMeta {
            digest: digest.clone(),
            size,
            modified,
        }))
    }

    /// Reads an inline blob, or `None` when it is not inline.
    fn read_inline(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<Option<Bytes>> {
        let key = digest.as_str();
        match self
            .db
            .with_db("read", |db| read_inline(db, key, range.clone()))?
        {
            None => Ok(None),
            Some(result) => result.map(Some),
        }
    }

    /// Inline blobs in digest order after `start_after`, at most `limit`.
    fn list_inline(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        let rows = self.db.with_db("list", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(BLOB_TABLE)?;
            let start = match start_after {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Unbounded,
            };
            let mut rows = Vec::new();
            for item in table.range::<&str>((start, Bound::Unbounded))? {
                if rows.len() >= limit {
                    break;
                }
                let (key, record) = item?;
                // Keys are written from digests; anything else is skipped.
                if let Ok(digest) = Digest::parse(key.value()) {
                    rows.push((digest, record.value().to_vec()));
                }
            }
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(digest, record)| {
                let (modified, size) =
                    decode_blob_index(&record).ok_or_else(|| corrupt(digest.as_str()))?;
                Ok(BlobMeta {
                    digest,
                    size,
                    modified,
                })
            })
            .collect()
    }

    /// Whether a blob is stored (inline or as a file).
    fn blob_exists(&self, digest: &Digest) -> BackendResult<bool> {
        if self.inline_meta(digest)?.is_some() {
            return Ok(true);
        }
        let blob = self.blob_path(digest);
        blob.try_exists()
            .map_err(|e| BackendError::io(format!("stat {}", blob.display()), e))
    }
}

/// Merges two digest-ordered listings into the first `limit` distinct
/// digests; a digest in both is listed once, as in `first`.
fn merge_listings(first: Vec<BlobMeta>, second: Vec<BlobMeta>, limit: usize) -> Vec<BlobMeta> {
    let mut out = Vec::with_capacity(limit.min(first.len() + second.len()));
    let mut a = first.into_iter().peekable();
    let mut b = second.into_iter().peekable();
    while out.len() < limit {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.digest.cmp(&y.digest) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    b.next();
                    a.next()
                }
            },
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(meta) => out.push(meta),
            None => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Per-stage coordination

/// Serializes the operations on one stage within this process (the
/// database lock keeps other processes out of the directory). Every
/// `stage_append`, `stage_commit` and `stage_abort` bumps the stage's
/// generation; an append whose generation is no longer current stops
/// before its next write, so it can never write into a stage that was
/// rewound by a newer append, or into a blob that the stage became.
#[derive(Default)]
struct StageLocks {
    map: Mutex<HashMap<UploadId, Weak<StageSlot>>>,
}

#[derive(Default)]
struct StageSlot {
    generation: Mutex<u64>,
}

impl StageLocks {
    fn lock_map(&self) -> MutexGuard<'_, HashMap<UploadId, Weak<StageSlot>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn acquire(self: &Arc<Self>, id: UploadId) -> StageHandle {
        let mut map = self.lock_map();
        let slot = match map.get(&id).and_then(Weak::upgrade) {
            Some(slot) => slot,
            None => {
                let slot = Arc::new(StageSlot::default());
                map.insert(id, Arc::downgrade(&slot));
                slot
            }
        };
        StageHandle {
            locks: self.clone(),
            id,
            slot: Some(slot),
        }
    }
}

/// A reference to a stage's slot; the map entry goes away with the last one.
struct StageHandle {
    locks: Arc<StageLocks>,
    id: UploadId,
    slot: Option<Arc<StageSlot>>,
}

impl StageHandle {
    fn lock(&self) -> Option<MutexGuard<'_, u64>> {
        self.slot
            .as_ref()
            .map(|s| s.generation.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for StageHandle {
    fn drop(&mut self) {
        drop(self.slot.take());
        let mut map = self.locks.lock_map();
        if map.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&self.id);
        }
    }
}

// ---------------------------------------------------------------------------
// Staged writes

/// What a `stage_append` writer thread owns.
struct StageWriter {
    id: UploadId,
    path: PathBuf,
    file: File,
    pos: u64,
    handle: StageHandle,
    generation: u64,
    rx: mpsc::Receiver<Bytes>,
    permits: Arc<Semaphore>,
    abort: Arc<AtomicBool>,
    /// Where the last background flush was started.
    synced_from: u64,
    syncer: Option<Syncer>,
    /// [`FsOptions::fsync`].
    fsync: bool,
}

/// A helper thread that `fdatasync`s a stage (through its own handle to
/// the same open file) whenever asked, while the writer goes on writing.
///
/// Its errors must reach the caller: Linux reports a writeback error once
/// per open file description, which the handles share, so an error seen
/// here would not be seen again by the writer's final `fdatasync`.
struct Syncer {
    kick: mpsc::SyncSender<()>,
    thread: JoinHandle<io::Result<()>>,
}

impl Syncer {
    /// Starts a syncer; `None` (and no background flushing) if the system
    /// is out of file handles or threads.
    fn start(file: &File) -> Option<Syncer> {
        let file = file.try_clone().ok()?;
        let (kick, kicks) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("wharf-fs-sync".into())
            .spawn(move || {
                while kicks.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(Syncer { kick, thread })
    }

    /// Waits for the syncer to finish and returns its error, if any.
    fn finish(self) -> io::Result<()> {
        drop(self.kick);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("background sync thread panicked")))
    }
}

/// Semaphore permits (bytes) a queued chunk holds.
fn permits_for(len: usize) -> usize {
    len.clamp(1, WRITE_IN_FLIGHT)
}

impl StageWriter {
    fn run(mut self) -> BackendResult<u64> {
        let result = self.write_all_input();
        if result.is_err() {
            // Wakes the feeding side if it waits for room.
            self.permits.close();
        }
        result
    }

    fn write_all_input(&mut self) -> BackendResult<u64> {
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        loop {
            let chunk = match self.rx.try_recv() {
                Ok(chunk) => chunk,
                Err(TryRecvError::Empty) => {
                    // Never sleep while holding data: the feeder may be
                    // waiting for the room it takes.
                    if !pending.is_empty() {
                        self.flush(&mut pending, &mut pending_len)?;
                        continue;
                    }
                    match self.rx.recv() {
                        Ok(chunk) => chunk,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            pending_len += chunk.len();
            pending.push(chunk);
            if pending_len >= WRITE_CHUNK {
                self.flush(&mut pending, &mut pending_len)?;
            }
        }
        if self.abort.load(Ordering::Acquire) {
            // The input failed or the caller went away: what is on disk
            // past the offset is not acknowledged, no need to keep more.
            return Ok(self.pos);
        }
        self.flush(&mut pending, &mut pending_len)?;
        self.finish_background_sync()?;
        if self.fsync {
            self.file.sync_data().map_err(|e| {
                BackendError::io(format!("fsync staged write {}", self.path.display()), e)
            })?;
        }
        Ok(self.pos)
    }

    fn flush(&mut self, pending: &mut Vec<Bytes>, pending_len: &mut usize) -> BackendResult<()> {
        if pending.is_empty() {
            return Ok(());
        }
        if self.abort.load(Ordering::Acquire) {
            // Nobody waits for what is still queued.
            return Err(BackendError::Other(Box::new(Stopped(
                "staged write cancelled",
            ))));
        }
        {
            let Some(current) = self.handle.lock() else {
                return Err(BackendError::NotFound(self.id.to_string()));
            };
            if *current != self.generation {
                drop(current);
                return Err(self.superseded());
            }
            write_all_vectored(&mut self.file, pending).map_err(|e| {
                BackendError::io(format!("write staged write {}", self.path.display()), e)
            })?;
        }
        self.pos += *pending_len as u64;
        let permits: usize = pending.iter().map(|b| permits_for(b.len())).sum();
        self.permits.add_permits(permits);
        pending.clear();
        *pending_len = 0;
        if self.fsync && self.pos - self.synced_from >= BACKGROUND_SYNC_EVERY {
            self.start_background_sync()?;
        }
        Ok(())
    }

    fn start_background_sync(&mut self) -> BackendResult<()> {
        self.synced_from = self.pos;
        if self.syncer.is_none() {
            self.syncer = Syncer::start(&self.file);
        }
        let Some(syncer) = &self.syncer else {
            return Ok(());
        };
        match syncer.kick.try_send(()) {
            // Full: a flush is pending and will cover this too.
            Ok(()) | Err(mpsc::TrySendError::Full(())) => Ok(()),
            Err(mpsc::TrySendError::Disconnected(())) => self.finish_background_sync(),
        }
    }

    fn finish_background_sync(&mut self) -> BackendResult<()> {
        match self.syncer.take() {
            Some(syncer) => syncer.finish().map_err(|e| {
                BackendError::io(format!("fsync staged write {}", self.path.display()), e)
            }),
            None => Ok(()),
        }
    }

    /// The error for an append overtaken by another operation on its stage.
    fn superseded(&self) -> BackendError {
        match fs::metadata(&self.path) {
            Ok(meta) => BackendError::OffsetMismatch {
                id: self.id,
                offset: self.pos,
                actual: meta.len(),
            },
            Err(_) => BackendError::NotFound(self.id.to_string()),
        }
    }
}

/// The feeding side of a staged write: queues chunks for the writer thread
/// within the in-flight budget. Dropped before the input ended (the call
/// was cancelled, or the input failed), it tells the writer to stop without
/// writing what is still queued.
struct Feeder {
    tx: Option<mpsc::Sender<Bytes>>,
    permits: Arc<Semaphore>,
    abort: Arc<AtomicBool>,
    finished: bool,
}

impl Feeder {
    /// Queues a chunk; `false` when the writer has stopped.
    async fn send(&self, chunk: Bytes) -> bool {
        let Some(tx) = &self.tx else { return false };
        let n = u32::try_from(permits_for(chunk.len())).unwrap_or(u32::MAX);
        match self.permits.acquire_many(n).await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        tx.send(chunk).is_ok()
    }

    /// Closes the queue; the writer writes what is queued only if `complete`.
    fn close(&mut self, complete: bool) {
        self.finished = complete;
        if !complete {
            self.abort.store(true, Ordering::Release);
        }
        drop(self.tx.take());
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        if !self.finished {
            self.abort.store(true, Ordering::Release);
        }
    }
}

/// Opens (creating) a stage for writing at `offset`: checks its length,
/// cuts it there and claims it (bumps the generation).
fn open_stage_for_append(
    path: &Path,
    id: UploadId,
    offset: u64,
    handle: &StageHandle,
) -> BackendResult<(File, u64)> {
    let ctx = |e| BackendError::io(format!("open staged write {}", path.display()), e);
    let mut current = handle
        .lock()
        .ok_or_else(|| BackendError::NotFound(id.to_string()))?;
    *current += 1;
    let generation = *current;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(ctx)?;
    let len = file.metadata().map_err(ctx)?.len();
    if len < offset {
        return Err(BackendError::OffsetMismatch {
            id,
            offset,
            actual: len,
        });
    }
    if len > offset {
        file.set_len(offset).map_err(ctx)?;
    }
    file.seek(SeekFrom::Start(offset)).map_err(ctx)?;
    file.set_modified(SystemTime::now()).map_err(ctx)?;
    Ok((file, generation))
}

impl Shared {
    /// Commits a stage; one of `len` bytes or fewer goes inline, through
    /// `writer`, while the stage is still claimed.
    fn commit_stage(
        &self,
        id: UploadId,
        len: u64,
        digest: &Digest,
        writer: &mpsc::Sender<WriteRequest>,
    ) -> BackendResult<()> {
        let handle = self.stages.acquire(id);
        let mut current = handle
            .lock()
            .ok_or_else(|| BackendError::NotFound(id.to_string()))?;
        // Whatever append is still running on this stage stops before its
        // next write.
        *current += 1;
        let path = self.stage_path(&id);
        let ctx = |e| BackendError::io(format!("commit staged write {}", path.display()), e);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound(id.to_string()));
            }
            Err(e) => return Err(ctx(e)),
        };
        let actual = file.metadata().map_err(ctx)?.len();
        if actual < len {
            return Err(BackendError::OffsetMismatch {
                id,
                offset: len,
                actual,
            });
        }
        if self.blob_exists(digest)? {
            drop(file);
            remove_if_exists(&path)?;
            return self.sync_blob_dir(&self.stage);
        }
        if self.inlines(len) {
            let n = usize::try_from(len)
                .map_err(|_| BackendError::NotSupported("stage too large to read"))?;
            let mut file = file;
            let data = read_exact_bytes(&mut file, n).map_err(ctx)?;
            drop(file);
            submit(
                writer,
                Batch::blob(
                    BlobChange::Put {
                        key: digest.to_string(),
                        data,
                        file: self.blob_path(digest),
                    },
                    Vec::new(),
                ),
            )?
            .blocking_recv()
            .map_err(|_| writer_stopped())??;
            // The blob is durable; the stage's removal need not be (a stage
            // that comes back after a crash expires with its session).
            return remove_if_exists(&path);
        }
        let blob = self.blob_path(digest);
        if actual > len {
            file.set_len(len).map_err(ctx)?;
        }
        // The blob's time is its commit time (garbage collection's grace
        // period counts from it), not the time of the last append.
        file.set_modified(SystemTime::now()).map_err(ctx)?;
        if self.fsync {
            file.sync_all().map_err(ctx)?;
        }
        drop(file);
        let shard = self.ensure_shard(digest)?;
        fs::rename(&path, &blob).map_err(|e| {
            BackendError::io(
                format!("rename {} to {}", path.display(), blob.display()),
                e,
            )
        })?;
        self.sync_blob_dir(&shard)?;
        self.sync_blob_dir(&self.stage)
    }

    fn abort_stage(&self, id: UploadId) -> BackendResult<()> {
        let handle = self.stages.acquire(id);
        let mut current = handle
            .lock()
            .ok_or_else(|| BackendError::NotFound(id.to_string()))?;
        *current += 1;
        remove_if_exists(&self.stage_path(&id))
    }

    fn list_stages(&self) -> BackendResult<Vec<StageMeta>> {
        let ctx = |e| BackendError::io(format!("list {}", self.stage.display()), e);
        let mut stages = Vec::new();
        for entry in fs::read_dir(&self.stage).map_err(ctx)? {
            let entry = entry.map_err(ctx)?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| UploadId::parse(n).ok())
            else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ctx(e)),
            };
            stages.push(StageMeta {
                id,
                len: meta.len(),
                modified: file_mtime(&meta),
            });
        }
        stages.sort_by_key(|s| s.id);
        Ok(stages)
    }
}

// ---------------------------------------------------------------------------
// Blobs

impl Shared {
    /// Writes a blob as a file (unless it is stored already).
    fn put_blob_file(&self, digest: &Digest, data: &[u8]) -> BackendResult<()> {
        if self.blob_exists(digest)? {
            return Ok(());
        }
        let blob = self.blob_path(digest);
        let tmp = self.tmp_path("put");
        let result = (|| {
            let ctx = |e| BackendError::io(format!("write {}", tmp.display()), e);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(ctx)?;
            file.write_all(data).map_err(ctx)?;
            if self.fsync {
                file.sync_data().map_err(ctx)?;
            }
            drop(file);
            let shard = self.ensure_shard(digest)?;
            fs::rename(&tmp, &blob).map_err(|e| {
                BackendError::io(format!("rename {} to {}", tmp.display(), blob.display()), e)
            })?;
            self.sync_blob_dir(&shard)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn stat_blob(&self, digest: &Digest) -> BackendResult<BlobMeta> {
        if let Some(meta) = self.inline_meta(digest)? {
            return Ok(meta);
        }
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(BlobMeta {
                digest: digest.clone(),
                size: meta.len(),
                modified: file_mtime(&meta),
            }),
            Ok(_) => Err(BackendError::NotFound(digest.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BackendError::NotFound(digest.to_string()))
            }
            Err(e) => Err(BackendError::io(format!("stat {}", path.display()), e)),
        }
    }

    /// Lists inline blobs and blob files, merged, in `Digest` order.
    fn list_blobs(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inline = self.list_inline(start_after, limit)?;
        let files = self.list_blob_files(start_after, limit)?;
        Ok(merge_listings(inline, files, limit))
    }

    /// Lists blob files in `Digest` order (the string order of `alg:hex`).
    fn list_blob_files(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Sort algorithms by "alg:" so that the walk follows string order
        // of whole digests even if one algorithm name prefixes another.
        let mut algorithms: Vec<(String, PathBuf)> = sorted_dir(&self.blobs)?
            .into_iter()
            .map(|(name, path)| (format!("{name}:"), path))
            .collect();
        algorithms.sort();
        let after = start_after.map(|d| {
            let hex = d.hex();
            (
                format!("{}:", d.algorithm().as_str()),
                hex.get(..2).unwrap_or(hex).to_owned(),
                d,
            )
        });
        for (alg_prefix, alg_dir) in algorithms {
            if let Some((after_alg, _, _)) = &after
                && alg_prefix < *after_alg
            {
                continue;
            }
            for (shard, shard_dir) in sorted_dir(&alg_dir)? {
                if let Some((after_alg, after_shard, _)) = &after
                    && alg_prefix == *after_alg
                    && shard < *after_shard
                {
                    continue;
                }
                for (name, path) in sorted_dir(&shard_dir)? {
                    if !name.starts_with(shard.as_str()) {
                        continue;
                    }
                    let Ok(digest) = Digest::parse(&format!("{alg_prefix}{name}")) else {
                        continue;
                    };
                    if let Some((_, _, after)) = &after
                        && digest <= **after
                    {
                        continue;
                    }
                    let meta = match fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => meta,
                        Ok(_) => continue,
                        // Deleted meanwhile.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(BackendError::io(format!("stat {}", path.display()), e));
                        }
                    };
                    out.push(BlobMeta {
                        digest,
                        size: meta.len(),
                        modified: file_mtime(&meta),
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The entries of a directory with UTF-8 names, sorted by name; a directory
/// that does not exist (or is not one) has none.
fn sorted_dir(dir: &Path) -> BackendResult<Vec<(String, PathBuf)>> {
    let ctx = |e| BackendError::io(format!("list {}", dir.display()), e);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(ctx(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ctx)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `len` bytes from the file's position in `READ_CHUNK` chunks into
/// `tx`, until done, an error, or the receiver is dropped.
fn read_blob_into(
    mut file: File,
    mut remaining: u64,
    path: &Path,
    tx: &tokio::sync::mpsc::Sender<BackendResult<Bytes>>,
) {
    while remaining > 0 {
        let n = usize::try_from(remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        let item = read_exact_bytes(&mut file, n)
            .map_err(|e| BackendError::io(format!("read {}", path.display()), e));
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
        remaining -= n as u64;
    }
}

/// The first step of a read: the open file positioned at the range, and
/// either the whole (small) content or the length left to stream.
enum ReadStart {
    Whole(Bytes),
    Stream(File, u64, PathBuf),
}

fn start_read(
    path: PathBuf,
    digest: &Digest,
    range: Option<Range<u64>>,
) -> BackendResult<ReadStart> {
    let ctx = |e| BackendError::io(format!("read {}", path.display()), e);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackendError::NotFound(digest.to_string()));
        }
        Err(e) => return Err(ctx(e)),
    };
    let size = file.metadata().map_err(ctx)?.len();
    let r = range.unwrap_or(0..size);
    if r.start > r.end || r.end > size {
        return Err(BackendError::NotSupported("range outside the blob"));
    }
    let len = r.end - r.start;
    if r.start > 0 {
        file.seek(SeekFrom::Start(r.start)).map_err(ctx)?;
    }
    if len <= READ_CHUNK as u64 {
        // Small reads (manifests, configs) need no reader thread.
        let n = usize::try_from(len).unwrap_or(READ_CHUNK);
        return Ok(ReadStart::Whole(
            read_exact_bytes(&mut file, n).map_err(ctx)?,
        ));
    }
    Ok(ReadStart::Stream(file, len, path))
}

// ---------------------------------------------------------------------------
// The trait

#[async_trait]
impl Backend for FsBackend {
    async fn blob_stat(&self, digest: &Digest) -> BackendResult<BlobMeta> {
        // On the calling task, like `meta_get`: an index lookup and at most
        // one `statx`.
        self.inner.shared.stat_blob(digest)
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<ByteStream> {
        let inner = self.inner.shared.clone();
        let owned = digest.clone();
        let start = blocking(move || {
            if let Some(data) = inner.read_inline(&owned, range.clone())? {
                return Ok(ReadStart::Whole(data));
            }
            start_read(inner.blob_path(&owned), &owned, range)
        })
        .await?;
        let (file, len, path) = match start {
            ReadStart::Whole(data) if data.is_empty() => {
                return Ok(futures::stream::empty().boxed());
            }
            ReadStart::Whole(data) => {
                return Ok(futures::stream::iter([Ok(data)]).boxed());
            }
            ReadStart::Stream(file, len, path) => (file, len, path),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(READ_QUEUE);
        std::thread::Builder::new()
            .name("wharf-fs-read".into())
            .spawn(move || read_blob_into(file, len, &path, &tx))
            .map_err(|e| BackendError::io("start a blob reader thread", e))?;
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> BackendResult<()> {
        self.blob_put_with_meta(digest, data, Vec::new()).await
    }

    /// A small blob goes inline, in the same transaction as `ops` (one
    /// fsync, all or nothing); a large one is written as a file, then
    /// `ops` are applied.
    async fn blob_put_with_meta(
        &self,
        digest: &Digest,
        data: Bytes,
        ops: Vec<MetaOp>,
    ) -> BackendResult<()> {
        let shared = &self.inner.shared;
        if shared.inlines(data.len() as u64) {
            let blob = BlobChange::Put {
                key: digest.to_string(),
                file: shared.blob_path(digest),
                data,
            };
            return self.write(Batch::blob(blob, ops)).await;
        }
        let inner = shared.clone();
        let owned = digest.clone();
        blocking(move || inner.put_blob_file(&owned, &data)).await?;
        self.meta_apply(ops).await
    }

    async fn blob_delete(&self, digest: &Digest) -> BackendResult<()> {
        let inner = self.inner.shared.clone();
        let owned = digest.clone();
        let inline = blocking(move || {
            remove_if_exists(&inner.blob_path(&owned))?;
            Ok(inner.inline_meta(&owned)?.is_some())
        })
        .await?;
        if inline {
            let key = digest.to_string();
            self.write(Batch::blob(BlobChange::Delete { key }, Vec::new()))
                .await?;
        }
        Ok(())
    }

    async fn blob_list(
        &self,
        start_after: Option<&Digest>,
        limit: usize,
    ) -> BackendResult<Vec<BlobMeta>> {
        let inner = self.inner.shared.clone();
        let start_after = start_after.cloned();
        blocking(move || inner.list_blobs(start_after.as_ref(), limit)).await
    }

    async fn stage_append(
        &self,
        id: &UploadId,
        offset: u64,
        mut data: ByteStream,
    ) -> BackendResult<u64> {
        let id = *id;
        let handle = self.inner.shared.stages.acquire(id);
        let path = self.inner.shared.stage_path(&id);
        let (file, generation, handle, path) = blocking(move || {
            let (file, generation) = open_stage_for_append(&path, id, offset, &handle)?;
            Ok((file, generation, handle, path))
        })
        .await?;

        let permits = Arc::new(Semaphore::new(WRITE_IN_FLIGHT));
        let abort = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let writer = StageWriter {
            id,
            path,
            file,
            pos: offset,
            handle,
            generation,
            rx,
            permits: permits.clone(),
            abort: abort.clone(),
            synced_from: offset,
            syncer: None,
            fsync: self.inner.shared.fsync,
        };
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("wharf-fs-stage".into())
            .spawn(move || {
                let result = writer.run();
                let _ = done_tx.send(result);
            })
            .map_err(|e| BackendError::io("start a staged-write thread", e))?;

        let mut feeder = Feeder {
            tx: Some(tx),
            permits,
            abort,
            finished: false,
        };
        let mut done_rx = done_rx;
        let mut small = BytesMut::new();
        let mut input_error = None;
        let mut stopped_early = None;
        loop {
            // Small chunks wait for company only while more input is ready:
            // when the input stalls, queue what was gathered.
            let ready = if small.is_empty() {
                None
            } else {
                data.next().now_or_never()
            };
            let next = if let Some(next) = ready {
                next
            } else {
                if !small.is_empty() && !feeder.send(small.split().freeze()).await {
                    break;
                }
                tokio::select! {
                    biased;
                    // The writer only ends before the input does when it
                    // failed (or was overtaken); stop waiting for input then.
                    done = &mut done_rx => {
                        stopped_early = Some(done);
                        break;
                    }
                    next = data.next() => next,
                }
            };
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    input_error = Some(e);
                    break;
                }
            };
            if chunk.is_empty() {
                continue;
            }
            let queued = if chunk.len() >= SMALL_CHUNK {
                (small.is_empty() || feeder.send(small.split().freeze()).await)
                    && feeder.send(chunk).await
            } else {
                small.extend_from_slice(&chunk);
                small.len() < SMALL_BATCH || feeder.send(small.split().freeze()).await
            };
            if !queued {
                // The writer stopped; its result says why.
                break;
            }
        }
        let complete = input_error.is_none() && stopped_early.is_none();
        if complete && !small.is_empty() {
            feeder.send(small.split().freeze()).await;
        }
        feeder.close(complete);
        let written = match stopped_early {
            Some(done) => done,
            None => done_rx.await,
        }
        .map_err(|_| BackendError::Other(Box::new(Stopped("staged-write thread stopped"))))?;
        match input_error {
            Some(e) => Err(e),
            None => written,
        }
    }

    async fn stage_commit(&self, id: &UploadId, len: u64, digest: &Digest) -> BackendResult<()> {
        let inner = self.inner.shared.clone();
        let writer = self.writer()?.clone();
        let id = *id;
        let digest = digest.clone();
        blocking(move || inner.commit_stage(id, len, &digest, &writer)).await
    }

    async fn stage_abort(&self, id: &UploadId) -> BackendResult<()> {
        let inner = self.inner.shared.clone();
        let id = *id;
        blocking(move || inner.abort_stage(id)).await
    }

    async fn stage_list(&self) -> BackendResult<Vec<StageMeta>> {
        let inner = self.inner.shared.clone();
        blocking(move || inner.list_stages()).await
    }

    async fn meta_get(&self, key: &Key) -> BackendResult<MetaValue> {
        // A point lookup runs on the calling task, not the blocking pool:
        // on cached pages it takes microseconds, less than the two thread
        // hand-offs of `spawn_blocking` (which profiles showed dominating
        // manifest GETs and tag pushes); a miss reads a few pages, usually
        // from the operating system's page cache.
        let meta = &self.inner.shared.db;
        let epoch = match meta.cached(key.as_str()) {
            Ok(hit) => return Ok(hit),
            Err(epoch) => epoch,
        };
        let record = meta.with_db("read", |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(META_TABLE)?;
            Ok(table.get(key.as_str())?.map(|v| v.value().to_vec()))
        })?;
        match record {
            None => Err(BackendError::NotFound(key.to_string())),
            Some(record) => {
                let (modified, value) = decode_record(key.as_str(), record)?;
                let value = MetaValue { value, modified };
                meta.cache_insert(epoch, key.as_str(), &value);
                Ok(value)
            }
        }
    }

    async fn meta_apply(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.write(Batch::meta(ops)).await
    }

    async fn meta_apply_relaxed(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::meta(ops);
        batch.relaxed = true;
        self.write(batch).await
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions) -> BackendResult<Vec<MetaEntry>> {
        if options.limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.inner.shared.db.clone();
        let prefix = prefix.to_owned();
        // Rows: key, modification time (`None`: a record too short to hold
        // one), value if asked for.
        type Row = (String, Option<u64>, Option<Vec<u8>>);
        let rows: Vec<Row> = blocking(move || {
            db.with_db("list", |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(META_TABLE)?;
                let start = match &options.start_after {
                    Some(after) if after.as_str() >= prefix.as_str() => {
                        Bound::Excluded(after.as_str())
                    }
                    _ => Bound::Included(prefix.as_str()),
                };
                let mut rows = Vec::with_capacity(options.limit.min(1024));
                for item in table.range::<&str>((start, Bound::Unbounded))? {
                    let (key, record) = item?;
                    let key = key.value();
                    if !key.starts_with(prefix.as_str()) || rows.len() >= options.limit {
                        break;
                    }
                    let record = record.value();
                    let time = record.first_chunk::<8>().map(|t| u64::from_le_bytes(*t));
                    let value = options
                        .values
                        .then(|| record.get(8..).unwrap_or_default().to_vec());
                    rows.push((key.to_owned(), time, value));
                }
                Ok(rows)
            })
        })
        .await?;
        rows.into_iter()
            .map(|(key, time, value)| {
                let Some(time) = time else {
                    return Err(corrupt(&key));
                };
                Ok(MetaEntry {
                    // Every key in the table was written from a valid `Key`.
                    key: Key::from_parts(key),
                    value: value.map(Bytes::from),
                    modified: UNIX_EPOCH + Duration::from_millis(time),
                })
            })
            .collect()
    }

    async fn check(&self) -> BackendResult<()> {
        if self
            .inner
            .writer_thread
            .as_ref()
            .is_none_or(|t| t.is_finished())
        {
            return Err(BackendError::Other(Box::new(Stopped(
                "metadata writer thread stopped",
            ))));
        }
        let inner = self.inner.shared.clone();
        blocking(move || {
            let probe = inner.tmp_path("check");
            let ctx = |e| BackendError::io(format!("write probe {}", probe.display()), e);
            let result = (|| {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&probe)
                    .map_err(ctx)?;
                file.write_all(b"wharf").map_err(ctx)?;
                file.sync_all().map_err(ctx)
            })();
            let removed = remove_if_exists(&probe);
            result?;
            removed?;
            // A database open read-only is tried for writing again here, so
            // that readiness returns once the storage is writable.
            inner.db.with_writable_db("check", |_| Ok(()))?;
            inner.db.with_db("check", |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(META_TABLE)?;
                table.first()?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use futures::TryStreamExt;

    use super::*;
    use crate::backend::BackendExt;

    fn stream(chunks: Vec<BackendResult<Bytes>>) -> ByteStream {
        futures::stream::iter(chunks).boxed()
    }

    fn ok_stream(chunks: &[&[u8]]) -> ByteStream {
        stream(
            chunks
                .iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect(),
        )
    }

    fn input_error() -> BackendError {
        BackendError::Input(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    }

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    /// Options that store every blob as a file.
    fn files_only() -> FsOptions {
        FsOptions::default().with_inline_threshold(0)
    }

    /// Blobs up to 1 MiB inline: several pieces per blob.
    fn inline_1mib() -> FsOptions {
        FsOptions::default().with_inline_threshold(1 << 20)
    }

    /// Deterministic, non-repeating-looking test bytes.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
            .collect()
    }

    /// Waits until the (only) stage holds `len` bytes.
    async fn wait_for_stage_len(b: &FsBackend, len: u64) {
        for _ in 0..1000 {
            if b.stage_list().await.unwrap().first().map(|s| s.len) == Some(len) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("stage never reached {len} bytes");
    }

    async fn read_all(b: &FsBackend, d: &Digest, range: Option<Range<u64>>) -> Vec<Bytes> {
        b.blob_read(d, range)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn open_creates_layout_and_empties_tmp_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        // Every blob a file; the reopen below, with the default settings,
        // still finds it.
        let b = FsBackend::open_with(&root, files_only()).unwrap();
        assert_eq!(b.root(), root);
        for sub in ["blobs", "stage", "tmp"] {
            assert!(root.join(sub).is_dir(), "{sub}");
        }
        assert!(root.join(META_FILE).is_file());
        let data = Bytes::from_static(b"hello");
        let d = Digest::sha256(&data);
        b.blob_put(&d, data.clone()).await.unwrap();
        assert!(
            root.join("blobs/sha256")
                .join(&d.hex()[..2])
                .join(d.hex())
                .is_file()
        );
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        b.check().await.unwrap();
        drop(b);

        // Crash debris.
        fs::write(root.join("tmp/put-7"), b"partial").unwrap();
        fs::create_dir(root.join("tmp/somedir")).unwrap();
        fs::write(root.join("tmp/somedir/x"), b"x").unwrap();
        let b = FsBackend::open(&root).unwrap();
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
        assert!(format!("{b:?}").contains("FsBackend"));
    }

    #[tokio::test]
    async fn second_open_of_a_live_root_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first = FsBackend::open(dir.path()).unwrap();
        let err = FsBackend::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("in use by another process"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        // A clone keeps it open; dropping every handle frees it.
        let clone = first.clone();
        drop(first);
        assert!(FsBackend::open(dir.path()).is_err());
        drop(clone);
        FsBackend::open(dir.path()).unwrap();
    }

    #[tokio::test]
    async fn failed_stream_then_resume_at_acknowledged_offset_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = UploadId::random();
        let first = pattern(100_000, 1);
        let second = pattern(250_000, 2);
        let b = FsBackend::open(dir.path()).unwrap();
        let acked = b
            .stage_append(&id, 0, ok_stream(&[&first[..60_000], &first[60_000..]]))
            .await
            .unwrap();
        assert_eq!(acked, 100_000);

        // The next request fails part way.
        let err = b
            .stage_append(
                &id,
                acked,
                stream(vec![
                    Ok(Bytes::from(pattern(70_000, 9))),
                    Ok(Bytes::from(pattern(3_000, 9))),
                    Err(input_error()),
                ]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Input(_)), "{err}");
        let stages = b.stage_list().await.unwrap();
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].id, id);
        assert!(stages[0].len >= acked);
        drop(b);

        // Simulate bytes of the failed request that did reach the disk.
        let path = dir.path().join("stage").join(id.as_str());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&pattern(12_345, 7)).unwrap();
        drop(f);
        // And junk that is not a stage.
        fs::write(dir.path().join("stage/not-an-upload-id"), b"x").unwrap();

        let b = FsBackend::open(dir.path()).unwrap();
        let stages = b.stage_list().await.unwrap();
        assert_eq!(stages.len(), 1);
        assert!(stages[0].len > acked);
        // Writing beyond the stage is refused.
        let err = b
            .stage_append(&id, stages[0].len + 1, ok_stream(&[b"x"]))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::OffsetMismatch { .. }), "{err}");

        let total = b
            .stage_append(&id, acked, ok_stream(&[&second]))
            .await
            .unwrap();
        assert_eq!(total, 350_000);
        assert_eq!(b.stage_list().await.unwrap()[0].len, 350_000);
        let mut all = first.clone();
        all.extend_from_slice(&second);
        let d = Digest::sha256(&all);
        b.stage_commit(&id, total, &d).await.unwrap();
        assert!(b.stage_list().await.unwrap().is_empty());
        assert_eq!(b.blob_bytes(&d).await.unwrap(), all);
    }

    #[tokio::test]
    async fn committed_stage_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 * 1024 * 1024 + 17, 3);
        let d = Digest::sha256(&data);
        let id = UploadId::random();
        {
            let b = FsBackend::open(dir.path()).unwrap();
            let n = b
                .stage_append(&id, 0, ok_stream(&[&data[..1000], &data[1000..]]))
                .await
                .unwrap();
            // Extra bytes past the committed length are cut off.
            let n2 = b.stage_append(&id, n, ok_stream(&[b"tail"])).await.unwrap();
            assert_eq!(n2, n + 4);
            b.stage_commit(&id, n, &d).await.unwrap();
            let err = b.stage_commit(&id, n, &d).await.unwrap_err();
            assert!(err.is_not_found(), "{err}");
            b.meta_put(key("blob/x"), Bytes::from_static(b"meta"))
                .await
                .unwrap();
        }
        let b = FsBackend::open(dir.path()).unwrap();
        let meta = b.blob_stat(&d).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        let age = SystemTime::now().duration_since(meta.modified).unwrap();
        assert!(age < Duration::from_secs(60));
        assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
        assert_eq!(
            b.meta_value(&key("blob/x")).await.unwrap().unwrap(),
            &b"meta"[..]
        );
        assert!(b.stage_list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn commit_checks_length_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let data = b"some content";
        let d = Digest::sha256(data);
        let missing = UploadId::random();
        assert!(
            b.stage_commit(&missing, 0, &d)
                .await
                .unwrap_err()
                .is_not_found()
        );
        let id = UploadId::random();
        b.stage_append(&id, 0, ok_stream(&[data])).await.unwrap();
        let err = b.stage_commit(&id, 100, &d).await.unwrap_err();
        assert!(
            matches!(
                err,
                BackendError::OffsetMismatch {
                    offset: 100,
                    actual: 12,
                    ..
                }
            ),
            "{err}"
        );
        // Concurrent commits of one digest from several stages.
        let mut ids = Vec::new();
        for _ in 0..8 {
            let id = UploadId::random();
            b.stage_append(&id, 0, ok_stream(&[data])).await.unwrap();
            ids.push(id);
        }
        let commits = ids.iter().map(|id| {
            let b = b.clone();
            let d = d.clone();
            let id = *id;
            tokio::spawn(async move { b.stage_commit(&id, data.len() as u64, &d).await })
        });
        for r in futures::future::join_all(commits).await {
            r.unwrap().unwrap();
        }
        assert_eq!(b.blob_bytes(&d).await.unwrap(), &data[..]);
        // Only the stage that failed its commit is left.
        let left: Vec<UploadId> = b
            .stage_list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(left, vec![id]);
        b.stage_abort(&id).await.unwrap();
        b.stage_abort(&id).await.unwrap();
        assert!(b.stage_list().await.unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn blob_read_ranges_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let data = pattern(3 * READ_CHUNK + 12_345, 4);
        let d = Digest::sha256(&data);
        b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
        b.blob_put(&d, Bytes::from_static(b"ignored: already exists"))
            .await
            .unwrap();
        assert_eq!(b.blob_stat(&d).await.unwrap().size, data.len() as u64);

        let len = data.len() as u64;
        for range in [
            None,
            Some(0..len),
            Some(0..1),
            Some(5..5),
            Some(1000..2000),
            Some(len - 10..len),
            Some(100..(2 * READ_CHUNK as u64 + 7)),
        ] {
            let chunks = read_all(&b, &d, range.clone()).await;
            assert!(
                chunks
                    .iter()
                    .all(|c| !c.is_empty() && c.len() <= READ_CHUNK)
            );
            let got: Vec<u8> = chunks.concat();
            let r = range.unwrap_or(0..len);
            assert_eq!(got, &data[r.start as usize..r.end as usize], "{r:?}");
        }
        // Full chunks except the last.
        let chunks = read_all(&b, &d, None).await;
        assert_eq!(chunks.len(), 4);
        assert!(chunks[..3].iter().all(|c| c.len() == READ_CHUNK));

        for bad in [0..len + 1, len + 1..len + 2, Range { start: 10, end: 5 }] {
            assert!(b.blob_read(&d, Some(bad)).await.is_err());
        }
        let other = Digest::sha256(b"absent");
        assert!(
            b.blob_read(&other, None)
                .await
                .err()
                .unwrap()
                .is_not_found()
        );
        assert!(b.blob_stat(&other).await.unwrap_err().is_not_found());

        // Dropping a stream part way is fine, and so is deleting meanwhile.
        let mut s = b.blob_read(&d, None).await.unwrap();
        assert_eq!(s.next().await.unwrap().unwrap().len(), READ_CHUNK);
        drop(s);
        let s = b.blob_read(&d, Some(10..len)).await.unwrap();
        b.blob_delete(&d).await.unwrap();
        b.blob_delete(&d).await.unwrap();
        let got: Vec<Bytes> = s.try_collect().await.unwrap();
        assert_eq!(got.concat(), &data[10..]);
        assert!(b.blob_stat(&d).await.unwrap_err().is_not_found());

        // Empty blob.
        let empty = Digest::sha256(b"");
        b.blob_put(&empty, Bytes::new()).await.unwrap();
        assert!(read_all(&b, &empty, None).await.is_empty());
    }

    #[tokio::test]
    async fn blob_list_is_in_digest_order_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open_with(dir.path(), files_only()).unwrap();
        let mut all = Vec::new();
        for i in 0..60u32 {
            let data = i.to_le_bytes();
            let d = if i % 4 == 0 {
                Digest::compute(wharf_types::Algorithm::Sha512, &data)
            } else {
                Digest::sha256(&data)
            };
            b.blob_put(&d, Bytes::copy_from_slice(&data)).await.unwrap();
            all.push(d);
        }
        all.sort();
        // Junk that must be ignored.
        fs::write(dir.path().join("blobs/sha256/README"), b"x").unwrap();
        fs::create_dir_all(dir.path().join("blobs/md5/ab")).unwrap();
        fs::write(dir.path().join("blobs/md5/ab/abcdef"), b"x").unwrap();
        let shard = dir.path().join("blobs/sha256").join(&all[0].hex()[..2]);
        fs::write(shard.join("not-hex"), b"x").unwrap();
        let misplaced = Digest::sha256(b"misplaced");
        let wrong = if misplaced.hex().starts_with("00") {
            "01"
        } else {
            "00"
        };
        fs::create_dir_all(dir.path().join("blobs/sha256").join(wrong)).unwrap();
        fs::write(
            dir.path()
                .join("blobs/sha256")
                .join(wrong)
                .join(misplaced.hex()),
            b"misplaced",
        )
        .unwrap();

        let listed: Vec<Digest> = b
            .blob_list(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.digest)
            .collect();
        assert_eq!(listed, all);
        assert!(b.blob_list(None, 0).await.unwrap().is_empty());

        for page in [1, 7, 59, 60] {
            let mut got = Vec::new();
            let mut after: Option<Digest> = None;
            loop {
                let batch = b.blob_list(after.as_ref(), page).await.unwrap();
                assert!(batch.len() <= page);
                let Some(last) = batch.last() else { break };
                after = Some(last.digest.clone());
                got.extend(batch.into_iter().map(|m| m.digest));
            }
            assert_eq!(got, all, "page {page}");
        }
        // start_after a digest that is not stored.
        let absent = Digest::sha256(b"not stored");
        let expected: Vec<&Digest> = all.iter().filter(|d| **d > absent).collect();
        let got = b.blob_list(Some(&absent), 1000).await.unwrap();
        assert_eq!(got.iter().map(|m| &m.digest).collect::<Vec<_>>(), expected);
        assert!(got.iter().all(|m| m.size == 4));
    }

    #[tokio::test]
    async fn cached_reads_follow_every_kind_of_write() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let k = key("repo/x/_tag/v1");
        let get = |b: FsBackend| {
            let k = k.clone();
            async move { b.meta_get(&k).await.map(|v| v.value) }
        };
        b.meta_put(k.clone(), Bytes::from_static(b"one"))
            .await
            .unwrap();
        assert_eq!(get(b.clone()).await.unwrap(), &b"one"[..]);
        assert_eq!(get(b.clone()).await.unwrap(), &b"one"[..]);
        assert!(b.inner.shared.db.cache().map.contains_key(k.as_str()));
        b.meta_put(k.clone(), Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(get(b.clone()).await.unwrap(), &b"two"[..]);
        b.meta_apply_relaxed(vec![MetaOp::Put(k.clone(), Bytes::from_static(b"three"))])
            .await
            .unwrap();
        assert_eq!(get(b.clone()).await.unwrap(), &b"three"[..]);
        // PutIfAbsent leaves it; Delete removes it.
        b.meta_apply(vec![MetaOp::PutIfAbsent(
            k.clone(),
            Bytes::from_static(b"no"),
        )])
        .await
        .unwrap();
        assert_eq!(get(b.clone()).await.unwrap(), &b"three"[..]);
        b.meta_delete(k.clone()).await.unwrap();
        assert!(get(b.clone()).await.unwrap_err().is_not_found());
        // Written with a blob, in the same batch.
        let blob = Bytes::from_static(b"blob");
        let d = Digest::sha256(&blob);
        b.blob_put_with_meta(
            &d,
            blob,
            vec![MetaOp::Put(k.clone(), Bytes::from_static(b"four"))],
        )
        .await
        .unwrap();
        assert_eq!(get(b.clone()).await.unwrap(), &b"four"[..]);
        // Large records are read, not cached.
        let big = key("repo/x/_big");
        b.meta_put(big.clone(), Bytes::from(vec![7; CACHE_VALUE_MAX + 1]))
            .await
            .unwrap();
        assert_eq!(
            b.meta_get(&big).await.unwrap().value.len(),
            CACHE_VALUE_MAX + 1
        );
        assert!(!b.inner.shared.db.cache().map.contains_key(big.as_str()));
    }

    /// The interleaving a thread race only rarely produces: a read that
    /// started before a commit finishes after a read that started after it,
    /// both before the commit's keys are dropped. Neither may cache what it
    /// read, or a reader that saw the new value could next see the old one.
    #[test]
    fn reads_around_a_commit_cache_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let db = &b.inner.shared.db;
        let k = "repo/x/_tag/latest";
        let value = |v: &'static [u8]| MetaValue {
            value: Bytes::from_static(v),
            modified: SystemTime::UNIX_EPOCH,
        };
        let early = db.cached(k).unwrap_err();
        db.commit([k].into_iter(), |_| {
            let late = db.cached(k).unwrap_err();
            db.cache_insert(late, k, &value(b"new"));
            db.cache_insert(early, k, &value(b"old"));
            assert!(db.cached(k).is_err(), "cached during a commit");
            Ok(())
        })
        .unwrap();
        assert!(db.cached(k).is_err());
        // Between commits, a read caches what it read.
        let between = db.cached(k).unwrap_err();
        db.cache_insert(between, k, &value(b"new"));
        assert_eq!(db.cached(k).unwrap().value, Bytes::from_static(b"new"));
        // A read that started before a commit does not.
        db.commit([k].into_iter(), |_| Ok(())).unwrap();
        db.cache_insert(between, k, &value(b"new"));
        assert!(db.cached(k).is_err());
    }

    /// Readers racing writers never see a value older than the last
    /// acknowledged write, and never one going backwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cached_reads_never_lag_acknowledged_writes() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let k = key("repo/x/_tag/latest");
        b.meta_put(k.clone(), Bytes::from(0u64.to_be_bytes().to_vec()))
            .await
            .unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let read = |b: &FsBackend, k: &Key| {
            let (b, k) = (b.clone(), k.clone());
            async move {
                let v = b.meta_get(&k).await.unwrap().value;
                u64::from_be_bytes(v.as_ref().try_into().unwrap())
            }
        };
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (b, k, acked, done) = (b.clone(), k.clone(), acked.clone(), done.clone());
            readers.push(tokio::spawn(async move {
                let mut last = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    let floor = acked.load(Ordering::Acquire);
                    let seen = read(&b, &k).await;
                    assert!(seen >= floor, "read {seen} after {floor} was acknowledged");
                    assert!(seen >= last, "read {seen} after {last}");
                    last = seen;
                    reads += 1;
                }
                reads
            }));
        }
        for i in 1..=300u64 {
            let op = MetaOp::Put(k.clone(), Bytes::from(i.to_be_bytes().to_vec()));
            if i % 2 == 0 {
                b.meta_apply(vec![op]).await.unwrap();
            } else {
                b.meta_apply_relaxed(vec![op]).await.unwrap();
            }
            acked.store(i, Ordering::Release);
            assert_eq!(read(&b, &k).await, i);
        }
        done.store(true, Ordering::Release);
        for r in readers {
            assert!(r.await.unwrap() > 0);
        }
    }

    #[tokio::test]
    async fn meta_list_prefix_start_after_limit() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        // In byte order ('-' < '/' < '0').
        let keys = [
            "a-b",
            "a/1",
            "a/2",
            "a/3",
            "a/30",
            "a/4",
            "a0",
            "b/1",
            "repo/x/_tag/v1",
        ];
        b.meta_apply(
            keys.iter()
                .map(|k| MetaOp::Put(key(k), Bytes::from(k.as_bytes().to_vec())))
                .collect(),
        )
        .await
        .unwrap();
        let list = |prefix: &'static str, after: Option<&'static str>, limit, values| {
            let b = b.clone();
            async move {
                b.meta_list(
                    prefix,
                    ListOptions {
                        start_after: after.map(key),
                        limit,
                        values,
                    },
                )
                .await
                .unwrap()
            }
        };
        let names = |v: Vec<MetaEntry>| {
            v.into_iter()
                .map(|e| e.key.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(list("a/", None, 100, false).await),
            ["a/1", "a/2", "a/3", "a/30", "a/4"]
        );
        assert_eq!(names(list("a/", None, 2, false).await), ["a/1", "a/2"]);
        assert_eq!(
            names(list("a/", Some("a/2"), 2, false).await),
            ["a/3", "a/30"]
        );
        assert_eq!(
            names(list("a/", Some("a/4"), 10, false).await),
            [] as [&str; 0]
        );
        // A cursor before the prefix starts at the prefix.
        assert_eq!(names(list("a/", Some("0"), 1, false).await), ["a/1"]);
        // A cursor after the prefix range gives nothing.
        assert!(list("a/", Some("b"), 10, false).await.is_empty());
        assert!(list("a/", None, 0, true).await.is_empty());
        assert_eq!(names(list("", None, 100, false).await), keys);
        assert_eq!(names(list("a", None, 100, false).await).len(), 7);

        let with_values = list("repo/", None, 10, true).await;
        assert_eq!(with_values.len(), 1);
        assert_eq!(
            with_values[0].value.as_deref(),
            Some(&b"repo/x/_tag/v1"[..])
        );
        let age = SystemTime::now()
            .duration_since(with_values[0].modified)
            .unwrap();
        assert!(age < Duration::from_secs(60));
        assert!(list("repo/", None, 10, false).await[0].value.is_none());

        // PutIfAbsent leaves existing records; Delete of absent is fine.
        b.meta_apply(vec![
            MetaOp::PutIfAbsent(key("a/1"), Bytes::from_static(b"new")),
            MetaOp::PutIfAbsent(key("c/1"), Bytes::from_static(b"new")),
            MetaOp::Delete(key("a/2")),
            MetaOp::Delete(key("zz/absent")),
        ])
        .await
        .unwrap();
        assert_eq!(b.meta_get(&key("a/1")).await.unwrap().value, &b"a/1"[..]);
        assert_eq!(b.meta_get(&key("c/1")).await.unwrap().value, &b"new"[..]);
        assert!(b.meta_get(&key("a/2")).await.unwrap_err().is_not_found());
        b.meta_apply(Vec::new()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_meta_apply_callers_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let tasks = (0..50).map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                b.meta_apply(vec![
                    MetaOp::Put(key(&format!("k/{i:03}/a")), Bytes::from(format!("a{i}"))),
                    MetaOp::Put(key(&format!("k/{i:03}/b")), Bytes::from(format!("b{i}"))),
                    MetaOp::Delete(key(&format!("k/{i:03}/a"))),
                ])
                .await
            })
        });
        for r in futures::future::join_all(tasks).await {
            r.unwrap().unwrap();
        }
        let all = b
            .meta_list(
                "k/",
                ListOptions {
                    start_after: None,
                    limit: 1000,
                    values: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(all.len(), 50);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.key.as_str(), format!("k/{i:03}/b"));
            assert_eq!(e.value.as_deref(), Some(format!("b{i}").as_bytes()));
        }
    }

    #[tokio::test]
    async fn reopened_metadata_database_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        b.meta_put(key("x/1"), Bytes::from_static(b"one"))
            .await
            .unwrap();
        // What the writer or a reader does after redb reports `PreviousIo`.
        let db = b.inner.shared.db.clone();
        let generation = db.generation();
        db.reopen(generation).unwrap();
        // A second thread that saw the same failure does not reopen again.
        db.reopen(generation).unwrap();
        assert_eq!(db.generation(), generation + 1);
        assert_eq!(
            b.meta_value(&key("x/1")).await.unwrap().unwrap(),
            &b"one"[..]
        );
        b.meta_put(key("x/2"), Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(
            b.meta_value(&key("x/2")).await.unwrap().unwrap(),
            &b"two"[..]
        );
        // A closed database (a reopen that failed) is reopened on next use.
        db.slot.write().unwrap().db = None;
        assert_eq!(
            b.meta_value(&key("x/1")).await.unwrap().unwrap(),
            &b"one"[..]
        );
        b.check().await.unwrap();
    }

    #[tokio::test]
    async fn read_only_storage_serves_reads_and_becomes_writable_again() {
        let dir = tempfile::tempdir().unwrap();
        let small = Bytes::from(pattern(5000, 1));
        let large = Bytes::from(pattern(3 << 20, 2));
        let (ds, dl) = (Digest::sha256(&small), Digest::sha256(&large));
        {
            let b = FsBackend::open(dir.path()).unwrap();
            b.blob_put(&ds, small.clone()).await.unwrap();
            b.blob_put(&dl, large.clone()).await.unwrap();
            b.meta_put(key("r/a"), Bytes::from_static(b"A"))
                .await
                .unwrap();
            assert!(!b.is_read_only());
        }
        let db_file = dir.path().join(META_FILE);
        READ_ONLY_FILES.lock().unwrap().push(db_file.clone());
        let b = FsBackend::open(dir.path()).unwrap();
        assert!(b.is_read_only());

        // Everything stored reads back.
        assert_eq!(b.meta_value(&key("r/a")).await.unwrap().unwrap(), &b"A"[..]);
        assert_eq!(read_all(&b, &ds, None).await.concat(), small);
        assert_eq!(
            read_all(&b, &dl, Some(10..20)).await.concat(),
            large[10..20]
        );
        assert_eq!(b.blob_stat(&ds).await.unwrap().size, 5000);
        assert_eq!(listed(&b, None, 10).await.len(), 2);
        let options = ListOptions {
            limit: 10,
            ..ListOptions::default()
        };
        let entries = b.meta_list("r/", options).await.unwrap();
        assert_eq!(entries.len(), 1);

        // Writes fail and say why; nothing changes.
        let read_only = |e: BackendError| {
            let text = e.to_string();
            assert!(text.contains("is read-only"), "{text}");
        };
        read_only(
            b.meta_put(key("r/b"), Bytes::from_static(b"B"))
                .await
                .unwrap_err(),
        );
        let tiny = Bytes::from_static(b"tiny");
        read_only(
            b.blob_put(&Digest::sha256(&tiny), tiny.clone())
                .await
                .unwrap_err(),
        );
        read_only(b.check().await.unwrap_err());
        assert!(b.meta_value(&key("r/b")).await.unwrap().is_none());
        assert!(b.is_read_only());

        // Writable again: the next write (a second on) reopens for writing.
        READ_ONLY_FILES.lock().unwrap().retain(|p| *p != db_file);
        tokio::time::sleep(WRITABLE_RETRY + Duration::from_millis(100)).await;
        b.meta_put(key("r/b"), Bytes::from_static(b"B"))
            .await
            .unwrap();
        assert!(!b.is_read_only());
        b.check().await.unwrap();
        assert_eq!(b.meta_value(&key("r/b")).await.unwrap().unwrap(), &b"B"[..]);
        assert_eq!(read_all(&b, &ds, None).await.concat(), small);
    }

    /// A database that was not closed cleanly, on storage that cannot be
    /// written, is repaired in memory and read; the file stays as it was.
    #[tokio::test]
    async fn unclean_database_on_read_only_storage_is_repaired_in_memory() {
        let live = tempfile::tempdir().unwrap();
        let copy = tempfile::tempdir().unwrap();
        let small = Bytes::from(pattern(3000, 5));
        let ds = Digest::sha256(&small);
        let b = FsBackend::open(live.path()).unwrap();
        b.blob_put(&ds, small.clone()).await.unwrap();
        b.meta_put(key("r/a"), Bytes::from_static(b"A"))
            .await
            .unwrap();
        // A copy taken while the database is open is what a crash leaves.
        for dir in ["blobs", "stage", "tmp"] {
            fs::create_dir(copy.path().join(dir)).unwrap();
        }
        let db_file = copy.path().join(META_FILE);
        fs::copy(live.path().join(META_FILE), &db_file).unwrap();
        drop(b);
        let before = fs::read(&db_file).unwrap();
        assert!(matches!(
            redb::ReadOnlyDatabase::open(&db_file),
            Err(redb::DatabaseError::RepairAborted)
        ));

        READ_ONLY_FILES.lock().unwrap().push(db_file.clone());
        let b = FsBackend::open(copy.path()).unwrap();
        assert!(b.is_read_only());
        assert!(matches!(
            b.inner.shared.db.read_slot().db,
            Some(Handle::Repaired(_))
        ));
        assert_eq!(b.meta_value(&key("r/a")).await.unwrap().unwrap(), &b"A"[..]);
        assert_eq!(read_all(&b, &ds, None).await.concat(), small);
        let e = b
            .meta_put(key("r/b"), Bytes::from_static(b"B"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is read-only"), "{e}");
        drop(b);
        READ_ONLY_FILES.lock().unwrap().retain(|p| *p != db_file);
        assert!(
            fs::read(&db_file).unwrap() == before,
            "the file is untouched"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_right_after_dropping_with_abandoned_calls() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("a/b");
        for _ in 0..50 {
            let b = FsBackend::open(dir.path()).unwrap();
            b.meta_put(k.clone(), Bytes::from_static(b"v"))
                .await
                .unwrap();
            // Abandoned after the first poll, as `try_join_all` does with the
            // rest when one fails: their blocking work is still running.
            let _ = b.meta_get(&k).now_or_never();
            let _ = b
                .meta_list(
                    "a/",
                    ListOptions {
                        start_after: None,
                        limit: 10,
                        values: true,
                    },
                )
                .now_or_never();
            let _ = b.check().now_or_never();
            let _ = b.blob_stat(&Digest::sha256(b"x")).now_or_never();
            drop(b);
        }
        let b = FsBackend::open(dir.path()).unwrap();
        assert_eq!(b.meta_value(&k).await.unwrap().unwrap(), &b"v"[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_append_in_small_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        const CHUNK: usize = 64 * 1024;
        const TOTAL: usize = 64 * 1024 * 1024;
        let block = Bytes::from(pattern(CHUNK * 7 + 13, 5));
        let chunk_at = move |i: usize| {
            let at = (i * CHUNK) % (block.len() - CHUNK);
            block.slice(at..at + CHUNK)
        };
        let mut expected = wharf_types::Digester::new(wharf_types::Algorithm::Sha256);
        for i in 0..TOTAL / CHUNK {
            expected.update(&chunk_at(i));
        }
        let expected = expected.finish();
        let input = futures::stream::iter(0..TOTAL / CHUNK).map(move |i| Ok(chunk_at(i)));
        let id = UploadId::random();
        // Some odd small chunks first exercise the coalescing path.
        let head: &[&[u8]] = &[b"a", b"bc", &[7u8; 5000]];
        let mut head_digest = wharf_types::Digester::new(wharf_types::Algorithm::Sha256);
        for h in head {
            head_digest.update(h);
        }
        let n = b.stage_append(&id, 0, ok_stream(head)).await.unwrap();
        assert_eq!(n, 5003);
        let n = b.stage_append(&id, 0, input.boxed()).await.unwrap();
        assert_eq!(n, TOTAL as u64);
        assert_eq!(b.stage_list().await.unwrap()[0].len, TOTAL as u64);
        b.stage_commit(&id, n, &expected).await.unwrap();
        let mut got = wharf_types::Digester::new(wharf_types::Algorithm::Sha256);
        let mut s = b.blob_read(&expected, None).await.unwrap();
        while let Some(c) = s.next().await {
            got.update(&c.unwrap());
        }
        assert_eq!(got.len(), TOTAL as u64);
        assert_eq!(got.finish(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_overtaken_by_commit_or_newer_append_stops() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let id = UploadId::random();
        let data = pattern(200_000, 6);
        let d = Digest::sha256(&data);
        b.stage_append(&id, 0, ok_stream(&[&data])).await.unwrap();

        // A slow request on the stage...
        let (tx, rx) = futures::channel::mpsc::unbounded::<BackendResult<Bytes>>();
        let slow = tokio::spawn({
            let b = b.clone();
            async move { b.stage_append(&id, 200_000, rx.boxed()).await }
        });
        tx.unbounded_send(Ok(Bytes::from(vec![1u8; 100]))).unwrap();
        wait_for_stage_len(&b, 200_100).await;
        // ...is overtaken by the commit...
        b.stage_commit(&id, 200_000, &d).await.unwrap();
        // ...and can no longer write into what is now the blob.
        tx.unbounded_send(Ok(Bytes::from(vec![2u8; 2 * WRITE_CHUNK])))
            .unwrap();
        drop(tx);
        let err = slow.await.unwrap().unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(b.blob_bytes(&d).await.unwrap(), data);

        // A newer append at an earlier offset wins over an older one.
        let id = UploadId::random();
        b.stage_append(&id, 0, ok_stream(&[&data])).await.unwrap();
        let (tx, rx) = futures::channel::mpsc::unbounded::<BackendResult<Bytes>>();
        let slow = tokio::spawn({
            let b = b.clone();
            async move { b.stage_append(&id, 200_000, rx.boxed()).await }
        });
        tx.unbounded_send(Ok(Bytes::from(vec![1u8; 100]))).unwrap();
        wait_for_stage_len(&b, 200_100).await;
        let n = b
            .stage_append(&id, 100_000, ok_stream(&[&data[100_000..]]))
            .await
            .unwrap();
        assert_eq!(n, 200_000);
        tx.unbounded_send(Ok(Bytes::from(vec![2u8; 2 * WRITE_CHUNK])))
            .unwrap();
        drop(tx);
        let err = slow.await.unwrap().unwrap_err();
        assert!(matches!(err, BackendError::OffsetMismatch { .. }), "{err}");
        assert_eq!(b.stage_list().await.unwrap()[0].len, 200_000);
        b.stage_commit(&id, 200_000, &d).await.unwrap();
        assert!(b.inner.shared.stages.lock_map().is_empty());
    }

    /// Whether a blob is stored inline, and whether as a file.
    fn placement(b: &FsBackend, d: &Digest) -> (bool, bool) {
        let inline = b.inner.shared.inline_meta(d).unwrap().is_some();
        (inline, b.inner.shared.blob_path(d).is_file())
    }

    /// Rows of the inline blob tables: index, pieces, tails.
    fn inline_rows(b: &FsBackend) -> (u64, u64, u64) {
        use redb::ReadableTableMetadata;
        b.inner
            .shared
            .db
            .with_db("count", |db| {
                let txn = db.begin_read()?;
                Ok((
                    txn.open_table(BLOB_TABLE)?.len()?,
                    txn.open_table(PIECE_TABLE)?.len()?,
                    txn.open_table(TAIL_TABLE)?.len()?,
                ))
            })
            .unwrap()
    }

    async fn listed(b: &FsBackend, after: Option<&Digest>, limit: usize) -> Vec<Digest> {
        b.blob_list(after, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.digest)
            .collect()
    }

    #[test]
    fn pieces_fill_their_pages() {
        for len in [
            0,
            1,
            3839,
            3840,
            3841,
            4096,
            65_279,
            65_280,
            65_281,
            100_000,
            1 << 20,
            (1 << 20) + 1,
            16 << 20,
        ] {
            let sizes: Vec<usize> = piece_sizes(len).collect();
            let total: usize = sizes.iter().sum();
            assert!(
                total <= len && len - total < DB_PAGE - PIECE_HEADROOM,
                "{len}"
            );
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{len}: {sizes:?}");
            for size in sizes {
                // A one-pair leaf: 4-byte header, two 4-byte lengths, the
                // key (at most a sha512 digest and 4 bytes), the value.
                let leaf = 12 + 7 + 128 + 4 + size;
                let page = leaf.next_power_of_two().max(DB_PAGE);
                assert!(
                    leaf <= page && page - leaf < PIECE_HEADROOM,
                    "{len}: {size}"
                );
            }
        }
        assert_eq!(piece_sizes((1 << 20) + 5).count(), 1);
        assert_eq!(piece_sizes(3 << 20).count(), 3);
        assert_eq!(piece_sizes((1 << 20) - 300).count(), 2);
    }

    #[tokio::test]
    async fn inline_or_file_at_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let threshold = 100_000;
        let b = FsBackend::open_with(
            dir.path(),
            FsOptions::default().with_inline_threshold(threshold),
        )
        .unwrap();
        let mut all = Vec::new();
        for (len, inline) in [
            (threshold - 1, true),
            (threshold, true),
            (threshold + 1, false),
        ] {
            let data = pattern(len as usize, len as u8);
            let d = Digest::sha256(&data);
            b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
            assert_eq!(placement(&b, &d), (inline, !inline), "{len} bytes");
            assert_eq!(b.blob_stat(&d).await.unwrap().size, len);
            assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
            // Ranges across piece boundaries (65,280 + 32,512 bytes of
            // pieces, then the tail) and the ends.
            for r in [
                0..1,
                65_279..65_281,
                97_791..97_793,
                1000..99_000,
                len - 10..len,
                5..5,
            ] {
                let got = read_all(&b, &d, Some(r.clone())).await;
                assert!(got.len() <= 1, "inline reads are one chunk");
                assert_eq!(
                    got.concat(),
                    &data[r.start as usize..r.end as usize],
                    "{len}: {r:?}"
                );
            }
            assert!(b.blob_read(&d, Some(0..len + 1)).await.is_err());
            all.push(d);
        }
        all.sort();
        assert_eq!(listed(&b, None, 10).await, all);
        // Two blobs inline: index rows, pieces (2 each), tails.
        assert_eq!(inline_rows(&b), (2, 4, 2));

        // Also at the default threshold, and the empty blob.
        drop(b);
        let b = FsBackend::open_with(dir.path(), inline_1mib()).unwrap();
        for (len, inline) in [(1 << 20, true), ((1 << 20) + 1, false), (0, true)] {
            let data = pattern(len, 9);
            let d = Digest::sha256(&data);
            b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
            assert_eq!(placement(&b, &d), (inline, !inline), "{len} bytes");
            assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
        }
        let empty = Digest::sha256(b"");
        assert!(read_all(&b, &empty, None).await.is_empty());
        assert_eq!(b.blob_stat(&empty).await.unwrap().size, 0);
    }

    #[tokio::test]
    async fn inline_blobs_take_about_their_size_in_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        let n = 16u64;
        for i in 0..n {
            let data = pattern((1 << 20) - i as usize * 1000, i as u8);
            b.blob_put(&Digest::sha256(&data), Bytes::from(data))
                .await
                .unwrap();
        }
        let stats = b
            .inner
            .shared
            .db
            .with_writable_db("stats", |db| Ok(db.begin_write()?.stats()?))
            .unwrap();
        let allocated = stats.allocated_pages() * stats.page_size() as u64;
        // Pages in use: within 5% of the content (one value per blob
        // would take a 2 MiB page each).
        assert!(
            allocated < n * (1 << 20) * 21 / 20,
            "{allocated} bytes allocated for {n} MiB"
        );
    }

    #[tokio::test]
    async fn blob_list_merges_inline_blobs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open_with(dir.path(), FsOptions::default().with_inline_threshold(500))
            .unwrap();
        let mut all = Vec::new();
        for i in 0..40u32 {
            // Small ones inline, large ones as files, both algorithms.
            let data = pattern(if i % 3 == 0 { 600 } else { 40 }, i as u8);
            let d = if i % 4 == 0 {
                Digest::compute(wharf_types::Algorithm::Sha512, &data)
            } else {
                Digest::sha256(&data)
            };
            b.blob_put(&d, Bytes::from(data)).await.unwrap();
            assert_eq!(placement(&b, &d).1, i % 3 == 0);
            all.push(d);
        }
        // One inline blob also present as a file.
        let both = all.iter().find(|d| placement(&b, d).0).unwrap().clone();
        let path = b.inner.shared.blob_path(&both);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b.blob_bytes(&both).await.unwrap()).unwrap();
        assert_eq!(placement(&b, &both), (true, true));
        all.sort();

        assert_eq!(listed(&b, None, 1000).await, all);
        assert!(listed(&b, None, 0).await.is_empty());
        for page in [1, 2, 3, 7, 13, 39, 40, 41] {
            let mut got = Vec::new();
            let mut after: Option<Digest> = None;
            loop {
                let batch = listed(&b, after.as_ref(), page).await;
                assert!(batch.len() <= page);
                let Some(last) = batch.last() else { break };
                after = Some(last.clone());
                got.extend(batch);
            }
            assert_eq!(got, all, "page {page}");
        }
        for (i, cursor) in all.iter().enumerate() {
            for limit in [1, 5, 100] {
                let expected: Vec<Digest> = all.iter().skip(i + 1).take(limit).cloned().collect();
                assert_eq!(listed(&b, Some(cursor), limit).await, expected);
            }
        }
        for probe in [
            Digest::sha256(b"not stored"),
            Digest::compute(wharf_types::Algorithm::Sha512, b"not stored"),
        ] {
            let expected: Vec<Digest> = all.iter().filter(|d| **d > probe).cloned().collect();
            assert_eq!(listed(&b, Some(&probe), 1000).await, expected);
        }
        let sizes: Vec<u64> = b
            .blob_list(None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|m| m.size)
            .collect();
        assert!(sizes.iter().all(|s| *s == 40 || *s == 600));
    }

    #[tokio::test]
    async fn a_blob_stored_inline_and_as_a_file_is_one_blob() {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(5000, 21);
        let d = Digest::sha256(&data);
        // First as a file (every blob a file), ...
        let b = FsBackend::open_with(dir.path(), files_only()).unwrap();
        b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(placement(&b, &d), (false, true));
        drop(b);
        // ... then puts and stage commits of it with inlining find it and
        // leave it there.
        let b = FsBackend::open(dir.path()).unwrap();
        b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
        b.blob_put_with_meta(
            &d,
            Bytes::from(data.clone()),
            vec![MetaOp::Put(key("x/1"), Bytes::new())],
        )
        .await
        .unwrap();
        let id = UploadId::random();
        b.stage_append(&id, 0, ok_stream(&[&data])).await.unwrap();
        b.stage_commit(&id, data.len() as u64, &d).await.unwrap();
        assert!(b.stage_list().await.unwrap().is_empty());
        assert_eq!(placement(&b, &d), (false, true));
        assert!(b.meta_value(&key("x/1")).await.unwrap().is_some());

        // Both places (as a crash between a file write and its removal
        // could leave): one blob, readable, deleted from both.
        let inline = Digest::sha256(b"inline");
        b.blob_put(&inline, Bytes::from_static(b"inline"))
            .await
            .unwrap();
        let path = b.inner.shared.blob_path(&inline);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"inline").unwrap();
        assert_eq!(placement(&b, &inline), (true, true));
        let mut expected = vec![d.clone(), inline.clone()];
        expected.sort();
        assert_eq!(listed(&b, None, 10).await, expected);
        assert_eq!(b.blob_stat(&inline).await.unwrap().size, 6);
        assert_eq!(b.blob_bytes(&inline).await.unwrap(), &b"inline"[..]);
        b.blob_delete(&inline).await.unwrap();
        assert_eq!(placement(&b, &inline), (false, false));
        assert!(b.blob_stat(&inline).await.unwrap_err().is_not_found());
        assert_eq!(listed(&b, None, 10).await, [d]);
    }

    #[tokio::test]
    async fn small_stages_commit_inline() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open_with(dir.path(), inline_1mib()).unwrap();
        let data = pattern(300_000, 22);
        let d = Digest::sha256(&data);
        let id = UploadId::random();
        let n = b
            .stage_append(&id, 0, ok_stream(&[&data[..1000]]))
            .await
            .unwrap();
        let n = b
            .stage_append(&id, n, ok_stream(&[&data[1000..], b"unacknowledged"]))
            .await
            .unwrap();
        assert_eq!(n, 300_014);
        b.stage_commit(&id, 300_000, &d).await.unwrap();
        assert_eq!(placement(&b, &d), (true, false));
        assert!(b.stage_list().await.unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("stage")).unwrap().count(), 0);
        assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
        let age = SystemTime::now()
            .duration_since(b.blob_stat(&d).await.unwrap().modified)
            .unwrap();
        assert!(age < Duration::from_secs(60));
        assert!(
            b.stage_commit(&id, 300_000, &d)
                .await
                .unwrap_err()
                .is_not_found()
        );

        // A stage of a blob that is stored already is just removed.
        let again = UploadId::random();
        b.stage_append(&again, 0, ok_stream(&[&data]))
            .await
            .unwrap();
        b.stage_commit(&again, 300_000, &d).await.unwrap();
        assert!(b.stage_list().await.unwrap().is_empty());
        assert_eq!(inline_rows(&b).0, 1);

        // One byte past the threshold: a file.
        let large = pattern((1 << 20) + 1, 23);
        let dl = Digest::sha256(&large);
        let id = UploadId::random();
        let n = b.stage_append(&id, 0, ok_stream(&[&large])).await.unwrap();
        b.stage_commit(&id, n, &dl).await.unwrap();
        assert_eq!(placement(&b, &dl), (false, true));
        assert_eq!(b.blob_bytes(&dl).await.unwrap(), large);

        // Concurrent commits of one small digest from several stages.
        let small = b"small content";
        let ds = Digest::sha256(small);
        let mut ids = Vec::new();
        for _ in 0..8 {
            let id = UploadId::random();
            b.stage_append(&id, 0, ok_stream(&[small])).await.unwrap();
            ids.push(id);
        }
        let commits = ids.iter().map(|id| {
            let b = b.clone();
            let ds = ds.clone();
            let id = *id;
            tokio::spawn(async move { b.stage_commit(&id, small.len() as u64, &ds).await })
        });
        for r in futures::future::join_all(commits).await {
            r.unwrap().unwrap();
        }
        assert_eq!(b.blob_bytes(&ds).await.unwrap(), &small[..]);
        assert!(b.stage_list().await.unwrap().is_empty());
        assert_eq!(inline_rows(&b).0, 2);
    }

    #[tokio::test]
    async fn deleting_an_inline_blob_frees_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open_with(dir.path(), inline_1mib()).unwrap();
        let data = pattern(200_000, 24);
        let d = Digest::sha256(&data);
        let keep = pattern(10, 25);
        let dk = Digest::sha256(&keep);
        b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
        b.blob_put(&dk, Bytes::from(keep.clone())).await.unwrap();
        // 200,000 bytes: pieces of 130,816, 65,280 and 3,840 bytes, a tail
        // of 64; 10 bytes: a tail.
        assert_eq!(inline_rows(&b), (2, 3, 2));
        b.blob_delete(&d).await.unwrap();
        b.blob_delete(&d).await.unwrap();
        assert_eq!(inline_rows(&b), (1, 0, 1));
        assert!(b.blob_stat(&d).await.unwrap_err().is_not_found());
        assert!(b.blob_read(&d, None).await.err().unwrap().is_not_found());
        assert_eq!(listed(&b, None, 10).await, std::slice::from_ref(&dk));
        assert_eq!(b.blob_bytes(&dk).await.unwrap(), keep);
        // Stored again after a delete.
        b.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
        // The unsynced removal is made durable by the next commit.
        b.blob_delete(&d).await.unwrap();
        b.meta_put(key("a/b"), Bytes::new()).await.unwrap();
        drop(b);
        let b = FsBackend::open_with(dir.path(), inline_1mib()).unwrap();
        assert!(b.blob_stat(&d).await.unwrap_err().is_not_found());
        assert_eq!(inline_rows(&b), (1, 0, 1));
    }

    #[tokio::test]
    async fn inline_blobs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Vec<Vec<u8>> = [0, 1, 3840, 4096, 70_000, 1 << 20]
            .iter()
            .map(|n| pattern(*n, 26))
            .collect();
        {
            let b = FsBackend::open_with(dir.path(), inline_1mib()).unwrap();
            for (i, data) in blobs.iter().enumerate() {
                b.blob_put_with_meta(
                    &Digest::sha256(data),
                    Bytes::from(data.clone()),
                    vec![MetaOp::Put(key(&format!("b/{i}")), Bytes::new())],
                )
                .await
                .unwrap();
            }
        }
        // With inlining off, everything is still found; new small blobs
        // become files.
        for options in [inline_1mib(), files_only()] {
            let b = FsBackend::open_with(dir.path(), options).unwrap();
            for (i, data) in blobs.iter().enumerate() {
                let d = Digest::sha256(data);
                assert_eq!(placement(&b, &d), (true, false));
                assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
                assert_eq!(b.blob_stat(&d).await.unwrap().size, data.len() as u64);
                assert!(
                    b.meta_value(&key(&format!("b/{i}")))
                        .await
                        .unwrap()
                        .is_some()
                );
            }
            assert_eq!(b.blob_list(None, 100).await.unwrap().len(), blobs.len());
        }
        let b = FsBackend::open_with(dir.path(), files_only()).unwrap();
        let d = Digest::sha256(b"new");
        b.blob_put(&d, Bytes::from_static(b"new")).await.unwrap();
        assert_eq!(placement(&b, &d), (false, true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn relaxed_writes_are_visible_at_once_and_kept_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open(dir.path()).unwrap();
        b.meta_apply_relaxed(vec![MetaOp::Put(key("lazy/a"), Bytes::from_static(b"1"))])
            .await
            .unwrap();
        assert_eq!(
            b.meta_value(&key("lazy/a")).await.unwrap().unwrap(),
            &b"1"[..]
        );
        // Grouped with a durable write, it becomes durable with it.
        b.meta_put(key("lazy/b"), Bytes::from_static(b"2"))
            .await
            .unwrap();
        b.meta_apply_relaxed(vec![MetaOp::Put(key("lazy/c"), Bytes::from_static(b"3"))])
            .await
            .unwrap();
        // A clean close keeps relaxed writes too.
        drop(b);
        let b = FsBackend::open(dir.path()).unwrap();
        for (k, v) in [("lazy/a", "1"), ("lazy/b", "2"), ("lazy/c", "3")] {
            assert_eq!(
                b.meta_value(&key(k)).await.unwrap().unwrap(),
                v.as_bytes(),
                "{k}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn blob_put_with_meta_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBackend::open_with(dir.path(), inline_1mib()).unwrap();
        let data = pattern(50_000, 27);
        let d = Digest::sha256(&data);
        b.blob_put_with_meta(
            &d,
            Bytes::from(data.clone()),
            vec![
                MetaOp::Put(key("ok/link"), Bytes::from_static(b"l")),
                MetaOp::Put(key("ok/tag"), Bytes::from_static(b"t")),
            ],
        )
        .await
        .unwrap();
        // Both visible as soon as it returns.
        assert_eq!(b.blob_bytes(&d).await.unwrap(), data);
        assert_eq!(
            b.meta_value(&key("ok/tag")).await.unwrap().unwrap(),
            &b"t"[..]
        );

        // A batch whose last operation fails inside the transaction
        // leaves neither the blob nor the records before it, also when
        // it was grouped with other callers' batches, which succeed.
        let failing = format!("fail/{}", UploadId::random());
        FAIL_ON_KEYS.lock().unwrap().push(failing.clone());
        let bad = pattern(70_000, 28);
        let d_bad = Digest::sha256(&bad);
        let calls = (0..16).map(|i| {
            let b = b.clone();
            let (d_bad, bad, failing) = (d_bad.clone(), bad.clone(), failing.clone());
            tokio::spawn(async move {
                if i == 7 {
                    b.blob_put_with_meta(
                        &d_bad,
                        Bytes::from(bad),
                        vec![
                            MetaOp::Put(key("bad/link"), Bytes::new()),
                            MetaOp::Put(key(&failing), Bytes::new()),
                        ],
                    )
                    .await
                } else {
                    let data = pattern(3000, i);
                    b.blob_put_with_meta(
                        &Digest::sha256(&data),
                        Bytes::from(data),
                        vec![MetaOp::Put(key(&format!("good/{i}")), Bytes::new())],
                    )
                    .await
                }
            })
        });
        for (i, r) in futures::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            let r = r.unwrap();
            if i == 7 {
                let e = r.unwrap_err();
                assert!(e.to_string().contains("injected failure"), "{e}");
            } else {
                r.unwrap();
                let data = pattern(3000, i as u8);
                assert_eq!(b.blob_bytes(&Digest::sha256(&data)).await.unwrap(), data);
                assert!(
                    b.meta_value(&key(&format!("good/{i}")))
                        .await
                        .unwrap()
                        .is_some()
                );
            }
        }
        assert!(b.blob_stat(&d_bad).await.unwrap_err().is_not_found());
        assert_eq!(placement(&b, &d_bad), (false, false));
        assert!(b.meta_value(&key("bad/link")).await.unwrap().is_none());

        // A large blob is a file written first: it stays when the records
        // fail (content before the records that point to it).
        let large = pattern((1 << 20) + 100, 29);
        let d_large = Digest::sha256(&large);
        let err = b
            .blob_put_with_meta(
                &d_large,
                Bytes::from(large.clone()),
                vec![
                    MetaOp::Put(key("large/link"), Bytes::new()),
                    MetaOp::Put(key(&failing), Bytes::new()),
                ],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(placement(&b, &d_large), (false, true));
        assert!(b.meta_value(&key("large/link")).await.unwrap().is_none());
        FAIL_ON_KEYS.lock().unwrap().retain(|k| *k != failing);

        // The writer keeps working.
        b.meta_put(key("after/1"), Bytes::new()).await.unwrap();
        assert_eq!(b.meta_get(&key("ok/link")).await.unwrap().value, &b"l"[..]);
    }
}
