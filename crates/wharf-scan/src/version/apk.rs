//! Alpine package versions, ordered as apk-tools orders them.
//!
//! The format is `digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]`
//! and the ordering follows apk-tools' `src/version.c`: the version is read
//! as a sequence of tokens compared pairwise from the left.
//!
//! * The first number compares by value. Later numbers compare by value
//!   too, unless either side starts with `0`: then both compare as text,
//!   as in Gentoo (`1.01 < 1.1`, `8.2.0015 < 8.2.002`).
//! * Letters compare as ASCII, suffixes in the order
//!   `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p`,
//!   suffix numbers and `-rN` revisions by value, `~hash`es as text.
//! * When one version runs out of tokens or the two differ in token kind,
//!   a pre-release suffix (`_alpha` to `_rc`) is lower than anything;
//!   otherwise the side further along the grammar is lower, so the end of
//!   the version is lower than a revision, a revision lower than a hash, a
//!   hash lower than a suffix number, a suffix number lower than a
//!   post-release suffix, that lower than a letter and a letter lower than
//!   another `.number` (`1.0 < 1.0-r1 < 1.0_p1 < 1.0a < 1.0.1`).
//!
//! Strings apk itself would not accept as versions (`1.0bc`, `1.0_foo`,
//! `1.0-1`) are rejected rather than ordered by apk's fallback.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::decimal::{Decimal, cmp_digits, digit_run_end};
use super::{Ecosystem, VersionError, check_len};

/// An Alpine package version.
///
/// ```
/// use wharf_scan::version::ApkVersion;
///
/// let fixed: ApkVersion = "3.1.4-r5".parse()?;
/// assert!("3.1.4-r4".parse::<ApkVersion>()? < fixed);
/// assert!("3.1.4_rc2-r9".parse::<ApkVersion>()? < fixed);
/// assert!("3.1.4_p1-r0".parse::<ApkVersion>()? > fixed);
/// assert!("1.0_git20240101".parse::<ApkVersion>().is_ok());
/// assert!("1.0-1".parse::<ApkVersion>().is_err());
/// # Ok::<(), wharf_scan::version::VersionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ApkVersion {
    text: String,
    tokens: Vec<Token>,
}

impl ApkVersion {
    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// One token. The declaration order of the kinds is the grammar's order,
/// which also decides comparisons between tokens of different kinds.
#[derive(Debug, Clone)]
enum Token {
    /// The leading number.
    Initial(Decimal),
    /// A `.number`, kept as written: a leading zero switches to text order.
    Digit(String),
    /// The single letter after the numbers.
    Letter(u8),
    /// `_alpha`, `_p` and the rest.
    Suffix(Suffix),
    /// The number after a suffix.
    SuffixNumber(Decimal),
    /// `~` and a commit hash in lowercase hex.
    CommitHash(String),
    /// `-rN`.
    Revision(Decimal),
}

impl Token {
    fn rank(&self) -> u8 {
        match self {
            Token::Initial(_) => 0,
            Token::Digit(_) => 1,
            Token::Letter(_) => 2,
            Token::Suffix(_) => 3,
            Token::SuffixNumber(_) => 4,
            Token::CommitHash(_) => 5,
            Token::Revision(_) => 6,
        }
    }
}

/// The rank after every token kind.
const END: u8 = 7;

/// Suffixes in their order; the release itself (no suffix) sits between
/// `Rc` and `Cvs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Suffix {
    Alpha,
    Beta,
    Pre,
    Rc,
    Cvs,
    Svn,
    Git,
    Hg,
    P,
}

impl Suffix {
    fn from_name(name: &str) -> Option<Suffix> {
        Some(match name {
            "alpha" => Suffix::Alpha,
            "beta" => Suffix::Beta,
            "pre" => Suffix::Pre,
            "rc" => Suffix::Rc,
            "cvs" => Suffix::Cvs,
            "svn" => Suffix::Svn,
            "git" => Suffix::Git,
            "hg" => Suffix::Hg,
            "p" => Suffix::P,
            _ => return None,
        })
    }

    fn is_pre_release(self) -> bool {
        self <= Suffix::Rc
    }
}

