//! Appending events with their identity kept (`Store::import_preserved`): each event
//! arrives with the sequence, id, timestamp, version, salt or digest, idempotency
//! digest and flags it had in the store it came from, and is written only if it
//! continues this store exactly there, so the copy holds the same hashes and chains.

use std::collections::HashSet;

use super::{Assigned, Draft, Head, Writer};
use crate::chain;
use crate::coordinate::STORE_ENTITY_PREFIX;
use crate::error::{Error, Result};
use crate::event::{PayloadProof, StoredEvent};
use crate::format::record::{self, RecordDraft, RecordHeader, FLAG_BATCH_CONTINUES, FLAG_REDACTED};
use crate::hash::Hash;
use crate::id::{EventId, IdGenerator};
use crate::options::{AppendOptions, Cause};
use crate::receipt::AppendReceipt;
use crate::sync::lock;

impl Writer {
    /// Writes `events` atomically as one batch, each exactly as given. Refuses the
    /// whole batch, writing nothing, unless every event continues the store: the next
    /// sequence, a timestamp not before the last, an id after the last, the entity's
    /// next version and its head's hash as `prev_hash`, a cause already written, and
    /// the last event ending a batch of its source store. Several source batches may
    /// come in one call; each keeps its flags, so recovery after a crash treats each
    /// as the unit it was.
    pub(crate) fn append_preserved(&self, events: &[StoredEvent]) -> Result<Vec<AppendReceipt>> {
        let options: Vec<AppendOptions> = events
            .iter()
            .map(|e| AppendOptions {
                causation: e.causation.map(Cause::Event),
                correlation: e.correlation,
                metadata: e.metadata.clone(),
                ..AppendOptions::default()
            })
            .collect();
        let drafts: Vec<Draft<'_>> = events
            .iter()
            .zip(&options)
            .map(|(e, options)| Draft {
                coordinate: &e.coordinate,
                kind: e.kind,
                encoding: e.encoding,
                schema_version: e.schema_version,
                payload: &e.payload,
                options,
                system: e.kind.is_reserved()
                    || e.coordinate.entity().starts_with(STORE_ENTITY_PREFIX),
            })
            .collect();
        super::validate(&drafts, false)?;
        let keys: Vec<Option<[u8; 16]>> = events.iter().map(|e| e.proof.idempotency).collect();
        self.check_poison()?;
        let receipts = {
            let mut state = lock(&self.state);
            self.check_poison()?;
            let mut frames = std::mem::take(&mut state.frames);
            frames.clear();
            let assigned = self.encode_preserved(&mut state, events, &drafts, &mut frames);
            let assigned = match assigned {
                Ok(a) => a,
                Err(e) => {
                    state.frames = frames;
                    return Err(e);
                }
            };
            let written = self.write_frames(&mut state, &frames);
            state.frames = frames;
            let start = written.map_err(|e| self.poisoned(e))?;
            let receipts = self.publish(&mut state, &drafts, &keys, assigned, start)?;
            if let Some(last) = events.last() {
                state.ids = IdGenerator::resume(Some(last.id));
            }
            receipts
        };
        self.finish_append(receipts, true)
    }

