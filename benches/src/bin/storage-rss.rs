//! Peak RSS of a blob put through the store on the filesystem backend, for
//! two sizes in separate processes, to show that memory does not grow with
//! blob size.
//!
//! ```text
//! cargo run --release -p wharf-benches --bin storage-rss -- 64
//! cargo run --release -p wharf-benches --bin storage-rss -- 1024
//! ```

use std::time::Instant;

use wharf_benches::{body, body_digest, peak_rss};
use wharf_storage::{FsBackend, Store};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let chunk = 1 << 20;
    let digest = body_digest(size, chunk, 42);
    let base = std::env::var("WHARF_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let before = peak_rss().unwrap_or(0);
    let store = Store::new(FsBackend::open(dir.path()).expect("open"));
    let repo = "bench/rss".parse().expect("name");
    let start = Instant::now();
    rt.block_on(store.put_blob(&repo, &digest, body(size, chunk, 42), Some(size as u64)))
        .expect("put");
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_rss().unwrap_or(0);
    println!(
        "put {mib} MiB in {secs:.2} s ({:.0} MB/s); peak RSS {:.1} MiB (before the put: {:.1} MiB)",
        size as f64 / secs / 1e6,
        peak as f64 / (1 << 20) as f64,
        before as f64 / (1 << 20) as f64
    );
}
