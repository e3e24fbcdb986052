//! Python package versions, ordered by PEP 440.
//!
//! The format is `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, and PEP
//! 440's normalization is accepted on input: any case, a leading `v`,
//! surrounding whitespace, `-`, `_` or `.` (or nothing) as separators,
//! `alpha`/`beta`/`c`/`pre`/`preview` for `a`/`b`/`rc`, `rev`/`r` and a bare
//! `-N` for `.postN`, implicit zeros (`1.0a` is `1.0a0`) and leading zeros
//! in numbers. The ordering is `packaging.version`'s:
//!
//! * epoch, then release segments with trailing zeros ignored
//!   (`1.0 == 1.0.0`);
//! * `1.0.dev0 < 1.0a1.dev0 < 1.0a1 < 1.0a1.post1 < 1.0b1 < 1.0rc1 < 1.0 <
//!   1.0.post1.dev0 < 1.0.post1`: a dev release sorts before the release
//!   it leads to, and a bare dev release before any pre-release of it;
//! * a local version sorts after the same version without one; local
//!   segments compare numerically when both are numbers, numbers sort
//!   after text, and more segments sort higher.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::decimal::{Decimal, digit_run_end};
use super::{Ecosystem, VersionError, check_len};

/// A PEP 440 version.
///
/// ```
/// use wharf_scan::version::Pep440Version;
///
/// let v: Pep440Version = " V1.0-RC.1-r2 ".parse()?;
/// assert_eq!(v.to_string(), "1.0rc1.post2");
/// assert_eq!(v, "1.0c1.post2".parse()?);
/// assert!(v < "1.0".parse()?);
/// assert!(v.is_prerelease());
/// assert_eq!("1.0-1".parse::<Pep440Version>()?, "1.0.post1".parse()?);
/// # Ok::<(), wharf_scan::version::VersionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pep440Version {
    epoch: Decimal,
    release: Vec<Decimal>,
    pre: Option<(PreKind, Decimal)>,
    post: Option<Decimal>,
    dev: Option<Decimal>,
    /// Empty when there is no local version (a local version has at least
    /// one segment).
    local: Vec<LocalSegment>,
}

/// Pre-release kinds, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    Alpha,
    Beta,
    Rc,
}

impl PreKind {
    fn as_str(self) -> &'static str {
        match self {
            PreKind::Alpha => "a",
            PreKind::Beta => "b",
            PreKind::Rc => "rc",
        }
    }
}

/// A local version segment. Text sorts before numbers (declaration order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalSegment {
    Text(String),
    Number(Decimal),
}

impl fmt::Display for LocalSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalSegment::Text(text) => f.write_str(text),
            LocalSegment::Number(n) => n.fmt(f),
        }
    }
}

/// The pre-release part of the sort key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey<'a> {
    /// A dev release with neither pre- nor post-release: before all
    /// pre-releases of the same release.
    DevOnly,
    Pre(PreKind, &'a Decimal),
    /// No pre-release: after all pre-releases.
    Final,
}

impl Pep440Version {
    /// Whether this is a pre-release or a development release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// Whether this has a local version label (`+...`).
    pub fn is_local(&self) -> bool {
        !self.local.is_empty()
    }

    fn pre_key(&self) -> PreKey<'_> {
        match (&self.pre, &self.post, &self.dev) {
            (Some((kind, n)), _, _) => PreKey::Pre(*kind, n),
            (None, None, Some(_)) => PreKey::DevOnly,
            (None, _, _) => PreKey::Final,
        }
    }

    /// The release without trailing zeros.
    fn significant_release(&self) -> &[Decimal] {
        let len = self
            .release
            .iter()
            .rposition(|n| !n.is_zero())
            .map_or(0, |last| last + 1);
        &self.release[..len]
    }
}

