//! A registry mounted in an axum application next to other routes. The
//! registry answers everything under `/v2/`; the app keeps its own routes.
//!
//! ```text
//! cargo run -p wharf-examples --example axum-app
//! curl http://127.0.0.1:3000/hello
//! curl http://127.0.0.1:3000/v2/
//! ```

use axum::Router;
use axum::routing::get;
use wharf_registry::Registry;
use wharf_storage::{MemoryBackend, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::builder(Store::new(MemoryBackend::new())).build();
    // Watch pushes as they happen.
    let mut events = registry.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("registry event: {event:?}");
        }
    });

    let app = Router::new()
        .route("/hello", get(|| async { "hello from the app\n" }))
        // The distribution API needs the `/v2` prefix intact, so the registry
        // is the fallback rather than a nested service (which strips it).
        .fallback_service(registry);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("app on http://127.0.0.1:3000 (try /hello and /v2/)");
    axum::serve(listener, app).await?;
    Ok(())
}
