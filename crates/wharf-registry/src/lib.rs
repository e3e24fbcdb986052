//! The OCI Distribution API (v1.1, Docker Registry HTTP API v2 compatible)
//! as an embeddable [`tower_service::Service`].
//!
//! [`Registry`] takes an `http::Request` with any body type and answers it
//! from a [`wharf_storage::Store`]. It owns no sockets and no runtime: run it
//! with hyper, mount it in an axum router, or call it directly in tests.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! use wharf_registry::Registry;
//! use wharf_storage::{MemoryBackend, Store};
//!
//! let registry = Registry::builder(Store::new(MemoryBackend::new())).build();
//! let blob = bytes::Bytes::from_static(b"hello");
//! let digest = wharf_types::Digest::sha256(&blob);
//! let push = http::Request::post(format!("/v2/demo/blobs/uploads/?digest={digest}"))
//!     .header("content-length", "5")
//!     .body(Full::new(blob))
//!     .unwrap();
//! assert_eq!(registry.clone().oneshot(push).await.unwrap().status(), 201);
//!
//! let pull = http::Request::get(format!("/v2/demo/blobs/{digest}")).body(Full::default()).unwrap();
//! let resp = registry.oneshot(pull).await.unwrap();
//! assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "hello");
//! # });
//! ```
//!
//! Access control plugs in through [`Authorizer`]; changes are published as
//! [`Event`]s through hooks and a broadcast channel. A server that runs the
//! registry over HTTP/1.1 wraps each connection in a [`FramingGuard`],
//! which refuses requests with conflicting body framing.

pub mod auth;
mod body;
mod error;
pub mod events;
mod framing;
mod handlers;
pub mod params;
mod registry;
pub mod route;

pub use auth::{Access, Action, AllowAll, Authorizer, Decision, RequestContext};
pub use body::ResponseBody;
pub use error::RegistryError;
pub use events::{Event, EventHook};
pub use framing::FramingGuard;
pub use registry::{Limits, PeerAddr, Registry, RegistryBuilder, RequestInfo};
