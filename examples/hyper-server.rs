//! A registry inside a plain hyper server: the accept loop is yours, the
//! registry is a `Service`.
//!
//! ```text
//! cargo run -p wharf-examples --example hyper-server -- 127.0.0.1:5000 ./data
//! ```

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use wharf_registry::{FramingGuard, Registry};
use wharf_storage::{FsBackend, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5000".into());
    let dir = args.next().unwrap_or_else(|| "./example-data".into());

    let store = Store::new(FsBackend::open(&dir)?);
    let registry = Arc::new(Registry::builder(store).build());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("registry on http://{addr}, data in {dir}");

    loop {
        let (stream, _) = listener.accept().await?;
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(registry.handle(req).await) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                // The guard refuses requests with conflicting framing
                // (Content-Length with Transfer-Encoding) before hyper
                // would follow one of them.
                .serve_connection(TokioIo::new(FramingGuard::new(stream)), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
