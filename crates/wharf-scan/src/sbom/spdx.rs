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
            "created": spdx_time(&image.created),
            "creators": [format!("Tool: wharf-scan-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// A declared licence as SPDX accepts it: an expression of licence ids
/// joined by `AND`, `OR` and `WITH` passes; free text ("Apache 2.0", "BSD
/// License") becomes `NOASSERTION`.
fn spdx_license(l: &str) -> String {
    license_expression(l).unwrap_or_else(|| "NOASSERTION".to_owned())
}

/// `l` when it is an SPDX licence expression.
pub(crate) fn license_expression(l: &str) -> Option<String> {
    let id = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':'))
            && t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    };
    let tokens: Vec<&str> = l
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
        .collect();
    // Ids and operators must alternate: "MIT OR Apache-2.0", not "Apache 2.0".
    let ok = !tokens.is_empty()
        && tokens.iter().enumerate().all(|(i, t)| {
            let op = matches!(*t, "AND" | "OR" | "WITH");
            if i % 2 == 0 { id(t) && !op } else { op }
        })
        && tokens.len() % 2 == 1;
    ok.then(|| l.to_owned())
}

/// SPDX wants `YYYY-MM-DDThh:mm:ssZ`: whole seconds.
fn spdx_time(t: &str) -> String {
    match (t.get(..19), t.ends_with('Z')) {
        (Some(secs), true) => format!("{secs}Z"),
        _ => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_and_times() {
        assert_eq!(spdx_license("MIT"), "MIT");
        assert_eq!(spdx_license("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(
            spdx_license("(MIT AND BSD-3-Clause)"),
            "(MIT AND BSD-3-Clause)"
        );
        assert_eq!(
            spdx_license("GPL-2.0-or-later WITH Classpath-exception-2.0"),
            "GPL-2.0-or-later WITH Classpath-exception-2.0"
        );
        assert_eq!(spdx_license("Apache 2.0"), "NOASSERTION");
        assert_eq!(spdx_license("BSD License"), "NOASSERTION");
        assert_eq!(spdx_license("MIT OR"), "NOASSERTION");
        assert_eq!(
            spdx_time("2024-01-01T00:00:00.123456789Z"),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(spdx_time("2024-01-01T00:00:00Z"), "2024-01-01T00:00:00Z");
    }
}
