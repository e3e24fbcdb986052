#![no_main]
//! Reference, tag, upload id and media type parsing: never panics, and
//! accepted values print back to the input.

use libfuzzer_sys::fuzz_target;
use wharf_types::{MediaType, Reference, UploadId};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
    }
    if let Ok(u) = UploadId::parse(s) {
        assert_eq!(u.as_str(), s);
    }
    if let Ok(m) = MediaType::parse(s) {
        assert_eq!(m.as_str(), s);
    }
    let _ = MediaType::from_content_type(s);
});
