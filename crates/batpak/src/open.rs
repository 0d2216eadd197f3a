//! Opening a store directory: read every segment, rebuild the index, cut a torn tail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::Floor;
use crate::dir::sync_dir;
use crate::dir::PENDING_FILE;
use crate::dir::SEGMENTS_DIR;
use crate::error::{io_err, Error, Result};
use crate::format::manifest::{Manifest, MANIFEST_FILE};
use crate::format::record::RecordView;
use crate::format::redo::PendingRewrite;
use crate::format::segment::{HeaderError, SegmentHeader, HEADER_LEN, SEGMENT_FORMAT_VERSION};
use crate::id::EventId;
use crate::index::{Index, IndexEntry};
use crate::segment::io::SegmentFile;
use crate::segment::recovery::{scan, TailCut};
use crate::segment::writer::ActiveSegment;
use crate::segment::{self, swap, Location, SegmentSet};

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
    /// Kinds a payload type of this program names otherwise than the store recorded
    /// (the store keeps the recorded name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kind_renames: Vec<crate::registry::KindRename>,
    /// A committed compaction a crash interrupted, which this open moved into place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compaction_finished: bool,
    /// The event whose interrupted rewrite this open finished from `redact.pending`.
    #[serde(skip)]
    pub(crate) rewritten: Option<EventId>,
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

/// Where the writer resumes after open.
#[derive(Debug)]
pub(crate) struct Resume {
    pub active: ActiveSegment,
    pub next_sequence: u64,
    pub last_timestamp_ns: u64,
    pub last_id: Option<EventId>,
    pub idempotency: HashMap<[u8; 16], u64>,
    /// Events the checkpoint on disk holds.
    pub checkpointed: u64,
    /// Events whose durability the directory already proves (checkpoint or floor).
    pub evidenced: u64,
}

/// Finishes a rewrite a crash interrupted (`redact.pending`), before the segments are
/// scanned, so no torn frame is ever seen mid-file; the rewritten event when there was
/// one. A read-only open cannot write, so it refuses with an error that says so.
fn finish_pending(dir: &Path, read_only: bool) -> Result<Option<EventId>> {
    let path = dir.join(PENDING_FILE);
    let bytes = match crate::dir::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    // The file is renamed into place whole, so a damaged one was damaged at rest.
    let corrupt = |detail: String| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        detail,
    };
    let pending = PendingRewrite::decode(&bytes).map_err(corrupt)?;
    let rewritten = match crate::format::record::decode(&pending.frame) {
        Ok((view, _)) => view.header.id,
        Err(e) => return Err(corrupt(format!("the pending frame does not decode: {e}"))),
    };
    if read_only {
        return Err(corrupt(
            "a redaction was interrupted; open the store read-write once to finish it".into(),
        ));
    }
    let path = segment::segment_path(dir, pending.segment);
    crate::dir::unshare(dir, &path)?;
    let file = SegmentFile::open(&path, true, 0)?;
    check_pending_fits(&file, &pending, dir)?;
    apply_pending(&file, &pending)?;
    remove_pending(dir)?;
    Ok(Some(rewritten))
}

/// Writes a pending frame over the original, through the segment seam, and syncs it.
/// The caller checked it fits (`check_pending_fits`).
pub(crate) fn apply_pending(file: &SegmentFile, pending: &PendingRewrite) -> Result<()> {
    file.write_at(&pending.frame, pending.offset)?;
    file.sync()
}

/// A rewrite must lie inside the bytes the segment holds, over a record of its length.
pub(crate) fn check_pending_fits(
    file: &SegmentFile,
    pending: &PendingRewrite,
    dir: &Path,
) -> Result<()> {
    let refuse = |problem: String| Error::Corrupt {
        path: dir.join(PENDING_FILE),
        offset: 0,
        detail: format!(
            "the pending rewrite of {} bytes at offset {} of {} {problem}",
            pending.frame.len(),
            pending.offset,
            file.path().display()
        ),
    };
    let len = file.len();
    let end = pending.offset.checked_add(pending.frame.len() as u64);
    if end.is_none_or(|end| end > len) {
        return Err(refuse(format!("runs past the end ({len} bytes)")));
    }
    // The rewrite keeps the frame's length, so the length field at the offset reads
    // the same before, during and after it: anything else is not that record.
    let mut prefix = [0u8; crate::format::record::PREFIX_LEN];
    let n = file.read_at(&mut prefix, pending.offset)?;
    let stored = crate::format::record::peek_frame_len(&prefix[..n]);
    if stored != Some(pending.frame.len()) {
        return Err(refuse(format!(
            "does not start a record of that length (the length field there reads {stored:?})"
        )));
    }
    Ok(())
}

