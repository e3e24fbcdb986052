#![no_main]
//! Manifest parsing: never panics; an accepted manifest keeps its exact
//! bytes and digest, and its references are internally consistent.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wharf_types::{Digest, Manifest};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a Content-Type, so the header logic is fuzzed too.
    let (ct, body) = match data.split_first() {
        Some((b, rest)) => (
            match b % 6 {
                0 => None,
                1 => Some("application/vnd.oci.image.manifest.v1+json"),
                2 => Some("application/vnd.oci.image.index.v1+json"),
                3 => Some("application/vnd.docker.distribution.manifest.v2+json"),
                4 => Some("application/vnd.docker.distribution.manifest.list.v2+json"),
                _ => Some("application/json; charset=utf-8"),
            },
            rest,
        ),
        None => (None, data),
    };
    let raw = Bytes::copy_from_slice(body);
    if let Ok(m) = Manifest::parse(raw.clone(), ct) {
        assert_eq!(m.raw(), &raw);
        assert_eq!(m.digest(), &Digest::sha256(&raw));
        assert!(!(m.layers().len() > 0 && m.manifests().len() > 0));
        if m.kind().is_index() {
            assert!(m.config().is_none());
        } else {
            assert!(m.config().is_some());
        }
    }
});
