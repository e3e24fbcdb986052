//! Alpine: `/lib/apk/db/installed`.

use crate::package::{Package, PackageKind};

/// Reads the apk installed database (`P:` name, `V:` version, `A:` arch,
/// `o:` origin, `L:` licence; paragraphs separated by blank lines).
///
/// ```
/// let text = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r0\nA:x86_64\nL:Apache-2.0\no:openssl\n\n";
/// let p = wharf_scan::extract::apk::parse_installed(text, "lib/apk/db/installed");
/// assert_eq!((p[0].name.as_str(), p[0].version.as_str()), ("libcrypto3", "3.1.4-r0"));
/// assert_eq!(p[0].advisory_name(), "openssl");
/// ```
pub fn parse_installed(text: &str, location: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut fields: Vec<(char, &str)> = Vec::new();
    let mut flush = |fields: &mut Vec<(char, &str)>| {
        let get = |k: char| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
        let named = |v: &&str| !v.is_empty();
        if let (Some(name), Some(version)) = (get('P').filter(named), get('V').filter(named)) {
            let mut p = Package::new(PackageKind::Apk, name, version, location);
            p.arch = get('A').map(str::to_owned);
            p.license = get('L').map(str::to_owned);
            p.source_name = get('o').filter(|o| *o != name).map(str::to_owned);
            out.push(p);
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(key), Some(':')) = (chars.next(), chars.next()) {
            // File lists (F:, R:, Z:, ...) are many; only keep what we read.
            if matches!(key, 'P' | 'V' | 'A' | 'L' | 'o') {
                fields.push((key, line[2..].trim()));
            }
        }
    }
    flush(&mut fields);
    out
}
