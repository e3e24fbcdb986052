//! Request handlers: one function per endpoint and method, each taking
//! validated inputs and returning `Result<Response, RegistryError>`.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use wharf_storage::{FinalChunk, StoreError};
use wharf_types::{
    Digest, ErrorCode, ManifestParser, Reference, RepositoryName, Tag, UploadId, media_type,
};

use crate::auth::{Access, Action, Decision, RequestContext};
use crate::body::ResponseBody;
use crate::error::RegistryError;
use crate::events::Event;
use crate::params::{Query, accepts, parse_content_range, parse_range};
use crate::registry::{Inner, PeerAddr, RequestInfo};
use crate::route::{self, Route};

type Result<T> = std::result::Result<T, RegistryError>;

/// Entry point: route, authorize, handle, and turn errors into responses.
pub(crate) async fn dispatch<B>(inner: &Inner, req: Request<B>) -> Response<ResponseBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let route = route::parse(parts.uri.path());
    let info = RequestInfo {
        route: route.as_ref().ok().map(Route::kind),
        repository: route.as_ref().ok().and_then(|r| r.repository().cloned()),
    };
    let result = match route {
        Ok(route) => handle(inner, &parts, route, body).await,
        Err(e) => Err(e.into()),
    };
    let mut resp = result.unwrap_or_else(RegistryError::into_response);
    resp.extensions_mut().insert(info);
    resp
}

async fn handle<B>(
    inner: &Inner,
    parts: &Parts,
    route: Route,
    body: B,
) -> Result<Response<ResponseBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let query = Query::parse(parts.uri.query())?;
    let cx = Ctx { inner, parts };
    let m = &parts.method;
    let not_allowed = |allow: &'static str| {
        Err(RegistryError::MethodNotAllowed {
            method: m.clone(),
            allow,
        })
    };
    match route {
        Route::Base => match *m {
            Method::GET | Method::HEAD => {
                cx.authorize(&[access(Action::Base, None)]).await?;
                Ok(json_response(StatusCode::OK, &json!({})))
            }
            _ => not_allowed("GET, HEAD"),
        },
        Route::Catalog => match *m {
            Method::GET => catalog(&cx, &query).await,
            _ => not_allowed("GET"),
        },
        Route::Blob(name, digest) => match *m {
            Method::GET => get_blob(&cx, &name, &digest, false).await,
            Method::HEAD => get_blob(&cx, &name, &digest, true).await,
            Method::DELETE => delete_blob(&cx, &name, &digest).await,
            _ => not_allowed("GET, HEAD, DELETE"),
        },
        Route::UploadStart(name) => match *m {
            Method::POST => start_upload(&cx, &name, &query, body).await,
            _ => not_allowed("POST"),
        },
        Route::Upload(name, id) => match *m {
            Method::GET => upload_status(&cx, &name, &id).await,
            Method::PATCH => patch_upload(&cx, &name, &id, body).await,
            Method::PUT => put_upload(&cx, &name, &id, &query, body).await,
            Method::DELETE => cancel_upload(&cx, &name, &id).await,
            _ => not_allowed("GET, PATCH, PUT, DELETE"),
        },
        Route::Manifest(name, reference) => match *m {
            Method::GET => get_manifest(&cx, &name, &reference, false).await,
            Method::HEAD => get_manifest(&cx, &name, &reference, true).await,
            Method::PUT => put_manifest(&cx, &name, &reference, body).await,
            Method::DELETE => delete_manifest(&cx, &name, &reference).await,
            _ => not_allowed("GET, HEAD, PUT, DELETE"),
        },
        Route::Tags(name) => match *m {
            Method::GET => list_tags(&cx, &name, &query).await,
            _ => not_allowed("GET"),
        },
        Route::Referrers(name, digest) => match *m {
            Method::GET => referrers(&cx, &name, &digest, &query).await,
            _ => not_allowed("GET"),
        },
    }
}

struct Ctx<'a> {
    inner: &'a Inner,
    parts: &'a Parts,
}

