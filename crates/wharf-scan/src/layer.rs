//! Reading image layers: decompression (gzip, zstd or none, detected from
//! the bytes), tar entries, and whiteouts applied across layers in order.
//!
//! Only what package extraction needs is kept: the packages each
//! interesting file describes, by path. Whiteouts and later layers remove
//! or replace those records exactly as they would remove or replace the
//! files in the assembled root filesystem.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use ruzstd::decoding::FrameDecoder;

use crate::error::{ScanError, ScanResult};
use crate::extract::{self, FileKind};
use crate::limits::Limits;
use crate::package::{Distro, Package};

/// A layer's compression, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar archive.
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`, Docker layers).
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a layer.
    ///
    /// ```
    /// use wharf_scan::layer::Compression;
    /// assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
    /// assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
    /// assert_eq!(Compression::detect(b"etc/"), Compression::None);
    /// ```
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What one path in the assembled filesystem contributes.
#[derive(Debug, Clone)]
enum Record {
    Packages(Vec<Package>),
    OsRelease(Distro),
}

/// Everything found in an image's layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The distribution, from `etc/os-release` (or `usr/lib/os-release`).
    pub distro: Option<Distro>,
    /// Installed packages, in path order then file order, duplicates
    /// (same kind, name and version) removed.
    pub packages: Vec<Package>,
    /// Problems that did not stop the scan (skipped files, parse errors).
    pub warnings: Vec<String>,
}

/// Layers applied so far, bottom first.
#[derive(Debug)]
pub struct LayerStack {
    limits: Limits,
    files: BTreeMap<String, Record>,
    packages: usize,
    layers: usize,
    warnings: Vec<String>,
}

const MAX_WARNINGS: usize = 100;
/// Largest GNU long name or PAX extension header read.
const MAX_EXTENSION_BYTES: u64 = 1 << 20;

impl LayerStack {
    /// An empty root filesystem.
    pub fn new(limits: Limits) -> Self {
        LayerStack {
            limits,
            files: BTreeMap::new(),
            packages: 0,
            layers: 0,
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        }
    }

    /// Applies the next layer (compressed or not) on top of those applied
    /// before. `name` identifies it in errors.
    pub fn apply(&mut self, layer: impl Read, name: &str) -> ScanResult<()> {
        self.layers += 1;
        if self.layers > self.limits.max_layers {
            return Err(ScanError::LimitExceeded {
                what: "layer count",
                limit: self.limits.max_layers as u64,
            });
        }
        let err = |message: String| ScanError::Layer {
            layer: name.to_owned(),
            message,
        };
        let mut buffered = BufReader::with_capacity(64 * 1024, layer);
        let compression = Compression::detect(buffered.fill_buf()?);
        let decompressed: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(ZstdReader::new(buffered)),
        };
        let bounded = Bounded {
            inner: decompressed,
            remaining: self.limits.max_layer_bytes,
            limit: self.limits.max_layer_bytes,
        };
        let mut archive = tar::Archive::new(bounded);
        let entries = archive.entries().map_err(|e| err(e.to_string()))?.raw(true);

