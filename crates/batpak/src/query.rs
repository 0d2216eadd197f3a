//! `Region`: which events a query selects, and its evaluation over the index.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::ops::{Bound, RangeBounds};

use crate::coordinate::prefix_matches;
use crate::index::{Index, Sight};
use crate::kind::EventKind;

/// A selection of events: by entity (exact or prefix), scope, and kind or category.
/// Criteria combine with AND; `Region::all()` selects every user event.
///
/// The store's own records (category 0: recorded denials and bypasses, redaction
/// records, reactor positions, kind names, repairs) are left out unless the region
/// asks for them, with [`with_store_records`](Region::with_store_records) or by
/// naming a category-0 kind or category 0 itself.
///
/// An entity prefix matches on `:` boundaries: `order` selects `order` and `order:1`
/// but not `orders`.
///
/// Serde: the [`canonical`](Region::canonical) form, every criterion present (`null`
/// when unset), ranges as `[start, end)` pairs. Deserialising reads that form (a
/// criterion left out is unset) and refuses unknown criteria and a range that ends
/// before it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    entity: Option<EntityFilter>,
    scope: Option<String>,
    kind: Option<KindFilter>,
    /// Half-open range of per-entity versions.
    #[serde(default, deserialize_with = "ordered_range")]
    versions: Option<(u64, u64)>,
    /// Half-open range of sequences.
    #[serde(default, deserialize_with = "ordered_range")]
    sequences: Option<(u64, u64)>,
    /// Store records are selected too. Left out of the canonical text when false,
    /// so regions (and cursors) from before the option keep their text.
    #[serde(default, skip_serializing_if = "is_false")]
    store_records: bool,
    /// Half-open range of stored timestamps (Unix nanoseconds). Left out of the
    /// canonical text when unset, like `store_records`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ordered_range"
    )]
    times: Option<(u64, u64)>,
    /// Events retention or a deletion hides are selected too. Left out of the
    /// canonical text when false.
    #[serde(default, skip_serializing_if = "is_false")]
    hidden: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A `[start, end)` pair as `half_open` makes them: `end >= start`.
fn ordered_range<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<(u64, u64)>, D::Error> {
    let range: Option<(u64, u64)> = serde::Deserialize::deserialize(deserializer)?;
    match range {
        Some((start, end)) if end < start => Err(serde::de::Error::custom(format!(
            "range [{start}, {end}) ends before it starts"
        ))),
        range => Ok(range),
    }
}

