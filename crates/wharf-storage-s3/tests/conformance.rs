//! The shared storage conformance suite against a real three-node Garage
//! cluster (replication factor 3). Needs the `garage` binary; `.ci/run`
//! installs it and runs these with `--ignored`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wharf_storage::Backend;
use wharf_storage::conformance::Fixture;
use wharf_storage_s3::S3Backend;
use wharf_storage_s3::testing::GarageCluster;

/// A fresh key prefix in the shared cluster's bucket. Every `open` goes
/// through the next node's S3 endpoint, so a case that reopens the store
/// ("restart") reads through another node what it wrote through one.
struct GarageFixture {
    cluster: Arc<GarageCluster>,
    prefix: String,
    opened: AtomicUsize,
}

impl GarageFixture {
    async fn new(case: &str) -> Self {
        let cluster = tokio::task::spawn_blocking(GarageCluster::shared)
            .await
            .unwrap_or_else(|e| panic!("starting garage: {e}"))
            .unwrap_or_else(|e| panic!("starting garage: {e}"));
        let nonce = wharf_types::UploadId::random();
        GarageFixture {
            cluster,
            prefix: format!("conformance/{case}-{nonce}"),
            opened: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Fixture for GarageFixture {
    async fn open(&self) -> Arc<dyn Backend> {
        let node = self.opened.fetch_add(1, Ordering::Relaxed) % self.cluster.len();
        let backend = S3Backend::new(self.cluster.config(node, &self.prefix))
            .unwrap_or_else(|e| panic!("S3 backend: {e}"));
        Arc::new(backend)
    }
}

wharf_storage::conformance_tests!(
    #[ignore = "needs garage (cargo install garage); run by .ci/run"];
    GarageFixture::new(module_path!()).await
);
