//! The in-memory index of visible events: columns keyed by sequence, interned
//! coordinates, and postings by entity, scope, kind, causation and correlation.
//! Pure data: built from decoded record headers, no I/O.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::coordinate::Coordinate;
use crate::format::checkpoint::Checkpoint;
use crate::format::record::RecordView;
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::maps::FastMap;
use crate::segment::Location;

mod horizon;

pub(crate) use horizon::{HorizonCause, Sight};

/// What the index needs to know about one event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexEntry<'a> {
    pub sequence: u64,
    pub id: EventId,
    pub kind: EventKind,
    pub version: u64,
    pub entity: &'a str,
    pub scope: &'a str,
    pub location: Location,
    pub causation: Option<EventId>,
    pub correlation: Option<EventId>,
}

impl<'a> IndexEntry<'a> {
    /// The entry of the record `view`, found at `location`.
    pub(crate) fn of_record(view: &RecordView<'a>, location: Location) -> IndexEntry<'a> {
        let h = &view.header;
        IndexEntry {
            sequence: h.sequence,
            id: h.id,
            kind: h.kind,
            version: h.version,
            entity: view.entity,
            scope: view.scope,
            location,
            causation: h.causation,
            correlation: h.correlation,
        }
    }
}

/// An `IndexEntry` that owns its strings, for events written but not yet visible.
#[derive(Clone, Debug)]
pub(crate) struct OwnedEntry {
    pub sequence: u64,
    pub id: EventId,
    pub kind: EventKind,
    pub version: u64,
    pub coordinate: Coordinate,
    pub location: Location,
    pub causation: Option<EventId>,
    pub correlation: Option<EventId>,
}

impl OwnedEntry {
    /// The entry, owning copies of its strings.
    pub(crate) fn from_entry(e: &IndexEntry<'_>) -> Self {
        let coordinate = Coordinate::from_interned(Arc::from(e.entity), Arc::from(e.scope));
        OwnedEntry::sharing(e, coordinate)
    }

    /// The entry, holding `coordinate` (the entry's own, shared: no copy).
    pub(crate) fn sharing(e: &IndexEntry<'_>, coordinate: Coordinate) -> Self {
        OwnedEntry {
            sequence: e.sequence,
            id: e.id,
            kind: e.kind,
            version: e.version,
            coordinate,
            location: e.location,
            causation: e.causation,
            correlation: e.correlation,
        }
    }

    pub(crate) fn as_entry(&self) -> IndexEntry<'_> {
        IndexEntry {
            sequence: self.sequence,
            id: self.id,
            kind: self.kind,
            version: self.version,
            entity: self.coordinate.entity(),
            scope: self.coordinate.scope(),
            location: self.location,
            causation: self.causation,
            correlation: self.correlation,
        }
    }
}

/// Strings stored once, named by a dense `u32`.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: Vec<Arc<str>>,
    ids: FastMap<Arc<str>, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The shared string of an interned name.
    pub(crate) fn shared(&self, id: u32) -> Arc<str> {
        Arc::clone(&self.names[id as usize])
    }

    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.names.iter().enumerate().map(|(i, n)| (i as u32, &**n))
    }
}

const FENCE_EVERY: usize = 64;

/// Kinds are 16-bit numbers: hash them with a multiply, not SipHash per event.
#[derive(Default)]
pub(crate) struct KindHasher(u64);

impl Hasher for KindHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = u64::from(n);
    }
}

/// Index of every visible event. While sequences are dense from 1 the columns are
/// plain vectors at position `sequence - 1`; once a gap exists (a history that
/// compaction thinned) `seqs` holds each position's sequence, searched like the ids.
/// Versions are not stored: an event's version is its entity's base version (that of
/// its first indexed event, 0 unless compaction removed a prefix) plus its position
/// in the entity's posting list.
#[derive(Debug, Default)]
pub(crate) struct Index {
    ids: Vec<EventId>,
    /// Each position's sequence; empty while sequences are dense from 1.
    seqs: Vec<u64>,
    /// Each entity's base version: the version of its first indexed event.
    entity_base: Vec<u64>,
    /// Every `FENCE_EVERY`th id: a small array the id search starts in, so a lookup
    /// touches a few cache lines of `ids` instead of one per binary-search step.
    fences: Vec<EventId>,
    locations: Vec<Location>,
    entity_of: Vec<u32>,
    scope_of: Vec<u32>,
    kinds: Vec<EventKind>,
    entities: Interner,
    scopes: Interner,
    entity_events: Vec<Vec<u64>>,
    scope_events: Vec<Vec<u64>>,
    kind_events: HashMap<EventKind, Vec<u64>, BuildHasherDefault<KindHasher>>,
    effects: FastMap<EventId, Vec<u64>>,
    correlated: FastMap<EventId, Vec<u64>>,
    /// Entities holding at least one store record (category 0): reads that leave
    /// store records out check kinds only on these.
    store_entities: HashSet<u32>,
    /// Each entity's scope, or `MIXED_SCOPES` when its events use several.
    entity_scope: Vec<u32>,
    /// What the recorded retention policies and deletions hide.
    horizons: horizon::Horizons,
    /// Every sequence up to it lies in compacted segments, where any may be missing
    /// (0: never compacted).
    compacted_through: u64,
    /// Entities compaction removed a prefix of: the event hash before their first
    /// kept version, which that event's `prev_hash` names.
    horizon_hashes: FastMap<u32, Hash>,
}

