#![no_main]
//! Image layers as pushed by clients: decompression, tar parsing, whiteouts
//! and every package parser, under small limits. Never panics; a layer that
//! is accepted yields packages with non-empty names.

use libfuzzer_sys::fuzz_target;
use wharf_scan::{LayerStack, Limits};

fuzz_target!(|data: &[u8]| {
    let mut limits = Limits::default();
    limits.max_layer_bytes = 4 << 20;
    limits.max_entries = 10_000;
    limits.max_file_bytes = 1 << 20;
    limits.max_binary_bytes = 1 << 20;
    limits.max_packages = 10_000;
    let mut stack = LayerStack::new(limits);
    // The same bytes twice: the second application exercises whiteouts
    // and replacement against a populated filesystem.
    if stack.apply(data, "first").is_ok() {
        let _ = stack.apply(data, "second");
    }
    for p in stack.finish().packages {
        assert!(!p.name.is_empty());
        let _ = p.purl(None);
    }
});