/// Removes the pending-redaction file once its rewrite is durable.
pub(crate) fn remove_pending(dir: &Path) -> Result<()> {
    let path = dir.join(PENDING_FILE);
    crate::dir::fs::remove_file(&path).map_err(io_err("remove", &path))?;
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
    /// What compaction removed, when the store was compacted.
    pub manifest: Option<Manifest>,
}

#[derive(Debug, Default)]
struct Progress {
    next_sequence: u64,
    last_timestamp_ns: u64,
    last_id: Option<EventId>,
    idempotency: HashMap<[u8; 16], u64>,
}

/// Loads `dir`. Writable opens create a missing store and truncate a torn tail;
/// read-only opens change nothing on disk. The steps: finish an interrupted rewrite,
/// list the segments, trust the checkpoint (or start empty), scan what it does not
/// cover, then say where the writer resumes.
pub(crate) fn load(dir: &Path, read_only: bool, segment_size: u64) -> Result<Loaded> {
    let started = Instant::now();
    let compaction_finished = finish_compaction(dir, read_only)?;
    let pending_finished = finish_pending(dir, read_only)?;
    if !read_only {
        let _ = crate::dir::fs::remove_leftover(&dir.join(crate::dir::UNSHARE_FILE));
    }
    let created = prepare_segments_dir(dir, read_only)?;
    let files = segment::list(dir)?;
    let manifest = read_manifest(dir, &files)?;
    let checkpoint_started = Instant::now();
    let (mut scan, mut index_source) = Scan::from_checkpoint(dir, &files, manifest.as_ref())?;
    if let Some(m) = &manifest {
        if let Err(reason) = declare_compacted(&mut scan.index, m) {
            // A checkpoint that disagrees with the manifest is not used.
            scan.start_over();
            index_source = IndexSource::Rebuilt {
                reason: format!("the checkpoint disagrees with the compaction manifest: {reason}"),
            };
            declare_compacted(&mut scan.index, m).map_err(|detail| Error::Corrupt {
                path: dir.join(MANIFEST_FILE),
                offset: 0,
                detail,
            })?;
        }
    }
    let checkpoint_duration = checkpoint_started.elapsed();
    let from_checkpoint = scan.index.event_count();
    let scan_started = Instant::now();
    for (i, (number, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let capacity = if is_last && !read_only {
            segment_size
        } else {
            0
        };
        if !scan.segment(*number, path, is_last, read_only, capacity)? {
            break;
        }
    }
    let resume = if read_only {
        None
    } else {
        Some(scan.resume(dir, &files, segment_size)?)
    };
    let scan_duration = scan_started.elapsed();
    let Scan {
        index,
        segments,
        bytes_scanned,
        tail_cut,
        ..
    } = scan;
    let report = OpenReport {
        scanned_events: index.event_count() - from_checkpoint,
        checkpoint_duration,
        scan_duration,
        created,
        index: index_source,
        segments: segments.count(),
        events: index.event_count(),
        bytes_scanned,
        tail_cut,
        duration: started.elapsed(),
        kind_collisions: Vec::new(),
        redactions_finished: u64::from(pending_finished.is_some()),
        kind_renames: Vec::new(),
        rewritten: pending_finished,
        compaction_finished,
    };
    Ok(Loaded {
        index,
        segments,
        resume,
        report,
        manifest,
    })
}

/// Moves a committed compaction into place (`segment::swap`) and removes an
/// uncommitted one, before anything is read. A read-only open cannot, so it refuses
/// a committed one with an error that says so (an uncommitted one changes nothing).
fn finish_compaction(dir: &Path, read_only: bool) -> Result<bool> {
    if read_only {
        let ready = dir.join(swap::READY_DIR);
        if ready.exists() {
            return Err(Error::Corrupt {
                path: ready,
                offset: 0,
                detail: "a compaction was interrupted; open the store read-write once to finish it"
                    .into(),
            });
        }
        return Ok(false);
    }
    let finished = swap::roll_forward(dir)?;
    swap::abandon(dir);
    Ok(finished)
}

/// The compaction manifest, when the store was compacted. One that does not decode,
/// or names another store, is damage: the gaps it explains could not be told from
/// removed records.
pub(crate) fn read_manifest(
    dir: &Path,
    files: &[(u64, std::path::PathBuf)],
) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match crate::dir::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |detail: String| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        detail,
    };
    let manifest = Manifest::decode(&bytes).map_err(corrupt)?;
    if crate::checkpoint::segments_store_id(files).is_some_and(|id| id != manifest.store_id) {
        return Err(corrupt(
            "the compaction manifest belongs to another store (store id differs)".into(),
        ));
    }
    Ok(Some(manifest))
}