impl FromStr for ApkVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        let err =
            |position, reason| VersionError::invalid(Ecosystem::Alpine, input, position, reason);
        check_len(Ecosystem::Alpine, input)?;
        if input.is_empty() {
            return Err(VersionError::empty(Ecosystem::Alpine, input));
        }
        let b = input.as_bytes();

        let end = digit_run_end(b, 0);
        if end == 0 {
            return Err(err(0, "version must start with a digit"));
        }
        let mut tokens = vec![Token::Initial(Decimal::from_digits(&input[..end]))];
        let mut pos = end;
        let mut last = 0; // rank of the previous token

        // Each branch mirrors apk's token_next(): the token kind comes from
        // its first character and must not go back in the grammar.
        while let Some(&c) = b.get(pos) {
            let token = match c {
                b'a'..=b'z' => {
                    if last > 1 {
                        return Err(err(pos, "letter not allowed here"));
                    }
                    pos += 1;
                    Token::Letter(c)
                }
                b'.' => {
                    if last > 1 {
                        return Err(err(pos, "'.' not allowed here"));
                    }
                    let end = digit_run_end(b, pos + 1);
                    if end == pos + 1 {
                        return Err(err(pos + 1, "expected a digit"));
                    }
                    let digits = &input[pos + 1..end];
                    pos = end;
                    Token::Digit(digits.to_owned())
                }
                b'0'..=b'9' => {
                    // Only reachable right after a suffix name: digit runs
                    // are otherwise read whole.
                    if last != 3 {
                        return Err(err(pos, "digit not allowed here"));
                    }
                    let end = digit_run_end(b, pos);
                    let number = Decimal::from_digits(&input[pos..end]);
                    pos = end;
                    Token::SuffixNumber(number)
                }
                b'_' => {
                    if last > 4 {
                        return Err(err(pos, "suffix not allowed here"));
                    }
                    let start = pos + 1;
                    let mut end = start;
                    while b.get(end).is_some_and(u8::is_ascii_lowercase) {
                        end += 1;
                    }
                    let suffix = Suffix::from_name(&input[start..end]).ok_or_else(|| {
                        err(start, "unknown suffix (expected alpha, beta, pre, rc, cvs, svn, git, hg or p)")
                    })?;
                    pos = end;
                    Token::Suffix(suffix)
                }
                b'~' => {
                    if last >= 5 {
                        return Err(err(pos, "commit hash not allowed here"));
                    }
                    let start = pos + 1;
                    let mut end = start;
                    while b
                        .get(end)
                        .is_some_and(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                    {
                        end += 1;
                    }
                    if end == start {
                        return Err(err(start, "expected a hex commit hash"));
                    }
                    pos = end;
                    Token::CommitHash(input[start..end].to_owned())
                }
                b'-' => {
                    if last >= 6 {
                        return Err(err(pos, "second revision"));
                    }
                    if b.get(pos + 1) != Some(&b'r') {
                        return Err(err(pos, "expected '-r' and a revision number"));
                    }
                    let end = digit_run_end(b, pos + 2);
                    if end == pos + 2 {
                        return Err(err(pos + 2, "expected a revision number"));
                    }
                    let number = Decimal::from_digits(&input[pos + 2..end]);
                    pos = end;
                    Token::Revision(number)
                }
                _ => return Err(err(pos, "character not allowed in a version")),
            };
            last = token.rank();
            tokens.push(token);
        }

        Ok(ApkVersion {
            text: input.to_owned(),
            tokens,
        })
    }
}

impl fmt::Display for ApkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compares two tokens of the same kind.
fn token_cmp(a: &Token, b: &Token) -> Ordering {
    match (a, b) {
        (Token::Initial(a), Token::Initial(b))
        | (Token::SuffixNumber(a), Token::SuffixNumber(b))
        | (Token::Revision(a), Token::Revision(b)) => a.cmp(b),
        (Token::Digit(a), Token::Digit(b)) => {
            if a.starts_with('0') || b.starts_with('0') {
                a.as_bytes().cmp(b.as_bytes())
            } else {
                cmp_digits(a, b)
            }
        }
        (Token::Letter(a), Token::Letter(b)) => a.cmp(b),
        (Token::Suffix(a), Token::Suffix(b)) => a.cmp(b),
        (Token::CommitHash(a), Token::CommitHash(b)) => a.cmp(b),
        // Different kinds are ordered by the caller.
        _ => a.rank().cmp(&b.rank()).reverse(),
    }
}

