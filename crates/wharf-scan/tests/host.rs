//! The parsers against the tools that own the formats: this machine's own
//! dpkg database read by `dpkg-query`, and its Python distributions read by
//! `importlib.metadata`, packed into a layer and scanned. Skipped (with a
//! note) where the machine has no dpkg or no Python.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::Layer;
use wharf_scan::{LayerStack, Limits, PackageKind};

fn scan(layer: Layer) -> wharf_scan::Inventory {
    let mut stack = LayerStack::new(Limits::default());
    stack.apply(&layer.gzip()[..], "host").unwrap();
    stack.finish()
}

fn names(inv: &wharf_scan::Inventory, kind: PackageKind) -> BTreeSet<(String, String)> {
    inv.packages
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

#[test]
fn dpkg_status_agrees_with_dpkg_query() {
    let status = Path::new("/var/lib/dpkg/status");
    let Ok(out) = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"])
        .output()
    else {
        eprintln!("no dpkg-query here: skipped");
        return;
    };
    if !out.status.success() || !status.exists() {
        eprintln!("no dpkg database here: skipped");
        return;
    }
    let want: BTreeSet<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            // The abbreviation is desired action, state, error: state `i`
            // is installed, whether the package is held (`hi`) or not (`ii`).
            (f.len() == 3 && f[2].chars().nth(1) == Some('i'))
                .then(|| (f[0].to_owned(), f[1].to_owned()))
        })
        .collect();
    assert!(!want.is_empty());
    let mut layer = Layer::new().file("var/lib/dpkg/status", std::fs::read(status).unwrap());
    if let Ok(os) = std::fs::read("/etc/os-release") {
        layer = layer.file("etc/os-release", os);
    }
    let inv = scan(layer);
    assert_eq!(names(&inv, PackageKind::Deb), want);
}

#[test]
fn python_metadata_agrees_with_importlib() {
    let site = Path::new("/usr/lib/python3/dist-packages");
    let script = format!(
        "import importlib.metadata as m\nfor d in m.distributions(path=[{:?}]):\n    print(d.metadata['Name'] + '\\t' + d.version)",
        site.display().to_string()
    );
    let Ok(out) = Command::new("python3").args(["-c", &script]).output() else {
        eprintln!("no python3 here: skipped");
        return;
    };
    if !out.status.success() || !site.is_dir() {
        eprintln!("no system Python packages here: skipped");
        return;
    }
    let want: BTreeSet<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let mut layer = Layer::new();
    for entry in std::fs::read_dir(site).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("usr/lib/python3/dist-packages/{name}");
        if name.ends_with(".dist-info") {
            if let Ok(d) = std::fs::read(p.join("METADATA")) {
                layer = layer.file(&format!("{rel}/METADATA"), d);
            }
        } else if name.ends_with(".egg-info") {
            if p.is_dir() {
                if let Ok(d) = std::fs::read(p.join("PKG-INFO")) {
                    layer = layer.file(&format!("{rel}/PKG-INFO"), d);
                }
            } else {
                layer = layer.file(&rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let inv = scan(layer);
    assert_eq!(names(&inv, PackageKind::PyPI), want);
}