/// Tells the index what the manifest says compaction removed.
fn declare_compacted(index: &mut Index, m: &Manifest) -> std::result::Result<(), String> {
    let horizons: Vec<(&str, u64, crate::hash::Hash)> = m
        .horizons
        .iter()
        .map(|h| (h.entity.as_str(), h.first_kept, h.hash))
        .collect();
    index.set_compacted(m.through, &horizons)
}

/// Makes sure `segments/` exists: a writable open of a new directory creates it (and
/// returns `true`); a read-only open of one refuses.
fn prepare_segments_dir(dir: &Path, read_only: bool) -> Result<bool> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    if seg_dir.exists() {
        return Ok(false);
    }
    if read_only {
        return Err(Error::Io {
            op: "open store read-only",
            path: seg_dir,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no segments directory"),
        });
    }
    crate::dir::fs::create_dir_all(&seg_dir).map_err(io_err("create directory", &seg_dir))?;
    sync_dir(dir)?;
    Ok(true)
}

/// What the scan of the segments has built so far.
#[derive(Debug)]
struct Scan {
    index: Index,
    progress: Progress,
    segments: SegmentSet,
    store_id: Option<[u8; 16]>,
    bytes_scanned: u64,
    tail_cut: Option<TailCut>,
    /// The last segment read: the file, its number and its valid length.
    active: Option<(Arc<SegmentFile>, u64, u64, u16)>,
    /// The segment and offset the trusted checkpoint covers up to.
    covered: Option<(u64, u64)>,
    /// What a checkpoint of this store proves durable: no tail rule applies below it.
    floor: Floor,
    /// Events the trusted checkpoint holds (0 when the index was rebuilt).
    checkpointed: u64,
}

impl Scan {
    /// Starts from the checkpoint when it agrees with the segments, or from nothing,
    /// saying why.
    fn from_checkpoint(
        dir: &Path,
        files: &[(u64, std::path::PathBuf)],
        manifest: Option<&Manifest>,
    ) -> Result<(Scan, IndexSource)> {
        let mut scan = Scan {
            index: Index::default(),
            progress: Progress {
                next_sequence: 1,
                ..Progress::default()
            },
            segments: SegmentSet::new(dir),
            store_id: None,
            bytes_scanned: 0,
            tail_cut: None,
            active: None,
            covered: None,
            floor: Floor::new(),
            checkpointed: 0,
        };
        let c = crate::checkpoint::read(dir);
        // What the checkpoint proves durable holds even when it cannot be used, and so
        // does the durable floor a close without a checkpoint left.
        let compacted = manifest.map_or(&[][..], |m| &m.segments[..]);
        scan.floor = crate::checkpoint::durable_floor(dir, c.as_ref().ok(), files, compacted)?;
        let c = match c {
            Ok(c) => c,
            Err(reason) => return Ok((scan, IndexSource::Rebuilt { reason })),
        };
        if let Err(reason) = crate::checkpoint::trusted(&c, files) {
            return Ok((scan, IndexSource::Rebuilt { reason }));
        }
        scan.index = match Index::import(&c) {
            Ok(index) => index,
            Err(detail) => {
                let reason = format!("checkpoint columns are inconsistent: {detail}");
                return Ok((scan, IndexSource::Rebuilt { reason }));
            }
        };
        scan.progress = Progress {
            next_sequence: scan.index.last_sequence() + 1,
            last_timestamp_ns: c.last_timestamp_ns,
            last_id: (!c.ids.is_empty()).then(|| EventId::from_u128(c.last_id)),
            idempotency: c.idempotency.iter().copied().collect(),
        };
        scan.covered = Some((c.segment, c.offset));
        let events = scan.index.last_sequence();
        scan.checkpointed = events;
        Ok((scan, IndexSource::Checkpoint { events }))
    }

