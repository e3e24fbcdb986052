//! Semantic versions (SemVer 2.0.0), as npm and crates.io order them.
//!
//! `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`, numbers without leading
//! zeros. Precedence is semver.org's section 11: the three numbers by
//! value, then a version with a pre-release is lower than the same version
//! without, and pre-releases compare identifier by identifier (numbers by
//! value, below any alphanumeric identifier, which compare as ASCII; more
//! identifiers is higher when all before are equal). Build metadata is
//! kept but never affects the order, so `1.0.0+a == 1.0.0+b`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::decimal::{Decimal, digit_run_end};
use super::{Ecosystem, VersionError, check_len};

/// A SemVer 2.0.0 version.
///
/// ```
/// use wharf_scan::version::SemVer;
///
/// // semver.org's precedence example.
/// let ascending = [
///     "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
///     "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0",
/// ];
/// for pair in ascending.windows(2) {
///     assert!(pair[0].parse::<SemVer>()? < pair[1].parse::<SemVer>()?);
/// }
/// assert_eq!("1.0.0+build.1".parse::<SemVer>()?, "1.0.0".parse()?);
/// assert!(SemVer::parse_npm(" v1.2.3 ").is_ok());
/// assert!("v1.2.3".parse::<SemVer>().is_err());
/// # Ok::<(), wharf_scan::version::VersionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SemVer {
    major: Decimal,
    minor: Decimal,
    patch: Decimal,
    pre: Vec<Identifier>,
    build: Vec<String>,
}

/// A pre-release identifier. Numeric identifiers sort first (declaration
/// order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    Numeric(Decimal),
    AlphaNumeric(String),
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Numeric(n) => n.fmt(f),
            Identifier::AlphaNumeric(s) => f.write_str(s),
        }
    }
}

impl SemVer {
    /// Parses a version as npm does (node-semver, not loose): surrounding
    /// whitespace and one leading `v` are allowed.
    pub fn parse_npm(input: &str) -> Result<SemVer, VersionError> {
        check_len(Ecosystem::Npm, input)?;
        let trimmed = input.trim_start();
        let offset = input.len() - trimmed.len();
        let trimmed = trimmed.trim_end();
        let (offset, body) = match trimmed.strip_prefix('v') {
            Some(body) => (offset + 1, body),
            None => (offset, trimmed),
        };
        parse(Ecosystem::Npm, input, offset, body, false)
    }

    /// Whether this is a pre-release (`-...`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The build metadata identifiers (`+...`), which never affect order.
    pub fn build(&self) -> &[String] {
        &self.build
    }
}

impl FromStr for SemVer {
    type Err = VersionError;

    /// Parses a version strictly by SemVer 2.0.0, as crates.io does.
    fn from_str(input: &str) -> Result<Self, VersionError> {
        check_len(Ecosystem::CratesIo, input)?;
        parse(Ecosystem::CratesIo, input, 0, input, false)
    }
}

/// Parses `body`, which starts at byte `offset` of `input`. With
/// `shorthand`, `1` and `1.2` stand for `1.0.0` and `1.2.0` (Go's rule).
pub(crate) fn parse(
    ecosystem: Ecosystem,
    input: &str,
    offset: usize,
    body: &str,
    shorthand: bool,
) -> Result<SemVer, VersionError> {
    let err = |pos: usize, reason| VersionError::invalid(ecosystem, input, offset + pos, reason);
    if body.is_empty() {
        return Err(VersionError::empty(ecosystem, input));
    }
    let b = body.as_bytes();
    let mut pos = 0;

    let number = |pos: &mut usize| -> Result<Decimal, VersionError> {
        let end = digit_run_end(b, *pos);
        if end == *pos {
            return Err(err(*pos, "expected a number"));
        }
        if end - *pos > 1 && b[*pos] == b'0' {
            return Err(err(*pos, "number with a leading zero"));
        }
        let n = Decimal::from_digits(&body[*pos..end]);
        *pos = end;
        Ok(n)
    };
    let dot_number = |pos: &mut usize| -> Result<Decimal, VersionError> {
        if shorthand && *pos == b.len() {
            return Ok(Decimal::zero());
        }
        if b.get(*pos) != Some(&b'.') {
            return Err(err(*pos, "expected MAJOR.MINOR.PATCH"));
        }
        *pos += 1;
        number(pos)
    };

    let major = number(&mut pos)?;
    let minor = dot_number(&mut pos)?;
    let patch = dot_number(&mut pos)?;

    let mut pre = Vec::new();
    if b.get(pos) == Some(&b'-') {
        pos += 1;
        loop {
            let start = pos;
            let end = identifier_end(b, pos);
            if end == start {
                return Err(err(start, "empty pre-release identifier"));
            }
            let ident = &body[start..end];
            pre.push(if ident.bytes().all(|c| c.is_ascii_digit()) {
                if ident.len() > 1 && ident.starts_with('0') {
                    return Err(err(start, "numeric identifier with a leading zero"));
                }
                Identifier::Numeric(Decimal::from_digits(ident))
            } else {
                Identifier::AlphaNumeric(ident.to_owned())
            });
            pos = end;
            if b.get(pos) != Some(&b'.') {
                break;
            }
            pos += 1;
        }
    }

    let mut build = Vec::new();
    if b.get(pos) == Some(&b'+') {
        pos += 1;
        loop {
            let start = pos;
            let end = identifier_end(b, pos);
            if end == start {
                return Err(err(start, "empty build identifier"));
            }
            build.push(body[start..end].to_owned());
            pos = end;
            if b.get(pos) != Some(&b'.') {
                break;
            }
            pos += 1;
        }
    }

    if pos != b.len() {
        return Err(err(pos, "unexpected character"));
    }
    Ok(SemVer {
        major,
        minor,
        patch,
        pre,
        build,
    })
}

