//! The OSV schema, as far as matching needs it. Unknown fields are ignored;
//! `details` (long prose) is not kept in memory.

use serde::{Deserialize, Serialize};

use super::Severity;

/// One advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// `GHSA-...`, `PYSEC-...`, `RUSTSEC-...`, `GO-...`, `DSA-...`, `CVE-...`
    pub id: String,
    /// Last modification (RFC 3339).
    #[serde(default)]
    pub modified: String,
    /// Set when the advisory was withdrawn; such advisories never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// Other ids for the same vulnerability (often CVEs).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Related ids.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// One line.
    #[serde(default)]
    pub summary: String,
    /// Scores (CVSS vectors).
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    /// What is affected.
    #[serde(default)]
    pub affected: Vec<Affected>,
    /// Database-specific data (GitHub's `severity` is read from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

/// A severity score entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityScore {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector (or label).
    pub score: String,
}

/// One affected package with its ranges and versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The package.
    pub package: Option<AffectedPackage>,
    /// Ranges of affected versions.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Explicitly enumerated affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Per-package scores.
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    /// Ecosystem-specific data (some databases put `severity` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<serde_json::Value>,
    /// Database-specific data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

/// The package an `affected` entry is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedPackage {
    /// `Debian:12`, `Alpine:v3.19`, `PyPI`, `npm`, `crates.io`, `Go`, ...
    pub ecosystem: String,
    /// The package name in that ecosystem.
    pub name: String,
    /// Its package URL, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// How a range's versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RangeType {
    /// SemVer 2.0.
    #[serde(rename = "SEMVER")]
    Semver,
    /// The ecosystem's own ordering.
    #[serde(rename = "ECOSYSTEM")]
    Ecosystem,
    /// Commits (not matchable against installed versions).
    #[serde(rename = "GIT")]
    Git,
    /// Anything else.
    #[serde(other)]
    Other,
}

/// A range: events in version order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// The ordering.
    #[serde(rename = "type")]
    pub kind: RangeType,
    /// The events.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A range event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Vulnerable from this version (`"0"`: from the beginning).
    Introduced(String),
    /// Fixed in this version.
    Fixed(String),
    /// Vulnerable up to and including this version.
    LastAffected(String),
    /// Not vulnerable from this version (a range limit).
    Limit(String),
}

impl Event {
    /// The event's version.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

impl Advisory {
    /// The advisory's severity and, when a CVSS vector gave it, the score:
    /// the highest CVSS v3/v2 base score among the advisory's and the
    /// affected entry's vectors; else a database rating (GitHub's
    /// `database_specific.severity`, or one in `ecosystem_specific`); else
    /// unknown. CVSS v4 vectors are not scored.
    pub fn rating(&self, affected: Option<&Affected>) -> (Severity, Option<f64>) {
        let scores = self
            .severity
            .iter()
            .chain(affected.into_iter().flat_map(|a| a.severity.iter()));
        let best = scores
            .filter_map(|s| super::cvss::base_score(&s.score))
            .fold(None, |acc: Option<f64>, s| {
                Some(acc.map_or(s, |a| a.max(s)))
            });
        if let Some(score) = best {
            return (Severity::from_score(score), Some(score));
        }
        let label = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| v.get("severity"))
                .and_then(|s| s.as_str())
                .and_then(Severity::from_label)
        };
        let found = affected
            .and_then(|a| label(&a.ecosystem_specific).or_else(|| label(&a.database_specific)))
            .or_else(|| label(&self.database_specific))
            .or_else(|| {
                // Ubuntu's records carry `{"type": "Ubuntu", "score": "medium"}`.
                self.severity
                    .iter()
                    .find(|s| !s.kind.starts_with("CVSS"))
                    .and_then(|s| Severity::from_label(&s.score))
            });
        (found.unwrap_or(Severity::Unknown), None)
    }
}
