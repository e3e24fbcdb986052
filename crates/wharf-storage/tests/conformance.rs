//! The shared backend conformance suite, run against the built-in backends.

mod memory {
    wharf_storage::conformance_tests!(wharf_storage::conformance::MemoryFixture::new());
}

#[cfg(feature = "fs")]
mod fs {
    wharf_storage::conformance_tests!(wharf_storage::conformance::FsFixture::new());
}
