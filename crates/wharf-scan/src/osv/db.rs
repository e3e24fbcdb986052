//! An advisory database loaded from OSV JSON files, indexed by ecosystem
//! and package name, and the matching of inventories against it.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Severity;
use super::model::{Advisory, Affected, Event, RangeType};
use crate::error::{ScanError, ScanResult};
use crate::layer::Inventory;
use crate::package::{Distro, Package, normalize_pypi_name};
use crate::report::Finding;
use crate::version::{self, Ecosystem, Version};

/// Largest advisory file read (the biggest real OSV records are a few
/// hundred KiB).
const MAX_ADVISORY_BYTES: u64 = 16 << 20;
/// Most files visited in a directory tree or zip archive.
const MAX_FILES: usize = 2_000_000;
const MAX_WARNINGS: usize = 100;

/// Identifies the state of an advisory source (file names, sizes and
/// modification times), so a change can be noticed without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fingerprint of an advisory directory or zip file: a hash of every
/// advisory file's relative path, size and modification time. Cheap (no
/// file is read), so it can be polled.
pub fn fingerprint(path: &Path) -> ScanResult<Fingerprint> {
    let files = list(path)?;
    Ok(fingerprint_of(&files))
}

fn fingerprint_of(files: &[(PathBuf, String, u64, u128)]) -> Fingerprint {
    let mut text = String::new();
    for (_, rel, len, mtime) in files {
        text.push_str(&format!("{rel}\t{len}\t{mtime}\n"));
    }
    let d = wharf_types::Digest::sha256(text.as_bytes());
    Fingerprint(format!("sha256:{}", d.hex()))
}

