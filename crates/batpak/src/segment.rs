//! Segment files: `segments/<16 hex digits>.seg`, append-only, rotated at a size limit.

pub(crate) mod io;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod swap;
pub(crate) mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::error::{io_err, Error, Result};
use crate::format::record::RecordView;
use io::SegmentFile;

use crate::dir::SEGMENTS_DIR;
const EXTENSION: &str = "seg";

/// Where a record lives: segment number (high 24 bits) and byte offset (low 40 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location(u64);

const OFFSET_BITS: u32 = 40;
/// The largest segment number a location can name.
pub(crate) const MAX_SEGMENT_NUMBER: u64 = (1 << (64 - OFFSET_BITS)) - 1;
/// The largest offset a location can name (1 TiB).
pub(crate) const MAX_OFFSET: u64 = (1 << OFFSET_BITS) - 1;

impl Location {
    pub(crate) fn new(segment: u64, offset: u64) -> Self {
        debug_assert!(segment <= MAX_SEGMENT_NUMBER && offset <= MAX_OFFSET);
        Location((segment << OFFSET_BITS) | offset)
    }

    pub(crate) fn segment(self) -> u64 {
        self.0 >> OFFSET_BITS
    }

    pub(crate) fn offset(self) -> u64 {
        self.0 & MAX_OFFSET
    }

    /// The packed form stored in checkpoints.
    pub(crate) fn to_bits(self) -> u64 {
        self.0
    }

    pub(crate) fn from_bits(bits: u64) -> Self {
        Location(bits)
    }
}

/// The path of segment `number` under the store directory.
pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(SEGMENTS_DIR)
        .join(format!("{number:016x}.{EXTENSION}"))
}

/// One segment file as an offline scan (`verify_dir`, `salvage`) meets it.
pub(crate) struct OfflineFile {
    pub number: u64,
    pub path: PathBuf,
    /// The file name, no directory.
    pub name: String,
    /// The whole file.
    pub bytes: Vec<u8>,
    /// The numbers missing between the previous file and this one, if any.
    pub missing_before: Option<(u64, u64)>,
    /// Why the header does not decode, if it does not.
    pub bad_header: Option<String>,
}

/// Reads the segment files of the store in `dir` one at a time, in order, without
/// opening the store, and hands each to `visit` with the gap before it and its
/// header's state: the walk an offline scan of a damaged store starts from.
pub(crate) fn walk_offline(
    dir: &Path,
    mut visit: impl FnMut(OfflineFile) -> Result<()>,
) -> Result<()> {
    let mut previous: Option<u64> = None;
    for (number, path) in list(dir)? {
        let bytes = SegmentFile::open(&path, false, 0)?.read_all()?;
        let bad_header = crate::format::segment::SegmentHeader::decode(&bytes)
            .err()
            .map(|e| format!("{e:?}"));
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        visit(OfflineFile {
            number,
            name,
            bytes,
            path,
            missing_before: previous
                .filter(|&p| number != p + 1)
                .map(|p| (p + 1, number - 1)),
            bad_header,
        })?;
        previous = Some(number);
    }
    Ok(())
}

/// Lists segment files by number. A file in `segments/` that is not named like a
/// segment is an error: recovery never guesses what a stray file means.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let seg_dir = dir.join(SEGMENTS_DIR);
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&seg_dir).map_err(io_err("list segments", &seg_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list segments", &seg_dir))?;
        let path = entry.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .filter(|stem| stem.len() == 16)
            .and_then(|stem| u64::from_str_radix(stem, 16).ok());
        let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        match number {
            Some(_) if !regular => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    detail: "a segment name on something that is not a regular file".into(),
                })
            }
            Some(n) => out.push((n, path)),
            None => {
                return Err(Error::Corrupt {
                    path,
                    offset: 0,
                    detail: "unexpected file in the segments directory".into(),
                })
            }
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// Every segment file of the store, open for reads.
#[derive(Debug)]
pub(crate) struct SegmentSet {
    dir: PathBuf,
    /// Replaced whole when it changes (rotation, compaction), so a reader that pinned
    /// it keeps reading the files its index lookups named.
    files: RwLock<Arc<Files>>,
    /// Held while a record is rewritten in place (redaction) and by scans that must not
    /// see a half-rewritten frame. Point reads take it only after a record failed to
    /// decode, to retry once the rewrite is done.
    rewrite: Mutex<()>,
}

type Files = BTreeMap<u64, Arc<SegmentFile>>;

/// The segment files as they were when pinned: taken under the index lock with the
/// locations a read resolved, so a compaction that swaps files and index meanwhile
/// leaves the read on the old files, which stay open until it ends.
#[derive(Clone, Debug)]
pub(crate) struct Pinned(Arc<Files>);

