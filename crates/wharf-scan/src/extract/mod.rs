//! Package extraction: which files in a root filesystem describe installed
//! packages, and the parsers that read them.

pub mod apk;
pub mod cargo;
pub mod dpkg;
pub mod elf;
pub mod go;
pub mod npm;
pub mod python;

use crate::package::Package;

/// What a file in an image is, for package extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// `/var/lib/dpkg/status`
    DpkgStatus,
    /// `/var/lib/dpkg/status.d/<pkg>` (distroless images)
    DpkgStatusD,
    /// `/lib/apk/db/installed`
    ApkInstalled,
    /// `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` or an `*.egg-info` file
    PythonMetadata,
    /// `package-lock.json` (also `npm-shrinkwrap.json`)
    NpmLock,
    /// `node_modules/<name>/package.json`
    NpmPackageJson,
    /// `Cargo.lock`
    CargoLock,
    /// `/etc/os-release` or `/usr/lib/os-release`
    OsRelease,
}

/// Classifies a normalized path (relative, `/`-separated, no leading `/`).
///
/// ```
/// use wharf_scan::extract::{classify, FileKind};
/// assert_eq!(classify("var/lib/dpkg/status"), Some(FileKind::DpkgStatus));
/// assert_eq!(classify("usr/lib/python3/dist-packages/requests-2.25.1.dist-info/METADATA"),
///            Some(FileKind::PythonMetadata));
/// assert_eq!(classify("app/node_modules/@scope/x/package.json"), Some(FileKind::NpmPackageJson));
/// assert_eq!(classify("app/node_modules/x/lib/package.json"), None);
/// ```
pub fn classify(path: &str) -> Option<FileKind> {
    match path {
        "var/lib/dpkg/status" => return Some(FileKind::DpkgStatus),
        "lib/apk/db/installed" => return Some(FileKind::ApkInstalled),
        "etc/os-release" | "usr/lib/os-release" => return Some(FileKind::OsRelease),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("var/lib/dpkg/status.d/") {
        return (!rest.contains('/') && !rest.ends_with(".md5sums") && !rest.is_empty())
            .then_some(FileKind::DpkgStatusD);
    }
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    match file {
        "METADATA" if dir.ends_with(".dist-info") => return Some(FileKind::PythonMetadata),
        "PKG-INFO" if dir.ends_with(".egg-info") => return Some(FileKind::PythonMetadata),
        "package-lock.json" | "npm-shrinkwrap.json" if !dir.contains("node_modules") => {
            return Some(FileKind::NpmLock);
        }
        "Cargo.lock" => return Some(FileKind::CargoLock),
        "package.json" => {
            // Only a package's own manifest: node_modules/<name>/package.json
            // or node_modules/@scope/<name>/package.json.
            let parts: Vec<&str> = dir.rsplit('/').take(3).collect();
            let direct = parts.len() >= 2 && parts[1] == "node_modules";
            let scoped =
                parts.len() >= 3 && parts[1].starts_with('@') && parts[2] == "node_modules";
            return (direct || scoped).then_some(FileKind::NpmPackageJson);
        }
        _ => {}
    }
    // Old-style egg-info as a single file.
    (file.ends_with(".egg-info")
        && (dir.ends_with("site-packages") || dir.ends_with("dist-packages")))
    .then_some(FileKind::PythonMetadata)
}

/// Reads the packages a classified file describes. A package without a
/// name or a version is dropped, whatever the file says.
pub fn extract(kind: FileKind, path: &str, data: &[u8]) -> Result<Vec<Package>, String> {
    extract_any(kind, path, data).map(named_only)
}

/// Keeps the packages that have a name and a version.
fn named_only(mut packages: Vec<Package>) -> Vec<Package> {
    packages.retain(|p| !p.name.is_empty() && !p.version.is_empty());
    packages
}

fn extract_any(kind: FileKind, path: &str, data: &[u8]) -> Result<Vec<Package>, String> {
    let text = || String::from_utf8_lossy(data);
    match kind {
        FileKind::DpkgStatus | FileKind::DpkgStatusD => Ok(dpkg::parse_status(
            &text(),
            path,
            kind == FileKind::DpkgStatusD,
        )),
        FileKind::ApkInstalled => Ok(apk::parse_installed(&text(), path)),
        FileKind::PythonMetadata => Ok(python::parse_metadata(&text(), path).into_iter().collect()),
        FileKind::NpmLock => npm::parse_lock(data, path),
        FileKind::NpmPackageJson => Ok(npm::parse_package_json(data, path).into_iter().collect()),
        FileKind::CargoLock => cargo::parse_lock(&text(), path),
        FileKind::OsRelease => Ok(Vec::new()),
    }
}

/// Reads the packages compiled into an executable: Go module build info
/// and Rust dependency lists embedded by `cargo auditable`.
pub fn extract_binary(path: &str, data: &[u8], max_json: u64) -> Vec<Package> {
    let mut out = go::parse_binary(data, path);
    if let Some(section) = elf::section(data, ".dep-v0") {
        out.extend(cargo::parse_auditable(section, path, max_json).unwrap_or_default());
    }
    named_only(out)
}

/// Splits RFC 822-style stanza text (dpkg, PKG-INFO headers) into
/// paragraphs of `(field, value)` pairs; continuation lines are appended.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = cur.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
