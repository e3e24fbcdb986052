//! The filesystem backend (feature `fs`): blobs and staged writes as files,
//! metadata records in an embedded [redb](https://docs.rs/redb) database.
//!
//! Layout under the root directory:
//!
//! ```text
//! blobs/<algorithm>/<first two hex chars>/<hex>   one file per blob
//! stage/<upload-id>                               one file per staged write
//! tmp/                                            temp files; emptied on open
//! meta.redb                                       all metadata records
//! ```
//!
//! Durability: every file that becomes visible under a final name was
//! written to a temp name (or the stage), `fdatasync`ed and then renamed,
//! and the directories involved were `fsync`ed before the call returns.
//! Metadata writes are committed with [`redb::Durability::Immediate`]; the
//! batches of concurrent callers are grouped into one transaction (one
//! fsync) by a single writer thread.
//!
//! Staged writes: the input stream is polled on the async side (where the
//! caller hashes it) and handed to one writer thread per call through a
//! queue bounded to a few MiB, small chunks gathered into large writes.
//! Every 32 MiB a helper thread starts an `fdatasync`, so the disk works
//! while input still arrives and the final sync has little left. Appends,
//! commits and aborts of one stage are ordered: an append overtaken by a
//! newer operation on its stage stops before its next write.
//!
//! Deletions (`blob_delete`, `stage_abort`) are not fsynced: a crash right
//! after one may bring the file back, which is harmless (a blob is complete
//! and content addressed, and garbage collection or upload expiry removes
//! it again).

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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Semaphore, oneshot};
use wharf_types::{Digest, UploadId};

use crate::backend::{
    Backend, BackendError, BackendResult, BlobMeta, ByteStream, Key, ListOptions, MetaEntry,
    MetaOp, MetaValue, StageMeta,
};

/// The one metadata table: key text -> 8-byte little-endian modification
/// time (unix milliseconds) followed by the value bytes.
const META_TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// The metadata database file, under the root.
const META_FILE: &str = "meta.redb";
/// Most memory redb may use for its page cache.
const META_CACHE_BYTES: usize = 128 << 20;
/// Most caller batches folded into one metadata transaction.
const MAX_GROUP_BATCHES: usize = 1024;

/// Staged writes are written to disk in units of about this size.
const WRITE_CHUNK: usize = 1 << 20;
/// Most bytes of one staged write in flight between the input stream and
/// the writer thread (queued or being written).
const WRITE_IN_FLIGHT: usize = 4 << 20;
/// Input chunks smaller than this are copied together before being queued
/// (larger ones are queued as they are, without copying).
const SMALL_CHUNK: usize = 16 << 10;
/// Size at which a run of small input chunks is queued.
const SMALL_BATCH: usize = 64 << 10;

/// A staged write starts flushing to disk in the background (an `fdatasync`
/// on a helper thread, while writing goes on) each time this many bytes
/// were written since the last start, so that the final `fdatasync` has
/// little left to do and the disk works while the input is still arriving.
const BACKGROUND_SYNC_EVERY: u64 = 32 << 20;

/// Chunk size of blob reads.
const READ_CHUNK: usize = 1 << 20;
/// Chunks a blob reader may have queued ahead of the consumer.
const READ_QUEUE: usize = 2;

/// Stores blobs and staged writes as files under a root directory, and
/// metadata records in an embedded redb database (`meta.redb`) there.
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
    meta_tx: Option<mpsc::Sender<MetaRequest>>,
    meta_thread: Option<JoinHandle<()>>,
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
        drop(self.meta_tx.take());
        if let Some(thread) = self.meta_thread.take()
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
    /// Opens (creating if needed) a data directory.
    ///
    /// Creates the layout, opens the metadata database (which takes an
    /// exclusive lock on it: a directory in use by another `FsBackend`, in
    /// this or another process, is an error), and empties `tmp/` of what an
    /// interrupted run left there.
    pub fn open(root: impl AsRef<Path>) -> Result<FsBackend, BackendError> {
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
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(BackendError::io(format!("create {}", dir.display()), e)),
            }
        }
        let db_path = root.join(META_FILE);
        // The database lock is what makes the directory ours: only clean
        // tmp/ once it is held.
        let database = open_database(&db_path, &root)?;
        empty_dir(&tmp)?;
        sync_dir(&root)?;

        let db = Arc::new(MetaDb {
            path: db_path,
            root: root.clone(),
            slot: RwLock::new(DbSlot {
                db: Some(database),
                generation: 0,
                closed: false,
            }),
        });
        let (meta_tx, meta_rx) = mpsc::channel();
        let writer_db = db.clone();
        let meta_thread = std::thread::Builder::new()
            .name("wharf-fs-meta".into())
            .spawn(move || meta_writer(&writer_db, &meta_rx))
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
                }),
                meta_tx: Some(meta_tx),
                meta_thread: Some(meta_thread),
            }),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.shared.root
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