    /// Drops what the checkpoint gave: the scan reads every segment.
    fn start_over(&mut self) {
        self.index = Index::default();
        self.progress = Progress {
            next_sequence: 1,
            ..Progress::default()
        };
        self.covered = None;
        self.checkpointed = 0;
    }

    /// Reads one segment: its header always; its records from the checkpoint's
    /// watermark (or the start) unless the checkpoint covers it whole. Cuts (or, read
    /// only, reports) a torn tail of the last segment. `false` ends the scan: the last
    /// segment's header was never completely written.
    fn segment(
        &mut self,
        number: u64,
        path: &Path,
        is_last: bool,
        read_only: bool,
        capacity: u64,
    ) -> Result<bool> {
        // Sealed segments are writable too: redaction rewrites records in place.
        let file = SegmentFile::open(path, !read_only, capacity)?;
        let (start, whole) = match self.covered {
            Some((segment, _)) if number < segment => (None, false),
            Some((segment, offset)) if number == segment => (Some(offset), true),
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
        self.bytes_scanned += start.map_or(bytes.len() as u64, |s| {
            (bytes.len() as u64).saturating_sub(s)
        });
        let durable = self.floor.get(&number).copied();
        let header = match SegmentHeader::decode(bytes) {
            Ok(h) => h,
            // The header is synced before any record is written, so only a file no
            // longer than a header can be a segment whose creation was interrupted.
            Err(HeaderError::Incomplete)
                if is_last && file.len() <= HEADER_LEN as u64 && durable.is_none() =>
            {
                // Crashed while creating this segment: it never held a record.
                self.tail_cut = Some(TailCut {
                    path: path.to_path_buf(),
                    offset: 0,
                    bytes: bytes.len() as u64,
                    records: 0,
                    reason: "segment header was never completely written".into(),
                    kept: None,
                });
                if !read_only {
                    drop(file);
                    crate::dir::fs::remove_file(path).map_err(io_err("remove segment", path))?;
                    sync_dir(path.parent().unwrap_or(path))?;
                }
                return Ok(false);
            }
            Err(e) => return Err(header_error(path, e, file.len(), durable)),
        };
        let expect = |ok: bool, detail: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    offset: 0,
                    detail,
                })
            }
        };
        expect(
            header.number == number,
            format!(
                "header names segment {}, file name says {number}",
                header.number
            ),
        )?;
        expect(
            self.store_id.is_none_or(|id| id == header.store_id),
            "segment belongs to another store (store id differs)".into(),
        )?;
        self.store_id = Some(header.store_id);
        let Some(start) = start else {
            // Covered by the checkpoint, which checked the length.
            let file = Arc::new(file);
            let len = file.len();
            self.segments.insert(number, Arc::clone(&file));
            self.active = Some((file, number, len, header.format_version));
            return Ok(true);
        };
        if start == HEADER_LEN as u64 {
            // Compaction may have removed the events before it, up to its range's end.
            let (next, through) = (self.progress.next_sequence, self.index.compacted_through());
            let explained =
                crate::format::manifest::explains_gap(next, header.first_sequence, through);
            expect(
                header.first_sequence == next || explained,
                format!(
                    "segment starts at sequence {}, expected {next}",
                    header.first_sequence
                ),
            )?;
        }
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let (index, progress) = (&mut self.index, &mut self.progress);
        let outcome = scan(
            path,
            bytes,
            start,
            is_last,
            durable.unwrap_or(0),
            |at| file.all_zero_from(at as u64),
            |view, offset| {
                admit(index, progress, view, Location::new(number, offset)).map_err(|detail| {
                    Error::Corrupt {
                        path: path.to_path_buf(),
                        offset,
                        detail,
                    }
                })
            },
        )?;
        if let Some(mut cut) = outcome.cut {
            if !read_only {
                cut.kept = keep_cut(path, bytes, &file, outcome.valid_end)?;
                file.truncate(outcome.valid_end)?;
            }
            self.tail_cut = Some(cut);
        }
        if is_last && !read_only && outcome.valid_end > durable.unwrap_or(0) {
            // Records kept from a crashed process may still be only in the page cache,
            // and the file's own entry too (a crash while rotation created it): make
            // both durable before anything is shown, swept or checkpointed.
            file.sync()?;
            sync_dir(path.parent().unwrap_or(path))?;
        }
        let file = Arc::new(file);
        self.segments.insert(number, Arc::clone(&file));
        self.active = Some((file, number, outcome.valid_end, header.format_version));
        Ok(true)
    }

    /// Where the writer continues: the last segment read, or a new first segment.
    fn resume(
        &mut self,
        dir: &Path,
        files: &[(u64, std::path::PathBuf)],
        segment_size: u64,
    ) -> Result<Resume> {
        let active = match self.active.take() {
            Some((file, number, len, version)) => ActiveSegment::resume(
                file,
                number,
                len,
                self.store_id.unwrap_or_default(),
                segment_size,
                version,
            ),
            None => {
                let number = files.first().map_or(1, |(n, _)| *n);
                let id = match self.store_id {
                    Some(id) => id,
                    None => new_store_id(dir)?,
                };
                let seg = ActiveSegment::create(
                    dir,
                    number,
                    self.progress.next_sequence,
                    id,
                    segment_size,
                )?;
                self.segments.insert(number, Arc::clone(&seg.file));
                seg
            }
        };
        // Every byte read is below the floor: the directory already proves it durable.
        let proven = self
            .segments
            .lengths()
            .iter()
            .all(|(number, len)| self.floor.get(number).is_some_and(|durable| len <= durable));
        let mut progress = std::mem::take(&mut self.progress);
        // Sequences compaction removed at the end of its range are never reused.
        progress.next_sequence = progress
            .next_sequence
            .max(self.index.compacted_through() + 1);
        let last = progress.next_sequence - 1;
        Ok(Resume {
            checkpointed: self.checkpointed,
            evidenced: if proven { last } else { self.checkpointed },
            active,
            next_sequence: progress.next_sequence,
            last_timestamp_ns: progress.last_timestamp_ns,
            last_id: progress.last_id,
            idempotency: progress.idempotency,
        })
    }
}

