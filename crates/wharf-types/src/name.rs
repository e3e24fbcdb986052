//! Repository names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::truncate;
use crate::error::{ErrorCode, OciError};

/// Why a string is not a valid [`RepositoryName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("repository name is empty")]
    Empty,
    /// The name is longer than [`RepositoryName::MAX_LEN`].
    #[error("repository name is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path component is empty (leading, trailing or doubled `/`).
    #[error("repository name {name:?} has an empty path component")]
    EmptyComponent {
        /// The name (possibly truncated).
        name: String,
    },
    /// A character outside `[a-z0-9._/-]`.
    #[error(
        "repository name {name:?} contains {found:?} at position {position}; only lowercase letters, digits and . _ - / are allowed"
    )]
    InvalidCharacter {
        /// The name (possibly truncated).
        name: String,
        /// The offending character.
        found: char,
        /// Its byte position.
        position: usize,
    },
    /// A separator sequence that the grammar does not allow (`..`, `_-`,
    /// `___`, or a separator at the start or end of a component).
    #[error(
        "repository name {name:?} has an invalid separator at position {position}; components are joined by '.', '_', '__' or dashes"
    )]
    InvalidSeparator {
        /// The name (possibly truncated).
        name: String,
        /// Byte position where the bad sequence starts.
        position: usize,
    },
}

impl OciError for NameError {
    fn code(&self) -> ErrorCode {
        ErrorCode::NameInvalid
    }
}

/// A validated repository name such as `library/alpine` or `team-a/app.web`.
///
/// The grammar is the distribution specification's
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// checked in one linear pass (no regular expression, so no backtracking).
/// The total length is limited to [`RepositoryName::MAX_LEN`] characters.
///
/// ```
/// use wharf_types::RepositoryName;
///
/// let name: RepositoryName = "team-a/web__app/v1.2".parse().unwrap();
/// assert_eq!(name.components().count(), 3);
/// for bad in ["", "Upper", "a//b", "a/", "../etc", "a..b", "a_-b", "a___b"] {
///     assert!(bad.parse::<RepositoryName>().is_err(), "{bad}");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryName(Box<str>);

impl RepositoryName {
    /// The longest name accepted. Many clients limit `host/name` to 255
    /// characters, so longer names could be stored but not pulled.
    pub const MAX_LEN: usize = 255;

    /// Parses and validates a name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        validate(s)?;
        Ok(RepositoryName(s.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated path components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > RepositoryName::MAX_LEN {
        return Err(NameError::TooLong {
            len: s.len(),
            max: RepositoryName::MAX_LEN,
        });
    }
    let name = || truncate(s);
    // State: position where the current run of separators started, and the
    // separator character seen in it (all characters in one run must be
    // '-', or the run must be '.', '_' or '__').
    let mut component_start = true;
    let mut sep_start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | '0'..='9' => {
                if let Some(start) = sep_start.take()
                    && !is_valid_separator(&s[start..i])
                {
                    return Err(NameError::InvalidSeparator {
                        name: name(),
                        position: start,
                    });
                }
                component_start = false;
            }
            '.' | '_' | '-' => {
                if component_start {
                    return Err(NameError::InvalidSeparator {
                        name: name(),
                        position: i,
                    });
                }
                sep_start.get_or_insert(i);
            }
            '/' => {
                if component_start {
                    return Err(NameError::EmptyComponent { name: name() });
                }
                if let Some(start) = sep_start {
                    return Err(NameError::InvalidSeparator {
                        name: name(),
                        position: start,
                    });
                }
                component_start = true;
            }
            found => {
                return Err(NameError::InvalidCharacter {
                    name: name(),
                    found,
                    position: i,
                });
            }
        }
    }
    if component_start {
        return Err(NameError::EmptyComponent { name: name() });
    }
    if let Some(start) = sep_start {
        return Err(NameError::InvalidSeparator {
            name: name(),
            position: start,
        });
    }
    Ok(())
}

fn is_valid_separator(run: &str) -> bool {
    matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-')
}

impl FromStr for RepositoryName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepositoryName::parse(s)
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({})", self.0)
    }
}

impl AsRef<str> for RepositoryName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for RepositoryName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RepositoryName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        RepositoryName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        for ok in [
            "a",
            "0",
            "library/alpine",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a/b/c/d/e/f/g",
            "v2/blobs/manifests/tags",
            "x1.y2_z3__w4-v5--u6",
        ] {
            assert_eq!(RepositoryName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_with_typed_errors() {
        assert_eq!(RepositoryName::parse(""), Err(NameError::Empty));
        assert!(matches!(
            RepositoryName::parse("A"),
            Err(NameError::InvalidCharacter { found: 'A', .. })
        ));
        assert!(matches!(
            RepositoryName::parse("a b"),
            Err(NameError::InvalidCharacter { found: ' ', .. })
        ));
        assert!(matches!(
            RepositoryName::parse("a%2fb"),
            Err(NameError::InvalidCharacter { found: '%', .. })
        ));
        for empty in ["/a", "a/", "a//b", "/"] {
            assert!(
                matches!(
                    RepositoryName::parse(empty),
                    Err(NameError::EmptyComponent { .. })
                ),
                "{empty}"
            );
        }
        for sep in [
            ".a", "a.", "a..b", "a._b", "a___b", "a_-b", "a-_b", "a-.b", "a/.b", "a./b", "..",
            "a/../b", "-a", "a-",
        ] {
            assert!(
                matches!(
                    RepositoryName::parse(sep),
                    Err(NameError::InvalidSeparator { .. })
                ),
                "{sep}: {:?}",
                RepositoryName::parse(sep)
            );
        }
        assert!(matches!(
            RepositoryName::parse("é"),
            Err(NameError::InvalidCharacter { found: 'é', .. })
        ));
    }

    #[test]
    fn length_limit() {
        let max = "a".repeat(RepositoryName::MAX_LEN);
        assert!(RepositoryName::parse(&max).is_ok());
        assert_eq!(
            RepositoryName::parse(&format!("{max}a")),
            Err(NameError::TooLong { len: 256, max: 255 })
        );
    }

    #[test]
    fn pathological_input_is_linear() {
        // A classic catastrophic-backtracking input for naive regexes.
        let evil = format!("{}!", "a-".repeat(100));
        assert!(RepositoryName::parse(&evil[..evil.len().min(255)]).is_err());
        let huge = "a".repeat(10_000_000);
        assert!(matches!(
            RepositoryName::parse(&huge),
            Err(NameError::TooLong { .. })
        ));
    }
}
