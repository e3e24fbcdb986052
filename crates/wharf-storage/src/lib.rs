//! Registry storage for Wharf.
//!
//! [`Store`] implements registry semantics (blobs and their per-repository
//! links, manifests, tags, referrers, upload sessions, the catalog, garbage
//! collection and scrubbing) once, over any [`Backend`]. Two backends are
//! built in: [`MemoryBackend`] and, with the default `fs` feature,
//! `FsBackend` (large blobs as files; metadata and small blobs in an
//! embedded database).
//!
//! Third-party backends implement [`Backend`] and prove themselves with the
//! shared conformance suite (feature `conformance`, macro
//! `conformance_tests!`).
//!
//! The invariants the store keeps:
//!
//! 1. Content is addressed by the digest of its exact bytes; manifests are
//!    stored and served byte for byte as pushed.
//! 2. Nothing is readable under a digest until all its bytes were received,
//!    hashed, verified and durably written.
//! 3. A blob is readable through a repository only if it is linked there
//!    (pushed, mounted, or referenced by a manifest pushed there).
//! 4. Uploads stream with bounded memory, survive restarts and resume.
//! 5. Garbage collection never deletes content a concurrent push may still
//!    reference.

mod backend;
mod blobs;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
#[cfg(feature = "fs")]
mod fs;
mod gc;
mod keys;
mod manifests;
mod memory;
mod store;
mod uploads;

pub use backend::{
    Backend, BackendError, BackendExt, BackendResult, BlobMeta, ByteStream, Key, ListOptions,
    MetaEntry, MetaOp, MetaValue, StageMeta,
};
pub use blobs::{BlobInfo, BlobReader, ByteRange};
pub use error::{StoreError, StoreResult};
#[cfg(feature = "fs")]
pub use fs::{FsBackend, FsOptions};
pub use gc::{GcOptions, GcReport, Progress, ScrubReport};
pub use manifests::{ManifestInfo, Page, PushedManifest, StoredManifest};
pub use memory::MemoryBackend;
pub use store::{Body, Store, StoreConfig, body_from_bytes};
pub use uploads::{FinalChunk, UploadStatus};
