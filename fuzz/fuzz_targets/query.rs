#![no_main]
//! Query parsing: never panics; page sizes are always clamped.

use libfuzzer_sys::fuzz_target;
use wharf_registry::params::Query;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = Query::parse(Some(s)) {
        if let Ok(n) = q.page_size(100) {
            assert!(n <= 100);
        }
    }
});