/// A `RangeBounds<u64>` as a half-open `[start, end)` pair.
fn half_open(range: impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end.max(start))
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum EntityFilter {
    Exact(String),
    Prefix(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindFilter {
    Kind(EventKind),
    Category(u8),
}

impl Region {
    /// Every event.
    pub fn all() -> Self {
        Region::default()
    }

    /// Only events of exactly this entity.
    #[must_use]
    pub fn entity(mut self, entity: impl Into<String>) -> Self {
        self.entity = Some(EntityFilter::Exact(entity.into()));
        self
    }

    /// Only events of entities under `prefix` on a `:` boundary: equal to it, or
    /// starting with it followed by `:` (a prefix that itself ends in `:` matches any
    /// entity that starts with it).
    #[must_use]
    pub fn entity_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.entity = Some(EntityFilter::Prefix(prefix.into()));
        self
    }

    /// Whether [`entity_prefix`](Self::entity_prefix)`(prefix)` selects `entity`: the
    /// same `:`-boundary rule, for callers that match names themselves (a server's
    /// grants, say). An empty prefix selects every entity.
    pub fn prefix_selects(prefix: &str, entity: &str) -> bool {
        prefix.is_empty() || crate::coordinate::prefix_matches(prefix, entity)
    }

    /// Only events in this scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Only events of this kind.
    #[must_use]
    pub fn kind(mut self, kind: EventKind) -> Self {
        self.kind = Some(KindFilter::Kind(kind));
        self
    }

    /// Only events whose kind is in this category.
    #[must_use]
    pub fn category(mut self, category: u8) -> Self {
        self.kind = Some(KindFilter::Category(category));
        self
    }

    /// Only events whose version (position in their entity) is in `range`. With an
    /// exact entity this is a slice of its history, found without scanning.
    #[must_use]
    pub fn versions(mut self, range: impl RangeBounds<u64>) -> Self {
        self.versions = Some(half_open(range));
        self
    }

    /// Only events whose sequence is in `range`.
    #[must_use]
    pub fn sequences(mut self, range: impl RangeBounds<u64>) -> Self {
        self.sequences = Some(half_open(range));
        self
    }

    /// Also selects the store's own records (category 0), which are otherwise left
    /// out: for audits of denials, bypasses and redactions, and for tools that copy
    /// a whole store.
    #[must_use]
    pub fn with_store_records(mut self) -> Self {
        self.store_records = true;
        self
    }

    /// Also selects the events retention policies and deletions hide (until
    /// compaction removes them): for exports of the whole journal and audits.
    #[must_use]
    pub fn with_hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// Whether this region selects hidden events too.
    pub(crate) fn includes_hidden(&self) -> bool {
        self.hidden
    }

    /// Only events whose stored timestamp (Unix nanoseconds, as `timestamp_ns`) is in
    /// `range`. Timestamps never decrease along the sequence, so the store turns this
    /// into a sequence range by binary search over a few records' headers.
    #[must_use]
    pub fn times(mut self, range: impl RangeBounds<u64>) -> Self {
        self.times = Some(half_open(range));
        self
    }

    /// The time range, if any.
    pub(crate) fn time_range(&self) -> Option<(u64, u64)> {
        self.times
    }

    /// This region with its time range replaced by the sequence range `[start, end)`
    /// it covers, intersected with the region's own.
    pub(crate) fn with_time_as_sequences(&self, (start, end): (u64, u64)) -> Region {
        let (own_start, own_end) = self.sequences.unwrap_or((0, u64::MAX));
        let start = start.max(own_start);
        let mut out = self.clone();
        out.times = None;
        out.sequences = Some((start, end.min(own_end).max(start)));
        out
    }

    /// Whether this region selects store records (asked for, or named by kind).
    pub(crate) fn selects_store_records(&self) -> bool {
        self.store_records
            || matches!(self.kind, Some(KindFilter::Kind(k)) if k.category() == 0)
            || matches!(self.kind, Some(KindFilter::Category(0)))
    }

    /// A stable text form (JSON, fields in a fixed order): equal regions give equal
    /// text. Durable cursors store it to refuse being reopened with another region.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The sequences of up to `limit` events in `region` after sequence `after`, in order.
///
/// Evaluation starts from the smallest posting list the region names and filters the
/// rest of the criteria on the index columns.
/// Events `sight` does not see (hidden by retention or deletion) are skipped.
pub(crate) fn select(
    index: &Index,
    region: &Region,
    sight: Sight,
    after: u64,
    limit: usize,
) -> Vec<u64> {
    collect(index, region, sight, Direction::After(after), limit)
}

/// The sequences of up to `limit` events in `region` before sequence `before`, newest
/// first.
pub(crate) fn select_reverse(
    index: &Index,
    region: &Region,
    sight: Sight,
    before: u64,
    limit: usize,
) -> Vec<u64> {
    collect(index, region, sight, Direction::Before(before), limit)
}

fn collect(
    index: &Index,
    region: &Region,
    sight: Sight,
    direction: Direction,
    limit: usize,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(limit.min(1024));
    if limit > 0 {
        visit(index, region, sight, direction, |seq| {
            out.push(seq);
            out.len() < limit
        });
    }
    out
}

/// How many events `region` selects that `sight` sees.
pub(crate) fn count(index: &Index, region: &Region, sight: Sight) -> u64 {
    let mut n = 0u64;
    visit(index, region, sight, Direction::After(0), |_| {
        n += 1;
        true
    });
    n
}

/// Where a visit starts and which way it goes.
#[derive(Clone, Copy, Debug)]
enum Direction {
    /// Ascending from the first sequence greater than this.
    After(u64),
    /// Descending from the last sequence less than this.
    Before(u64),
}

/// Visits the sequences `region` selects in `direction` until `visit` returns false.
fn visit(
    index: &Index,
    region: &Region,
    sight: Sight,
    direction: Direction,
    mut visit: impl FnMut(u64) -> bool,
) {
    let Some(resolved) = Resolved::of(index, region) else {
        return;
    };
    let mut hider = index.hider(sight);
    // Sequences in [low, high): the region's range, cut by the direction's bound.
    let (seq_start, seq_end) = region.sequences.unwrap_or((0, u64::MAX));
    let (low, high) = match direction {
        Direction::After(after) => (seq_start.max(after.saturating_add(1)), seq_end),
        Direction::Before(before) => (seq_start, seq_end.min(before)),
    };
    if low >= high {
        return;
    }
    let exact_entity = matches!(region.entity, Some(EntityFilter::Exact(_)));
    let smallest = resolved.smallest_postings(index, region, exact_entity);
    // An exact entity's version range was applied to its postings already.
    let check_versions = region
        .versions
        .filter(|_| !(exact_entity && smallest.as_ref().is_some_and(|(by, _)| *by == By::Entity)));
    let Some((source, lists)) = smallest else {
        let hide_store = !region.selects_store_records() && index.has_store_records();
        let mut shown = |seq: u64| {
            (!hide_store && hider.is_none()
                || index.filter_columns(seq).is_some_and(|(entity, _, kind)| {
                    let store_record = hide_store && kind.category() == 0;
                    !store_record && !hider.as_mut().is_some_and(|h| h.hides(seq, entity))
                }))
                && check_versions.is_none_or(|range| version_in(index, seq, range))
        };
        // The sequences the index holds (a compacted history has gaps).
        let range = index.sequences_in(low, high);
        let mut seqs: Box<dyn Iterator<Item = u64>> = match direction {
            Direction::After(_) => range,
            Direction::Before(_) => Box::new(range.rev()),
        };
        // Stops at the first sequence the visitor declines.
        let _declined = seqs.any(|seq| shown(seq) && !visit(seq));
        return;
    };
    let check_entity = resolved
        .entity_ids
        .as_ref()
        .filter(|_| source != By::Entity);
    let check_scope = resolved.scope_id.filter(|_| source != By::Scope);
    let check_kinds = resolved.kinds.as_ref().filter(|_| source != By::Kind);
    // Store records are left out by their kind; only entities that hold any need it.
    let hide_store = !region.selects_store_records()
        && match (&resolved.entity_ids, resolved.kinds.is_some()) {
            (_, true) => false, // the kinds named are all of user categories
            (Some(ids), false) => ids.iter().any(|&id| index.holds_store_records(id)),
            (None, false) => index.has_store_records(),
        };
    let unfiltered = check_entity.is_none()
        && check_scope.is_none()
        && check_kinds.is_none()
        && check_versions.is_none()
        && !hide_store
        && hider.is_none();
    let mut keep = |seq: u64| {
        unfiltered
            || (index
                .filter_columns(seq)
                .is_some_and(|(entity, scope, kind)| {
                    check_entity.is_none_or(|ids| ids.contains(&entity))
                        && check_scope.is_none_or(|s| s == scope)
                        && check_kinds.is_none_or(|ks| ks.contains(&kind))
                        && !(hide_store && kind.category() == 0)
                        && !hider.as_mut().is_some_and(|h| h.hides(seq, entity))
                })
                && check_versions.is_none_or(|range| version_in(index, seq, range)))
    };
    match direction {
        Direction::After(_) => merge_after(&lists, low - 1, |seq| {
            if seq >= high {
                return false;
            }
            !keep(seq) || visit(seq)
        }),
        Direction::Before(_) => merge_before(&lists, high, |seq| {
            if seq < low {
                return false;
            }
            !keep(seq) || visit(seq)
        }),
    }
}

/// Which criterion a candidate list came from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum By {
    Entity,
    Scope,
    Kind,
}

/// A region's names resolved to the index's ids.
#[derive(Debug)]
struct Resolved {
    entity_ids: Option<HashSet<u32>>,
    scope_id: Option<u32>,
    kinds: Option<Vec<EventKind>>,
}

impl Resolved {
    /// `None` when the region names a scope the index has never seen (it selects
    /// nothing); an unseen entity resolves to no ids, with the same effect.
    fn of(index: &Index, region: &Region) -> Option<Resolved> {
        let entity_ids = region.entity.as_ref().map(|filter| match filter {
            EntityFilter::Exact(e) => index.entities().get(e).into_iter().collect(),
            EntityFilter::Prefix(p) => index
                .entities()
                .iter()
                .filter(|(_, name)| prefix_matches(p, name))
                .map(|(id, _)| id)
                .collect(),
        });
        let scope_id = match &region.scope {
            None => None,
            Some(s) => Some(index.scopes().get(s)?),
        };
        let kinds = region.kind.map(|k| match k {
            KindFilter::Kind(k) => vec![k],
            KindFilter::Category(c) => index.kinds_in_category(c),
        });
        Some(Resolved {
            entity_ids,
            scope_id,
            kinds,
        })
    }

    /// The postings of the most selective named criterion (fewest entries), or
    /// `None` when the region names none. Candidates satisfy the criterion they came
    /// from, so only the others are checked.
    fn smallest_postings<'i>(
        &self,
        index: &'i Index,
        region: &Region,
        exact_entity: bool,
    ) -> Option<(By, Vec<&'i [u64]>)> {
        let mut options: Vec<(By, Vec<&[u64]>)> = Vec::new();
        if let Some(ids) = &self.entity_ids {
            let lists = ids
                .iter()
                .map(|&id| {
                    let postings = index.entity_events(id);
                    // An exact entity's versions are its base plus positions in its
                    // postings.
                    match region.versions.filter(|_| exact_entity) {
                        Some((from, to)) => {
                            let (len, base) = (postings.len() as u64, index.entity_base(id));
                            let at = |v: u64| v.saturating_sub(base).min(len) as usize;
                            &postings[at(from)..at(to)]
                        }
                        None => postings,
                    }
                })
                .collect();
            options.push((By::Entity, lists));
        }
        if let Some(id) = self.scope_id {
            options.push((By::Scope, vec![index.scope_events(id)]));
        }
        if let Some(kinds) = &self.kinds {
            options.push((
                By::Kind,
                kinds.iter().map(|&k| index.kind_events(k)).collect(),
            ));
        }
        options
            .into_iter()
            .min_by_key(|(_, lists)| lists.iter().map(|l| l.len()).sum::<usize>())
    }
}

