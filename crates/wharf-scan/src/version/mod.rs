//! Version ordering per package ecosystem.
//!
//! An OSV advisory states its affected ranges in the versions of one
//! ecosystem, and only that ecosystem's own rules order them: `1.0~rc1` is
//! before `1.0` for dpkg, `1.0_rc1` before `1.0` for apk, `1.0rc1` before
//! `1.0` for PEP 440 and `1.0.0-rc.1` before `1.0.0` for SemVer. Each
//! ordering lives in its own submodule as a parsed type implementing
//! [`Ord`] and [`FromStr`]:
//!
//! | ecosystem                          | type              | rules |
//! |------------------------------------|-------------------|-------|
//! | [`Debian`], [`Ubuntu`]             | [`DpkgVersion`]   | deb-version(7) |
//! | [`Alpine`]                         | [`ApkVersion`]    | apk-tools' `version.c` |
//! | [`PyPI`]                           | [`Pep440Version`] | PEP 440 |
//! | [`Npm`], [`CratesIo`]              | [`SemVer`]        | SemVer 2.0 precedence |
//! | [`Go`]                             | [`GoVersion`]     | SemVer with `v`, as `golang.org/x/mod/semver` |
//!
//! [`compare`] parses and compares two strings in one call; [`parse`] gives
//! a [`Version`] to keep when one version is compared many times.
//!
//! Every parser rejects input longer than [`MAX_VERSION_LEN`] bytes, runs in
//! time linear in its input, never panics and never overflows: numbers of
//! any length are compared as digit strings.
//!
//! Equality follows each ordering, not the spelling: `1.0` equals `1.0.0`
//! for PEP 440 and `1.0-0` for dpkg, and build metadata is ignored by
//! SemVer. The parsed types therefore implement [`Eq`] but not `Hash`.
//!
//! OSV's `"0"` (meaning "since the first version") is a range sentinel, not
//! a version, and is not valid SemVer; callers handle it before comparing.
//!
//! # Examples
//!
//! ```
//! use std::cmp::Ordering;
//! use wharf_scan::version::{compare, Ecosystem};
//!
//! let debian: Ecosystem = "Debian:12".parse()?;
//! assert_eq!(compare(debian, "1.0~rc1-1", "1.0-1")?, Ordering::Less);
//! assert_eq!(compare(Ecosystem::PyPI, "1.0-1", "1.0.post1")?, Ordering::Equal);
//! assert_eq!(compare(Ecosystem::Alpine, "1.2.3_rc1-r0", "1.2.3-r0")?, Ordering::Less);
//! assert_eq!(
//!     compare(Ecosystem::Go, "v0.0.0-20200101000000-abcdef123456", "v0.1.0")?,
//!     Ordering::Less
//! );
//! assert!(compare(Ecosystem::CratesIo, "1.0", "1.0.0").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Debian`]: Ecosystem::Debian
//! [`Ubuntu`]: Ecosystem::Ubuntu
//! [`Alpine`]: Ecosystem::Alpine
//! [`PyPI`]: Ecosystem::PyPI
//! [`Npm`]: Ecosystem::Npm
//! [`CratesIo`]: Ecosystem::CratesIo
//! [`Go`]: Ecosystem::Go

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

pub mod apk;
mod decimal;
pub mod dpkg;
pub mod go;
pub mod pep440;
pub mod semver;

pub use apk::ApkVersion;
pub use dpkg::DpkgVersion;
pub use go::GoVersion;
pub use pep440::Pep440Version;
pub use semver::SemVer;

/// The longest version string accepted, in bytes.
///
/// Real versions are far shorter; the limit bounds the work done on
/// hostile input from image layers and advisory files.
pub const MAX_VERSION_LEN: usize = 256;

/// How much of a rejected input an error keeps, in characters.
const ECHO_LEN: usize = 64;

