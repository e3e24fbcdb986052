#![no_main]
//! Repository name parsing: never panics; accepted names are safe path
//! fragments (no empty or dot components) within the length limit.

use libfuzzer_sys::fuzz_target;
use wharf_types::RepositoryName;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = RepositoryName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert!(s.len() <= RepositoryName::MAX_LEN);
        for c in n.components() {
            assert!(!c.is_empty() && c != "." && c != "..");
            assert!(c.as_bytes()[0].is_ascii_alphanumeric());
            assert!(c.as_bytes()[c.len() - 1].is_ascii_alphanumeric());
        }
    }
});
