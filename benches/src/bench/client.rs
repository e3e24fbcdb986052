//! A minimal HTTP/1.1 client on hyper's connection API: one keep-alive
//! connection per task, request bodies streamed from pre-built `Bytes`
//! pieces (no copies), response bodies either collected or only counted.
//! Credentials: HTTP Basic, and the Docker token dance when a registry
//! answers `401` with a `Bearer` challenge.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body::{Frame, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::Error;

/// Counters shown by the progress line and bumped as bytes move.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) ops: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// A request body made of pre-built pieces.
pub(crate) struct PiecesBody {
    pieces: VecDeque<Bytes>,
    left: u64,
    progress: Option<Arc<Progress>>,
}

impl PiecesBody {
    fn new(pieces: &[Bytes], progress: Option<Arc<Progress>>) -> Self {
        PiecesBody {
            left: pieces.iter().map(|p| p.len() as u64).sum(),
            pieces: pieces.iter().filter(|p| !p.is_empty()).cloned().collect(),
            progress,
        }
    }
}

impl http_body::Body for PiecesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(piece) = self.pieces.pop_front() else {
            return Poll::Ready(None);
        };
        self.left -= piece.len() as u64;
        if let Some(p) = &self.progress {
            p.bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// What a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// An OCI registry (`http://host:port`).
    Registry,
    /// A static file server (`static+http://host:port[/dir]`), the
    /// reference for request rates and downloads: manifest scenarios fetch
    /// its small file, `pull-large` its large file; other scenarios skip it.
    Static,
    /// A directory (`file:///dir`), the reference for durable writes: the
    /// large-push scenarios write the blob to a file there and `fdatasync`
    /// it (what `dd conv=fdatasync` does); other scenarios skip it.
    Disk(std::path::PathBuf),
}

/// Where a registry (or a reference server or disk) is.
pub struct Target {
    /// Short label used in tables and JSON (`wharf`, `distribution`, ...).
    pub name: String,
    /// The URL as given.
    pub url: String,
    pub(crate) kind: TargetKind,
    pub(crate) authority: String,
    /// Path of the URL (used by the `http-get` scenario).
    pub(crate) path: String,
    pub(crate) auth: Auth,
    pub(crate) timeout: Duration,
    /// The server's process id, when it runs on this machine: its CPU time
    /// and peak RSS are then reported per scenario.
    pub(crate) pid: Option<u32>,
    /// Scenarios this target sits out (its cells stay empty).
    pub(crate) skip: Vec<super::Scenario>,
}

impl Target {
    /// A target from a URL: `http://host:port[/path]` (a registry, or any
    /// server for the `http-get` scenario), `static+http://host:port[/dir]`
    /// (a static file server as a reference) or `file:///dir` (a directory
    /// as the durable-write reference).
    pub fn new(
        name: &str,
        url: &str,
        credentials: Option<(String, String)>,
    ) -> Result<Self, Error> {
        let mut target = Target {
            name: name.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            kind: TargetKind::Registry,
            authority: String::new(),
            path: "/".to_owned(),
            auth: Auth::new(credentials),
            timeout: Duration::from_secs(600),
            pid: None,
            skip: Vec::new(),
        };
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(format!("{url}: expected file:///absolute/dir").into());
            }
            target.kind = TargetKind::Disk(dir.into());
            return Ok(target);
        }
        let http_url = match url.strip_prefix("static+") {
            Some(rest) => {
                target.kind = TargetKind::Static;
                rest
            }
            None => url,
        };
        let uri: Uri = http_url
            .parse()
            .map_err(|e| format!("bad URL {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(s) => {
                return Err(format!("{url}: scheme {s} is not supported (http only)").into());
            }
            None => return Err(format!("{url}: expected http://host:port").into()),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        target.authority = if authority.contains(':') {
            authority
        } else {
            format!("{authority}:80")
        };
        target.path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(target)
    }

    /// Watches the server process `pid` (Linux `/proc`): the report gains
    /// its CPU time per operation, cores busy and peak RSS per scenario.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Leaves `scenarios` out for this target (a peer that cannot take
    /// part, or would take too long): its cells stay empty.
    pub fn skipping(mut self, scenarios: &[super::Scenario]) -> Self {
        self.skip.extend_from_slice(scenarios);
        self
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Credentials and the tokens obtained with them, per repository.
pub(crate) struct Auth {
    basic: Option<HeaderValue>,
    tokens: Mutex<HashMap<String, HeaderValue>>,
}

impl Auth {
    fn new(credentials: Option<(String, String)>) -> Self {
        let basic = credentials.and_then(|(u, p)| {
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {enc}")).ok()
        });
        Auth {
            basic,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn header_for(&self, repo: &str) -> Option<HeaderValue> {
        if let Ok(tokens) = self.tokens.lock()
            && let Some(t) = tokens.get(repo)
        {
            return Some(t.clone());
        }
        self.basic.clone()
    }
}

/// The repository a `/v2/<name>/...` path addresses ("" for others).
fn repo_of(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return "";
    };
    let rest = rest.split('?').next().unwrap_or("");
    for kind in ["/blobs/", "/manifests/", "/tags/", "/referrers/"] {
        if let Some(i) = rest.rfind(kind) {
            return &rest[..i];
        }
    }
    ""
}

/// `key="value"` parameters of a `WWW-Authenticate: Bearer ...` challenge.
fn parse_challenge(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.trim().strip_prefix("Bearer ")?;
    let mut out = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.insert(key, val.to_owned());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// What to do with a response body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Keep it (small bodies: JSON, manifests, errors).
    Collect,
    /// Count its bytes and drop them (blob downloads).
    Discard,
}

/// A response with its body read.
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) body_len: u64,
}

