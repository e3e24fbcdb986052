//! Debian/Ubuntu: `/var/lib/dpkg/status` and `status.d/`.

use crate::package::{Package, PackageKind};

/// Reads installed packages from dpkg status text. In `status.d` files
/// (distroless images) every paragraph is installed; in `status`, only those
/// whose `Status` says `installed`.
///
/// ```
/// let text = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n\
///             Source: openssl\nVersion: 3.0.11-1~deb12u2\n\n\
///             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
/// let p = wharf_scan::extract::dpkg::parse_status(text, "var/lib/dpkg/status", false);
/// assert_eq!(p.len(), 1);
/// assert_eq!(p[0].source_name.as_deref(), Some("openssl"));
/// ```
pub fn parse_status(text: &str, location: &str, all_installed: bool) -> Vec<Package> {
    let mut out = Vec::new();
    for para in super::paragraphs(text) {
        let get = |k: &str| {
            para.iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else {
            continue;
        };
        if !all_installed
            && get("Status").is_none_or(|s| s.split_whitespace().nth(2) != Some("installed"))
        {
            continue;
        }
        let mut p = Package::new(PackageKind::Deb, name, version, location);
        p.arch = get("Architecture").map(str::to_owned);
        if let Some(src) = get("Source") {
            // "openssl" or "openssl (3.0.11-1)" when the versions differ.
            let (sname, sver) = match src.split_once('(') {
                Some((n, v)) => (n.trim(), Some(v.trim_end_matches(')').trim())),
                None => (src.trim(), None),
            };
            if !sname.is_empty() && sname != name {
                p.source_name = Some(sname.to_owned());
            }
            if let Some(v) = sver.filter(|v| !v.is_empty() && *v != version) {
                p.source_version = Some(v.to_owned());
            }
        }
        out.push(p);
    }
    out
}
