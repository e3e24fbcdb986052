//! Prints the SHA-256 throughput of `wharf_types::Digester` on one core, in
//! MB/s, for comparison with `sha256sum` and `openssl speed` in
//! `benches/hash-vs-system.sh`.

use std::time::Instant;

use wharf_types::{Algorithm, Digester};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    // Hash the same 16 MiB buffer repeatedly, in 1 MiB updates as a network
    // body would arrive.
    let buf: Vec<u8> = (0..16 << 20).map(|i: usize| (i * 31 % 251) as u8).collect();
    let mut d = Digester::new(Algorithm::Sha256);
    let start = Instant::now();
    let mut left = mib << 20;
    while left > 0 {
        for chunk in buf.chunks(1 << 20) {
            if left == 0 {
                break;
            }
            let n = chunk.len().min(left);
            d.update(&chunk[..n]);
            left -= n;
        }
    }
    let digest = d.finish();
    let secs = start.elapsed().as_secs_f64();
    println!("{:.1}", (mib << 20) as f64 / secs / 1e6);
    eprintln!("hashed {mib} MiB in {secs:.3} s ({digest})");
}
