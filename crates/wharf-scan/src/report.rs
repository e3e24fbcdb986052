//! The vulnerability report: what was scanned, with which advisories, and
//! what matched.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::layer::Inventory;
use crate::osv::{AdvisoryDb, Severity};
use crate::package::{Distro, Package, PackageKind};

/// The report's media type (its artifact type as a referrer).
pub const REPORT_MEDIA_TYPE: &str = "application/vnd.wharf.scan.report.v1+json";

/// One advisory affecting one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The advisory id (`DSA-5417-1`, `GHSA-...`, `RUSTSEC-...`, `GO-...`).
    pub id: String,
    /// Other ids (CVEs).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The advisory's summary.
    #[serde(default)]
    pub summary: String,
    /// Severity.
    pub severity: Severity,
    /// CVSS base score, when a vector gave the severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The installed package's name.
    pub package: String,
    /// Its installed version.
    pub version: String,
    /// Its kind.
    pub kind: PackageKind,
    /// Its package URL.
    pub purl: String,
    /// Where it was found in the image.
    pub location: String,
    /// The advisory's ecosystem (`Debian:12`, `PyPI`, ...).
    pub ecosystem: String,
    /// The package name the advisory uses (a source package for distributions).
    pub advisory_package: String,
    /// Versions that fix it.
    #[serde(default)]
    pub fixed: Vec<String>,
}

impl Finding {
    /// Whether an exemption list names this finding's id or one of its aliases.
    pub fn is_exempt(&self, exemptions: &HashSet<String>) -> bool {
        exemptions.contains(&self.id) || self.aliases.iter().any(|a| exemptions.contains(a))
    }
}

/// What was scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The repository.
    pub repository: String,
    /// The manifest digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
}

/// The advisory data used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvisoryInfo {
    /// The source's fingerprint (changes when the data changes).
    pub fingerprint: String,
    /// How many advisories were loaded.
    pub count: usize,
}

/// Counts by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Critical findings.
    pub critical: usize,
    /// High findings.
    pub high: usize,
    /// Medium findings.
    pub medium: usize,
    /// Low findings.
    pub low: usize,
    /// Findings without a rating.
    pub unknown: usize,
    /// All findings.
    pub total: usize,
}

impl Summary {
    /// Counts findings.
    pub fn of(findings: &[Finding]) -> Summary {
        let mut s = Summary::default();
        for f in findings {
            match f.severity {
                Severity::Critical => s.critical += 1,
                Severity::High => s.high += 1,
                Severity::Medium => s.medium += 1,
                Severity::Low => s.low += 1,
                Severity::Unknown => s.unknown += 1,
            }
            s.total += 1;
        }
        s
    }
}

/// A scan report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Format version (1).
    pub schema_version: u32,
    /// The image.
    pub subject: Subject,
    /// The scanner (`wharf-scan` and its version).
    pub scanner: String,
    /// When the findings were computed (RFC 3339).
    pub scanned_at: String,
    /// The advisory data used.
    pub advisories: AdvisoryInfo,
    /// The distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<Distro>,
    /// Every package found (so findings can be recomputed when the
    /// advisories change, without reading the layers again).
    pub packages: Vec<Package>,
    /// Matches, most severe first.
    pub findings: Vec<Finding>,
    /// Counts by severity.
    pub summary: Summary,
    /// Problems that did not stop the scan.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Why the image could not be scanned (a malformed layer, a limit
    /// exceeded); such a report has no packages and no findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// A report for an image whose content could not be scanned.
    pub fn failed(
        subject: Subject,
        db: &AdvisoryDb,
        error: impl Into<String>,
        now: std::time::SystemTime,
    ) -> Report {
        Report {
            schema_version: 1,
            subject,
            scanner: scanner_name(),
            scanned_at: crate::time::rfc3339(now),
            advisories: AdvisoryInfo {
                fingerprint: db.fingerprint().0.clone(),
                count: db.len(),
            },
            distro: None,
            packages: Vec::new(),
            findings: Vec::new(),
            summary: Summary::default(),
            warnings: Vec::new(),
            error: Some(error.into()),
        }
    }

    /// Matches an inventory against advisories.
    pub fn new(
        subject: Subject,
        inventory: &Inventory,
        db: &AdvisoryDb,
        now: std::time::SystemTime,
    ) -> Report {
        let findings = db.matches(inventory);
        Report {
            schema_version: 1,
            subject,
            scanner: scanner_name(),
            scanned_at: crate::time::rfc3339(now),
            advisories: AdvisoryInfo {
                fingerprint: db.fingerprint().0.clone(),
                count: db.len(),
            },
            distro: inventory.distro.clone(),
            packages: inventory.packages.clone(),
            summary: Summary::of(&findings),
            findings,
            warnings: inventory.warnings.clone(),
            error: None,
        }
    }

    /// The inventory the report was computed from.
    pub fn inventory(&self) -> Inventory {
        Inventory {
            distro: self.distro.clone(),
            packages: self.packages.clone(),
            warnings: self.warnings.clone(),
        }
    }

    /// Findings at or above `threshold` that no exemption names.
    pub fn blocking<'a>(
        &'a self,
        threshold: Severity,
        exemptions: &HashSet<String>,
    ) -> Vec<&'a Finding> {
        self.findings
            .iter()
            .filter(|f| {
                f.severity >= threshold
                    && f.severity != Severity::Unknown
                    && !f.is_exempt(exemptions)
            })
            .collect()
    }

    /// A plain-text table for terminals.
    pub fn to_table(&self) -> String {
        if let Some(e) = &self.error {
            return format!(
                "{}@{}\nnot scanned: {e}\n",
                self.subject.repository, self.subject.digest
            );
        }
        let mut out = format!(
            "{}@{}\n{} packages, {} findings (critical {}, high {}, medium {}, low {}, unknown {}); {} advisories\n",
            self.subject.repository,
            self.subject.digest,
            self.packages.len(),
            self.summary.total,
            self.summary.critical,
            self.summary.high,
            self.summary.medium,
            self.summary.low,
            self.summary.unknown,
            self.advisories.count,
        );
        if !self.findings.is_empty() {
            out.push_str(&format!(
                "\n{:<9} {:<22} {:<28} {:<22} {}\n",
                "SEVERITY", "ADVISORY", "PACKAGE", "INSTALLED", "FIXED IN"
            ));
        }
        for f in &self.findings {
            out.push_str(&format!(
                "{:<9} {:<22} {:<28} {:<22} {}\n",
                f.severity,
                f.id,
                f.package,
                f.version,
                f.fixed.join(", ")
            ));
        }
        out
    }
}

/// `wharf-scan/<version>`.
pub fn scanner_name() -> String {
    format!("wharf-scan/{}", env!("CARGO_PKG_VERSION"))
}