impl Ctx<'_> {
    fn request(&self) -> RequestContext<'_> {
        RequestContext {
            headers: &self.parts.headers,
            peer: self.parts.extensions.get::<PeerAddr>().map(|p| p.0),
        }
    }

    async fn authorize(&self, accesses: &[Access]) -> Result<()> {
        match self
            .inner
            .authorizer
            .authorize(&self.request(), accesses)
            .await
        {
            Decision::Allow => Ok(()),
            Decision::Challenge(challenge) => Err(RegistryError::Unauthorized {
                challenge,
                message: "authentication required".into(),
            }),
            Decision::Deny => Err(RegistryError::Denied),
            Decision::RateLimited => Err(RegistryError::TooManyRequests),
        }
    }

    async fn may_pull(&self, repo: &RepositoryName) -> bool {
        self.inner.authorizer.may_pull(&self.request(), repo).await
    }

    fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    fn require_delete(&self) -> Result<()> {
        if self.inner.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::DeleteDisabled)
        }
    }
}

fn access(action: Action, repo: Option<&RepositoryName>) -> Access {
    Access {
        action,
        repository: repo.cloned(),
    }
}

// ---- responses ----

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<ResponseBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(ResponseBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

fn set(resp: &mut Response<ResponseBody>, name: impl header::IntoHeaderName, value: &str) {
    // Values come from validated types (digests, names, numbers): always valid.
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The `Range` header value for an upload holding `offset` bytes.
pub(crate) fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn blob_location(name: &RepositoryName, digest: &Digest) -> String {
    format!("/v2/{name}/blobs/{digest}")
}

fn upload_location(name: &RepositoryName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn upload_response(
    status: StatusCode,
    name: &RepositoryName,
    id: &UploadId,
    offset: u64,
) -> Response<ResponseBody> {
    let mut resp = empty(status);
    set(&mut resp, header::LOCATION, &upload_location(name, id));
    set(&mut resp, header::RANGE, &range_header(offset));
    set(&mut resp, "docker-upload-uuid", id.as_str());
    resp
}

fn blob_created(name: &RepositoryName, digest: &Digest) -> Response<ResponseBody> {
    let mut resp = empty(StatusCode::CREATED);
    set(&mut resp, header::LOCATION, &blob_location(name, digest));
    set(&mut resp, "docker-content-digest", digest.as_str());
    resp
}

/// A `Link` header for the next page.
fn next_link(path: &str, n: usize, last: &str) -> String {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

// ---- request bodies ----

/// Marks a body that overran the registry's size limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {0} bytes")]
struct BodyTooLarge(u64);

fn content_length(headers: &HeaderMap) -> Result<Option<u64>> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                RegistryError::invalid(ErrorCode::SizeInvalid, "Content-Length is not a number")
            }),
    }
}

/// A request body as a storage body, failing once it passes `limit` bytes.
fn body_stream<B>(body: B, limit: u64) -> wharf_storage::Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let data = body
        .into_data_stream()
        .map(|r| r.map_err(|e| std::io::Error::other(e.into())));
    Box::pin(Limited {
        inner: Box::pin(data),
        limit,
        seen: 0,
    })
}

struct Limited {
    inner: wharf_storage::Body,
    limit: u64,
    seen: u64,
}

impl Stream for Limited {
    type Item = std::result::Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    let limit = self.limit;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        BodyTooLarge(limit),
                    ))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// Maps store errors caused by an oversized body onto 413.
fn body_error(e: StoreError) -> RegistryError {
    if let StoreError::Body(io) = &e
        && let Some(BodyTooLarge(limit)) = io.get_ref().and_then(|i| i.downcast_ref())
    {
        return RegistryError::TooLarge { limit: *limit };
    }
    e.into()
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
async fn read_limited<B>(body: B, declared: Option<u64>, limit: u64) -> Result<Bytes>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared.is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge { limit });
    }
    let cap = declared.unwrap_or(0).min(limit) as usize;
    let mut buf = BytesMut::with_capacity(cap);
    let mut stream = body_stream(body, limit);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => buf.extend_from_slice(&c),
            Err(e) => return Err(body_error(StoreError::Body(e))),
        }
    }
    if let Some(n) = declared
        && buf.len() as u64 != n
    {
        return Err(RegistryError::invalid(
            ErrorCode::SizeInvalid,
            format!("body has {} bytes but Content-Length is {n}", buf.len()),
        ));
    }
    Ok(buf.freeze())
}

// ---- catalog ----

