#![no_main]
//! Route parsing: never panics; every accepted route's parts are validated
//! and the path rebuilt from them is the input.

use libfuzzer_sys::fuzz_target;
use wharf_registry::route::{Route, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(route) = parse(path) else { return };
    let rebuilt = match &route {
        Route::Base | Route::Catalog => return,
        Route::Blob(n, d) => format!("/v2/{n}/blobs/{d}"),
        Route::UploadStart(n) => format!("/v2/{n}/blobs/uploads/"),
        Route::Upload(n, id) => format!("/v2/{n}/blobs/uploads/{id}"),
        Route::Manifest(n, r) => format!("/v2/{n}/manifests/{r}"),
        Route::Tags(n) => format!("/v2/{n}/tags/list"),
        Route::Referrers(n, d) => format!("/v2/{n}/referrers/{d}"),
    };
    let trimmed = path.trim_end_matches('/');
    assert!(
        rebuilt.trim_end_matches('/') == trimmed,
        "{path} -> {rebuilt}"
    );
    assert!(path.split('/').all(|seg| seg != ".." && seg != "."));
});