    /// Checks every event against the state and encodes its frame.
    fn encode_preserved<'d>(
        &self,
        state: &mut super::State,
        events: &'d [StoredEvent],
        drafts: &[Draft<'d>],
        frames: &mut Vec<u8>,
    ) -> Result<Assigned<'d>> {
        let mut heads: crate::maps::FastMap<&'d str, Head> = Default::default();
        let mut ids: HashSet<EventId> = HashSet::new();
        let mut receipts = Vec::with_capacity(events.len());
        let mut frame_offsets = Vec::with_capacity(events.len());
        let mut last_timestamp = state.last_timestamp_ns;
        let mut last_id = state.ids.last();
        let mut metadata = Vec::new();
        let mut scratch = Vec::new();
        for (i, (e, draft)) in events.iter().zip(drafts).enumerate() {
            let refuse = |detail: String| Error::NotPreserved {
                sequence: e.sequence,
                id: e.id,
                detail,
            };
            let next = state.next_sequence + i as u64;
            if e.sequence != next {
                return Err(refuse(format!(
                    "the store's next sequence is {next}, the event's is {}",
                    e.sequence
                )));
            }
            if e.timestamp_ns < last_timestamp {
                return Err(refuse(format!(
                    "timestamp {} is before the store's last, {last_timestamp}",
                    e.timestamp_ns
                )));
            }
            if let Some(last) = last_id.filter(|last| e.id <= *last) {
                return Err(refuse(format!(
                    "id is not after the store's last id {last}"
                )));
            }
            let entity = e.coordinate.entity();
            let prior = match heads.get(entity) {
                Some(h) => Some(*h),
                None => self.head(state, entity)?,
            };
            let version = prior.map_or(0, |h| h.version + 1);
            if e.version != version {
                return Err(refuse(format!(
                    "entity {entity:?} is at its version {version} next, the event says {}",
                    e.version
                )));
            }
            let prev_hash = prior.map_or(Hash::ZERO, |h| h.hash);
            if e.prev_hash != prev_hash {
                return Err(refuse(format!(
                    "entity {entity:?} ends in hash {prev_hash}, the event links to {}",
                    e.prev_hash
                )));
            }
            if let Some(cause) = e.causation {
                let elsewhere = e.metadata.get(crate::options::CAUSE_STORE_KEY).is_some();
                if !elsewhere && !ids.contains(&cause) && !self.cause_exists(cause) {
                    return Err(refuse(format!("its cause {cause} is not in the store")));
                }
            }
            if i + 1 == events.len() && e.proof.flags & FLAG_BATCH_CONTINUES != 0 {
                return Err(refuse(
                    "it continues a batch of its source store, but nothing follows it here".into(),
                ));
            }
            let mut header = RecordHeader {
                sequence: e.sequence,
                timestamp_ns: e.timestamp_ns,
                id: e.id,
                version,
                kind: e.kind,
                flags: e.proof.flags & !FLAG_REDACTED,
                encoding: e.encoding,
                schema_version: e.schema_version,
                causation: e.causation,
                correlation: e.correlation,
                idempotency: e.proof.idempotency,
                prev_hash,
            };
            metadata.clear();
            if !e.metadata.is_empty() {
                record::encode_metadata(&e.metadata, &mut metadata);
                header.flags |= record::FLAG_METADATA;
            }
            header.flags = record::flags_for(&header);
            let stored_flags = e.proof.flags & !FLAG_REDACTED;
            if header.flags != stored_flags {
                return Err(refuse(format!(
                    "flags {stored_flags:#06x} do not match its fields ({:#06x})",
                    header.flags
                )));
            }
            let (salt, payload, digest) = match e.proof.payload {
                PayloadProof::Salt(salt) => (
                    salt,
                    e.payload.as_slice(),
                    chain::payload_digest(&salt, &e.payload),
                ),
                PayloadProof::Digest(digest) => ([0u8; record::SALT_LEN], &[][..], digest),
            };
            let event_hash =
                chain::event_hash(&header, &metadata, entity, e.coordinate.scope(), &digest);
            frame_offsets.push(frames.len() as u64);
            let rec = RecordDraft {
                header,
                metadata: &metadata,
                entity,
                scope: e.coordinate.scope(),
                salt,
                payload,
            };
            if e.is_redacted() {
                scratch.clear();
                record::encode(&rec, &mut scratch);
                let erased = record::redacted_copy(&scratch, &digest)
                    .map_err(|f| refuse(format!("its redacted frame could not be built: {f}")))?;
                frames.extend_from_slice(&erased);
            } else {
                record::encode(&rec, frames);
            }
            receipts.push(AppendReceipt {
                event_id: e.id,
                sequence: e.sequence,
                version,
                timestamp_ns: e.timestamp_ns,
                kind: e.kind,
                coordinate_digest: draft.coordinate.digest(),
                event_hash,
                prev_hash,
                signature: None,
            });
            heads.insert(
                entity,
                Head {
                    version,
                    hash: event_hash,
                },
            );
            ids.insert(e.id);
            last_timestamp = e.timestamp_ns;
            last_id = Some(e.id);
        }
        Ok(Assigned {
            receipts,
            frame_offsets,
            heads,
            timestamp_ns: last_timestamp,
        })
    }
}