impl Index {
    /// The newest visible sequence (0 when empty).
    pub(crate) fn last_sequence(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(self.ids.len() as u64)
    }

    /// How many events the index holds (the newest sequence, unless there are gaps).
    pub(crate) fn event_count(&self) -> u64 {
        self.ids.len() as u64
    }

    /// Whether some sequence up to the newest is missing.
    #[cfg(test)]
    pub(crate) fn has_gaps(&self) -> bool {
        !self.seqs.is_empty()
    }

    /// Declares a compacted history before its events are inserted (or after an
    /// import from a checkpoint): sequences up to `through` may be missing, and each
    /// entity of `horizons` starts at its first kept version, after the given hash.
    /// An entity already holding events must already start there.
    pub(crate) fn set_compacted(
        &mut self,
        through: u64,
        horizons: &[(&str, u64, Hash)],
    ) -> Result<(), String> {
        self.compacted_through = through;
        self.horizon_hashes.clear();
        for &(name, first_kept, hash) in horizons {
            self.declare_horizon(name, first_kept, hash)?;
        }
        Ok(())
    }

    /// Declares one entity's removed prefix (see `set_compacted`).
    pub(crate) fn declare_horizon(
        &mut self,
        name: &str,
        first_kept: u64,
        hash: Hash,
    ) -> Result<(), String> {
        let entity = self.entities.intern(name);
        if entity as usize == self.entity_events.len() {
            self.entity_events.push(Vec::new());
            self.entity_base.push(first_kept);
        } else if self.entity_events[entity as usize].is_empty() {
            self.entity_base[entity as usize] = first_kept;
        } else if self.entity_base[entity as usize] != first_kept {
            return Err(format!(
                "entity {name:?} starts at version {}, the compaction manifest says {first_kept}",
                self.entity_base[entity as usize]
            ));
        }
        self.horizon_hashes.insert(entity, hash);
        Ok(())
    }

    /// Whether the index knows `entity` (it holds or held events of it).
    pub(crate) fn knows_entity(&self, entity: &str) -> bool {
        self.entities.get(entity).is_some()
    }

    /// Every sequence up to it lies in compacted segments (0: never compacted).
    pub(crate) fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    /// The first kept version of an entity compaction removed a prefix of, and the
    /// hash its first kept event links to.
    pub(crate) fn horizon_of(&self, entity: &str) -> Option<(u64, Hash)> {
        let id = self.entities.get(entity)?;
        let hash = self.horizon_hashes.get(&id)?;
        Some((self.entity_base(id), *hash))
    }

    /// The sequence at `position` of the columns (0 is the oldest indexed event).
    pub(crate) fn sequence_at(&self, position: usize) -> Option<u64> {
        (position < self.ids.len()).then(|| self.seq_at(position))
    }

    /// The sequence at a position of the columns.
    fn seq_at(&self, slot: usize) -> u64 {
        self.seqs.get(slot).copied().unwrap_or(slot as u64 + 1)
    }

