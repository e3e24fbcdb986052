//! CycloneDX 1.5 JSON.

use serde_json::{Value, json};

use super::{Described, uuid_from};
use crate::layer::Inventory;

/// Renders an inventory as a CycloneDX 1.5 JSON document.
pub fn render(image: &Described, inventory: &Inventory) -> Value {
    let distro = inventory.distro.as_ref();
    let components: Vec<Value> = inventory
        .packages
        .iter()
        .map(|p| {
            let purl = p.purl(distro);
            let mut c = json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "properties": [
                    {"name": "wharf:package:kind", "value": p.kind.purl_type()},
                    {"name": "wharf:package:location", "value": p.location},
                ],
            });
            if let Some(l) = &p.license {
                // An SPDX expression where it is one, else the text as a name.
                c["licenses"] = if super::spdx::license_expression(l).is_some() {
                    json!([{"expression": l}])
                } else {
                    json!([{"license": {"name": l}}])
                };
            }
            if let Some(src) = &p.source_name
                && let Some(props) = c["properties"].as_array_mut()
            {
                props.push(json!({"name": "wharf:package:source", "value": src}));
            }
            c
        })
        .collect();
    let mut metadata = json!({
        "timestamp": image.created,
        "tools": {"components": [{
            "type": "application",
            "name": "wharf-scan",
            "version": env!("CARGO_PKG_VERSION"),
        }]},
        "component": {
            "type": "container",
            "bom-ref": image.digest,
            "name": image.repository,
            "version": image.digest,
        },
    });
    if let Some(d) = distro {
        metadata["properties"] = json!([
            {"name": "wharf:distro:id", "value": d.id},
            {"name": "wharf:distro:version_id", "value": d.version_id},
        ]);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_from(&format!("cyclonedx {} {}", image.repository, image.digest))),
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": [{
            "ref": image.digest,
            "dependsOn": inventory.packages.iter().map(|p| p.purl(distro)).collect::<Vec<_>>(),
        }],
    })
}
