//! Test harness: a registry per backend and a small request helper.

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use wharf_registry::{Registry, RegistryBuilder};
use wharf_storage::{FsBackend, MemoryBackend, Store};
use wharf_types::Digest;

/// A registry and whatever keeps its storage alive.
pub struct Harness {
    pub name: &'static str,
    pub registry: Registry,
    _dir: Option<tempfile::TempDir>,
}

/// One harness per built-in backend, each configured by `configure`; plus
/// one on S3 when `WHARF_STORAGE__KIND=s3` and the `WHARF_STORAGE__S3_*`
/// settings name a bucket (as the `with_garage` example of
/// wharf-storage-s3 sets them), each in a fresh key prefix.
pub fn harnesses_with(configure: impl Fn(RegistryBuilder) -> RegistryBuilder) -> Vec<Harness> {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FsBackend::open(dir.path()).expect("open fs backend");
    let mut all = vec![
        Harness {
            name: "memory",
            registry: configure(Registry::builder(Store::new(MemoryBackend::new()))).build(),
            _dir: None,
        },
        Harness {
            name: "fs",
            registry: configure(Registry::builder(Store::new(fs))).build(),
            _dir: Some(dir),
        },
    ];
    if let Some(s3) = s3_backend() {
        all.push(Harness {
            name: "s3",
            registry: configure(Registry::builder(Store::new(s3))).build(),
            _dir: None,
        });
    }
    all
}

fn s3_backend() -> Option<wharf_storage_s3::S3Backend> {
    let var = |k: &str| std::env::var(format!("WHARF_STORAGE__S3_{k}")).unwrap_or_default();
    if std::env::var("WHARF_STORAGE__KIND").ok()? != "s3" {
        return None;
    }
    let mut config = wharf_storage_s3::S3Config::new(var("ENDPOINT"), var("REGION"), var("BUCKET"));
    config.prefix = format!("registry-api/{}", wharf_types::UploadId::random());
    config.access_key_id = var("ACCESS_KEY_ID");
    config.secret_access_key = var("SECRET_ACCESS_KEY");
    Some(wharf_storage_s3::S3Backend::new(config).expect("S3 settings"))
}

pub fn harnesses() -> Vec<Harness> {
    harnesses_with(|b| b)
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The first OCI error code in the body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(
            self.code(),
            code,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), "application/json");
        self
    }
}

impl Harness {
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let resp = self
            .registry
            .clone()
            .oneshot(req)
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        assert_eq!(
            parts
                .headers
                .get("docker-distribution-api-version")
                .map(|v| v.as_bytes()),
            Some(&b"registry/2.0"[..]),
            "every response carries the API version header"
        );
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &[], Bytes::new()).await
    }

    pub async fn head(&self, uri: &str) -> Resp {
        self.send(Method::HEAD, uri, &[], Bytes::new()).await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.send(Method::DELETE, uri, &[], Bytes::new()).await
    }

    /// Monolithic blob push; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256(data);
        let len = data.len().to_string();
        self.send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[
                ("content-length", &len),
                ("content-type", "application/octet-stream"),
            ],
            Bytes::copy_from_slice(data),
        )
        .await
        .expect(201);
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", content_type)],
            Bytes::copy_from_slice(body),
        )
        .await
    }

    /// Pushes a config and layer blob and an image manifest referencing
    /// them (with optional extra fields); returns the manifest bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str, extra: Value) -> Bytes {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer bytes of {seed}");
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, layer.as_bytes()).await;
        let mut doc = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
        });
        if let (Value::Object(doc), Value::Object(extra)) = (&mut doc, extra) {
            doc.extend(extra);
        }
        let raw = Bytes::from(serde_json::to_vec_pretty(&doc).expect("json"));
        self.put_manifest(
            repo,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &raw,
        )
        .await
        .expect(201);
        raw
    }
}
