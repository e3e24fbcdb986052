//! Just enough ELF to find a section by name, with every offset checked.

/// The bytes of the section called `name`, if `data` is an ELF file that
/// has one. Works for 32- and 64-bit, little- and big-endian files.
pub fn section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match data.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match data.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let r = Reader { data, le };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (r.u64(0x28)?, r.u16(0x3A)?, r.u16(0x3C)?, r.u16(0x3E)?)
    } else {
        (
            u64::from(r.u32(0x20)?),
            r.u16(0x2E)?,
            r.u16(0x30)?,
            r.u16(0x32)?,
        )
    };
    let header = |i: u16| -> Option<(u32, u64, u64)> {
        let base = shoff.checked_add(u64::from(i).checked_mul(u64::from(shentsize))?)?;
        let base = usize::try_from(base).ok()?;
        if wide {
            Some((r.u32(base)?, r.u64(base + 0x18)?, r.u64(base + 0x20)?))
        } else {
            Some((
                r.u32(base)?,
                u64::from(r.u32(base + 0x10)?),
                u64::from(r.u32(base + 0x14)?),
            ))
        }
    };
    let slice = |off: u64, size: u64| -> Option<&'a [u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        data.get(start..end)
    };
    let (_, str_off, str_size) = header(shstrndx)?;
    let names = slice(str_off, str_size)?;
    for i in 0..shnum {
        let (name_off, off, size) = header(i)?;
        let Some(rest) = names.get(name_off as usize..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return slice(off, size);
        }
    }
    None
}

struct Reader<'a> {
    data: &'a [u8],
    le: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.data.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.bytes::<2>(at)?;
        Some(if self.le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.bytes::<4>(at)?;
        Some(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.bytes::<8>(at)?;
        Some(if self.le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

#[doc(hidden)]
/// Builds a minimal 64-bit little-endian ELF file with the given sections
/// (for tests of code that reads sections).
pub fn build_test_elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut names = vec![0u8];
    let mut name_offsets = Vec::new();
    for (n, _) in sections.iter().copied().chain([(".shstrtab", &[][..])]) {
        name_offsets.push(names.len() as u32);
        names.extend_from_slice(n.as_bytes());
        names.push(0);
    }
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    let mut placed = Vec::new();
    for (_, d) in sections {
        placed.push((out.len() as u64, d.len() as u64));
        out.extend_from_slice(d);
    }
    placed.push((out.len() as u64, names.len() as u64));
    out.extend_from_slice(&names);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len() as u64;
    out.extend_from_slice(&[0u8; 64]); // the null section
    for (i, (off, size)) in placed.iter().enumerate() {
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(&name_offsets[i].to_le_bytes());
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
        h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&h);
    }
    let shnum = (placed.len() + 1) as u16;
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    out[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    out[0x3C..0x3E].copy_from_slice(&shnum.to_le_bytes());
    out[0x3E..0x40].copy_from_slice(&(shnum - 1).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sections_and_rejects_garbage() {
        let elf = build_test_elf(&[(".text", b"code"), (".dep-v0", b"deps")]);
        assert_eq!(section(&elf, ".dep-v0"), Some(&b"deps"[..]));
        assert_eq!(section(&elf, ".text"), Some(&b"code"[..]));
        assert_eq!(section(&elf, ".nope"), None);
        assert_eq!(section(b"not elf", ".text"), None);
        // Truncated or corrupted headers never panic.
        for cut in 0..elf.len() {
            let _ = section(&elf[..cut], ".dep-v0");
        }
        let mut bad = elf.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(section(&bad, ".dep-v0"), None);
    }
}