impl Ord for Pep440Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.significant_release().cmp(other.significant_release()))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            // No post-release sorts first: `None < Some`.
            .then_with(|| self.post.cmp(&other.post))
            // No dev release sorts last.
            .then_with(|| match (&self.dev, &other.dev) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            // No local version sorts first, as does the shorter of two
            // local versions that agree as far as the shorter goes.
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Pep440Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pep440Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pep440Version {}

impl fmt::Display for Pep440Version {
    /// The normalized form, as `packaging.version.Version` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.epoch.is_zero() {
            write!(f, "{}!", self.epoch)?;
        }
        for (i, n) in self.release.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            n.fmt(f)?;
        }
        if let Some((kind, n)) = &self.pre {
            write!(f, "{}{n}", kind.as_str())?;
        }
        if let Some(n) = &self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = &self.dev {
            write!(f, ".dev{n}")?;
        }
        for (i, segment) in self.local.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            segment.fmt(f)?;
        }
        Ok(())
    }
}

/// A cursor over the lowercased version. PEP 440's grammar is parsed
/// left to right with one token of lookahead; where its reference regex
/// makes an optional separator greedy, so does this.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.s.get(self.pos + ahead).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn eat_separator(&mut self) -> bool {
        let hit = matches!(self.peek(), Some(b'-' | b'_' | b'.'));
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Consumes the first of `words` the input continues with.
    fn eat_word<T: Copy>(&mut self, words: &[(&str, T)]) -> Option<T> {
        let rest = &self.s[self.pos..];
        let &(word, value) = words
            .iter()
            .find(|(word, _)| rest.starts_with(word.as_bytes()))?;
        self.pos += word.len();
        Some(value)
    }

    fn number(&mut self) -> Option<Decimal> {
        let end = digit_run_end(self.s, self.pos);
        if end == self.pos {
            return None;
        }
        let digits = std::str::from_utf8(&self.s[self.pos..end]).ok()?;
        self.pos = end;
        Some(Decimal::from_digits(digits))
    }
}

/// Pre-release spellings, longest first where one is a prefix of another.
const PRE_WORDS: &[(&str, PreKind)] = &[
    ("alpha", PreKind::Alpha),
    ("a", PreKind::Alpha),
    ("beta", PreKind::Beta),
    ("b", PreKind::Beta),
    ("preview", PreKind::Rc),
    ("pre", PreKind::Rc),
    ("c", PreKind::Rc),
    ("rc", PreKind::Rc),
];

const POST_WORDS: &[(&str, ())] = &[("post", ()), ("rev", ()), ("r", ())];

impl FromStr for Pep440Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        check_len(Ecosystem::PyPI, input)?;
        // Python strips Unicode whitespace, and so does `str::trim`.
        let trimmed = input.trim_start();
        let offset = input.len() - trimmed.len();
        let trimmed = trimmed.trim_end();
        if trimmed.is_empty() {
            return Err(VersionError::empty(Ecosystem::PyPI, input));
        }
        // ASCII lowercasing keeps every byte offset.
        let lower = trimmed.to_ascii_lowercase();
        let mut c = Cursor {
            s: lower.as_bytes(),
            pos: 0,
        };
        let err = |pos: usize, reason| {
            VersionError::invalid(Ecosystem::PyPI, input, offset + pos, reason)
        };

        c.eat(b'v');

        let first = c.number().ok_or_else(|| err(c.pos, "expected a digit"))?;
        let (epoch, first) = if c.eat(b'!') {
            let after = c
                .number()
                .ok_or_else(|| err(c.pos, "expected a digit after the epoch"))?;
            (first, after)
        } else {
            (Decimal::zero(), first)
        };
        finish(c, epoch, first, &err)
    }
}

