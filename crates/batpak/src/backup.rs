//! Backups: a consistent copy of the store, taken while it runs.
//!
//! The copy holds exactly the visible events at the moment it starts: every segment
//! before the one holding the newest visible event in full (their events are all
//! visible), and that segment up to the end of that event. Redactions wait while the
//! bytes are copied, so no half-rewritten record is copied. Cursor files come along,
//! and (from a writable store) an index checkpoint of exactly the copied events, so
//! the copy opens without a rebuild; projection snapshots do not. Everything is written under a temporary name, fsynced, and
//! renamed into place, so the destination is either absent or a complete store.

use std::path::{Path, PathBuf};

use crate::dir::sync_dir;
use crate::dir::{CURSORS_DIR, SEGMENTS_DIR};
use crate::error::{io_err, Error, Result};
use crate::segment::io::SegmentFile;
use crate::segment::reader::read_frame;
use crate::segment::segment_path;
use crate::store::Store;

/// What a backup copied.
///
/// Serde: an object of the fields; `dir` as a string (serialising a path that is not
/// UTF-8 is an error).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Backup {
    /// The directory written.
    pub dir: PathBuf,
    /// Events copied: the visible sequence when the backup started.
    pub events: u64,
    /// Segment files copied.
    pub segments: u64,
    /// Bytes of segment data copied.
    pub bytes: u64,
}

/// Bytes copied per read.
const CHUNK: usize = 1 << 20;

impl Store {
    /// Copies the store, as of now, to `dest`, which must not exist or be an empty
    /// directory. Appends and reads go on meanwhile; redactions wait. The copy opens
    /// as a store of its own with the same store id and history (so anchors of this
    /// store up to `events` hold on it).
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<Backup> {
        let dest = dest.as_ref();
        let refuse = |reason: &str| Error::InvalidConfig {
            reason: format!("backup destination {}: {reason}", dest.display()),
        };
        match std::fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(refuse("is not empty"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read backup destination", dest)(e)),
        }
        let name = dest
            .file_name()
            .ok_or_else(|| refuse("has no directory name"))?
            .to_string_lossy()
            .into_owned();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = crate::dir::fs::remove_leftover(&staging);
        crate::dir::fs::create_dir_all(staging.join(SEGMENTS_DIR))
            .map_err(io_err("create directory", &staging))?;
        let placed = self.copy_into(&staging).and_then(|backup| {
            if dest.exists() {
                crate::dir::fs::remove_dir(dest)
                    .map_err(io_err("replace empty directory", dest))?;
            }
            crate::dir::fs::rename(&staging, dest)
                .map_err(io_err("rename backup into place", dest))?;
            Ok(backup)
        });
        // Until the rename the copy is only the staging directory: a failure removes it.
        let backup = match placed {
            Ok(b) => b,
            Err(e) => {
                let _ = crate::dir::fs::remove_leftover(&staging);
                return Err(e);
            }
        };
        sync_dir(&parent)?;
        Ok(Backup {
            dir: dest.to_path_buf(),
            ..backup
        })
    }

    fn copy_into(&self, staging: &Path) -> Result<Backup> {
        let segments = self.segments();
        // The checkpoint first, in one turn of the writer: it fixes what is copied, and
        // holds the idempotency keys as they are at that sequence (later keyed
        // appends may make the writer forget some).
        let checkpoint = self.writer().ok().and_then(|w| w.checkpoint_upto(u64::MAX));
        let _no_rewrites = segments.rewrite_guard();
        let events = checkpoint
            .as_ref()
            .map_or_else(|| self.visible_sequence(), |c| c.ids.len() as u64);
        let end = match self.index_entry(events) {
            Some((location, _)) if events > 0 => {
                let file = segments.file_at(location)?;
                Some((
                    location.segment(),
                    location.offset() + read_frame(&file, location.offset())?.len() as u64,
                ))
            }
            _ => None,
        };
        let mut copied = Backup {
            dir: staging.to_path_buf(),
            events,
            segments: 0,
            bytes: 0,
        };
        if let Some((last_segment, last_end)) = end {
            for (number, file) in segments.all() {
                if number > last_segment {
                    break;
                }
                let len = if number == last_segment {
                    last_end
                } else {
                    file.len()
                };
                copy_file(&file, len, &segment_path(staging, number))?;
                copied.segments += 1;
                copied.bytes += len;
            }
        }
        sync_dir(&staging.join(SEGMENTS_DIR))?;
        let cursors = self.dir().join(CURSORS_DIR);
        if cursors.is_dir() {
            let target = staging.join(CURSORS_DIR);
            crate::dir::fs::create_dir_all(&target).map_err(io_err("create directory", &target))?;
            for entry in std::fs::read_dir(&cursors).map_err(io_err("list cursors", &cursors))? {
                let path = entry.map_err(io_err("list cursors", &cursors))?.path();
                if path.extension().is_some_and(|e| e == "cursor") {
                    let bytes =
                        crate::dir::fs::read(&path).map_err(io_err("read cursor", &path))?;
                    write_synced(&target.join(path.file_name().unwrap_or_default()), &bytes)?;
                }
            }
            sync_dir(&target)?;
        }
        drop(_no_rewrites);
        // An index checkpoint of exactly what was copied, so the copy opens without a
        // rebuild (written after the rewrite guard is let go: reading the last record
        // may have to wait for a rewrite). Only a writable store has the idempotency
        // keys a checkpoint must carry; a read-only one's copy rebuilds them when opened.
        if let (Some((last_segment, _)), Some(c)) = (end, checkpoint) {
            crate::checkpoint::write_covering(staging, segments, c, last_segment)?;
        }
        sync_dir(staging)?;
        Ok(copied)
    }
}

/// Copies the first `len` bytes of `file` to `to`, fsynced.
fn copy_file(file: &SegmentFile, len: u64, to: &Path) -> Result<()> {
    let mut out = crate::dir::fs::create(to).map_err(io_err("create backup file", to))?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < len {
        let want = usize::try_from(len - at).unwrap_or(CHUNK).min(CHUNK);
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(Error::Corrupt {
                path: file.path().to_path_buf(),
                offset: at,
                detail: format!("the segment ended at {at} bytes while copying {len}"),
            });
        }
        crate::dir::fs::write_all(&mut out, to, &buf[..n])
            .map_err(io_err("write backup file", to))?;
        at += n as u64;
    }
    crate::dir::fs::sync_all(&out, to).map_err(io_err("fsync backup file", to))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = crate::dir::fs::create(path).map_err(io_err("create backup file", path))?;
    crate::dir::fs::write_all(&mut f, path, bytes).map_err(io_err("write backup file", path))?;
    crate::dir::fs::sync_all(&f, path).map_err(io_err("fsync backup file", path))
}