        let mut added: BTreeMap<String, Record> = BTreeMap::new();
        let mut removed: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut count: u64 = 0;
        let mut layer_packages = 0usize;
        for entry in entries {
            count += 1;
            if count > self.limits.max_entries {
                return Err(ScanError::LimitExceeded {
                    what: "tar entries in a layer",
                    limit: self.limits.max_entries,
                });
            }
            let mut entry = entry.map_err(|e| limit_or(e, name))?;
            let header = entry.header();
            let kind = header.entry_type();
            let size = header.entry_size().map_err(|e| err(e.to_string()))?;
            if kind.is_gnu_longname() || kind.is_pax_local_extensions() {
                if size > MAX_EXTENSION_BYTES {
                    return Err(ScanError::LimitExceeded {
                        what: "tar extension header",
                        limit: MAX_EXTENSION_BYTES,
                    });
                }
                let mut data = Vec::new();
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(|e| limit_or(e, name))?;
                if kind.is_gnu_longname() {
                    while data.last() == Some(&0) {
                        data.pop();
                    }
                    long_name = Some(data);
                } else {
                    pax_path = pax_value(&data, "path");
                }
                continue;
            }
            if kind.is_gnu_longlink() || kind.is_pax_global_extensions() {
                continue;
            }
            let raw_path = match (long_name.take(), pax_path.take()) {
                (_, Some(p)) => p,
                (Some(p), None) => p,
                (None, None) => entry.path_bytes().into_owned(),
            };
            let Some(path) = normalize(&String::from_utf8_lossy(&raw_path)) else {
                continue;
            };
            let (dir, file) = match path.rsplit_once('/') {
                Some((d, f)) => (d.to_owned(), f.to_owned()),
                None => (String::new(), path.clone()),
            };
            if file == ".wh..wh..opq" {
                opaque.push(dir);
                continue;
            }
            if let Some(target) = file.strip_prefix(".wh.") {
                removed.push(join(&dir, target));
                continue;
            }
            let lower_has = self.files.contains_key(&path);
            if !(kind.is_file() || kind.is_contiguous()) {
                // A symlink, directory or device now stands where a file
                // we read may have been.
                if lower_has && !kind.is_dir() {
                    removed.push(path);
                }
                continue;
            }
            let record = if let Some(fk) = extract::classify(&path) {
                if size > self.limits.max_file_bytes {
                    self.warn(format!(
                        "{path}: {size} bytes is larger than the {} byte limit; skipped",
                        self.limits.max_file_bytes
                    ));
                    None
                } else {
                    let data = read_all(&mut entry, size, name)?;
                    if fk == FileKind::OsRelease {
                        Distro::parse_os_release(&String::from_utf8_lossy(&data))
                            .map(Record::OsRelease)
                    } else {
                        match extract::extract(fk, &path, &data) {
                            Ok(p) => Some(Record::Packages(p)),
                            Err(e) => {
                                self.warn(e);
                                None
                            }
                        }
                    }
                }
            } else if header.mode().unwrap_or(0) & 0o111 != 0 && size >= 64 {
                let mut magic = [0u8; 4];
                entry
                    .read_exact(&mut magic)
                    .map_err(|e| limit_or(e, name))?;
                if &magic != b"\x7fELF" {
                    None
                } else if size > self.limits.max_binary_bytes {
                    self.warn(format!(
                        "{path}: executable of {size} bytes is larger than the {} byte limit; not inspected",
                        self.limits.max_binary_bytes
                    ));
                    None
                } else {
                    let mut data = Vec::from(magic);
                    data.extend(read_all(&mut entry, size - 4, name)?);
                    let pkgs = extract::extract_binary(&path, &data, self.limits.max_file_bytes);
                    (!pkgs.is_empty()).then_some(Record::Packages(pkgs))
                }
            } else {
                None
            };
            match record {
                Some(r) => {
                    if let Record::Packages(p) = &r {
                        layer_packages += p.len();
                        if self.packages + layer_packages > self.limits.max_packages {
                            return Err(ScanError::LimitExceeded {
                                what: "package count",
                                limit: self.limits.max_packages as u64,
                            });
                        }
                    }
                    if let Some(Record::Packages(old)) = added.insert(path, r) {
                        layer_packages -= old.len();
                    }
                }
                None => {
                    if added.remove(&path).is_some() || lower_has {
                        removed.push(path);
                    }
                }
            }
        }
        // Whiteouts and replacements hide lower layers only; this layer's
        // own files (wherever they came in the archive) are merged after.
        for path in &removed {
            self.remove_tree(path, true);
        }
        for dir in &opaque {
            self.remove_tree(dir, false);
        }
        for (path, record) in added {
            self.files.insert(path, record);
        }
        self.packages = self
            .files
            .values()
            .map(|r| match r {
                Record::Packages(p) => p.len(),
                Record::OsRelease(_) => 0,
            })
            .sum();
        Ok(())
    }

    /// Removes `path`'s descendants, and `path` itself when `inclusive`.
    fn remove_tree(&mut self, path: &str, inclusive: bool) {
        if inclusive {
            self.files.remove(path);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }

    /// The packages of the assembled filesystem.
    pub fn finish(self) -> Inventory {
        let mut distro = None;
        let mut packages: Vec<Package> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (path, record) in self.files {
            match record {
                Record::OsRelease(d) => {
                    // etc/os-release wins over usr/lib/os-release.
                    if distro.is_none() || path == "etc/os-release" {
                        distro = Some(d);
                    }
                }
                Record::Packages(ps) => {
                    for p in ps {
                        if seen.insert((p.kind, p.name.clone(), p.version.clone())) {
                            packages.push(p);
                        }
                    }
                }
            }
        }
        Inventory {
            distro,
            packages,
            warnings: self.warnings,
        }
    }
}

