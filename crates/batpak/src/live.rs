//! The live mark: a 32-byte file (`LIVE`) the writer maps and stores its visible
//! watermark in after every publish, so a view in another process knows how far it
//! may read without scanning the directory or trusting a half-written frame.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "BPLIVE01"
//! 8       16    store_id (the segments' own)
//! 24      8     visible sequence, little-endian, stored atomically
//! ```
//!
//! The file is created once and never truncated (a view may have it mapped); a new
//! writer rewrites the header only when it is not this store's. The watermark is a
//! hint for followers, not evidence: open never reads it.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{io_err, Result};

/// The file name under the store directory.
pub(crate) const LIVE_FILE: &str = "LIVE";
const MAGIC: [u8; 8] = *b"BPLIVE01";
const LEN: usize = 32;
const STORE_ID_OFFSET: usize = 8;
const VISIBLE_OFFSET: usize = 24;

/// A mapped live mark: the writer's (read-write) or a view's (read-only).
#[derive(Debug)]
pub(crate) struct LiveMark {
    map: MmapRaw,
    _file: File,
}

/// The header bytes of a store's mark.
fn header(store_id: &[u8; 16]) -> [u8; VISIBLE_OFFSET] {
    let mut out = [0u8; VISIBLE_OFFSET];
    out[..STORE_ID_OFFSET].copy_from_slice(&MAGIC);
    out[STORE_ID_OFFSET..VISIBLE_OFFSET].copy_from_slice(store_id);
    out
}

impl LiveMark {
    /// The writer's mark in `dir`, created if missing, with `visible` stored.
    pub(crate) fn create(dir: &Path, store_id: &[u8; 16], visible: u64) -> Result<LiveMark> {
        use std::os::unix::fs::FileExt;
        let path = dir.join(LIVE_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open live mark", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat live mark", &path))?
            .len();
        if len < LEN as u64 {
            file.set_len(LEN as u64)
                .map_err(io_err("size live mark", &path))?;
        }
        let mut present = [0u8; VISIBLE_OFFSET];
        file.read_exact_at(&mut present, 0)
            .map_err(io_err("read live mark", &path))?;
        let wanted = header(store_id);
        if present != wanted {
            file.write_all_at(&wanted, 0)
                .map_err(io_err("write live mark", &path))?;
        }
        let map = map(&file, true).map_err(io_err("map live mark", &path))?;
        let mark = LiveMark { map, _file: file };
        mark.publish(visible);
        Ok(mark)
    }

    /// A view's mark in `dir`, when one of this store exists.
    pub(crate) fn open(dir: &Path, store_id: &[u8; 16]) -> Option<LiveMark> {
        use std::os::unix::fs::FileExt;
        let file = File::open(dir.join(LIVE_FILE)).ok()?;
        if file.metadata().ok()?.len() < LEN as u64 {
            return None;
        }
        let mut present = [0u8; VISIBLE_OFFSET];
        file.read_exact_at(&mut present, 0).ok()?;
        if present != header(store_id) {
            return None;
        }
        let map = map(&file, false).ok()?;
        Some(LiveMark { map, _file: file })
    }

    fn cell(&self) -> &AtomicU64 {
        live_cell(&self.map)
    }

    /// Stores the writer's visible watermark.
    pub(crate) fn publish(&self, visible: u64) {
        self.cell().store(visible.to_le(), Ordering::Release);
    }

    /// The visible watermark the writer last stored.
    pub(crate) fn visible(&self) -> u64 {
        u64::from_le(self.cell().load(Ordering::Acquire))
    }
}

/// A shared map of the 32-byte mark: a follower in another process reads the
/// writer's watermark with one load, and the writer stores it with one store, no
/// system call on the append path.
fn map(file: &File, writable: bool) -> std::io::Result<MmapRaw> {
    let options = {
        let mut o = MmapOptions::new();
        o.len(LEN);
        o
    };
    if writable {
        options.map_raw(file)
    } else {
        options.map_raw_read_only(file)
    }
}

#[expect(
    unsafe_code,
    reason = "the watermark cell of the mapped mark, accessed only atomically"
)]
fn live_cell(map: &MmapRaw) -> &AtomicU64 {
    // SAFETY: the map is `LEN` bytes long (the file is at least that long and is never
    // truncated) and page-aligned, so the 8 bytes at `VISIBLE_OFFSET` (a multiple of 8)
    // are in bounds and aligned for `AtomicU64`. Every access to them, in this process
    // and in any other mapping the file, goes through atomic operations, so there is
    // no data race; the reference lives no longer than `map`. A read-only map is only
    // ever loaded from.
    unsafe { AtomicU64::from_ptr(map.as_mut_ptr().add(VISIBLE_OFFSET).cast::<u64>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_a_follower_sees_each_publish() {
        let dir = tempfile::tempdir().unwrap();
        let id = [0xAB; 16];
        let writer = LiveMark::create(dir.path(), &id, 7).unwrap();
        let bytes = std::fs::read(dir.path().join(LIVE_FILE)).unwrap();
        let mut golden = b"BPLIVE01".to_vec();
        golden.extend_from_slice(&[0xAB; 16]);
        golden.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(bytes, golden);
        let follower = LiveMark::open(dir.path(), &id).unwrap();
        assert_eq!(follower.visible(), 7);
        writer.publish(1_000_000);
        assert_eq!(follower.visible(), 1_000_000);
        // Another store's id: no mark for it; a new writer takes the file over in place.
        assert!(LiveMark::open(dir.path(), &[1; 16]).is_none());
        let other = LiveMark::create(dir.path(), &[1; 16], 3).unwrap();
        assert_eq!(other.visible(), 3);
        assert_eq!(
            std::fs::metadata(dir.path().join(LIVE_FILE)).unwrap().len(),
            32
        );
    }
}