async fn catalog(cx: &Ctx<'_>, query: &Query) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Catalog, None)]).await?;
    let n = query.page_size(cx.inner.limits.max_page)?;
    let last = query
        .get("last")
        .map(RepositoryName::parse)
        .transpose()
        .map_err(|e| RegistryError::invalid(ErrorCode::NameInvalid, e.to_string()))?;
    let page = cx.inner.store.list_repositories(last.as_ref(), n).await?;
    let mut names = Vec::with_capacity(page.items.len());
    for repo in &page.items {
        if cx.may_pull(repo).await {
            names.push(repo.as_str());
        }
    }
    #[derive(serde::Serialize)]
    struct Catalog<'a> {
        repositories: Vec<&'a str>,
    }
    let mut resp = json_response(
        StatusCode::OK,
        &Catalog {
            repositories: names,
        },
    );
    if page.more
        && let Some(last) = page.items.last()
    {
        set(
            &mut resp,
            header::LINK,
            &next_link("/v2/_catalog", n, last.as_str()),
        );
    }
    Ok(resp)
}

// ---- blobs ----

async fn get_blob(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    digest: &Digest,
    head: bool,
) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Pull, Some(name))]).await?;
    let range = cx
        .headers()
        .get(header::RANGE)
        .map(|v| parse_range(v.to_str().unwrap_or("")))
        .transpose()?;
    let store = &cx.inner.store;
    if let (false, None, Some(ttl)) = (head, range.as_ref(), cx.inner.redirect_blob_reads) {
        // Linked to this repository (invariant 3), and there.
        store.stat_blob(name, digest).await?;
        let url = store
            .backend()
            .blob_url(digest, ttl)
            .await
            .map_err(StoreError::from)?;
        if let Some(url) = url {
            let mut resp = empty(StatusCode::TEMPORARY_REDIRECT);
            set(&mut resp, header::LOCATION, &url);
            set(&mut resp, "docker-content-digest", digest.as_str());
            return Ok(resp);
        }
    }
    let (status, body, len, content_range) = if head {
        let info = store.stat_blob(name, digest).await?;
        match range {
            None => (StatusCode::OK, ResponseBody::empty(), info.size, None),
            Some(r) => {
                let rr = r
                    .resolve(info.size)
                    .ok_or(RegistryError::RangeNotSatisfiable { size: info.size })?;
                (
                    StatusCode::PARTIAL_CONTENT,
                    ResponseBody::empty(),
                    rr.end - rr.start,
                    Some(format!("bytes {}-{}/{}", rr.start, rr.end - 1, info.size)),
                )
            }
        }
    } else {
        let reader = store.read_blob(name, digest, range).await?;
        let len = reader.range.end - reader.range.start;
        let partial = range.is_some();
        let content_range = partial.then(|| {
            format!(
                "bytes {}-{}/{}",
                reader.range.start,
                reader.range.end - 1,
                reader.size
            )
        });
        (
            if partial {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            },
            ResponseBody::stream(reader.stream, len),
            len,
            content_range,
        )
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    set(&mut resp, header::CONTENT_LENGTH, &len.to_string());
    set(&mut resp, header::CONTENT_TYPE, "application/octet-stream");
    set(&mut resp, "docker-content-digest", digest.as_str());
    set(&mut resp, header::ACCEPT_RANGES, "bytes");
    set(&mut resp, header::ETAG, &format!("\"{digest}\""));
    set(&mut resp, header::CACHE_CONTROL, "max-age=31536000");
    if let Some(cr) = content_range {
        set(&mut resp, header::CONTENT_RANGE, &cr);
    }
    Ok(resp)
}

async fn delete_blob(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    digest: &Digest,
) -> Result<Response<ResponseBody>> {
    cx.require_delete()?;
    cx.authorize(&[access(Action::Delete, Some(name))]).await?;
    cx.inner.store.delete_blob(name, digest).await?;
    cx.inner.emit(Event::BlobDeleted {
        repository: name.clone(),
        digest: digest.clone(),
    });
    Ok(empty(StatusCode::ACCEPTED))
}

// ---- uploads ----

fn query_digest(query: &Query, key: &str) -> Result<Option<Digest>> {
    query
        .get(key)
        .map(Digest::parse)
        .transpose()
        .map_err(|e| RegistryError::invalid(ErrorCode::DigestInvalid, format!("{key}: {e}")))
}

