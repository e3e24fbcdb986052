//! Scanning an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/<algorithm>/<hex>`), as written by `skopeo copy ... oci:DIR`,
//! `crane pull --format=oci`, `buildah push ... oci:DIR` or `docker buildx
//! --output type=oci`: images from any registry, scanned offline.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use wharf_types::{Digest, Digester, Manifest};

use crate::error::{ScanError, ScanResult};
use crate::layer::{Inventory, LayerStack};
use crate::limits::Limits;

/// The annotation naming an image in a layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const MAX_INDEX_CHILDREN: usize = 16;

/// An image found in a layout.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// Its manifest (or index) digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its reference name in `index.json`, if any.
    pub name: Option<String>,
}

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    limits: Limits,
}

impl Layout {
    /// Opens a layout directory (checks for `oci-layout`).
    pub fn open(root: impl Into<PathBuf>, limits: Limits) -> ScanResult<Layout> {
        let root = root.into();
        let marker = root.join("oci-layout");
        if !marker.is_file() {
            return Err(ScanError::Image {
                digest: root.display().to_string(),
                message: "not an OCI image layout (no oci-layout file)".into(),
            });
        }
        Ok(Layout { root, limits })
    }

    fn read_small(&self, path: &Path, what: &str) -> ScanResult<Bytes> {
        let file = std::fs::File::open(path).map_err(|e| self.err(format!("{what}: {e}")))?;
        let mut data = Vec::new();
        file.take(self.limits.max_manifest_bytes + 1)
            .read_to_end(&mut data)?;
        if data.len() as u64 > self.limits.max_manifest_bytes {
            return Err(ScanError::LimitExceeded {
                what: "manifest",
                limit: self.limits.max_manifest_bytes,
            });
        }
        Ok(Bytes::from(data))
    }

    fn err(&self, message: String) -> ScanError {
        ScanError::Image {
            digest: self.root.display().to_string(),
            message,
        }
    }

    /// The path of a blob (the digest is validated, so it is a safe path).
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn manifest(&self, digest: &Digest, media_type: Option<&str>) -> ScanResult<Manifest> {
        let raw = self.read_small(&self.blob_path(digest), digest.as_str())?;
        let m = Manifest::parse(raw, media_type).map_err(|e| self.err(format!("{digest}: {e}")))?;
        if m.digest() != digest {
            return Err(self.err(format!("{digest}: content has digest {}", m.digest())));
        }
        Ok(m)
    }

    /// The images `index.json` lists.
    pub fn images(&self) -> ScanResult<Vec<LayoutImage>> {
        let raw = self.read_small(&self.root.join("index.json"), "index.json")?;
        let index = Manifest::parse(raw, Some(wharf_types::media_type::OCI_IMAGE_INDEX))
            .map_err(|e| self.err(format!("index.json: {e}")))?;
        Ok(index
            .manifests()
            .iter()
            .map(|d| LayoutImage {
                digest: d.digest.clone(),
                media_type: d.media_type.to_string(),
                name: d.annotations.get(REF_NAME_ANNOTATION).cloned(),
            })
            .collect())
    }

    /// Picks an image: the one named `name`, or the only one.
    pub fn find(&self, name: Option<&str>) -> ScanResult<LayoutImage> {
        let images = self.images()?;
        let names = || {
            images
                .iter()
                .filter_map(|i| i.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(n) => images
                .iter()
                .find(|i| i.name.as_deref() == Some(n) || i.digest.as_str() == n)
                .cloned()
                .ok_or_else(|| self.err(format!("no image named {n:?} (names: {})", names()))),
            None if images.len() == 1 => Ok(images[0].clone()),
            None => Err(self.err(format!(
                "{} images in index.json; name one of: {}",
                images.len(),
                names()
            ))),
        }
    }

    /// Reads the packages of an image of the layout (every platform image
    /// of an index, merged).
    pub fn inventory(&self, image: &LayoutImage) -> ScanResult<Inventory> {
        let m = self.manifest(&image.digest, Some(&image.media_type))?;
        if !m.kind().is_index() {
            return self.image_inventory(&m);
        }
        let mut merged = Inventory::default();
        let mut seen = std::collections::HashSet::new();
        let mut first = true;
        for child in m.manifests().iter().take(MAX_INDEX_CHILDREN) {
            let cm = self.manifest(&child.digest, Some(child.media_type.as_str()))?;
            if cm.kind().is_index() || !crate::image::is_scannable(&cm) {
                continue;
            }
            let inv = self.image_inventory(&cm)?;
            if first {
                merged.distro = inv.distro;
                first = false;
            } else if merged.distro != inv.distro {
                merged.distro = None;
            }
            for p in inv.packages {
                if seen.insert((p.kind, p.name.clone(), p.version.clone())) {
                    merged.packages.push(p);
                }
            }
            merged.warnings.extend(inv.warnings);
        }
        Ok(merged)
    }

    fn image_inventory(&self, m: &Manifest) -> ScanResult<Inventory> {
        let mut stack = LayerStack::new(self.limits.clone());
        for layer in m.layers() {
            if layer.is_foreign() {
                continue;
            }
            let file = std::fs::File::open(self.blob_path(&layer.digest))
                .map_err(|e| self.err(format!("layer {}: {e}", layer.digest)))?;
            // Hashed as read; whatever the archive reader did not need is
            // read too, so the whole file is checked against its digest.
            let mut reader = Hashing {
                inner: file,
                digester: Digester::new(layer.digest.algorithm()),
            };
            stack.apply(&mut reader, layer.digest.as_str())?;
            std::io::copy(&mut reader, &mut std::io::sink())?;
            let actual = reader.digester.finish();
            if actual != layer.digest {
                return Err(self.err(format!(
                    "layer {}: content has digest {actual}",
                    layer.digest
                )));
            }
        }
        Ok(stack.finish())
    }
}

struct Hashing<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}
