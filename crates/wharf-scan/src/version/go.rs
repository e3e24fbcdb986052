//! Go module versions, ordered as `golang.org/x/mod/semver` orders them.
//!
//! Go versions are SemVer with a `v` prefix. OSV's Go advisories write them
//! without the `v`, so the prefix is optional here. As in Go, `v1` and
//! `v1.2` are shorthands for `v1.0.0` and `v1.2.0` (without pre-release or
//! build), and build metadata such as `+incompatible` is ignored.
//!
//! Pseudo-versions need no special rule: their forms
//! (`v0.0.0-20200101000000-abcdef123456`, `v1.2.4-0.20200101000000-abcdef123456`,
//! `v1.2.4-pre.0.20200101000000-abcdef123456`) are pre-releases built so
//! that SemVer precedence puts them after the release they derive from,
//! before the next one, and in commit-time order among themselves.

use std::fmt;
use std::str::FromStr;

use super::semver::{self, SemVer};
use super::{Ecosystem, VersionError, check_len};

/// A Go module version.
///
/// ```
/// use wharf_scan::version::GoVersion;
///
/// let fixed: GoVersion = "v0.17.0".parse()?;
/// let pseudo: GoVersion = "v0.16.1-0.20231201000000-0123456789ab".parse()?;
/// assert!("v0.16.0".parse::<GoVersion>()? < pseudo);
/// assert!(pseudo < fixed);
/// assert_eq!("0.17.0".parse::<GoVersion>()?, fixed);
/// assert_eq!("v2.0.0+incompatible".parse::<GoVersion>()?, "v2.0.0".parse()?);
/// assert_eq!(fixed.to_string(), "v0.17.0");
/// # Ok::<(), wharf_scan::version::VersionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion(SemVer);

impl GoVersion {
    /// The version as SemVer (without the `v`).
    pub fn as_semver(&self) -> &SemVer {
        &self.0
    }

    /// Whether this is a `+incompatible` version (a major version of 2 or
    /// more from a module without a `go.mod` path suffix).
    pub fn is_incompatible(&self) -> bool {
        self.0.build() == ["incompatible"]
    }
}

