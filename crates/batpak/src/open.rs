//! Opening a store directory: read every segment, rebuild the index, cut a torn tail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{io_err, Error, Result};
use crate::format::record::RecordView;
use crate::format::segment::{HeaderError, SegmentHeader, HEADER_LEN, SEGMENT_FORMAT_VERSION};
use crate::id::EventId;
use crate::index::{Index, IndexEntry};
use crate::segment::io::{sync_dir, FaultPlan, SegmentFile};
use crate::segment::recovery::{scan, TailCut};
use crate::segment::writer::ActiveSegment;
use crate::segment::{self, Location, SegmentSet, SEGMENTS_DIR};
use crate::writer::Resume;

/// What `open` found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The directory held no store and a new one was created.
    pub created: bool,
    /// Segment files read.
    pub segments: usize,
    /// Events loaded into the index.
    pub events: u64,
    /// Bytes of segment files read.
    pub bytes_scanned: u64,
    /// A torn tail cut from the last segment (or, read-only, ignored), if any.
    pub tail_cut: Option<TailCut>,
    /// Wall time of the open.
    pub duration: Duration,
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
    let mut store_id: Option<[u8; 16]> = None;
    let mut bytes_scanned = 0;
    let mut tail_cut = None;
    let mut active: Option<(Arc<SegmentFile>, u64, u64)> = None;
    let count = files.len();
    for (i, (number, path)) in files.iter().enumerate() {
        let is_last = i + 1 == count;
        let writable = is_last && !read_only;
        let capacity = if writable { segment_size } else { 0 };
        let file = SegmentFile::open(path, writable, capacity, faults.clone())?;
        let bytes = file.read_all()?;
        bytes_scanned += bytes.len() as u64;
        let header = match SegmentHeader::decode(&bytes) {
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
        expect(
            header.first_sequence == progress.next_sequence,
            format!(
                "segment starts at sequence {}, expected {}",
                header.first_sequence, progress.next_sequence
            ),
        )?;
        let outcome = scan(path, &bytes, HEADER_LEN, is_last, |view, offset| {
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
    let report = OpenReport {
        created,
        segments: segments.count(),
        events: index.last_sequence(),
        bytes_scanned,
        tail_cut,
        duration: started.elapsed(),
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