/// Orders two versions whose tokens agree up to here and whose next
/// tokens (`None` at the end) differ in kind.
fn tail_cmp(a: Option<&Token>, b: Option<&Token>) -> Ordering {
    let is_pre = |t: Option<&Token>| matches!(t, Some(Token::Suffix(s)) if s.is_pre_release());
    if is_pre(a) {
        return Ordering::Less;
    }
    if is_pre(b) {
        return Ordering::Greater;
    }
    let rank = |t: Option<&Token>| t.map_or(END, Token::rank);
    // Further along the grammar is lower.
    rank(b).cmp(&rank(a))
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let (mut a, mut b) = (self.tokens.iter(), other.tokens.iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (Some(x), Some(y)) if x.rank() == y.rank() => match token_cmp(x, y) {
                    Ordering::Equal => {}
                    decided => return decided,
                },
                (x, y) => return tail_cmp(x, y),
            }
        }
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> ApkVersion {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// apk-tools' `test/version.data`: each line is `a <op> b`. The lines
    /// that data file marks as invalid versions (`1.0bc`, `23_foo`) are
    /// left out; apk rejects them too.
    const APK_VERSION_DATA: &str = include_str!("testdata/apk-version.data");

    #[test]
    fn apk_test_vectors() {
        let mut checked = 0;
        for line in APK_VERSION_DATA.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [a, op, b] = fields[..] else {
                panic!("bad test line {line:?}");
            };
            let expected = match op {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                _ => panic!("bad operator in {line:?}"),
            };
            assert_eq!(v(a).cmp(&v(b)), expected, "{line}");
            assert_eq!(v(b).cmp(&v(a)), expected.reverse(), "{line} (reversed)");
            checked += 1;
        }
        assert!(checked > 500, "only {checked} vectors");
    }

    #[test]
    fn suffix_and_token_order() {
        let ascending = [
            "1.0_alpha",
            "1.0_alpha1",
            "1.0_alpha2",
            "1.0_beta",
            "1.0_pre",
            "1.0_rc",
            "1.0_rc1",
            "1.0",
            "1.0-r1",
            "1.0-r2",
            "1.0~1234",
            "1.0~abcd",
            "1.0_cvs",
            "1.0_svn",
            "1.0_git",
            "1.0_hg",
            "1.0_p",
            "1.0_p1",
            "1.0_p1-r1",
            "1.0_p2",
            "1.0a",
            "1.0b",
            "1.0.0",
            "1.00",
            "1.001",
            "1.01",
            "1.1",
            "1.2",
            "1.10",
            "2",
        ];
        for pair in ascending.windows(2) {
            assert_eq!(
                v(pair[0]).cmp(&v(pair[1])),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        // Every pair, not just neighbours, agrees with the list's order.
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn leading_zero_numbers_compare_as_text() {
        assert!(v("8.2.0015") < v("8.2.002"));
        assert!(v("1.05") < v("1.5"));
        assert!(v("1.0") < v("1.00"));
        // The first number is always numeric.
        assert_eq!(v("01.2"), v("1.2"));
        assert_eq!(v("1.0_p01"), v("1.0_p1"));
        assert_eq!(v("1.0-r01"), v("1.0-r1"));
    }

    #[test]
    fn pre_release_suffix_stacks() {
        assert!(v("0.1.0_alpha_pre2") < v("0.1.0_alpha"));
        assert!(v("1.0_rc_beta") < v("1.0_rc0"));
        assert!(v("1.0_rc0") < v("1.0_rc_p"));
        assert!(v("1.0_alpha") < v("1.0_alpha0"));
    }

    #[test]
    fn long_numbers_do_not_overflow() {
        assert!(v("1.0.0_pre20191002222144-r0") < v("1.0.0_pre20210530193627-r0"));
        let a = format!("{}-r0", "9".repeat(100));
        let b = format!("1{}-r0", "0".repeat(100));
        assert!(v(&a) < v(&b));
        let c = format!("1.0-r{}", "9".repeat(100));
        assert!(v("1.0-r1") < v(&c));
    }

    #[test]
    fn rejects_invalid_versions() {
        for s in [
            "",
            "a",
            "1.",
            "1..2",
            "1.0bc",
            "1.0a1",
            "1.0a.1",
            "23_foo",
            "1.0_",
            "1.0_rc1a",
            "1.0_p1.2",
            "1.0-r",
            "1.0-1",
            "1.0-r1-r2",
            "1.0-r1_p1",
            "1.0-r1~ab",
            "1.0~",
            "1.0~xyz",
            "1.0~ab_p1",
            "1.0~AB",
            "1.0 ",
            " 1.0",
            "1.0\n",
            "1.0A",
            "v1.0",
            "1,0",
            "1.0é",
        ] {
            assert!(s.parse::<ApkVersion>().is_err(), "{s:?} should be rejected");
        }
        for s in [
            "1.0a_p1",
            "1.0~ab-r1",
            "1.0_alpha1_p2~12ef-r3",
            "0",
            "1.0a-r1",
        ] {
            assert!(s.parse::<ApkVersion>().is_ok(), "{s:?} should be accepted");
        }
    }

    fn apk_version() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            Just("0"),
            Just("1"),
            Just("2"),
            Just("10"),
            Just("01"),
            Just("00")
        ];
        let suffix = prop_oneof![
            Just("alpha"),
            Just("beta"),
            Just("pre"),
            Just("rc"),
            Just("cvs"),
            Just("git"),
            Just("p"),
        ];
        (
            number.clone(),
            proptest::collection::vec(number.clone(), 0..3),
            proptest::option::of("[abz]"),
            proptest::collection::vec((suffix, proptest::option::of(number.clone())), 0..3),
            proptest::option::of(prop_oneof![Just("0"), Just("ab"), Just("1f")]),
            proptest::option::of(number),
        )
            .prop_map(|(first, rest, letter, suffixes, hash, revision)| {
                let mut s = first.to_owned();
                for n in rest {
                    s.push('.');
                    s.push_str(n);
                }
                if let Some(letter) = letter {
                    s.push_str(&letter);
                }
                for (name, n) in suffixes {
                    s.push('_');
                    s.push_str(name);
                    s.push_str(n.unwrap_or(""));
                }
                if let Some(hash) = hash {
                    s.push('~');
                    s.push_str(hash);
                }
                if let Some(revision) = revision {
                    s.push_str("-r");
                    s.push_str(revision);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn generated_versions_parse(s in apk_version()) {
            prop_assert!(s.parse::<ApkVersion>().is_ok(), "{}", s);
        }

        #[test]
        fn antisymmetric(a in apk_version(), b in apk_version()) {
            let (a, b) = (v(&a), v(&b));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        }

        #[test]
        fn transitive(a in apk_version(), b in apk_version(), c in apk_version()) {
            let mut vs = [v(&a), v(&b), v(&c)];
            vs.sort();
            prop_assert!(vs[0] <= vs[1] && vs[1] <= vs[2] && vs[0] <= vs[2]);
            if vs[0] == vs[1] {
                prop_assert_eq!(vs[0].cmp(&vs[2]), vs[1].cmp(&vs[2]));
            }
        }

        #[test]
        fn revision_bumps_sort_higher(s in apk_version()) {
            let base = s.split("-r").next().unwrap_or("").to_owned();
            let (r0, r1, r10) = (format!("{base}-r0"), format!("{base}-r1"), format!("{base}-r10"));
            prop_assert!(v(&base) < v(&r1));
            prop_assert!(v(&r1) < v(&r10));
            prop_assert_eq!(v(&r0).cmp(&v(&base)), Ordering::Greater);
        }

        #[test]
        fn display_round_trips(s in apk_version()) {
            let parsed = v(&s);
            prop_assert_eq!(parsed.to_string(), s.clone());
            prop_assert_eq!(v(&parsed.to_string()), parsed);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = s.parse::<ApkVersion>();
        }

        #[test]
        fn parse_never_panics_on_near_versions(s in "[0-9a-z._~-]{0,30}") {
            let _ = s.parse::<ApkVersion>();
        }
    }
}
