//! The causal graph: verified chain walks, causes, and event neighbourhoods.

use crate::coordinate::Coordinate;
use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::report::{ChainWalkReport, EventRef, Report, WalkFinding};
use crate::store::Store;

/// The result of [`Store::walk_ancestors`](crate::Store::walk_ancestors): the event and
/// its entity's earlier events, newest first, each link checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ChainWalk {
    /// The events walked, newest first, up to the first broken link.
    pub events: Vec<StoredEvent>,
    /// The first link that does not verify, if any. The walk stops there.
    pub broken: Option<ChainBreak>,
    /// Whether the walk reached the entity's first event: version 0, or for an
    /// entity compaction removed a prefix of, its first kept version (whose link to
    /// the removed history is checked against the recorded horizon hash).
    pub reached_first: bool,
}

/// A link of an entity's hash chain that does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ChainBreak {
    /// The event whose `prev_hash` does not match.
    pub event: EventId,
    /// Its predecessor in the entity (`None` when the event is version 0, whose
    /// `prev_hash` must be zero).
    pub predecessor: Option<EventId>,
    /// The `prev_hash` the event stores.
    pub stored: Hash,
    /// What it should be: the predecessor's recomputed hash, or zero.
    pub expected: Hash,
}

/// Checks the links of `events` (newest first, consecutive versions of one entity).
/// Returns how many events are covered by verified links and the first break.
pub(crate) fn verify_links(events: &[StoredEvent]) -> (usize, Option<ChainBreak>) {
    for (i, pair) in events.windows(2).enumerate() {
        let (newer, older) = (&pair[0], &pair[1]);
        let expected = older.event_hash();
        if newer.prev_hash != expected {
            return (
                i + 1,
                Some(ChainBreak {
                    event: newer.id,
                    predecessor: Some(older.id),
                    stored: newer.prev_hash,
                    expected,
                }),
            );
        }
    }
    match events.last() {
        Some(first) if first.version == 0 && first.prev_hash != Hash::ZERO => (
            events.len(),
            Some(ChainBreak {
                event: first.id,
                predecessor: None,
                stored: first.prev_hash,
                expected: Hash::ZERO,
            }),
        ),
        _ => (events.len(), None),
    }
}

/// The neighbourhood of an event: nodes and typed edges, ready to draw.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CausalGraph {
    /// The event the graph was built around.
    pub root: EventId,
    /// Events within the requested depth, in sequence order.
    pub nodes: Vec<GraphNode>,
    /// Links between nodes, sorted by (from, to, kind).
    pub edges: Vec<GraphEdge>,
}

/// An event in a [`CausalGraph`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct GraphNode {
    /// The event id.
    pub id: EventId,
    /// Its sequence.
    pub sequence: u64,
    /// Entity and scope.
    pub coordinate: Coordinate,
    /// Its kind.
    pub kind: EventKind,
    /// Its version within the entity.
    pub version: u64,
}

/// A directed link in a [`CausalGraph`], from the earlier event to the later one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub struct GraphEdge {
    /// The earlier event (predecessor or cause).
    pub from: EventId,
    /// The later event (successor or effect).
    pub to: EventId,
    /// What links them.
    pub kind: EdgeKind,
}

/// The kind of a [`GraphEdge`].
///
/// Serde: `"chain"` or `"causation"`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgeKind {
    /// Consecutive events of one entity (the hash chain).
    Chain,
    /// `to` names `from` as its cause.
    Causation,
}

static WALK_KEY: std::sync::LazyLock<[u8; 32]> =
    std::sync::LazyLock::new(|| blake3::derive_key("batpak 2026 chain walk v1", &[]));

impl ChainWalk {
    /// The evidence report of this walk.
    pub fn report(&self) -> Report<ChainWalkReport> {
        let to_ref = |e: &StoredEvent| EventRef {
            id: e.id.to_string(),
            sequence: e.sequence,
            version: e.version,
        };
        let mut h = blake3::Hasher::new_keyed(&WALK_KEY);
        for e in &self.events {
            h.update(e.event_hash().as_bytes());
        }
        let mut findings = Vec::new();
        if let Some(b) = &self.broken {
            findings.push(WalkFinding::HashMismatch {
                event: b.event.to_string(),
                predecessor: b.predecessor.map(|p| p.to_string()),
            });
        } else if !self.reached_first {
            findings.push(WalkFinding::TruncatedByLimit);
        }
        findings.sort();
        Report::new(
            ChainWalkReport {
                checked: self.events.len() as u64,
                first: self.events.first().map(to_ref),
                last: self.events.last().map(to_ref),
                digest: h.finalize().to_hex().to_string(),
                findings,
            },
            Vec::new(),
        )
    }
}