    /// The sequences the index holds in `[start, end)`, in order (reversible).
    pub(crate) fn sequences_in(
        &self,
        start: u64,
        end: u64,
    ) -> Box<dyn DoubleEndedIterator<Item = u64> + '_> {
        if self.seqs.is_empty() {
            let last = self.ids.len() as u64;
            return Box::new(start.max(1)..end.min(last.saturating_add(1)).max(start.max(1)));
        }
        let from = self.seqs.partition_point(|&s| s < start);
        let to = self.seqs.partition_point(|&s| s < end).max(from);
        Box::new(self.seqs[from..to].iter().copied())
    }

    /// The version of the entity's first indexed event.
    pub(crate) fn entity_base(&self, entity: u32) -> u64 {
        self.entity_base.get(entity as usize).copied().unwrap_or(0)
    }

    pub(crate) fn entity_count(&self) -> usize {
        self.entities.len()
    }

    pub(crate) fn scope_count(&self) -> usize {
        self.scopes.len()
    }

    /// Adds the next event. Rejects an entry whose sequence or version does not follow
    /// on, with a description of what was expected.
    /// `insert`, its refusal as `Error::Corrupt` naming the store directory: for
    /// entries read from records, where a refusal means the records are inconsistent.
    pub(crate) fn insert_from_records(
        &mut self,
        e: &IndexEntry<'_>,
        dir: &std::path::Path,
    ) -> crate::error::Result<()> {
        self.insert(e)
            .map_err(|detail| crate::error::Error::Corrupt {
                path: dir.to_path_buf(),
                offset: 0,
                detail,
            })
    }

    /// Adds the next event: the next sequence, or, up to the compacted range's end
    /// plus one, any later one (compaction removed those between); an entity's next
    /// version, counted from its first kept one.
    pub(crate) fn insert(&mut self, e: &IndexEntry<'_>) -> Result<(), String> {
        let last = self.last_sequence();
        let expected_seq = last + 1;
        let explained =
            crate::format::manifest::explains_gap(expected_seq, e.sequence, self.compacted_through);
        if e.sequence != expected_seq && !explained {
            return Err(if self.compacted_through > last {
                format!(
                    "sequence {} where one from {expected_seq} to {} was expected",
                    e.sequence,
                    self.compacted_through + 1
                )
            } else {
                format!("sequence {} where {expected_seq} was expected", e.sequence)
            });
        }
        if let Some(&last) = self.ids.last() {
            if e.id <= last {
                return Err(format!("event id {} does not increase past {last}", e.id));
            }
        }
        let entity = self.entities.intern(e.entity);
        if entity as usize == self.entity_events.len() {
            self.entity_events.push(Vec::new());
            self.entity_base.push(0);
        }
        // An entity compaction emptied is declared before its next event arrives.
        let fresh = self.entity_events[entity as usize].is_empty();
        let expected_version =
            self.entity_base[entity as usize] + self.entity_events[entity as usize].len() as u64;
        if e.version != expected_version {
            return Err(format!(
                "entity {:?} version {} where {expected_version} was expected",
                e.entity, e.version
            ));
        }
        let scope = self.scopes.intern(e.scope);
        if scope as usize == self.scope_events.len() {
            self.scope_events.push(Vec::new());
        }
        note_scope(&mut self.entity_scope, entity, scope, fresh);
        if self.ids.len().is_multiple_of(FENCE_EVERY) {
            self.fences.push(e.id);
        }
        if e.sequence != expected_seq && self.seqs.is_empty() {
            // The first gap: from here on each position names its sequence.
            self.seqs = (1..=self.ids.len() as u64).collect();
            self.seqs.push(e.sequence);
        } else if !self.seqs.is_empty() {
            self.seqs.push(e.sequence);
        }
        self.ids.push(e.id);
        self.locations.push(e.location);
        self.entity_of.push(entity);
        self.scope_of.push(scope);
        self.kinds.push(e.kind);
        self.entity_events[entity as usize].push(e.sequence);
        self.scope_events[scope as usize].push(e.sequence);
        self.kind_events.entry(e.kind).or_default().push(e.sequence);
        if e.kind.category() == 0 {
            self.store_entities.insert(entity);
        }
        if let Some(cause) = e.causation {
            self.effects.entry(cause).or_default().push(e.sequence);
        }
        if let Some(corr) = e.correlation {
            self.correlated.entry(corr).or_default().push(e.sequence);
        }
        Ok(())
    }

    /// The sequence of an event id, by binary search (ids increase with sequence).
    pub(crate) fn sequence_of(&self, id: EventId) -> Option<u64> {
        let block = self.fences.partition_point(|&f| f <= id).checked_sub(1)?;
        let start = block * FENCE_EVERY;
        let end = (start + FENCE_EVERY).min(self.ids.len());
        let at = self.ids[start..end].binary_search(&id).ok()?;
        Some(self.seq_at(start + at))
    }

    fn slot(&self, sequence: u64) -> Option<usize> {
        if !self.seqs.is_empty() {
            return self.seqs.binary_search(&sequence).ok();
        }
        let slot = usize::try_from(sequence.checked_sub(1)?).ok()?;
        (slot < self.ids.len()).then_some(slot)
    }

    /// Location, entity and scope of a visible event: all a read needs (three columns,
    /// so a random read touches as few cache lines as possible).
    pub(crate) fn read_target(&self, sequence: u64) -> Option<(Location, u32, u32)> {
        let i = self.slot(sequence)?;
        Some((self.locations[i], self.entity_of[i], self.scope_of[i]))
    }

    /// Entity, scope and kind of a visible event: the columns region filters read.
    pub(crate) fn filter_columns(&self, sequence: u64) -> Option<(u32, u32, EventKind)> {
        let i = self.slot(sequence)?;
        Some((self.entity_of[i], self.scope_of[i], self.kinds[i]))
    }

    pub(crate) fn id_of(&self, sequence: u64) -> Option<EventId> {
        self.slot(sequence).map(|i| self.ids[i])
    }

    pub(crate) fn location(&self, sequence: u64) -> Option<Location> {
        self.slot(sequence).map(|i| self.locations[i])
    }

    /// The version of a visible event: its position in its entity's postings.
    pub(crate) fn version_of(&self, sequence: u64) -> Option<u64> {
        let i = self.slot(sequence)?;
        let entity = self.entity_of[i];
        let postings = &self.entity_events[entity as usize];
        postings
            .binary_search(&sequence)
            .ok()
            .map(|p| self.entity_base(entity) + p as u64)
    }

    /// The event of the same entity at `version`, if it exists.
    pub(crate) fn entity_event_at(&self, sequence: u64, version: u64) -> Option<u64> {
        let i = self.slot(sequence)?;
        let entity = self.entity_of[i];
        let postings = &self.entity_events[entity as usize];
        let position = version.checked_sub(self.entity_base(entity))?;
        postings.get(usize::try_from(position).ok()?).copied()
    }

    pub(crate) fn entities(&self) -> &Interner {
        &self.entities
    }

    pub(crate) fn scopes(&self) -> &Interner {
        &self.scopes
    }

    /// Sequences of an entity's events in version order.
    pub(crate) fn entity_events(&self, entity: u32) -> &[u64] {
        &self.entity_events[entity as usize]
    }

    /// Sequences of a scope's events in order.
    pub(crate) fn scope_events(&self, scope: u32) -> &[u64] {
        &self.scope_events[scope as usize]
    }

    /// Sequences of one kind's events in order.
    pub(crate) fn kind_events(&self, kind: EventKind) -> &[u64] {
        self.kind_events.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// The kinds present in a category.
    pub(crate) fn kinds_in_category(&self, category: u8) -> Vec<EventKind> {
        let mut kinds: Vec<_> = self
            .kind_events
            .keys()
            .copied()
            .filter(|k| k.category() == category)
            .collect();
        kinds.sort_unstable();
        kinds
    }

    /// The latest version of an entity and that event's sequence.
    pub(crate) fn entity_head(&self, entity: &str) -> Option<(u64, u64)> {
        let id = self.entities.get(entity)?;
        let postings = &self.entity_events[id as usize];
        postings
            .last()
            .map(|&seq| (self.entity_base(id) + postings.len() as u64 - 1, seq))
    }

    /// Whether any event of this entity is a store record (category 0).
    pub(crate) fn holds_store_records(&self, entity: u32) -> bool {
        self.store_entities.contains(&entity)
    }

    /// The entities holding any store record.
    pub(crate) fn store_entity_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.store_entities.iter().copied()
    }

    /// Every kind with events, and how many.
    pub(crate) fn kind_counts(&self) -> Vec<(EventKind, u64)> {
        let mut out: Vec<(EventKind, u64)> = self
            .kind_events
            .iter()
            .map(|(k, v)| (*k, v.len() as u64))
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether the index holds any store record.
    pub(crate) fn has_store_records(&self) -> bool {
        !self.store_entities.is_empty()
    }

    /// Events whose causation is `id`, in sequence order.
    pub(crate) fn effects_of(&self, id: EventId) -> &[u64] {
        self.effects.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Events carrying correlation `id`, in sequence order.
    pub(crate) fn correlated_with(&self, id: EventId) -> &[u64] {
        self.correlated.get(&id).map_or(&[], Vec::as_slice)
    }
}

/// How many postings of each kind name sequences up to some bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PostingCounts {
    pub entity: u64,
    pub scope: u64,
    pub kind: u64,
    pub effects: u64,
    pub correlated: u64,
}