fn version_in(index: &Index, seq: u64, (from, to): (u64, u64)) -> bool {
    index.version_of(seq).is_some_and(|v| v >= from && v < to)
}

/// Visits the union of sorted `lists` in ascending order, starting after `after`,
/// until `visit` returns false.
fn merge_after(lists: &[&[u64]], after: u64, mut visit: impl FnMut(u64) -> bool) {
    let mut heap = BinaryHeap::with_capacity(lists.len());
    for (li, list) in lists.iter().enumerate() {
        let start = list.partition_point(|&s| s <= after);
        if let Some(&seq) = list.get(start) {
            heap.push(Reverse((seq, li, start)));
        }
    }
    while let Some(Reverse((seq, li, pos))) = heap.pop() {
        if !visit(seq) {
            return;
        }
        if let Some(&next) = lists[li].get(pos + 1) {
            heap.push(Reverse((next, li, pos + 1)));
        }
    }
}

/// Visits the union of sorted `lists` in descending order, starting before
/// `before`, until `visit` returns false.
fn merge_before(lists: &[&[u64]], before: u64, mut visit: impl FnMut(u64) -> bool) {
    let mut heap = BinaryHeap::with_capacity(lists.len());
    for (li, list) in lists.iter().enumerate() {
        let end = list.partition_point(|&s| s < before);
        if end > 0 {
            heap.push((list[end - 1], li, end - 1));
        }
    }
    while let Some((seq, li, pos)) = heap.pop() {
        if !visit(seq) {
            return;
        }
        if pos > 0 {
            heap.push((lists[li][pos - 1], li, pos - 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden: cursors persist this text, so it must not drift.
    #[test]
    fn canonical_text_is_stable() {
        assert_eq!(
            Region::all().canonical(),
            r#"{"entity":null,"scope":null,"kind":null,"versions":null,"sequences":null}"#
        );
        assert_eq!(
            Region::all()
                .entity_prefix("order")
                .scope("t:1")
                .kind(EventKind::custom(2, 5))
                .versions(1..3)
                .sequences(10..=20)
                .canonical(),
            concat!(
                r#"{"entity":{"prefix":"order"},"scope":"t:1","kind":{"kind":"2:5"},"#,
                r#""versions":[1,3],"sequences":[10,21]}"#
            )
        );
        assert_ne!(
            Region::all().entity("a").canonical(),
            Region::all().entity_prefix("a").canonical()
        );
        assert_eq!(
            Region::all().category(3).canonical(),
            r#"{"entity":null,"scope":null,"kind":{"category":3},"versions":null,"sequences":null}"#
        );
    }

    #[test]
    fn prefix_respects_colon_boundaries() {
        assert!(prefix_matches("order", "order:1"));
        assert!(prefix_matches("order", "order"));
        assert!(prefix_matches("order:", "order:1"));
        assert!(prefix_matches("order:1", "order:1:line:2"));
        assert!(!prefix_matches("order", "orders"));
        assert!(!prefix_matches("order:1", "order:10"));
        assert!(!prefix_matches("order", "ord"));
    }

    #[test]
    fn merge_visits_union_in_order() {
        let a: &[u64] = &[1, 4, 9];
        let b: &[u64] = &[2, 3, 10];
        let mut seen = Vec::new();
        merge_after(&[a, b], 2, |s| {
            seen.push(s);
            seen.len() < 4
        });
        assert_eq!(seen, vec![3, 4, 9, 10]);
        let mut back = Vec::new();
        merge_before(&[a, b], 10, |s| {
            back.push(s);
            back.len() < 4
        });
        assert_eq!(back, vec![9, 4, 3, 2]);
    }
}
