//! A custom storage backend: it wraps another backend and counts the
//! operations it forwards. Any `Backend` implementation plugs into the
//! registry the same way, and proves itself with the shared conformance
//! suite (see `tests/custom_backend.rs`, which runs every case against it).
//!
//! ```text
//! cargo run -p wharf-examples --example custom-backend
//! ```

use wharf_examples::CountingBackend;
use wharf_registry::Registry;
use wharf_storage::{MemoryBackend, Store};

#[tokio::main]
async fn main() {
    let backend = CountingBackend::new(MemoryBackend::new());
    let counters = backend.counters();
    let registry = Registry::builder(Store::new(backend)).build();

    let body = bytes::Bytes::from_static(b"hello");
    let digest = wharf_types::Digest::sha256(&body);
    let req = http::Request::post(format!("/v2/demo/blobs/uploads/?digest={digest}"))
        .body(http_body_util_full(body))
        .expect("request");
    let resp = registry.handle(req).await;
    println!("push: {}", resp.status());
    println!("backend operations: {}", counters.summary());
}

fn http_body_util_full(b: bytes::Bytes) -> axum::body::Body {
    axum::body::Body::from(b)
}
