//! Tags.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::truncate;
use crate::error::{ErrorCode, OciError};

/// Why a string is not a valid [`Tag`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// The tag is empty.
    #[error("tag is empty")]
    Empty,
    /// More than [`Tag::MAX_LEN`] characters.
    #[error("tag is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character the grammar does not allow at that position.
    #[error(
        "tag {tag:?} contains {found:?} at position {position}; tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}"
    )]
    InvalidCharacter {
        /// The tag (possibly truncated).
        tag: String,
        /// The offending character.
        found: char,
        /// Its byte position.
        position: usize,
    },
}

impl OciError for TagError {
    fn code(&self) -> ErrorCode {
        ErrorCode::TagInvalid
    }
}

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
///
/// Tags sort byte-wise (the order the tags list uses).
///
/// ```
/// use wharf_types::Tag;
///
/// assert!("v1.2.3-rc_1".parse::<Tag>().is_ok());
/// assert!(".hidden".parse::<Tag>().is_err());
/// assert!("a".repeat(129).parse::<Tag>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(Box<str>);

impl Tag {
    /// The longest tag accepted.
    pub const MAX_LEN: usize = 128;

    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Self, TagError> {
        if s.is_empty() {
            return Err(TagError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(TagError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        for (position, found) in s.char_indices() {
            let ok = match found {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => true,
                '.' | '-' => position > 0,
                _ => false,
            };
            if !ok {
                return Err(TagError::InvalidCharacter {
                    tag: truncate(s),
                    found,
                    position,
                });
            }
        }
        Ok(Tag(s.into()))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Tag::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in ["latest", "_", "A", "0", "v1.0", "a-b_c.d", &"x".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Tag::parse(""), Err(TagError::Empty));
        assert!(matches!(
            Tag::parse(&"x".repeat(129)),
            Err(TagError::TooLong { len: 129, .. })
        ));
        for (bad, c) in [
            (".a", '.'),
            ("-a", '-'),
            ("a/b", '/'),
            ("a:b", ':'),
            ("a b", ' '),
            ("a@b", '@'),
            ("tâg", 'â'),
        ] {
            assert!(
                matches!(Tag::parse(bad), Err(TagError::InvalidCharacter { found, .. }) if found == c),
                "{bad}"
            );
        }
    }

    #[test]
    fn orders_bytewise() {
        let mut tags: Vec<Tag> = ["b", "B", "a", "_", "1"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        tags.sort();
        let sorted: Vec<_> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(sorted, ["1", "B", "_", "a", "b"]);
    }
}
