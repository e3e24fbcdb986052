#![no_main]
//! Digest parsing: never panics; accepted digests round-trip exactly.

use libfuzzer_sys::fuzz_target;
use wharf_types::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(d.as_str(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert!(
            d.hex()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
});
