//! Benchmarks and load tools for Wharf. The criterion benches live in
//! `benches/`; the binaries in `src/bin/` measure whole-system figures.

use bytes::Bytes;
use wharf_storage::Body;

pub mod bench;

/// A body of `total` bytes in `chunk`-sized pieces of pseudo-random data
/// (deterministic, not compressible, generated without allocating more than
/// one chunk at a time).
pub fn body(total: usize, chunk: usize, seed: u64) -> Body {
    let mut state = seed | 1;
    let mut left = total;
    Box::pin(futures::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = chunk.min(left);
        left -= n;
        let mut buf = vec![0u8; n];
        for word in buf.chunks_mut(8) {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            word.copy_from_slice(&b[..word.len()]);
        }
        std::task::Poll::Ready(Some(Ok(Bytes::from(buf))))
    }))
}

/// The chunks of [`body`], generated up front, so a benchmark can replay
/// them without paying for generation in the timed part.
pub fn chunks(total: usize, chunk: usize, seed: u64) -> Vec<Bytes> {
    use futures::StreamExt;
    futures::executor::block_on(async {
        body(total, chunk, seed)
            .map(|c| c.unwrap_or_default())
            .collect()
            .await
    })
}

/// A body replaying pre-generated chunks (cheap clones of `Bytes`).
pub fn replay(chunks: &[Bytes]) -> Body {
    let chunks: Vec<std::io::Result<Bytes>> = chunks.iter().cloned().map(Ok).collect();
    Box::pin(futures::stream::iter(chunks))
}

/// The SHA-256 digest of what [`body`] yields, computed the same way.
pub fn body_digest(total: usize, chunk: usize, seed: u64) -> wharf_types::Digest {
    use futures::StreamExt;
    let mut d = wharf_types::Digester::new(wharf_types::Algorithm::Sha256);
    futures::executor::block_on(async {
        let mut b = body(total, chunk, seed);
        while let Some(Ok(c)) = b.next().await {
            d.update(&c);
        }
    });
    d.finish()
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