/// Advisory files under `path` (a directory, searched recursively, or one
/// zip file), sorted: (full path, relative name, size, mtime in ns).
fn list(path: &Path) -> ScanResult<Vec<(PathBuf, String, u64, u128)>> {
    let err = |message: String| ScanError::Advisories {
        path: path.to_owned(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    let stamp = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    let mut out = Vec::new();
    if meta.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((path.to_owned(), name, meta.len(), stamp(&meta)));
        return Ok(out);
    }
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let p = entry.path();
            let m = std::fs::metadata(&p).map_err(|e| err(format!("{}: {e}", p.display())))?;
            if m.is_dir() {
                dirs.push(p);
            } else if name.ends_with(".json") || name.ends_with(".zip") {
                let rel = p
                    .strip_prefix(path)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or(name);
                out.push((p, rel, m.len(), stamp(&m)));
                if out.len() > MAX_FILES {
                    return Err(err(format!("more than {MAX_FILES} files")));
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Loaded advisories, indexed for matching.
#[derive(Debug, Default)]
pub struct AdvisoryDb {
    advisories: Vec<Advisory>,
    /// (ecosystem, advisory package name) -> (advisory, affected entry)
    index: HashMap<(Ecosystem, String), Vec<(usize, usize)>>,
    /// Every id, alias and upstream id -> the advisories that carry it.
    related: HashMap<String, Vec<usize>>,
    fingerprint: Fingerprint,
    warnings: Vec<String>,
}

impl AdvisoryDb {
    /// Loads every `*.json` OSV record under a directory (recursively, and
    /// inside any `*.zip` there), or in one zip file such as OSV's
    /// per-ecosystem `all.zip`. Unreadable records are skipped with a
    /// warning ([`AdvisoryDb::warnings`]); a missing path is an error.
    pub fn load(path: &Path) -> ScanResult<AdvisoryDb> {
        let files = list(path)?;
        let mut db = AdvisoryDb {
            fingerprint: fingerprint_of(&files),
            ..AdvisoryDb::default()
        };
        let mut advisories = Vec::new();
        for (full, rel, len, _) in &files {
            if rel.ends_with(".zip") || (full == path && !rel.ends_with(".json")) {
                if let Err(e) = db.load_zip(full, &mut advisories) {
                    db.warn(format!("{rel}: {e}"));
                }
            } else if *len > MAX_ADVISORY_BYTES {
                db.warn(format!(
                    "{rel}: larger than {MAX_ADVISORY_BYTES} bytes; skipped"
                ));
            } else {
                match std::fs::read(full) {
                    Ok(data) => db.parse(rel, &data, &mut advisories),
                    Err(e) => db.warn(format!("{rel}: {e}")),
                }
            }
        }
        db.index_all(advisories);
        Ok(db)
    }

    fn load_zip(&mut self, path: &Path, into: &mut Vec<Advisory>) -> Result<(), String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut archive =
            zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
        if archive.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} entries"));
        }
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
            let name = entry.name().to_owned();
            if !entry.is_file() || !name.ends_with(".json") {
                continue;
            }
            if entry.size() > MAX_ADVISORY_BYTES {
                self.warn(format!(
                    "{name}: larger than {MAX_ADVISORY_BYTES} bytes; skipped"
                ));
                continue;
            }
            let mut data = Vec::new();
            // The declared size may lie; the read is bounded regardless.
            if let Err(e) = (&mut entry).take(MAX_ADVISORY_BYTES).read_to_end(&mut data) {
                self.warn(format!("{name}: {e}"));
                continue;
            }
            self.parse(&name, &data, into);
        }
        Ok(())
    }

    fn parse(&mut self, name: &str, data: &[u8], into: &mut Vec<Advisory>) {
        match serde_json::from_slice::<Advisory>(data) {
            Ok(a) => into.push(a),
            Err(e) => self.warn(format!("{name}: not an OSV record: {e}")),
        }
    }

    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        }
    }

    /// A database of the given advisories (fingerprinted by content).
    pub fn from_advisories(advisories: Vec<Advisory>) -> AdvisoryDb {
        let json = serde_json::to_vec(&advisories).unwrap_or_default();
        let d = wharf_types::Digest::sha256(&json);
        let mut db = AdvisoryDb {
            fingerprint: Fingerprint(format!("sha256:{}", d.hex())),
            ..AdvisoryDb::default()
        };
        db.index_all(advisories);
        db
    }

    fn index_all(&mut self, advisories: Vec<Advisory>) {
        // A record may be present twice (a directory and a zip); keep the
        // most recently modified.
        let mut by_id: HashMap<String, Advisory> = HashMap::new();
        for a in advisories {
            match by_id.get(&a.id) {
                Some(old) if old.modified >= a.modified => {}
                _ => {
                    by_id.insert(a.id.clone(), a);
                }
            }
        }
        let mut advisories: Vec<Advisory> = by_id
            .into_values()
            .filter(|a| a.withdrawn.is_none())
            .collect();
        advisories.sort_by(|a, b| a.id.cmp(&b.id));
        for (ai, a) in advisories.iter().enumerate() {
            for (fi, f) in a.affected.iter().enumerate() {
                let Some(pkg) = &f.package else { continue };
                let Ok((eco, _)) = Ecosystem::from_osv(&pkg.ecosystem) else {
                    continue; // an ecosystem this scanner does not read
                };
                self.index
                    .entry((eco, index_name(eco, &pkg.name)))
                    .or_default()
                    .push((ai, fi));
            }
        }
        for (ai, a) in advisories.iter().enumerate() {
            for id in std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream) {
                self.related.entry(id.clone()).or_default().push(ai);
            }
        }
        self.advisories = advisories;
    }

    /// Number of advisories loaded.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Whether no advisory is loaded.
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The source's fingerprint at load time.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Records skipped while loading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The advisory with this id.
    pub fn get(&self, id: &str) -> Option<&Advisory> {
        self.advisories
            .binary_search_by(|a| a.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.advisories[i])
    }

    /// Every advisory that affects a package of the inventory, one finding
    /// per (advisory, package), most severe first.
    pub fn matches(&self, inventory: &Inventory) -> Vec<Finding> {
        let distro = inventory.distro.as_ref();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for p in &inventory.packages {
            for f in self.match_package(p, distro) {
                if seen.insert((f.id.clone(), f.purl.clone())) {
                    out.push(f);
                }
            }
        }
        out.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.package.cmp(&b.package))
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// The findings for one package.
    pub fn match_package(&self, p: &Package, distro: Option<&Distro>) -> Vec<Finding> {
        let eco = p.kind.osv_ecosystem(distro);
        let name = index_name(eco, &p.advisory_name());
        let Some(entries) = self.index.get(&(eco, name)) else {
            return Vec::new();
        };
        let raw_version = p.advisory_version();
        let Ok(version) = parse(eco, raw_version) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &(ai, fi) in entries {
            let a = &self.advisories[ai];
            let f = &a.affected[fi];
            let Some(pkg) = &f.package else { continue };
            let release = Ecosystem::from_osv(&pkg.ecosystem)
                .ok()
                .and_then(|(_, r)| r);
            if !release_matches(eco, release, distro) {
                continue;
            }
            if !affects(eco, f, raw_version, &version) {
                continue;
            }
            let (severity, score) = self.rating(ai, f);
            out.push(Finding {
                id: a.id.clone(),
                aliases: a.aliases.clone(),
                summary: a.summary.clone(),
                severity,
                score,
                package: p.name.clone(),
                version: p.version.clone(),
                kind: p.kind,
                purl: p.purl(distro),
                location: p.location.clone(),
                ecosystem: pkg.ecosystem.clone(),
                advisory_package: pkg.name.clone(),
                fixed: fixed_versions(f),
            });
        }
        out
    }
}

