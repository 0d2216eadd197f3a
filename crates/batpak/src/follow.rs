//! Following a store another process writes. A view (`open_view`) keeps a
//! `Follower`: on `refresh` it reads the records appended after the end of its index,
//! up to the watermark the writer stores in the live mark, through segment rotations,
//! and adds them to its index a whole batch at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::record::{self, FLAG_BATCH_CONTINUES};
use crate::format::segment::{SegmentHeader, HEADER_LEN};
use crate::index::{Index, IndexEntry, OwnedEntry};
use crate::live::LiveMark;
use crate::segment::io::SegmentFile;
use crate::segment::{reader, segment_path, Location, SegmentSet};
use crate::sync::{lock, read, write};

/// A view's reader of what the writer appends.
#[derive(Debug)]
pub(crate) struct Follower {
    dir: PathBuf,
    /// The writer's watermark; without it (a store written by a build before the mark,
    /// or a mark that could not be made) only complete batches on disk bound the read.
    mark: Option<LiveMark>,
    store_id: Option<[u8; 16]>,
    /// Where the record after the index's last one starts, once known.
    next: Mutex<Option<Location>>,
    /// How much of each new segment to map.
    capacity: u64,
}

/// One record read ahead of the index.
struct Read {
    entry: OwnedEntry,
    len: u64,
    continues: bool,
}

impl Follower {
    /// A follower of the store in `dir`, whose segments `segments` holds.
    pub(crate) fn new(dir: &Path, segments: &SegmentSet, capacity: u64) -> Follower {
        let store_id = segments
            .all()
            .first()
            .and_then(|(_, file)| header_of(file).ok())
            .map(|h| h.store_id);
        Follower {
            dir: dir.to_path_buf(),
            mark: store_id.and_then(|id| LiveMark::open(dir, &id)),
            store_id,
            next: Mutex::new(None),
            capacity,
        }
    }

    /// Reads what the writer has made visible since the index ends and adds it to
    /// `index`. Returns how many events were added.
    pub(crate) fn catch_up(&self, index: &RwLock<Index>, segments: &SegmentSet) -> Result<u64> {
        let bound = self.mark.as_ref().map_or(u64::MAX, LiveMark::visible);
        let last = read(index).last_sequence();
        if bound <= last {
            return Ok(0);
        }
        let mut next = lock(&self.next);
        let mut at = match *next {
            Some(at) => at,
            None => self.after_last(index, segments)?,
        };
        let mut expected = last + 1;
        let mut batch: Vec<OwnedEntry> = Vec::new();
        let mut added = 0u64;
        while expected <= bound {
            let file = match segments.get(at.segment()) {
                Some(file) => file,
                None => match self.open_segment(at.segment(), segments)? {
                    Some(file) => file,
                    None => break,
                },
            };
            file.refresh_len()?;
            if at.offset() >= file.len() {
                // The writer rotated only after this segment's last frame was written:
                // once the next one exists, a second look here finds everything.
                if !segment_path(&self.dir, at.segment() + 1).exists() {
                    break;
                }
                file.refresh_len()?;
                if at.offset() >= file.len() {
                    if self.open_segment(at.segment() + 1, segments)?.is_none() {
                        break;
                    }
                    at = Location::new(at.segment() + 1, HEADER_LEN as u64);
                }
                continue;
            }
            let read = match read_record(&file, at) {
                Ok(read) => read,
                // Past the mark nothing is promised; without a mark, an unfinished
                // frame at the end is the writer's work in progress.
                Err(_) if self.mark.is_none() => break,
                Err(e) => return Err(e),
            };
            if read.entry.sequence != expected {
                return Err(Error::Corrupt {
                    path: segment_path(&self.dir, at.segment()),
                    offset: at.offset(),
                    detail: format!(
                        "following: record has sequence {}, expected {expected}",
                        read.entry.sequence
                    ),
                });
            }
            at = Location::new(at.segment(), at.offset() + read.len);
            expected += 1;
            let continues = read.continues;
            batch.push(read.entry);
            if !continues {
                let mut index = write(index);
                for entry in batch.drain(..) {
                    index.insert_from_records(&entry.as_entry(), &self.dir)?;
                    added += 1;
                }
                *next = Some(at);
            }
        }
        Ok(added)
    }

    /// Where the record after the index's last one starts.
    fn after_last(&self, index: &RwLock<Index>, segments: &SegmentSet) -> Result<Location> {
        let (last, location) = {
            let index = read(index);
            let last = index.last_sequence();
            (last, index.location(last))
        };
        match location {
            Some(at) => {
                let file = segments.file_at(at)?;
                let read = read_record(&file, at)?;
                debug_assert_eq!(read.entry.sequence, last);
                Ok(Location::new(at.segment(), at.offset() + read.len))
            }
            None => {
                let first = segments.all().first().map_or(1, |(n, _)| *n);
                Ok(Location::new(first, HEADER_LEN as u64))
            }
        }
    }

    /// Opens segment `number` (made by a rotation since the view opened), checks its
    /// header belongs to this store, and adds it to `segments`. `None` when it does not
    /// exist or its header is not complete yet.
    fn open_segment(&self, number: u64, segments: &SegmentSet) -> Result<Option<Arc<SegmentFile>>> {
        let path = segment_path(&self.dir, number);
        if !path.exists() {
            return Ok(None);
        }
        let file = Arc::new(SegmentFile::open(&path, false, self.capacity)?);
        let Ok(header) = header_of(&file) else {
            return Ok(None);
        };
        if header.number != number || self.store_id.is_some_and(|id| id != header.store_id) {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                detail: format!(
                    "following: segment header says number {} of another store or place",
                    header.number
                ),
            });
        }
        segments.insert(number, Arc::clone(&file));
        Ok(Some(file))
    }
}

fn header_of(file: &SegmentFile) -> Result<SegmentHeader> {
    let mut bytes = [0u8; HEADER_LEN];
    let n = file.read_at(&mut bytes, 0)?;
    SegmentHeader::decode(&bytes[..n]).map_err(|e| Error::Corrupt {
        path: file.path().to_path_buf(),
        offset: 0,
        detail: format!("segment header: {e:?}"),
    })
}

fn read_record(file: &SegmentFile, at: Location) -> Result<Read> {
    let read = reader::with_record(file, at.offset(), None, |view| {
        let h = &view.header;
        Ok(Read {
            entry: OwnedEntry::from_entry(&IndexEntry::of_record(view, at)),
            len: record::frame_len_of(view) as u64,
            continues: h.flags & FLAG_BATCH_CONTINUES != 0,
        })
    });
    match read {
        Ok(result) => result,
        Err((_, e)) => Err(e),
    }
}
