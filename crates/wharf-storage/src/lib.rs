//! Registry storage for Wharf.
//!
//! [`Store`] implements registry semantics (blobs and their per-repository
//! links, manifests, tags, referrers, upload sessions, the catalog, garbage
//! collection and scrubbing) once, over any [`Backend`]. Two backends are
//! built in: [`MemoryBackend`] and, with the default `fs` feature,
//! `FsBackend` (blobs as files, metadata in an embedded database).
//!
//! Third-party backends implement [`Backend`] and prove themselves with the
//! shared conformance suite (feature `conformance`, macro
//! `conformance_tests!`).

mod backend;
#[cfg(feature = "fs")]
mod fs;
mod memory;

pub use backend::{
    Backend, BackendError, BackendExt, BackendResult, BlobMeta, ByteStream, Key, ListOptions,
    MetaEntry, MetaOp, MetaValue, StageMeta,
};
#[cfg(feature = "fs")]
pub use fs::FsBackend;
pub use memory::MemoryBackend;
