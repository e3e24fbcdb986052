//! Debian package versions, ordered as dpkg orders them.
//!
//! The format is `[epoch:]upstream_version[-debian_revision]` and the
//! ordering is the one in deb-version(7) and dpkg's `lib/dpkg/version.c`:
//! epochs compare as numbers, then the upstream version, then the revision,
//! each as alternating non-digit and digit runs. In non-digit runs letters
//! sort before every other character and `~` sorts before everything,
//! even the end of the string (`1.0~rc1 < 1.0 < 1.0a < 1.0+b1`). Digit
//! runs compare by value at any length.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Ecosystem, VersionError, check_len};

/// dpkg's limit on epochs (`INT_MAX`).
const MAX_EPOCH: u32 = i32::MAX as u32;

/// A Debian (or Ubuntu) package version.
///
/// Equality follows dpkg: `1.0`, `0:1.0`, `1.0-0` and `01.0` are equal.
///
/// ```
/// use wharf_scan::version::DpkgVersion;
///
/// let v: DpkgVersion = "1:2.36.1-8+deb11u1".parse()?;
/// assert_eq!(v.epoch(), 1);
/// assert_eq!(v.upstream(), "2.36.1");
/// assert_eq!(v.revision(), Some("8+deb11u1"));
/// assert!(v < "1:2.36.1-8+deb11u2".parse()?);
/// assert!("2.0~beta1".parse::<DpkgVersion>()? < "2.0".parse()?);
/// # Ok::<(), wharf_scan::version::VersionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DpkgVersion {
    epoch: u32,
    upstream: String,
    /// Empty when the version has none (which orders like `0`).
    revision: String,
}

impl DpkgVersion {
    /// The epoch, `0` when absent.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision, if any.
    pub fn revision(&self) -> Option<&str> {
        (!self.revision.is_empty()).then_some(self.revision.as_str())
    }
}

