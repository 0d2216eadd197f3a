//! Compaction's engine half: seal the active segment, rewrite the sealed segments
//! without the removable prefixes and without redacted payload bytes, build the
//! index of what is kept beside the live one, and swap files and index in at once.
//! `compact.rs` (above the store) decides what is removable and records it.
//!
//! Only whole batches are removed: a batch with one event that must stay keeps all
//! of its events (a kept frame still says whether its batch continues, and the hash
//! covers that bit), which only moves those entities' horizons earlier.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, Writer};
use crate::error::{Error, Result};
use crate::format::manifest::{Horizon, Manifest};
use crate::format::record::{self, RecordView, FLAG_BATCH_CONTINUES};
use crate::format::segment::{SegmentHeader, HEADER_LEN};
use crate::hash::Hash;
use crate::id::EventId;
use crate::index::{Index, IndexEntry};
use crate::segment::io::SegmentFile;
use crate::segment::{segment_path, swap, Location};

/// What may be removed: per entity, the first sequence that must stay (every earlier
/// event of it is hidden) and the record whose rule hid them.
#[derive(Debug, Default)]
pub(crate) struct Removable {
    pub entities: HashMap<Arc<str>, (u64, Option<EventId>)>,
    /// The store clock the horizons were computed at.
    pub at_ms: u64,
}

/// A compaction staged in `compact.partial/`, not yet committed.
#[derive(Debug)]
pub(crate) struct Staged {
    partial: PathBuf,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    /// The index of every kept event up to the compacted range's end.
    index: Index,
    /// Rewritten segments.
    rewritten: Vec<u64>,
    /// Sequences removed that carried an idempotency key.
    keyed: HashSet<u64>,
    pub counts: Counts,
}

