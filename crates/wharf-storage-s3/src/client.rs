//! A small S3 client: the dozen requests the backend needs, signed with
//! SigV4, with timeouts and retries of idempotent requests.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use reqwest::{Method, StatusCode};

use crate::S3Config;
use crate::error::S3Error;
use crate::sigv4::{self, Signer, ToSign};
use crate::xml;

/// A request body.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// Streamed with a known length, sent unsigned; never retried.
    Stream {
        stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
        len: u64,
    },
}

/// Size and time of an object, from `HEAD`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) size: u64,
    pub(crate) modified: SystemTime,
}

/// One S3 endpoint: where requests go and what they are signed for.
#[derive(Debug, Clone)]
struct Endpoint {
    scheme: String,
    /// `Host` of every request (with the bucket in it for virtual-hosted style).
    host: String,
    /// Path before the key: `/bucket` path-style, empty otherwise.
    base_path: String,
}

pub(crate) struct Client {
    http: reqwest::Client,
    signer: Signer,
    /// Equivalent endpoints (nodes of one cluster); requests go to
    /// `current` and move to the next one after a connection failure.
    endpoints: Vec<Endpoint>,
    current: AtomicUsize,
    bucket: String,
    timeout: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.endpoint();
        write!(f, "S3 {}://{}{}", e.scheme, e.host, e.base_path)
    }
}

struct Req<'a> {
    method: Method,
    key: &'a str,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Body,
    retry: bool,
    /// The response body is streamed: no total timeout.
    streamed: bool,
}

impl<'a> Req<'a> {
    fn new(method: Method, key: &'a str) -> Self {
        Req {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
            streamed: false,
        }
    }
    fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_owned(), v.into()));
        self
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