impl Index {
    /// Checks that the index says exactly what `e` (read from the record) says about
    /// its sequence: every column, and a posting in each list the event belongs in.
    /// Each disagreement is one line naming the column, index value against record.
    pub(crate) fn check_entry(&self, e: &IndexEntry<'_>) -> Vec<String> {
        let Some(i) = self.slot(e.sequence) else {
            return vec![format!("the index has no sequence {}", e.sequence)];
        };
        let mut out = Vec::new();
        let mut differ = |name: &str, index: &dyn std::fmt::Debug, record: &dyn std::fmt::Debug| {
            out.push(format!(
                "{name}: the index has {index:?}, the record {record:?}"
            ));
        };
        if self.ids[i] != e.id {
            differ("id", &self.ids[i], &e.id);
        }
        if self.locations[i] != e.location {
            let at = |l: Location| (l.segment(), l.offset());
            differ(
                "location (segment, offset)",
                &at(self.locations[i]),
                &at(e.location),
            );
        }
        let entity = self
            .entities
            .names
            .get(self.entity_of[i] as usize)
            .map(|n| &**n);
        if entity != Some(e.entity) {
            differ("entity", &entity, &e.entity);
        }
        let scope = self
            .scopes
            .names
            .get(self.scope_of[i] as usize)
            .map(|n| &**n);
        if scope != Some(e.scope) {
            differ("scope", &scope, &e.scope);
        }
        if self.kinds[i] != e.kind {
            differ("kind", &self.kinds[i], &e.kind);
        }
        let version = self.version_of(e.sequence);
        if version != Some(e.version) {
            differ("version (entity postings)", &version, &e.version);
        }
        let posted =
            |list: Option<&Vec<u64>>| list.is_some_and(|l| l.binary_search(&e.sequence).is_ok());
        let lists = [
            (
                "scope",
                Some(posted(self.scope_events.get(self.scope_of[i] as usize))),
            ),
            ("kind", Some(posted(self.kind_events.get(&e.kind)))),
            (
                "causation",
                e.causation.map(|c| posted(self.effects.get(&c))),
            ),
            (
                "correlation",
                e.correlation.map(|c| posted(self.correlated.get(&c))),
            ),
        ];
        for (name, present) in lists {
            if present == Some(false) {
                out.push(format!(
                    "{name} postings: sequence {} is missing",
                    e.sequence
                ));
            }
        }
        out
    }

