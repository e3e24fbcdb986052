//! Every endpoint and error path of the distribution API, in memory
//! (`oneshot`), against the memory and the filesystem backend.

mod common;

use bytes::Bytes;
use common::{harnesses, harnesses_with};
use http::Method;
use serde_json::json;
use wharf_registry::{Access, Action, Authorizer, Decision, Event, RequestContext};
use wharf_types::{Digest, RepositoryName};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test]
async fn base_endpoint() {
    for h in harnesses() {
        let r = h.get("/v2/").await;
        r.expect(200);
        assert_eq!(r.json(), json!({}));
        h.head("/v2/").await.expect(200);
        h.send(Method::POST, "/v2/", &[], Bytes::new())
            .await
            .expect_error(405, "UNSUPPORTED");
        h.get("/v3/").await.expect(404);
        h.get("/elsewhere").await.expect(404);
    }
}

#[tokio::test]
async fn monolithic_blob_push_pull_and_ranges() {
    for h in harnesses() {
        let data = b"0123456789abcdef".repeat(100);
        let d = Digest::sha256(&data);
        let r = h
            .send(
                Method::POST,
                &format!("/v2/a/b/c/blobs/uploads/?digest={d}"),
                &[("content-length", &data.len().to_string())],
                Bytes::from(data.clone()),
            )
            .await;
        r.expect(201);
        assert_eq!(r.header("location"), format!("/v2/a/b/c/blobs/{d}"));
        assert_eq!(r.header("docker-content-digest"), d.as_str());

        let r = h.get(&format!("/v2/a/b/c/blobs/{d}")).await;
        r.expect(200);
        assert_eq!(r.body, data, "{}", h.name);
        assert_eq!(r.header("content-length"), "1600");
        assert_eq!(r.header("docker-content-digest"), d.as_str());
        assert_eq!(r.header("accept-ranges"), "bytes");
        assert_eq!(r.header("content-type"), "application/octet-stream");

        let r = h.head(&format!("/v2/a/b/c/blobs/{d}")).await;
        r.expect(200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), "1600");

        let uri = format!("/v2/a/b/c/blobs/{d}");
        let r = h
            .send(Method::GET, &uri, &[("range", "bytes=10-19")], Bytes::new())
            .await;
        r.expect(206);
        assert_eq!(r.body, &data[10..20]);
        assert_eq!(r.header("content-range"), "bytes 10-19/1600");
        let r = h
            .send(Method::GET, &uri, &[("range", "bytes=-5")], Bytes::new())
            .await;
        r.expect(206);
        assert_eq!(r.body, &data[1595..]);
        let r = h
            .send(
                Method::GET,
                &uri,
                &[("range", "bytes=1590-99999")],
                Bytes::new(),
            )
            .await;
        r.expect(206);
        assert_eq!(r.body.len(), 10);
        let r = h
            .send(Method::GET, &uri, &[("range", "bytes=1600-")], Bytes::new())
            .await;
        r.expect_error(416, "RANGE_INVALID");
        assert_eq!(r.header("content-range"), "bytes */1600");
        h.send(Method::GET, &uri, &[("range", "bytes=5-1")], Bytes::new())
            .await
            .expect(416);
        h.send(Method::GET, &uri, &[("range", "lines=1-2")], Bytes::new())
            .await
            .expect(416);
        h.send(
            Method::GET,
            &uri,
            &[("range", "bytes=0-1,4-5")],
            Bytes::new(),
        )
        .await
        .expect(416);
        let r = h
            .send(Method::HEAD, &uri, &[("range", "bytes=0-9")], Bytes::new())
            .await;
        r.expect(206);
        assert_eq!(r.header("content-length"), "10");
    }
}

