//! Rust: `Cargo.lock` and the dependency list `cargo auditable` embeds in
//! binaries (a zlib-compressed JSON document in the `.dep-v0` section).

use std::io::Read;

use serde::Deserialize;

use crate::package::{Package, PackageKind};

/// Reads crates from a `Cargo.lock`: those from a registry (path and git
/// dependencies have no crates.io version to match).
///
/// ```
/// let lock = "version = 3\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\n\
///             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
///             [[package]]\nname = \"app\"\nversion = \"0.1.0\"\n";
/// let p = wharf_scan::extract::cargo::parse_lock(lock, "Cargo.lock").unwrap();
/// assert_eq!(p.len(), 1);
/// assert_eq!(p[0].name, "smallvec");
/// ```
pub fn parse_lock(text: &str, location: &str) -> Result<Vec<Package>, String> {
    #[derive(Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<LockPackage>,
    }
    #[derive(Deserialize)]
    struct LockPackage {
        name: String,
        version: String,
        source: Option<String>,
    }
    let lock: Lock = toml::from_str(text).map_err(|e| format!("{location}: {e}"))?;
    Ok(lock
        .package
        .into_iter()
        .filter(|p| {
            p.source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
        })
        .map(|p| Package::new(PackageKind::Cargo, p.name, p.version, location))
        .collect())
}

/// Reads the dependency list `cargo auditable` embedded in a binary, given
/// the `.dep-v0` section's bytes. Build-time dependencies (not compiled into
/// the binary) and the binary's own local crates are left out.
pub fn parse_auditable(
    section: &[u8],
    location: &str,
    max_json: u64,
) -> Result<Vec<Package>, String> {
    #[derive(Deserialize)]
    struct Info {
        packages: Vec<AuditPackage>,
    }
    #[derive(Deserialize)]
    struct AuditPackage {
        name: String,
        version: String,
        #[serde(default)]
        source: String,
        #[serde(default)]
        kind: String,
    }
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(max_json + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("{location}: .dep-v0: {e}"))?;
    if json.len() as u64 > max_json {
        return Err(format!(
            "{location}: .dep-v0 decompresses past {max_json} bytes"
        ));
    }
    let info: Info =
        serde_json::from_slice(&json).map_err(|e| format!("{location}: .dep-v0: {e}"))?;
    Ok(info
        .packages
        .into_iter()
        .filter(|p| p.kind != "build" && p.source != "local")
        .map(|p| Package::new(PackageKind::Cargo, p.name, p.version, location))
        .collect())
}
