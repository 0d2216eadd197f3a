//! The catalogue: which entities, scopes and kinds a store holds, with counts,
//! answered from the index without reading a record.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::coordinate::prefix_matches;
use crate::coordinate::STORE_ENTITY_PREFIX;
use crate::kind::EventKind;
use crate::store::Store;

/// One entity: its name, the scopes its events carry, its newest version, how many
/// events it has and the sequences of its first and last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EntityInfo {
    /// The entity.
    pub entity: String,
    /// The scopes of its events, sorted (one, unless the entity was appended to under
    /// several).
    pub scopes: Vec<String>,
    /// Its newest version (versions count from 0).
    pub version: u64,
    /// Its events.
    pub events: u64,
    /// The sequence of its first event.
    pub first_sequence: u64,
    /// The sequence of its newest event.
    pub last_sequence: u64,
}

/// One scope and how many user events carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScopeInfo {
    /// The scope.
    pub scope: String,
    /// Its user events (store records left out).
    pub events: u64,
}

/// One kind, its recorded name and how many events it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KindInfo {
    /// The kind (category 0: a store record kind).
    pub kind: EventKind,
    /// Its name (see [`Store::kind_name`]).
    pub name: Option<String>,
    /// Its events.
    pub events: u64,
}

impl Store {
    /// Up to `limit` entities whose name is `prefix` or lies under it on a `:`
    /// boundary (every entity for an empty prefix), sorted by name and starting after
    /// the name `after` (exclusive): page by passing the last name returned. The
    /// store's own entities (`batpak:...`) are listed only when the prefix names them.
    /// Counts and sequences are of the visible events (retention and deletions hide
    /// some); an entity with none is left out. `version` is its newest version,
    /// hidden or not: what the next append continues from.
    pub fn entities(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<EntityInfo> {
        let sight = self.sight();
        let index = self.index();
        let show_store = prefix.starts_with(STORE_ENTITY_PREFIX);
        let mut names: Vec<(&str, u32)> = index
            .entities()
            .iter()
            .filter(|(_, name)| prefix.is_empty() || prefix_matches(prefix, name))
            .filter(|(_, name)| show_store || !name.starts_with(STORE_ENTITY_PREFIX))
            .filter(|(_, name)| after.is_none_or(|a| *name > a))
            .map(|(id, name)| (name, id))
            .collect();
        names.sort_unstable();
        names
            .into_iter()
            .filter_map(|(name, id)| {
                let all = index.entity_events(id);
                let from = index.first_visible(id, sight);
                let postings = &all[all.partition_point(|&s| s < from)..];
                let (&first, &last) = (postings.first()?, postings.last()?);
                let scopes: BTreeSet<u32> = postings
                    .iter()
                    .filter_map(|&seq| index.filter_columns(seq).map(|(_, scope, _)| scope))
                    .collect();
                Some(EntityInfo {
                    entity: name.to_string(),
                    scopes: scopes
                        .into_iter()
                        .map(|s| index.scopes().shared(s).to_string())
                        .collect(),
                    version: index.entity_base(id) + all.len() as u64 - 1,
                    events: postings.len() as u64,
                    first_sequence: first,
                    last_sequence: last,
                })
            })
            .take(limit)
            .collect()
    }

    /// Hidden events per scope and per kind: what the counts leave out.
    fn hidden_counts(&self) -> (HashMap<u32, u64>, HashMap<EventKind, u64>) {
        let (mut scopes, mut kinds) = (HashMap::new(), HashMap::new());
        if let crate::index::Sight::At(now_ms) = self.sight() {
            let index = self.index();
            index.for_each_hidden(now_ms, |seq| {
                if let Some((_, scope, kind)) = index.filter_columns(seq) {
                    *scopes.entry(scope).or_default() += 1;
                    *kinds.entry(kind).or_default() += 1;
                }
            });
        }
        (scopes, kinds)
    }

    /// Every scope holding visible user events, sorted, with how many.
    pub fn scopes(&self) -> Vec<ScopeInfo> {
        let (hidden, _) = self.hidden_counts();
        let index = self.index();
        // Store records sit on the store's entities: take them out of their scope.
        let mut store_records: HashMap<u32, u64> = HashMap::new();
        for entity in index.store_entity_ids() {
            for &seq in index.entity_events(entity) {
                if let Some((_, scope, kind)) = index.filter_columns(seq) {
                    if kind.category() == 0 {
                        *store_records.entry(scope).or_default() += 1;
                    }
                }
            }
        }
        let mut out: Vec<ScopeInfo> = index
            .scopes()
            .iter()
            .map(|(id, name)| ScopeInfo {
                scope: name.to_string(),
                events: (index.scope_events(id).len() as u64)
                    .saturating_sub(store_records.get(&id).copied().unwrap_or(0))
                    .saturating_sub(hidden.get(&id).copied().unwrap_or(0)),
            })
            .filter(|s| s.events > 0)
            .collect();
        out.sort_unstable_by(|a, b| a.scope.cmp(&b.scope));
        out
    }

    /// Every kind with visible events, sorted, with its name and how many.
    pub fn kinds(&self) -> Vec<KindInfo> {
        let (_, hidden) = self.hidden_counts();
        let counts = self.index().kind_counts();
        counts
            .into_iter()
            .map(|(kind, events)| KindInfo {
                kind,
                name: self.kind_name(kind),
                events: events.saturating_sub(hidden.get(&kind).copied().unwrap_or(0)),
            })
            .filter(|k| k.events > 0)
            .collect()
    }
}
