//! Opening a store directory: read every segment, rebuild the index, cut a torn tail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dir::sync_dir;
use crate::dir::PENDING_FILE;
use crate::error::{io_err, Error, Result};
use crate::format::record::RecordView;
use crate::format::redo::PendingRewrite;
use crate::format::segment::{HeaderError, SegmentHeader, HEADER_LEN, SEGMENT_FORMAT_VERSION};
use crate::id::EventId;
use crate::index::{Index, IndexEntry};
use crate::segment::io::{FaultPlan, SegmentFile};
use crate::segment::recovery::{scan, TailCut};
use crate::segment::writer::ActiveSegment;
use crate::segment::{self, Location, SegmentSet, SEGMENTS_DIR};

/// What `open` found and did.
///
/// Serde: an object of the fields; each `Duration` in serde's own form
/// `{"secs": S, "nanos": N}`, exact to the nanosecond.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct OpenReport {
    /// The directory held no store and a new one was created.
    pub created: bool,
    /// Where the index came from.
    pub index: IndexSource,
    /// Segment files read.
    pub segments: usize,
    /// Events loaded into the index.
    pub events: u64,
    /// Bytes of segment files read.
    pub bytes_scanned: u64,
    /// Events recovered by scanning segments (all of them after a rebuild, the tail
    /// after the watermark otherwise).
    pub scanned_events: u64,
    /// Time spent reading and checking the checkpoint and importing it.
    pub checkpoint_duration: Duration,
    /// Time spent reading segment headers and scanning records.
    pub scan_duration: Duration,
    /// A torn tail cut from the last segment (or, read-only, ignored), if any.
    pub tail_cut: Option<TailCut>,
    /// Wall time of the open.
    pub duration: Duration,
    /// Kinds claimed by more than one payload type, when the builder allowed it.
    pub kind_collisions: Vec<crate::registry::KindCollision>,
    /// Redactions a crash interrupted that this open finished: a rewrite in progress,
    /// or a recorded redaction whose payload was not yet erased.
    pub redactions_finished: u64,
}

/// Where open got the index from.
///
/// Serde: `{"type": "checkpoint", "events": N}` or `{"type": "rebuilt", "reason": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum IndexSource {
    /// The checkpoint, covering this many events; the rest came from the segment tail.
    Checkpoint {
        /// Events the checkpoint held.
        events: u64,
    },
    /// Every segment was scanned.
    Rebuilt {
        /// Why the checkpoint was not used (missing, damaged, stale, foreign, ...).
        reason: String,
    },
}

pub(crate) use crate::dir::CHECKPOINT_FILE;

/// Where the writer resumes after open.
#[derive(Debug)]
pub(crate) struct Resume {
    pub active: ActiveSegment,
    pub next_sequence: u64,
    pub last_timestamp_ns: u64,
    pub last_id: Option<EventId>,
    pub idempotency: HashMap<[u8; 16], u64>,
}

/// Finishes a rewrite a crash interrupted (`redact.pending`), before the segments are
/// scanned, so no torn frame is ever seen mid-file; `true` when there was one. A
/// read-only open cannot write, so it refuses with an error that says so.
fn finish_pending(dir: &Path, read_only: bool, faults: Option<Arc<FaultPlan>>) -> Result<bool> {
    let path = dir.join(PENDING_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    // The file is renamed into place whole, so a damaged one was damaged at rest.
    let corrupt = |detail: String| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        detail,
    };
    let pending = PendingRewrite::decode(&bytes).map_err(corrupt)?;
    if let Err(e) = crate::format::record::decode(&pending.frame) {
        return Err(corrupt(format!("the pending frame does not decode: {e}")));
    }
    if read_only {
        return Err(corrupt(
            "a redaction was interrupted; open the store read-write once to finish it".into(),
        ));
    }
    let file = SegmentFile::open(
        &segment::segment_path(dir, pending.segment),
        true,
        0,
        faults,
    )?;
    apply_pending(&file, &pending, dir)?;
    remove_pending(dir)?;
    Ok(true)
}

/// Writes a pending frame over the original, through the segment seam, and syncs it.
pub(crate) fn apply_pending(
    file: &SegmentFile,
    pending: &PendingRewrite,
    dir: &Path,
) -> Result<()> {
    let len = file.len();
    if pending.offset + pending.frame.len() as u64 > len {
        return Err(Error::Corrupt {
            path: dir.join(PENDING_FILE),
            offset: 0,
            detail: format!(
                "the pending rewrite of {} bytes at offset {} runs past the end of {} ({len} bytes)",
                pending.frame.len(),
                pending.offset,
                file.path().display()
            ),
        });
    }
    file.write_at(&pending.frame, pending.offset)?;
    file.sync()
}

