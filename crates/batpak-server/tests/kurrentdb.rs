//! The KurrentDB listener through the official Rust client (kurrentdb crate) on a
//! loopback port: every mapping rule (fields kept, positions, revisions, stream
//! name escaping, retries by event id, expected revisions, deletes), filters
//! (prefix, regex with lookahead), a subscription that catches up and goes live
//! with appends racing it, tokens as basic credentials, TLS, and that a KurrentDB
//! write is an ordinary batpak event with its receipt and chain.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::time::Duration;

use batpak_server::{AsyncStore, Grant, Permission, Server, TokensFile};
use kurrentdb::{
    Client, EventData, ReadAllOptions, ReadStreamOptions, StreamPosition, StreamState,
    SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter,
};
use serde_json::json;

/// A server of a fresh store with the KurrentDB listener, and a client of it.
struct Harness {
    client: Client,
    store: Option<AsyncStore>,
    http: std::net::SocketAddr,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), batpak_server::ServeError>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(|b| b, "").await
    }

    async fn start_with(
        configure: impl FnOnce(batpak_server::ServerBuilder) -> batpak_server::ServerBuilder,
        connection: &str,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = batpak::Store::open(dir.path()).unwrap();
        let builder = Server::builder(store).kurrentdb("127.0.0.1:0".parse().unwrap(), "kurrentdb");
        let server = configure(builder)
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = server.kurrentdb_addr().unwrap().port();
        let http = server.local_addr().unwrap();
        let store = server.store().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_until(async move {
            let _ = stopped.await;
        }));
        let client = client(port, connection);
        Harness {
            client,
            store: Some(store),
            http,
            port,
            stop: Some(stop),
            serving: Some(serving),
            _dir: dir,
        }
    }

    fn store(&self) -> &batpak::Store {
        self.store.as_ref().unwrap().store()
    }

    /// Stops the server and checks it closed the store cleanly.
    async fn finish(mut self) {
        self.store.take();
        let _ = self.stop.take().unwrap().send(());
        self.serving.take().unwrap().await.unwrap().unwrap();
    }
}

fn client(port: u16, connection: &str) -> Client {
    let settings = if connection.is_empty() {
        format!("esdb://127.0.0.1:{port}?tls=false&defaultDeadline=20000")
    } else {
        connection.replace("PORT", &port.to_string())
    };
    Client::new(settings.parse().unwrap()).unwrap()
}

fn order(n: u64) -> EventData {
    EventData::json("order-placed", &json!({ "n": n })).unwrap()
}