/// An internal thread went away.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Stopped(&'static str);

// ---------------------------------------------------------------------------
// Metadata database

/// The database handle, replaceable: after an I/O failure redb refuses all
/// work (`PreviousIo`) until the database is reopened, which any thread
/// that meets such an error does through [`MetaDb::reopen`].
struct MetaDb {
    path: PathBuf,
    root: PathBuf,
    slot: RwLock<DbSlot>,
}

struct DbSlot {
    /// `None` after a failed reopen (the next user tries again) or once
    /// closed.
    db: Option<Database>,
    /// Bumped by every reopen, so that concurrent users reopen once.
    generation: u64,
    /// Set when the last backend handle is dropped; never reopened then.
    closed: bool,
}

fn open_database(path: &Path, root: &Path) -> BackendResult<Database> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(META_CACHE_BYTES);
    let db = builder.create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => BackendError::Other(Box::new(InUse {
            root: root.to_path_buf(),
            db: path.to_path_buf(),
        })),
        e => db_error("open", e),
    })?;
    let txn = db.begin_write().map_err(|e| db_error("open", e))?;
    txn.open_table(META_TABLE)
        .map_err(|e| db_error("create the table", e))?;
    txn.commit().map_err(|e| db_error("create the table", e))?;
    Ok(db)
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

    /// Runs `f` on the database; after an error that latches the database
    /// (or when a reopen failed before), reopens it and runs `f` once more.
    fn with_db<T>(
        &self,
        context: &'static str,
        f: impl Fn(&Database) -> Result<T, redb::Error>,
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
                Some(Ok(value)) => return Ok(value),
                Some(Err(e)) if retried || !needs_reopen(&e) => return Err(db_error(context, e)),
                None if retried => {
                    return Err(BackendError::Other(Box::new(Stopped(
                        "metadata database is closed after an I/O error and could not be reopened",
                    ))));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "reopening the metadata database");
                }
                None => {}
            }
            retried = true;
            self.reopen(generation)?;
        }
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
        drop(slot.db.take());
        slot.generation += 1;
        slot.db = Some(open_database(&self.path, &self.root)?);
        Ok(())
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