impl Resp {
    pub(crate) fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Fails unless the status is `want`, with the body's start as context.
    pub(crate) fn expect(self, want: StatusCode, what: &str) -> Result<Resp, Error> {
        if self.status == want {
            return Ok(self);
        }
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        Err(format!("{what}: expected {want}, got {} {text}", self.status).into())
    }

    /// The `Location` header as an origin-form path (`/v2/...?...`).
    pub(crate) fn location(&self) -> Result<String, Error> {
        let loc = self.header(header::LOCATION).ok_or("no Location header")?;
        origin_form(loc)
    }
}

/// `http://host/p?q` or `/p?q` as `/p?q`.
pub(crate) fn origin_form(url: &str) -> Result<String, Error> {
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    Ok(uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned()))
}

/// One keep-alive connection to a target, re-opened when the server closes it.
pub(crate) struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<PiecesBody>>,
    progress: Option<Arc<Progress>>,
}

async fn connect(authority: &str) -> Result<SendRequest<PiecesBody>, Error> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(4 << 20)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A request to send (cheap to clone: bodies are `Bytes` handles).
#[derive(Clone)]
pub(crate) struct Req<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: &'a [Bytes],
    pub(crate) read: Read,
}

impl<'a> Req<'a> {
    pub(crate) fn new(method: Method, path: &'a str) -> Self {
        Req {
            method,
            path,
            headers: Vec::new(),
            body: &[],
            read: Read::Collect,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub(crate) fn body(mut self, body: &'a [Bytes]) -> Self {
        self.body = body;
        self
    }

    pub(crate) fn discard(mut self) -> Self {
        self.read = Read::Discard;
        self
    }
}

impl Conn {
    pub(crate) fn new(target: Arc<Target>) -> Self {
        Conn {
            target,
            sender: None,
            progress: None,
        }
    }

    /// Counts body bytes (both directions) into `progress`.
    pub(crate) fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Sends a request, doing the token dance once on a `Bearer` challenge.
    pub(crate) async fn send(&mut self, req: Req<'_>) -> Result<Resp, Error> {
        let repo = repo_of(req.path).to_owned();
        let auth = self.target.auth.header_for(&repo);
        let resp = self.send_once(&req, auth.clone()).await?;
        if resp.status != StatusCode::UNAUTHORIZED || self.target.auth.basic.is_none() {
            return Ok(resp);
        }
        let Some(challenge) = resp
            .header(header::WWW_AUTHENTICATE)
            .and_then(parse_challenge)
        else {
            return Ok(resp);
        };
        let token = self.fetch_token(&challenge, &repo).await?;
        if let Ok(mut tokens) = self.target.auth.tokens.lock() {
            tokens.insert(repo, token.clone());
        }
        self.send_once(&req, Some(token)).await
    }

    async fn send_once(&mut self, req: &Req<'_>, auth: Option<HeaderValue>) -> Result<Resp, Error> {
        let timeout = self.target.timeout;
        match tokio::time::timeout(timeout, self.exchange(req, auth)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("{} {}: timed out after {timeout:?}", req.method, req.path).into())
            }
        }
    }

