//! Content digests: `algorithm:hex`, as defined by the OCI image specification.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ErrorCode, OciError};

/// A hash algorithm that Wharf can compute and verify.
///
/// `sha256` is the registry default; `sha512` is supported for clients that
/// ask for it. Every other algorithm is rejected with
/// [`DigestError::UnsupportedAlgorithm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, 64 lowercase hex characters.
    Sha256,
    /// SHA-512, 128 lowercase hex characters.
    Sha512,
}

impl Algorithm {
    /// The name used in the digest string (`sha256`, `sha512`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex characters in an encoded digest of this algorithm.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `:` separates the algorithm from the encoded hash.
    #[error("digest {0:?} has no ':' between algorithm and hash")]
    MissingSeparator(String),
    /// The algorithm part does not follow the OCI grammar.
    #[error("digest algorithm {0:?} is not well-formed")]
    MalformedAlgorithm(String),
    /// The algorithm is well-formed but not one Wharf supports.
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    /// The encoded part has the wrong length for its algorithm.
    #[error("{algorithm} digest must have {expected} hex characters, found {found}")]
    WrongLength {
        /// The algorithm named by the digest.
        algorithm: Algorithm,
        /// The length the algorithm requires.
        expected: usize,
        /// The length that was given.
        found: usize,
    },
    /// The encoded part contains something other than lowercase hex.
    #[error("{algorithm} digest must be lowercase hex, found {found:?} at position {position}")]
    InvalidCharacter {
        /// The algorithm named by the digest.
        algorithm: Algorithm,
        /// The offending character.
        found: char,
        /// Its byte position in the encoded part.
        position: usize,
    },
}

impl OciError for DigestError {
    fn code(&self) -> ErrorCode {
        ErrorCode::DigestInvalid
    }
}

/// A validated content digest such as
/// `sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`.
///
/// Parsing accepts exactly the canonical form: a supported algorithm, a colon,
/// and lowercase hex of the algorithm's length. `Display` gives the same
/// string back, so a digest can be used in paths and headers as is.
///
/// ```
/// use wharf_types::{Algorithm, Digest};
///
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
///     .parse()
///     .unwrap();
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
/// assert_eq!(d, Digest::compute(Algorithm::Sha256, b""));
/// assert!("sha256:E3B0".parse::<Digest>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    // Invariant: `algorithm.as_str() + ":" + lowercase hex of algorithm.hex_len()`.
    repr: Box<str>,
    algorithm: Algorithm,
}

impl Digest {
    /// Parses a digest string. Same as [`str::parse`].
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((alg, encoded)) = s.split_once(':') else {
            return Err(DigestError::MissingSeparator(truncate(s)));
        };
        if !is_algorithm_grammar(alg) {
            return Err(DigestError::MalformedAlgorithm(truncate(alg)));
        }
        let Some(algorithm) = Algorithm::from_name(alg) else {
            return Err(DigestError::UnsupportedAlgorithm(truncate(alg)));
        };
        if encoded.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hex_len(),
                found: encoded.len(),
            });
        }
        if let Some((position, found)) = encoded
            .char_indices()
            .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::InvalidCharacter {
                algorithm,
                found,
                position,
            });
        }
        Ok(Digest {
            repr: s.into(),
            algorithm,
        })
    }

    /// Builds a digest from raw hash output. Panics are impossible: a
    /// mismatched length is reported as [`DigestError::WrongLength`].
    pub fn from_bytes(algorithm: Algorithm, hash: &[u8]) -> Result<Self, DigestError> {
        if hash.len() * 2 != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hex_len(),
                found: hash.len() * 2,
            });
        }
        let mut repr = String::with_capacity(algorithm.as_str().len() + 1 + algorithm.hex_len());
        repr.push_str(algorithm.as_str());
        repr.push(':');
        repr.push_str(&hex::encode(hash));
        Ok(Digest {
            repr: repr.into(),
            algorithm,
        })
    }

    /// Hashes `data` in one go.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut d = crate::Digester::new(algorithm);
        d.update(data);
        d.finish()
    }

    /// SHA-256 of `data`, the registry's default algorithm.
    pub fn sha256(data: &[u8]) -> Self {
        Self::compute(Algorithm::Sha256, data)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.repr[self.algorithm.as_str().len() + 1..]
    }

    /// The full `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.repr
    }
}

/// The OCI grammar for an algorithm: `[a-z0-9]+([+._-][a-z0-9]+)*`.
fn is_algorithm_grammar(s: &str) -> bool {
    let mut prev_sep = true; // the first character must be a component character
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !prev_sep
}

/// Error messages echo client input; keep them short.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.repr)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.repr
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.repr)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // Every digest Wharf accepts is also valid for oci-spec.
        oci_spec::image::Digest::from_str(d.as_str())
            .unwrap_or_else(|_| unreachable!("wharf digests are a subset of oci-spec digests"))
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_canonical_sha256_and_sha512() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY);
        let s512 = Digest::compute(Algorithm::Sha512, b"abc");
        assert_eq!(
            s512.as_str(),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(Digest::parse(s512.as_str()).unwrap(), s512);
    }

    #[test]
    fn rejects_near_misses_with_typed_errors() {
        let upper = EMPTY.replace('e', "E");
        assert!(matches!(
            Digest::parse(&upper),
            Err(DigestError::InvalidCharacter { found: 'E', .. })
        ));
        assert!(matches!(
            Digest::parse(&EMPTY[..EMPTY.len() - 1]),
            Err(DigestError::WrongLength {
                expected: 64,
                found: 63,
                ..
            })
        ));
        assert!(matches!(
            Digest::parse(&format!("{EMPTY}0")),
            Err(DigestError::WrongLength { found: 65, .. })
        ));
        assert!(matches!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::UnsupportedAlgorithm(a)) if a == "md5"
        ));
        assert!(matches!(
            Digest::parse("sha256"),
            Err(DigestError::MissingSeparator(_))
        ));
        for alg in ["", "SHA256", "sha256+", "-sha", "a..b", "../x"] {
            assert!(
                matches!(
                    Digest::parse(&format!("{alg}:abc")),
                    Err(DigestError::MalformedAlgorithm(_))
                ),
                "{alg}"
            );
        }
        assert!(Digest::parse("sha256:../../../../etc/passwd").is_err());
        assert!(Digest::parse(&EMPTY.replace("sha256:", "sha256%3A")).is_err());
    }

    #[test]
    fn well_formed_other_algorithms_are_unsupported_not_malformed() {
        assert!(matches!(
            Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn long_inputs_are_truncated_in_errors() {
        let long = "x".repeat(10_000);
        let err = Digest::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::parse(EMPTY).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn converts_to_and_from_oci_spec() {
        let d = Digest::parse(EMPTY).unwrap();
        let o: oci_spec::image::Digest = (&d).into();
        assert_eq!(o.to_string(), EMPTY);
        assert_eq!(Digest::try_from(&o).unwrap(), d);
    }

    #[test]
    fn from_bytes_checks_length() {
        assert!(Digest::from_bytes(Algorithm::Sha256, &[0; 31]).is_err());
        let d = Digest::from_bytes(Algorithm::Sha256, &[0xab; 32]).unwrap();
        assert_eq!(d.hex(), "ab".repeat(32));
    }
}
