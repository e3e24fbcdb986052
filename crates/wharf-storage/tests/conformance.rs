//! The shared backend conformance suite, run against the built-in backends.

mod memory {
    wharf_storage::conformance_tests!(wharf_storage::conformance::MemoryFixture::new());
}

#[cfg(feature = "fs")]
mod fs {
    wharf_storage::conformance_tests!(wharf_storage::conformance::FsFixture::new());
}

/// Blob files left to the kernel's write-back (`FsOptions::fsync` off).
#[cfg(feature = "fs")]
mod fs_without_fsync {
    wharf_storage::conformance_tests!(wharf_storage::conformance::FsFixture::with_options(
        wharf_storage::FsOptions::default().with_fsync(false)
    ));
}

/// Blobs up to 1 MiB inline (several database pieces each).
#[cfg(feature = "fs")]
mod fs_inline_1mib {
    wharf_storage::conformance_tests!(wharf_storage::conformance::FsFixture::with_options(
        wharf_storage::FsOptions::default().with_inline_threshold(1 << 20)
    ));
}
