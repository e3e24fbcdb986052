//! The `Registry` service and its builder.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tokio::sync::broadcast;
use wharf_storage::Store;
use wharf_types::RepositoryName;

use crate::auth::{AllowAll, Authorizer};
use crate::body::ResponseBody;
use crate::events::{Event, EventHook};
use crate::route::RouteKind;

/// Limits and switches of a [`Registry`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Largest manifest accepted (bytes).
    pub max_manifest_size: u64,
    /// Largest blob accepted (bytes).
    pub max_blob_size: u64,
    /// Largest page for tags, catalog and referrers; larger `n` is clamped.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_size: wharf_types::Manifest::DEFAULT_MAX_SIZE,
            max_blob_size: 1 << 40,
            max_page: 1000,
        }
    }
}

/// The peer's address; servers put it in request extensions so
/// authorizers and logs can see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// What the registry made of a request; put in response extensions for
/// access logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The endpoint, when the path was one.
    pub route: Option<RouteKind>,
    /// The repository, when the path named one.
    pub repository: Option<RepositoryName>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) limits: Limits,
    pub(crate) delete_enabled: bool,
    pub(crate) automatic_mount: bool,
    pub(crate) redirect_blob_reads: Option<std::time::Duration>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) hooks: Vec<Arc<dyn EventHook>>,
    pub(crate) events: broadcast::Sender<Event>,
}

impl Inner {
    pub(crate) fn emit(&self, event: Event) {
        for hook in &self.hooks {
            hook.on_event(&event);
        }
        // No subscribers is fine.
        let _ = self.events.send(event);
    }
}

/// The OCI Distribution API over a [`Store`], as a
/// `tower::Service<http::Request<B>>` for any body type. It owns no sockets:
/// serve it with hyper, mount it in axum, or call it in tests.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tower::ServiceExt;
/// use wharf_registry::Registry;
/// use wharf_storage::{MemoryBackend, Store};
///
/// let registry = Registry::builder(Store::new(MemoryBackend::new())).build();
/// let req = http::Request::get("/v2/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
/// let resp = registry.oneshot(req).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["docker-distribution-api-version"], "registry/2.0");
/// # });
/// ```
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.inner.store)
            .field("limits", &self.inner.limits)
            .field("delete_enabled", &self.inner.delete_enabled)
            .field("automatic_mount", &self.inner.automatic_mount)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Registry`].
pub struct RegistryBuilder {
    store: Store,
    limits: Limits,
    delete_enabled: bool,
    automatic_mount: bool,
    redirect_blob_reads: Option<std::time::Duration>,
    authorizer: Arc<dyn Authorizer>,
    hooks: Vec<Arc<dyn EventHook>>,
    event_capacity: usize,
}

impl std::fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Starts building a registry over `store`. Defaults: deletes enabled,
    /// automatic cross-repository mounts on, everyone allowed everything.
    pub fn builder(store: Store) -> RegistryBuilder {
        RegistryBuilder {
            store,
            limits: Limits::default(),
            delete_enabled: true,
            automatic_mount: true,
            redirect_blob_reads: None,
            authorizer: Arc::new(AllowAll),
            hooks: Vec::new(),
            event_capacity: 1024,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Subscribes to the event stream. A subscriber that falls more than the
    /// channel capacity behind misses events (and is told so by `recv`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Handles one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut resp = crate::handlers::dispatch(&self.inner, req).await;
        resp.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        resp
    }
}

impl RegistryBuilder {
    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Enables or disables `DELETE` (405 UNSUPPORTED when disabled).
    pub fn delete_enabled(mut self, enabled: bool) -> Self {
        self.delete_enabled = enabled;
        self
    }

    /// Enables or disables mounting a blob when a push names it without a
    /// `from` repository but the caller may read a repository holding it.
    pub fn automatic_mount(mut self, enabled: bool) -> Self {
        self.automatic_mount = enabled;
        self
    }

    /// Sets the authorization hook.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Arc::new(authorizer);
        self
    }

    /// Adds an event hook.
    pub fn event_hook(mut self, hook: impl EventHook) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Answer whole-blob `GET`s with `307 Temporary Redirect` to a URL the
    /// storage backend hands out for `ttl` (a presigned object store URL),
    /// so the bytes do not pass through this process. The repository link
    /// is checked first, as for any read. Ranged reads, `HEAD`s and
    /// backends without such URLs are served as usual. Off by default.
    pub fn redirect_blob_reads(mut self, ttl: Option<std::time::Duration>) -> Self {
        self.redirect_blob_reads = ttl;
        self
    }

    /// Capacity of the broadcast event channel (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> Registry {
        let (events, _) = broadcast::channel(self.event_capacity);
        Registry {
            inner: Arc::new(Inner {
                store: self.store,
                limits: self.limits,
                delete_enabled: self.delete_enabled,
                automatic_mount: self.automatic_mount,
                redirect_blob_reads: self.redirect_blob_reads,
                authorizer: self.authorizer,
                hooks: self.hooks,
                events,
            }),
        }
    }
}

impl<B> tower_service::Service<Request<B>> for Registry
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
