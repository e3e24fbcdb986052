//! Test content: unique blobs built from one shared random buffer (a
//! per-blob random prefix makes every digest distinct while the bytes are
//! `Bytes` slices of the buffer, so a 1 GiB blob costs no memory), hashed
//! before any timed part; and image manifests.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use serde_json::json;
use wharf_types::{Algorithm, Digester};

pub(crate) const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// What a client pulling by tag accepts.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

const BASE_LEN: usize = 16 << 20;
const NONCE_LEN: usize = 64;

/// The shared random buffer and a counter for unique prefixes.
pub(crate) struct Data {
    base: Bytes,
    run: u64,
    counter: AtomicU64,
}

/// A blob: its bytes as pieces, and its digest.
#[derive(Clone)]
pub(crate) struct Blob {
    pub(crate) pieces: Vec<Bytes>,
    pub(crate) digest: String,
    pub(crate) size: u64,
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl Data {
    pub(crate) fn new(run: u64) -> Self {
        let base = crate::chunks(BASE_LEN, BASE_LEN, run ^ 0x5eed)
            .into_iter()
            .next()
            .unwrap_or_default();
        Data {
            base,
            run,
            counter: AtomicU64::new(0),
        }
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut state = (self.run.rotate_left(17) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let mut out = [0u8; NONCE_LEN];
        out[..8].copy_from_slice(&self.run.to_le_bytes());
        out[8..16].copy_from_slice(&n.to_le_bytes());
        for w in out[16..].chunks_mut(8) {
            w.copy_from_slice(&xorshift(&mut state).to_le_bytes());
        }
        out
    }

    /// A new, unique blob of `size` bytes.
    pub(crate) fn blob(&self, size: u64) -> Blob {
        let nonce = self.nonce();
        let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
        let head = size_usize.min(NONCE_LEN);
        let mut pieces = Vec::new();
        if size_usize <= 256 << 10 {
            // Small: one contiguous piece, sent in one write.
            let mut b = BytesMut::with_capacity(size_usize);
            b.extend_from_slice(&nonce[..head]);
            let mut left = size_usize - head;
            while left > 0 {
                let n = left.min(self.base.len());
                b.extend_from_slice(&self.base[..n]);
                left -= n;
            }
            pieces.push(b.freeze());
        } else {
            pieces.push(Bytes::copy_from_slice(&nonce[..head]));
            let mut left = size_usize - head;
            while left > 0 {
                let n = left.min(self.base.len());
                pieces.push(self.base.slice(..n));
                left -= n;
            }
        }
        Blob::from_pieces(pieces)
    }

    /// A small JSON image configuration, unique.
    pub(crate) fn config(&self) -> Blob {
        let n = u64::from_le_bytes(self.nonce()[8..16].try_into().unwrap_or_default());
        let doc = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [{ "created_by": format!("wharf-bench {} {n}", self.run) }],
        });
        Blob::from_pieces(vec![Bytes::from(
            serde_json::to_vec(&doc).unwrap_or_default(),
        )])
    }
}

impl Blob {
    pub(crate) fn from_pieces(pieces: Vec<Bytes>) -> Blob {
        let mut d = Digester::new(Algorithm::Sha256);
        let mut size = 0u64;
        for p in &pieces {
            d.update(p);
            size += p.len() as u64;
        }
        Blob {
            pieces,
            digest: d.finish().to_string(),
            size,
        }
    }

    /// The pieces covering bytes `start..end`.
    pub(crate) fn slice(&self, start: u64, end: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut pos = 0u64;
        for p in &self.pieces {
            let len = p.len() as u64;
            let (a, b) = (start.max(pos), end.min(pos + len));
            if a < b {
                out.push(p.slice((a - pos) as usize..(b - pos) as usize));
            }
            pos += len;
            if pos >= end {
                break;
            }
        }
        out
    }
}

/// An OCI image manifest over `config` and `layers`, with a unique `id`
/// annotation, padded with a description annotation to at least `pad_to`
/// bytes (a typical manifest is about 1.2 KiB).
pub(crate) fn manifest(config: &Blob, layers: &[&Blob], id: &str, pad_to: usize) -> Bytes {
    let build = |pad: usize| {
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": { "mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size },
            "layers": layers.iter().map(|l| json!({
                "mediaType": LAYER_TYPE, "digest": l.digest, "size": l.size
            })).collect::<Vec<_>>(),
            "annotations": {
                "org.opencontainers.image.ref.name": id,
                "org.opencontainers.image.description": "x".repeat(pad),
            },
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    };
    let bare = build(0);
    if bare.len() >= pad_to {
        return Bytes::from(bare);
    }
    Bytes::from(build(pad_to - bare.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_unique_and_sliceable() {
        let data = Data::new(7);
        let a = data.blob(40 << 20);
        let b = data.blob(40 << 20);
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.size, 40 << 20);
        let parts: Vec<Bytes> = (0..3)
            .flat_map(|i| a.slice(i * (16 << 20), ((i + 1) * (16 << 20)).min(a.size)))
            .collect();
        assert_eq!(Blob::from_pieces(parts).digest, a.digest);
        let s = data.blob(4096);
        assert_eq!(s.pieces.len(), 1);
        assert_eq!(s.size, 4096);
        let m = manifest(&data.config(), &[&s], "x", 1200);
        assert_eq!(m.len(), 1200);
    }
}
