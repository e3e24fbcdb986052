//! Arbitrary-length non-negative decimal numbers.
//!
//! Version strings routinely carry numbers longer than any machine integer
//! (timestamps, commit dates, `20050718`-style releases, or hostile input),
//! so numbers are kept as digit strings and compared by length, then by
//! digits. No arithmetic is ever done on them, so nothing can overflow.

use std::cmp::Ordering;
use std::fmt;

/// A decimal number stored without leading zeros (`"0"` for zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Decimal(Box<str>);

impl Decimal {
    /// Builds a number from a non-empty run of ASCII digits.
    ///
    /// The caller guarantees `digits` is non-empty and all ASCII digits.
    pub(crate) fn from_digits(digits: &str) -> Self {
        debug_assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
        Decimal(strip_leading_zeros(digits).into())
    }

    /// Zero.
    pub(crate) fn zero() -> Self {
        Decimal("0".into())
    }

    /// Whether this is zero.
    pub(crate) fn is_zero(&self) -> bool {
        &*self.0 == "0"
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer number is a larger one.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `digits` without its leading zeros, or `"0"` when it is all zeros.
pub(crate) fn strip_leading_zeros(digits: &str) -> &str {
    let stripped = digits.trim_start_matches('0');
    if stripped.is_empty() && !digits.is_empty() {
        "0"
    } else {
        stripped
    }
}

/// Compares two runs of ASCII digits by numeric value, at any length.
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let (a, b) = (strip_leading_zeros(a), strip_leading_zeros(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The end of the run of ASCII digits in `bytes` starting at `start`.
pub(crate) fn digit_run_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_by_value_at_any_length() {
        assert_eq!(cmp_digits("0010", "10"), Ordering::Equal);
        assert_eq!(cmp_digits("9", "10"), Ordering::Less);
        assert_eq!(cmp_digits("000", "0"), Ordering::Equal);
        let huge = "1".repeat(200);
        let huger = format!("{huge}0");
        assert_eq!(cmp_digits(&huge, &huger), Ordering::Less);
        assert_eq!(
            Decimal::from_digits("00042").cmp(&Decimal::from_digits("42")),
            Ordering::Equal
        );
        assert_eq!(Decimal::from_digits("000").to_string(), "0");
        assert!(Decimal::from_digits("000").is_zero());
    }
}
