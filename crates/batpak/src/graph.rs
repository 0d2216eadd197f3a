//! The causal graph as data: verified chain walks and event neighbourhoods.

use crate::coordinate::Coordinate;
use crate::event::StoredEvent;
use crate::hash::Hash;
use crate::id::EventId;
use crate::kind::EventKind;
use crate::report::{ChainWalkReport, EventRef, Report, WalkFinding};

/// The result of [`Store::walk_ancestors`](crate::Store::walk_ancestors): the event and
/// its entity's earlier events, newest first, each link checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainWalk {
    /// The events walked, newest first, up to the first broken link.
    pub events: Vec<StoredEvent>,
    /// The first link that does not verify, if any. The walk stops there.
    pub broken: Option<ChainBreak>,
    /// Whether the walk reached the entity's first event (version 0).
    pub reached_first: bool,
}

/// A link of an entity's hash chain that does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CausalGraph {
    /// The event the graph was built around.
    pub root: EventId,
    /// Events within the requested depth, in sequence order.
    pub nodes: Vec<GraphNode>,
    /// Links between nodes, sorted by (from, to, kind).
    pub edges: Vec<GraphEdge>,
}

/// An event in a [`CausalGraph`].
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GraphEdge {
    /// The earlier event (predecessor or cause).
    pub from: EventId,
    /// The later event (successor or effect).
    pub to: EventId,
    /// What links them.
    pub kind: EdgeKind,
}

/// The kind of a [`GraphEdge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