impl FromStr for GoVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        check_len(Ecosystem::Go, input)?;
        let (offset, body) = match input.strip_prefix('v') {
            Some(body) => (1, body),
            None => (0, input),
        };
        semver::parse(Ecosystem::Go, input, offset, body, true).map(GoVersion)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl From<GoVersion> for SemVer {
    fn from(v: GoVersion) -> SemVer {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::semver::tests::semver_string;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn v(s: &str) -> GoVersion {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// `golang.org/x/mod/semver`'s test table: input and canonical form
    /// (empty for invalid), valid ones in ascending order.
    const X_MOD_SEMVER: &[(&str, &str)] = &[
        ("bad", ""),
        ("v1-alpha.beta.gamma", ""),
        ("v1-pre", ""),
        ("v1+meta", ""),
        ("v1-pre+meta", ""),
        ("v1.2-pre", ""),
        ("v1.2+meta", ""),
        ("v1.2-pre+meta", ""),
        ("v1.0.0-alpha", "v1.0.0-alpha"),
        ("v1.0.0-alpha.1", "v1.0.0-alpha.1"),
        ("v1.0.0-alpha.beta", "v1.0.0-alpha.beta"),
        ("v1.0.0-beta", "v1.0.0-beta"),
        ("v1.0.0-beta.2", "v1.0.0-beta.2"),
        ("v1.0.0-beta.11", "v1.0.0-beta.11"),
        ("v1.0.0-rc.1", "v1.0.0-rc.1"),
        ("v1", "v1.0.0"),
        ("v1.0", "v1.0.0"),
        ("v1.0.0", "v1.0.0"),
        ("v1.2", "v1.2.0"),
        ("v1.2.0", "v1.2.0"),
        ("v1.2.3-456", "v1.2.3-456"),
        ("v1.2.3-456.789", "v1.2.3-456.789"),
        ("v1.2.3-456-789", "v1.2.3-456-789"),
        ("v1.2.3-456a", "v1.2.3-456a"),
        ("v1.2.3-pre", "v1.2.3-pre"),
        ("v1.2.3-pre+meta", "v1.2.3-pre"),
        ("v1.2.3-pre.1", "v1.2.3-pre.1"),
        ("v1.2.3-zzz", "v1.2.3-zzz"),
        ("v1.2.3", "v1.2.3"),
        ("v1.2.3+meta", "v1.2.3"),
        ("v1.2.3+meta-pre", "v1.2.3"),
        ("v1.2.3+meta-pre.sha.256a", "v1.2.3"),
    ];

    #[test]
    fn x_mod_semver_table() {
        for &(input, canonical) in X_MOD_SEMVER {
            let parsed = input.parse::<GoVersion>();
            if canonical.is_empty() {
                assert!(parsed.is_err(), "{input} should be invalid");
            } else {
                assert_eq!(parsed, Ok(v(canonical)), "{input}");
            }
        }
        let valid: Vec<(usize, &str, &str)> = X_MOD_SEMVER
            .iter()
            .enumerate()
            .filter(|(_, (_, canonical))| !canonical.is_empty())
            .map(|(i, (input, canonical))| (i, *input, *canonical))
            .collect();
        for &(i, a, ca) in &valid {
            for &(j, b, cb) in &valid {
                let want = if ca == cb { Ordering::Equal } else { i.cmp(&j) };
                assert_eq!(v(a).cmp(&v(b)), want, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn pseudo_versions_order_by_base_and_time() {
        let ascending = [
            "v0.0.0-20190101000000-aaaaaaaaaaaa",
            "v0.0.0-20200101000000-abcdef123456",
            "v0.0.0-20200101000001-000000000000",
            "v0.1.0",
            "v0.1.1-0.20200101000000-abcdef123456",
            "v0.1.1-0.20210101000000-abcdef123456",
            "v0.1.1-rc.1",
            "v0.1.1-rc.1.0.20200101000000-abcdef123456",
            "v0.1.1",
            "v1.0.0",
            "v2.0.0-20200101000000-abcdef123456",
            "v2.0.0",
            "v2.0.1-0.20200101000000-abcdef123456+incompatible",
            "v2.0.1",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn prefix_and_incompatible() {
        assert_eq!(v("1.2.3"), v("v1.2.3"));
        assert_eq!(v("1.2"), v("v1.2.0"));
        assert!(v("v2.0.0+incompatible").is_incompatible());
        assert!(!v("v2.0.0").is_incompatible());
        assert_eq!(v("v2.0.0+incompatible"), v("v2.0.0"));
        assert_eq!(v("v2.0.0+incompatible").to_string(), "v2.0.0+incompatible");
        assert_eq!(v("1.2").to_string(), "v1.2.0");
        for s in [
            "",
            "v",
            "vv1.0.0",
            "V1.0.0",
            "v01.0.0",
            "v1.0.0-01",
            " v1.0.0",
            "v1..0",
            "v1.0.0-",
        ] {
            assert!(s.parse::<GoVersion>().is_err(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn same_order_as_semver(a in semver_string(), b in semver_string()) {
            let (ga, gb) = (v(&format!("v{a}")), v(&b));
            let (sa, sb) = (a.parse::<SemVer>().ok(), b.parse::<SemVer>().ok());
            prop_assert_eq!(Some(ga.cmp(&gb)), sa.zip(sb).map(|(sa, sb)| sa.cmp(&sb)));
            prop_assert_eq!(ga.cmp(&gb), gb.cmp(&ga).reverse());
        }

        #[test]
        fn transitive(a in semver_string(), b in semver_string(), c in semver_string()) {
            let mut vs = [v(&a), v(&b), v(&c)];
            vs.sort();
            prop_assert!(vs[0] <= vs[1] && vs[1] <= vs[2] && vs[0] <= vs[2]);
        }

        #[test]
        fn pseudo_versions_sort_between_releases(
            major in 0u32..3, minor in 0u32..3, patch in 0u32..3,
            t1 in 20000101000000u64..20991231235959,
            t2 in 20000101000000u64..20991231235959,
            hash in "[0-9a-f]{12}",
        ) {
            let base = v(&format!("v{major}.{minor}.{patch}"));
            let next = v(&format!("v{major}.{minor}.{}", patch + 1));
            let p1 = v(&format!("v{major}.{minor}.{}-0.{t1}-{hash}", patch + 1));
            let p2 = v(&format!("v{major}.{minor}.{}-0.{t2}-{hash}", patch + 1));
            prop_assert!(base < p1 && p1 < next);
            prop_assert_eq!(p1.cmp(&p2), t1.cmp(&t2));
        }

        #[test]
        fn display_round_trips(s in semver_string()) {
            let parsed = v(&s);
            prop_assert_eq!(parsed.to_string(), format!("v{s}"));
            prop_assert_eq!(v(&parsed.to_string()), parsed);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = s.parse::<GoVersion>();
        }
    }
}
