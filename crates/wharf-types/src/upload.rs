//! Upload session identifiers.

use std::fmt;
use std::str::FromStr;

use crate::digest::truncate;
use crate::error::{ErrorCode, OciError};

/// A string is not an upload id Wharf could have issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upload id {0:?} is not valid; upload ids are lowercase hyphenated UUIDs")]
pub struct UploadIdError(String);

impl OciError for UploadIdError {
    fn code(&self) -> ErrorCode {
        // An id that cannot exist names no known upload.
        ErrorCode::BlobUploadUnknown
    }
}

/// The identifier of a blob upload session: a random (version 4) UUID in
/// lowercase hyphenated form, e.g. `0b6f8d2e-3c1a-4f7e-9a55-2d8f6b1e4c3a`.
///
/// Only that exact form parses, so an id taken from a URL is always safe to
/// use as a file or object name.
///
/// ```
/// use wharf_types::UploadId;
///
/// let id = UploadId::random();
/// assert_eq!(id.as_str().parse::<UploadId>().unwrap(), id);
/// assert!("../../etc/passwd".parse::<UploadId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UploadId {
    // Hyphenated lowercase UUID text; always ASCII.
    text: [u8; 36],
}

impl UploadId {
    /// A new random id.
    pub fn random() -> Self {
        Self::from_uuid(uuid::Uuid::new_v4())
    }

    fn from_uuid(u: uuid::Uuid) -> Self {
        let mut text = [0u8; 36];
        u.hyphenated().encode_lower(&mut text);
        UploadId { text }
    }

    /// Parses an id; only the lowercase hyphenated UUID form is accepted.
    pub fn parse(s: &str) -> Result<Self, UploadIdError> {
        let valid = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            });
        if !valid {
            return Err(UploadIdError(truncate(s)));
        }
        let mut text = [0u8; 36];
        text.copy_from_slice(s.as_bytes());
        Ok(UploadId { text })
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).unwrap_or_else(|_| unreachable!("upload ids are ASCII"))
    }
}

impl FromStr for UploadId {
    type Err = UploadIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UploadId::parse(s)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.as_str())
    }
}

impl serde::Serialize for UploadId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for UploadId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UploadId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_distinct_and_parse() {
        let a = UploadId::random();
        let b = UploadId::random();
        assert_ne!(a, b);
        assert_eq!(UploadId::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn rejects_everything_else() {
        let good = "0b6f8d2e-3c1a-4f7e-9a55-2d8f6b1e4c3a";
        assert!(UploadId::parse(good).is_ok());
        for bad in [
            "",
            "0B6F8D2E-3C1A-4F7E-9A55-2D8F6B1E4C3A",
            "0b6f8d2e3c1a4f7e9a552d8f6b1e4c3a",
            "0b6f8d2e-3c1a-4f7e-9a55-2d8f6b1e4c3",
            "0b6f8d2e-3c1a-4f7e-9a55-2d8f6b1e4c3a0",
            "../../../../../../../../../../../../",
            "0b6f8d2e/3c1a-4f7e-9a55-2d8f6b1e4c3a",
            "0b6f8d2e-3c1a-4f7e-9a55-2d8f6b1e4c3é",
        ] {
            assert!(UploadId::parse(bad).is_err(), "{bad}");
        }
    }
}
