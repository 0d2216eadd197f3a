//! Every query form against a model: a `Vec` of the appended events filtered the
//! obvious way, whole and page by page.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::ops::Range;

use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Region, Store};
use proptest::prelude::*;

const ENTITIES: [&str; 5] = ["o", "o:1", "o:2", "ox", "p:1"];
const SCOPES: [&str; 2] = ["s1", "s2"];

#[derive(Clone, Debug)]
struct Row {
    sequence: u64,
    entity: &'static str,
    scope: &'static str,
    kind: EventKind,
    version: u64,
}

#[derive(Clone, Debug)]
struct Query {
    entity: Option<(bool, &'static str)>, // (prefix?, name)
    scope: Option<&'static str>,
    kind: Option<(bool, u8, u16)>, // (category only?, category, type)
    versions: Option<Range<u64>>,
    sequences: Option<Range<u64>>,
    page: usize,
}

impl Query {
    fn region(&self) -> Region {
        let mut r = Region::all();
        if let Some((prefix, name)) = self.entity {
            r = if prefix {
                r.entity_prefix(name)
            } else {
                r.entity(name)
            };
        }
        if let Some(s) = self.scope {
            r = r.scope(s);
        }
        if let Some((category_only, c, t)) = self.kind {
            r = if category_only {
                r.category(c)
            } else {
                r.kind(EventKind::custom(c, t))
            };
        }
        if let Some(v) = &self.versions {
            r = r.versions(v.clone());
        }
        if let Some(s) = &self.sequences {
            r = r.sequences(s.clone());
        }
        r
    }

    fn matches(&self, row: &Row) -> bool {
        let entity_ok = match self.entity {
            None => true,
            Some((false, name)) => row.entity == name,
            Some((true, p)) => {
                row.entity == p
                    || row
                        .entity
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with(':'))
            }
        };
        let kind_ok = match self.kind {
            None => true,
            Some((true, c, _)) => row.kind.category() == c,
            Some((false, c, t)) => row.kind == EventKind::custom(c, t),
        };
        entity_ok
            && kind_ok
            && self.scope.is_none_or(|s| row.scope == s)
            && self
                .versions
                .as_ref()
                .is_none_or(|v| v.contains(&row.version))
            && self
                .sequences
                .as_ref()
                .is_none_or(|s| s.contains(&row.sequence))
    }
}

fn query_gen() -> impl Strategy<Value = Query> {
    (
        prop::option::of((any::<bool>(), prop::sample::select(ENTITIES.to_vec()))),
        prop::option::of(prop::sample::select(SCOPES.to_vec())),
        prop::option::of((any::<bool>(), 1u8..3, 0u16..2)),
        prop::option::of((0u64..20, 0u64..20).prop_map(|(a, b)| a.min(b)..a.max(b))),
        prop::option::of((0u64..90, 0u64..90).prop_map(|(a, b)| a.min(b)..a.max(b))),
        1usize..7,
    )
        .prop_map(|(entity, scope, kind, versions, sequences, page)| Query {
            entity,
            scope,
            kind,
            versions,
            sequences,
            page,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_query_form_matches_the_model(
        picks in prop::collection::vec((0usize..5, 0usize..2, 1u8..3, 0u16..2), 1..80),
        queries in prop::collection::vec(query_gen(), 8..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).segment_size(4096).open().unwrap();
        let mut rows: Vec<Row> = Vec::new();
        for (e, s, c, t) in picks {
            let entity = ENTITIES[e];
            let scope = SCOPES[s];
            let kind = EventKind::custom(c, t);
            let r = store
                .append_raw(&Coordinate::new(entity, scope).unwrap(), kind, RawPayload::opaque(b"x"), AppendOptions::default())
                .unwrap();
            rows.push(Row { sequence: r.sequence, entity, scope, kind, version: r.version });
        }
        for q in &queries {
            let want: Vec<u64> = rows.iter().filter(|r| q.matches(r)).map(|r| r.sequence).collect();
            let region = q.region();
            let got: Vec<u64> = store.query(&region, 0, usize::MAX).unwrap().iter().map(|e| e.sequence).collect();
            prop_assert_eq!(&got, &want, "{:?}", q);
            // Page through it.
            let mut after = 0;
            let mut paged = Vec::new();
            loop {
                let page = store.query(&region, after, q.page).unwrap();
                prop_assert!(page.len() <= q.page);
                let Some(last) = page.last() else { break };
                after = last.sequence;
                paged.extend(page.iter().map(|e| e.sequence));
            }
            prop_assert_eq!(&paged, &want, "pages of {:?}", q);
            // Versions reported match the model.
            for e in store.query(&region, 0, usize::MAX).unwrap() {
                let row = &rows[(e.sequence - 1) as usize];
                prop_assert_eq!(e.version, row.version);
            }
        }
    }
}

#[test]
fn an_entity_version_range_is_a_slice_of_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = Coordinate::new("acct:1", "s").unwrap();
    let other = Coordinate::new("acct:2", "s").unwrap();
    for i in 0..30u8 {
        for coord in [&c, &other] {
            store
                .append_raw(
                    coord,
                    EventKind::custom(1, 1),
                    RawPayload::opaque(&[i]),
                    AppendOptions::default(),
                )
                .unwrap();
        }
    }
    let got = store
        .query(&Region::all().entity("acct:1").versions(10..=12), 0, 100)
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert!(got.iter().all(|e| e.coordinate.entity() == "acct:1"));
    let got = store.query(&Region::all().sequences(5..8), 0, 100).unwrap();
    assert_eq!(
        got.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert!(store
        .query(&Region::all().entity("acct:1").versions(40..), 0, 10)
        .unwrap()
        .is_empty());
}