async fn start_upload<B>(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    query: &Query,
    body: B,
) -> Result<Response<ResponseBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    cx.authorize(&[access(Action::Push, Some(name))]).await?;
    let store = &cx.inner.store;

    if let Some(digest) = query_digest(query, "mount")? {
        if let Some(resp) = try_mount(cx, name, &digest, query.get("from")).await? {
            return Ok(resp);
        }
    } else if let Some(digest) = query_digest(query, "digest")? {
        // Single-request upload.
        let declared = content_length(cx.headers())?;
        let limit = cx.inner.limits.max_blob_size;
        if declared.is_some_and(|n| n > limit) {
            return Err(RegistryError::TooLarge { limit });
        }
        let info = store
            .put_blob(name, &digest, body_stream(body, limit), declared)
            .await
            .map_err(body_error)?;
        cx.inner.emit(Event::BlobUploaded {
            repository: name.clone(),
            digest: digest.clone(),
            size: info.size,
            mounted: false,
        });
        return Ok(blob_created(name, &digest));
    }
    let status = store.start_upload(name).await?;
    Ok(upload_response(
        StatusCode::ACCEPTED,
        name,
        &status.id,
        status.offset,
    ))
}

/// A mount: 201 when the blob could be linked, `None` to fall back to a
/// new upload session (the source is unknown, unreadable, or lacks it).
async fn try_mount(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    digest: &Digest,
    from: Option<&str>,
) -> Result<Option<Response<ResponseBody>>> {
    let store = &cx.inner.store;
    let sources = match from {
        Some(from) => {
            let from = RepositoryName::parse(from).map_err(|e| {
                RegistryError::invalid(ErrorCode::NameInvalid, format!("from: {e}"))
            })?;
            vec![from]
        }
        None if cx.inner.automatic_mount => store.repositories_holding(digest, 32).await?,
        None => Vec::new(),
    };
    for source in sources {
        if &source == name || !cx.may_pull(&source).await {
            continue;
        }
        if let Some(info) = store.mount_blob(name, &source, digest).await? {
            cx.inner.emit(Event::BlobUploaded {
                repository: name.clone(),
                digest: digest.clone(),
                size: info.size,
                mounted: true,
            });
            return Ok(Some(blob_created(name, digest)));
        }
    }
    // Already linked here (e.g. a retried push): nothing to copy.
    if from.is_none() && cx.inner.automatic_mount && store.stat_blob(name, digest).await.is_ok() {
        return Ok(Some(blob_created(name, digest)));
    }
    Ok(None)
}

async fn upload_status(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    id: &UploadId,
) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Push, Some(name))]).await?;
    let status = cx.inner.store.upload_status(name, id).await?;
    Ok(upload_response(
        StatusCode::NO_CONTENT,
        name,
        id,
        status.offset,
    ))
}

/// The chunk's claimed start (from `Content-Range`), checked against its length.
fn chunk_start(headers: &HeaderMap, declared: Option<u64>) -> Result<Option<u64>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let (start, end) = parse_content_range(v.to_str().unwrap_or(""))?;
    if let Some(n) = declared
        && end - start + 1 != n
    {
        return Err(RegistryError::Param(crate::params::ParamError {
            what: "Content-Range",
            reason: format!("range {start}-{end} does not match Content-Length {n}"),
        }));
    }
    Ok(Some(start))
}

fn out_of_order(name: &RepositoryName, id: &UploadId, e: StoreError) -> RegistryError {
    match e {
        StoreError::UploadOffset { requested, current } => RegistryError::ChunkOutOfOrder {
            requested,
            current,
            location: upload_location(name, id),
        },
        other => body_error(other),
    }
}

async fn remaining_allowance(cx: &Ctx<'_>, name: &RepositoryName, id: &UploadId) -> Result<u64> {
    let status = cx.inner.store.upload_status(name, id).await?;
    Ok(cx.inner.limits.max_blob_size.saturating_sub(status.offset))
}

