//! Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: &'static str,
    pub(crate) method: String,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: &'static str,
}

/// Every metric the server exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) latency: Family<RouteLabels, Histogram>,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) uploads_in_progress: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) storage_errors: Counter,
    pub(crate) gc_runs: Counter,
    pub(crate) gc_bytes_freed: Counter<u64, AtomicU64>,
    pub(crate) gc_blobs_deleted: Counter<u64, AtomicU64>,
    pub(crate) scan: crate::scan::ScanMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("wharf");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request start to the end of the response body",
            latency.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "http_request_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register(
            "http_response_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Upload requests currently receiving data",
            uploads_in_progress.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let storage_errors = Counter::default();
        registry.register(
            "storage_errors",
            "Requests that failed with a server-side (5xx) error",
            storage_errors.clone(),
        );
        let gc_runs = Counter::default();
        registry.register("gc_runs", "Garbage collection runs", gc_runs.clone());
        let gc_bytes_freed = Counter::<u64, AtomicU64>::default();
        registry.register(
            "gc_freed_bytes",
            "Bytes freed by garbage collection",
            gc_bytes_freed.clone(),
        );
        let gc_blobs_deleted = Counter::<u64, AtomicU64>::default();
        registry.register(
            "gc_deleted_blobs",
            "Blobs deleted by garbage collection",
            gc_blobs_deleted.clone(),
        );
        let scan = crate::scan::ScanMetrics::register(&mut registry);
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_progress,
            connections,
            storage_errors,
            gc_runs,
            gc_bytes_freed,
            gc_blobs_deleted,
            scan,
        })
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}
