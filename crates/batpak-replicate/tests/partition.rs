//! Scope partitioning downstream: a `StoreSet` of three stores, each replicated at
//! once into one PostgreSQL database (a schema each) and one shared JetStream stream
//! (subjects of its own), every copy verified, causes across stores resolvable in
//! the database by id, and each copy followed into a replica that takes its foreign
//! causes as named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use batpak::{
    AppendOptions, Coordinate, EventKind, RawPayload, Region, Store, StoreSet, CAUSE_STORE_KEY,
};
use batpak_replicate::{JetStreamSink, PostgresSink, Replicator};
use support::{runtime, Nats, Postgres};

const STORES: [&str; 3] = ["eu", "rest", "us"];

/// Orders in each tenant's store, each paid in the US store (caused across), each
/// payment audited in the rest store (caused across again).
fn fill(set: &StoreSet) -> usize {
    let mut crossed = 0;
    for i in 0..120u32 {
        let tenant = if i % 2 == 0 {
            "tenant:eu:de"
        } else {
            "tenant:us:ny"
        };
        let order = set
            .append_raw(
                &Coordinate::new(format!("order:{i}"), tenant).unwrap(),
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"order\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
        let payment = set
            .append_raw(
                &Coordinate::new(format!("payment:{i}"), "tenant:us:payments").unwrap(),
                EventKind::custom(1, 2),
                RawPayload::json(format!("{{\"paid\":{i}}}").as_bytes()),
                order.as_cause(),
            )
            .unwrap();
        if order.store != payment.store {
            crossed += 1;
        }
        set.append_raw(
            &Coordinate::new("audit", "ops").unwrap(),
            EventKind::custom(1, 3),
            RawPayload::json(b"{\"seen\":true}"),
            payment.as_cause(),
        )
        .unwrap();
        crossed += 1;
    }
    crossed
}

#[test]
fn three_stores_replicate_into_one_database_and_one_stream_and_each_copy_holds() {
    let pg = Postgres::start();
    let nats = Nats::start();
    let root = tempfile::tempdir().unwrap();
    let set = StoreSet::builder(root.path())
        .route("tenant:eu", "eu")
        .route("tenant:us", "us")
        .default_store("rest")
        .open()
        .unwrap();
    let crossed = fill(&set);
    let sizes: Vec<u64> = STORES
        .iter()
        .map(|n| set.store(n).unwrap().frontier().visible)
        .collect();
    // Each store has its own writer; its replicators read it through a view, as
    // `batpak --dir ROOT/<store> replicate` in another process would.
    let views: Vec<Arc<Store>> = STORES
        .iter()
        .map(|n| Arc::new(Store::builder(root.path().join(n)).open_view().unwrap()))
        .collect();
    let shared = format!("{}/SHOP", nats.url());
    let rt = runtime();
    rt.block_on(async {
        let mut into_pg: Vec<_> = STORES
            .iter()
            .zip(&views)
            .map(|(n, v)| {
                Replicator::new(Arc::clone(v), PostgresSink::new(&pg.url(), n).unwrap()).batch(50)
            })
            .collect();
        let mut into_js: Vec<_> = STORES
            .iter()
            .zip(&views)
            .map(|(n, v)| {
                Replicator::new(Arc::clone(v), JetStreamSink::new(&shared, n).unwrap()).batch(50)
            })
            .collect();
        let (a, b) = into_pg.split_at_mut(1);
        let (b, c) = b.split_at_mut(1);
        let (x, y) = into_js.split_at_mut(1);
        let (y, z) = y.split_at_mut(1);
        let done = tokio::join!(
            a[0].catch_up(),
            b[0].catch_up(),
            c[0].catch_up(),
            x[0].catch_up(),
            y[0].catch_up(),
            z[0].catch_up()
        );
        for (position, size) in [done.0, done.1, done.2]
            .into_iter()
            .zip(&sizes)
            .chain([done.3, done.4, done.5].into_iter().zip(&sizes))
        {
            assert_eq!(position.unwrap(), *size);
        }
    });

    // One stream holds all three copies, each on subjects of its own.
    let total: u64 = sizes.iter().sum();
    let info = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut stream = async_nats::jetstream::new(client)
            .get_stream("SHOP")
            .await
            .unwrap();
        stream.info().await.unwrap().clone()
    });
    // Every event, and the anchor each replicator kept at the end of its catch-up.
    assert_eq!(info.state.messages, total + STORES.len() as u64);
    let mut subjects = info.config.subjects.clone();
    subjects.sort();
    assert_eq!(subjects, ["batpak.eu.>", "batpak.rest.>", "batpak.us.>"]);

    for (name, size) in STORES.iter().zip(&sizes) {
        let report = rt
            .block_on(batpak_replicate::verify_postgres(&pg.url(), name, &[], &[]))
            .unwrap();
        assert_eq!(
            (report.problem.clone(), report.rows),
            (None, *size),
            "{name}: {report:?}"
        );
        let report = rt
            .block_on(batpak_replicate::verify_jetstream(&shared, name, &[], &[]))
            .unwrap();
        assert_eq!(
            (report.problem.clone(), report.rows),
            (None, *size),
            "{name}: {report:?}"
        );
    }

    // In the database, a cause in another store is found by its id, in the schema the
    // effect names.
    let joined: usize = STORES
        .iter()
        .flat_map(|effect| STORES.iter().map(move |cause| (effect, cause)))
        .filter(|(e, c)| e != c)
        .map(|(effect, cause)| {
            pg.sql(&format!(
                "SELECT count(*) FROM {effect}.events e JOIN {cause}.events c ON e.causation = c.id
                 WHERE e.metadata->>'{CAUSE_STORE_KEY}' = '{cause}'"
            ))
            .parse::<usize>()
            .unwrap()
        })
        .sum();
    assert_eq!(joined, crossed);

    // Each copy followed from the shared stream into a replica of its own, foreign
    // causes taken as named.
    for name in STORES {
        let dir = tempfile::tempdir().unwrap();
        let replica = Arc::new(Store::open(dir.path()).unwrap());
        let position = rt
            .block_on(batpak_replicate::follow_jetstream(
                Arc::clone(&replica),
                &shared,
                name,
                true,
                std::future::pending(),
                |_| {},
            ))
            .unwrap();
        let source = set.store(name).unwrap();
        assert_eq!(position, source.frontier().visible);
        support::assert_same_history(source, &replica);
    }
    // Order within a store is total (and none is promised across stores).
    let all = Region::all();
    let us = set.store("us").unwrap().query(&all, 0, usize::MAX).unwrap();
    assert!(us.windows(2).all(|w| w[0].sequence + 1 == w[1].sequence));
    set.close().unwrap();
}
