//! The S3 XML documents Wharf reads and writes.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct ListBucketResult {
    #[serde(rename = "Contents", default)]
    pub(crate) contents: Vec<Object>,
    #[serde(rename = "IsTruncated", default)]
    pub(crate) is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    pub(crate) next_continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Object {
    #[serde(rename = "Key")]
    pub(crate) key: String,
    #[serde(rename = "LastModified")]
    pub(crate) last_modified: String,
    #[serde(rename = "Size")]
    pub(crate) size: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    pub(crate) upload_id: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CopyResult {
    #[serde(rename = "ETag")]
    pub(crate) etag: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListMultipartUploadsResult {
    #[serde(rename = "Upload", default)]
    pub(crate) uploads: Vec<Upload>,
    #[serde(rename = "IsTruncated", default)]
    pub(crate) is_truncated: bool,
    #[serde(rename = "NextKeyMarker", default)]
    pub(crate) next_key_marker: Option<String>,
    #[serde(rename = "NextUploadIdMarker", default)]
    pub(crate) next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Upload {
    #[serde(rename = "Key")]
    pub(crate) key: String,
    #[serde(rename = "UploadId")]
    pub(crate) upload_id: String,
    #[serde(rename = "Initiated")]
    pub(crate) initiated: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorDoc {
    #[serde(rename = "Code", default)]
    pub(crate) code: String,
    #[serde(rename = "Message", default)]
    pub(crate) message: String,
}

/// Parses a document, or says what was wrong with it.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(
    text: &str,
    what: &str,
) -> Result<T, crate::S3Error> {
    quick_xml::de::from_str(text).map_err(|e| crate::S3Error::Protocol(format!("{what}: {e}")))
}

/// The `CompleteMultipartUpload` request body.
pub(crate) fn complete_body(etags: &[String]) -> String {
    let mut s = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        let etag = etag.replace('&', "&amp;").replace('<', "&lt;");
        s.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
            i + 1
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_listing() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/a</Key><LastModified>2026-11-28T12:00:00.123Z</LastModified><ETag>"x"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/b</Key><LastModified>2026-11-28T12:00:01.000Z</LastModified><ETag>"y"</ETag><Size>0</Size></Contents>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let l: ListBucketResult = parse(text, "list").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.contents.len(), 2);
        assert_eq!(l.contents[0].key, "p/a");
        assert_eq!(l.contents[1].size, 0);
        assert!(l.is_truncated);
        assert_eq!(l.next_continuation_token.as_deref(), Some("tok"));
        let empty: ListBucketResult = parse(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
            "list",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(empty.contents.is_empty());
    }
}
