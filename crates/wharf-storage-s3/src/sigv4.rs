//! AWS Signature Version 4, for headers and for presigned URLs.

use std::time::SystemTime;

use ring::{digest, hmac};

/// Hash of an empty payload.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Payload hash for bodies that are streamed, not hashed up front.
pub(crate) const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

/// Hex SHA-256 of a payload.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/`
/// when `keep_slash`), as SigV4 wants.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a request is signed with.
#[derive(Clone)]
pub(crate) struct Signer {
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) region: String,
}

/// One request to sign: `path` is already URI-encoded; `query` pairs are raw.
pub(crate) struct ToSign<'a> {
    pub(crate) method: &'a str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a [(String, String)],
    /// Extra headers to sign (lowercase names), besides host and x-amz-*.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) payload_hash: &'a str,
}

fn hmac_sha256(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

pub(crate) fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

impl Signer {
    fn signing_key(&self, date: &str) -> hmac::Tag {
        let k = hmac_sha256(format!("AWS4{}", self.secret).as_bytes(), date);
        let k = hmac_sha256(k.as_ref(), &self.region);
        let k = hmac_sha256(k.as_ref(), "s3");
        hmac_sha256(k.as_ref(), "aws4_request")
    }

    fn scope(&self, date: &str) -> String {
        format!("{date}/{}/s3/aws4_request", self.region)
    }

    fn signature(
        &self,
        req: &ToSign<'_>,
        headers: &[(String, String)],
        full: &str,
        date: &str,
        query: &str,
    ) -> String {
        let mut headers: Vec<(String, String)> = headers.to_vec();
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            req.method,
            req.path,
            query,
            canonical_headers,
            signed.join(";"),
            req.payload_hash
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{full}\n{}\n{}",
            self.scope(date),
            sha256_hex(canonical.as_bytes())
        );
        hex::encode(hmac_sha256(self.signing_key(date).as_ref(), &to_sign))
    }

    /// Headers to add to the request: `x-amz-date`, `x-amz-content-sha256`
    /// and `authorization`.
    pub(crate) fn sign(&self, req: &ToSign<'_>, now: SystemTime) -> Vec<(String, String)> {
        let (full, date) = crate::time::amz_date(now);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), req.host.to_owned()),
            ("x-amz-content-sha256".into(), req.payload_hash.to_owned()),
            ("x-amz-date".into(), full.clone()),
        ];
        headers.extend(req.headers.iter().cloned());
        headers.sort();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let sig = self.signature(req, &headers, &full, &date, &canonical_query(req.query));
        vec![
            ("x-amz-date".into(), full),
            ("x-amz-content-sha256".into(), req.payload_hash.to_owned()),
            (
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{},SignedHeaders={signed},Signature={sig}",
                    self.key_id,
                    self.scope(&date)
                ),
            ),
        ]
    }

    /// The query string of a presigned URL (everything after `?`).
    pub(crate) fn presign(&self, req: &ToSign<'_>, now: SystemTime, expires_secs: u64) -> String {
        let (full, date) = crate::time::amz_date(now);
        let mut query: Vec<(String, String)> = req.query.to_vec();
        query.extend([
            ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
            (
                "X-Amz-Credential".into(),
                format!("{}/{}", self.key_id, self.scope(&date)),
            ),
            ("X-Amz-Date".into(), full.clone()),
            ("X-Amz-Expires".into(), expires_secs.to_string()),
            ("X-Amz-SignedHeaders".into(), "host".into()),
        ]);
        let headers = vec![("host".to_owned(), req.host.to_owned())];
        let canonical = canonical_query(&query);
        let req = ToSign {
            payload_hash: UNSIGNED,
            ..*req
        };
        let sig = self.signature(&req, &headers, &full, &date, &canonical);
        format!("{canonical}&X-Amz-Signature={sig}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The GET Object example of the SigV4 documentation (examplebucket,
    /// `Range: bytes=0-9`, 2013-05-24).
    #[test]
    fn matches_the_documented_example() {
        let signer = Signer {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let headers = signer.sign(
            &ToSign {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &[("range".into(), "bytes=0-9".into())],
                payload_hash: EMPTY_SHA256,
            },
            now,
        );
        let auth = &headers[2].1;
        assert!(
            auth.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"));
    }

    /// The presigned URL example of the SigV4 documentation.
    #[test]
    fn presigns_like_the_documented_example() {
        let signer = Signer {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let q = signer.presign(
            &ToSign {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &[],
                payload_hash: UNSIGNED,
            },
            now,
            86_400,
        );
        assert!(
            q.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{q}"
        );
    }

    #[test]
    fn encodes_like_s3() {
        assert_eq!(uri_encode("a/b:c d~", true), "a/b%3Ac%20d~");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
