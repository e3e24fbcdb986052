//! The OCI distribution-spec conformance workflows (pull, push, content
//! discovery, content management, with automatic cross-mount on), replayed
//! over HTTP against the real `wharf` binary, step by step as the official
//! v1.1 suite runs them.

mod common;

use common::Wharf;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use wharf_types::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
const SPEC_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

struct C {
    http: Client,
    base: String,
    name: String,
}

impl C {
    fn new(w: &Wharf, name: &str) -> C {
        common::install_crypto();
        C {
            http: Client::new(),
            base: w.url.clone(),
            name: name.to_owned(),
        }
    }

    async fn req(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response {
        let path = path.replace("<name>", &self.name);
        let url = if path.starts_with("http") {
            path
        } else {
            format!("{}{path}", self.base)
        };
        let mut r = self.http.request(method, url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(body).send().await.expect("request")
    }

    async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path, &[], Vec::new()).await
    }

    /// POST then PUT (the suite's usual way to push a blob).
    async fn push_blob(&self, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let r = self
            .req(Method::POST, "/v2/<name>/blobs/uploads/", &[], Vec::new())
            .await;
        assert_eq!(r.status(), 202);
        let loc = location(&r);
        let r = self
            .req(
                Method::PUT,
                &with_query(&loc, &format!("digest={d}")),
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", &data.len().to_string()),
                ],
                data.to_vec(),
            )
            .await;
        assert!(r.status().is_success(), "{}", r.status());
        d
    }

    async fn put_manifest(&self, reference: &str, content_type: &str, body: &[u8]) -> Response {
        self.req(
            Method::PUT,
            &format!("/v2/<name>/manifests/{reference}"),
            &[("content-type", content_type)],
            body.to_vec(),
        )
        .await
    }
}

fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned()
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn with_query(loc: &str, q: &str) -> String {
    if loc.contains('?') {
        format!("{loc}&{q}")
    } else {
        format!("{loc}?{q}")
    }
}

fn desc(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": Digest::sha256(data).to_string(), "size": data.len()})
}

fn image_manifest(config: &[u8], layers: &[&[u8]], extra: Value) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut m, extra) {
        m.extend(e);
    }
    serde_json::to_vec_pretty(&m).expect("json")
}

async fn body_json(r: Response) -> Value {
    r.json().await.expect("JSON body")
}

#[tokio::test]
async fn pull_workflow() {
    let w = Wharf::start(&[]);
    let c = C::new(&w, "conformance/pull");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"\x1f\x8b\x08\x00layer";
    let cd = c.push_blob(config).await;
    let ld = c.push_blob(layer).await;
    let manifest = image_manifest(config, &[layer], json!({}));
    let md = Digest::sha256(&manifest).to_string();
    assert_eq!(
        c.put_manifest("tagtest0", OCI_MANIFEST, &manifest)
            .await
            .status(),
        201
    );
    let dummy = Digest::sha256(b"dummy").to_string();

    assert_eq!(
        c.req(
            Method::HEAD,
            &format!("/v2/<name>/blobs/{dummy}"),
            &[],
            vec![]
        )
        .await
        .status(),
        404
    );
    let r = c
        .req(Method::HEAD, &format!("/v2/<name>/blobs/{cd}"), &[], vec![])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), cd);
    assert_eq!(
        c.get(&format!("/v2/<name>/blobs/{dummy}")).await.status(),
        404
    );
    let r = c.get(&format!("/v2/<name>/blobs/{ld}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").as_ref(), layer);

    let accept = [("accept", OCI_MANIFEST)];
    assert_eq!(
        c.req(
            Method::HEAD,
            "/v2/<name>/manifests/nonexistent",
            &[],
            vec![]
        )
        .await
        .status(),
        404
    );
    for reference in [md.as_str(), "tagtest0"] {
        for method in [Method::HEAD, Method::GET] {
            let r = c
                .req(
                    method.clone(),
                    &format!("/v2/<name>/manifests/{reference}"),
                    &accept,
                    vec![],
                )
                .await;
            assert_eq!(r.status(), 200, "{method} {reference}");
            assert_eq!(header(&r, "docker-content-digest"), md);
            if method == Method::GET {
                assert_eq!(r.bytes().await.expect("body").as_ref(), manifest.as_slice());
            }
        }
    }
    assert_eq!(
        c.get("/v2/<name>/manifests/nonexistent").await.status(),
        404
    );

    // Error codes: a 400 carries an OCI-conforming JSON body.
    let r = c
        .put_manifest(
            "sha256:totallywrong",
            OCI_MANIFEST,
            b"{\"invalid\": \"manifest\"}",
        )
        .await;
    assert!(matches!(r.status().as_u16(), 400 | 404));
    if r.status() == 400 {
        let body = body_json(r).await;
        let code = body["errors"][0]["code"].as_str().unwrap_or("");
        assert!(SPEC_CODES.contains(&code), "{code}");
    }

    // Teardown.
    for path in [
        format!("/v2/<name>/manifests/{md}"),
        format!("/v2/<name>/blobs/{cd}"),
        format!("/v2/<name>/blobs/{ld}"),
    ] {
        let s = c.req(Method::DELETE, &path, &[], vec![]).await.status();
        assert!(s.is_success(), "{path}: {s}");
    }
}

