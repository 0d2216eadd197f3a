//! `Region`: which events a query selects, and its evaluation over the index.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::ops::{Bound, RangeBounds};

use crate::index::Index;
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

/// Whether `entity` falls under `prefix` on a `:` boundary.
pub(crate) fn prefix_matches(prefix: &str, entity: &str) -> bool {
    match entity.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with(':') || rest.starts_with(':'),
        None => false,
    }
}

/// The sequences of up to `limit` events in `region` after sequence `after`, in order.
///
/// Evaluation starts from the smallest posting list the region names and filters the
/// rest of the criteria on the index columns.
pub(crate) fn select(index: &Index, region: &Region, after: u64, limit: usize) -> Vec<u64> {
    if limit == 0 {
        return Vec::new();
    }
    let Some(resolved) = Resolved::of(index, region) else {
        return Vec::new();
    };
    let (seq_start, seq_end) = region.sequences.unwrap_or((0, u64::MAX));
    let after = after.max(seq_start.saturating_sub(1));
    let exact_entity = matches!(region.entity, Some(EntityFilter::Exact(_)));
    let smallest = resolved.smallest_postings(index, region, exact_entity);
    // An exact entity's version range was applied to its postings already.
    let check_versions = region
        .versions
        .filter(|_| !(exact_entity && smallest.as_ref().is_some_and(|(by, _)| *by == By::Entity)));
    let mut out = Vec::with_capacity(limit.min(1024));
    let Some((source, lists)) = smallest else {
        let hide_store = !region.selects_store_records() && index.has_store_records();
        scan_sequences(
            index,
            after,
            seq_end,
            check_versions,
            hide_store,
            limit,
            &mut out,
        );
        return out;
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
        && !hide_store;
    merge_after(&lists, after, |seq| {
        if seq >= seq_end {
            return false;
        }
        let keep = unfiltered
            || (index
                .filter_columns(seq)
                .is_some_and(|(entity, scope, kind)| {
                    check_entity.is_none_or(|ids| ids.contains(&entity))
                        && check_scope.is_none_or(|s| s == scope)
                        && check_kinds.is_none_or(|ks| ks.contains(&kind))
                        && !(hide_store && kind.category() == 0)
                })
                && check_versions.is_none_or(|range| version_in(index, seq, range)));
        if keep {
            out.push(seq);
        }
        out.len() < limit
    });
    out
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
                    // An exact entity's versions are positions in its postings.
                    match region.versions.filter(|_| exact_entity) {
                        Some((from, to)) => {
                            let len = postings.len() as u64;
                            let (from, to) = (from.min(len) as usize, to.min(len) as usize);
                            &postings[from..to]
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

/// No criterion: every sequence after `after` and before `end`, filtered by version
/// and, with `hide_store`, leaving store records out.
fn scan_sequences(
    index: &Index,
    after: u64,
    end: u64,
    versions: Option<(u64, u64)>,
    hide_store: bool,
    limit: usize,
    out: &mut Vec<u64>,
) {
    let mut seq = after.saturating_add(1);
    let last = index.last_sequence().min(end.saturating_sub(1));
    while seq <= last && out.len() < limit {
        let shown = !hide_store
            || index
                .filter_columns(seq)
                .is_some_and(|(_, _, kind)| kind.category() != 0);
        if shown && versions.is_none_or(|range| version_in(index, seq, range)) {
            out.push(seq);
        }
        seq += 1;
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
    }
}