async fn read_all_of(client: &Client, stream: &str) -> Vec<kurrentdb::ResolvedEvent> {
    let mut read = client
        .read_stream(stream, &Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(e) = read.next().await.unwrap() {
        out.push(e);
    }
    out
}

fn originals(events: &[kurrentdb::ResolvedEvent]) -> Vec<&kurrentdb::RecordedEvent> {
    events.iter().map(|e| e.get_original_event()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_is_kept_and_every_event_has_its_receipt_and_chain() {
    let h = Harness::start().await;
    let id = uuid::Uuid::new_v4();
    let json_event = EventData::json("order-placed", &json!({"total": 12.5}))
        .unwrap()
        .id(id)
        .metadata_as_json(&json!({"tenant": "acme"}))
        .unwrap();
    let binary = EventData::binary("blob", bytes::Bytes::from_static(b"\x00\x01\xff"))
        .metadata(bytes::Bytes::from_static(b"\x01\x02 not text \x00"));
    let written = h
        .client
        .append_to_stream("order-1", &Default::default(), vec![json_event, binary])
        .await
        .unwrap();
    assert_eq!(written.next_expected_version, 1);
    let resolved = read_all_of(&h.client, "order-1").await;
    let events = originals(&resolved);
    assert_eq!(events.len(), 2);
    let (a, b) = (&events[0], &events[1]);
    assert_eq!(a.id, id);
    assert_eq!(a.event_type, "order-placed");
    assert!(a.is_json);
    assert_eq!(&a.data[..], br#"{"total":12.5}"#);
    assert_eq!(&a.custom_metadata[..], br#"{"tenant":"acme"}"#);
    assert_eq!((a.revision, b.revision), (0, 1));
    assert_eq!(b.event_type, "blob");
    assert!(!b.is_json);
    assert_eq!(&b.data[..], b"\x00\x01\xff");
    assert_eq!(&b.custom_metadata[..], b"\x01\x02 not text \x00");
    assert_eq!(b.position, written.position);

    // The same events in batpak: the scope, a kind named by the type, the fields in
    // the metadata, positions that are sequences, a receipt and a chain link each.
    let store = h.store();
    let stored = store.stream("order-1").unwrap();
    assert_eq!(stored.len(), 2);
    for (s, k) in stored.iter().zip(events.iter().copied()) {
        assert_eq!(s.coordinate.scope(), "kurrentdb");
        assert_eq!(s.sequence, k.position.commit);
        assert!(s.sequence > 0);
        assert_eq!(s.version, k.revision);
        assert_eq!(
            store.kind_name(s.kind).as_deref(),
            Some(k.event_type.as_str())
        );
        assert_eq!(
            s.metadata.get("kurrentdb.id"),
            Some(k.id.hyphenated().to_string().as_str())
        );
        let receipt = store.receipt(s.id).unwrap().expect("a receipt");
        assert_eq!(receipt.event_hash, s.event_hash());
    }
    assert_eq!(stored[1].prev_hash, stored[0].event_hash());
    assert_eq!(
        stored[0].metadata.get("kurrentdb.content-type"),
        Some("application/json")
    );
    assert_eq!(stored[0].encoding, batpak::Encoding::Json);
    assert_eq!(stored[1].encoding, batpak::Encoding::Opaque);
    assert!(stored[1]
        .metadata
        .get("kurrentdb.metadata.base64")
        .is_some());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_names_batpak_refuses_are_escaped_both_ways() {
    let h = Harness::start().await;
    let names = [
        ("batpak:ledger", "%62atpak:ledger"),
        ("50%-off", "50%25-off"),
        ("tab\there", "tab%09here"),
        ("$$order-1", "$$order-1"),
    ];
    for (name, _) in names {
        h.client
            .append_to_stream(name, &Default::default(), vec![order(1)])
            .await
            .unwrap();
    }
    for (name, entity) in names {
        let resolved = read_all_of(&h.client, name).await;
        let events = originals(&resolved);
        assert_eq!(events.len(), 1, "{name}");
        assert_eq!(events[0].stream_id(), name);
        assert_eq!(h.store().stream(entity).unwrap().len(), 1, "{entity}");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_the_same_ids_returns_the_original_result() {
    let h = Harness::start().await;
    let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    let batch =
        |ids: &[uuid::Uuid]| -> Vec<EventData> { ids.iter().map(|id| order(1).id(*id)).collect() };
    for (stream, state) in [
        ("retry-nostream", StreamState::NoStream),
        ("retry-any", StreamState::Any),
    ] {
        let options = kurrentdb::AppendToStreamOptions::default().stream_state(state);
        let first = h
            .client
            .append_to_stream(stream, &options, batch(&ids))
            .await
            .unwrap();
        let again = h
            .client
            .append_to_stream(stream, &options, batch(&ids))
            .await
            .unwrap();
        assert_eq!(
            again.next_expected_version, first.next_expected_version,
            "{stream}"
        );
        assert_eq!(again.position, first.position, "{stream}");
        assert_eq!(read_all_of(&h.client, stream).await.len(), 3, "{stream}");
    }
    // At an exact revision: the retry of the second write returns its result.
    let more: Vec<uuid::Uuid> = (0..2).map(|_| uuid::Uuid::new_v4()).collect();
    let at =
        kurrentdb::AppendToStreamOptions::default().stream_state(StreamState::StreamRevision(2));
    let second = h
        .client
        .append_to_stream("retry-nostream", &at, batch(&more))
        .await
        .unwrap();
    let again = h
        .client
        .append_to_stream("retry-nostream", &at, batch(&more))
        .await
        .unwrap();
    assert_eq!(second.next_expected_version, 4);
    assert_eq!(again.next_expected_version, 4);
    assert_eq!(again.position, second.position);
    // Other ids at the stale revision are a conflict naming both revisions.
    let other = h
        .client
        .append_to_stream("retry-nostream", &at, vec![order(9)])
        .await
        .unwrap_err();
    match other {
        kurrentdb::Error::WrongExpectedVersion { expected, current } => {
            assert_eq!(expected, StreamState::StreamRevision(2));
            assert_eq!(current, kurrentdb::CurrentRevision::Current(4));
        }
        e => panic!("expected a wrong expected version, got {e:?}"),
    }
    assert_eq!(read_all_of(&h.client, "retry-nostream").await.len(), 5);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_revisions_any_no_stream_exists_and_exact() {
    let h = Harness::start().await;
    let with = |state| kurrentdb::AppendToStreamOptions::default().stream_state(state);
    let err = h
        .client
        .append_to_stream("exp", &with(StreamState::StreamExists), vec![order(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            kurrentdb::Error::WrongExpectedVersion {
                expected: StreamState::StreamExists,
                current: kurrentdb::CurrentRevision::NoStream
            }
        ),
        "{err:?}"
    );
    h.client
        .append_to_stream("exp", &with(StreamState::NoStream), vec![order(1)])
        .await
        .unwrap();
    h.client
        .append_to_stream("exp", &with(StreamState::StreamExists), vec![order(2)])
        .await
        .unwrap();
    h.client
        .append_to_stream("exp", &with(StreamState::StreamRevision(1)), vec![order(3)])
        .await
        .unwrap();
    let err = h
        .client
        .append_to_stream("exp", &with(StreamState::NoStream), vec![order(4)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            kurrentdb::Error::WrongExpectedVersion {
                current: kurrentdb::CurrentRevision::Current(2),
                ..
            }
        ),
        "{err:?}"
    );
    // A refused append wrote nothing.
    assert_eq!(h.store().entity_version("exp"), Some(2));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_both_ways_from_revisions_and_positions_with_counts() {
    let h = Harness::start().await;
    let events: Vec<EventData> = (0..10).map(order).collect();
    h.client
        .append_to_stream("ten", &Default::default(), events)
        .await
        .unwrap();
    let revisions = |opts: ReadStreamOptions| {
        let client = h.client.clone();
        async move {
            let mut read = client.read_stream("ten", &opts).await.unwrap();
            let mut out = Vec::new();
            while let Some(e) = read.next().await.unwrap() {
                out.push(e.get_original_event().revision);
            }
            out
        }
    };
    assert_eq!(
        revisions(
            ReadStreamOptions::default()
                .backwards()
                .position(StreamPosition::End)
                .max_count(3)
        )
        .await,
        vec![9, 8, 7]
    );
    assert_eq!(
        revisions(
            ReadStreamOptions::default()
                .forwards()
                .position(StreamPosition::Position(5))
                .max_count(2)
        )
        .await,
        vec![5, 6]
    );
    assert_eq!(
        revisions(
            ReadStreamOptions::default()
                .backwards()
                .position(StreamPosition::Position(2))
        )
        .await,
        vec![2, 1, 0]
    );
    // $all: from a position includes it, forwards; the newest event backwards.
    let stored = h.store().stream("ten").unwrap();
    let at = kurrentdb::Position {
        commit: stored[3].sequence,
        prepare: stored[3].sequence,
    };
    let mut read = h
        .client
        .read_all(
            &ReadAllOptions::default()
                .position(StreamPosition::Position(at))
                .max_count(2),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = read.next().await.unwrap() {
        got.push(e.get_original_event().position.commit);
    }
    assert_eq!(got, vec![stored[3].sequence, stored[4].sequence]);
    let mut read = h
        .client
        .read_all(
            &ReadAllOptions::default()
                .backwards()
                .position(StreamPosition::End)
                .max_count(1),
        )
        .await
        .unwrap();
    let newest = read.next().await.unwrap().unwrap();
    assert_eq!(
        newest.get_original_event().position.commit,
        stored[9].sequence
    );
    assert_eq!(newest.get_original_event().revision, 9);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_hides_and_lets_the_stream_continue_tombstone_ends_it() {
    let h = Harness::start().await;
    h.client
        .append_to_stream("soft", &Default::default(), vec![order(1), order(2)])
        .await
        .unwrap();
    h.client
        .delete_stream("soft", &Default::default())
        .await
        .unwrap();
    let mut read = h
        .client
        .read_stream("soft", &Default::default())
        .await
        .unwrap();
    assert!(matches!(
        read.next().await,
        Err(kurrentdb::Error::ResourceNotFound)
    ));
    let after = h
        .client
        .append_to_stream("soft", &Default::default(), vec![order(3)])
        .await
        .unwrap();
    assert_eq!(after.next_expected_version, 2);
    assert_eq!(read_all_of(&h.client, "soft").await.len(), 1);

    h.client
        .append_to_stream("hard", &Default::default(), vec![order(1)])
        .await
        .unwrap();
    let mut sub = h
        .client
        .subscribe_to_stream(
            "hard",
            &kurrentdb::SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    assert_eq!(sub.next().await.unwrap().get_original_event().revision, 0);
    let wrong =
        kurrentdb::TombstoneStreamOptions::default().stream_state(StreamState::StreamRevision(7));
    assert!(h.client.tombstone_stream("hard", &wrong).await.is_err());
    h.client
        .tombstone_stream("hard", &Default::default())
        .await
        .unwrap();
    let append = h
        .client
        .append_to_stream("hard", &Default::default(), vec![order(2)])
        .await;
    assert!(
        matches!(append, Err(kurrentdb::Error::ResourceDeleted)),
        "{append:?}"
    );
    let read = h.client.read_stream("hard", &Default::default()).await;
    assert!(matches!(read, Err(kurrentdb::Error::ResourceDeleted)));
    // The subscription to it ends the same way.
    let ended = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("the subscription ended");
    assert!(
        matches!(ended, Err(kurrentdb::Error::ResourceDeleted)),
        "{ended:?}"
    );
    let again = h.client.delete_stream("hard", &Default::default()).await;
    assert!(
        matches!(again, Err(kurrentdb::Error::ResourceDeleted)),
        "{again:?}"
    );
    // A stream that never had an event can be tombstoned: its name stays taken.
    h.client
        .tombstone_stream(
            "reserved",
            &kurrentdb::TombstoneStreamOptions::default().stream_state(StreamState::NoStream),
        )
        .await
        .unwrap();
    let append = h
        .client
        .append_to_stream("reserved", &Default::default(), vec![order(1)])
        .await;
    assert!(
        matches!(append, Err(kurrentdb::Error::ResourceDeleted)),
        "{append:?}"
    );
    let read = h.client.read_stream("reserved", &Default::default()).await;
    assert!(matches!(read, Err(kurrentdb::Error::ResourceDeleted)));
    // The deletions are batpak's own records.
    let deletions = h.store().deletions();
    assert_eq!(deletions.len(), 3);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metadata_limits_become_a_retention_policy_on_that_stream_only() {
    let h = Harness::start().await;
    // One append each: compaction removes whole appends only (an append is one
    // atomic batch), so these can go one by one.
    for n in 0..6 {
        h.client
            .append_to_stream("trim", &Default::default(), vec![order(n)])
            .await
            .unwrap();
    }
    h.client
        .append_to_stream("trim:lines", &Default::default(), vec![order(0), order(1)])
        .await
        .unwrap();
    let revisions = |events: Vec<kurrentdb::ResolvedEvent>| -> Vec<u64> {
        events
            .iter()
            .map(|e| e.get_original_event().revision)
            .collect()
    };
    // $maxCount keeps the newest two of that stream; the metadata reads back.
    let two = kurrentdb::StreamMetadataBuilder::new().max_count(2).build();
    h.client
        .set_stream_metadata("trim", &Default::default(), &two)
        .await
        .unwrap();
    assert_eq!(revisions(read_all_of(&h.client, "trim").await), [4, 5]);
    assert_eq!(read_all_of(&h.client, "trim:lines").await.len(), 2);
    let read = h
        .client
        .get_stream_metadata("trim", &Default::default())
        .await
        .unwrap();
    match read {
        kurrentdb::StreamMetadataResult::Success(m) => assert_eq!(m.metadata(), &two),
        other => panic!("{other:?}"),
    }
    // Several limits at once: each applies; $tb keeps revisions from 5 on. The
    // protocol's $maxAge is in seconds; this client's builder writes milliseconds,
    // so the event is written as JSON here.
    let both = EventData::json(
        "$metadata",
        &json!({ "$maxCount": 3, "$maxAge": 3600, "$tb": 5 }),
    )
    .unwrap();
    h.client
        .append_to_stream("$$trim", &Default::default(), vec![both])
        .await
        .unwrap();
    assert_eq!(revisions(read_all_of(&h.client, "trim").await), [5]);
    let policies = h.store().retention();
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0].selector,
        batpak::RetentionSelector::Entity("trim".into())
    );
    assert_eq!(
        policies[0].rule,
        batpak::RetentionRule::Combined(
            batpak::RetentionLimits::new()
                .max_count(3)
                .max_age(Duration::from_secs(3600))
                .before_version(5)
        )
    );
    // Metadata without limits (an ACL only: kept, not enforced) clears the policy,
    // and what compaction had not removed is visible again.
    let acl_only = kurrentdb::StreamMetadataBuilder::new()
        .acl(kurrentdb::Acl::Stream(
            kurrentdb::StreamAclBuilder::new()
                .add_read_roles("admin")
                .build(),
        ))
        .build();
    h.client
        .set_stream_metadata("trim", &Default::default(), &acl_only)
        .await
        .unwrap();
    assert!(h.store().retention().is_empty());
    assert_eq!(read_all_of(&h.client, "trim").await.len(), 6);
    // Compaction removes what the metadata expires, and the proofs hold: verify
    // explains the removal by the policy, and revisions stay what they were.
    h.client
        .set_stream_metadata("trim", &Default::default(), &two)
        .await
        .unwrap();
    let store = h.store.clone().unwrap();
    let report = store.run(|s| s.compact()).await.unwrap();
    assert_eq!(report.events_removed, 4);
    let verified = store.run(|s| s.verify()).await.unwrap();
    assert!(verified.body.is_clean(), "{:?}", verified.body.findings);
    h.client
        .set_stream_metadata("trim", &Default::default(), &acl_only)
        .await
        .unwrap();
    assert_eq!(revisions(read_all_of(&h.client, "trim").await), [4, 5]);
    drop(store);
    // Bad metadata is refused by key, and nothing is written.
    let before = h.store().entity_version("$$trim");
    let bad = EventData::json("$metadata", &json!({ "$maxCount": -1 })).unwrap();
    let err = h
        .client
        .append_to_stream("$$trim", &Default::default(), vec![bad])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("$maxCount"), "{err:?}");
    assert_eq!(h.store().entity_version("$$trim"), before);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_catches_up_and_goes_live_with_appends_racing_it() {
    let h = Harness::start().await;
    let prefix = format!("race-{}", uuid::Uuid::new_v4().simple());
    for s in 0..3 {
        let events: Vec<EventData> = (0..100).map(order).collect();
        h.client
            .append_to_stream(format!("{prefix}-{s}"), &Default::default(), events)
            .await
            .unwrap();
    }
    // Noise outside the filter.
    h.client
        .append_to_stream("other", &Default::default(), vec![order(0)])
        .await
        .unwrap();
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(SubscriptionFilter::on_stream_name().add_prefix(&prefix));
    let mut sub = h.client.subscribe_to_all(&options).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let client = h.client.clone();
            let stream = format!("{prefix}-live-{w}");
            tokio::spawn(async move {
                for n in 0..100 {
                    client
                        .append_to_stream(stream.as_str(), &Default::default(), vec![order(n)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut last = 0u64;
    let mut caught_up = false;
    let collected = tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < 700 {
            match sub.next_subscription_event().await.unwrap() {
                SubscriptionEvent::EventAppeared(e) => {
                    let e = e.get_original_event();
                    assert!(e.stream_id().starts_with(&prefix), "{}", e.stream_id());
                    assert!(e.position.commit > last, "out of order or repeated");
                    last = e.position.commit;
                    assert!(
                        seen.insert((e.stream_id().to_string(), e.revision)),
                        "duplicate"
                    );
                }
                SubscriptionEvent::CaughtUp(_) => caught_up = true,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        collected.is_ok(),
        "only {} of 700 events arrived",
        seen.len()
    );
    for w in writers {
        w.await.unwrap();
    }
    assert!(caught_up, "the subscription never said it caught up");
    for s in 0..3 {
        for r in 0..100 {
            assert!(seen.contains(&(format!("{prefix}-{s}"), r)));
        }
    }
    for w in 0..4 {
        for r in 0..100 {
            assert!(seen.contains(&(format!("{prefix}-live-{w}"), r)), "gap");
        }
    }
    drop(sub);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_take_prefixes_and_regexes_with_lookahead_and_checkpoint() {
    let h = Harness::start().await;
    let u = uuid::Uuid::new_v4().simple().to_string();
    let events = vec![
        EventData::json(format!("{u}-keep-a"), &json!({})).unwrap(),
        EventData::json(format!("{u}-skip-a"), &json!({})).unwrap(),
        EventData::json(format!("{u}-keep-b"), &json!({})).unwrap(),
    ];
    h.client
        .append_to_stream("filtered", &Default::default(), events)
        .await
        .unwrap();
    let filter = SubscriptionFilter::on_event_type().regex(format!("^{u}-(?!skip)"));
    let mut read = h
        .client
        .read_all(&ReadAllOptions::default().filter(filter.clone()))
        .await
        .unwrap();
    let mut types = Vec::new();
    while let Some(e) = read.next().await.unwrap() {
        types.push(e.get_original_event().event_type.clone());
    }
    assert_eq!(types, vec![format!("{u}-keep-a"), format!("{u}-keep-b")]);

    // A filtered subscription reports checkpoints as it scans past other events.
    let mut sub = h
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(filter.max(1)),
        )
        .await;
    let checkpoint = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SubscriptionEvent::Checkpoint(p) = sub.next_subscription_event().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .expect("a checkpoint");
    assert!(checkpoint.commit > 0);
    drop(sub);

    // A regex that is not one is refused, naming it.
    let bad = SubscriptionFilter::on_event_type().regex("(unclosed");
    let Err(err) = h
        .client
        .read_all(&ReadAllOptions::default().filter(bad))
        .await
    else {
        panic!("a regex that does not compile was taken");
    };
    assert!(format!("{err}").contains("(unclosed"), "{err}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_the_passwords_of_basic_credentials() {
    let mut tokens = TokensFile::default();
    let writer = tokens
        .add(
            "alice",
            vec![Grant {
                scope: "*".into(),
                prefix: String::new(),
                permissions: vec![Permission::Read, Permission::Append],
            }],
        )
        .unwrap();
    let reader = tokens
        .add(
            "bob",
            vec![Grant {
                scope: "*".into(),
                prefix: String::new(),
                permissions: vec![Permission::Read],
            }],
        )
        .unwrap();
    let scoped = tokens
        .add(
            "carol",
            vec![Grant {
                scope: "web".into(),
                prefix: String::new(),
                permissions: vec![Permission::Read, Permission::Append],
            }],
        )
        .unwrap();
    let meta_only = tokens
        .add(
            "dave",
            vec![Grant {
                scope: "*".into(),
                prefix: "$$guarded".into(),
                permissions: vec![Permission::Read, Permission::Append],
            }],
        )
        .unwrap();
    let h = Harness::start_with(move |b| b.tokens(tokens), "").await;
    let anonymous = h
        .client
        .append_to_stream("guarded", &Default::default(), vec![order(1)])
        .await;
    assert!(
        matches!(anonymous, Err(kurrentdb::Error::AccessDenied)),
        "{anonymous:?}"
    );
    let alice = client(
        h.port,
        &format!("esdb://alice:{writer}@127.0.0.1:PORT?tls=false&defaultDeadline=20000"),
    );
    alice
        .append_to_stream("guarded", &Default::default(), vec![order(1)])
        .await
        .unwrap();
    let stored = h.store().stream("guarded").unwrap();
    assert_eq!(
        stored[0].metadata.get(batpak_server::PRINCIPAL_KEY),
        Some("alice")
    );
    // Metadata can expire a stream's events, so writing it takes the right to
    // write that stream, not only its `$$` stream.
    let limit = kurrentdb::StreamMetadataBuilder::new().max_count(1).build();
    let dave = client(
        h.port,
        &format!("esdb://dave:{meta_only}@127.0.0.1:PORT?tls=false&defaultDeadline=20000"),
    );
    let denied = dave
        .set_stream_metadata("guarded", &Default::default(), &limit)
        .await;
    assert!(
        matches!(denied, Err(kurrentdb::Error::AccessDenied)),
        "{denied:?}"
    );
    assert!(h.store().retention().is_empty());
    alice
        .set_stream_metadata("guarded", &Default::default(), &limit)
        .await
        .unwrap();
    assert_eq!(h.store().retention().len(), 1);
    let bob = client(
        h.port,
        &format!("esdb://bob:{reader}@127.0.0.1:PORT?tls=false&defaultDeadline=20000"),
    );
    let denied = bob
        .append_to_stream("guarded", &Default::default(), vec![order(2)])
        .await;
    assert!(
        matches!(denied, Err(kurrentdb::Error::AccessDenied)),
        "{denied:?}"
    );
    assert_eq!(read_all_of(&bob, "guarded").await.len(), 1);
    // Grants apply by each event's scope: carol reads what was appended in "web"
    // (over HTTP) and nothing of the KurrentDB scope, and not $all.
    let url = format!("http://{}/v1/events", h.http);
    let token = scoped.clone();
    tokio::task::spawn_blocking(move || {
        ureq::Agent::new_with_defaults()
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(json!({"entity": "web-1", "scope": "web", "kind": "2:1", "payload": {}}))
    })
    .await
    .unwrap()
    .unwrap();
    let carol = client(
        h.port,
        &format!("esdb://carol:{scoped}@127.0.0.1:PORT?tls=false&defaultDeadline=20000"),
    );
    assert_eq!(read_all_of(&carol, "web-1").await.len(), 1);
    let mut other = carol
        .read_stream("guarded", &Default::default())
        .await
        .unwrap();
    assert!(matches!(
        other.next().await,
        Err(kurrentdb::Error::AccessDenied)
    ));
    let all = carol.read_all(&Default::default()).await;
    assert!(matches!(all, Err(kurrentdb::Error::AccessDenied)));
    // Another principal's name with alice's token is refused.
    let mallory = client(
        h.port,
        &format!("esdb://bob:{writer}@127.0.0.1:PORT?tls=false&defaultDeadline=20000"),
    );
    let refused = mallory
        .append_to_stream("guarded", &Default::default(), vec![order(3)])
        .await;
    assert!(
        matches!(refused, Err(kurrentdb::Error::AccessDenied)),
        "{refused:?}"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_a_version_and_features_clients_accept() {
    let h = Harness::start().await;
    let info = h.client.server_info().await.unwrap();
    assert!(info.version() >= (23, 10), "{}", info.version());
    // Batch appends are advertised: the client opens a session only when they are.
    let batch = h.client.batch_append(&Default::default()).await.unwrap();
    let written = batch
        .append_to_stream("batched", StreamState::NoStream, vec![order(1), order(2)])
        .await
        .unwrap();
    assert_eq!(written.current_revision(), Some(1));
    assert_eq!(written.stream_name(), "batched");
    let conflict = batch
        .append_to_stream("batched", StreamState::NoStream, vec![order(3)])
        .await
        .unwrap_err();
    assert!(
        format!("{conflict}").contains("WrongExpectedVersion"),
        "{conflict}"
    );
    drop(batch);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_over_http_are_read_by_kurrentdb_clients() {
    let h = Harness::start().await;
    let url = format!("http://{}/v1/events", h.http);
    let body = json!({
        "entity": "from-http",
        "scope": "web",
        "kind": "3:7",
        "payload": {"hello": "world"},
        "metadata": {"source": "form"}
    });
    let agent = ureq::Agent::new_with_defaults();
    let answer = tokio::task::spawn_blocking(move || agent.post(&url).send_json(&body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 201);
    let resolved = read_all_of(&h.client, "from-http").await;
    let events = originals(&resolved);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "3:7");
    assert!(events[0].is_json);
    assert_eq!(&events[0].data[..], br#"{"hello":"world"}"#);
    assert_eq!(&events[0].custom_metadata[..], br#"{"source":"form"}"#);
    // A kind named after the listener started is the kind of that type.
    let shipped = batpak::EventKind::custom(3, 8);
    h.store().name_kind(shipped, "order-shipped").unwrap();
    h.client
        .append_to_stream(
            "from-http",
            &Default::default(),
            vec![EventData::json("order-shipped", &json!({})).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(h.store().stream("from-http").unwrap()[1].kind, shipped);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_protocol_with_the_servers_certificate() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let tls = batpak_server::TlsConfig::from_pem(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let h = Harness::start_with(
        move |b| b.tls(tls),
        "esdb://127.0.0.1:PORT?tls=true&tlsVerifyCert=false&defaultDeadline=20000",
    )
    .await;
    h.client
        .append_to_stream("secure", &Default::default(), vec![order(1)])
        .await
        .unwrap();
    assert_eq!(read_all_of(&h.client, "secure").await.len(), 1);
    h.finish().await;
}