impl Store {
    /// The event `id` and up to `limit - 1` of its entity's earlier events, newest
    /// first, following the hash chain and checking every link as it goes (one index
    /// step and one record read per event). A link that does not verify ends the walk
    /// and is reported in [`ChainWalk::broken`]; it is never skipped. `None` when no
    /// event has this id.
    pub fn walk_ancestors(&self, id: EventId, limit: usize) -> Result<Option<ChainWalk>> {
        // Where the entity's history starts: version 0, or after what compaction removed.
        let mut start: Option<(u64, Hash)> = None;
        let targets = self.locate(|index| {
            let Some(seq) = index.sequence_of(id) else {
                return Vec::new();
            };
            start = index
                .read_target(seq)
                .and_then(|(_, entity, _)| index.horizon_of(&index.entities().shared(entity)));
            let version = index.version_of(seq).unwrap_or(0);
            (0..=version)
                .rev()
                .take(limit)
                .filter_map(|v| index.entity_event_at(seq, v))
                .collect()
        });
        if targets.is_empty() {
            return Ok(None);
        }
        let events = self.read_events(&targets)?;
        let (verified, mut broken) = verify_links(&events);
        let mut events = events;
        events.truncate(verified);
        let first_version = start.map_or(0, |(version, _)| version);
        if let (None, Some((version, hash)), Some(oldest)) = (broken, start, events.last()) {
            // The first kept event links to the horizon hash the manifest recorded.
            if oldest.version == version && oldest.prev_hash != hash {
                broken = Some(ChainBreak {
                    event: oldest.id,
                    predecessor: None,
                    stored: oldest.prev_hash,
                    expected: hash,
                });
            }
        }
        let reached_first =
            broken.is_none() && events.last().is_some_and(|e| e.version == first_version);
        Ok(Some(ChainWalk {
            events,
            broken,
            reached_first,
        }))
    }

    /// The causes of `id`, following causation links across entities: its cause, that
    /// event's cause, and so on to the root, at most `limit` events.
    pub fn causes(&self, id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        let Some(mut current) = self.get(id)? else {
            return Ok(out);
        };
        while out.len() < limit {
            let Some(cause) = current.causation else {
                break;
            };
            // Causes are checked to exist on append, so a missing one is damage.
            current = self.get(cause)?.ok_or_else(|| Error::Corrupt {
                path: self.dir().to_path_buf(),
                offset: 0,
                detail: format!(
                    "event {} names cause {cause}, which is not in the store",
                    current.id
                ),
            })?;
            out.push(current.clone());
        }
        Ok(out)
    }

    /// The neighbourhood of `id` within `depth` hops along chain links (previous and
    /// next event of the same entity) and causation links (cause and effects), as
    /// nodes and typed edges. `None` when no event has this id.
    pub fn causal_graph(&self, id: EventId, depth: usize) -> Result<Option<CausalGraph>> {
        use std::collections::{BTreeMap, BTreeSet};
        let Some(root) = self.get(id)? else {
            return Ok(None);
        };
        let mut nodes: BTreeMap<u64, StoredEvent> = BTreeMap::new();
        let mut edges: BTreeSet<(u64, u64, EdgeKind)> = BTreeSet::new();
        let mut frontier = vec![root.sequence];
        nodes.insert(root.sequence, root);
        for _ in 0..depth {
            let mut links: Vec<(u64, u64, EdgeKind)> = Vec::new();
            {
                let index = self.index();
                for &seq in &frontier {
                    let Some(event) = nodes.get(&seq) else {
                        continue;
                    };
                    if let Some(prev) = event
                        .version
                        .checked_sub(1)
                        .and_then(|v| index.entity_event_at(seq, v))
                    {
                        links.push((prev, seq, EdgeKind::Chain));
                    }
                    if let Some(next) = index.entity_event_at(seq, event.version + 1) {
                        links.push((seq, next, EdgeKind::Chain));
                    }
                    if let Some(cause) = event.causation.and_then(|c| index.sequence_of(c)) {
                        links.push((cause, seq, EdgeKind::Causation));
                    }
                    for &effect in index.effects_of(event.id) {
                        links.push((seq, effect, EdgeKind::Causation));
                    }
                }
            }
            let new: Vec<u64> = links
                .iter()
                .flat_map(|&(a, b, _)| [a, b])
                .filter(|s| !nodes.contains_key(s))
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect();
            edges.extend(links);
            let targets = self.locate(|_| new.clone());
            for event in self.read_events(&targets)? {
                nodes.insert(event.sequence, event);
            }
            frontier = new;
            if frontier.is_empty() {
                break;
            }
        }
        let id_of = |seq: u64| nodes.get(&seq).map(|e| e.id);
        let mut edges: Vec<GraphEdge> = edges
            .into_iter()
            .filter_map(|(a, b, kind)| {
                Some(GraphEdge {
                    from: id_of(a)?,
                    to: id_of(b)?,
                    kind,
                })
            })
            .collect();
        edges.sort();
        Ok(Some(CausalGraph {
            root: id,
            nodes: nodes
                .values()
                .map(|e| GraphNode {
                    id: e.id,
                    sequence: e.sequence,
                    coordinate: e.coordinate.clone(),
                    kind: e.kind,
                    version: e.version,
                })
                .collect(),
            edges,
        }))
    }
}
