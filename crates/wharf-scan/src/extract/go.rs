//! Go: the build information the Go linker embeds in every binary
//! (Go 1.18 and later: the `\xff Go buildinf:` header with inline strings).

use crate::package::{Package, PackageKind};

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Go frames the module information with these 16-byte markers.
const MODINFO_START: &[u8; 16] = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
const MODINFO_END: &[u8; 16] = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";

/// Module build info read from a Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain, e.g. `go1.21.3`.
    pub go_version: String,
    /// The main package path (`path` line).
    pub path: String,
    /// The main module and its version (`(devel)` for local builds).
    pub main: Option<(String, String)>,
    /// Dependencies as (module path, version), replacements applied.
    pub deps: Vec<(String, String)>,
}

/// Finds and parses Go build info in an executable's bytes.
pub fn build_info(data: &[u8]) -> Option<BuildInfo> {
    let at = find(data, MAGIC)?;
    let header = data.get(at..at.checked_add(32)?)?;
    let flags = header[15];
    if flags & 0x2 == 0 {
        // Before Go 1.18 the strings are behind pointers into the data
        // segment; those toolchains are long unsupported upstream.
        return None;
    }
    let mut rest = &data[at + 32..];
    let go_version = read_string(&mut rest)?;
    let modinfo = read_string(&mut rest)?;
    let modinfo = if modinfo.len() >= 33 && modinfo.as_bytes()[modinfo.len() - 17] == b'\n' {
        let b = modinfo.as_bytes();
        String::from_utf8_lossy(&b[16..b.len() - 16]).into_owned()
    } else {
        modinfo
    };
    let mut info = BuildInfo {
        go_version,
        path: String::new(),
        main: None,
        deps: Vec::new(),
    };
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["path", p, ..] => info.path = (*p).to_owned(),
            ["mod", p, v, ..] => info.main = Some(((*p).to_owned(), (*v).to_owned())),
            ["dep", p, v, ..] => info.deps.push(((*p).to_owned(), (*v).to_owned())),
            ["=>", p, v, ..] => {
                // A replacement of the dependency on the previous line.
                if let Some(last) = info.deps.last_mut() {
                    *last = ((*p).to_owned(), (*v).to_owned());
                }
            }
            _ => {}
        }
    }
    Some(info)
}

/// The Go modules (and the standard library, as `stdlib`) in a binary.
pub fn parse_binary(data: &[u8], location: &str) -> Vec<Package> {
    let Some(info) = build_info(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(v) = info.go_version.strip_prefix("go") {
        // "go1.21.3" or "go1.22.0 X:boringcrypto"
        let v = v.split_whitespace().next().unwrap_or(v);
        out.push(Package::new(
            PackageKind::Go,
            "stdlib",
            format!("v{v}"),
            location,
        ));
    }
    if let Some((p, v)) = &info.main
        && v != "(devel)"
        && !v.is_empty()
    {
        out.push(Package::new(PackageKind::Go, p, v, location));
    }
    for (p, v) in &info.deps {
        // Local directory replacements have no version.
        if !v.is_empty() && !p.starts_with('.') && !p.starts_with('/') {
            out.push(Package::new(PackageKind::Go, p, v, location));
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let pos = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        let at = i + pos;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn read_string(buf: &mut &[u8]) -> Option<String> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    let s = buf.get(..len)?;
    *buf = &buf[len..];
    Some(String::from_utf8_lossy(s).into_owned())
}

/// Encodes build info exactly as the Go 1.18+ linker lays it out (header,
/// inline version string, framed module info), for tests of code that reads
/// Go binaries.
#[doc(hidden)]
pub fn encode_build_info(go_version: &str, modinfo: &str) -> Vec<u8> {
    let mut out = Vec::from(MAGIC);
    out.push(8); // pointer size
    out.push(0x2); // little endian, inline strings
    out.resize(32, 0);
    let mut framed = Vec::from(&MODINFO_START[..]);
    framed.extend_from_slice(modinfo.as_bytes());
    framed.extend_from_slice(MODINFO_END);
    for s in [go_version.as_bytes(), &framed[..]] {
        let mut n = s.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modules_with_replacements() {
        let modinfo = "path\texample.com/cmd/app\nmod\texample.com/app\tv1.0.0\th1:x=\n\
                       dep\tgolang.org/x/net\tv0.7.0\th1:y=\n\
                       dep\tgithub.com/old/thing\tv1.0.0\n=>\tgithub.com/new/thing\tv1.2.0\th1:z=\n\
                       build\tCGO_ENABLED=0\n";
        let mut bin = vec![0u8; 1000];
        bin.extend(encode_build_info("go1.20.1", modinfo));
        bin.extend([0u8; 100]);
        let pkgs = parse_binary(&bin, "usr/bin/app");
        let got: Vec<(&str, &str)> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdlib", "v1.20.1"),
                ("example.com/app", "v1.0.0"),
                ("golang.org/x/net", "v0.7.0"),
                ("github.com/new/thing", "v1.2.0")
            ]
        );
        // Truncations never panic.
        let enc = encode_build_info("go1.20.1", modinfo);
        for cut in 0..enc.len() {
            let _ = build_info(&enc[..cut]);
        }
    }
}