    async fn exchange(&mut self, req: &Req<'_>, auth: Option<HeaderValue>) -> Result<Resp, Error> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(connect(&self.target.authority).await?),
        };
        sender.ready().await?;
        let body = PiecesBody::new(req.body, self.progress.clone());
        let len = body.left;
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.path)
            .header(header::HOST, &self.target.authority);
        if len > 0 || matches!(req.method, Method::PUT | Method::POST | Method::PATCH) {
            builder = builder.header(header::CONTENT_LENGTH, len);
        }
        if let Some(a) = auth {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let request = builder.body(body)?;
        let resp = sender.send_request(request).await?;
        let (parts, mut incoming) = resp.into_parts();
        let keep = req.read == Read::Collect || !parts.status.is_success();
        let mut buf = BytesMut::new();
        let mut body_len = 0u64;
        use http_body_util::BodyExt;
        while let Some(frame) = incoming.frame().await {
            if let Ok(data) = frame?.into_data() {
                body_len += data.len() as u64;
                if let Some(p) = &self.progress
                    && !keep
                {
                    p.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if keep {
                    buf.extend_from_slice(&data);
                }
            }
        }
        if parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
        {
            self.sender = None;
        }
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body: buf.freeze(),
            body_len,
        })
    }

    async fn fetch_token(
        &mut self,
        challenge: &HashMap<String, String>,
        repo: &str,
    ) -> Result<HeaderValue, Error> {
        let realm = challenge
            .get("realm")
            .ok_or("Bearer challenge without realm")?;
        let uri: Uri = realm
            .parse()
            .map_err(|e| format!("bad realm {realm:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("token realm {realm}: only http is supported").into());
        }
        let authority = uri.authority().ok_or("realm without host")?.to_string();
        let authority = if authority.contains(':') {
            authority
        } else {
            format!("{authority}:80")
        };
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(s) = challenge.get("service") {
            query.push(("service".into(), s.clone()));
        }
        if !repo.is_empty() {
            query.push((
                "scope".into(),
                format!("repository:{repo}:pull,push,delete"),
            ));
        }
        if let Some(s) = challenge.get("scope")
            && !s.starts_with(&format!("repository:{repo}:"))
        {
            query.push(("scope".into(), s.clone()));
        }
        let qs: String = form_urlencoded_pairs(&query);
        let sep = if uri.query().is_some() { "&" } else { "?" };
        let base = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = format!("{base}{sep}{qs}");
        let mut sender = connect(&authority).await?;
        sender.ready().await?;
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(path.as_str())
            .header(header::HOST, &authority);
        if let Some(basic) = &self.target.auth.basic {
            b = b.header(header::AUTHORIZATION, basic.clone());
        }
        let resp = sender
            .send_request(b.body(PiecesBody::new(&[], None))?)
            .await?;
        let status = resp.status();
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!(
                "token request to {realm}: {status} {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or("token response without token")?;
        Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
    }
}

fn form_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_paths() {
        assert_eq!(repo_of("/v2/a/b/blobs/uploads/"), "a/b");
        assert_eq!(repo_of("/v2/a/blobs/uploads/x?digest=y"), "a");
        assert_eq!(repo_of("/v2/a/manifests/latest"), "a");
        assert_eq!(repo_of("/v2/x/tags/list?n=1"), "x");
        assert_eq!(repo_of("/v2/"), "");
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="http://h:1/token",service="wharf",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c["realm"], "http://h:1/token");
        assert_eq!(c["service"], "wharf");
        assert_eq!(c["scope"], "repository:a/b:pull,push");
        assert!(parse_challenge("Basic realm=\"x\"").is_none());
    }

    #[test]
    fn locations() {
        assert_eq!(origin_form("/v2/a?b=c").unwrap(), "/v2/a?b=c");
        assert_eq!(
            origin_form("http://h:5/v2/a?_state=x").unwrap(),
            "/v2/a?_state=x"
        );
    }
}