/// A package ecosystem, named as in OSV's `affected[].package.ecosystem`.
///
/// Parsing accepts OSV's release suffixes (`Debian:12`, `Alpine:v3.19`,
/// `Ubuntu:22.04:LTS`) and drops them: the release does not change how
/// versions are ordered. [`Ecosystem::from_osv`] keeps the suffix.
///
/// ```
/// use wharf_scan::version::Ecosystem;
///
/// assert_eq!("Alpine:v3.19".parse::<Ecosystem>()?, Ecosystem::Alpine);
/// assert_eq!("crates.io".parse::<Ecosystem>()?, Ecosystem::CratesIo);
/// assert_eq!(Ecosystem::Npm.to_string(), "npm");
/// # Ok::<(), wharf_scan::version::UnknownEcosystem>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Ecosystem {
    /// Debian packages (`Debian`), ordered by dpkg.
    Debian,
    /// Ubuntu packages (`Ubuntu`), ordered by dpkg.
    Ubuntu,
    /// Alpine packages (`Alpine`), ordered by apk.
    Alpine,
    /// Python packages (`PyPI`), ordered by PEP 440.
    PyPI,
    /// npm packages (`npm`), ordered by SemVer 2.0.
    Npm,
    /// Rust crates (`crates.io`), ordered by SemVer 2.0.
    CratesIo,
    /// Go modules (`Go`), ordered by SemVer 2.0 with a `v` prefix.
    Go,
}

impl Ecosystem {
    /// Every ecosystem, in declaration order.
    pub const ALL: [Ecosystem; 7] = [
        Ecosystem::Debian,
        Ecosystem::Ubuntu,
        Ecosystem::Alpine,
        Ecosystem::PyPI,
        Ecosystem::Npm,
        Ecosystem::CratesIo,
        Ecosystem::Go,
    ];

    /// The OSV name, without any release suffix.
    pub const fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
        }
    }

    /// Parses an OSV ecosystem string, keeping its release suffix.
    ///
    /// ```
    /// use wharf_scan::version::Ecosystem;
    ///
    /// assert_eq!(Ecosystem::from_osv("Debian:12")?, (Ecosystem::Debian, Some("12")));
    /// assert_eq!(Ecosystem::from_osv("Ubuntu:Pro:18.04:LTS")?, (Ecosystem::Ubuntu, Some("Pro:18.04:LTS")));
    /// assert_eq!(Ecosystem::from_osv("PyPI")?, (Ecosystem::PyPI, None));
    /// # Ok::<(), wharf_scan::version::UnknownEcosystem>(())
    /// ```
    pub fn from_osv(s: &str) -> Result<(Ecosystem, Option<&str>), UnknownEcosystem> {
        let (name, release) = match s.split_once(':') {
            Some((name, release)) => (name, Some(release)),
            None => (s, None),
        };
        // OSV spells names case-sensitively; accepting other cases costs
        // nothing and no two supported names differ only by case.
        Ecosystem::ALL
            .into_iter()
            .find(|eco| eco.as_str().eq_ignore_ascii_case(name))
            .map(|eco| (eco, release))
            .ok_or_else(|| UnknownEcosystem(echo(s)))
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ecosystem {
    type Err = UnknownEcosystem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ecosystem::from_osv(s).map(|(eco, _)| eco)
    }
}

/// An ecosystem name this module does not order versions for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported ecosystem {0:?}: expected Debian, Ubuntu, Alpine, PyPI, npm, crates.io or Go")]
pub struct UnknownEcosystem(String);

impl UnknownEcosystem {
    /// The rejected name (shortened if it was long).
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// A version string that is not valid in its ecosystem.
///
/// ```
/// use wharf_scan::version::{compare, Ecosystem, VersionErrorKind};
///
/// let err = compare(Ecosystem::Npm, "1.2.3", "1.02.3").unwrap_err();
/// assert_eq!(err.ecosystem(), Ecosystem::Npm);
/// assert_eq!(err.input(), "1.02.3");
/// assert!(matches!(err.kind(), VersionErrorKind::Invalid { position: 2, .. }));
/// assert_eq!(
///     err.to_string(),
///     r#"invalid npm version "1.02.3": number with a leading zero at byte 2"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {ecosystem} version {input:?}: {kind}")]
pub struct VersionError {
    ecosystem: Ecosystem,
    input: String,
    kind: VersionErrorKind,
}

/// What was wrong with a version string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionErrorKind {
    /// The string was empty or only whitespace.
    #[error("empty version")]
    Empty,
    /// The string was longer than [`MAX_VERSION_LEN`].
    #[error("{len} bytes long, over the limit of {max}")]
    TooLong {
        /// The input's length in bytes.
        len: usize,
        /// The limit, [`MAX_VERSION_LEN`].
        max: usize,
    },
    /// The string does not follow the ecosystem's syntax.
    #[error("{reason} at byte {position}")]
    Invalid {
        /// Byte offset in the input where parsing failed.
        position: usize,
        /// What was expected or found there.
        reason: &'static str,
    },
}