impl AdvisoryDb {
    /// An advisory's rating; when it has none of its own (distribution
    /// records often carry none), the highest rating among loaded records
    /// about the same vulnerability (sharing an id, alias or upstream id,
    /// e.g. the GitHub or NVD-scored record of its CVE).
    fn rating(&self, ai: usize, f: &Affected) -> (Severity, Option<f64>) {
        let a = &self.advisories[ai];
        let own = a.rating(Some(f));
        if own.0 != Severity::Unknown {
            return own;
        }
        let mut best = own;
        for id in std::iter::once(&a.id).chain(&a.aliases).chain(&a.upstream) {
            for &other in self.related.get(id).into_iter().flatten() {
                if other == ai {
                    continue;
                }
                let r = self.advisories[other].rating(None);
                if r.0 > best.0 || (r.0 == best.0 && r.1 > best.1) {
                    best = r;
                }
            }
        }
        best
    }
}

fn index_name(eco: Ecosystem, name: &str) -> String {
    match eco {
        Ecosystem::PyPI => normalize_pypi_name(name),
        _ => name.to_owned(),
    }
}

/// Parses a version in an ecosystem; Go versions are compared with their
/// `v` (OSV writes Go versions without it).
fn parse(eco: Ecosystem, v: &str) -> Result<Version, version::VersionError> {
    if eco == Ecosystem::Go && !v.starts_with('v') {
        version::parse(eco, &format!("v{v}"))
    } else {
        version::parse(eco, v)
    }
}

/// Whether an advisory for `release` (`12` of `Debian:12`, `v3.19` of
/// `Alpine:v3.19`, `22.04:LTS` of `Ubuntu:22.04:LTS`) applies to the image's
/// distribution. Without a known distribution every release applies.
fn release_matches(eco: Ecosystem, release: Option<&str>, distro: Option<&Distro>) -> bool {
    let (Some(release), Some(d)) = (release, distro) else {
        return true;
    };
    if d.version_id.is_empty() {
        return true;
    }
    match eco {
        Ecosystem::Debian => {
            let major = d.version_id.split('.').next().unwrap_or(&d.version_id);
            release == major || release == d.version_id
        }
        Ecosystem::Ubuntu => release.split(':').any(|part| part == d.version_id),
        Ecosystem::Alpine => {
            let release = release.trim_start_matches('v');
            let mut parts = d.version_id.split('.');
            let major_minor = match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => format!("{a}.{b}"),
                _ => d.version_id.clone(),
            };
            release == major_minor || release == "edge"
        }
        _ => true,
    }
}

/// Whether an affected entry covers the version: listed in `versions`, or
/// inside one of its SEMVER/ECOSYSTEM ranges.
fn affects(eco: Ecosystem, f: &Affected, raw: &str, v: &Version) -> bool {
    let listed = f.versions.iter().any(|x| {
        x == raw || parse(eco, x).is_ok_and(|x| x.partial_cmp(v) == Some(std::cmp::Ordering::Equal))
    });
    if listed {
        return true;
    }
    f.ranges.iter().any(|r| {
        matches!(r.kind, RangeType::Semver | RangeType::Ecosystem)
            && range_contains(eco, &r.events, v)
    })
}

/// OSV's range evaluation: events in version order; an introduction at or
/// below the version makes it affected, a fix or limit at or below it (or a
/// last-affected version below it) makes it not.
fn range_contains(eco: Ecosystem, events: &[Event], v: &Version) -> bool {
    use std::cmp::Ordering;
    // (parsed version, or None for the "0" sentinel; event)
    let mut parsed: Vec<(Option<Version>, &Event)> = Vec::new();
    for e in events {
        if matches!(e, Event::Introduced(x) if x == "0") {
            parsed.push((None, e));
        } else if let Ok(p) = parse(eco, e.version()) {
            parsed.push((Some(p), e));
        }
        // An event whose version does not parse cannot be placed; it is
        // left out rather than guessed.
    }
    // Insertion sort: the comparison is only partial, and a sort must never
    // panic on an inconsistent order.
    for i in 1..parsed.len() {
        let mut j = i;
        while j > 0 {
            let less = match (&parsed[j].0, &parsed[j - 1].0) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => a.partial_cmp(b) == Some(Ordering::Less),
                _ => false,
            };
            if !less {
                break;
            }
            parsed.swap(j, j - 1);
            j -= 1;
        }
    }
    let mut affected = false;
    for (ev, e) in &parsed {
        let cmp = ev
            .as_ref()
            .map_or(Some(Ordering::Greater), |ev| v.partial_cmp(ev));
        let at_or_above = matches!(cmp, Some(Ordering::Greater | Ordering::Equal));
        match e {
            Event::Introduced(_) if at_or_above => affected = true,
            Event::Fixed(_) | Event::Limit(_) if at_or_above => affected = false,
            Event::LastAffected(_) if cmp == Some(Ordering::Greater) => affected = false,
            _ => {}
        }
    }
    affected
}