/// Removes the pending-redaction file once its rewrite is durable.
pub(crate) fn remove_pending(dir: &Path) -> Result<()> {
    let path = dir.join(PENDING_FILE);
    std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
    sync_dir(dir)
}

/// The loaded state of a directory.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub index: Index,
    pub segments: SegmentSet,
    /// Where the writer continues (writable opens only).
    pub resume: Option<Resume>,
    pub report: OpenReport,
}

#[derive(Debug, Default)]
struct Progress {
    next_sequence: u64,
    last_timestamp_ns: u64,
    last_id: Option<EventId>,
    idempotency: HashMap<[u8; 16], u64>,
}

/// Loads `dir`. Writable opens create a missing store and truncate a torn tail;
/// read-only opens change nothing on disk.
pub(crate) fn load(
    dir: &Path,
    read_only: bool,
    segment_size: u64,
    faults: Option<Arc<FaultPlan>>,
) -> Result<Loaded> {
    let started = Instant::now();
    let pending_finished = finish_pending(dir, read_only, faults.clone())?;
    let seg_dir = dir.join(SEGMENTS_DIR);
    let mut created = false;
    if !seg_dir.exists() {
        if read_only {
            return Err(Error::Io {
                op: "open store read-only",
                path: seg_dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no segments directory"),
            });
        }
        std::fs::create_dir_all(&seg_dir).map_err(io_err("create directory", &seg_dir))?;
        sync_dir(dir)?;
        created = true;
    }
    let files = segment::list(dir)?;
    let segments = SegmentSet::new(dir);
    let mut index = Index::default();
    let mut progress = Progress {
        next_sequence: 1,
        ..Progress::default()
    };
    // Load the checkpoint if it agrees with the segments; otherwise rebuild from them.
    let mut covered: Option<(u64, u64)> = None;
    let checkpoint_started = Instant::now();
    let index_source = match crate::checkpoint::read_trusted(dir, &files) {
        Ok(c) => {
            index = Index::import(&c).map_err(|detail| Error::Corrupt {
                path: dir.join(CHECKPOINT_FILE),
                offset: 0,
                detail,
            })?;
            progress = Progress {
                next_sequence: index.last_sequence() + 1,
                last_timestamp_ns: c.last_timestamp_ns,
                last_id: (!c.ids.is_empty()).then(|| EventId::from_u128(c.last_id)),
                idempotency: c.idempotency.iter().copied().collect(),
            };
            covered = Some((c.segment, c.offset));
            IndexSource::Checkpoint {
                events: index.last_sequence(),
            }
        }
        Err(reason) => IndexSource::Rebuilt { reason },
    };
    let checkpoint_duration = checkpoint_started.elapsed();
    let from_checkpoint = index.last_sequence();
    let scan_started = Instant::now();
    let mut store_id: Option<[u8; 16]> = None;
    let mut bytes_scanned = 0;
    let mut tail_cut = None;
    let mut active: Option<(Arc<SegmentFile>, u64, u64)> = None;
    let count = files.len();
    for (i, (number, path)) in files.iter().enumerate() {
        let is_last = i + 1 == count;
        // Sealed segments are writable too: redaction rewrites records in place.
        let writable = !read_only;
        let capacity = if writable { segment_size } else { 0 };
        let file = SegmentFile::open(path, writable, capacity, faults.clone())?;
        // A segment the checkpoint covers whole needs only its header read; the
        // watermark segment is scanned from the watermark; later ones from the start.
        let (start, whole) = match covered {
            Some((segment, _)) if *number < segment => (None, false),
            Some((segment, offset)) if *number == segment => (Some(offset), true),
            _ => (Some(HEADER_LEN as u64), true),
        };
        let owned;
        let bytes: &[u8] = match (whole, file.mapped_from(0)) {
            (true, Some(mapped)) => mapped,
            (true, None) => {
                owned = file.read_all()?;
                &owned
            }
            (false, _) => {
                let mut header = vec![0u8; HEADER_LEN];
                let n = file.read_at(&mut header, 0)?;
                header.truncate(n);
                owned = header;
                &owned
            }
        };
        bytes_scanned += start.map_or(bytes.len() as u64, |s| {
            (bytes.len() as u64).saturating_sub(s)
        });
        let header = match SegmentHeader::decode(bytes) {
            Ok(h) => h,
            Err(HeaderError::Incomplete) if is_last => {
                // Crashed while creating this segment: it never held a record.
                tail_cut = Some(TailCut {
                    path: path.clone(),
                    offset: 0,
                    bytes: bytes.len() as u64,
                    records: 0,
                    reason: "segment header was never completely written".into(),
                });
                if !read_only {
                    drop(file);
                    std::fs::remove_file(path).map_err(io_err("remove segment", path))?;
                    sync_dir(&seg_dir)?;
                }
                break;
            }
            Err(e) => return Err(header_error(path, e)),
        };
        let expect = |ok: bool, detail: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    detail,
                })
            }
        };
        expect(
            header.number == *number,
            format!(
                "header names segment {}, file name says {number}",
                header.number
            ),
        )?;
        expect(
            store_id.is_none_or(|id| id == header.store_id),
            "segment belongs to another store (store id differs)".into(),
        )?;
        store_id = Some(header.store_id);
        let Some(start) = start else {
            // Covered by the checkpoint, which checked the length.
            let file = Arc::new(file);
            let len = file.len();
            segments.insert(*number, Arc::clone(&file));
            active = Some((file, *number, len));
            continue;
        };
        if start == HEADER_LEN as u64 {
            expect(
                header.first_sequence == progress.next_sequence,
                format!(
                    "segment starts at sequence {}, expected {}",
                    header.first_sequence, progress.next_sequence
                ),
            )?;
        }
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let outcome = scan(path, bytes, start, is_last, |view, offset| {
            admit(
                &mut index,
                &mut progress,
                view,
                Location::new(*number, offset),
            )
            .map_err(|detail| Error::Corrupt {
                path: path.clone(),
                offset,
                detail,
            })
        })?;
        if let Some(cut) = outcome.cut {
            if !read_only {
                file.truncate(outcome.valid_end)?;
            }
            tail_cut = Some(cut);
        }
        let file = Arc::new(file);
        segments.insert(*number, Arc::clone(&file));
        active = Some((file, *number, outcome.valid_end));
    }

    let resume = if read_only {
        None
    } else {
        let active = match active {
            Some((file, number, len)) => ActiveSegment::resume(
                file,
                number,
                len,
                store_id.unwrap_or_default(),
                segment_size,
                faults.clone(),
            ),
            None => {
                let number = files.first().map_or(1, |(n, _)| *n);
                let id = match store_id {
                    Some(id) => id,
                    None => new_store_id(dir)?,
                };
                let seg = ActiveSegment::create(
                    dir,
                    number,
                    progress.next_sequence,
                    id,
                    segment_size,
                    faults.clone(),
                )?;
                segments.insert(number, Arc::clone(&seg.file));
                seg
            }
        };
        Some(Resume {
            active,
            next_sequence: progress.next_sequence,
            last_timestamp_ns: progress.last_timestamp_ns,
            last_id: progress.last_id,
            idempotency: progress.idempotency,
        })
    };
    let scan_duration = scan_started.elapsed();
    let report = OpenReport {
        scanned_events: index.last_sequence() - from_checkpoint,
        checkpoint_duration,
        scan_duration,
        created,
        index: index_source,
        segments: segments.count(),
        events: index.last_sequence(),
        bytes_scanned,
        tail_cut,
        duration: started.elapsed(),
        kind_collisions: Vec::new(),
        redactions_finished: u64::from(pending_finished),
    };
    Ok(Loaded {
        index,
        segments,
        resume,
        report,
    })
}

