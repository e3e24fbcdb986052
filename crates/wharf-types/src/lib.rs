//! Validated types for the OCI Distribution API, as used by the Wharf
//! container registry.
//!
//! Everything a client sends is parsed into one of these types before it is
//! used: [`Digest`], [`RepositoryName`], [`Tag`], [`Reference`], [`UploadId`],
//! [`MediaType`] and [`Manifest`]. Each parser is linear-time, returns a typed
//! error that maps onto an OCI [`ErrorCode`], and never panics. The crate does
//! no I/O.
//!
//! ```
//! use bytes::Bytes;
//! use wharf_types::{Digest, Manifest, Reference, RepositoryName};
//!
//! let name: RepositoryName = "library/busybox".parse()?;
//! let reference: Reference = "latest".parse()?;
//! let body = Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#);
//! let manifest = Manifest::parse(body.clone(), Some("application/vnd.oci.image.index.v1+json"))?;
//! assert_eq!(manifest.digest(), &Digest::sha256(&body));
//! # let _ = (name, reference);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the `proptest` feature, [`strategies`] generates valid and near-miss
//! invalid values for property tests of code built on these types.

mod descriptor;
mod digest;
mod digester;
mod error;
mod manifest;
pub mod media_type;
mod name;
mod reference;
mod tag;
mod upload;

#[cfg(feature = "proptest")]
pub mod strategies;

pub use descriptor::Descriptor;
pub use digest::{Algorithm, Digest, DigestError};
pub use digester::{
    Digester, DigesterState, StateError, VerifyError, VerifyingStream, VerifyingWriter,
};
pub use error::{ErrorBody, ErrorCode, ErrorInfo, OciError};
pub use manifest::{Manifest, ManifestError, ManifestKind, ManifestParser};
pub use media_type::{MediaType, MediaTypeError};
pub use name::{NameError, RepositoryName};
pub use reference::{Reference, ReferenceError};
pub use tag::{Tag, TagError};
pub use upload::{UploadId, UploadIdError};

/// Re-export of the oci-spec crate, whose types some of ours convert to.
pub use oci_spec;