fn fixed_versions(f: &Affected) -> Vec<String> {
    let mut out: Vec<String> = f
        .ranges
        .iter()
        .flat_map(|r| r.events.iter())
        .filter_map(|e| match e {
            Event::Fixed(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distro(id: &str, v: &str) -> Distro {
        Distro {
            id: id.into(),
            version_id: v.into(),
            pretty_name: String::new(),
        }
    }

    #[test]
    fn releases() {
        let d12 = distro("debian", "12");
        assert!(release_matches(Ecosystem::Debian, Some("12"), Some(&d12)));
        assert!(!release_matches(Ecosystem::Debian, Some("11"), Some(&d12)));
        assert!(release_matches(Ecosystem::Debian, None, Some(&d12)));
        assert!(release_matches(Ecosystem::Debian, Some("11"), None));
        let jammy = distro("ubuntu", "22.04");
        assert!(release_matches(
            Ecosystem::Ubuntu,
            Some("22.04:LTS"),
            Some(&jammy)
        ));
        assert!(release_matches(
            Ecosystem::Ubuntu,
            Some("Pro:22.04:LTS"),
            Some(&jammy)
        ));
        assert!(!release_matches(
            Ecosystem::Ubuntu,
            Some("20.04:LTS"),
            Some(&jammy)
        ));
        let alpine = distro("alpine", "3.19.1");
        assert!(release_matches(
            Ecosystem::Alpine,
            Some("v3.19"),
            Some(&alpine)
        ));
        assert!(!release_matches(
            Ecosystem::Alpine,
            Some("v3.1"),
            Some(&alpine)
        ));
        // A distribution without VERSION_ID (e.g. Debian testing) matches all.
        assert!(release_matches(
            Ecosystem::Debian,
            Some("13"),
            Some(&distro("debian", ""))
        ));
    }

    #[test]
    fn unrated_records_take_the_rating_of_related_ones() {
        let records = serde_json::json!([
            // Debian's record of the vulnerability: no rating of its own.
            {"id": "DEBIAN-CVE-2023-39325", "upstream": ["CVE-2023-39325"],
             "affected": [{"package": {"ecosystem": "Debian:12", "name": "golang-1.19"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.19.8-2+deb12u1"}]}]}]},
            // GitHub's record of the same CVE, scored.
            {"id": "GHSA-4374-p667-p6c8", "aliases": ["CVE-2023-39325"],
             "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
             "affected": [{"package": {"ecosystem": "Go", "name": "golang.org/x/net"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.17.0"}]}]}]},
            // Unrelated, unrated.
            {"id": "DEBIAN-CVE-2000-0001", "affected": [{"package": {"ecosystem": "Debian:12", "name": "golang-1.19"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.19.8-2+deb12u1"}]}]}]}
        ]);
        let db = AdvisoryDb::from_advisories(serde_json::from_value(records).unwrap());
        let mut p = Package::new(crate::PackageKind::Deb, "golang-1.19-go", "1.19.8-2", "x");
        p.source_name = Some("golang-1.19".into());
        let f = db.match_package(&p, Some(&distro("debian", "12")));
        let rated: Vec<(&str, Severity, Option<f64>)> = f
            .iter()
            .map(|f| (f.id.as_str(), f.severity, f.score))
            .collect();
        assert!(
            rated.contains(&("DEBIAN-CVE-2023-39325", Severity::High, Some(7.5))),
            "{rated:?}"
        );
        assert!(
            rated.contains(&("DEBIAN-CVE-2000-0001", Severity::Unknown, None)),
            "{rated:?}"
        );
    }

    #[test]
    fn ubuntu_packages_match_ubuntu_advisories() {
        let record = serde_json::json!({
            "id": "UBUNTU-CVE-2023-5678", "modified": "2023-11-08T00:00:00Z", "upstream": ["CVE-2023-5678"],
            "severity": [{"type": "Ubuntu", "score": "low"}],
            "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.12"}]}]}]
        });
        let db = AdvisoryDb::from_advisories(vec![serde_json::from_value(record).unwrap()]);
        let mut p = Package::new(crate::PackageKind::Deb, "libssl3", "3.0.2-0ubuntu1.10", "x");
        p.source_name = Some("openssl".into());
        let jammy = distro("ubuntu", "22.04");
        let f = db.match_package(&p, Some(&jammy));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, super::super::Severity::Low);
        // The same package on Debian is not an Ubuntu package.
        assert!(
            db.match_package(&p, Some(&distro("debian", "12")))
                .is_empty()
        );
        p.version = "3.0.2-0ubuntu1.12".into();
        assert!(db.match_package(&p, Some(&jammy)).is_empty());
    }
}
