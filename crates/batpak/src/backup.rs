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
use crate::format::record::FLAG_BATCH_CONTINUES;
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
    /// Of the segment files, how many are hard links to this store's sealed segments
    /// (a fork's; a backup copies every byte).
    pub linked: u64,
}

/// What a copy takes: everything visible (a backup), or the history up to a sequence
/// with sealed segments linked where the file system allows (a fork).
#[derive(Clone, Copy)]
struct Plan {
    upto: Option<u64>,
    link: bool,
}

/// Bytes copied per read.
const CHUNK: usize = 1 << 20;

impl Store {
    /// Copies the store, as of now, to `dest`, which must not exist or be an empty
    /// directory. Appends and reads go on meanwhile; redactions wait. The copy opens
    /// as a store of its own with the same store id and history (so anchors of this
    /// store up to `events` hold on it).
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<Backup> {
        self.place(
            dest.as_ref(),
            "backup",
            Plan {
                upto: None,
                link: false,
            },
        )
    }

    /// A new store at `dest` (absent or an empty directory) holding this store's
    /// history up to sequence `at`, which must end a batch: the same store id, ids,
    /// sequences and hashes, so an anchor of this store at `at` holds on it, and it
    /// verifies clean. Sealed segments wholly before `at` are hard links where the file
    /// system allows (copies otherwise); the segment holding `at` is copied up to its
    /// record's end. Either store later rewriting a shared segment in place (a
    /// redaction, a repair) first gives itself its own copy, so neither ever changes
    /// the other. The fork carries an index checkpoint (from a writable store; with
    /// the idempotency keys this store still remembers up to `at`), no cursors (their
    /// consumers follow this store) and no snapshots. Appends and reads go on
    /// meanwhile.
    ///
    /// Errors: `at` of 0, past the visible history, or inside a batch (the error
    /// names the batch's last sequence); a destination that is not empty.
    pub fn fork(&self, dest: impl AsRef<Path>, at: u64) -> Result<Backup> {
        let refuse = |reason: String| Error::InvalidConfig {
            reason: format!("fork at sequence {at}: {reason}"),
        };
        let visible = self.visible_sequence();
        if at == 0 || at > visible {
            return Err(refuse(format!("the store holds sequences 1 to {visible}")));
        }
        if let Some(m) = self.manifest().filter(|m| at < m.through) {
            return Err(refuse(format!(
                "sequences up to {} were compacted, and a fork inside that range would need a manifest of its own; fork at {} or later",
                m.through, m.through
            )));
        }
        let ends_batch = |seq: u64| -> Result<bool> {
            let location = self
                .index_entry(seq)
                .map(|(location, _)| location)
                .ok_or_else(|| refuse(format!("the index has no sequence {seq}")))?;
            self.segments().with_record(location, |view| {
                Ok(view.header.flags & FLAG_BATCH_CONTINUES == 0)
            })
        };
        if !ends_batch(at)? {
            let mut end = at + 1;
            while end < visible && !ends_batch(end)? {
                end += 1;
            }
            return Err(refuse(format!(
                "it is inside a batch that ends at sequence {end}; fork there or before the batch"
            )));
        }
        self.place(
            dest.as_ref(),
            "fork",
            Plan {
                upto: Some(at),
                link: true,
            },
        )
    }

    /// Writes a copy under a staging name beside `dest` and renames it into place.
    fn place(&self, dest: &Path, what: &str, plan: Plan) -> Result<Backup> {
        let refuse = |reason: &str| Error::InvalidConfig {
            reason: format!("{what} destination {}: {reason}", dest.display()),
        };
        match std::fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(refuse("is not empty"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read destination", dest)(e)),
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
        let placed = self.copy_into(&staging, plan).and_then(|backup| {
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

    fn copy_into(&self, staging: &Path, plan: Plan) -> Result<Backup> {
        // No compaction swaps the files while they are copied.
        let _no_compaction = self.redaction_turn();
        let segments = self.segments();
        // The checkpoint first, in one turn of the writer: it fixes what is copied, and
        // holds the idempotency keys as they are at that sequence (later keyed
        // appends may make the writer forget some).
        let checkpoint = self
            .writer()
            .ok()
            .and_then(|w| w.checkpoint_upto(plan.upto.unwrap_or(u64::MAX)));
        let _no_rewrites = segments.rewrite_guard();
        let events = checkpoint.as_ref().map_or_else(
            || plan.upto.unwrap_or_else(|| self.visible_sequence()),
            |c| c.last_sequence(),
        );
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
            linked: 0,
        };
        if let Some((last_segment, last_end)) = end {
            for (number, file) in segments.all() {
                if number > last_segment {
                    break;
                }
                let to = segment_path(staging, number);
                copied.segments += 1;
                if number == last_segment {
                    copy_file(&file, last_end, &to)?;
                    copied.bytes += last_end;
                } else if plan.link && link(file.path(), &to)? {
                    copied.linked += 1;
                } else {
                    copy_file(&file, file.len(), &to)?;
                    copied.bytes += file.len();
                }
            }
        }
        sync_dir(&staging.join(SEGMENTS_DIR))?;
        // A compacted store's gaps are explained by its manifest, which the copy needs
        // to open (a fork starts at or after the compacted range's end).
        if let Some(m) = self.manifest() {
            write_synced(
                &staging.join(crate::format::manifest::MANIFEST_FILE),
                &m.encode(),
            )?;
        }
        let cursors = self.dir().join(CURSORS_DIR);
        if cursors.is_dir() && !plan.link {
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

/// Links `to` to the segment `from`: false when the file system does not allow it
/// (another device, no hard links, too many), so the caller copies; any other
/// failure is an error.
fn link(from: &Path, to: &Path) -> Result<bool> {
    use std::io::ErrorKind;
    match crate::dir::fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::CrossesDevices
                    | ErrorKind::Unsupported
                    | ErrorKind::PermissionDenied
                    | ErrorKind::TooManyLinks
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_err("link segment into fork", to)(e)),
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