#[tokio::test]
async fn push_workflow() {
    let w = Wharf::start(&[]);
    let c = C::new(&w, "conformance/push");
    let other = C::new(&w, "conformance/crossmount");

    // Streamed upload.
    let blob_a = b"streamed blob A contents".to_vec();
    let a = Digest::sha256(&blob_a).to_string();
    let r = c
        .req(Method::POST, "/v2/<name>/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), 202);
    let r = c
        .req(
            Method::PATCH,
            &location(&r),
            &[("content-type", "application/octet-stream")],
            blob_a.clone(),
        )
        .await;
    assert_eq!(r.status(), 202);
    let r = c
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={a}")),
            &[("content-length", "0")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 201);
    assert!(!location(&r).is_empty());

    // Monolithic: POST with digest, then POST + PUT.
    let config = br#"{"config":"push"}"#.to_vec();
    let cd = Digest::sha256(&config).to_string();
    let dummy = Digest::sha256(b"dummy").to_string();
    assert_eq!(
        c.get(&format!("/v2/<name>/blobs/{dummy}")).await.status(),
        404
    );
    let r = c
        .req(
            Method::POST,
            &format!("/v2/<name>/blobs/uploads/?digest={cd}"),
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &config.len().to_string()),
            ],
            config.clone(),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert!(!location(&r).is_empty());
    assert_eq!(c.get(&format!("/v2/<name>/blobs/{cd}")).await.status(), 200);
    let layer = b"push layer".to_vec();
    let ld = c.push_blob(&layer).await;
    assert_eq!(c.get(&format!("/v2/<name>/blobs/{ld}")).await.status(), 200);

    // Chunked.
    let blob_b: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let (b1, b2) = blob_b.split_at(500);
    let b = Digest::sha256(&blob_b).to_string();
    let r = c
        .req(
            Method::POST,
            "/v2/<name>/blobs/uploads/",
            &[("content-length", "0")],
            vec![],
        )
        .await;
    let r = c
        .req(
            Method::PATCH,
            &location(&r),
            &[("content-length", "500"), ("content-range", "500-999")],
            b2.to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c
        .req(
            Method::POST,
            "/v2/<name>/blobs/uploads/",
            &[("content-length", "0")],
            vec![],
        )
        .await;
    let first = location(&r);
    let r = c
        .req(
            Method::PATCH,
            &first,
            &[("content-length", "500"), ("content-range", "0-499")],
            b1.to_vec(),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-499");
    let r = c
        .req(
            Method::PATCH,
            &first,
            &[("content-length", "500"), ("content-range", "0-499")],
            b1.to_vec(),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "retrying a chunk"
    );
    let r = c.get(&first).await;
    assert_eq!(r.status(), 204, "stale session status");
    assert_eq!(header(&r, "range"), "0-499");
    let r = c
        .req(
            Method::PATCH,
            &location(&r),
            &[("content-length", "500"), ("content-range", "500-999")],
            b2.to_vec(),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-999");
    let r = c
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={b}")),
            &[("content-length", "0")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 201);

    // Cross-repository mounts (automatic cross-mount on).
    let r = other
        .req(
            Method::POST,
            &format!("/v2/<name>/blobs/uploads/?mount={dummy}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(!location(&r).is_empty());
    let r = other
        .req(
            Method::POST,
            &format!("/v2/<name>/blobs/uploads/?mount={a}&from=conformance/push"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        location(&r),
        format!("/v2/conformance/crossmount/blobs/{a}")
    );
    assert_eq!(other.get(&location(&r)).await.status(), 200);
    let r = other
        .req(
            Method::POST,
            &format!("/v2/<name>/blobs/uploads/?mount={a}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 201, "automatic cross-mount");

    // Manifests.
    assert_eq!(
        c.get("/v2/<name>/manifests/nonexistent").await.status(),
        404
    );
    let manifest = image_manifest(&config, &[&layer], json!({}));
    let md = Digest::sha256(&manifest).to_string();
    for i in 0..4 {
        let r = c
            .put_manifest(&format!("test{i}"), OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(r.status(), 201);
        assert!(!location(&r).is_empty());
    }
    let empty = c.push_blob(b"{}").await;
    let no_layers = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2}, "layers": [],
    }))
    .expect("json");
    assert_eq!(
        c.put_manifest("emptylayer", OCI_MANIFEST, &no_layers)
            .await
            .status(),
        201
    );
    let r = c
        .req(
            Method::GET,
            &format!("/v2/<name>/manifests/{md}"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 200);

    // Artifacts: custom config media type, and artifactType with the empty config.
    let ref_blob = c.push_blob(b"artifact payload").await;
    let config_type = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.example.config+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.data", "digest": ref_blob, "size": 16}],
    }))
    .expect("json");
    let r = c
        .put_manifest(
            Digest::sha256(&config_type).as_ref(),
            OCI_MANIFEST,
            &config_type,
        )
        .await;
    assert!(r.status().is_success());
    let artifact_type = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.thing",
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.data", "digest": ref_blob, "size": 16}],
    }))
    .expect("json");
    let r = c
        .put_manifest(
            Digest::sha256(&artifact_type).as_ref(),
            OCI_MANIFEST,
            &artifact_type,
        )
        .await;
    assert!(r.status().is_success());

    // An index, and a nested index.
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.example.index",
        "manifests": [{"mediaType": OCI_MANIFEST, "size": manifest.len(), "digest": md}],
        "annotations": {"org.opencontainers.conformance.test": "test index"},
    }))
    .expect("json");
    let id = Digest::sha256(&index).to_string();
    assert!(
        c.put_manifest(&id, OCI_INDEX, &index)
            .await
            .status()
            .is_success()
    );
    let nested = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.example.index",
        "manifests": [{"mediaType": OCI_INDEX, "size": index.len(), "digest": id}],
    }))
    .expect("json");
    assert!(
        c.put_manifest(Digest::sha256(&nested).as_ref(), OCI_INDEX, &nested)
            .await
            .status()
            .is_success()
    );

    // Dangling subject.
    let dangling = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2}, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": Digest::sha256(b"not pushed").to_string(), "size": 10},
    }))
    .expect("json");
    let r = c
        .put_manifest(Digest::sha256(&dangling).as_ref(), OCI_MANIFEST, &dangling)
        .await;
    assert!(r.status().is_success());
    let subject = header(&r, "oci-subject");
    assert!(
        subject.starts_with("sha256:") && subject.len() == 71,
        "{subject}"
    );

    // Teardown: manifest first, then blobs.
    assert!(
        c.req(
            Method::DELETE,
            &format!("/v2/<name>/manifests/{md}"),
            &[],
            vec![]
        )
        .await
        .status()
        .is_success()
    );
    for d in [&cd, &ld] {
        let s = c
            .req(
                Method::DELETE,
                &format!("/v2/<name>/blobs/{d}"),
                &[],
                vec![],
            )
            .await
            .status();
        assert!(s.is_success() || s == 404, "{s}");
    }
}

