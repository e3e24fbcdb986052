//! An S3 / S3-compatible storage backend for the Wharf container registry.
//!
//! [`S3Backend`] implements [`wharf_storage::Backend`] on one bucket (and an
//! optional key prefix), so that several stateless `wharf` processes can
//! serve one registry: blobs, metadata records and upload sessions with
//! their staged bytes all live in the bucket. It speaks the S3 API directly
//! (SigV4, path-style or virtual-hosted addressing) and was tested against
//! a three-node Garage cluster; AWS S3, MinIO and Ceph RGW speak the same
//! requests.
//!
//! Design and consistency argument: `docs/adr/0003-s3-backend.md`.

mod backend;
mod client;
mod config;
mod error;
mod sigv4;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod xml;

pub use backend::S3Backend;
pub use config::S3Config;
pub use error::S3Error;
