//! Compaction: removes from disk what the retention policies and deletions in force
//! hide, and the bytes of redacted payloads, keeping every proof true.
//!
//! The order: seal the active segment (so everything written lies in sealed
//! segments), work out per entity what is hidden and which record hid it, rewrite the
//! sealed segments aside (`writer/compact.rs`), append a `Compacted` record naming
//! the manifest's digest (synced), commit, and swap files and index in. One
//! built-in rule removes what no policy hides: a reactor's superseded position
//! records. Redactions,
//! verification, backups and lifecycle changes wait for it; appends and reads go on.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::coordinate::Coordinate;
use crate::delivery::reactor::{REACTOR_ENTITY_PREFIX, REACTOR_POSITION_KIND};
use crate::error::Result;
use crate::event::Batch;
use crate::hash::Hash;
use crate::index::HorizonCause;
use crate::lifecycle_records::{Compacted, COMPACTION_ENTITY};
use crate::options::AppendOptions;
use crate::store::Store;
use crate::writer::Removable;

/// What a compaction did.
///
/// Serde: an object of the fields (`duration` and `longest_stall` in serde's form
/// `{"secs": S, "nanos": N}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Compaction {
    /// Compactions of this store so far (0: none ever changed anything).
    pub generation: u64,
    /// Every sequence up to it now lies in compacted segments.
    pub through: u64,
    /// Events read from the sealed segments.
    pub events_read: u64,
    /// Events removed by this compaction.
    pub events_removed: u64,
    /// Redacted payloads whose erased bytes were dropped.
    pub payloads_dropped: u64,
    /// Segment files rewritten.
    pub segments_rewritten: u64,
    /// Bytes of the sealed segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Wall time.
    pub duration: Duration,
    /// The longest time appends waited for it (the swap).
    pub longest_stall: Duration,
}

impl Compaction {
    /// Bytes the compaction gave back.
    pub fn reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

impl Store {
    /// Compacts the store: rewrites its sealed segments without the events the
    /// retention policies and deletions in force hide and without the bytes of
    /// redacted payloads, and reclaims the space. Every kept event keeps its
    /// sequence, id, version, timestamp and hash (sequences get gaps), so receipts
    /// still verify; `verify()` checks the kept history against the manifest the
    /// compaction leaves. Appends and reads go on meanwhile (appends wait only for
    /// the swap, [`Compaction::longest_stall`]). A crash at any point leaves the store
    /// as it was before or after.
    ///
    /// Errors: `ReadOnly`; an I/O failure before the commit (the store is unchanged)
    /// or after it (the store is poisoned; the next open finishes the compaction).
    pub fn compact(&self) -> Result<Compaction> {
        self.compact_with_progress(|_, _| {})
    }

    /// [`compact`](Self::compact), calling `progress(bytes_read, bytes_total)` as it
    /// reads the sealed segments.
    pub fn compact_with_progress(&self, mut progress: impl FnMut(u64, u64)) -> Result<Compaction> {
        let started = Instant::now();
        let writer = self.writer()?;
        let _no_redactions = self.redaction_turn();
        let recorded = self.lifecycle();
        let sealed = writer.seal_for_compaction()?;
        // Every sealed event visible, so the index holds exactly what the records do.
        writer.sync()?;
        let removable = {
            let now_ms = self.clock_ms();
            let index = self.index();
            let mut removable = Removable {
                at_ms: now_ms,
                ..Removable::default()
            };
            for entity in 0..index.entity_count() as u32 {
                let first = index.first_visible_sequence(entity, now_ms);
                if first == 0 {
                    continue;
                }
                let name = index.entities().shared(entity);
                let cause = match index.horizon_cause(entity, now_ms) {
                    Some(HorizonCause::Deleted) => recorded.deletion(&name).map(|d| d.recorded_by),
                    Some(HorizonCause::Policy(selector)) => {
                        recorded.policy(&selector).map(|p| p.set_by)
                    }
                    None => None,
                };
                removable.entities.insert(name, (first, cause));
            }
            for entity in index.store_entity_ids() {
                let name = index.entities().shared(entity);
                if let Some(first) = superseded_positions(&index, entity, &name) {
                    removable.entities.insert(name, (first, None));
                }
            }
            removable
        };
        let previous = self.manifest();
        let Some(staged) =
            writer.stage_compaction(sealed, removable, previous.as_deref(), &mut progress)?
        else {
            return Ok(Compaction {
                generation: previous.as_ref().map_or(0, |m| m.generation),
                through: previous.as_ref().map_or(0, |m| m.through),
                duration: started.elapsed(),
                ..Compaction::default()
            });
        };
        let manifest = staged.manifest.clone();
        let counts = staged.counts;
        let mut batch = Batch::new();
        batch.push_system(
            &Coordinate::new(COMPACTION_ENTITY, COMPACTION_ENTITY)?,
            &Compacted {
                generation: manifest.generation,
                through: manifest.through,
                manifest: Hash::from_bytes(*blake3::hash(&staged.manifest_bytes).as_bytes()),
                kept: manifest.kept,
                removed: manifest.removed(),
            },
            AppendOptions::default(),
        )?;
        let recorded_it = self.append_batch(&batch).and_then(|_| self.sync());
        if let Err(e) = recorded_it {
            crate::segment::swap::abandon(self.dir());
            return Err(e);
        }
        let stall = writer.install_compaction(staged, recorded.horizons())?;
        self.set_manifest(manifest.clone());
        drop(recorded);
        Ok(Compaction {
            generation: manifest.generation,
            through: manifest.through,
            events_read: counts.events_read,
            events_removed: counts.removed,
            payloads_dropped: counts.payloads_dropped,
            segments_rewritten: counts.segments_rewritten,
            bytes_before: counts.bytes_before,
            bytes_after: counts.bytes_after,
            duration: started.elapsed(),
            longest_stall: stall,
        })
    }
}

/// A reactor's position entity (`batpak:reactor:NAME`): the first sequence to keep
/// when its oldest records are position records superseded by a newer event, which
/// compaction drops by its one built-in rule (the reactor reads only its newest).
/// The run stops at the first other record (a skipped source stays as evidence),
/// and whole batches only are removed, so a position written inside a batch of
/// reactions stays. `None` when there is nothing to drop.
fn superseded_positions(index: &crate::index::Index, entity: u32, name: &str) -> Option<u64> {
    if !name.starts_with(REACTOR_ENTITY_PREFIX) {
        return None;
    }
    let postings = index.entity_events(entity);
    let (&newest, older) = postings.split_last()?;
    let first_kept = older
        .iter()
        .copied()
        .find(|&seq| {
            index
                .filter_columns(seq)
                .is_none_or(|(_, _, kind)| kind != REACTOR_POSITION_KIND)
        })
        .unwrap_or(newest);
    (first_kept > postings[0]).then_some(first_kept)
}