/// What a compaction read, removed and wrote.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub events_read: u64,
    pub removed: u64,
    pub payloads_dropped: u64,
    pub segments_rewritten: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Writer {
    /// Starts a new active segment when the current one holds records, so everything
    /// written so far lies in sealed (synced) segments. Returns the last sequence in
    /// them and the first segment number after them.
    pub(crate) fn seal_for_compaction(&self) -> Result<(u64, u64)> {
        self.check_poison()?;
        let mut state = lock(&self.state);
        if state.active.len > HEADER_LEN as u64 {
            if let Some(lock) = &self.lock {
                lock.check()?;
            }
            let next = state.next_sequence;
            // As in an append's rotation: a half-made next segment must not be
            // appended past, so a failure poisons.
            state
                .active
                .rotate(&self.dir, next)
                .map_err(|e| self.poisoned(e))?;
            *lock(&self.active_file) = Arc::clone(&state.active.file);
            self.segments
                .insert(state.active.number, Arc::clone(&state.active.file));
        }
        Ok((state.next_sequence - 1, state.active.number))
    }

    /// Rewrites the sealed segments (numbers below `active`, sequences up to
    /// `through`) into `compact.partial/`, leaving out what `removable` allows and
    /// the bytes of redacted payloads, and builds the manifest and the kept index.
    /// `None` when nothing would change.
    pub(crate) fn stage_compaction(
        &self,
        (through, active): (u64, u64),
        mut removable: Removable,
        previous: Option<&Manifest>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Option<Staged>> {
        let sealed: Vec<(u64, Arc<SegmentFile>)> = self
            .segments
            .all()
            .into_iter()
            .filter(|(n, _)| *n < active)
            .collect();
        let total: u64 = sealed.iter().map(|(_, f)| f.len()).sum();
        let previous_through = previous.map_or(0, |m| m.through);
        let mut running = previous.map_or(Hash::ZERO, |m| m.running);
        let mut kept_hash = Hash::ZERO;
        let mut kept = 0u64;
        let mut horizons: BTreeMap<String, Horizon> = previous
            .map(|m| {
                m.horizons
                    .iter()
                    .map(|h| (h.entity.clone(), h.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut index = Index::default();
        index
            .set_compacted(through, &[])
            .map_err(|detail| self.corrupt_plan(detail))?;
        let mut counts = Counts {
            bytes_before: total,
            ..Counts::default()
        };
        let mut keyed = HashSet::new();
        let mut segments = Vec::with_capacity(sealed.len());
        let mut rewritten = Vec::new();
        let partial = swap::begin(&self.dir)?;
        let staged = (|| -> Result<()> {
            let mut done = 0u64;
            for (number, file) in &sealed {
                let owned;
                let bytes: &[u8] = match file.mapped_from(0) {
                    Some(mapped) => mapped,
                    None => {
                        owned = file.read_all()?;
                        &owned
                    }
                };
                let path = segment_path(&self.dir, *number);
                let corrupt = |offset: usize, detail: String| Error::Corrupt {
                    path: path.clone(),
                    offset: offset as u64,
                    detail: format!("compaction cannot read this segment: {detail}"),
                };
                SegmentHeader::decode(bytes).map_err(|e| corrupt(0, format!("{e:?}")))?;
                let mut out: Option<swap::StagedSegment> = None;
                let mut at = HEADER_LEN;
                let mut batch: Vec<(usize, usize, RecordView<'_>)> = Vec::new();
                while at < bytes.len() {
                    // One batch: frames up to one that does not continue it.
                    batch.clear();
                    loop {
                        let (view, len) =
                            record::decode(&bytes[at..]).map_err(|e| corrupt(at, e.to_string()))?;
                        let continues = view.header.flags & FLAG_BATCH_CONTINUES != 0;
                        batch.push((at, len, view));
                        at += len;
                        if !continues {
                            break;
                        }
                        if at >= bytes.len() {
                            return Err(corrupt(at, "a batch has no final record".into()));
                        }
                    }
                    let whole = batch.iter().all(|(_, _, v)| {
                        removable
                            .entities
                            .get(v.entity)
                            .is_some_and(|&(stop, _)| v.header.sequence < stop)
                    });
                    if !whole {
                        // Kept whole: its entities keep their history from here on.
                        for (_, _, v) in &batch {
                            if let Some(entry) = removable.entities.get_mut(v.entity) {
                                entry.0 = entry.0.min(v.header.sequence);
                            }
                        }
                    }
                    for (start, len, view) in &batch {
                        let h = &view.header;
                        let hash = crate::chain::record_hash(view);
                        if h.sequence > previous_through {
                            running = crate::chain::next_running(&running, h.sequence, &hash);
                        }
                        counts.events_read += 1;
                        let shrunk = if whole {
                            None
                        } else {
                            record::shrunk_redacted(view)
                        };
                        if (whole || shrunk.is_some()) && out.is_none() {
                            // The first change in this segment: what precedes it is
                            // copied as it is.
                            let mut o = swap::StagedSegment::create(
                                &partial,
                                *number,
                                &bytes[..HEADER_LEN],
                            )?;
                            o.push(&bytes[HEADER_LEN..*start])?;
                            out = Some(o);
                        }
                        if whole {
                            counts.removed += 1;
                            if h.idempotency.is_some() {
                                keyed.insert(h.sequence);
                            }
                            let cause = removable.entities.get(view.entity).and_then(|e| e.1);
                            horizons.insert(
                                view.entity.to_string(),
                                Horizon {
                                    entity: view.entity.to_string(),
                                    first_kept: h.version + 1,
                                    hash,
                                    last_removed: h.id,
                                    cause,
                                },
                            );
                            continue;
                        }
                        kept += 1;
                        kept_hash = crate::chain::next_kept(&kept_hash, h.sequence, &hash);
                        let location = match out.as_mut() {
                            Some(o) => {
                                let offset = o.offset();
                                match &shrunk {
                                    Some(frame) => {
                                        counts.payloads_dropped += 1;
                                        o.push(frame)?;
                                    }
                                    None => o.push(&bytes[*start..*start + *len])?,
                                }
                                Location::new(*number, offset)
                            }
                            None => Location::new(*number, *start as u64),
                        };
                        if !index.knows_entity(view.entity) {
                            if let Some(horizon) = horizons.get(view.entity) {
                                index
                                    .declare_horizon(view.entity, horizon.first_kept, horizon.hash)
                                    .map_err(|d| corrupt(*start, d))?;
                            }
                        }
                        index
                            .insert(&IndexEntry::of_record(view, location))
                            .map_err(|d| corrupt(*start, d))?;
                    }
                    progress(done + at as u64, total);
                }
                done += bytes.len() as u64;
                file.release_resident();
                let len = match out {
                    Some(o) => {
                        rewritten.push(*number);
                        o.finish()?
                    }
                    None => bytes.len() as u64,
                };
                counts.bytes_after += len;
                segments.push((*number, len));
            }
            Ok(())
        })();
        if let Err(e) = staged {
            swap::abandon(&self.dir);
            return Err(e);
        }
        if rewritten.is_empty() {
            swap::abandon(&self.dir);
            return Ok(None);
        }
        // Entities with nothing kept in the range still start where their horizon says.
        for h in horizons.values() {
            if !index.knows_entity(&h.entity) {
                index
                    .declare_horizon(&h.entity, h.first_kept, h.hash)
                    .map_err(|d| self.corrupt_plan(d))?;
            }
        }
        counts.segments_rewritten = rewritten.len() as u64;
        let manifest = Manifest {
            store_id: self.store_id(),
            generation: previous.map_or(0, |m| m.generation) + 1,
            through,
            at_ms: removable.at_ms,
            running,
            kept_hash,
            kept,
            segments,
            horizons: horizons.into_values().collect(),
        };
        if manifest.kept + manifest.removed() != through {
            swap::abandon(&self.dir);
            return Err(self.corrupt_plan(format!(
                "{kept} kept and {} removed events do not add up to the {through} sequences compacted",
                manifest.removed()
            )));
        }
        let manifest_bytes = manifest.encode();
        Ok(Some(Staged {
            partial,
            manifest,
            manifest_bytes,
            index,
            rewritten,
            keyed,
            counts,
        }))
    }

    fn corrupt_plan(&self, detail: String) -> Error {
        Error::Corrupt {
            path: self.dir.clone(),
            offset: 0,
            detail: format!("compaction stopped: {detail}"),
        }
    }

    /// Commits a staged compaction and swaps it in: the files are renamed into place,
    /// the index of what is kept is completed with the events appended meanwhile and
    /// replaces the live one under the writer's and the index's locks, in the same
    /// turn as the segment files. `horizons` are the policies and deletions in force
    /// (the new index's ids differ). Returns the longest time appends were held.
    ///
    /// A failure before the commit leaves the store as it was; after it, the store is
    /// poisoned (the next open finishes the compaction).
    pub(crate) fn install_compaction(
        &self,
        staged: Staged,
        horizons: (crate::retention::Rules, Vec<(String, u64)>),
    ) -> Result<Duration> {
        let Staged {
            partial,
            manifest,
            manifest_bytes,
            mut index,
            rewritten,
            keyed,
            ..
        } = staged;
        if let Err(e) = swap::commit(&self.dir, &partial, &manifest_bytes) {
            if self.dir.join(swap::READY_DIR).exists() {
                // Renamed but not known durable: it may take effect at the next open,
                // so nothing may write the old files meanwhile.
                return Err(self.poisoned(e));
            }
            swap::abandon(&self.dir);
            return Err(e);
        }
        swap::roll_forward(&self.dir).map_err(|e| self.poisoned(e))?;
        let mut files = Vec::with_capacity(rewritten.len());
        for number in rewritten {
            let path = segment_path(&self.dir, number);
            let file = SegmentFile::open(&path, true, 0).map_err(|e| self.poisoned(e))?;
            files.push((number, Arc::new(file)));
        }
        // Catch up without holding anything for long: the events after the range
        // keep their locations; they are read from the files the live index names.
        let mut done = manifest.through;
        loop {
            let (last, added) = self
                .catch_up(&mut index, done, 4096)
                .map_err(|e| self.poisoned(e))?;
            done = last;
            if !added {
                break;
            }
        }
        // The new index's checkpoint, made before it goes live and holding nothing but
        // the state lock for the keys: made under the locks after the swap, as a close
        // makes one, it held appends for 200 ms at 1M events.
        let checkpoint = self.checkpoint_of(&index, done, &keyed);
        let held = Instant::now();
        let mut state = lock(&self.state);
        let mut live = crate::sync::write(&self.index);
        loop {
            let last = live.last_sequence();
            if last <= done {
                break;
            }
            done = self
                .catch_up_locked(&live, &mut index, done)
                .map_err(|e| self.poisoned(e))?;
        }
        index.set_horizons(horizons.0, &horizons.1);
        std::mem::swap(&mut *live, &mut index);
        let replaced = self.segments.replace(files);
        if !keyed.is_empty() {
            state.idempotency.forget_sequences(&keyed);
        }
        drop(live);
        drop(state);
        let stall = held.elapsed();
        // The old files and index go outside the locks: closing a file renamed over
        // frees its page cache, tens of milliseconds for a large segment.
        drop(replaced);
        drop(index);
        // Best effort, like a rotation's: without it the next open rebuilds (the old
        // checkpoint's sealed lengths no longer match).
        let written = checkpoint.map_or(Ok(0), |c| {
            let n = c.last_sequence();
            crate::checkpoint::write(&self.dir, &self.segments, c).map(|()| n)
        });
        match written {
            Ok(n) => {
                use std::sync::atomic::Ordering::AcqRel;
                self.checkpointed.fetch_max(n, AcqRel);
                self.evidenced.fetch_max(n, AcqRel);
            }
            Err(e) => {
                log_warn!("no checkpoint after compaction: {e}");
                // The checkpoint on disk describes the files before the swap: it
                // proves nothing now, so the next rotation or close writes one.
                self.checkpointed
                    .store(0, std::sync::atomic::Ordering::Release);
                self.checkpoint_due
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        Ok(stall)
    }

    /// The checkpoint of `index` (the compacted index, not yet live) through its
    /// newest durable event up to `upto`, without the keys of removed events.
    fn checkpoint_of(
        &self,
        index: &Index,
        upto: u64,
        removed: &HashSet<u64>,
    ) -> Option<crate::format::checkpoint::Checkpoint> {
        if let Some(lock) = &self.lock {
            lock.check().ok()?;
        }
        let store_id = self.store_id();
        let upto = upto.min(self.durable());
        // The keys are copied under the state lock; the export runs without it.
        let keys: Vec<([u8; 16], u64)> = lock(&self.state)
            .idempotency
            .iter()
            .filter(|&(_, seq)| seq <= upto && !removed.contains(&seq))
            .collect();
        super::checkpoint_of(index, upto, store_id, keys.into_iter())
    }

    /// Adds up to `limit` events after sequence `done` to `index`, from the records
    /// the live index locates; the newest sequence added (or `done`) and whether any
    /// was. The live index is read-locked only to copy out the locations: the inserts
    /// (and their reallocations) happen outside it, since appends wait for that lock.
    fn catch_up(&self, index: &mut Index, done: u64, limit: usize) -> Result<(u64, bool)> {
        let (located, files) = {
            let live = crate::sync::read(&self.index);
            let located: Vec<(u64, Option<Location>)> = live
                .sequences_in(done + 1, u64::MAX)
                .take(limit)
                .map(|seq| (seq, live.location(seq)))
                .collect();
            (located, self.segments.pin())
        };
        let last = self.insert_located(index, &located, &files)?;
        Ok((last.unwrap_or(done), last.is_some()))
    }

    /// The same under the index write lock the caller holds, for the last few.
    fn catch_up_locked(&self, live: &Index, index: &mut Index, done: u64) -> Result<u64> {
        let located: Vec<(u64, Option<Location>)> = live
            .sequences_in(done + 1, u64::MAX)
            .map(|seq| (seq, live.location(seq)))
            .collect();
        let files = self.segments.pin();
        Ok(self
            .insert_located(index, &located, &files)?
            .unwrap_or(done))
    }

    /// Reads each located record from `files` and inserts it into `index`; the last
    /// sequence inserted.
    fn insert_located(
        &self,
        index: &mut Index,
        located: &[(u64, Option<Location>)],
        files: &crate::segment::Pinned,
    ) -> Result<Option<u64>> {
        let mut last = None;
        for &(sequence, location) in located {
            let location = location.ok_or_else(|| {
                self.corrupt_plan(format!("the index has no record at sequence {sequence}"))
            })?;
            self.segments.with_pinned_record(files, location, |view| {
                index
                    .insert(&IndexEntry::of_record(view, location))
                    .map_err(|d| self.corrupt_plan(d))
            })?;
            last = Some(sequence);
        }
        Ok(last)
    }
}