impl VersionError {
    /// The ecosystem whose rules the input broke.
    pub fn ecosystem(&self) -> Ecosystem {
        self.ecosystem
    }

    /// The rejected input, shortened to its first 64 characters if longer.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong.
    pub fn kind(&self) -> VersionErrorKind {
        self.kind
    }

    fn new(ecosystem: Ecosystem, input: &str, kind: VersionErrorKind) -> Self {
        VersionError {
            ecosystem,
            input: echo(input),
            kind,
        }
    }

    pub(crate) fn invalid(
        ecosystem: Ecosystem,
        input: &str,
        position: usize,
        reason: &'static str,
    ) -> Self {
        VersionError::new(
            ecosystem,
            input,
            VersionErrorKind::Invalid { position, reason },
        )
    }

    pub(crate) fn empty(ecosystem: Ecosystem, input: &str) -> Self {
        VersionError::new(ecosystem, input, VersionErrorKind::Empty)
    }

    /// The same error reported against another ecosystem sharing the rules
    /// (Ubuntu for dpkg, npm for SemVer).
    fn with_ecosystem(mut self, ecosystem: Ecosystem) -> Self {
        self.ecosystem = ecosystem;
        self
    }
}

/// Rejects input over [`MAX_VERSION_LEN`] before any parsing.
pub(crate) fn check_len(ecosystem: Ecosystem, input: &str) -> Result<(), VersionError> {
    if input.len() > MAX_VERSION_LEN {
        return Err(VersionError::new(
            ecosystem,
            input,
            VersionErrorKind::TooLong {
                len: input.len(),
                max: MAX_VERSION_LEN,
            },
        ));
    }
    Ok(())
}

/// At most [`ECHO_LEN`] characters of `s`, for error messages.
fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// A version parsed by its ecosystem's rules.
///
/// Versions of the same kind compare by that kind's ordering; versions of
/// different kinds are unordered (`partial_cmp` gives `None`).
///
/// ```
/// use wharf_scan::version::{parse, Ecosystem};
///
/// let fixed = parse(Ecosystem::Alpine, "1.36.1-r2")?;
/// assert!(parse(Ecosystem::Alpine, "1.36.1-r1")? < fixed);
/// assert!(parse(Ecosystem::Alpine, "1.36.1_p1-r0")? > fixed);
/// # Ok::<(), wharf_scan::version::VersionError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Version {
    /// Debian or Ubuntu.
    Dpkg(DpkgVersion),
    /// Alpine.
    Apk(ApkVersion),
    /// PyPI.
    Pep440(Pep440Version),
    /// npm or crates.io.
    SemVer(SemVer),
    /// Go.
    Go(GoVersion),
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Version::Dpkg(a), Version::Dpkg(b)) => Some(a.cmp(b)),
            (Version::Apk(a), Version::Apk(b)) => Some(a.cmp(b)),
            (Version::Pep440(a), Version::Pep440(b)) => Some(a.cmp(b)),
            (Version::SemVer(a), Version::SemVer(b)) => Some(a.cmp(b)),
            (Version::Go(a), Version::Go(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Dpkg(v) => v.fmt(f),
            Version::Apk(v) => v.fmt(f),
            Version::Pep440(v) => v.fmt(f),
            Version::SemVer(v) => v.fmt(f),
            Version::Go(v) => v.fmt(f),
        }
    }
}

/// Parses `s` as a version of `ecosystem`.
pub fn parse(ecosystem: Ecosystem, s: &str) -> Result<Version, VersionError> {
    let parsed = match ecosystem {
        Ecosystem::Debian | Ecosystem::Ubuntu => s.parse().map(Version::Dpkg),
        Ecosystem::Alpine => s.parse().map(Version::Apk),
        Ecosystem::PyPI => s.parse().map(Version::Pep440),
        Ecosystem::Npm => SemVer::parse_npm(s).map(Version::SemVer),
        Ecosystem::CratesIo => s.parse().map(Version::SemVer),
        Ecosystem::Go => s.parse().map(Version::Go),
    };
    parsed.map_err(|err| err.with_ecosystem(ecosystem))
}

