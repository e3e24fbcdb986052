//! Installed packages found in an image, and their package URLs.

use serde::{Deserialize, Serialize};

/// Which package manager installed a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PackageKind {
    /// A Debian/Ubuntu package (dpkg).
    Deb,
    /// An Alpine package (apk).
    Apk,
    /// A Python distribution (PyPI).
    PyPI,
    /// An npm package.
    Npm,
    /// A Rust crate (crates.io).
    Cargo,
    /// A Go module (or the Go standard library, as `stdlib`).
    Go,
}

impl PackageKind {
    /// The package URL type (`deb`, `apk`, `pypi`, `npm`, `cargo`, `golang`).
    pub fn purl_type(self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::PyPI => "pypi",
            PackageKind::Npm => "npm",
            PackageKind::Cargo => "cargo",
            PackageKind::Go => "golang",
        }
    }

    /// The OSV ecosystem whose advisories apply (and whose version
    /// ordering compares this kind's versions). Ubuntu's dpkg packages are
    /// matched against Ubuntu advisories.
    pub fn osv_ecosystem(self, distro: Option<&Distro>) -> crate::version::Ecosystem {
        use crate::version::Ecosystem;
        match self {
            PackageKind::Deb if distro.is_some_and(|d| d.id == "ubuntu") => Ecosystem::Ubuntu,
            PackageKind::Deb => Ecosystem::Debian,
            PackageKind::Apk => Ecosystem::Alpine,
            PackageKind::PyPI => Ecosystem::PyPI,
            PackageKind::Npm => Ecosystem::Npm,
            PackageKind::Cargo => Ecosystem::CratesIo,
            PackageKind::Go => Ecosystem::Go,
        }
    }
}

/// The distribution an image is built on, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Distro {
    /// `ID` (`debian`, `ubuntu`, `alpine`, ...).
    pub id: String,
    /// `VERSION_ID` (`12`, `22.04`, `3.19.1`), empty when absent.
    #[serde(default)]
    pub version_id: String,
    /// `PRETTY_NAME`, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pretty_name: String,
}

impl Distro {
    /// Parses `os-release` text (shell-style `KEY=value` lines).
    ///
    /// ```
    /// let d = wharf_scan::Distro::parse_os_release("ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    /// assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", "12"));
    /// ```
    pub fn parse_os_release(text: &str) -> Option<Distro> {
        let mut d = Distro::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned();
            match key.trim() {
                "ID" => d.id = value.to_ascii_lowercase(),
                "VERSION_ID" => d.version_id = value,
                "PRETTY_NAME" => d.pretty_name = value,
                _ => {}
            }
        }
        (!d.id.is_empty()).then_some(d)
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// Which package manager.
    pub kind: PackageKind,
    /// Its name as installed (binary package name for dpkg and apk).
    pub name: String,
    /// Its installed version.
    pub version: String,
    /// The source package it was built from (dpkg `Source`, apk origin),
    /// when it differs: distribution advisories name source packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// The source package's version when it differs from `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Architecture, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Licence, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Where in the image it was found.
    pub location: String,
}

impl Package {
    /// A package with the essential fields.
    pub fn new(
        kind: PackageKind,
        name: impl Into<String>,
        version: impl Into<String>,
        location: impl Into<String>,
    ) -> Package {
        Package {
            kind,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            arch: None,
            license: None,
            location: location.into(),
        }
    }

    /// The name advisories use: the source package for distribution
    /// packages, the normalized name for PyPI, the name otherwise.
    pub fn advisory_name(&self) -> String {
        match self.kind {
            PackageKind::Deb | PackageKind::Apk => self
                .source_name
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            PackageKind::PyPI => normalize_pypi_name(&self.name),
            _ => self.name.clone(),
        }
    }

    /// The version advisories use (the source version for distribution
    /// packages).
    pub fn advisory_version(&self) -> &str {
        match self.kind {
            PackageKind::Deb | PackageKind::Apk => {
                self.source_version.as_deref().unwrap_or(&self.version)
            }
            _ => &self.version,
        }
    }

    /// The package URL (<https://github.com/package-url/purl-spec>).
    ///
    /// ```
    /// use wharf_scan::{Package, PackageKind};
    /// let p = Package::new(PackageKind::Npm, "@babel/core", "7.0.0", "x");
    /// assert_eq!(p.purl(None), "pkg:npm/%40babel/core@7.0.0");
    /// ```
    pub fn purl(&self, distro: Option<&Distro>) -> String {
        let mut out = format!("pkg:{}/", self.kind.purl_type());
        match self.kind {
            PackageKind::Deb | PackageKind::Apk => {
                let ns = distro.map(|d| d.id.as_str()).filter(|s| !s.is_empty());
                let ns = ns.unwrap_or(if self.kind == PackageKind::Deb {
                    "debian"
                } else {
                    "alpine"
                });
                out.push_str(&encode(ns));
                out.push('/');
                out.push_str(&encode(&self.name));
            }
            PackageKind::PyPI => out.push_str(&encode(&normalize_pypi_name(&self.name))),
            PackageKind::Npm | PackageKind::Go => {
                let segments: Vec<String> = self.name.split('/').map(encode).collect();
                out.push_str(&segments.join("/"));
            }
            PackageKind::Cargo => out.push_str(&encode(&self.name)),
        }
        out.push('@');
        out.push_str(&encode(&self.version));
        let mut qualifiers = Vec::new();
        if let Some(arch) = &self.arch {
            qualifiers.push(format!("arch={}", encode(arch)));
        }
        if matches!(self.kind, PackageKind::Deb | PackageKind::Apk)
            && let Some(d) = distro
            && !d.version_id.is_empty()
        {
            qualifiers.push(format!(
                "distro={}-{}",
                encode(&d.id),
                encode(&d.version_id)
            ));
        }
        if let Some(src) = &self.source_name
            && src != &self.name
            && self.kind == PackageKind::Deb
        {
            qualifiers.push(format!("upstream={}", encode(src)));
        }
        if !qualifiers.is_empty() {
            out.push('?');
            out.push_str(&qualifiers.join("&"));
        }
        out
    }
}

/// PEP 503 name normalization: lower case, runs of `-`, `_` and `.` as one `-`.
///
/// ```
/// assert_eq!(wharf_scan::package::normalize_pypi_name("Foo__Bar.baz"), "foo-bar-baz");
/// ```
pub fn normalize_pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Percent-encodes everything outside the purl-safe characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls() {
        let debian = Distro {
            id: "debian".into(),
            version_id: "12".into(),
            pretty_name: String::new(),
        };
        let mut p = Package::new(PackageKind::Deb, "libssl3", "3.0.11-1~deb12u2", "x");
        p.arch = Some("amd64".into());
        p.source_name = Some("openssl".into());
        assert_eq!(
            p.purl(Some(&debian)),
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl"
        );
        let g = Package::new(PackageKind::Go, "golang.org/x/net", "v0.7.0", "x");
        assert_eq!(g.purl(None), "pkg:golang/golang.org/x/net@v0.7.0");
        let py = Package::new(PackageKind::PyPI, "PyYAML", "5.3", "x");
        assert_eq!(py.purl(None), "pkg:pypi/pyyaml@5.3");
        let c = Package::new(PackageKind::Cargo, "smallvec", "1.6.0+x", "x");
        assert_eq!(c.purl(None), "pkg:cargo/smallvec@1.6.0%2Bx");
    }
}
