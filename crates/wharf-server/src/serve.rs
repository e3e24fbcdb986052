//! The listener: accept loop, TLS, HTTP/1.1 and HTTP/2, timeouts,
//! graceful shutdown, background garbage collection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use wharf_registry::FramingGuard;
use wharf_storage::{GcOptions, Store};

use crate::app::App;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::tls::ReloadableCert;

/// A running server's handles.
pub(crate) struct Server {
    pub(crate) app: Arc<App>,
    pub(crate) config: Config,
    pub(crate) listener: TcpListener,
    pub(crate) admin_listener: Option<TcpListener>,
    pub(crate) tls: Option<(tokio_rustls::TlsAcceptor, Arc<ReloadableCert>)>,
}

impl Server {
    /// Serves until `shutdown` turns true, then drains in-flight requests
    /// for up to the configured timeout.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Server {
            app,
            config,
            listener,
            admin_listener,
            tls,
        } = self;
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(config.server.header_timeout_secs))
            .keep_alive(true)
            .max_buf_size(256 * 1024);
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .max_frame_size(1 << 20);
        let http = if config.server.http2 {
            http
        } else {
            http.http1_only()
        };
        let http = Arc::new(http);
        let graceful = GracefulShutdown::new();
        let idle = Duration::from_secs(config.server.idle_timeout_secs);
        let permits = Arc::new(Semaphore::new(config.server.max_connections));

        if let Some(admin) = admin_listener {
            tokio::spawn(serve_admin(admin, app.clone(), shutdown.clone()));
        }
        if config.gc.interval_secs > 0 {
            tokio::spawn(gc_loop(
                app.registry.store().clone(),
                config.clone(),
                app.metrics.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(expiry_loop(
            app.registry.store().clone(),
            config.clone(),
            shutdown.clone(),
        ));
        if let Some((_, cert)) = &tls {
            tokio::spawn(reload_on_sighup(cert.clone()));
        }

        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let http = http.clone();
            let watcher = graceful.watcher();
            let tls = tls.as_ref().map(|(a, _)| a.clone());
            let metrics = app.metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                metrics.connections.inc();
                let activity = Arc::new(AtomicU64::new(0));
                let started = Instant::now();
                let io = IdleIo {
                    io: stream,
                    activity: activity.clone(),
                    started,
                };
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(app.serve(req, peer).await) }
                });
                let served = async {
                    match tls {
                        None => {
                            let conn = http.serve_connection_with_upgrades(
                                TokioIo::new(FramingGuard::new(io)),
                                service,
                            );
                            if let Err(e) = watcher.watch(conn.into_owned()).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        Some(acceptor) => {
                            let tls_stream =
                                match tokio::time::timeout(idle, acceptor.accept(io)).await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                };
                            let conn = http.serve_connection_with_upgrades(
                                TokioIo::new(FramingGuard::new(tls_stream)),
                                service,
                            );
                            if let Err(e) = watcher.watch(conn.into_owned()).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = served => {}
                    _ = idle_watchdog(activity, started, idle) => {
                        tracing::debug!(%peer, "closing idle connection");
                    }
                }
                metrics.connections.dec();
            });
        }

        tracing::info!("shutting down: no new connections, draining in-flight requests");
        let timeout = Duration::from_secs(config.server.shutdown_timeout_secs);
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("all connections closed"),
            _ = tokio::time::sleep(timeout) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
        }
    }
}

/// Wraps a connection's socket and records when bytes last moved.
struct IdleIo<T> {
    io: T,
    activity: Arc<AtomicU64>,
    started: Instant,
}

impl<T> IdleIo<T> {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.activity.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Resolves once no byte has moved on the connection for `idle`. A slow
/// upload that keeps sending is never idle; a stalled or silent one is.
async fn idle_watchdog(activity: Arc<AtomicU64>, started: Instant, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        if started.elapsed().saturating_sub(last) >= idle {
            return;
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on the admin listener.
async fn serve_admin(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let http = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let app = app.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(app.serve_admin(req).await) }
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

/// Runs online garbage collection every `gc.interval_secs`.
async fn gc_loop(
    store: Store,
    config: Config,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.gc.interval_secs);
    let mut options = GcOptions::with_grace(Duration::from_secs(config.gc.grace_secs));
    options.delete_untagged = config.gc.delete_untagged;
    options.upload_expiry = Some(Duration::from_secs(config.registry.upload_expiry_secs));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let started = Instant::now();
        match store.gc(&options).await {
            Ok(report) => {
                metrics.gc_runs.inc();
                metrics.gc_bytes_freed.inc_by(report.bytes_freed);
                metrics.gc_blobs_deleted.inc_by(report.blobs_deleted);
                tracing::info!(
                    blobs_deleted = report.blobs_deleted,
                    bytes_freed = report.bytes_freed,
                    manifests_deleted = report.manifests_deleted,
                    uploads_expired = report.uploads_expired,
                    seconds = started.elapsed().as_secs_f64(),
                    "garbage collection finished"
                );
            }
            Err(e) => tracing::error!(error = %e, "garbage collection failed"),
        }
    }
}

/// Expires abandoned upload sessions (also when online GC is off).
async fn expiry_loop(store: Store, config: Config, mut shutdown: watch::Receiver<bool>) {
    let expiry = Duration::from_secs(config.registry.upload_expiry_secs);
    let every = (expiry / 4).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match store.expire_uploads(expiry).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired abandoned uploads"),
            Err(e) => tracing::warn!(error = %e, "upload expiry failed"),
        }
    }
}

/// Reloads the TLS certificate on SIGHUP.
async fn reload_on_sighup(cert: Arc<ReloadableCert>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match cert.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = cert;
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds a listener, with a clear error.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    let _ = socket.set_reuseaddr(true);
    socket
        .bind(addr)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    socket
        .listen(4096)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}