impl Client {
    pub(crate) fn new(config: &S3Config) -> Result<Self, S3Error> {
        // reqwest is built without a default TLS provider; use ring, which
        // the workspace already uses. Fails harmlessly if one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoints = config
            .endpoint
            .split(',')
            .map(|e| Self::parse_endpoint(e.trim(), config))
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|source| S3Error::Transport {
                context: "building the HTTP client".into(),
                source,
            })?;
        Ok(Client {
            http,
            signer: Signer {
                key_id: config.access_key_id.clone(),
                secret: config.secret_access_key.clone(),
                region: config.region.clone(),
            },
            endpoints,
            current: AtomicUsize::new(0),
            bucket: config.bucket.clone(),
            timeout: config.timeout,
            max_retries: config.max_retries,
        })
    }

    fn parse_endpoint(endpoint: &str, config: &S3Config) -> Result<Endpoint, S3Error> {
        let (scheme, rest) = endpoint
            .split_once("://")
            .ok_or_else(|| S3Error::Config(format!("endpoint {endpoint:?} has no scheme")))?;
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p.trim_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(S3Error::Config(format!(
                "endpoint {endpoint:?} has no host"
            )));
        }
        let endpoint_path = if path.is_empty() {
            String::new()
        } else {
            format!("/{}", sigv4::uri_encode(path, true))
        };
        let (host, base_path) = if config.path_style {
            (
                authority.to_owned(),
                format!(
                    "{endpoint_path}/{}",
                    sigv4::uri_encode(&config.bucket, false)
                ),
            )
        } else {
            (format!("{}.{authority}", config.bucket), endpoint_path)
        };
        Ok(Endpoint {
            scheme: scheme.to_owned(),
            host,
            base_path,
        })
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// Moves on from endpoint `failed` (unless another request did already).
    fn fail_over(&self, failed: usize) {
        if self.endpoints.len() > 1 {
            let _ = self.current.compare_exchange(
                failed,
                (failed + 1) % self.endpoints.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn path_of(ep: &Endpoint, key: &str) -> String {
        if key.is_empty() {
            format!("{}/", ep.base_path)
        } else {
            format!("{}/{}", ep.base_path, sigv4::uri_encode(key, true))
        }
    }

    async fn send(&self, req: Req<'_>) -> Result<reqwest::Response, S3Error> {
        let Req {
            method,
            key,
            query: raw_query,
            headers,
            mut body,
            retry,
            streamed,
        } = req;
        let stream_body = matches!(body, Body::Stream { .. });
        let query = sigv4::canonical_query(&raw_query);
        let mut attempt = 0u32;
        loop {
            let index = self.current.load(Ordering::Relaxed) % self.endpoints.len();
            let ep = &self.endpoints[index];
            let path = Self::path_of(ep, key);
            let url = if query.is_empty() {
                format!("{}://{}{path}", ep.scheme, ep.host)
            } else {
                format!("{}://{}{path}?{query}", ep.scheme, ep.host)
            };
            let (payload, hash, len) = match &mut body {
                Body::Empty => (
                    reqwest::Body::from(Bytes::new()),
                    sigv4::EMPTY_SHA256.to_owned(),
                    Some(0),
                ),
                Body::Bytes(b) => (
                    reqwest::Body::from(b.clone()),
                    sigv4::sha256_hex(b),
                    Some(b.len() as u64),
                ),
                Body::Stream { stream, len } => {
                    let s = std::mem::replace(stream, Box::pin(futures::stream::empty()));
                    (
                        reqwest::Body::wrap_stream(s),
                        sigv4::UNSIGNED.to_owned(),
                        Some(*len),
                    )
                }
            };
            let signed = self.signer.sign(
                &ToSign {
                    method: method.as_str(),
                    host: &ep.host,
                    path: &path,
                    query: &raw_query,
                    headers: &headers,
                    payload_hash: &hash,
                },
                SystemTime::now(),
            );
            let mut builder = self.http.request(method.clone(), &url).body(payload);
            for (k, v) in headers.iter().chain(signed.iter()) {
                builder = builder.header(k.as_str(), v.as_str());
            }
            if let Some(len) = len
                && method != Method::GET
                && method != Method::HEAD
            {
                builder = builder.header("content-length", len.to_string());
            }
            if !streamed {
                builder = builder.timeout(self.timeout);
            }
            let can_retry = retry && !stream_body && attempt < self.max_retries;
            let what = || format!("{method} {key}");
            match builder.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    if can_retry && retryable(status) {
                        tracing::debug!(status = %status, request = %what(), "retrying");
                    } else {
                        return Err(Self::error_of(&method, key, resp).await);
                    }
                }
                Err(e) => {
                    // The endpoint may be down: the next request (or this
                    // one's retry) goes to the next.
                    if e.is_connect() || e.is_timeout() {
                        self.fail_over(index);
                    }
                    if !can_retry {
                        return Err(S3Error::Transport {
                            context: what(),
                            source: e,
                        });
                    }
                    tracing::debug!(error = %e, request = %what(), "retrying");
                }
            }
            let backoff = Duration::from_millis(100 << attempt.min(6));
            let jitter = Duration::from_millis(u64::from(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_millis()
                    % 50,
            ));
            tokio::time::sleep(backoff + jitter).await;
            attempt += 1;
        }
    }

    async fn error_of(method: &Method, key: &str, resp: reqwest::Response) -> S3Error {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let doc: xml::ErrorDoc = quick_xml::de::from_str(&text).unwrap_or_default();
        if status == StatusCode::NOT_FOUND && doc.code != "NoSuchBucket" {
            return S3Error::NotFound(key.to_owned());
        }
        S3Error::Status {
            method: method.to_string(),
            key: key.to_owned(),
            status: status.as_u16(),
            code: doc.code,
            message: if doc.message.is_empty() {
                text.chars().take(200).collect()
            } else {
                doc.message
            },
        }
    }

    async fn text(resp: reqwest::Response, what: &str) -> Result<String, S3Error> {
        resp.text().await.map_err(|source| S3Error::Transport {
            context: format!("reading the answer to {what}"),
            source,
        })
    }

    /// `GET`, streaming; `range` is a non-empty byte range.
    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<reqwest::Response, S3Error> {
        let mut req = Req::new(Method::GET, key);
        req.streamed = true;
        if let Some(r) = range {
            req = req.header("range", format!("bytes={}-{}", r.start, r.end - 1));
        }
        self.send(req).await
    }

    /// `GET` of a small object, whole, with its time.
    pub(crate) async fn get_bytes(
        &self,
        key: &str,
    ) -> Result<(Bytes, Option<SystemTime>), S3Error> {
        let resp = self.send(Req::new(Method::GET, key)).await?;
        let modified = last_modified(&resp);
        let body = resp.bytes().await.map_err(|source| S3Error::Transport {
            context: format!("reading {key}"),
            source,
        })?;
        Ok((body, modified))
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Head, S3Error> {
        let resp = self.send(Req::new(Method::HEAD, key)).await?;
        let size = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| S3Error::Protocol(format!("HEAD {key}: no Content-Length")))?;
        Ok(Head {
            size,
            modified: last_modified(&resp).unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    pub(crate) async fn put(&self, key: &str, data: Bytes) -> Result<(), S3Error> {
        let mut req = Req::new(Method::PUT, key);
        req.body = Body::Bytes(data);
        self.send(req).await.map(drop)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), S3Error> {
        match self.send(Req::new(Method::DELETE, key)).await {
            Ok(_) | Err(S3Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One `ListObjectsV2` page.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: usize,
    ) -> Result<xml::ListBucketResult, S3Error> {
        let mut req = Req::new(Method::GET, "")
            .query("list-type", "2")
            .query("prefix", prefix)
            .query("max-keys", max_keys.to_string());
        if let Some(t) = token {
            req = req.query("continuation-token", t);
        } else if let Some(s) = start_after {
            req = req.query("start-after", s);
        }
        let resp = self.send(req).await?;
        xml::parse(&Self::text(resp, "a listing").await?, "ListObjectsV2")
    }

    fn copy_source(&self, key: &str) -> String {
        format!(
            "/{}/{}",
            sigv4::uri_encode(&self.bucket, false),
            sigv4::uri_encode(key, true)
        )
    }

    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        let req = Req::new(Method::PUT, to).header("x-amz-copy-source", self.copy_source(from));
        let resp = self.send(req).await?;
        let text = Self::text(resp, "a copy").await?;
        if text.contains("<Error>") {
            let doc: xml::ErrorDoc = quick_xml::de::from_str(&text).unwrap_or_default();
            return Err(S3Error::Protocol(format!(
                "copy {from} -> {to}: {} {}",
                doc.code, doc.message
            )));
        }
        Ok(())
    }

    /// Starts a multipart upload; not retried (a retry would start another).
    pub(crate) async fn create_multipart(&self, key: &str) -> Result<String, S3Error> {
        let mut req = Req::new(Method::POST, key).query("uploads", "");
        req.retry = false;
        let resp = self.send(req).await?;
        let r: xml::InitiateMultipartUploadResult = xml::parse(
            &Self::text(resp, "CreateMultipartUpload").await?,
            "CreateMultipartUpload",
        )?;
        Ok(r.upload_id)
    }

    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        body: Body,
    ) -> Result<String, S3Error> {
        let mut req = Req::new(Method::PUT, key)
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id);
        req.body = body;
        let resp = self.send(req).await?;
        resp.headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| S3Error::Protocol(format!("UploadPart {key}: no ETag")))
    }

    pub(crate) async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        from: &str,
        range: Range<u64>,
    ) -> Result<String, S3Error> {
        let req = Req::new(Method::PUT, key)
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .header("x-amz-copy-source", self.copy_source(from))
            .header(
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        let resp = self.send(req).await?;
        let text = Self::text(resp, "UploadPartCopy").await?;
        let r: xml::CopyResult = xml::parse(&text, "UploadPartCopy")?;
        Ok(r.etag)
    }

    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), S3Error> {
        let mut req = Req::new(Method::POST, key).query("uploadId", upload_id);
        req.body = Body::Bytes(Bytes::from(xml::complete_body(etags)));
        let resp = self.send(req).await?;
        // S3 may answer 200 and report a failure in the body.
        let text = Self::text(resp, "CompleteMultipartUpload").await?;
        if text.contains("<Error>") {
            let doc: xml::ErrorDoc = quick_xml::de::from_str(&text).unwrap_or_default();
            return Err(S3Error::Protocol(format!(
                "CompleteMultipartUpload {key}: {} {}",
                doc.code, doc.message
            )));
        }
        Ok(())
    }

    pub(crate) async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        match self
            .send(Req::new(Method::DELETE, key).query("uploadId", upload_id))
            .await
        {
            Ok(_) | Err(S3Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every multipart upload in progress under `prefix`.
    pub(crate) async fn list_multipart(&self, prefix: &str) -> Result<Vec<xml::Upload>, S3Error> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut req = Req::new(Method::GET, "")
                .query("uploads", "")
                .query("prefix", prefix);
            if let Some((k, u)) = &markers {
                req = req
                    .query("key-marker", k.clone())
                    .query("upload-id-marker", u.clone());
            }
            let resp = self.send(req).await?;
            let page: xml::ListMultipartUploadsResult = xml::parse(
                &Self::text(resp, "ListMultipartUploads").await?,
                "ListMultipartUploads",
            )?;
            out.extend(page.uploads);
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) => markers = Some((k, u)),
                _ => return Ok(out),
            }
        }
    }

    /// A presigned `GET` URL for `key`, valid for `ttl`.
    pub(crate) fn presign_get(&self, key: &str, ttl: Duration) -> String {
        let ep = self.endpoint();
        let path = Self::path_of(ep, key);
        let query = self.signer.presign(
            &ToSign {
                method: "GET",
                host: &ep.host,
                path: &path,
                query: &[],
                headers: &[],
                payload_hash: sigv4::UNSIGNED,
            },
            SystemTime::now(),
            ttl.as_secs().clamp(1, 7 * 24 * 3600),
        );
        format!("{}://{}{path}?{query}", ep.scheme, ep.host)
    }
}

fn last_modified(resp: &reqwest::Response) -> Option<SystemTime> {
    resp.headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}
