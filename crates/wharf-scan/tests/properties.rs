//! Property tests: layer reading and every parser never panic on arbitrary
//! input, and whiteouts agree with a model of the assembled filesystem.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Layer;
use proptest::prelude::*;
use wharf_scan::extract::{self, FileKind};
use wharf_scan::{LayerStack, Limits};

fn small_limits() -> Limits {
    let mut l = Limits::default();
    l.max_layer_bytes = 1 << 20;
    l.max_entries = 1000;
    l.max_file_bytes = 64 << 10;
    l.max_binary_bytes = 64 << 10;
    l.max_packages = 1000;
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_layers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096), prefix in 0u8..4) {
        // Steer some inputs into each decoder.
        let mut layer = match prefix {
            0 => vec![0x1f, 0x8b, 8, 0],
            1 => vec![0x28, 0xb5, 0x2f, 0xfd],
            _ => Vec::new(),
        };
        layer.extend(data);
        let mut stack = LayerStack::new(small_limits());
        let _ = stack.apply(&layer[..], "fuzz");
        let _ = stack.finish();
    }

    #[test]
    fn corrupted_real_layers_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), gz in any::<bool>()) {
        let l = Layer::new()
            .file("etc/os-release", common::DEBIAN_OS_RELEASE)
            .file("var/lib/dpkg/status", common::DPKG_STATUS)
            .file("srv/package-lock.json", common::PACKAGE_LOCK)
            .exe("bin/app", common::go_binary());
        let mut bytes = if gz { l.gzip() } else { l.tar() };
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let mut stack = LayerStack::new(small_limits());
        let _ = stack.apply(&bytes[..], "flipped");
    }

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for kind in [
            FileKind::DpkgStatus, FileKind::DpkgStatusD, FileKind::ApkInstalled,
            FileKind::PythonMetadata, FileKind::NpmLock, FileKind::NpmPackageJson,
            FileKind::CargoLock, FileKind::OsRelease,
        ] {
            let _ = extract::extract(kind, "x", &data);
        }
        let _ = extract::extract_binary("x", &data, 1 << 16);
        let _ = extract::elf::section(&data, ".dep-v0");
        let _ = extract::go::build_info(&data);
        let _ = wharf_scan::Distro::parse_os_release(&String::from_utf8_lossy(&data));
        let _ = wharf_scan::osv::cvss::base_score(&String::from_utf8_lossy(&data));
    }

    /// Layers of random installs, whiteouts and opaque directories give the
    /// packages a model filesystem says are visible.
    #[test]
    fn whiteouts_match_a_model(layers in proptest::collection::vec(proptest::collection::vec(op(), 0..8), 1..5)) {
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        let mut stack = LayerStack::new(Limits::default());
        for ops in &layers {
            let mut layer = Layer::new();
            let mut added: BTreeMap<String, String> = BTreeMap::new();
            let mut hidden: Vec<String> = Vec::new();
            for op in ops {
                match op {
                    Op::Install(dir, pkg) => {
                        let path = format!("site/{dir}/{pkg}-1.0.dist-info/METADATA");
                        layer = layer.file(&path, format!("Name: {pkg}\nVersion: 1.0\n"));
                        added.insert(path, pkg.clone());
                    }
                    Op::RemoveDir(dir) => {
                        layer = layer.whiteout(&format!("site/{dir}"));
                        hidden.push(format!("site/{dir}"));
                    }
                    Op::RemovePkg(dir, pkg) => {
                        let p = format!("site/{dir}/{pkg}-1.0.dist-info");
                        layer = layer.whiteout(&p);
                        hidden.push(p);
                    }
                    Op::Opaque(dir) => {
                        layer = layer.opaque(&format!("site/{dir}"));
                        hidden.push(format!("site/{dir}"));
                    }
                }
            }
            // Whiteouts hide lower layers only, then this layer's files land.
            // (An opaque directory keeps itself but not its contents; for
            // the files tracked here that is the same as removing it.)
            for p in &hidden {
                let prefix = format!("{p}/");
                model.retain(|k, _| k != p && !k.starts_with(&prefix));
            }
            model.extend(added);
            stack.apply(&layer.tar()[..], "layer").unwrap();
        }
        let want: BTreeSet<String> = model.values().cloned().collect();
        let got: BTreeSet<String> = stack.finish().packages.into_iter().map(|p| p.name).collect();
        prop_assert_eq!(got, want);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Install(String, String),
    RemoveDir(String),
    RemovePkg(String, String),
    Opaque(String),
}

fn op() -> impl Strategy<Value = Op> {
    let dir = prop::sample::select(vec!["a", "b", "a/b"]).prop_map(str::to_owned);
    let pkg = prop::sample::select(vec!["p", "q", "r"]).prop_map(str::to_owned);
    prop_oneof![
        3 => (dir.clone(), pkg.clone()).prop_map(|(d, p)| Op::Install(d, p)),
        1 => dir.clone().prop_map(Op::RemoveDir),
        1 => (dir.clone(), pkg).prop_map(|(d, p)| Op::RemovePkg(d, p)),
        1 => dir.prop_map(Op::Opaque),
    ]
}