/// Applies a group of batches in one durable transaction.
fn apply_group(db: &Database, batches: &[&[MetaOp]]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut table = txn.open_table(META_TABLE)?;
        let now = unix_millis(SystemTime::now());
        for ops in batches {
            for op in ops.iter() {
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
struct MetaRequest {
    ops: Vec<MetaOp>,
    reply: oneshot::Sender<BackendResult<()>>,
}

/// The metadata writer: owns all write transactions. Takes every batch
/// that is waiting, applies them in arrival order in one transaction,
/// commits (one fsync) and answers them all.
fn meta_writer(db: &MetaDb, rx: &mpsc::Receiver<MetaRequest>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES {
            match rx.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let batches: Vec<&[MetaOp]> = group.iter().map(|r| r.ops.as_slice()).collect();
        match db.with_db("write", |db| apply_group(db, &batches)) {
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
                // Keep one failing batch from failing the others: apply
                // each on its own.
                tracing::warn!(error = %e, batches = group.len(), "grouped metadata commit failed; retrying batch by batch");
                for request in group {
                    let result = db.with_db("write", |db| apply_group(db, &[&request.ops]));
                    let _ = request.reply.send(result);
                }
            }
        }
    }
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
        self.file.sync_data().map_err(|e| {
            BackendError::io(format!("fsync staged write {}", self.path.display()), e)
        })?;
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
        if self.pos - self.synced_from >= BACKGROUND_SYNC_EVERY {
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
    fn commit_stage(&self, id: UploadId, len: u64, digest: &Digest) -> BackendResult<()> {
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
        let blob = self.blob_path(digest);
        if blob
            .try_exists()
            .map_err(|e| BackendError::io(format!("stat {}", blob.display()), e))?
        {
            drop(file);
            remove_if_exists(&path)?;
            return sync_dir(&self.stage);
        }
        if actual > len {
            file.set_len(len).map_err(ctx)?;
        }
        // The blob's time is its commit time (garbage collection's grace
        // period counts from it), not the time of the last append.
        file.set_modified(SystemTime::now()).map_err(ctx)?;
        file.sync_all().map_err(ctx)?;
        drop(file);
        let shard = self.ensure_shard(digest)?;
        fs::rename(&path, &blob).map_err(|e| {
            BackendError::io(
                format!("rename {} to {}", path.display(), blob.display()),
                e,
            )
        })?;
        sync_dir(&shard)?;
        sync_dir(&self.stage)
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
    fn put_blob(&self, digest: &Digest, data: &[u8]) -> BackendResult<()> {
        let blob = self.blob_path(digest);
        if blob
            .try_exists()
            .map_err(|e| BackendError::io(format!("stat {}", blob.display()), e))?
        {
            return Ok(());
        }
        let tmp = self.tmp_path("put");
        let result = (|| {
            let ctx = |e| BackendError::io(format!("write {}", tmp.display()), e);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(ctx)?;
            file.write_all(data).map_err(ctx)?;
            file.sync_data().map_err(ctx)?;
            drop(file);
            let shard = self.ensure_shard(digest)?;
            fs::rename(&tmp, &blob).map_err(|e| {
                BackendError::io(format!("rename {} to {}", tmp.display(), blob.display()), e)
            })?;
            sync_dir(&shard)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn stat_blob(&self, digest: &Digest) -> BackendResult<BlobMeta> {
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

    /// Lists digests in `Digest` order (the string order of `alg:hex`).
    fn list_blobs(
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
        let inner = self.inner.shared.clone();
        let digest = digest.clone();
        blocking(move || inner.stat_blob(&digest)).await
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> BackendResult<ByteStream> {
        let path = self.inner.shared.blob_path(digest);
        let owned = digest.clone();
        let start = blocking(move || start_read(path, &owned, range)).await?;
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
        let inner = self.inner.shared.clone();
        let digest = digest.clone();
        blocking(move || inner.put_blob(&digest, &data)).await
    }

    async fn blob_delete(&self, digest: &Digest) -> BackendResult<()> {
        let path = self.inner.shared.blob_path(digest);
        blocking(move || remove_if_exists(&path)).await
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
        let id = *id;
        let digest = digest.clone();
        blocking(move || inner.commit_stage(id, len, &digest)).await
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
        let db = self.inner.shared.db.clone();
        let key = key.clone();
        let record = blocking(move || {
            db.with_db("read", |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(META_TABLE)?;
                Ok(table.get(key.as_str())?.map(|v| v.value().to_vec()))
            })
            .map(|record| (key, record))
        })
        .await?;
        match record {
            (key, None) => Err(BackendError::NotFound(key.to_string())),
            (key, Some(record)) => {
                let (modified, value) = decode_record(key.as_str(), record)?;
                Ok(MetaValue { value, modified })
            }
        }
    }

    async fn meta_apply(&self, ops: Vec<MetaOp>) -> BackendResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let stopped = || BackendError::Other(Box::new(Stopped("metadata writer thread stopped")));
        let tx = self.inner.meta_tx.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        tx.send(MetaRequest { ops, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions) -> BackendResult<Vec<MetaEntry>> {
        if options.limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.inner.shared.db.clone();
        let prefix = prefix.to_owned();
        let records = blocking(move || {
            db.with_db("list", |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(META_TABLE)?;
                let start = match &options.start_after {
                    Some(after) if after.as_str() >= prefix.as_str() => {
                        Bound::Excluded(after.as_str())
                    }
                    _ => Bound::Included(prefix.as_str()),
                };
                let mut records = Vec::new();
                for item in table.range::<&str>((start, Bound::Unbounded))? {
                    let (key, record) = item?;
                    let key = key.value();
                    if !key.starts_with(prefix.as_str()) || records.len() >= options.limit {
                        break;
                    }
                    let record = record.value();
                    let stored = if options.values {
                        record.to_vec()
                    } else {
                        record.get(..8).unwrap_or(record).to_vec()
                    };
                    records.push((key.to_owned(), stored));
                }
                Ok(records)
            })
        })
        .await?;
        records
            .into_iter()
            .map(|(key, record)| {
                let (modified, value) = decode_record(&key, record)?;
                let value = options.values.then_some(value);
                let key = Key::parse(key.clone())
                    .map_err(|_| BackendError::Other(Box::new(CorruptRecord(key))))?;
                Ok(MetaEntry {
                    key,
                    value,
                    modified,
                })
            })
            .collect()
    }

    async fn check(&self) -> BackendResult<()> {
        if self
            .inner
            .meta_thread
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
        let b = FsBackend::open(&root).unwrap();
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
        let b = FsBackend::open(dir.path()).unwrap();
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
}