/// Compares two versions by `ecosystem`'s ordering.
///
/// Fails if either string is not a valid version there; the error names
/// the string at fault.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    fn by<T: Ord>(
        ecosystem: Ecosystem,
        a: &str,
        b: &str,
        parse: fn(&str) -> Result<T, VersionError>,
    ) -> Result<Ordering, VersionError> {
        let a = parse(a).map_err(|err| err.with_ecosystem(ecosystem))?;
        let b = parse(b).map_err(|err| err.with_ecosystem(ecosystem))?;
        Ok(a.cmp(&b))
    }
    match ecosystem {
        Ecosystem::Debian | Ecosystem::Ubuntu => by(ecosystem, a, b, DpkgVersion::from_str),
        Ecosystem::Alpine => by(ecosystem, a, b, ApkVersion::from_str),
        Ecosystem::PyPI => by(ecosystem, a, b, Pep440Version::from_str),
        Ecosystem::Npm => by(ecosystem, a, b, SemVer::parse_npm),
        Ecosystem::CratesIo => by(ecosystem, a, b, SemVer::from_str),
        Ecosystem::Go => by(ecosystem, a, b, GoVersion::from_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ecosystem_names_round_trip() {
        for eco in Ecosystem::ALL {
            assert_eq!(eco.to_string().parse::<Ecosystem>(), Ok(eco));
        }
        for (name, eco, release) in [
            ("Debian", Ecosystem::Debian, None),
            ("Debian:11", Ecosystem::Debian, Some("11")),
            ("Ubuntu:22.04:LTS", Ecosystem::Ubuntu, Some("22.04:LTS")),
            (
                "Ubuntu:Pro:18.04:LTS",
                Ecosystem::Ubuntu,
                Some("Pro:18.04:LTS"),
            ),
            ("Alpine:v3.19", Ecosystem::Alpine, Some("v3.19")),
            ("PyPI", Ecosystem::PyPI, None),
            ("pypi", Ecosystem::PyPI, None),
            ("npm", Ecosystem::Npm, None),
            ("crates.io", Ecosystem::CratesIo, None),
            ("Go", Ecosystem::Go, None),
        ] {
            assert_eq!(Ecosystem::from_osv(name), Ok((eco, release)), "{name}");
        }
        for name in ["", "Maven", "RubyGems", "Debian12", "crates", ":Debian"] {
            let err = name.parse::<Ecosystem>().unwrap_err();
            assert_eq!(err.name(), name);
        }
    }

    #[test]
    fn compare_dispatches_to_each_ordering() {
        let cases = [
            (Ecosystem::Debian, "1:1.0", "2.0", Ordering::Greater),
            (Ecosystem::Ubuntu, "1.0~rc1", "1.0", Ordering::Less),
            (Ecosystem::Alpine, "1.0_rc1", "1.0", Ordering::Less),
            (Ecosystem::PyPI, "1.0rc1", "1.0", Ordering::Less),
            (Ecosystem::PyPI, "1.0", "1.0.0", Ordering::Equal),
            (Ecosystem::Npm, "v1.0.0", "1.0.0", Ordering::Equal),
            (Ecosystem::CratesIo, "1.0.0-alpha", "1.0.0", Ordering::Less),
            (
                Ecosystem::Go,
                "v2.0.0+incompatible",
                "2.0.0",
                Ordering::Equal,
            ),
        ];
        for (eco, a, b, expected) in cases {
            assert_eq!(compare(eco, a, b), Ok(expected), "{eco} {a} {b}");
            assert_eq!(compare(eco, b, a), Ok(expected.reverse()), "{eco} {b} {a}");
            let (pa, pb) = (parse(eco, a).unwrap(), parse(eco, b).unwrap());
            assert_eq!(pa.partial_cmp(&pb), Some(expected));
        }
    }

    #[test]
    fn errors_name_the_ecosystem_and_the_input() {
        let err = compare(Ecosystem::Ubuntu, "1.0", "1.0 beta").unwrap_err();
        assert_eq!(err.ecosystem(), Ecosystem::Ubuntu);
        assert_eq!(err.input(), "1.0 beta");
        assert!(
            err.to_string()
                .starts_with("invalid Ubuntu version \"1.0 beta\": ")
        );

        let err = compare(Ecosystem::Npm, "", "1.0.0").unwrap_err();
        assert_eq!(err.kind(), VersionErrorKind::Empty);

        let err = parse(Ecosystem::CratesIo, "v1.0.0").unwrap_err();
        assert_eq!(err.ecosystem(), Ecosystem::CratesIo);
    }

    #[test]
    fn over_long_input_is_rejected_everywhere() {
        let long = format!("1.{}", "0".repeat(MAX_VERSION_LEN));
        let at_limit = &long[..MAX_VERSION_LEN];
        for eco in Ecosystem::ALL {
            let err = parse(eco, &long).unwrap_err();
            assert_eq!(
                err.kind(),
                VersionErrorKind::TooLong {
                    len: MAX_VERSION_LEN + 2,
                    max: MAX_VERSION_LEN
                }
            );
            assert_eq!(err.input().chars().count(), ECHO_LEN + 1);
            assert!(err.to_string().contains("over the limit of 256"), "{err}");
            // Exactly at the limit is still parsed (and rejected only if
            // the syntax is wrong, as for SemVer here).
            let at = parse(eco, at_limit);
            assert!(
                !matches!(at, Err(ref e) if matches!(e.kind(), VersionErrorKind::TooLong { .. })),
                "{eco}"
            );
        }
    }

    #[test]
    fn versions_of_different_kinds_are_unordered() {
        let a = parse(Ecosystem::Debian, "1.0").unwrap();
        let b = parse(Ecosystem::PyPI, "1.0").unwrap();
        assert_eq!(a.partial_cmp(&b), None);
        assert_ne!(a, b);
    }

    #[test]
    fn echo_is_char_boundary_safe() {
        let s = "é".repeat(100);
        let err = parse(Ecosystem::PyPI, &s).unwrap_err();
        assert_eq!(err.input().chars().count(), ECHO_LEN + 1);
    }

    proptest! {
        #[test]
        fn compare_never_panics(a in ".*", b in ".*") {
            for eco in Ecosystem::ALL {
                let _ = compare(eco, &a, &b);
            }
        }

        #[test]
        fn compare_never_panics_on_version_like_strings(
            a in "[0-9a-zA-Z.:~+_!-]{0,40}",
            b in "[0-9vVrR.:~+_ -]{0,40}",
        ) {
            for eco in Ecosystem::ALL {
                let _ = compare(eco, &a, &b);
            }
        }

        #[test]
        fn compare_never_panics_on_long_inputs(
            a in "[0-9a-z.~+:_-]{200,300}",
            b in "[0-9]{1,300}",
        ) {
            for eco in Ecosystem::ALL {
                let _ = compare(eco, &a, &b);
                let _ = compare(eco, &b, &b);
            }
        }

        #[test]
        fn compare_agrees_with_parse(
            a in "v?[0-9]{1,2}(\\.[0-9]{1,2}){0,3}([-_.~]?(a|b|rc|alpha|pre|p|r)[0-9]?)?",
            b in "v?[0-9]{1,2}(\\.[0-9]{1,2}){0,3}([-_.~]?(a|b|rc|alpha|pre|p|r)[0-9]?)?",
        ) {
            for eco in Ecosystem::ALL {
                let by_compare = compare(eco, &a, &b).ok();
                let by_parse = match (parse(eco, &a), parse(eco, &b)) {
                    (Ok(pa), Ok(pb)) => pa.partial_cmp(&pb),
                    _ => None,
                };
                prop_assert_eq!(by_compare, by_parse, "{} {} {}", eco, a, b);
                if let Some(order) = by_compare {
                    prop_assert_eq!(compare(eco, &b, &a).ok(), Some(order.reverse()));
                }
            }
        }

        #[test]
        fn ecosystem_parsing_never_panics(s in ".*") {
            let _ = Ecosystem::from_osv(&s);
        }
    }
}
