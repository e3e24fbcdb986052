#![no_main]
//! `Range` and `Content-Range` parsing: never panics; accepted ranges are
//! ordered and resolve inside any blob size.

use libfuzzer_sys::fuzz_target;
use wharf_registry::params::{parse_content_range, parse_range};

fuzz_target!(|data: &[u8]| {
    let Some((&size_byte, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(r) = parse_range(s) {
        let size = u64::from(size_byte) * 1000;
        if let Some(range) = r.resolve(size) {
            assert!(range.start < range.end && range.end <= size);
        }
    }
    if let Ok((start, end)) = parse_content_range(s) {
        assert!(start <= end);
    }
});
