//! Validates a manifest file the way the registry does on push and prints
//! what it references.
//!
//! ```text
//! cargo run -p wharf-examples --example inspect-manifest -- manifest.json [content-type]
//! ```

use bytes::Bytes;
use wharf_types::{Manifest, OciError};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: inspect-manifest FILE [CONTENT-TYPE]");
        return std::process::ExitCode::from(2);
    };
    let content_type = args.next();
    let raw = match std::fs::read(&path) {
        Ok(raw) => Bytes::from(raw),
        Err(e) => {
            eprintln!("{path}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match Manifest::parse(raw, content_type.as_deref()) {
        Ok(m) => {
            println!("digest:     {}", m.digest());
            println!("media type: {}", m.media_type());
            if let Some(a) = m.artifact_type() {
                println!("artifact:   {a}");
            }
            if let Some(s) = m.subject() {
                println!("subject:    {}", s.digest);
            }
            for d in m.blob_references() {
                println!("blob        {} {:>12} {}", d.digest, d.size, d.media_type);
            }
            for d in m.manifest_references() {
                println!("manifest    {} {:>12} {}", d.digest, d.size, d.media_type);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} ({} {}): {e}", path, e.code(), e.status());
            std::process::ExitCode::FAILURE
        }
    }
}
