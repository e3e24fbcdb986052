//! Storage for redb over a database file that cannot be written: reads come
//! from the file, writes stay in memory.
//!
//! redb opens a database that was not closed cleanly (after a crash, or
//! after storage turned read-only under a running server) only by repairing
//! it, and a repair writes. On read-only storage that write goes here
//! instead, so the database can still be read; nothing written ever reaches
//! the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Unit of the in-memory copy.
const BLOCK: u64 = 4096;
/// Most bytes held in memory; writes beyond fail (the repair, and so the
/// opening, fails with them).
const MAX_BYTES: u64 = 256 << 20;

/// A read-only file with an in-memory layer of changes.
#[derive(Debug)]
pub(super) struct MemoryOverlay {
    file: File,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The storage's length as redb sees it.
    len: u64,
    /// Bytes of the file at or after this offset read as zeros (the file's
    /// length, lowered when the storage was shortened).
    file_end: u64,
    /// Changed blocks, by block number.
    blocks: HashMap<u64, Box<[u8]>>,
}

impl MemoryOverlay {
    /// Opens `path` for reading.
    pub(super) fn open(path: &Path) -> io::Result<MemoryOverlay> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(MemoryOverlay {
            file,
            state: Mutex::new(State {
                len,
                file_end: len,
                blocks: HashMap::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills `out` with the content of block `block` from `at` on, as the
    /// file (and the zeros past its end) has it. Callers hold the state
    /// lock, which orders the file's uses of its position.
    fn read_from_file(&self, state: &State, block: u64, at: u64, out: &mut [u8]) -> io::Result<()> {
        let start = block * BLOCK + at;
        let from_file = state.file_end.saturating_sub(start).min(out.len() as u64) as usize;
        let (head, tail) = out.split_at_mut(from_file);
        if !head.is_empty() {
            let mut file = &self.file;
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(head)?;
        }
        tail.fill(0);
        Ok(())
    }

    /// The changed copy of block `block`, made from the file if needed.
    fn block_mut<'s>(&self, state: &'s mut State, block: u64) -> io::Result<&'s mut [u8]> {
        if !state.blocks.contains_key(&block) {
            if (state.blocks.len() as u64 + 1) * BLOCK > MAX_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "in-memory changes to a read-only database are too large",
                ));
            }
            let mut copy = vec![0u8; BLOCK as usize].into_boxed_slice();
            self.read_from_file(state, block, 0, &mut copy)?;
            state.blocks.insert(block, copy);
        }
        state
            .blocks
            .get_mut(&block)
            .map(|b| &mut b[..])
            .ok_or_else(|| io::Error::other("overlay block vanished"))
    }
}

impl redb::StorageBackend for MemoryOverlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.state();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|end| *end <= state.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut pos = offset;
        while pos < end {
            let block = pos / BLOCK;
            let at = pos % BLOCK;
            let n = (BLOCK - at).min(end - pos) as usize;
            let dst = &mut out[(pos - offset) as usize..(pos - offset) as usize + n];
            match state.blocks.get(&block) {
                Some(copy) => dst.copy_from_slice(&copy[at as usize..at as usize + n]),
                None => self.read_from_file(&state, block, at, dst)?,
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state();
        if len < state.len {
            // Cut: what lies past `len` reads as zeros from now on.
            if !len.is_multiple_of(BLOCK) {
                let at = (len % BLOCK) as usize;
                self.block_mut(&mut state, len / BLOCK)?[at..].fill(0);
            }
            let first_gone = len.div_ceil(BLOCK);
            state.blocks.retain(|b, _| *b < first_gone);
            state.file_end = state.file_end.min(len);
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut pos = offset;
        while pos < end {
            let block = pos / BLOCK;
            let at = (pos % BLOCK) as usize;
            let n = (BLOCK as usize - at).min((end - pos) as usize);
            let src = &data[(pos - offset) as usize..(pos - offset) as usize + n];
            self.block_mut(&mut state, block)?[at..at + n].copy_from_slice(src);
            pos += n as u64;
        }
        state.len = state.len.max(end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use redb::StorageBackend;

    use super::*;

    #[test]
    fn reads_the_file_through_changes_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let o = MemoryOverlay::open(&path).unwrap();
        assert_eq!(o.len().unwrap(), 10_000);

        let mut expect = content.clone();
        o.write(4000, &[7; 300]).unwrap();
        expect[4000..4300].fill(7);
        let mut out = vec![0; 10_000];
        o.read(0, &mut out).unwrap();
        assert_eq!(out, expect);

        // Growing by a write, then cutting and growing again: what was cut
        // reads as zeros.
        o.write(10_000, &[9; 5000]).unwrap();
        expect.extend_from_slice(&[9; 5000]);
        assert_eq!(o.len().unwrap(), 15_000);
        o.set_len(6000).unwrap();
        o.set_len(9000).unwrap();
        expect.truncate(6000);
        expect.resize(9000, 0);
        let mut out = vec![1; 9000];
        o.read(0, &mut out).unwrap();
        assert_eq!(out, expect);
        assert!(o.read(8999, &mut [0; 2]).is_err());

        // The file itself is untouched.
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}