/// The end of a run of `[0-9A-Za-z-]`.
fn identifier_end(b: &[u8], start: usize) -> usize {
    let mut end = start;
    while b
        .get(end)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-')
    {
        end += 1;
    }
    end
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.major
            .cmp(&other.major)
            .then_with(|| self.minor.cmp(&other.minor))
            .then_with(|| self.patch.cmp(&other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SemVer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SemVer {}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, ident) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            ident.fmt(f)?;
        }
        for (i, ident) in self.build.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            f.write_str(ident)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> SemVer {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn semver_org_precedence() {
        // Section 11's examples, ascending.
        let ascending = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn more_precedence_rules() {
        assert!(v("1.9.0") < v("1.10.0"));
        assert!(v("1.0.0-2") < v("1.0.0-10"));
        assert!(v("1.0.0-10") < v("1.0.0-1a"));
        assert!(v("1.0.0-Z") < v("1.0.0-a"));
        assert!(v("1.0.0-a.b") < v("1.0.0-a-b"));
        assert!(v("1.0.0-x.7.z.92") < v("1.0.0-x.7.z.93"));
        assert_eq!(v("1.0.0-alpha+001"), v("1.0.0-alpha"));
        assert_eq!(v("1.0.0+20130313144700"), v("1.0.0+exp.sha.5114f85"));
        assert!(v("1.0.0-0") < v("1.0.0-0.0"));
        let big = format!("{}.0.0", "9".repeat(100));
        let bigger = format!("1{}.0.0", "0".repeat(100));
        assert!(v(&big) < v(&bigger));
    }

    /// Valid and invalid strings from semver.org's regular-expression test
    /// list.
    #[test]
    fn semver_org_validity() {
        for s in [
            "0.0.4",
            "1.2.3",
            "10.20.30",
            "1.1.2-prerelease+meta",
            "1.1.2+meta",
            "1.1.2+meta-valid",
            "1.0.0-alpha",
            "1.0.0-beta",
            "1.0.0-alpha.beta",
            "1.0.0-alpha.beta.1",
            "1.0.0-alpha.1",
            "1.0.0-alpha0.valid",
            "1.0.0-alpha.0valid",
            "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
            "1.0.0-rc.1+build.1",
            "2.0.0-rc.1+build.123",
            "1.2.3-beta",
            "10.2.3-DEV-SNAPSHOT",
            "1.2.3-SNAPSHOT-123",
            "1.0.0",
            "2.0.0",
            "1.1.7",
            "2.0.0+build.1848",
            "2.0.1-alpha.1227",
            "1.0.0-alpha+beta",
            "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
            "1.2.3----R-S.12.9.1--.12+meta",
            "1.2.3----RC-SNAPSHOT.12.9.1--.12",
            "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
            "99999999999999999999999.999999999999999999.99999999999999999",
            "1.0.0-0A.is.legal",
        ] {
            assert!(s.parse::<SemVer>().is_ok(), "{s:?} should be valid");
            assert_eq!(v(s).to_string(), s);
        }
        for s in [
            "1",
            "1.2",
            "1.2.3-0123",
            "1.2.3-0123.0123",
            "1.1.2+.123",
            "+invalid",
            "-invalid",
            "-invalid+invalid",
            "-invalid.01",
            "alpha",
            "alpha.beta",
            "alpha.beta.1",
            "alpha.1",
            "alpha+beta",
            "alpha_beta",
            "alpha.",
            "alpha..",
            "beta",
            "1.0.0-alpha_beta",
            "-alpha.",
            "1.0.0-alpha..",
            "1.0.0-alpha..1",
            "1.0.0-alpha...1",
            "1.0.0-alpha....1",
            "1.0.0-alpha.....1",
            "1.0.0-alpha......1",
            "1.0.0-alpha.......1",
            "01.1.1",
            "1.01.1",
            "1.1.01",
            "1.2",
            "1.2.3.DEV",
            "1.2-SNAPSHOT",
            "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788",
            "1.2-RC-SNAPSHOT",
            "-1.0.3-gamma+b7718",
            "+justmeta",
            "9.8.7+meta+meta",
            "9.8.7-whatever+meta+meta",
            "99999999999999999999999.999999999999999999.99999999999999999----RC-SNAPSHOT.12.09.1--------------------------------..12",
            "",
            " 1.0.0",
            "v1.0.0",
            "1.0.0-",
            "1.0.0+",
        ] {
            assert!(s.parse::<SemVer>().is_err(), "{s:?} should be invalid");
        }
    }

    #[test]
    fn npm_accepts_a_v_and_whitespace() {
        assert_eq!(
            SemVer::parse_npm("v1.2.3").map(|v| v.to_string()),
            Ok("1.2.3".into())
        );
        assert_eq!(
            SemVer::parse_npm("  1.2.3-rc.1\t").map(|v| v.to_string()),
            Ok("1.2.3-rc.1".into())
        );
        for s in ["vv1.2.3", "=1.2.3", "1.2", "v", "", "1.2.3 x"] {
            assert!(SemVer::parse_npm(s).is_err(), "{s:?}");
        }
        let err = SemVer::parse_npm(" v1.02.3").unwrap_err();
        assert_eq!(
            err.kind(),
            crate::version::VersionErrorKind::Invalid {
                position: 4,
                reason: "number with a leading zero"
            }
        );
    }

    pub(crate) fn semver_string() -> impl Strategy<Value = String> {
        let number = prop_oneof![Just("0"), Just("1"), Just("2"), Just("10")];
        let ident = prop_oneof![
            Just("0"),
            Just("1"),
            Just("2"),
            Just("10"),
            Just("a"),
            Just("alpha"),
            Just("beta"),
            Just("rc"),
            Just("a-1"),
            Just("1a"),
            Just("Z"),
            Just("-"),
        ];
        (
            number.clone(),
            number.clone(),
            number,
            proptest::collection::vec(ident, 0..4),
            proptest::option::of(prop_oneof![
                Just("build"),
                Just("001"),
                Just("sha.abc"),
                Just("incompatible")
            ]),
        )
            .prop_map(|(major, minor, patch, pre, build)| {
                let mut s = format!("{major}.{minor}.{patch}");
                if !pre.is_empty() {
                    s.push('-');
                    s.push_str(&pre.join("."));
                }
                if let Some(build) = build {
                    s.push('+');
                    s.push_str(build);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn antisymmetric(a in semver_string(), b in semver_string()) {
            let (a, b) = (v(&a), v(&b));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        }

        #[test]
        fn transitive(a in semver_string(), b in semver_string(), c in semver_string()) {
            let mut vs = [v(&a), v(&b), v(&c)];
            vs.sort();
            prop_assert!(vs[0] <= vs[1] && vs[1] <= vs[2] && vs[0] <= vs[2]);
            if vs[0] == vs[1] {
                prop_assert_eq!(vs[0].cmp(&vs[2]), vs[1].cmp(&vs[2]));
            }
        }

        #[test]
        fn build_metadata_is_ignored(a in semver_string(), c in semver_string()) {
            let without = a.split('+').next().unwrap_or("").to_owned();
            let (a, without, c) = (v(&a), v(&without), v(&c));
            prop_assert_eq!(&a, &without);
            prop_assert_eq!(a.cmp(&c), without.cmp(&c));
        }

        #[test]
        fn prerelease_is_below_its_release(a in semver_string()) {
            let a = v(&a);
            let release = v(&format!("{}.{}.{}", a.major, a.minor, a.patch));
            prop_assert_eq!(a.is_prerelease(), a < release);
        }

        #[test]
        fn display_round_trips(s in semver_string()) {
            let parsed = v(&s);
            prop_assert_eq!(parsed.to_string(), s.clone());
            prop_assert_eq!(SemVer::parse_npm(&format!(" v{s} ")).map(|v| v.to_string()), Ok(s));
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = s.parse::<SemVer>();
            let _ = SemVer::parse_npm(&s);
        }

        #[test]
        fn parse_never_panics_on_near_versions(s in "[v 0-9a-zA-Z.+-]{0,30}") {
            let _ = s.parse::<SemVer>();
            let _ = SemVer::parse_npm(&s);
        }
    }
}