impl SegmentSet {
    pub(crate) fn new(dir: &Path) -> Self {
        SegmentSet {
            dir: dir.to_path_buf(),
            files: RwLock::default(),
            rewrite: Mutex::new(()),
        }
    }

    /// The path of segment `number`.
    pub(crate) fn path_of(&self, number: u64) -> PathBuf {
        segment_path(&self.dir, number)
    }

    /// Decodes the record at `location` (checksum verified) and hands it to `f`. A
    /// record that fails to decode is read again once any in-place rewrite is done, so
    /// a reader racing a redaction sees the record before or after, never an error.
    pub(crate) fn with_record<R>(
        &self,
        location: Location,
        f: impl FnOnce(&RecordView<'_>) -> Result<R>,
    ) -> Result<R> {
        let file = self.file_at(location)?;
        self.with_record_of(&file, location, None, f)
    }

    /// The current files, to read locations resolved under the same index lock.
    pub(crate) fn pin(&self) -> Pinned {
        Pinned(Arc::clone(&crate::sync::read(&self.files)))
    }

    /// `with_record` in the pinned files.
    pub(crate) fn with_pinned_record<R>(
        &self,
        pinned: &Pinned,
        location: Location,
        f: impl FnOnce(&RecordView<'_>) -> Result<R>,
    ) -> Result<R> {
        self.with_pinned_record_of(pinned, location, None, f)
    }

    /// `with_pinned_record` of a record whose entity and scope the index names
    /// (`record::decode_known`: not validated as UTF-8 again when they match).
    pub(crate) fn with_pinned_record_of<R>(
        &self,
        pinned: &Pinned,
        location: Location,
        known: Option<(&str, &str)>,
        f: impl FnOnce(&RecordView<'_>) -> Result<R>,
    ) -> Result<R> {
        let file = pinned
            .0
            .get(&location.segment())
            .ok_or_else(|| Error::Corrupt {
                path: self.path_of(location.segment()),
                offset: location.offset(),
                detail: "the index points into a segment that is not open".into(),
            })?;
        self.with_record_of(file, location, known, f)
    }

    fn with_record_of<R>(
        &self,
        file: &SegmentFile,
        location: Location,
        known: Option<(&str, &str)>,
        f: impl FnOnce(&RecordView<'_>) -> Result<R>,
    ) -> Result<R> {
        match reader::with_record(file, location.offset(), known, f) {
            Ok(result) => result,
            Err((f, _)) => {
                let _rewrite = self.rewrite_guard();
                match reader::with_record(file, location.offset(), known, f) {
                    Ok(result) => result,
                    Err((_, error)) => Err(error),
                }
            }
        }
    }

    /// The open segment `location` points into; a segment that is not open is damage
    /// (the index named it).
    pub(crate) fn file_at(&self, location: Location) -> Result<Arc<SegmentFile>> {
        self.get(location.segment()).ok_or_else(|| Error::Corrupt {
            path: self.path_of(location.segment()),
            offset: location.offset(),
            detail: "the index points into a segment that is not open".into(),
        })
    }

    /// Excludes in-place rewrites while held.
    pub(crate) fn rewrite_guard(&self) -> MutexGuard<'_, ()> {
        crate::sync::lock(&self.rewrite)
    }

    pub(crate) fn insert(&self, number: u64, file: Arc<SegmentFile>) {
        Arc::make_mut(&mut crate::sync::write(&self.files)).insert(number, file);
    }

    /// Replaces some files at once (compaction's swap); the files replaced, for the
    /// caller to let go of outside its locks.
    pub(crate) fn replace(&self, files: Vec<(u64, Arc<SegmentFile>)>) -> Vec<Arc<SegmentFile>> {
        let mut current = crate::sync::write(&self.files);
        let map = Arc::make_mut(&mut current);
        files
            .into_iter()
            .filter_map(|(number, file)| map.insert(number, file))
            .collect()
    }

    /// Every segment, by number.
    pub(crate) fn all(&self) -> Vec<(u64, Arc<SegmentFile>)> {
        crate::sync::read(&self.files)
            .iter()
            .map(|(n, f)| (*n, Arc::clone(f)))
            .collect()
    }

    pub(crate) fn get(&self, number: u64) -> Option<Arc<SegmentFile>> {
        crate::sync::read(&self.files).get(&number).cloned()
    }

    /// (number, length) of every segment.
    pub(crate) fn lengths(&self) -> Vec<(u64, u64)> {
        crate::sync::read(&self.files)
            .iter()
            .map(|(n, f)| (*n, f.len()))
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        crate::sync::read(&self.files).len()
    }

    /// Total bytes of all segment files.
    pub(crate) fn total_len(&self) -> u64 {
        crate::sync::read(&self.files)
            .values()
            .map(|f| f.len())
            .sum()
    }
}
