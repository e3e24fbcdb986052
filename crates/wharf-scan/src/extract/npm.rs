//! npm: `package-lock.json` (lockfile versions 1 to 3) and
//! `node_modules/*/package.json`.

use serde_json::Value;

use crate::package::{Package, PackageKind};

/// Reads every locked package of a `package-lock.json`.
///
/// ```
/// let lock = br#"{"lockfileVersion":3,"packages":{"":{"name":"app"},
///   "node_modules/lodash":{"version":"4.17.15"},
///   "node_modules/a/node_modules/@x/y":{"version":"1.0.0"}}}"#;
/// let p = wharf_scan::extract::npm::parse_lock(lock, "app/package-lock.json").unwrap();
/// let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names, ["@x/y", "lodash"]);
/// ```
pub fn parse_lock(data: &[u8], location: &str) -> Result<Vec<Package>, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| format!("{location}: {e}"))?;
    let mut out = Vec::new();
    if let Some(packages) = v.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            let Some((_, name)) = key.rsplit_once("node_modules/") else {
                continue; // "" is the project itself
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry.get("name").and_then(Value::as_str).unwrap_or(name);
            if let Some(version) = entry.get("version").and_then(Value::as_str) {
                out.push(package(name, version, entry, location));
            }
        }
    } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        // Lockfile v1: nested "dependencies" objects. Iterative, so deep
        // nesting cannot overflow the stack.
        let mut stack = vec![deps];
        while let Some(deps) = stack.pop() {
            for (name, entry) in deps {
                if let Some(version) = entry.get("version").and_then(Value::as_str) {
                    // Linked or aliased entries carry a URL, not a version.
                    if !version.contains(':') {
                        out.push(package(name, version, entry, location));
                    }
                }
                if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                    stack.push(nested);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    out.dedup_by(|a, b| a.name == b.name && a.version == b.version);
    Ok(out)
}

fn package(name: &str, version: &str, entry: &Value, location: &str) -> Package {
    let mut p = Package::new(PackageKind::Npm, name, version, location);
    p.license = entry
        .get("license")
        .and_then(Value::as_str)
        .map(str::to_owned);
    p
}

/// Reads a package's own `package.json` (name and version).
pub fn parse_package_json(data: &[u8], location: &str) -> Option<Package> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let name = v.get("name")?.as_str()?;
    let version = v.get("version")?.as_str()?;
    Some(package(name, version, &v, location))
}