/// Adds one recovered record to the index and the writer's resume state.
fn admit(
    index: &mut Index,
    progress: &mut Progress,
    view: &RecordView<'_>,
    location: Location,
) -> std::result::Result<(), String> {
    let h = &view.header;
    if h.timestamp_ns < progress.last_timestamp_ns {
        return Err(format!(
            "timestamp {} goes back from {}",
            h.timestamp_ns, progress.last_timestamp_ns
        ));
    }
    index.insert(&IndexEntry {
        sequence: h.sequence,
        id: h.id,
        kind: h.kind,
        version: h.version,
        entity: view.entity,
        scope: view.scope,
        location,
        causation: h.causation,
        correlation: h.correlation,
    })?;
    if let Some(key) = h.idempotency {
        progress.idempotency.insert(key, h.sequence);
    }
    progress.next_sequence = h.sequence + 1;
    progress.last_timestamp_ns = h.timestamp_ns;
    progress.last_id = Some(h.id);
    Ok(())
}

fn header_error(path: &Path, e: HeaderError) -> Error {
    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        detail,
    };
    match e {
        HeaderError::Incomplete => corrupt("segment header is incomplete".into()),
        HeaderError::BadMagic => corrupt("not a batpak segment (bad magic)".into()),
        HeaderError::UnsupportedVersion(found) => Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported: SEGMENT_FORMAT_VERSION,
        },
        HeaderError::Corrupt(detail) => corrupt(detail),
    }
}

fn new_store_id(dir: &Path) -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    crate::chain::os_random(&mut id).map_err(io_err("seed store id", dir))?;
    Ok(id)
}
