//! OSV advisories: the schema (<https://ossf.github.io/osv-schema/>), a
//! database loaded from a directory or a zip archive, and matching of
//! installed packages against affected ranges with each ecosystem's
//! version ordering.

pub mod cvss;
mod db;
mod model;

pub use db::{AdvisoryDb, Fingerprint, fingerprint};
pub use model::{Advisory, Affected, AffectedPackage, Event, Range, RangeType, SeverityScore};

use serde::{Deserialize, Serialize};

/// Qualitative severity, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// No rating available (no CVSS vector, no database severity).
    #[default]
    Unknown,
    /// CVSS 0.1 to 3.9.
    Low,
    /// CVSS 4.0 to 6.9 (GitHub's "moderate").
    Medium,
    /// CVSS 7.0 to 8.9.
    High,
    /// CVSS 9.0 to 10.0.
    Critical,
}

impl Severity {
    /// The rating for a CVSS base score (0.0 is `Unknown`: nothing to rate).
    ///
    /// ```
    /// use wharf_scan::osv::Severity;
    /// assert_eq!(Severity::from_score(9.8), Severity::Critical);
    /// assert_eq!(Severity::from_score(5.3), Severity::Medium);
    /// ```
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// Reads a database rating (`CRITICAL`, `HIGH`, `MODERATE`/`MEDIUM`,
    /// `LOW`), in any case.
    pub fn from_label(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "high" | "important" => Some(Severity::High),
            "medium" | "moderate" => Some(Severity::Medium),
            "low" | "negligible" => Some(Severity::Low),
            "unknown" => Some(Severity::Unknown),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` honours width and alignment (report tables).
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::from_label(s).ok_or_else(|| {
            format!("unknown severity {s:?}: expected low, medium, high or critical")
        })
    }
}