    /// How many postings name sequences `1..=upto`: with `check_entry` passing for
    /// each of those events, equal counts mean no posting names one wrongly.
    pub(crate) fn posting_counts(&self, upto: u64) -> PostingCounts {
        let upto_in = |lists: &mut dyn Iterator<Item = &Vec<u64>>| -> u64 {
            lists
                .map(|l| l.partition_point(|&s| s <= upto) as u64)
                .sum()
        };
        PostingCounts {
            entity: upto_in(&mut self.entity_events.iter()),
            scope: upto_in(&mut self.scope_events.iter()),
            kind: upto_in(&mut self.kind_events.values()),
            effects: upto_in(&mut self.effects.values()),
            correlated: upto_in(&mut self.correlated.values()),
        }
    }
}

impl Index {
    /// Copies the columns, names and sparse postings of sequences `1..=upto` into `c`.
    /// Names are interned in order of first appearance, so the names those events use
    /// are a prefix of the name table.
    pub(crate) fn export(&self, c: &mut Checkpoint, upto: u64) {
        let n = if self.seqs.is_empty() {
            usize::try_from(upto)
                .unwrap_or(usize::MAX)
                .min(self.ids.len())
        } else {
            self.seqs.partition_point(|&s| s <= upto)
        };
        let upto = self.sequence_at(n.wrapping_sub(1)).unwrap_or(0);
        c.sequences = if self.seqs.is_empty() {
            Vec::new()
        } else {
            self.seqs[..n].to_vec()
        };
        c.ids = self.ids[..n].iter().map(|id| id.as_u128()).collect();
        c.locations = self.locations[..n].iter().map(|l| l.to_bits()).collect();
        c.entity_of = self.entity_of[..n].to_vec();
        c.scope_of = self.scope_of[..n].to_vec();
        c.kinds = self.kinds[..n].iter().map(|k| k.bits()).collect();
        let used = |ids: &[u32]| ids.iter().max().map_or(0, |&m| m as usize + 1);
        c.entity_names = self.entities.names[..used(&c.entity_of)]
            .iter()
            .map(|n| n.to_string())
            .collect();
        c.scope_names = self.scopes.names[..used(&c.scope_of)]
            .iter()
            .map(|n| n.to_string())
            .collect();
        let bases = &self.entity_base[..c.entity_names.len().min(self.entity_base.len())];
        c.entity_bases = if bases.iter().any(|&b| b > 0) {
            bases.to_vec()
        } else {
            Vec::new()
        };
        c.causation = pairs(&self.effects, upto);
        c.correlation = pairs(&self.correlated, upto);
    }

    /// Rebuilds an index from checkpoint columns, checking they are consistent.
    pub(crate) fn import(c: &Checkpoint) -> Result<Index, String> {
        let n = c.ids.len();
        if [
            c.locations.len(),
            c.entity_of.len(),
            c.scope_of.len(),
            c.kinds.len(),
        ]
        .iter()
        .any(|&len| len != n)
            || !(c.sequences.is_empty() || c.sequences.len() == n)
        {
            return Err("columns have different lengths".into());
        }
        if c.sequences.windows(2).any(|w| w[1] <= w[0]) || c.sequences.first() == Some(&0) {
            return Err("the sequences of the positions do not increase from 1".into());
        }
        if c.entity_bases.len() > c.entity_names.len() {
            return Err("more base versions than entities".into());
        }
        let mut ix = Index::default();
        for name in &c.entity_names {
            ix.entities.intern(name);
        }
        for name in &c.scope_names {
            ix.scopes.intern(name);
        }
        if ix.entities.len() != c.entity_names.len() || ix.scopes.len() != c.scope_names.len() {
            return Err("a name appears twice".into());
        }
        ix.entity_events = vec![Vec::new(); ix.entities.len()];
        ix.entity_base = vec![0; ix.entities.len()];
        ix.entity_base[..c.entity_bases.len()].copy_from_slice(&c.entity_bases);
        // A dense history keeps the plain columns; one with gaps names each sequence.
        let dense = c
            .sequences
            .iter()
            .enumerate()
            .all(|(i, &s)| s == i as u64 + 1);
        if !dense {
            ix.seqs.clone_from(&c.sequences);
        }
        ix.scope_events = vec![Vec::new(); ix.scopes.len()];
        ix.ids.reserve_exact(n);
        ix.locations.reserve_exact(n);
        for i in 0..n {
            let seq = c.sequences.get(i).copied().unwrap_or(i as u64 + 1);
            let id = EventId::from_u128(c.ids[i]);
            if ix.ids.last().is_some_and(|&last| id <= last) {
                return Err(format!("event id at sequence {seq} does not increase"));
            }
            let (entity, scope) = (c.entity_of[i], c.scope_of[i]);
            let postings = ix.entity_events.get_mut(entity as usize).ok_or_else(|| {
                format!("sequence {seq} names entity {entity}, which has no name")
            })?;
            let fresh = postings.is_empty();
            postings.push(seq);
            note_scope(&mut ix.entity_scope, entity, scope, fresh);
            ix.scope_events
                .get_mut(scope as usize)
                .ok_or_else(|| format!("sequence {seq} names scope {scope}, which has no name"))?
                .push(seq);
            let kind = EventKind::from_bits(c.kinds[i]);
            ix.kind_events.entry(kind).or_default().push(seq);
            if kind.category() == 0 {
                ix.store_entities.insert(entity);
            }
            if i.is_multiple_of(FENCE_EVERY) {
                ix.fences.push(id);
            }
            ix.ids.push(id);
            ix.locations.push(Location::from_bits(c.locations[i]));
            ix.kinds.push(kind);
        }
        ix.entity_of.clone_from(&c.entity_of);
        ix.scope_of.clone_from(&c.scope_of);
        for (pairs, postings) in [
            (&c.causation, &mut ix.effects),
            (&c.correlation, &mut ix.correlated),
        ] {
            for &(seq, id) in pairs {
                let held = if c.sequences.is_empty() {
                    (1..=n as u64).contains(&seq)
                } else {
                    c.sequences.binary_search(&seq).is_ok()
                };
                if !held {
                    return Err(format!(
                        "a link names sequence {seq}, which the columns do not hold"
                    ));
                }
                postings
                    .entry(EventId::from_u128(id))
                    .or_default()
                    .push(seq);
            }
        }
        Ok(ix)
    }
}