#[tokio::test]
async fn content_discovery_workflow() {
    let w = Wharf::start(&[]);
    let c = C::new(&w, "conformance/discovery");
    let config = br#"{"discovery":true}"#.to_vec();
    let layer = b"discovery layer".to_vec();
    c.push_blob(&config).await;
    c.push_blob(&layer).await;
    let manifest = image_manifest(&config, &[&layer], json!({}));
    for i in 0..4 {
        assert!(
            c.put_manifest(&format!("test{i}"), OCI_MANIFEST, &manifest)
                .await
                .status()
                .is_success()
        );
    }

    // Tags.
    let r = c.get("/v2/<name>/tags/list").await;
    assert_eq!(r.status(), 200);
    let tags: Vec<String> =
        serde_json::from_value(body_json(r).await["tags"].clone()).expect("tags");
    assert_eq!(tags, ["test0", "test1", "test2", "test3"]);
    let half = tags.len() / 2;
    let r = c.get(&format!("/v2/<name>/tags/list?n={half}")).await;
    let page: Vec<String> =
        serde_json::from_value(body_json(r).await["tags"].clone()).expect("tags");
    assert_eq!(page.len(), half);
    let last = page[half - 1].clone();
    let r = c
        .get(&format!("/v2/<name>/tags/list?n={half}&last={last}"))
        .await;
    assert_eq!(r.status(), 200);
    let page: Vec<String> =
        serde_json::from_value(body_json(r).await["tags"].clone()).expect("tags");
    assert!(page.len() <= half && !page.contains(&last));

    // Referrers, pushed before and after their subject.
    let empty = c.push_blob(b"{}").await;
    let subject_manifest = image_manifest(
        &config,
        &[&layer],
        json!({"annotations": {"which": "subject"}}),
    );
    let subject = Digest::sha256(&subject_manifest).to_string();
    let referrer = |artifact: &str, annotation: &str, config_type: Option<&str>, target: &str| {
        let mut m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type.unwrap_or(EMPTY_JSON), "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.example.data", "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": target, "size": subject_manifest.len()},
            "annotations": {"org.opencontainers.conformance.test": annotation},
        });
        if config_type.is_none() {
            m["artifactType"] = json!(artifact);
        }
        serde_json::to_vec(&m).expect("json")
    };
    let type_a = "application/vnd.example.a";
    let type_b = "application/vnd.example.b";
    let before = [
        referrer(type_a, "A config", Some(type_a), &subject),
        referrer(type_a, "A layer", None, &subject),
    ];
    for m in &before {
        let r = c
            .put_manifest(Digest::sha256(m).as_ref(), OCI_MANIFEST, m)
            .await;
        assert!(r.status().is_success());
        assert_eq!(header(&r, "oci-subject"), subject);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.example.index",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": Digest::sha256(&before[0]).to_string(), "size": before[0].len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_manifest.len()},
        "annotations": {"org.opencontainers.conformance.test": "index"},
    }))
    .expect("json");
    let r = c
        .put_manifest(Digest::sha256(&index).as_ref(), OCI_INDEX, &index)
        .await;
    assert!(r.status().is_success());
    assert_eq!(header(&r, "oci-subject"), subject);
    assert!(
        c.put_manifest("tagtest0", OCI_MANIFEST, &subject_manifest)
            .await
            .status()
            .is_success()
    );
    let after = [
        referrer(type_b, "B config", Some(type_b), &subject),
        referrer(type_b, "B layer", None, &subject),
    ];
    for m in &after {
        assert!(
            c.put_manifest(Digest::sha256(m).as_ref(), OCI_MANIFEST, m)
                .await
                .status()
                .is_success()
        );
    }
    let missing_subject = Digest::sha256(b"never pushed").to_string();
    let dangling = referrer(type_a, "C", None, &missing_subject);
    assert!(
        c.put_manifest(Digest::sha256(&dangling).as_ref(), OCI_MANIFEST, &dangling)
            .await
            .status()
            .is_success()
    );

    let dummy = Digest::sha256(b"dummy").to_string();
    let r = c.get(&format!("/v2/<name>/referrers/{dummy}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(body_json(r).await["manifests"], json!([]));

    let r = c.get(&format!("/v2/<name>/referrers/{subject}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let manifests = body_json(r).await["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(manifests.len(), 5);
    assert_ne!(manifests[0]["digest"], manifests[1]["digest"]);
    for m in &manifests {
        assert_eq!(m["annotations"].as_object().map(|o| o.len()), Some(1));
    }

    let r = c
        .get(&format!(
            "/v2/<name>/referrers/{subject}?artifactType={type_a}"
        ))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let manifests = body_json(r).await["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(manifests.len(), 2);
    assert!(manifests.iter().all(|m| m["artifactType"] == type_a));

    let r = c
        .get(&format!("/v2/<name>/referrers/{missing_subject}"))
        .await;
    let manifests = body_json(r).await["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["digest"],
        Digest::sha256(&dangling).to_string()
    );
}

#[tokio::test]
async fn content_management_workflow() {
    let w = Wharf::start(&[]);
    let c = C::new(&w, "conformance/management");
    let config = br#"{"management":true}"#.to_vec();
    let layer = b"management layer".to_vec();
    let cd = c.push_blob(&config).await;
    let ld = c.push_blob(&layer).await;
    let manifest = image_manifest(&config, &[&layer], json!({}));
    let md = Digest::sha256(&manifest).to_string();
    for tag in ["test0", "test1", "test2", "test3"] {
        assert!(
            c.put_manifest(tag, OCI_MANIFEST, &manifest)
                .await
                .status()
                .is_success()
        );
    }

    // Delete a tag: the others and the manifest remain.
    let r = c
        .req(Method::DELETE, "/v2/<name>/manifests/test0", &[], vec![])
        .await;
    assert_eq!(r.status(), 202);
    let r = c.get("/v2/<name>/tags/list").await;
    let tags = body_json(r).await["tags"].clone();
    assert_eq!(tags, json!(["test1", "test2", "test3"]));
    assert_eq!(c.get("/v2/<name>/manifests/test0").await.status(), 404);
    assert_eq!(
        c.get(&format!("/v2/<name>/manifests/{md}")).await.status(),
        200
    );

    // Delete the manifest: gone by digest and by every tag.
    let r = c
        .req(
            Method::DELETE,
            &format!("/v2/<name>/manifests/{md}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), 202);
    let r = c.get(&format!("/v2/<name>/manifests/{md}")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(body_json(r).await["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert_eq!(c.get("/v2/<name>/manifests/test1").await.status(), 404);
    let r = c.get("/v2/<name>/tags/list").await;
    assert_eq!(r.status(), 200);
    assert_eq!(body_json(r).await["tags"], json!([]));

    // Delete blobs.
    for d in [&cd, &ld] {
        let r = c
            .req(
                Method::DELETE,
                &format!("/v2/<name>/blobs/{d}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status(), 202);
        let r = c.get(&format!("/v2/<name>/blobs/{d}")).await;
        assert_eq!(r.status(), 404);
        assert_eq!(body_json(r).await["errors"][0]["code"], "BLOB_UNKNOWN");
    }
}