async fn patch_upload<B>(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    id: &UploadId,
    body: B,
) -> Result<Response<ResponseBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    cx.authorize(&[access(Action::Push, Some(name))]).await?;
    let declared = content_length(cx.headers())?;
    let start = chunk_start(cx.headers(), declared)?;
    let allowance = remaining_allowance(cx, name, id).await?;
    if declared.is_some_and(|n| n > allowance) {
        return Err(RegistryError::TooLarge {
            limit: cx.inner.limits.max_blob_size,
        });
    }
    let status = cx
        .inner
        .store
        .append_upload(name, id, start, body_stream(body, allowance), declared)
        .await
        .map_err(|e| out_of_order(name, id, e))?;
    Ok(upload_response(
        StatusCode::ACCEPTED,
        name,
        id,
        status.offset,
    ))
}

async fn put_upload<B>(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    id: &UploadId,
    query: &Query,
    body: B,
) -> Result<Response<ResponseBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    cx.authorize(&[access(Action::Push, Some(name))]).await?;
    let digest = query_digest(query, "digest")?.ok_or_else(|| {
        RegistryError::invalid(ErrorCode::DigestInvalid, "the digest parameter is required")
    })?;
    let declared = content_length(cx.headers())?;
    let start = chunk_start(cx.headers(), declared)?;
    let last = if declared == Some(0) {
        None
    } else {
        let allowance = remaining_allowance(cx, name, id).await?;
        if declared.is_some_and(|n| n > allowance) {
            return Err(RegistryError::TooLarge {
                limit: cx.inner.limits.max_blob_size,
            });
        }
        Some(FinalChunk {
            start,
            body: body_stream(body, allowance),
            declared_len: declared,
        })
    };
    let info = cx
        .inner
        .store
        .complete_upload(name, id, &digest, last)
        .await
        .map_err(|e| out_of_order(name, id, e))?;
    cx.inner.emit(Event::BlobUploaded {
        repository: name.clone(),
        digest: digest.clone(),
        size: info.size,
        mounted: false,
    });
    Ok(blob_created(name, &digest))
}

async fn cancel_upload(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    id: &UploadId,
) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Push, Some(name))]).await?;
    cx.inner.store.cancel_upload(name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

// ---- manifests ----

async fn get_manifest(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    reference: &Reference,
    head: bool,
) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Pull, Some(name))]).await?;
    let store = &cx.inner.store;
    let (info, body) = if head {
        let info = store.stat_manifest(name, reference).await?;
        (info, ResponseBody::empty())
    } else {
        let m = store.get_manifest(name, reference).await?;
        (m.info, ResponseBody::full(m.bytes))
    };
    // By tag, honour Accept: an old client that cannot read this kind of
    // manifest gets "unknown" rather than a document it cannot parse. By
    // digest the client knows exactly what it asked for.
    if let Reference::Tag(_) = reference {
        let accept: Vec<&str> = cx
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !accepts(&accept, info.media_type.as_str()) {
            return Err(StoreError::ManifestUnknown {
                repo: name.clone(),
                reference: format!(
                    "{reference} (stored as {}, which the request's Accept header excludes)",
                    info.media_type
                ),
            }
            .into());
        }
    }
    let mut resp = Response::new(body);
    set(&mut resp, header::CONTENT_TYPE, info.media_type.as_str());
    set(&mut resp, header::CONTENT_LENGTH, &info.size.to_string());
    set(&mut resp, "docker-content-digest", info.digest.as_str());
    set(&mut resp, header::ETAG, &format!("\"{}\"", info.digest));
    Ok(resp)
}

async fn put_manifest<B>(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    reference: &Reference,
    body: B,
) -> Result<Response<ResponseBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    cx.authorize(&[access(Action::Push, Some(name))]).await?;
    let limit = cx.inner.limits.max_manifest_size;
    let raw = read_limited(body, content_length(cx.headers())?, limit).await?;
    let content_type = cx
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let algorithm = reference
        .as_digest()
        .map_or(wharf_types::Algorithm::Sha256, Digest::algorithm);
    let manifest = ManifestParser::new()
        .max_size(limit)
        .digest_algorithm(algorithm)
        .parse(raw, content_type)?;
    let pushed = cx
        .inner
        .store
        .put_manifest(name, reference, &manifest)
        .await?;

    let tag = reference.as_tag().cloned();
    cx.inner.emit(Event::ManifestPushed {
        repository: name.clone(),
        digest: pushed.digest.clone(),
        media_type: manifest.media_type().clone(),
        tag: tag.clone(),
        subject: pushed.subject.clone(),
    });
    if let (Some(tag), Some(from)) = (tag, pushed.previous.clone()) {
        cx.inner.emit(Event::TagMoved {
            repository: name.clone(),
            tag,
            from,
            to: pushed.digest.clone(),
        });
    }
    let mut resp = empty(StatusCode::CREATED);
    set(
        &mut resp,
        header::LOCATION,
        &format!("/v2/{name}/manifests/{}", pushed.digest),
    );
    set(&mut resp, "docker-content-digest", pushed.digest.as_str());
    if let Some(subject) = &pushed.subject {
        set(&mut resp, "oci-subject", subject.as_str());
    }
    Ok(resp)
}