impl FromStr for DpkgVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        let err =
            |position, reason| VersionError::invalid(Ecosystem::Debian, input, position, reason);
        check_len(Ecosystem::Debian, input)?;

        // dpkg ignores surrounding blanks but refuses embedded ones.
        let s = input.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let start = input.len() - s.len();
        let s = s.trim_end_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() {
            return Err(VersionError::empty(Ecosystem::Debian, input));
        }
        if let Some(at) = s.find(|c: char| c.is_ascii_whitespace()) {
            return Err(err(start + at, "embedded whitespace"));
        }

        let (epoch, rest, rest_at) = match s.split_once(':') {
            Some((epoch, rest)) => {
                if epoch.is_empty() {
                    return Err(err(start, "empty epoch before ':'"));
                }
                if let Some(at) = epoch.find(|c: char| !c.is_ascii_digit()) {
                    return Err(err(start + at, "epoch is not a number"));
                }
                let epoch = super::decimal::strip_leading_zeros(epoch);
                let epoch = match epoch.parse::<u32>() {
                    Ok(epoch) if epoch <= MAX_EPOCH => epoch,
                    _ => return Err(err(start, "epoch is larger than 2147483647")),
                };
                if rest.is_empty() {
                    return Err(err(start + s.len(), "nothing after ':'"));
                }
                (epoch, rest, start + s.len() - rest.len())
            }
            None => (0, s, start),
        };

        // The revision is everything after the last hyphen; dpkg accepts
        // a trailing hyphen as an empty revision.
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        if upstream.is_empty() {
            return Err(err(rest_at, "empty upstream version"));
        }
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err(rest_at, "upstream version must start with a digit"));
        }
        if let Some(at) =
            upstream.find(|c: char| !(c.is_ascii_alphanumeric() || ".+~-:".contains(c)))
        {
            return Err(err(
                rest_at + at,
                "character not allowed in an upstream version",
            ));
        }
        if let Some(at) = revision.find(|c: char| !(c.is_ascii_alphanumeric() || ".+~".contains(c)))
        {
            return Err(err(
                rest_at + upstream.len() + 1 + at,
                "character not allowed in a Debian revision",
            ));
        }

        Ok(DpkgVersion {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

impl fmt::Display for DpkgVersion {
    /// The version with a zero epoch left out, except where the upstream
    /// version holds a `:` (then the epoch is needed to parse it back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 || self.upstream.contains(':') {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() || self.upstream.contains('-') {
            // A hyphen in the upstream version needs one after it, even
            // before an empty revision, to parse back the same way.
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DpkgVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DpkgVersion {}

/// The weight of one character in a non-digit run; the end of the string
/// and digits weigh 0.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn is_digit(c: Option<&u8>) -> bool {
    c.is_some_and(u8::is_ascii_digit)
}

/// dpkg's `verrevcmp`, on an upstream version or a revision.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run, by value: skip leading zeros, then the longer run is
        // larger, and at equal length the first differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit(a.get(i)) && is_digit(b.get(j)) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if is_digit(a.get(i)) {
            return Ordering::Greater;
        }
        if is_digit(b.get(j)) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::VersionErrorKind;
    use proptest::prelude::*;

    fn v(s: &str) -> DpkgVersion {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn parts(s: &str) -> (u32, String, Option<String>) {
        let v = v(s);
        (
            v.epoch(),
            v.upstream().to_owned(),
            v.revision().map(str::to_owned),
        )
    }

    /// Ordered pairs from deb-version(7) and dpkg's own tests
    /// (`lib/dpkg/t/t-version.c`, `scripts/t/Dpkg_Version.t`).
    #[test]
    fn known_orderings() {
        use Ordering::*;
        let cases = [
            // t-version.c: equality and each component.
            ("0-0", "0-0", Equal),
            ("0-00", "00-0", Equal),
            ("1:2-3", "1:2-3", Equal),
            ("0:0-0", "1:0-0", Less),
            // (t-version.c compares upstream versions "a" and "b", which
            // dpkg only warns about; this parser rejects versions not
            // starting with a digit, so the same letters follow a digit.)
            ("0:0a-0", "0:0b-0", Less),
            ("0:0-a", "0:0-b", Less),
            ("1-1", "2-1", Less),
            ("1-1", "1-2", Less),
            // deb-version(7): ~ sorts before everything, letters before
            // non-letters.
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~~a", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0a", "1.0.", Less),
            ("1.0+", "1.0.", Less),
            ("1.0Z", "1.0a", Less),
            // Dpkg_Version.t.
            ("1.0-1", "1.0-1", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1:1.0-1", "1:1.0-1", Equal),
            ("1:1.0-1", "2:1.0-1", Less),
            ("1:1.0-1", "1.0-1", Greater),
            ("1.0-1", "1:1.0-1", Less),
            ("1:1.0-1", "2:1.0-1", Less),
            ("1:1.0~-1", "1:1.0-1", Less),
            ("1:1.0-1", "1:1.0~-1", Greater),
            ("0:1.0-1", "1.0-1", Equal),
            ("1.0-1", "0:1.0-1", Equal),
            ("0:1.0~", "0:1.0~~", Greater),
            ("1.2.3", "1.2.3", Equal),
            ("4.4.3-2", "4.4.3-2", Equal),
            ("1:2ab:5", "1:2ab:5", Equal),
            ("7:1-a:b-5", "7:1-a:b-5", Equal),
            ("57:1.2.3abYZ+~-4-5", "57:1.2.3abYZ+~-4-5", Equal),
            ("1.2.3", "0:1.2.3", Equal),
            ("1.2.3", "1.2.3-0", Equal),
            ("009", "9", Equal),
            ("009ab5", "9ab5", Equal),
            ("1.2.3", "1.2.3-1", Less),
            ("1.2.3", "1.2.4", Less),
            ("1.2.4", "1.2.3", Greater),
            ("1.2.24", "1.2.3", Greater),
            ("0.10.0", "0.8.7", Greater),
            ("3.2", "2.3", Greater),
            ("1.3.2a", "1.3.2", Greater),
            ("0.5.0~git", "0.5.0~git2", Less),
            ("2a", "21", Less),
            ("1.3.2a", "1.3.2b", Less),
            ("1:1.2.3", "1:1.2.4", Less),
            ("1:1.2.4", "1:1.2.3", Greater),
            ("1.2-5", "1.2-3", Greater),
            ("5:2", "304-2", Greater),
            ("5:2", "304:2", Less),
            ("25:2", "3:2", Greater),
            ("1:2:123", "1:12:3", Less),
            ("1.2-5", "1.2-3-5", Less),
            ("5.10.0", "5.005", Greater),
            ("3a9.8", "3.10.2", Less),
            ("3.10.2", "3a9.8", Greater),
            ("1.4+OOo3.0.0~", "1.4+OOo3.0.0-4", Less),
            ("2.4.7-1", "2.4.7-z", Less),
            ("1.002-1+b2", "1.00", Greater),
            // Real-world Debian security fixes.
            ("2.36.1-8+deb11u1", "2.36.1-8", Greater),
            ("1.1.1n-0+deb11u4", "1.1.1n-0+deb11u5", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("1:9.16.44-1~deb11u1", "1:9.16.50-1~deb11u1", Less),
            ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less),
        ];
        for (a, b, expected) in cases {
            assert_eq!(v(a).cmp(&v(b)), expected, "{a} vs {b}");
            assert_eq!(v(b).cmp(&v(a)), expected.reverse(), "{b} vs {a}");
        }
    }

    /// The parse cases of dpkg's `t-version.c`.
    #[test]
    fn parses_like_dpkg() {
        assert_eq!(parts("0"), (0, "0".into(), None));
        assert_eq!(parts("0:0"), (0, "0".into(), None));
        assert_eq!(parts("0:0-"), (0, "0".into(), None));
        assert_eq!(parts("0:0-0"), (0, "0".into(), Some("0".into())));
        assert_eq!(parts("0:0.0-0.0"), (0, "0.0".into(), Some("0.0".into())));
        assert_eq!(parts("1:0"), (1, "0".into(), None));
        assert_eq!(parts("5:1"), (5, "1".into(), None));
        assert_eq!(parts("0:0-0-0"), (0, "0-0".into(), Some("0".into())));
        assert_eq!(parts("0:0-0-0-0"), (0, "0-0-0".into(), Some("0".into())));
        assert_eq!(parts("0:0:0-0"), (0, "0:0".into(), Some("0".into())));
        assert_eq!(parts("0:0:0:0-0"), (0, "0:0:0".into(), Some("0".into())));
        assert_eq!(parts("0:0:0-0-0"), (0, "0:0-0".into(), Some("0".into())));
        assert_eq!(parts("0:0-0:0-0"), (0, "0-0:0".into(), Some("0".into())));
        assert_eq!(
            parts("0:09azAZ.-+~:-0"),
            (0, "09azAZ.-+~:".into(), Some("0".into()))
        );
        assert_eq!(
            parts("0:0-azAZ09.+~"),
            (0, "0".into(), Some("azAZ09.+~".into()))
        );
        assert_eq!(parts("  \t0:0-1"), (0, "0".into(), Some("1".into())));
        assert_eq!(parts("0:0-1\t  "), (0, "0".into(), Some("1".into())));
        assert_eq!(parts("\t  0:0-1  \t"), (0, "0".into(), Some("1".into())));
        assert_eq!(parts("2147483647:1"), (2147483647, "1".into(), None));
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        let mut bad = vec![
            "",
            "  ",
            "0:",
            "0:0 0-1",
            "-1:0-1",
            "999999999999999999999999:0-1",
            "2147483648:1",
            "a:0-0",
            "A:0-0",
            "-0",
            "0:-0",
            "0:abc3-0",
            "0:0-0:0",
            ":1.0",
            "1.0é",
        ];
        let upstream: Vec<String> = "!#@$%&/|\\<>()[]{};,_=*^'"
            .chars()
            .map(|c| format!("0:0{c}a-0"))
            .collect();
        let revision: Vec<String> = "!#@$%&/|\\<>()[]{}:;,_=*^'"
            .chars()
            .map(|c| format!("0:0-0{c}"))
            .collect();
        bad.extend(upstream.iter().map(String::as_str));
        bad.extend(revision.iter().map(String::as_str));
        for s in bad {
            assert!(
                s.parse::<DpkgVersion>().is_err(),
                "{s:?} should be rejected"
            );
        }
        let err = "1.0 a".parse::<DpkgVersion>().unwrap_err();
        assert_eq!(
            err.kind(),
            VersionErrorKind::Invalid {
                position: 3,
                reason: "embedded whitespace"
            }
        );
        let err = " 1:1.0-1_2".parse::<DpkgVersion>().unwrap_err();
        assert!(
            matches!(err.kind(), VersionErrorKind::Invalid { position: 8, .. }),
            "{err}"
        );
    }

    #[test]
    fn long_digit_runs_compare_by_value() {
        let a = format!("1.{}", "9".repeat(100));
        let b = format!("1.1{}", "0".repeat(100));
        assert!(v(&a) < v(&b));
        assert_eq!(v(&format!("1.000{a}")), v(&format!("1.{a}")));
    }

    #[test]
    fn display_keeps_what_parsing_needs() {
        for (input, shown) in [
            ("1.0", "1.0"),
            ("0:1.0-1", "1.0-1"),
            ("3:1.0", "3:1.0"),
            ("0:1:2-3", "0:1:2-3"),
            ("1-2-", "1-2-"),
            ("1.0-", "1.0"),
        ] {
            assert_eq!(v(input).to_string(), shown);
            assert_eq!(v(shown), v(input));
        }
    }

    fn dpkg_version() -> impl Strategy<Value = String> {
        // Small alphabets so that generated versions often share prefixes
        // and hit the interesting comparisons.
        let epoch = prop_oneof![Just(""), Just("0:"), Just("1:"), Just("2:"), Just("01:")];
        let upstream = (
            "[0-9]",
            "[0-9a-zA-Z.+~]{0,6}",
            proptest::option::of("[-:][0-9a-z~]{1,2}"),
        );
        let revision = proptest::option::of("[0-9a-z.+~]{0,5}");
        (epoch, upstream, revision).prop_map(|(epoch, (first, rest, extra), revision)| {
            let mut s = format!("{epoch}{first}{rest}");
            if let Some(extra) = extra {
                // A ':' in the upstream version needs an epoch, a '-' needs
                // a revision.
                if extra.starts_with(':') && epoch.is_empty() {
                    s.insert_str(0, "0:");
                }
                s.push_str(&extra);
            }
            match revision {
                Some(revision) => format!("{s}-{revision}"),
                None if s.contains('-') => format!("{s}-0"),
                None => s,
            }
        })
    }

    proptest! {
        #[test]
        fn generated_versions_parse(s in dpkg_version()) {
            prop_assert!(s.parse::<DpkgVersion>().is_ok(), "{}", s);
        }

        #[test]
        fn antisymmetric(a in dpkg_version(), b in dpkg_version()) {
            let (a, b) = (v(&a), v(&b));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        }

        #[test]
        fn transitive(a in dpkg_version(), b in dpkg_version(), c in dpkg_version()) {
            let mut vs = [v(&a), v(&b), v(&c)];
            vs.sort();
            prop_assert!(vs[0] <= vs[1] && vs[1] <= vs[2] && vs[0] <= vs[2]);
            if vs[0] == vs[1] {
                prop_assert_eq!(vs[0].cmp(&vs[2]), vs[1].cmp(&vs[2]));
            }
        }

        #[test]
        fn equal_versions_are_interchangeable(a in dpkg_version(), c in dpkg_version()) {
            // `0:` and extra leading zeros and `-0` never change the order.
            let a = v(&a);
            let padded = v(&format!(
                "{}:0{}-{}",
                a.epoch(),
                a.upstream(),
                a.revision().unwrap_or("0")
            ));
            let c = v(&c);
            prop_assert_eq!(&a, &padded);
            prop_assert_eq!(a.cmp(&c), padded.cmp(&c));
        }

        #[test]
        fn display_round_trips(s in dpkg_version()) {
            let parsed = v(&s);
            let shown = parsed.to_string();
            let reparsed = v(&shown);
            prop_assert_eq!(&reparsed, &parsed);
            prop_assert_eq!(reparsed.upstream(), parsed.upstream());
            prop_assert_eq!(reparsed.revision(), parsed.revision());
            prop_assert_eq!(reparsed.to_string(), shown);
        }

        #[test]
        fn tilde_sorts_before_anything(s in dpkg_version(), tail in "[0-9a-zA-Z.+~]{0,4}") {
            let base = v(&s);
            let with_tilde = v(&format!(
                "{}:{}~{}-{}",
                base.epoch(),
                base.upstream(),
                tail,
                base.revision().unwrap_or("")
            ));
            prop_assert!(with_tilde < base);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = s.parse::<DpkgVersion>();
        }
    }
}