/// Records that `entity` has an event in `scope` (`fresh`: its first).
fn note_scope(entity_scope: &mut Vec<u32>, entity: u32, scope: u32, fresh: bool) {
    let at = entity as usize;
    if entity_scope.len() <= at {
        entity_scope.resize(at + 1, scope);
    }
    if fresh {
        entity_scope[at] = scope;
    } else if entity_scope[at] != scope {
        entity_scope[at] = horizon::MIXED_SCOPES;
    }
}

/// A posting map flattened to (sequence, key) pairs up to `upto`, in sequence order.
fn pairs(map: &FastMap<EventId, Vec<u64>>, upto: u64) -> Vec<(u64, u128)> {
    let mut out: Vec<(u64, u128)> = map
        .iter()
        .flat_map(|(id, seqs)| seqs.iter().map(move |&s| (s, id.as_u128())))
        .filter(|&(s, _)| s <= upto)
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(seq: u64, entity: &'a str, version: u64) -> IndexEntry<'a> {
        IndexEntry {
            sequence: seq,
            id: EventId::from_u128(u128::from(seq) * 10),
            kind: EventKind::custom(1, (seq % 3) as u16),
            version,
            entity,
            scope: "s",
            location: Location::new(1, seq * 100),
            causation: None,
            correlation: None,
        }
    }

    #[test]
    fn columns_postings_and_versions() {
        let mut ix = Index::default();
        ix.insert(&entry(1, "a", 0)).unwrap();
        ix.insert(&entry(2, "b", 0)).unwrap();
        ix.insert(&entry(3, "a", 1)).unwrap();
        assert_eq!(ix.last_sequence(), 3);
        assert_eq!(ix.sequence_of(EventId::from_u128(30)), Some(3));
        assert_eq!(ix.sequence_of(EventId::from_u128(31)), None);
        assert_eq!(ix.sequence_of(EventId::from_u128(5)), None);
        assert_eq!(ix.entity_head("a"), Some((1, 3)));
        assert_eq!(ix.entity_head("zzz"), None);
        let a = ix.entities().get("a").unwrap();
        assert_eq!(ix.entity_events(a), &[1, 3]);
        assert_eq!(ix.kind_events(EventKind::custom(1, 0)), &[3]);
        assert_eq!(ix.location(2), Some(Location::new(1, 200)));
        assert_eq!(ix.filter_columns(4), None);
        assert_eq!(ix.filter_columns(0), None);
        assert_eq!(ix.filter_columns(2), Some((1, 0, EventKind::custom(1, 2))));
    }

    #[test]
    fn id_lookup_across_fence_blocks() {
        let mut ix = Index::default();
        let n = FENCE_EVERY as u64 * 3 + 5;
        for seq in 1..=n {
            ix.insert(&entry(seq, "a", seq - 1)).unwrap();
        }
        for seq in 1..=n {
            assert_eq!(
                ix.sequence_of(EventId::from_u128(u128::from(seq) * 10)),
                Some(seq)
            );
            assert_eq!(
                ix.sequence_of(EventId::from_u128(u128::from(seq) * 10 + 1)),
                None
            );
        }
        assert_eq!(ix.sequence_of(EventId::from_u128(0)), None);
        assert_eq!(ix.sequence_of(EventId::from_u128(u128::MAX)), None);
    }

    #[test]
    fn export_then_import_is_the_same_index() {
        let mut ix = Index::default();
        let root = EventId::from_u128(10);
        for seq in 1..=200u64 {
            let entity = ["a", "b", "c:1"][(seq % 3) as usize];
            let version = ix
                .entities()
                .get(entity)
                .map_or(0, |e| ix.entity_events(e).len() as u64);
            let mut e = entry(seq, entity, version);
            if seq > 1 && seq % 7 == 0 {
                e.causation = Some(root);
            }
            if seq % 11 == 0 {
                e.correlation = Some(EventId::from_u128(20));
            }
            ix.insert(&e).unwrap();
        }
        let mut c = Checkpoint::default();
        ix.export(&mut c, u64::MAX);
        let back = Index::import(&c).unwrap();
        fn sorted<K: Ord + Copy, S>(m: &HashMap<K, Vec<u64>, S>) -> Vec<(K, Vec<u64>)> {
            let mut v: Vec<_> = m.iter().map(|(k, s)| (*k, s.clone())).collect();
            v.sort_by_key(|(k, _)| *k);
            v
        }
        assert!(back.ids == ix.ids && back.fences == ix.fences && back.locations == ix.locations);
        assert!(
            back.entity_of == ix.entity_of
                && back.scope_of == ix.scope_of
                && back.kinds == ix.kinds
        );
        assert!(back.entities.names == ix.entities.names && back.scopes.names == ix.scopes.names);
        assert!(back.entity_events == ix.entity_events && back.scope_events == ix.scope_events);
        assert!(sorted(&back.kind_events) == sorted(&ix.kind_events));
        assert!(sorted(&back.effects) == sorted(&ix.effects));
        assert!(sorted(&back.correlated) == sorted(&ix.correlated));
        assert_eq!(back.entities.get("c:1"), ix.entities.get("c:1"));
        c.entity_of[5] = 99;
        assert!(Index::import(&c).unwrap_err().contains("entity 99"));
    }

    #[test]
    fn rejects_gaps_and_wrong_versions() {
        let mut ix = Index::default();
        assert!(ix
            .insert(&entry(2, "a", 0))
            .unwrap_err()
            .contains("sequence 2"));
        ix.insert(&entry(1, "a", 0)).unwrap();
        assert!(ix
            .insert(&entry(2, "a", 5))
            .unwrap_err()
            .contains("version 5"));
        let mut same_id = entry(2, "a", 1);
        same_id.id = EventId::from_u128(10);
        assert!(ix
            .insert(&same_id)
            .unwrap_err()
            .contains("does not increase"));
    }

    /// A history compaction thinned: sequences and versions with gaps below them.
    #[test]
    fn an_index_with_gaps_finds_every_event_and_version() {
        use crate::query::{count, select, select_reverse, Region};
        let mut ix = Index::default();
        // Compacted through 7: "a" lost versions 0 and 1, "d" everything (version 0).
        let horizon = Hash::from_bytes([9; 32]);
        ix.set_compacted(7, &[("a", 2, horizon), ("d", 1, horizon)])
            .unwrap();
        ix.insert(&entry(3, "a", 2)).unwrap();
        assert!(ix
            .insert(&entry(4, "b", 1))
            .unwrap_err()
            .contains("version 1 where 0 was expected"));
        ix.insert(&entry(4, "b", 0)).unwrap();
        ix.insert(&entry(7, "a", 3)).unwrap();
        // After the compacted range the sequences are dense again.
        ix.insert(&entry(8, "c", 0)).unwrap();
        assert!(ix
            .insert(&entry(10, "c", 1))
            .unwrap_err()
            .contains("sequence 10 where 9 was expected"));
        ix.insert(&entry(9, "b", 1)).unwrap();
        assert!(ix.insert(&entry(9, "b", 2)).is_err(), "not later");
        assert!(ix
            .insert(&entry(10, "a", 9))
            .unwrap_err()
            .contains("version 9 where 4 was expected"));
        assert_eq!(ix.horizon_of("a"), Some((2, horizon)));
        assert_eq!(ix.horizon_of("d"), Some((1, horizon)));
        assert_eq!(ix.horizon_of("b"), None);
        assert_eq!(ix.entity_head("d"), None, "nothing kept");
        // A declared entity takes its first event at its first kept version.
        let mut later = Index::default();
        later.set_compacted(7, &[("d", 1, horizon)]).unwrap();
        later.insert(&entry(8, "d", 1)).unwrap();
        assert_eq!(later.entity_head("d"), Some((1, 8)));
        assert_eq!((ix.last_sequence(), ix.event_count()), (9, 5));
        assert!(ix.has_gaps());
        for (seq, entity) in [(3, "a"), (4, "b"), (7, "a"), (8, "c"), (9, "b")] {
            assert_eq!(
                ix.sequence_of(EventId::from_u128(u128::from(seq) * 10)),
                Some(seq)
            );
            assert_eq!(ix.location(seq), Some(Location::new(1, seq * 100)));
            let version = ix.version_of(seq).unwrap();
            assert!(ix.check_entry(&entry(seq, entity, version)).is_empty());
        }
        for seq in [0, 1, 2, 5, 6, 10] {
            assert_eq!(ix.location(seq), None, "sequence {seq}");
            assert_eq!(
                ix.sequence_of(EventId::from_u128(u128::from(seq) * 10)),
                None
            );
        }
        assert_eq!(ix.version_of(7), Some(3));
        assert_eq!(ix.entity_head("a"), Some((3, 7)));
        assert_eq!(ix.entity_head("b"), Some((1, 9)));
        assert_eq!(ix.entity_event_at(3, 2), Some(3));
        assert_eq!(ix.entity_event_at(3, 3), Some(7));
        assert_eq!(ix.entity_event_at(3, 1), None, "removed by compaction");
        let seqs = |from, to| ix.sequences_in(from, to).collect::<Vec<_>>();
        assert_eq!(seqs(0, u64::MAX), [3, 4, 7, 8, 9]);
        assert_eq!(seqs(5, 9), [7, 8]);
        assert_eq!(ix.sequences_in(0, 8).rev().collect::<Vec<_>>(), [7, 4, 3]);
        assert_eq!(
            (ix.sequence_at(0), ix.sequence_at(4), ix.sequence_at(5)),
            (Some(3), Some(9), None)
        );
        // Region evaluation over the gaps: scans, postings, versions, reverse.
        let all = Region::all();
        assert_eq!(select(&ix, &all, Sight::All, 0, 10), [3, 4, 7, 8, 9]);
        assert_eq!(select(&ix, &all, Sight::All, 4, 2), [7, 8]);
        assert_eq!(select_reverse(&ix, &all, Sight::All, 8, 10), [7, 4, 3]);
        assert_eq!(count(&ix, &all, Sight::All), 5);
        assert_eq!(count(&ix, &all.clone().sequences(5..9), Sight::All), 2);
        let a = Region::all().entity("a");
        assert_eq!(
            select(&ix, &a.clone().versions(3..4), Sight::All, 0, 10),
            [7]
        );
        assert_eq!(select(&ix, &a.versions(0..3), Sight::All, 0, 10), [3]);
        // A checkpoint carries the gaps and the bases, whole or up to a sequence.
        for (upto, held) in [(u64::MAX, vec![3, 4, 7, 8, 9]), (7, vec![3, 4, 7])] {
            let mut c = Checkpoint::default();
            ix.export(&mut c, upto);
            let c = Checkpoint::decode(&c.encode()).unwrap();
            let back = Index::import(&c).unwrap();
            assert_eq!(back.sequences_in(0, u64::MAX).collect::<Vec<_>>(), held);
            assert_eq!(back.version_of(7), Some(3));
            assert_eq!(
                back.entity_head("b").map(|(v, _)| v),
                Some(u64::from(upto > 7))
            );
            assert_eq!(back.sequence_of(EventId::from_u128(70)), Some(7));
            assert_eq!(back.last_sequence(), *held.last().unwrap());
        }
        // Horizons count versions from the base: a rule below it hides nothing more.
        use crate::retention::{RetentionRule, RetentionSelector};
        let (a_id, b_id) = (
            ix.entities().get("a").unwrap(),
            ix.entities().get("b").unwrap(),
        );
        ix.set_horizons(
            vec![
                (
                    RetentionSelector::EntityPrefix("a".into()),
                    RetentionRule::BeforeVersion(3),
                ),
                (
                    RetentionSelector::EntityPrefix("b".into()),
                    RetentionRule::MaxCount(1),
                ),
            ],
            &[],
        );
        assert_eq!(ix.first_visible_sequence(a_id, 0), 7);
        assert_eq!(ix.first_visible_sequence(b_id, 0), 9);
        ix.set_horizons(
            vec![(
                RetentionSelector::EntityPrefix("a".into()),
                RetentionRule::BeforeVersion(1),
            )],
            &[("a".to_string(), 1)],
        );
        assert_eq!(
            ix.first_visible_sequence(a_id, 0),
            0,
            "all of it is above version 1"
        );
        ix.set_horizons(Vec::new(), &[("a".to_string(), 2)]);
        assert_eq!(
            ix.first_visible_sequence(a_id, 0),
            7,
            "deleted through version 2"
        );
        ix.set_horizons(Vec::new(), &[]);
        assert_eq!(
            select(
                &ix,
                &Region::all().entity_prefix("b").versions(1..),
                Sight::All,
                0,
                10
            ),
            [9]
        );
    }

    #[test]
    fn causation_and_correlation_postings() {
        let mut ix = Index::default();
        ix.insert(&entry(1, "a", 0)).unwrap();
        let root = EventId::from_u128(10);
        let mut e2 = entry(2, "b", 0);
        e2.causation = Some(root);
        e2.correlation = Some(root);
        ix.insert(&e2).unwrap();
        assert_eq!(ix.effects_of(root), &[2]);
        assert_eq!(ix.correlated_with(root), &[2]);
        assert_eq!(ix.effects_of(EventId::from_u128(20)), &[] as &[u64]);
    }
}