/// Parses everything after the release's first number.
fn finish(
    mut c: Cursor<'_>,
    epoch: Decimal,
    first: Decimal,
    err: &dyn Fn(usize, &'static str) -> VersionError,
) -> Result<Pep440Version, VersionError> {
    let mut release = vec![first];
    while c.peek() == Some(b'.') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        c.pos += 1;
        release.extend(c.number());
    }

    // Pre-release: [sep] word [sep] [number].
    let start = c.pos;
    c.eat_separator();
    let pre = match c.eat_word(PRE_WORDS) {
        Some(kind) => {
            c.eat_separator();
            Some((kind, c.number().unwrap_or_else(Decimal::zero)))
        }
        None => {
            c.pos = start;
            None
        }
    };

    // Post-release: `-N`, or [sep] word [sep] [number].
    let start = c.pos;
    let post = if c.peek() == Some(b'-') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        c.pos += 1;
        c.number()
    } else {
        c.eat_separator();
        match c.eat_word(POST_WORDS) {
            Some(()) => {
                c.eat_separator();
                Some(c.number().unwrap_or_else(Decimal::zero))
            }
            None => {
                c.pos = start;
                None
            }
        }
    };

    // Development release: [sep] dev [sep] [number].
    let start = c.pos;
    c.eat_separator();
    let dev = match c.eat_word(&[("dev", ())]) {
        Some(()) => {
            c.eat_separator();
            Some(c.number().unwrap_or_else(Decimal::zero))
        }
        None => {
            c.pos = start;
            None
        }
    };

    // Local version: + segment ([-_.] segment)*, segments [a-z0-9]+.
    let mut local = Vec::new();
    if c.eat(b'+') {
        loop {
            let start = c.pos;
            while c
                .peek()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                c.pos += 1;
            }
            if c.pos == start {
                return Err(err(c.pos, "expected a local version segment"));
            }
            let text = std::str::from_utf8(&c.s[start..c.pos])
                .map_err(|_| err(start, "invalid local version"))?;
            local.push(if text.bytes().all(|b| b.is_ascii_digit()) {
                LocalSegment::Number(Decimal::from_digits(text))
            } else {
                LocalSegment::Text(text.to_owned())
            });
            if !c.eat_separator() {
                break;
            }
        }
    }

    if c.peek().is_some() {
        return Err(err(c.pos, "unexpected character"));
    }
    Ok(Pep440Version {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Pep440Version {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// `packaging`'s `tests/test_version.py` VERSIONS list, in order.
    const PACKAGING_ORDER: &[&str] = &[
        "1.0.dev0",
        "1.0.dev456",
        "1.0.dev456+local",
        "1.0a0",
        "1.0a0.post0.dev0",
        "1.0a0.post0",
        "1.0a1.dev1",
        "1.0a1.dev1+local",
        "1.0a1",
        "1.0a1+local",
        "1.0b0",
        "1.0b1.dev456",
        "1.0b2",
        "1.0b2.post345.dev456",
        "1.0b2.post345",
        "1.0b2-346",
        "1.0rc0",
        "1.0rc1.dev1",
        "1.0c1",
        "1.0rc2",
        "1.0",
        "1.0.post0.dev0",
        "1.0.post0",
        "1.0.post456.dev34",
        "1.0.post456",
        "1.0.post456+local",
        "1.0.1.dev1",
        "1.0.1a1",
        "1.0.1",
        "1.0.1+local",
        "1.0.1.post1",
        "1.1.dev1",
        "1.2+a",
        "1.2+abc",
        "1.2+abcdef",
        "1.2+def",
        "1.2+0",
        "1.2+1",
        "1.2+1.abc",
        "1.2+1.1",
        "1.2+1.1.0",
        "1.2+2",
        "1.2+123",
        "1.2+123456",
        "1.2.r32+123456",
        "1.2.rev33+123456",
        "1!1.0.dev0",
        "1!1.0.dev456",
        "1!1.0.dev456+local",
        "1!1.0a0",
        "1!1.0a0.post0.dev0",
        "1!1.0a0.post0",
        "1!1.0a1.dev1",
        "1!1.0a1.dev1+local",
        "1!1.0a1",
        "1!1.0a1+local",
        "1!1.0b0",
        "1!1.0b1.dev456",
        "1!1.0b2",
        "1!1.0b2.post345.dev456",
        "1!1.0b2.post345",
        "1!1.0b2-346",
        "1!1.0rc0",
        "1!1.0rc1.dev1",
        "1!1.0c1",
        "1!1.0rc2",
        "1!1.0",
        "1!1.0.post0.dev0",
        "1!1.0.post0",
        "1!1.0.post456.dev34",
        "1!1.0.post456",
        "1!1.0.post456+local",
        "1!1.0.1.dev1",
        "1!1.0.1a1",
        "1!1.0.1",
        "1!1.0.1+local",
        "1!1.0.1.post1",
        "1!1.1.dev1",
        "1!1.2+a",
        "1!1.2+abc",
        "1!1.2+abcdef",
        "1!1.2+def",
        "1!1.2+0",
        "1!1.2+1",
        "1!1.2+1.abc",
        "1!1.2+1.1",
        "1!1.2+1.1.0",
        "1!1.2+2",
        "1!1.2+123",
        "1!1.2+123456",
        "1!1.2.r32+123456",
        "1!1.2.rev33+123456",
    ];

    #[test]
    fn packaging_order() {
        for (i, a) in PACKAGING_ORDER.iter().enumerate() {
            for (j, b) in PACKAGING_ORDER.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn pep440_examples() {
        // The PEP's own summary of ordering within a release.
        let ascending = [
            "1.0.dev0",
            "1.0a1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0.post1",
            "1.1.dev1",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        // The PEP's example of a project's full history.
        let history = [
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for pair in history.windows(2) {
            assert!(v(pair[0]) <= v(pair[1]), "{} <= {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.dev0"), v("1.0.dev0"));
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0"), v("1.0.0.0.0"));
        assert_eq!(v("1!0"), v("1!0.0"));
        assert!(v("1.0.0") < v("1.0.0.1"));
        assert!(v("2.0") < v("1!1.0"));
        assert_eq!(v("1.0+ubuntu-1"), v("1.0+ubuntu.1"));
        assert_eq!(v("1.0+01"), v("1.0+1"));
    }

    /// `packaging`'s normalization table.
    #[test]
    fn normalization() {
        let cases = [
            ("1.0dev", "1.0.dev0"),
            ("1.0.dev", "1.0.dev0"),
            ("1.0dev1", "1.0.dev1"),
            ("1.0-dev", "1.0.dev0"),
            ("1.0-dev1", "1.0.dev1"),
            ("1.0DEV", "1.0.dev0"),
            ("1.0.DEV", "1.0.dev0"),
            ("1.0DEV1", "1.0.dev1"),
            ("1.0.DEV1", "1.0.dev1"),
            ("1.0-DEV", "1.0.dev0"),
            ("1.0-DEV1", "1.0.dev1"),
            ("1.0a", "1.0a0"),
            ("1.0.a", "1.0a0"),
            ("1.0.a1", "1.0a1"),
            ("1.0-a", "1.0a0"),
            ("1.0-a1", "1.0a1"),
            ("1.0alpha", "1.0a0"),
            ("1.0.alpha", "1.0a0"),
            ("1.0.alpha1", "1.0a1"),
            ("1.0-alpha", "1.0a0"),
            ("1.0-alpha1", "1.0a1"),
            ("1.0A", "1.0a0"),
            ("1.0.A", "1.0a0"),
            ("1.0.A1", "1.0a1"),
            ("1.0-A", "1.0a0"),
            ("1.0-A1", "1.0a1"),
            ("1.0ALPHA", "1.0a0"),
            ("1.0.ALPHA", "1.0a0"),
            ("1.0.ALPHA1", "1.0a1"),
            ("1.0-ALPHA", "1.0a0"),
            ("1.0-ALPHA1", "1.0a1"),
            ("1.0b", "1.0b0"),
            ("1.0.b", "1.0b0"),
            ("1.0.b1", "1.0b1"),
            ("1.0-b", "1.0b0"),
            ("1.0-b1", "1.0b1"),
            ("1.0beta", "1.0b0"),
            ("1.0.beta", "1.0b0"),
            ("1.0.beta1", "1.0b1"),
            ("1.0-beta", "1.0b0"),
            ("1.0-beta1", "1.0b1"),
            ("1.0B", "1.0b0"),
            ("1.0.B", "1.0b0"),
            ("1.0.B1", "1.0b1"),
            ("1.0-B", "1.0b0"),
            ("1.0-B1", "1.0b1"),
            ("1.0BETA", "1.0b0"),
            ("1.0.BETA", "1.0b0"),
            ("1.0.BETA1", "1.0b1"),
            ("1.0-BETA", "1.0b0"),
            ("1.0-BETA1", "1.0b1"),
            ("1.0c", "1.0rc0"),
            ("1.0.c", "1.0rc0"),
            ("1.0.c1", "1.0rc1"),
            ("1.0-c", "1.0rc0"),
            ("1.0-c1", "1.0rc1"),
            ("1.0rc", "1.0rc0"),
            ("1.0.rc", "1.0rc0"),
            ("1.0.rc1", "1.0rc1"),
            ("1.0-rc", "1.0rc0"),
            ("1.0-rc1", "1.0rc1"),
            ("1.0C", "1.0rc0"),
            ("1.0.C", "1.0rc0"),
            ("1.0.C1", "1.0rc1"),
            ("1.0-C", "1.0rc0"),
            ("1.0-C1", "1.0rc1"),
            ("1.0RC", "1.0rc0"),
            ("1.0.RC", "1.0rc0"),
            ("1.0.RC1", "1.0rc1"),
            ("1.0-RC", "1.0rc0"),
            ("1.0-RC1", "1.0rc1"),
            ("1.0pre1", "1.0rc1"),
            ("1.0preview2", "1.0rc2"),
            ("1.0post", "1.0.post0"),
            ("1.0.post", "1.0.post0"),
            ("1.0post1", "1.0.post1"),
            ("1.0-post", "1.0.post0"),
            ("1.0-post1", "1.0.post1"),
            ("1.0POST", "1.0.post0"),
            ("1.0.POST", "1.0.post0"),
            ("1.0POST1", "1.0.post1"),
            ("1.0r", "1.0.post0"),
            ("1.0rev", "1.0.post0"),
            ("1.0.POST1", "1.0.post1"),
            ("1.0.r1", "1.0.post1"),
            ("1.0.rev1", "1.0.post1"),
            ("1.0-POST", "1.0.post0"),
            ("1.0-POST1", "1.0.post1"),
            ("1.0-5", "1.0.post5"),
            ("1.0-r5", "1.0.post5"),
            ("1.0-rev5", "1.0.post5"),
            ("1.0+AbC", "1.0+abc"),
            ("1.0+ubuntu-1_2", "1.0+ubuntu.1.2"),
            ("1.01", "1.1"),
            ("1.0a05", "1.0a5"),
            ("1.0b07", "1.0b7"),
            ("1.0c056", "1.0rc56"),
            ("1.0rc09", "1.0rc9"),
            ("1.0.post000", "1.0.post0"),
            ("1.1.dev09000", "1.1.dev9000"),
            ("00!1.2", "1.2"),
            ("0100!0.0", "100!0.0"),
            ("v1.0", "1.0"),
            ("V1.0", "1.0"),
            ("   v1.0\t\n", "1.0"),
            ("\u{202F}1.0\t\u{2029}\n ", "1.0"),
            ("1.0a.", "1.0a0"),
            ("1.0-a-1", "1.0a1"),
            ("1.0a1-1", "1.0a1.post1"),
            ("1.0.post.dev", "1.0.post0.dev0"),
            ("7!1.0.4+8.0", "7!1.0.4+8.0"),
            ("1.2+123abc456", "1.2+123abc456"),
        ];
        for (input, normalized) in cases {
            let parsed = v(input);
            assert_eq!(parsed.to_string(), normalized, "{input:?}");
            assert_eq!(parsed, v(normalized), "{input:?}");
        }
    }

    /// `packaging`'s invalid versions, and a few more.
    #[test]
    fn rejects_invalid_versions() {
        for s in [
            "french toast",
            "1.0+a+",
            "1.0++",
            "1.0+_foobar",
            "1.0+foo&asd",
            "1.0+1+1",
            "1. 0",
            "1 .0",
            "1. 0a1",
            "1 .0a1",
            "1.0 a1",
            "1.0a 1",
            "٠١٢.٣٤٥.٦٧٨٩",
            ".",
            "..",
            "1..0",
            "1.0.",
            ".1.0",
            "1..2.3",
            "1.0+\u{0130}",
            "",
            "   ",
            "v",
            "1!",
            "!1.0",
            "1.0+",
            "1.0+a.",
            "1.0.dev1.post1",
            "1.0.post1a1",
            "1.0a1b1",
            "1.0-",
            "1.0--1",
            "vv1.0",
            "1.0.0-SNAPSHOT",
        ] {
            assert!(
                s.parse::<Pep440Version>().is_err(),
                "{s:?} should be rejected"
            );
        }
    }

    #[test]
    fn long_numbers_compare_by_value() {
        let a = format!("1.{}", "9".repeat(200));
        let b = format!("1.1{}", "0".repeat(200));
        assert!(v(&a) < v(&b));
        assert_eq!(v(&format!("1.0000{}", "9".repeat(200))), v(&a));
        assert!(v("1.0.post99999999999999999999999") > v("1.0.post9999999999999999999999"));
    }

    /// The parts of a version, for generating many spellings of each.
    #[derive(Debug, Clone)]
    struct Parts {
        epoch: Option<u32>,
        release: Vec<u32>,
        pre: Option<(usize, Option<u32>)>,
        post: Option<Option<u32>>,
        dev: Option<Option<u32>>,
        local: Vec<String>,
    }

    fn parts() -> impl Strategy<Value = Parts> {
        let small = prop_oneof![Just(0u32), Just(1), Just(2), Just(10)];
        (
            proptest::option::of(prop_oneof![Just(0u32), Just(1)]),
            proptest::collection::vec(small.clone(), 1..4),
            proptest::option::of((0..3usize, proptest::option::of(small.clone()))),
            proptest::option::of(proptest::option::of(small.clone())),
            proptest::option::of(proptest::option::of(small)),
            proptest::collection::vec(
                prop_oneof![
                    Just("0"),
                    Just("1"),
                    Just("01"),
                    Just("a"),
                    Just("ab"),
                    Just("z9")
                ],
                0..3,
            )
            .prop_map(|v| v.into_iter().map(str::to_owned).collect()),
        )
            .prop_map(|(epoch, release, pre, post, dev, local)| Parts {
                epoch,
                release,
                pre,
                post,
                dev,
                local,
            })
    }

    impl Parts {
        /// The normalized spelling.
        fn canonical(&self) -> String {
            let mut s = String::new();
            if let Some(epoch) = self.epoch.filter(|&e| e != 0) {
                s += &format!("{epoch}!");
            }
            s += &self
                .release
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            if let Some((kind, n)) = self.pre {
                s += &format!("{}{}", ["a", "b", "rc"][kind], n.unwrap_or(0));
            }
            if let Some(n) = self.post {
                s += &format!(".post{}", n.unwrap_or(0));
            }
            if let Some(n) = self.dev {
                s += &format!(".dev{}", n.unwrap_or(0));
            }
            if !self.local.is_empty() {
                let local: Vec<String> = self
                    .local
                    .iter()
                    .map(|seg| match seg.parse::<u32>() {
                        Ok(n) => n.to_string(),
                        Err(_) => seg.clone(),
                    })
                    .collect();
                s += &format!("+{}", local.join("."));
            }
            s
        }

        /// Another spelling of the same version, chosen by `choices`.
        fn spelled(&self, choices: &[u8]) -> String {
            let mut pick = choices.iter().copied().cycle();
            let mut next = |n: usize| usize::from(pick.next().unwrap_or(0)) % n;
            let sep = |i: usize| ["", ".", "-", "_"][i];
            let mut s = String::new();
            s += ["", "v", "V", " "][next(4)];
            if let Some(epoch) = self.epoch {
                s += &format!("{}{epoch}!", ["", "0"][next(2)]);
            }
            let release: Vec<String> = self
                .release
                .iter()
                .map(|n| format!("{}{n}", ["", "0", "00"][next(3)]))
                .collect();
            s += &release.join(".");
            // A pre-release label written without its number would take
            // a following `-N` as that number.
            let mut pre_open = false;
            if let Some((kind, n)) = self.pre {
                let words: &[&str] = match kind {
                    0 => &["a", "alpha", "A", "Alpha"],
                    1 => &["b", "beta", "B", "BETA"],
                    _ => &["rc", "c", "pre", "preview", "RC"],
                };
                s += sep(next(4));
                s += words[next(words.len())];
                match n {
                    Some(n) => s += &format!("{}{n}", sep(next(4))),
                    None if next(2) == 0 => s += "0",
                    None => pre_open = true,
                }
            }
            if let Some(n) = self.post {
                match n {
                    // The bare `-N` form needs a number.
                    Some(n) if !pre_open && next(3) == 0 => s += &format!("-{n}"),
                    _ => {
                        s += sep(next(4));
                        s += ["post", "rev", "r", "POST"][next(4)];
                        match n {
                            Some(n) => s += &format!("{}{n}", sep(next(4))),
                            None if next(2) == 0 => s += "0",
                            None => {}
                        }
                    }
                }
            }
            if let Some(n) = self.dev {
                s += sep(next(4));
                s += ["dev", "DEV", "Dev"][next(3)];
                match n {
                    Some(n) => s += &format!("{}{n}", sep(next(4))),
                    None if next(2) == 0 => s += "0",
                    None => {}
                }
            }
            for (i, seg) in self.local.iter().enumerate() {
                s += if i == 0 { "+" } else { sep(1 + next(3)) };
                if next(2) == 0 {
                    s += &seg.to_ascii_uppercase();
                } else {
                    s += seg;
                }
            }
            s += ["", " ", "\n"][next(3)];
            s
        }
    }

    proptest! {
        #[test]
        fn every_spelling_normalizes_the_same(
            p in parts(),
            choices in proptest::collection::vec(any::<u8>(), 1..40),
        ) {
            let canonical = p.canonical();
            let spelled = p.spelled(&choices);
            let a = spelled.parse::<Pep440Version>();
            prop_assert!(a.is_ok(), "{:?} did not parse: {:?}", spelled, a);
            let a = v(&spelled);
            prop_assert_eq!(a.to_string(), canonical.clone(), "{:?}", spelled);
            prop_assert_eq!(&a, &v(&canonical));
        }

        #[test]
        fn antisymmetric(a in parts(), b in parts()) {
            let (a, b) = (v(&a.canonical()), v(&b.canonical()));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
        }

        #[test]
        fn transitive(a in parts(), b in parts(), c in parts()) {
            let mut vs = [v(&a.canonical()), v(&b.canonical()), v(&c.canonical())];
            vs.sort();
            prop_assert!(vs[0] <= vs[1] && vs[1] <= vs[2] && vs[0] <= vs[2]);
            if vs[0] == vs[1] {
                prop_assert_eq!(vs[0].cmp(&vs[2]), vs[1].cmp(&vs[2]));
            }
        }

        #[test]
        fn trailing_zeros_do_not_matter(p in parts(), zeros in 1..4usize, c in parts()) {
            let mut padded = p.clone();
            padded.release.extend(std::iter::repeat_n(0, zeros));
            let (a, b, c) = (v(&p.canonical()), v(&padded.canonical()), v(&c.canonical()));
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.cmp(&c), b.cmp(&c));
        }

        #[test]
        fn display_round_trips(p in parts()) {
            let parsed = v(&p.canonical());
            let shown = parsed.to_string();
            prop_assert_eq!(&shown, &p.canonical());
            prop_assert_eq!(v(&shown).to_string(), shown);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = s.parse::<Pep440Version>();
        }

        #[test]
        fn parse_never_panics_on_near_versions(s in "[ vV0-9!.a-eprstv+_-]{0,30}") {
            let _ = s.parse::<Pep440Version>();
        }
    }
}