/// Keeps a copy of the bytes a tail cut removes (unless they are all zeros) in a new
/// `repairs/<ms>/` directory of the store, durably, before the cut: a cut never
/// destroys data, even data that was never acknowledged.
fn keep_cut(
    path: &Path,
    bytes: &[u8],
    file: &SegmentFile,
    valid_end: u64,
) -> Result<Option<std::path::PathBuf>> {
    if file.all_zero_from(valid_end)? {
        return Ok(None);
    }
    let store_dir = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let keep = crate::dir::new_repair_dir(store_dir)?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let kept = keep.join(format!("{name}.from-{valid_end}"));
    let start = usize::try_from(valid_end)
        .unwrap_or(bytes.len())
        .min(bytes.len());
    crate::dir::write_durably(&kept, &bytes[start..])?;
    Ok(Some(kept))
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
    index.insert(&IndexEntry::of_record(view, location))?;
    if let Some(key) = h.idempotency {
        progress.idempotency.insert(key, h.sequence);
    }
    progress.next_sequence = h.sequence + 1;
    progress.last_timestamp_ns = h.timestamp_ns;
    progress.last_id = Some(h.id);
    Ok(())
}

fn header_error(path: &Path, e: HeaderError, len: u64, durable: Option<u64>) -> Error {
    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        detail,
    };
    match e {
        HeaderError::Incomplete => corrupt(match durable {
            Some(durable) => format!(
                "segment header is missing or zeroed ({len} bytes in the file); the index checkpoint recorded {durable} durable bytes in it"
            ),
            None if len > HEADER_LEN as u64 => format!(
                "segment header is missing or zeroed, yet the file holds {len} bytes (a header is synced before any record is written)"
            ),
            None => "segment header is incomplete".into(),
        }),
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
