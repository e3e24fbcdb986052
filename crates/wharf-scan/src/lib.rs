//! Offline vulnerability scanning for Wharf: software bills of materials
//! extracted from image layers, and matching against OSV advisories with
//! each ecosystem's own version ordering.
//!
//! The pieces, bottom up:
//!
//! - [`layer`]: layers (gzip, zstd or plain tar) applied in order with
//!   whiteouts, every size bounded by [`Limits`], into an [`Inventory`];
//! - [`extract`]: the package databases and binaries read on the way (dpkg,
//!   apk, Python metadata, npm, Cargo, Go build info);
//! - [`sbom`]: CycloneDX 1.5 and SPDX 2.3 JSON;
//! - [`osv`]: advisories loaded from a directory or zip, matched per
//!   ecosystem with [`version`] ordering, rated by CVSS;
//! - [`report`]: the findings;
//! - [`image`]: all of it over a registry [`wharf_storage::Store`], with
//!   results attached to the image as referrers;
//! - [`layout`]: the same over an OCI image layout directory.
//!
//! ```
//! use wharf_scan::{LayerStack, Limits};
//!
//! let mut tar = tar::Builder::new(Vec::new());
//! let status = b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\n";
//! let mut h = tar::Header::new_gnu();
//! h.set_size(status.len() as u64);
//! h.set_mode(0o644);
//! tar.append_data(&mut h, "var/lib/dpkg/status", &status[..]).unwrap();
//! let layer = tar.into_inner().unwrap();
//!
//! let mut stack = LayerStack::new(Limits::default());
//! stack.apply(&layer[..], "base").unwrap();
//! let inventory = stack.finish();
//! assert_eq!(inventory.packages[0].purl(None), "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?upstream=zlib");
//! ```

mod error;
pub mod extract;
pub mod image;
pub mod layer;
pub mod layout;
mod limits;
pub mod osv;
pub mod package;
pub mod report;
pub mod sbom;
mod time;
pub mod version;

pub use error::{ScanError, ScanResult};
pub use layer::{Inventory, LayerStack};
pub use limits::Limits;
pub use osv::{AdvisoryDb, Severity};
pub use package::{Distro, Package, PackageKind};
pub use report::{Finding, Report};
