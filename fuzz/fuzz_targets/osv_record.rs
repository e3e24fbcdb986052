#![no_main]
//! OSV records (advisory data is input too): parsing, indexing and matching
//! a fixed set of packages against whatever ranges the record states.

use libfuzzer_sys::fuzz_target;
use wharf_scan::osv::Advisory;
use wharf_scan::{AdvisoryDb, Package, PackageKind};

fuzz_target!(|data: &[u8]| {
    let Ok(advisory) = serde_json::from_slice::<Advisory>(data) else {
        return;
    };
    let _ = advisory.rating(advisory.affected.first());
    let db = AdvisoryDb::from_advisories(vec![advisory]);
    for (kind, version) in [
        (PackageKind::Deb, "1:2.3-4~deb12u1"),
        (PackageKind::Apk, "1.2.3_rc1-r0"),
        (PackageKind::PyPI, "1.0.post1"),
        (PackageKind::Npm, "1.2.3-beta.1"),
        (PackageKind::Cargo, "0.6.3"),
        (PackageKind::Go, "v0.0.0-20200101000000-abcdef123456"),
    ] {
        for name in ["a", "openssl", "stdlib"] {
            let _ = db.match_package(&Package::new(kind, name, version, "x"), None);
        }
    }
});
