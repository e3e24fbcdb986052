//! References: a tag or a digest, as in `/v2/<name>/manifests/<reference>`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::error::{ErrorCode, OciError};
use crate::tag::{Tag, TagError};

/// A manifest reference: a [`Tag`] or a [`Digest`].
///
/// A string containing `:` is a digest (tags cannot contain `:`); anything
/// else is a tag.
///
/// ```
/// use wharf_types::Reference;
///
/// assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
/// let r: Reference = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
///     .parse()
///     .unwrap();
/// assert!(r.as_digest().is_some());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// A tag.
    Tag(Tag),
    /// A digest.
    Digest(Digest),
}

/// Why a string is not a valid [`Reference`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Looked like a digest but was not valid.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Looked like a tag but was not valid.
    #[error(transparent)]
    Tag(#[from] TagError),
}

impl OciError for ReferenceError {
    fn code(&self) -> ErrorCode {
        match self {
            ReferenceError::Digest(e) => e.code(),
            // A malformed tag in a manifest URL: the specification's answer is
            // MANIFEST_INVALID on push and MANIFEST_UNKNOWN on pull; callers
            // that know the direction pick; TAG_INVALID is the neutral code.
            ReferenceError::Tag(e) => e.code(),
        }
    }
}

impl Reference {
    /// Parses a reference.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }

    /// The digest, when this is one.
    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }

    /// The tag, when this is one.
    pub fn as_tag(&self) -> Option<&Tag> {
        match self {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        }
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t.as_str(),
            Reference::Digest(d) => d.as_str(),
        }
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Self {
        Reference::Tag(t)
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Self {
        Reference::Digest(d)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => fmt::Debug::fmt(t, f),
            Reference::Digest(d) => fmt::Debug::fmt(d, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_colon() {
        assert!(matches!(
            Reference::parse("v1"),
            Ok(Reference::Tag(t)) if t.as_str() == "v1"
        ));
        assert!(matches!(
            Reference::parse("sha256:abc"),
            Err(ReferenceError::Digest(DigestError::WrongLength { .. }))
        ));
        assert!(matches!(
            Reference::parse("bad/tag"),
            Err(ReferenceError::Tag(_))
        ));
        assert_eq!(
            Reference::parse("bad/tag").unwrap_err().code(),
            ErrorCode::TagInvalid
        );
        assert_eq!(
            Reference::parse("md5:00").unwrap_err().code(),
            ErrorCode::DigestInvalid
        );
    }
}
