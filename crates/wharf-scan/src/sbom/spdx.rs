//! SPDX 2.3 JSON.

use serde_json::{Value, json};

use super::{Described, uuid_from};
use crate::layer::Inventory;

/// Renders an inventory as an SPDX 2.3 JSON document.
pub fn render(image: &Described, inventory: &Inventory) -> Value {
    let distro = inventory.distro.as_ref();
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "name": image.repository,
        "SPDXID": image_id,
        "versionInfo": image.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (i, p) in inventory.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", p.kind.purl_type());
        let mut pkg = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("found in {}", p.location),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(distro),
            }],
        });
        if let Some(l) = &p.license {
            pkg["licenseDeclared"] = json!(spdx_license(l));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", image.repository, image.digest),
        "documentNamespace": format!(
            "https://wharf.invalid/spdx/{}",
            uuid_from(&format!("spdx {} {}", image.repository, image.digest))
        ),
        "creationInfo": {
            "created": image.created,
            "creators": [format!("Tool: wharf-scan-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// A declared licence as SPDX accepts it: simple identifiers and
/// expressions pass, free text becomes `NOASSERTION`.
fn spdx_license(l: &str) -> String {
    let ok = !l.is_empty()
        && l.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ' ' | '(' | ')' | ':')
        });
    if ok {
        l.to_owned()
    } else {
        "NOASSERTION".to_owned()
    }
}