#[tokio::test]
async fn wrong_digest_or_length_leaves_nothing_readable() {
    for h in harnesses() {
        let wrong = Digest::sha256(b"something else");
        h.send(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={wrong}"),
            &[],
            Bytes::from_static(b"actual content"),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        h.get(&format!("/v2/r/blobs/{wrong}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        let real = Digest::sha256(b"actual content");
        h.get(&format!("/v2/r/blobs/{real}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");

        // Content-Length that does not match the body.
        h.send(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={real}"),
            &[("content-length", "5")],
            Bytes::from_static(b"actual content"),
        )
        .await
        .expect_error(400, "SIZE_INVALID");
        h.send(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={real}"),
            &[("content-length", "500")],
            Bytes::from_static(b"actual content"),
        )
        .await
        .expect_error(400, "SIZE_INVALID");
        h.get(&format!("/v2/r/blobs/{real}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.send(
            Method::POST,
            "/v2/r/blobs/uploads/?digest=sha256:123",
            &[],
            Bytes::new(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn chunked_upload_protocol() {
    for h in harnesses() {
        let r = h
            .send(
                Method::POST,
                "/v2/r/blobs/uploads/",
                &[("content-length", "0")],
                Bytes::new(),
            )
            .await;
        r.expect(202);
        let loc = r.header("location").to_owned();
        assert!(loc.starts_with("/v2/r/blobs/uploads/"), "{loc}");
        assert_eq!(r.header("range"), "0-0");
        assert_eq!(loc.rsplit('/').next(), Some(r.header("docker-upload-uuid")));

        let (a, b) = (b"first chunk ".to_vec(), b"second chunk".to_vec());
        let whole = [a.clone(), b.clone()].concat();
        let d = Digest::sha256(&whole);

        // Out of order first.
        let r = h
            .send(
                Method::PATCH,
                &loc,
                &[("content-range", "12-23"), ("content-length", "12")],
                b.clone(),
            )
            .await;
        r.expect_error(416, "BLOB_UPLOAD_INVALID");
        assert_eq!(r.header("range"), "0-0");

        let r = h
            .send(
                Method::PATCH,
                &loc,
                &[("content-range", "0-11"), ("content-length", "12")],
                a.clone(),
            )
            .await;
        r.expect(202);
        assert_eq!(r.header("range"), "0-11");
        assert_eq!(r.header("location"), loc);

        // The same chunk again: 416 with the current range.
        let r = h
            .send(
                Method::PATCH,
                &loc,
                &[("content-range", "0-11"), ("content-length", "12")],
                a.clone(),
            )
            .await;
        r.expect(416);
        assert_eq!(r.header("range"), "0-11");

        // Overlapping.
        h.send(
            Method::PATCH,
            &loc,
            &[("content-range", "6-17"), ("content-length", "12")],
            b.clone(),
        )
        .await
        .expect(416);
        // Content-Range inconsistent with Content-Length.
        h.send(
            Method::PATCH,
            &loc,
            &[("content-range", "12-30"), ("content-length", "12")],
            b.clone(),
        )
        .await
        .expect(416);
        h.send(
            Method::PATCH,
            &loc,
            &[("content-range", "garbage")],
            b.clone(),
        )
        .await
        .expect(416);

        let r = h.get(&loc).await;
        r.expect(204);
        assert_eq!(r.header("range"), "0-11");
        assert_eq!(r.header("location"), loc);

        // Final chunk with the PUT.
        let r = h
            .send(
                Method::PUT,
                &format!("{loc}?digest={d}"),
                &[("content-range", "12-23"), ("content-length", "12")],
                b.clone(),
            )
            .await;
        r.expect(201);
        assert_eq!(r.header("location"), format!("/v2/r/blobs/{d}"));
        assert_eq!(r.header("docker-content-digest"), d.as_str());
        assert_eq!(h.get(&format!("/v2/r/blobs/{d}")).await.body, whole);

        // The session is gone.
        h.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn streamed_patch_then_put_without_body() {
    for h in harnesses() {
        let r = h
            .send(Method::POST, "/v2/r/blobs/uploads/", &[], Bytes::new())
            .await;
        let loc = r.header("location").to_owned();
        let data = vec![7u8; 300_000];
        let d = Digest::sha256(&data);
        let r = h.send(Method::PATCH, &loc, &[], data.clone()).await;
        r.expect(202);
        assert_eq!(r.header("range"), "0-299999");
        h.send(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            &[("content-length", "0")],
            Bytes::new(),
        )
        .await
        .expect(201);
        assert_eq!(h.get(&format!("/v2/r/blobs/{d}")).await.body.len(), 300_000);
    }
}

#[tokio::test]
async fn upload_digest_mismatch_keeps_session_and_missing_digest_is_rejected() {
    for h in harnesses() {
        let loc = h
            .send(Method::POST, "/v2/r/blobs/uploads/", &[], Bytes::new())
            .await
            .header("location")
            .to_owned();
        h.send(Method::PATCH, &loc, &[], Bytes::from_static(b"abc"))
            .await
            .expect(202);
        let wrong = Digest::sha256(b"abd");
        h.send(
            Method::PUT,
            &format!("{loc}?digest={wrong}"),
            &[],
            Bytes::new(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        h.get(&format!("/v2/r/blobs/{wrong}")).await.expect(404);
        h.send(Method::PUT, &loc, &[], Bytes::new())
            .await
            .expect_error(400, "DIGEST_INVALID");
        let right = Digest::sha256(b"abc");
        h.send(
            Method::PUT,
            &format!("{loc}?digest={right}"),
            &[],
            Bytes::new(),
        )
        .await
        .expect(201);
    }
}

#[tokio::test]
async fn cancel_and_forged_upload_ids() {
    for h in harnesses() {
        let loc = h
            .send(Method::POST, "/v2/r/blobs/uploads/", &[], Bytes::new())
            .await
            .header("location")
            .to_owned();
        let id = loc.rsplit('/').next().expect("id").to_owned();
        // An id from another repository names no upload there.
        h.get(&format!("/v2/other/blobs/uploads/{id}"))
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.send(
            Method::PATCH,
            &format!("/v2/other/blobs/uploads/{id}"),
            &[],
            Bytes::from_static(b"x"),
        )
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        // Well-formed but never issued, and malformed.
        h.get("/v2/r/blobs/uploads/0b6f8d2e-3c1a-4f7e-9a55-2d8f6b1e4c3a")
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.get("/v2/r/blobs/uploads/..%2F..%2Fetc")
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.delete(&loc).await.expect(204);
        h.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        h.delete(&loc)
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn cross_repository_mounts() {
    for h in harnesses() {
        let d = h.push_blob("source", b"shared layer").await;
        let r = h
            .send(
                Method::POST,
                &format!("/v2/target/blobs/uploads/?mount={d}&from=source"),
                &[],
                Bytes::new(),
            )
            .await;
        r.expect(201);
        assert_eq!(r.header("location"), format!("/v2/target/blobs/{d}"));
        assert_eq!(
            h.get(&format!("/v2/target/blobs/{d}")).await.body,
            "shared layer"
        );

        // From a repository that lacks it: a new session instead.
        let missing = Digest::sha256(b"nowhere");
        let r = h
            .send(
                Method::POST,
                &format!("/v2/t2/blobs/uploads/?mount={missing}&from=source"),
                &[],
                Bytes::new(),
            )
            .await;
        r.expect(202);
        assert!(r.header("location").starts_with("/v2/t2/blobs/uploads/"));

        // Automatic mount (no from): the registry finds a holder.
        let r = h
            .send(
                Method::POST,
                &format!("/v2/t3/blobs/uploads/?mount={d}"),
                &[],
                Bytes::new(),
            )
            .await;
        r.expect(201);
        h.get(&format!("/v2/t3/blobs/{d}")).await.expect(200);

        h.send(
            Method::POST,
            "/v2/t3/blobs/uploads/?mount=sha256:bad",
            &[],
            Bytes::new(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        h.send(
            Method::POST,
            &format!("/v2/t3/blobs/uploads/?mount={d}&from=Bad..Name"),
            &[],
            Bytes::new(),
        )
        .await
        .expect_error(400, "NAME_INVALID");
    }
    for h in harnesses_with(|b| b.automatic_mount(false)) {
        let d = h.push_blob("source", b"shared layer").await;
        h.send(
            Method::POST,
            &format!("/v2/t3/blobs/uploads/?mount={d}"),
            &[],
            Bytes::new(),
        )
        .await
        .expect(202);
        h.get(&format!("/v2/t3/blobs/{d}")).await.expect(404);
    }
}

#[tokio::test]
async fn blobs_are_isolated_per_repository_and_delete_unlinks() {
    for h in harnesses() {
        let d = h.push_blob("one", b"private bytes").await;
        h.get(&format!("/v2/two/blobs/{d}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.head(&format!("/v2/two/blobs/{d}")).await.expect(404);
        h.delete(&format!("/v2/one/blobs/{d}")).await.expect(202);
        h.get(&format!("/v2/one/blobs/{d}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        h.delete(&format!("/v2/one/blobs/{d}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
    }
    for h in harnesses_with(|b| b.delete_enabled(false)) {
        let d = h.push_blob("one", b"kept").await;
        h.delete(&format!("/v2/one/blobs/{d}"))
            .await
            .expect_error(405, "UNSUPPORTED");
        h.get(&format!("/v2/one/blobs/{d}")).await.expect(200);
        let raw = h.push_image("one", "v1", "x", json!({})).await;
        let md = Digest::sha256(&raw);
        h.delete(&format!("/v2/one/manifests/{md}"))
            .await
            .expect_error(405, "UNSUPPORTED");
        h.delete("/v2/one/manifests/v1")
            .await
            .expect_error(405, "UNSUPPORTED");
        h.get("/v2/one/manifests/v1").await.expect(200);
    }
}

#[tokio::test]
async fn manifest_push_pull_exact_bytes() {
    for h in harnesses() {
        let raw = h
            .push_image(
                "app",
                "v1",
                "a",
                json!({"annotations": {"k": "v"}, "x-unknown": [1, {"deep": true}]}),
            )
            .await;
        let d = Digest::sha256(&raw);
        for reference in ["v1", d.as_str()] {
            let r = h.get(&format!("/v2/app/manifests/{reference}")).await;
            r.expect(200);
            assert_eq!(r.body, raw, "byte-exact ({})", h.name);
            assert_eq!(r.header("content-type"), OCI_MANIFEST);
            assert_eq!(r.header("docker-content-digest"), d.as_str());
            assert_eq!(r.header("content-length"), raw.len().to_string());
            let r = h.head(&format!("/v2/app/manifests/{reference}")).await;
            r.expect(200);
            assert!(r.body.is_empty());
            assert_eq!(r.header("content-length"), raw.len().to_string());
            assert_eq!(r.header("docker-content-digest"), d.as_str());
        }
        // Push by digest gives Location by digest.
        let r = h.put_manifest("app", d.as_str(), OCI_MANIFEST, &raw).await;
        r.expect(201);
        assert_eq!(r.header("location"), format!("/v2/app/manifests/{d}"));
        h.get("/v2/app/manifests/nope")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.get(&format!("/v2/app/manifests/{}", Digest::sha256(b"x")))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.get("/v2/never/manifests/v1")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn manifest_validation_errors() {
    for h in harnesses() {
        let cd = h.push_blob("m", b"{}").await;
        let missing = Digest::sha256(b"missing layer");
        let doc = |layers: serde_json::Value| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
                "layers": layers,
            }))
            .expect("json")
        };
        let r = h
            .put_manifest("m", "t", OCI_MANIFEST, &doc(json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 5}])))
            .await;
        r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing.as_str());

        // A blob stored in another repository does not count.
        let elsewhere = h.push_blob("other", b"elsewhere").await;
        h.put_manifest("m", "t", OCI_MANIFEST, &doc(json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": elsewhere, "size": 9}])))
            .await
            .expect_error(400, "MANIFEST_BLOB_UNKNOWN");

        h.put_manifest("m", "t", OCI_MANIFEST, b"{not json")
            .await
            .expect_error(400, "MANIFEST_INVALID");
        h.put_manifest("m", "t", OCI_INDEX, &doc(json!([])))
            .await
            .expect_error(400, "MANIFEST_INVALID");
        let mut both: serde_json::Value = serde_json::from_slice(&doc(json!([]))).expect("json");
        both["manifests"] = json!([]);
        h.put_manifest(
            "m",
            "t",
            OCI_MANIFEST,
            &serde_json::to_vec(&both).expect("json"),
        )
        .await
        .expect_error(400, "MANIFEST_INVALID");
        let deep = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[],\"x\":{}{}}}",
            "[".repeat(500),
            "]".repeat(500)
        );
        h.put_manifest("m", "t", OCI_INDEX, deep.as_bytes())
            .await
            .expect_error(400, "MANIFEST_INVALID");
        let schema1 = br#"{"schemaVersion":1,"name":"m","tag":"t","fsLayers":[]}"#;
        h.put_manifest(
            "m",
            "t",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            schema1,
        )
        .await
        .expect_error(405, "UNSUPPORTED");

        let big = vec![b' '; 4 * 1024 * 1024 + 1];
        h.put_manifest("m", "t", OCI_MANIFEST, &big)
            .await
            .expect_error(413, "SIZE_INVALID");

        // Digest reference that does not match the body.
        let ok = doc(json!([]));
        h.put_manifest("m", Digest::sha256(b"other").as_str(), OCI_MANIFEST, &ok)
            .await
            .expect_error(400, "DIGEST_INVALID");
        h.put_manifest("m", "bad:tag", OCI_MANIFEST, &ok)
            .await
            .expect(400);
        h.put_manifest("m", ".hidden", OCI_MANIFEST, &ok)
            .await
            .expect_error(400, "TAG_INVALID");
        // Nothing of the above became readable.
        let r = h.get("/v2/m/tags/list").await;
        r.expect(200);
        assert_eq!(r.json()["tags"], json!([]));
        // An empty layers array is fine.
        h.put_manifest("m", "empty", OCI_MANIFEST, &ok)
            .await
            .expect(201);
    }
}

#[tokio::test]
async fn manifest_and_tag_deletion() {
    for h in harnesses() {
        let raw = h.push_image("d", "v1", "a", json!({})).await;
        let d = Digest::sha256(&raw);
        h.put_manifest("d", "v2", OCI_MANIFEST, &raw)
            .await
            .expect(201);
        h.delete("/v2/d/manifests/v1").await.expect(202);
        h.get("/v2/d/manifests/v1")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.get(&format!("/v2/d/manifests/{d}")).await.expect(200);
        h.get("/v2/d/manifests/v2").await.expect(200);
        h.delete("/v2/d/manifests/v1")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.delete(&format!("/v2/d/manifests/{d}")).await.expect(202);
        h.get(&format!("/v2/d/manifests/{d}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.get("/v2/d/manifests/v2")
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        h.delete(&format!("/v2/d/manifests/{d}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn tag_listing_and_pagination() {
    for h in harnesses() {
        h.get("/v2/nothing/tags/list")
            .await
            .expect_error(404, "NAME_UNKNOWN");
        let raw = h.push_image("t", "a", "s", json!({})).await;
        for tag in ["B", "_x", "a.1", "a-2", "z", "0"] {
            h.put_manifest("t", tag, OCI_MANIFEST, &raw)
                .await
                .expect(201);
        }
        let all = ["0", "B", "_x", "a", "a-2", "a.1", "z"];
        let r = h.get("/v2/t/tags/list").await;
        r.expect(200);
        assert_eq!(r.json(), json!({"name": "t", "tags": all}));
        assert_eq!(r.header("link"), "");

        let r = h.get("/v2/t/tags/list?n=3").await;
        assert_eq!(r.json()["tags"], json!(["0", "B", "_x"]));
        assert_eq!(
            r.header("link"),
            "</v2/t/tags/list?n=3&last=_x>; rel=\"next\""
        );
        let r = h.get("/v2/t/tags/list?n=3&last=_x").await;
        assert_eq!(r.json()["tags"], json!(["a", "a-2", "a.1"]));
        let r = h.get("/v2/t/tags/list?n=3&last=a.1").await;
        assert_eq!(r.json()["tags"], json!(["z"]));
        assert_eq!(r.header("link"), "");
        let r = h.get("/v2/t/tags/list?n=0").await;
        r.expect(200);
        assert_eq!(r.json()["tags"], json!([]));
        let r = h.get("/v2/t/tags/list?n=99999999999").await;
        assert_eq!(r.json()["tags"].as_array().map(Vec::len), Some(7));
        h.get("/v2/t/tags/list?n=-1").await.expect(400);
        h.get("/v2/t/tags/list?n=abc").await.expect(400);
        h.get("/v2/t/tags/list?last=bad/tag")
            .await
            .expect_error(400, "TAG_INVALID");
        h.get("/v2/t/tags/list?n=1&n=2").await.expect(400);
    }
}

#[tokio::test]
async fn referrers_api() {
    for h in harnesses() {
        let empty = h.push_blob("r", b"{}").await;
        let subject_raw = h.push_image("r", "v1", "subject", json!({})).await;
        let subject = Digest::sha256(&subject_raw);

        let r = h.get(&format!("/v2/r/referrers/{subject}")).await;
        r.expect(200);
        assert_eq!(r.header("content-type"), OCI_INDEX);
        assert_eq!(
            r.json(),
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        );

        let mut pushed = Vec::new();
        for (i, at) in [
            "application/vnd.example.sig",
            "application/vnd.example.sbom",
            "application/vnd.example.sig",
        ]
        .iter()
        .enumerate()
        {
            let doc = json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                "layers": [],
                "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_raw.len()},
                "annotations": {"n": i.to_string()},
            });
            let raw = serde_json::to_vec(&doc).expect("json");
            let d = Digest::sha256(&raw);
            let r = h.put_manifest("r", d.as_str(), OCI_MANIFEST, &raw).await;
            r.expect(201);
            assert_eq!(r.header("oci-subject"), subject.as_str());
            pushed.push((d, raw.len()));
        }
        let r = h.get(&format!("/v2/r/referrers/{subject}")).await;
        let manifests = r.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(manifests.len(), 3);
        for m in &manifests {
            let (_, size) = pushed
                .iter()
                .find(|(d, _)| m["digest"] == d.as_str())
                .expect("a pushed referrer");
            assert_eq!(m["size"], *size);
            assert_eq!(m["mediaType"], OCI_MANIFEST);
            assert!(m["annotations"]["n"].is_string());
        }
        assert_eq!(r.header("oci-filters-applied"), "");

        let r = h
            .get(&format!(
                "/v2/r/referrers/{subject}?artifactType=application/vnd.example.sig"
            ))
            .await;
        assert_eq!(r.header("oci-filters-applied"), "artifactType");
        assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(2));

        let r = h.get(&format!("/v2/r/referrers/{subject}?n=2")).await;
        assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(2));
        assert!(
            r.header("link").contains("rel=\"next\""),
            "{}",
            r.header("link")
        );

        // Deleting a referrer removes it; other repositories see nothing.
        h.delete(&format!("/v2/r/manifests/{}", pushed[0].0))
            .await
            .expect(202);
        let r = h.get(&format!("/v2/r/referrers/{subject}")).await;
        assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(2));
        let r = h.get(&format!("/v2/elsewhere/referrers/{subject}")).await;
        r.expect(200);
        assert_eq!(r.json()["manifests"], json!([]));
        h.get("/v2/r/referrers/sha256:zz")
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn catalog_pagination() {
    for h in harnesses() {
        for repo in ["b", "a/b", "a", "a-b", "a.b"] {
            h.push_blob(repo, repo.as_bytes()).await;
        }
        let r = h.get("/v2/_catalog").await;
        r.expect(200);
        assert_eq!(
            r.json(),
            json!({"repositories": ["a", "a-b", "a.b", "a/b", "b"]})
        );
        let r = h.get("/v2/_catalog?n=2").await;
        assert_eq!(r.json()["repositories"], json!(["a", "a-b"]));
        assert_eq!(
            r.header("link"),
            "</v2/_catalog?n=2&last=a-b>; rel=\"next\""
        );
        let r = h.get("/v2/_catalog?n=2&last=a-b").await;
        assert_eq!(
            r.json()["repositories"],
            json!(["a.b", "a%2Fb"].map(|s| s.replace("%2F", "/")))
        );
        let r = h.get("/v2/_catalog?n=2&last=a%2Fb").await;
        assert_eq!(r.json()["repositories"], json!(["b"]));
        assert_eq!(r.header("link"), "");
    }
}

#[tokio::test]
async fn malformed_paths_get_the_right_codes() {
    for h in harnesses() {
        for (path, status, code) in [
            ("/v2/UPPER/tags/list", 400, "NAME_INVALID"),
            ("/v2/a..b/tags/list", 400, "NAME_INVALID"),
            ("/v2/a//b/tags/list", 400, "NAME_INVALID"),
            ("/v2/../x/tags/list", 400, "NAME_INVALID"),
            ("/v2/a%2Fb/tags/list", 400, "NAME_INVALID"),
            ("/v2/a/blobs/sha256:ABC", 400, "DIGEST_INVALID"),
            ("/v2/a/blobs/sha256:abc", 400, "DIGEST_INVALID"),
            (
                "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
                400,
                "DIGEST_INVALID",
            ),
            ("/v2/a/blobs/sha256:..%2F..%2Fetc", 400, "DIGEST_INVALID"),
            (
                "/v2/a/blobs/sha256%3Ae3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                400,
                "DIGEST_INVALID",
            ),
            ("/v2/a/manifests/-tag", 400, "TAG_INVALID"),
            ("/v2/a/manifests/sha256:xyz", 400, "DIGEST_INVALID"),
        ] {
            h.get(path).await.expect_error(status, code);
        }
        let long = format!("/v2/{}/tags/list", "a".repeat(300));
        h.get(&long).await.expect_error(400, "NAME_INVALID");
        h.get("/v2/a/").await.expect(404);
        h.send(Method::PUT, "/v2/a/tags/list", &[], Bytes::new())
            .await
            .expect_error(405, "UNSUPPORTED");
    }
}

#[tokio::test]
async fn docker_manifests_and_accept_negotiation() {
    for h in harnesses() {
        let cd = h.push_blob("dk", b"{\"architecture\":\"amd64\"}").await;
        let ld = h.push_blob("dk", b"layer").await;
        let manifest = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"size\": 24, \"digest\": \"{cd}\"}},\n   \"layers\": [{{\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"size\": 5, \"digest\": \"{ld}\"}}]\n}}"
        );
        let md = Digest::sha256(manifest.as_bytes());
        h.put_manifest("dk", "amd64", DOCKER_MANIFEST, manifest.as_bytes())
            .await
            .expect(201);
        let list = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER_LIST}\",\"manifests\":[{{\"mediaType\":\"{DOCKER_MANIFEST}\",\"size\":{},\"digest\":\"{md}\",\"platform\":{{\"architecture\":\"amd64\",\"os\":\"linux\"}}}}]}}",
            manifest.len()
        );
        h.put_manifest("dk", "latest", DOCKER_LIST, list.as_bytes())
            .await
            .expect(201);
        let r = h
            .send(
                Method::GET,
                "/v2/dk/manifests/latest",
                &[("accept", &format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))],
                Bytes::new(),
            )
            .await;
        r.expect(200);
        assert_eq!(r.body, list.as_bytes());
        assert_eq!(r.header("content-type"), DOCKER_LIST);
        let r = h
            .send(
                Method::GET,
                "/v2/dk/manifests/amd64",
                &[("accept", DOCKER_MANIFEST)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.body, manifest.as_bytes());
        // A client that only understands single manifests does not get a list by tag...
        h.send(
            Method::GET,
            "/v2/dk/manifests/latest",
            &[("accept", DOCKER_MANIFEST)],
            Bytes::new(),
        )
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
        // ...but gets exactly what it asks for by digest, and wildcards work.
        let ld = Digest::sha256(list.as_bytes());
        h.send(
            Method::GET,
            &format!("/v2/dk/manifests/{ld}"),
            &[("accept", DOCKER_MANIFEST)],
            Bytes::new(),
        )
        .await
        .expect(200);
        h.send(
            Method::GET,
            "/v2/dk/manifests/latest",
            &[("accept", "*/*")],
            Bytes::new(),
        )
        .await
        .expect(200);
        // An index referencing a missing child is refused.
        let bad = list.replace(md.as_str(), Digest::sha256(b"nope").as_str());
        h.put_manifest("dk", "bad", DOCKER_LIST, bad.as_bytes())
            .await
            .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    }
}

struct Policy;

#[async_trait::async_trait]
impl Authorizer for Policy {
    async fn authorize(&self, request: &RequestContext<'_>, accesses: &[Access]) -> Decision {
        let user = request
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for a in accesses {
            let repo = a
                .repository
                .as_ref()
                .map(RepositoryName::as_str)
                .unwrap_or("");
            let ok = match (user, a.action) {
                (_, Action::Base) => true,
                ("", _) => {
                    return Decision::Challenge(
                        "Bearer realm=\"https://auth.example/token\",service=\"registry\"".into(),
                    );
                }
                ("writer", _) => true,
                ("reader", Action::Pull) => !repo.starts_with("secret"),
                ("reader", Action::Push) => repo.starts_with("mine"),
                _ => false,
            };
            if !ok {
                return Decision::Deny;
            }
        }
        Decision::Allow
    }
}

#[tokio::test]
async fn authorization_hook() {
    for h in harnesses_with(|b| b.authorizer(Policy)) {
        let as_ = |user: &'static str| [("x-user", user)];
        let writer = as_("writer");
        let d = Digest::sha256(b"secret layer");
        h.send(
            Method::POST,
            &format!("/v2/secret/blobs/uploads/?digest={d}"),
            &writer,
            Bytes::from_static(b"secret layer"),
        )
        .await
        .expect(201);

        let r = h.get(&format!("/v2/secret/blobs/{d}")).await;
        r.expect_error(401, "UNAUTHORIZED");
        assert!(r.header("www-authenticate").starts_with("Bearer realm="));
        // Denied the same way whether the repository exists or not.
        h.send(
            Method::GET,
            &format!("/v2/secret/blobs/{d}"),
            &as_("reader"),
            Bytes::new(),
        )
        .await
        .expect_error(403, "DENIED");
        h.send(
            Method::GET,
            &format!("/v2/secret-nope/blobs/{d}"),
            &as_("reader"),
            Bytes::new(),
        )
        .await
        .expect_error(403, "DENIED");
        // A reader may push to its own repository but not mount from one it can't read.
        let r = h
            .send(
                Method::POST,
                &format!("/v2/mine/blobs/uploads/?mount={d}&from=secret"),
                &as_("reader"),
                Bytes::new(),
            )
            .await;
        r.expect(202);
        let r = h
            .send(
                Method::POST,
                &format!("/v2/mine/blobs/uploads/?mount={d}"),
                &as_("reader"),
                Bytes::new(),
            )
            .await;
        r.expect(202);
        h.send(
            Method::GET,
            &format!("/v2/mine/blobs/{d}"),
            &as_("reader"),
            Bytes::new(),
        )
        .await
        .expect(404);
        // The writer may.
        h.send(
            Method::POST,
            &format!("/v2/mine/blobs/uploads/?mount={d}&from=secret"),
            &writer,
            Bytes::new(),
        )
        .await
        .expect(201);
        // Deletes need delete rights.
        h.send(
            Method::DELETE,
            &format!("/v2/mine/blobs/{d}"),
            &as_("reader"),
            Bytes::new(),
        )
        .await
        .expect_error(403, "DENIED");
        // The catalog lists only what the caller may pull.
        let r = h
            .send(Method::GET, "/v2/_catalog", &writer, Bytes::new())
            .await;
        assert_eq!(r.json()["repositories"], json!(["mine", "secret"]));
        h.send(Method::GET, "/v2/_catalog", &as_("reader"), Bytes::new())
            .await
            .expect_error(403, "DENIED");
        h.get("/v2/").await.expect(200);
    }
}

#[tokio::test]
async fn events_are_published() {
    for h in harnesses() {
        let mut rx = h.registry.subscribe();
        let raw = h.push_image("ev", "v1", "one", json!({})).await;
        let first = Digest::sha256(&raw);
        let raw2 = h.push_image("ev", "v1", "two", json!({})).await;
        let second = Digest::sha256(&raw2);
        h.delete("/v2/ev/manifests/v1").await.expect(202);
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push(e);
        }
        let uploads = seen
            .iter()
            .filter(|e| matches!(e, Event::BlobUploaded { .. }))
            .count();
        assert_eq!(uploads, 4);
        assert!(seen.iter().any(|e| matches!(e, Event::ManifestPushed { digest, tag: Some(t), .. } if *digest == first && t.as_str() == "v1")));
        assert!(seen.iter().any(
            |e| matches!(e, Event::TagMoved { from, to, .. } if *from == first && *to == second)
        ));
        assert!(matches!(seen.last(), Some(Event::TagDeleted { tag, .. }) if tag.as_str() == "v1"));
    }
}

#[tokio::test]
async fn size_limits() {
    let mut limits = wharf_registry::Limits::default();
    limits.max_blob_size = 100;
    limits.max_manifest_size = 512;
    for h in harnesses_with(|b| b.limits(limits.clone())) {
        let big = vec![1u8; 101];
        let d = Digest::sha256(&big);
        h.send(
            Method::POST,
            &format!("/v2/l/blobs/uploads/?digest={d}"),
            &[("content-length", "101")],
            big.clone(),
        )
        .await
        .expect_error(413, "SIZE_INVALID");
        // Without Content-Length the stream is cut at the limit.
        h.send(
            Method::POST,
            &format!("/v2/l/blobs/uploads/?digest={d}"),
            &[],
            big.clone(),
        )
        .await
        .expect_error(413, "SIZE_INVALID");
        h.get(&format!("/v2/l/blobs/{d}")).await.expect(404);
        // Across chunks too.
        let loc = h
            .send(Method::POST, "/v2/l/blobs/uploads/", &[], Bytes::new())
            .await
            .header("location")
            .to_owned();
        h.send(Method::PATCH, &loc, &[], vec![0u8; 60])
            .await
            .expect(202);
        h.send(Method::PATCH, &loc, &[], vec![0u8; 60])
            .await
            .expect_error(413, "SIZE_INVALID");
        let r = h.get(&loc).await;
        assert_eq!(r.header("range"), "0-59");
        h.put_manifest("l", "t", OCI_MANIFEST, &vec![b' '; 600])
            .await
            .expect_error(413, "SIZE_INVALID");
    }
}
