//! Registry events for embedders: webhooks, scanning, audit logs.

use wharf_types::{Digest, MediaType, RepositoryName, Tag};

/// Something that changed in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A manifest was stored (and tagged, when pushed by tag).
    ManifestPushed {
        /// The repository.
        repository: RepositoryName,
        /// The manifest.
        digest: Digest,
        /// Its media type.
        media_type: MediaType,
        /// The tag it was pushed under, if any.
        tag: Option<Tag>,
        /// Its subject, if it refers to another manifest.
        subject: Option<Digest>,
    },
    /// A tag now points to another manifest than before.
    TagMoved {
        /// The repository.
        repository: RepositoryName,
        /// The tag.
        tag: Tag,
        /// The manifest it pointed to.
        from: Digest,
        /// The manifest it points to now.
        to: Digest,
    },
    /// A manifest was deleted (with the tags pointing to it).
    ManifestDeleted {
        /// The repository.
        repository: RepositoryName,
        /// The manifest.
        digest: Digest,
    },
    /// A tag was deleted.
    TagDeleted {
        /// The repository.
        repository: RepositoryName,
        /// The tag.
        tag: Tag,
    },
    /// A blob upload completed (or a blob was mounted).
    BlobUploaded {
        /// The repository.
        repository: RepositoryName,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Whether it was mounted from another repository instead of uploaded.
        mounted: bool,
    },
    /// A blob was unlinked from a repository.
    BlobDeleted {
        /// The repository.
        repository: RepositoryName,
        /// The blob.
        digest: Digest,
    },
}

/// Receives events synchronously, in order, right after each change is
/// durable. Implementations must be quick (queue work elsewhere).
pub trait EventHook: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event);
}
