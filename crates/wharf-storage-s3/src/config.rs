//! Where the bucket is and how to talk to it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Settings of an [`S3Backend`](crate::S3Backend).
///
/// ```
/// use wharf_storage_s3::S3Config;
/// let mut config = S3Config::new("http://127.0.0.1:3900", "garage", "registry");
/// config.prefix = "wharf/".into();
/// config.path_style = true;
/// assert_eq!(config.object_prefix(), "wharf/");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct S3Config {
    /// Base URL of the S3 API, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://garage.internal:3900`. Empty: AWS S3 in `region`. Several
    /// comma-separated URLs name equivalent endpoints (nodes of one
    /// cluster): requests go to one and move to the next after a
    /// connection failure or timeout.
    pub endpoint: String,
    /// Region used in signatures (Garage: its `s3_region`, often `garage`).
    pub region: String,
    /// Bucket name. It must exist.
    pub bucket: String,
    /// Key prefix for every object Wharf writes (`wharf/` keeps the registry
    /// in one "folder" of a shared bucket). Empty: the bucket root.
    pub prefix: String,
    /// Access key id. Empty: `AWS_ACCESS_KEY_ID` from the environment.
    pub access_key_id: String,
    /// Secret access key. Empty: `AWS_SECRET_ACCESS_KEY` from the environment.
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers want; otherwise virtual-hosted style
    /// (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Longest a request without a streamed body may take, and longest a
    /// streamed body may stall between two reads.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Longest a TCP (and TLS) connection may take to open.
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// Retries of an idempotent request after a connection failure, a
    /// timeout or a 5xx/429 answer, with exponential backoff from 100 ms.
    pub max_retries: u32,
    /// Staged upload bytes are written to the bucket in segments of at most
    /// this size; one upload request holds at most two segments in memory
    /// (one being uploaded, one being read). At least
    /// 5 MiB (the S3 minimum part size), so segments can be copied into
    /// the final object without passing through the node.
    pub segment_size: usize,
}

/// Smallest part of a multipart upload other than the last (S3's rule).
pub(crate) const MIN_PART: u64 = 5 << 20;

impl S3Config {
    /// Settings with defaults for everything but the location.
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
    ) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: bucket.into(),
            ..S3Config::default()
        }
    }

    /// The prefix as used in object keys: empty, or ending in `/`.
    pub fn object_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    /// Checks the settings and fills empty credentials from the standard
    /// AWS environment variables.
    pub fn resolve(mut self) -> Result<Self, crate::S3Error> {
        let bad = |m: &str| Err(crate::S3Error::Config(m.to_owned()));
        if self.access_key_id.is_empty() {
            self.access_key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
        }
        if self.secret_access_key.is_empty() {
            self.secret_access_key = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        }
        if self.region.is_empty() {
            self.region = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_default();
        }
        if self.bucket.is_empty() {
            return bad("the bucket name is empty");
        }
        if self.region.is_empty() {
            return bad("the region is empty (set it, or AWS_REGION)");
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return bad(
                "no credentials (set the access key id and secret, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            );
        }
        if self.endpoint.is_empty() {
            self.endpoint = format!("https://s3.{}.amazonaws.com", self.region);
        }
        if !self
            .endpoint
            .split(',')
            .all(|e| e.trim().starts_with("http://") || e.trim().starts_with("https://"))
        {
            return bad("every endpoint must start with http:// or https://");
        }
        if !self
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        {
            return bad("the prefix may hold only letters, digits, '.', '_', '-' and '/'");
        }
        if (self.segment_size as u64) < MIN_PART {
            return bad("segment_size must be at least 5 MiB");
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("timeouts must be at least one second");
        }
        Ok(self)
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: String::new(),
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: true,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            segment_size: 8 << 20,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_retries", &self.max_retries)
            .field("segment_size", &self.segment_size)
            .finish()
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}