async fn delete_manifest(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    reference: &Reference,
) -> Result<Response<ResponseBody>> {
    cx.require_delete()?;
    cx.authorize(&[access(Action::Delete, Some(name))]).await?;
    let store = &cx.inner.store;
    match reference {
        Reference::Digest(digest) => {
            store.delete_manifest(name, digest).await?;
            cx.inner.emit(Event::ManifestDeleted {
                repository: name.clone(),
                digest: digest.clone(),
            });
        }
        Reference::Tag(tag) => {
            store.delete_tag(name, tag).await?;
            cx.inner.emit(Event::TagDeleted {
                repository: name.clone(),
                tag: tag.clone(),
            });
        }
    }
    Ok(empty(StatusCode::ACCEPTED))
}

// ---- listings ----

async fn list_tags(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    query: &Query,
) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Pull, Some(name))]).await?;
    let n = query.page_size(cx.inner.limits.max_page)?;
    let last = query
        .get("last")
        .map(Tag::parse)
        .transpose()
        .map_err(|e| RegistryError::invalid(ErrorCode::TagInvalid, format!("last: {e}")))?;
    let page = cx.inner.store.list_tags(name, last.as_ref(), n).await?;
    let tags: Vec<&str> = page.items.iter().map(Tag::as_str).collect();
    // Serialized from borrowed strings: a page of a thousand tags is not
    // copied into a JSON value first.
    #[derive(serde::Serialize)]
    struct TagList<'a> {
        name: &'a RepositoryName,
        tags: Vec<&'a str>,
    }
    let mut resp = json_response(StatusCode::OK, &TagList { name, tags });
    if page.more
        && n > 0
        && let Some(last) = page.items.last()
    {
        set(
            &mut resp,
            header::LINK,
            &next_link(&format!("/v2/{name}/tags/list"), n, last.as_str()),
        );
    }
    Ok(resp)
}

async fn referrers(
    cx: &Ctx<'_>,
    name: &RepositoryName,
    subject: &Digest,
    query: &Query,
) -> Result<Response<ResponseBody>> {
    cx.authorize(&[access(Action::Pull, Some(name))]).await?;
    let artifact_type = query
        .get("artifactType")
        .map(wharf_types::MediaType::parse)
        .transpose()
        .map_err(|e| {
            RegistryError::invalid(ErrorCode::Unsupported, format!("artifactType: {e}"))
        })?;
    let n = query.page_size(cx.inner.limits.max_page)?;
    let last = query_digest(query, "last")?;
    let page = cx
        .inner
        .store
        .list_referrers(name, subject, artifact_type.as_ref(), last.as_ref(), n)
        .await?;
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_IMAGE_INDEX,
        "manifests": page.items,
    });
    let mut resp = json_response(StatusCode::OK, &doc);
    set(&mut resp, header::CONTENT_TYPE, media_type::OCI_IMAGE_INDEX);
    if artifact_type.is_some() {
        set(&mut resp, "oci-filters-applied", "artifactType");
    }
    if page.more
        && let Some(last) = page.items.last()
    {
        let mut link = next_link(
            &format!("/v2/{name}/referrers/{subject}"),
            n,
            last.digest.as_str(),
        );
        if let Some(a) = &artifact_type {
            let a: String = form_urlencoded::byte_serialize(a.as_str().as_bytes()).collect();
            link = link.replacen(">;", &format!("&artifactType={a}>;"), 1);
        }
        set(&mut resp, header::LINK, &link);
    }
    Ok(resp)
}
