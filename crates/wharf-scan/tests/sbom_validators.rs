//! The SBOMs checked by the formats' own validators: the CycloneDX 1.5 JSON
//! schema (cyclonedx-python-lib, strict) and the SPDX 2.3 validator
//! (spdx-tools). Needs a Python with both (`.ci/install.sh` makes one);
//! run with `--ignored`, or point `WHARF_SBOM_PYTHON` at another Python.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use wharf_scan::sbom::{Described, cyclonedx, spdx};
use wharf_scan::{LayerStack, Limits};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("WHARF_SBOM_PYTHON") {
        return p.into();
    }
    let cache = std::env::var("WHARF_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wharf-ci"));
    cache.join("sbom-venv/bin/python")
}

const VALIDATE: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if errors is not None:
    sys.exit(f"CycloneDX: {errors}")
doc = parse_file(sys.argv[2])
messages = validate_full_spdx_document(doc)
if messages:
    sys.exit("SPDX: " + "; ".join(m.validation_message for m in messages))
print(f"valid: {len(doc.packages)} SPDX packages")
"#;

#[test]
#[ignore = "needs a Python with cyclonedx-python-lib and spdx-tools (see .ci/install.sh)"]
fn sboms_pass_the_official_validators() {
    let mut stack = LayerStack::new(Limits::default());
    let layers = [
        Layer::new()
            .file("etc/os-release", DEBIAN_OS_RELEASE)
            .file("var/lib/dpkg/status", DPKG_STATUS)
            .gzip(),
        Layer::new()
            .file(
                "usr/lib/python3/dist-packages/requests-2.25.1.dist-info/METADATA",
                REQUESTS_METADATA,
            )
            .file(
                "usr/lib/python3/dist-packages/urllib3-1.26.18.egg-info/PKG-INFO",
                URLLIB3_PKG_INFO,
            )
            .file("srv/web/package-lock.json", PACKAGE_LOCK)
            .file("src/Cargo.lock", CARGO_LOCK)
            .exe("usr/local/bin/server", go_binary())
            .zstd(),
    ];
    for l in &layers {
        stack.apply(&l[..], "layer").unwrap();
    }
    let inv = stack.finish();
    assert!(inv.packages.len() >= 10);
    let image = Described {
        repository: "app/web".into(),
        digest: "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945".into(),
        created: "2024-05-01T10:20:30.123456789Z".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let cdx = dir.path().join("bom.cdx.json");
    let spdx_path = dir.path().join("bom.spdx.json");
    std::fs::write(
        &cdx,
        serde_json::to_vec_pretty(&cyclonedx::render(&image, &inv)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &spdx_path,
        serde_json::to_vec_pretty(&spdx::render(&image, &inv)).unwrap(),
    )
    .unwrap();
    let python = python();
    let out = Command::new(&python)
        .args(["-c", VALIDATE])
        .arg(&cdx)
        .arg(&spdx_path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