fn read_all(entry: &mut impl Read, size: u64, layer: &str) -> ScanResult<Vec<u8>> {
    let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
    entry
        .take(size)
        .read_to_end(&mut data)
        .map_err(|e| limit_or(e, layer))?;
    Ok(data)
}

/// An I/O error from the bounded reader is the limit; others are a bad layer.
fn limit_or(e: std::io::Error, layer: &str) -> ScanError {
    // The tar reader may wrap the bounded reader's error; walk the chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|i| i as &(dyn std::error::Error + 'static));
    while let Some(err) = source {
        if let Some(limit) = err.downcast_ref::<LayerTooLarge>() {
            return ScanError::LimitExceeded {
                what: "decompressed layer",
                limit: limit.0,
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            source = Some(inner as &(dyn std::error::Error + 'static));
            continue;
        }
        source = err.source();
    }
    ScanError::Layer {
        layer: layer.to_owned(),
        message: e.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("decompressed layer is larger than {0} bytes")]
struct LayerTooLarge(u64);

/// Fails once more than `remaining` bytes were read.
struct Bounded<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(r) => {
                self.remaining = r;
                Ok(n)
            }
            None => Err(std::io::Error::other(LayerTooLarge(self.limit))),
        }
    }
}

/// A streaming zstd decoder that reads every frame (parallel compressors
/// write several) and steps over skippable frames.
struct ZstdReader<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(source: R) -> Self {
        ZstdReader {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::BlockDecodingStrategy;
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        std::io::copy(
                            &mut (&mut self.source).take(u64::from(length)),
                            &mut std::io::sink(),
                        )?;
                        continue;
                    }
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let need = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(need))
                    .map_err(std::io::Error::other)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                self.in_frame = false;
                continue;
            }
            return Ok(0);
        }
    }
}

/// Resolves a tar path to a clean relative path (`./a/../b/` -> `b`);
/// `None` for the root itself.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The value of `key` in PAX extended header records (`"%d %s=%s\n"`).
fn pax_value(data: &[u8], key: &str) -> Option<Vec<u8>> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|&b| b == b'=')
            && &record[..eq] == key.as_bytes()
        {
            found = Some(record[eq + 1..].to_vec());
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_pax() {
        assert_eq!(
            normalize("./var/lib/../lib/dpkg/status").as_deref(),
            Some("var/lib/dpkg/status")
        );
        assert_eq!(
            normalize("/../../etc/os-release").as_deref(),
            Some("etc/os-release")
        );
        assert_eq!(normalize("./"), None);
        assert_eq!(
            pax_value(
                b"30 mtime=1700000000.123456789\n28 path=var/lib/dpkg/status\n",
                "path"
            ),
            Some(b"var/lib/dpkg/status".to_vec())
        );
        assert_eq!(pax_value(b"999 path=x\n", "path"), None);
    }
}
