//! The custom backend of the `custom-backend` example passes every case of
//! the shared storage conformance suite.

use std::sync::Arc;

use wharf_examples::CountingBackend;
use wharf_storage::conformance::Fixture;
use wharf_storage::{Backend, FsBackend, MemoryBackend};

/// Counting over memory: each "restart" wraps a new handle to the same data.
struct OverMemory(MemoryBackend);

#[async_trait::async_trait]
impl Fixture for OverMemory {
    async fn open(&self) -> Arc<dyn Backend> {
        Arc::new(CountingBackend::new(self.0.clone()))
    }
}

/// Counting over the filesystem backend in a temporary directory.
struct OverFs(tempfile::TempDir);

#[async_trait::async_trait]
impl Fixture for OverFs {
    async fn open(&self) -> Arc<dyn Backend> {
        Arc::new(CountingBackend::new(
            FsBackend::open(self.0.path()).expect("open fs backend"),
        ))
    }
}

mod over_memory {
    wharf_storage::conformance_tests!(super::OverMemory(wharf_storage::MemoryBackend::new()));
}

mod over_fs {
    wharf_storage::conformance_tests!(super::OverFs(tempfile::tempdir().expect("tempdir")));
}
