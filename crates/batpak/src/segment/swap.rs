//! The files of a compaction: rewritten segments and the manifest are written into
//! `compact.partial/`, which one rename turns into `compact.ready/` (the commit
//! point), and are then renamed into place one by one. A crash before the commit
//! leaves the old store (the partial folder is removed at the next writable open); a
//! crash after it is rolled forward by that open before anything is read, so the
//! store opens to the state before or after, never a mix.

use std::path::{Path, PathBuf};

use crate::dir::{fs, sync_dir, SEGMENTS_DIR};
use crate::error::{io_err, Error, Result};
use crate::format::manifest::MANIFEST_FILE;

/// The folder a compaction writes into.
pub(crate) const PARTIAL_DIR: &str = "compact.partial";
/// The same folder once everything in it is durable: it will be rolled forward.
pub(crate) const READY_DIR: &str = "compact.ready";

/// A new, empty, durable `compact.partial/` (a leftover one is removed first).
pub(crate) fn begin(dir: &Path) -> Result<PathBuf> {
    let partial = dir.join(PARTIAL_DIR);
    let _ = fs::remove_leftover(&partial);
    fs::create_dir_all(&partial).map_err(io_err("create directory", &partial))?;
    sync_dir(dir)?;
    Ok(partial)
}

/// Removes what an abandoned compaction left (best effort).
pub(crate) fn abandon(dir: &Path) {
    let _ = fs::remove_leftover(&dir.join(PARTIAL_DIR));
}

/// One rewritten segment being written into the partial folder, through a buffer.
/// Written with the small-file calls (`dir::fs`), not as a segment: until the commit
/// it is not part of the store, and a failure abandons it without poisoning.
pub(crate) struct StagedSegment {
    file: std::fs::File,
    path: PathBuf,
    buffer: Vec<u8>,
    len: u64,
}

const FLUSH_AT: usize = 1 << 20;

impl StagedSegment {
    /// Creates segment `number`'s new file in `partial`, starting with `header`.
    pub(crate) fn create(partial: &Path, number: u64, header: &[u8]) -> Result<Self> {
        let path = partial.join(segment_name(number));
        let file = fs::create(&path).map_err(io_err("create compacted segment", &path))?;
        let mut buffer = Vec::with_capacity(FLUSH_AT + (64 << 10));
        buffer.extend_from_slice(header);
        Ok(StagedSegment {
            file,
            path,
            buffer,
            len: 0,
        })
    }

    /// Where the next frame will start.
    pub(crate) fn offset(&self) -> u64 {
        self.len + self.buffer.len() as u64
    }

    pub(crate) fn push(&mut self, frame: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(frame);
        if self.buffer.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            fs::write_all(&mut self.file, &self.path, &self.buffer)
                .map_err(io_err("write compacted segment", &self.path))?;
            self.len += self.buffer.len() as u64;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and fsyncs the file; its length.
    pub(crate) fn finish(mut self) -> Result<u64> {
        self.flush()?;
        fs::sync_all(&self.file, &self.path)
            .map_err(io_err("fsync compacted segment", &self.path))?;
        Ok(self.len)
    }
}

fn segment_name(number: u64) -> String {
    crate::segment::segment_path(Path::new(""), number)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Writes the manifest into `partial` and makes the folder durable, then renames it
/// to `compact.ready/`: from here on the compaction happens, whatever fails.
pub(crate) fn commit(dir: &Path, partial: &Path, manifest: &[u8]) -> Result<()> {
    crate::dir::write_durably(&partial.join(MANIFEST_FILE), manifest)?;
    let ready = dir.join(READY_DIR);
    fs::rename(partial, &ready).map_err(io_err("rename", &ready))?;
    sync_dir(dir)
}

/// Moves everything a committed compaction left in `compact.ready/` into place: the
/// segments over their old files, then the manifest; then removes the folder.
/// Returns whether there was one. Every step can be repeated, so a crash here is
/// finished by the next open.
pub(crate) fn roll_forward(dir: &Path) -> Result<bool> {
    let ready = dir.join(READY_DIR);
    if !ready.exists() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(&ready).map_err(io_err("list", &ready))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", &ready))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let segments = dir.join(SEGMENTS_DIR);
    let mut manifest = false;
    for name in &names {
        let from = ready.join(name);
        if name == MANIFEST_FILE {
            manifest = true;
            continue;
        }
        if !name.ends_with(".seg") {
            return Err(Error::Corrupt {
                path: from,
                offset: 0,
                detail: "unexpected file in a committed compaction".into(),
            });
        }
        let to = segments.join(name);
        fs::rename(&from, &to).map_err(io_err("rename compacted segment into place", &to))?;
    }
    sync_dir(&segments)?;
    if manifest {
        let to = dir.join(MANIFEST_FILE);
        fs::rename(&ready.join(MANIFEST_FILE), &to)
            .map_err(io_err("rename compaction manifest into place", &to))?;
    }
    sync_dir(dir)?;
    fs::remove_dir(&ready).map_err(io_err("remove", &ready))?;
    sync_dir(dir)?;
    Ok(true)
}
