//! Python: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`.

use crate::package::{Package, PackageKind};

/// Reads `Name`, `Version` and `License` from core metadata headers.
///
/// ```
/// let p = wharf_scan::extract::python::parse_metadata(
///     "Metadata-Version: 2.1\nName: requests\nVersion: 2.25.1\n\nbody", "x").unwrap();
/// assert_eq!((p.name.as_str(), p.version.as_str()), ("requests", "2.25.1"));
/// ```
pub fn parse_metadata(text: &str, location: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    let mut license = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break; // the description body follows the headers
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(v.to_owned()),
                "version" if version.is_none() => version = Some(v.to_owned()),
                "license" if license.is_none() && !v.is_empty() && v.len() < 200 => {
                    license = Some(v.to_owned())
                }
                _ => {}
            }
        }
    }
    let mut p = Package::new(PackageKind::PyPI, name?, version?, location);
    p.license = license;
    Some(p)
}
