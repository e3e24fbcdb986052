//! Query strings and the range headers, parsed and bounded.

use std::collections::HashMap;

use wharf_storage::ByteRange;

/// Longest query string accepted.
pub const MAX_QUERY_LEN: usize = 4096;

/// A malformed parameter or header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ParamError {
    /// Which parameter or header.
    pub what: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn err(what: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError {
        what,
        reason: reason.into(),
    }
}

/// Decoded query parameters. A parameter given twice is an error (it would
/// be ambiguous which one applies).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses `a=b&c=d` with percent-decoding.
    ///
    /// ```
    /// use wharf_registry::params::Query;
    /// let q = Query::parse(Some("n=10&last=v1%2E0")).unwrap();
    /// assert_eq!(q.get("last"), Some("v1.0"));
    /// assert!(Query::parse(Some("n=1&n=2")).is_err());
    /// ```
    pub fn parse(raw: Option<&str>) -> Result<Self, ParamError> {
        let Some(raw) = raw else {
            return Ok(Query::default());
        };
        if raw.len() > MAX_QUERY_LEN {
            return Err(err("query", format!("longer than {MAX_QUERY_LEN} bytes")));
        }
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(err(
                    "query",
                    format!("parameter {k:?} given more than once"),
                ));
            }
        }
        Ok(Query(map))
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The page size `n`, clamped to `max`; absent gives `max`.
    pub fn page_size(&self, max: usize) -> Result<usize, ParamError> {
        match self.get("n") {
            None => Ok(max),
            Some(s) => {
                let n: u64 = s
                    .parse()
                    .map_err(|_| err("n", format!("{s:?} is not a non-negative integer")))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX).min(max))
            }
        }
    }
}

/// Parses a `Range` request header: one range `bytes=a-b`, `bytes=a-` or
/// `bytes=-n`.
///
/// ```
/// use wharf_registry::params::parse_range;
/// use wharf_storage::ByteRange;
/// assert_eq!(parse_range("bytes=0-99"), Ok(ByteRange::Bounded(0, 99)));
/// assert_eq!(parse_range("bytes=-5"), Ok(ByteRange::Suffix(5)));
/// assert!(parse_range("bytes=0-1,5-6").is_err());
/// ```
pub fn parse_range(header: &str) -> Result<ByteRange, ParamError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| err("Range", "only the bytes unit is supported"))?;
    if spec.contains(',') {
        return Err(err("Range", "multiple ranges are not supported"));
    }
    let (a, b) = spec
        .trim()
        .split_once('-')
        .ok_or_else(|| err("Range", "expected start-end"))?;
    let num = |s: &str| -> Result<u64, ParamError> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("Range", format!("{s:?} is not a byte position")));
        }
        s.parse().map_err(|_| err("Range", "position out of range"))
    };
    match (a.trim(), b.trim()) {
        ("", "") => Err(err("Range", "empty range")),
        ("", n) => Ok(ByteRange::Suffix(num(n)?)),
        (s, "") => Ok(ByteRange::From(num(s)?)),
        (s, e) => {
            let (s, e) = (num(s)?, num(e)?);
            if e < s {
                return Err(err("Range", "end before start"));
            }
            Ok(ByteRange::Bounded(s, e))
        }
    }
}

/// Parses a chunk's `Content-Range` header: `start-end` as the OCI
/// specification writes it, or RFC 9110's `bytes start-end/total` or
/// `bytes start-end/*`. Returns the inclusive `(start, end)`.
///
/// ```
/// use wharf_registry::params::parse_content_range;
/// assert_eq!(parse_content_range("0-1023"), Ok((0, 1023)));
/// assert_eq!(parse_content_range("bytes 1024-2047/*"), Ok((1024, 2047)));
/// assert!(parse_content_range("5-2").is_err());
/// ```
pub fn parse_content_range(header: &str) -> Result<(u64, u64), ParamError> {
    let h = header.trim();
    let h = h
        .strip_prefix("bytes ")
        .or_else(|| h.strip_prefix("bytes="))
        .unwrap_or(h);
    let range = match h.split_once('/') {
        Some((range, total)) => {
            let total = total.trim();
            if total != "*" && (total.is_empty() || !total.bytes().all(|c| c.is_ascii_digit())) {
                return Err(err("Content-Range", "invalid total length"));
            }
            range
        }
        None => h,
    };
    let (a, b) = range
        .trim()
        .split_once('-')
        .ok_or_else(|| err("Content-Range", "expected start-end"))?;
    let num = |s: &str| -> Result<u64, ParamError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err(
                "Content-Range",
                format!("{s:?} is not a byte position"),
            ));
        }
        s.parse()
            .map_err(|_| err("Content-Range", "position out of range"))
    };
    let (start, end) = (num(a)?, num(b)?);
    if end < start {
        return Err(err("Content-Range", "end before start"));
    }
    Ok((start, end))
}

/// Whether an `Accept` header admits `media_type`. An absent or empty
/// header, and wildcards, admit everything.
pub fn accepts(accept: &[&str], media_type: &str) -> bool {
    let mut any = false;
    for value in accept {
        for item in value.split(',') {
            let mt = item.split(';').next().unwrap_or("").trim();
            if mt.is_empty() {
                continue;
            }
            any = true;
            if mt == "*/*" || mt.eq_ignore_ascii_case(media_type) {
                return true;
            }
            if let Some(prefix) = mt.strip_suffix("/*")
                && media_type
                    .split('/')
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case(prefix))
            {
                return true;
            }
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=5-"), Ok(ByteRange::From(5)));
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "items=0-1",
            "bytes=9-1",
            "bytes=0-99999999999999999999",
            "bytes=+1-2",
            "bytes=0-1,2-3",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Ok((0, 9)));
        assert_eq!(parse_content_range(" 3-3 "), Ok((3, 3)));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-b",
            "bytes 0-9/x",
            "1-0",
            "0-1-2",
            "0-99999999999999999999",
        ] {
            assert!(parse_content_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_pages() {
        let q = Query::parse(Some("n=0")).unwrap();
        assert_eq!(q.page_size(100), Ok(0));
        let q = Query::parse(Some("n=99999999999999999999999")).unwrap();
        assert!(q.page_size(100).is_err());
        let q = Query::parse(Some("n=18446744073709551615")).unwrap();
        assert_eq!(q.page_size(100), Ok(100));
        assert!(Query::parse(Some("n=-1")).unwrap().page_size(100).is_err());
        assert_eq!(Query::parse(None).unwrap().page_size(7), Ok(7));
        assert!(Query::parse(Some(&"a".repeat(5000))).is_err());
    }

    #[test]
    fn accept_negotiation() {
        let oci = "application/vnd.oci.image.index.v1+json";
        assert!(accepts(&[], oci));
        assert!(accepts(&["*/*"], oci));
        assert!(accepts(&["application/*"], oci));
        assert!(accepts(
            &["text/plain, application/vnd.oci.image.index.v1+json;q=0.5"],
            oci
        ));
        assert!(!accepts(
            &["application/vnd.docker.distribution.manifest.v2+json"],
            oci
        ));
        assert!(accepts(&["application/json", oci], oci));
    }
}
