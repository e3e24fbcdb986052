//! Bounds on everything an image's author controls.

/// Limits applied while reading image content. Every size and count an
/// image's author controls is bounded here, so a hostile layer (a
/// decompression bomb, millions of entries, a huge "metadata" file) costs
/// bounded memory and time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Layers read per image.
    pub max_layers: usize,
    /// Decompressed bytes read per layer.
    pub max_layer_bytes: u64,
    /// Tar entries read per layer.
    pub max_entries: u64,
    /// Largest package database or metadata file read into memory (dpkg
    /// status, apk installed, `METADATA`, `package.json`, lock files).
    pub max_file_bytes: u64,
    /// Largest executable read into memory to look for Go build info and
    /// Rust dependency data; larger ones are skipped with a warning.
    pub max_binary_bytes: u64,
    /// Packages recorded per image.
    pub max_packages: usize,
    /// Largest image manifest or config read.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layers: 256,
            max_layer_bytes: 16 << 30,
            max_entries: 2_000_000,
            max_file_bytes: 32 << 20,
            max_binary_bytes: 256 << 20,
            max_packages: 200_000,
            max_manifest_bytes: 4 << 20,
        }
    }
}
