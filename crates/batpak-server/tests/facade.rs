//! The async facade on its own, as a tokio host uses it: appends and reads as
//! futures, a `Stream` that catches up then follows live, concurrent appends sharing
//! fsyncs, and a clean close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use batpak::{AppendOptions, Coordinate, Encoding, EventKind, ExpectedVersion, Region, Store};
use batpak_server::{AsyncStore, FollowError};
use futures_util::StreamExt as _;

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "s").unwrap()
}

async fn append(store: &AsyncStore, entity: &str, n: u64) -> batpak::AppendReceipt {
    store
        .append_raw(
            coord(entity),
            EventKind::custom(1, 1),
            Encoding::Json,
            format!("{{\"n\":{n}}}").into_bytes(),
            AppendOptions::default(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_reads_and_a_follow_that_catches_up_then_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = AsyncStore::new(Store::open(dir.path()).unwrap());
    for n in 0..5 {
        append(&store, "a", n).await;
    }
    let mut follow = store.follow(Region::all().entity("a"), 1, u64::MAX);
    let live = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 5..300 {
                append(&store, if n % 2 == 0 { "a" } else { "b" }, n).await;
            }
        })
    };
    let mut versions = Vec::new();
    while versions.len() < 150 {
        let event = follow.next().await.unwrap().unwrap();
        assert_eq!(event.coordinate.entity(), "a");
        versions.push(event.version);
    }
    live.await.unwrap();
    assert_eq!(versions, (0..150).collect::<Vec<_>>());
    let got = store.get(follow_last(&store).await).await.unwrap().unwrap();
    assert_eq!(got.coordinate.entity(), "b");
    assert_eq!(
        store.query(Region::all(), 0, 1000).await.unwrap().len(),
        300
    );
    assert_eq!(
        store
            .query_reverse(Region::all().entity("a"), u64::MAX, 1)
            .await
            .unwrap()[0]
            .version,
        151
    );
    drop(follow);
    store.close().unwrap().unwrap();
    let reopened = Store::open(dir.path()).unwrap();
    assert!(matches!(
        reopened.open_report().index,
        batpak::IndexSource::Checkpoint { events: 300 }
    ));
}

async fn follow_last(store: &AsyncStore) -> batpak::EventId {
    store.get_sequence(300).await.unwrap().unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_keep_their_own_checks_and_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = AsyncStore::new(Store::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                // Every task claims version 0 of the same entity: exactly one wins.
                let claim = store
                    .append_raw(
                        coord("contested"),
                        EventKind::custom(1, 1),
                        Encoding::Json,
                        b"{}".to_vec(),
                        AppendOptions::expect(ExpectedVersion::NoStream),
                    )
                    .await;
                for n in 0..10 {
                    append(&store, &format!("own:{t}"), n).await;
                }
                claim.is_ok()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "one NoStream claim wins, the others conflict");
    let syncs = store.store().sync_latency().count;
    assert!(
        syncs < 641,
        "{syncs} fsyncs for 641 appends: they are shared"
    );
    assert_eq!(store.store().frontier().durable, 641);
    store.close().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_that_falls_behind_its_limit_ends_with_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = AsyncStore::new(Store::open(dir.path()).unwrap());
    let mut follow = store.follow(Region::all(), 1, 10);
    append(&store, "a", 0).await;
    assert_eq!(follow.next().await.unwrap().unwrap().sequence, 1);
    for n in 1..50 {
        append(&store, "a", n).await;
    }
    store
        .wait_visible(50, std::time::Duration::from_secs(5))
        .await;
    let mut last = 1;
    loop {
        match follow.next().await.unwrap() {
            Ok(e) => last = e.sequence,
            Err(FollowError::Lagged { resume_from }) => {
                assert_eq!(resume_from, last + 1);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(follow.next().await.is_none(), "it ended");
    drop(follow);
    // A handle still alive keeps the store open.
    let other = store.clone();
    let store = store.close().unwrap_err();
    drop(other);
    store.close().unwrap().unwrap();
}
