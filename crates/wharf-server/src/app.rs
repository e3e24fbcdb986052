//! The HTTP application around the registry: probes, metrics, access log.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use wharf_registry::{PeerAddr, Registry, RequestInfo, ResponseBody};

use crate::metrics::{Metrics, RequestLabels, RouteLabels};

/// Shared state of the server's request handling.
pub(crate) struct App {
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: bool,
    /// The authenticator, when auth is on (serves `/token` in token mode).
    pub(crate) auth: Option<Arc<wharf_auth::Auth>>,
    /// Vulnerability scanning, when `[scan]` enables it.
    pub(crate) scan: Option<Arc<crate::scan::Scanner>>,
}

impl App {
    /// Answers one request on the main listener.
    pub(crate) async fn serve<B>(&self, mut req: Request<B>, peer: SocketAddr) -> Response<AppBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match req.uri().path() {
            "/healthz" => return text(StatusCode::OK, "ok\n"),
            "/readyz" => return self.ready().await,
            "/token" => {
                if let Some(auth) = self.auth.clone().filter(|a| a.serves_tokens()) {
                    return self.token(auth, req, peer).await;
                }
            }
            path if path.starts_with(crate::scan::API_PREFIX) => {
                if let Some(scan) = self.scan.clone() {
                    let resp = scan.api(&req, peer).await;
                    let (parts, body) = resp.into_parts();
                    return Response::from_parts(
                        parts,
                        AppBody {
                            inner: Inner::Registry(body),
                            record: None,
                        },
                    );
                }
            }
            _ => {}
        }
        let start = Instant::now();
        let method = req.method().clone();
        req.extensions_mut().insert(PeerAddr(peer));
        let received = Arc::new(AtomicU64::new(0));
        let (parts, body) = req.into_parts();
        let counted = CountingBody {
            inner: body,
            count: received.clone(),
        };
        let uploading = matches!(method, Method::POST | Method::PATCH | Method::PUT);
        if uploading {
            self.metrics.uploads_in_progress.inc();
        }
        let mut resp = self
            .registry
            .handle(Request::from_parts(parts, counted))
            .await;
        if let Some(scan) = &self.scan {
            resp = scan.enforce(&method, resp).await;
        }
        if uploading {
            self.metrics.uploads_in_progress.dec();
        }
        let info = resp.extensions().get::<RequestInfo>().cloned();
        let (parts, body) = resp.into_parts();
        let record = Record {
            metrics: self.metrics.clone(),
            access_log: self.access_log,
            start,
            method,
            status: parts.status,
            route: info
                .as_ref()
                .and_then(|i| i.route)
                .map_or("unknown", |r| r.as_str()),
            repository: info
                .and_then(|i| i.repository)
                .map(|r| r.to_string())
                .unwrap_or_default(),
            peer,
            received,
            sent: 0,
        };
        Response::from_parts(
            parts,
            AppBody {
                inner: Inner::Registry(body),
                record: Some(record),
            },
        )
    }

    /// The Docker token endpoint.
    async fn token<B>(
        &self,
        auth: Arc<wharf_auth::Auth>,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Response<AppBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use http_body_util::BodyExt;
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        // Token requests are small forms; refuse anything large unread.
        let limited = http_body_util::Limited::new(body, 16 * 1024);
        let Ok(collected) = limited.collect().await else {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "request too large\n");
        };
        let body = collected.to_bytes();
        let received = body.len() as u64;
        let method = parts.method.clone();
        let result = tokio::task::spawn_blocking(move || {
            auth.token_endpoint(
                &parts.method,
                parts.uri.query(),
                &parts.headers,
                &body,
                Some(peer.ip()),
            )
        })
        .await;
        let resp = match result {
            Ok(r) => r,
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "token service failed\n"),
        };
        let (parts, bytes) = resp.into_parts();
        let record = Record {
            metrics: self.metrics.clone(),
            access_log: self.access_log,
            start,
            method,
            status: parts.status,
            route: "token",
            repository: String::new(),
            peer,
            received: Arc::new(AtomicU64::new(received)),
            sent: 0,
        };
        Response::from_parts(
            parts,
            AppBody {
                inner: Inner::Plain(Some(bytes)),
                record: Some(record),
            },
        )
    }

    /// Answers one request on the metrics listener.
    pub(crate) async fn serve_admin<B>(&self, req: Request<B>) -> Response<AppBody> {
        match req.uri().path() {
            "/metrics" => {
                let mut resp = text(StatusCode::OK, &self.metrics.render());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => self.ready().await,
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn ready(&self) -> Response<AppBody> {
        match self.registry.store().check().await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("storage not ready: {e}\n"),
                )
            }
        }
    }
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<AppBody> {
    let mut resp = Response::new(AppBody {
        inner: Inner::Plain(Some(Bytes::from(body.to_owned()))),
        record: None,
    });
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Counts request body bytes.
struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What is known of a request when its response finishes.
struct Record {
    metrics: Arc<Metrics>,
    access_log: bool,
    start: Instant,
    method: Method,
    status: StatusCode,
    route: &'static str,
    repository: String,
    peer: SocketAddr,
    received: Arc<AtomicU64>,
    sent: u64,
}

impl Record {
    fn finish(self, complete: bool) {
        let elapsed = self.start.elapsed();
        let received = self.received.load(Ordering::Relaxed);
        let m = &self.metrics;
        m.requests
            .get_or_create(&RequestLabels {
                route: self.route,
                method: self.method.to_string(),
                status: self.status.as_u16(),
            })
            .inc();
        m.latency
            .get_or_create(&RouteLabels { route: self.route })
            .observe(elapsed.as_secs_f64());
        m.bytes_in.inc_by(received);
        m.bytes_out.inc_by(self.sent);
        if self.status.is_server_error() {
            m.storage_errors.inc();
        }
        if self.access_log {
            // Never log headers or query strings: they may carry credentials.
            tracing::info!(
                target: "wharf::access",
                method = %self.method,
                route = self.route,
                repository = %self.repository,
                status = self.status.as_u16(),
                bytes_in = received,
                bytes_out = self.sent,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                peer = %self.peer,
                complete,
                "request"
            );
        }
    }
}

enum Inner {
    Registry(ResponseBody),
    Plain(Option<Bytes>),
}

/// The server's response body: the registry's, counted and logged when done.
pub(crate) struct AppBody {
    inner: Inner,
    record: Option<Record>,
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let poll = match &mut self.inner {
            Inner::Registry(b) => Pin::new(b).poll_frame(cx),
            Inner::Plain(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        };
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if let Some(r) = self.record.as_mut() {
                    r.sent += n;
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = self.record.take() {
                    r.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = self.record.take() {
                    r.finish(false);
                }
            }
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Registry(b) => b.is_end_stream(),
            Inner::Plain(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Registry(b) => b.size_hint(),
            Inner::Plain(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for AppBody {
    fn drop(&mut self) {
        // HEAD responses and bodies the client abandoned end here.
        if let Some(r) = self.record.take() {
            let complete = self.is_end_stream();
            r.finish(complete);
        }
    }
}
