#![no_main]
//! Whole requests (method, path, query, headers, body) through the
//! in-memory registry service: it always answers, never panics, and never
//! answers a 5xx.

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wharf_registry::Registry;
use wharf_storage::{MemoryBackend, Store};

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry::builder(Store::new(MemoryBackend::new())).build())
}

fuzz_target!(|data: &[u8]| {
    // Layout: method byte, then "path\nheader: value\n...\n\nbody".
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"][usize::from(m) % 7];
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.lines();
    let Some(target) = lines.next() else { return };
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("/v2/{target}"));
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let Ok(req) = req.body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
        body,
    ))) else {
        return;
    };
    let resp = futures::executor::block_on(registry().handle(req));
    assert!(
        !resp.status().is_server_error(),
        "{} {target}: {}",
        method,
        resp.status()
    );
});
