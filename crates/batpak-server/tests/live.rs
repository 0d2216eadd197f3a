//! Live streams and cursors over a real loopback connection: catch-up then live with
//! appends racing the subscribe, resume by `Last-Event-ID`, `lagged` for a slow
//! client, heartbeats, the stream limit, and cursors that resume after their commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use batpak::{AppendOptions, Coordinate, EventKind, RawPayload, Store};
use batpak_server::Limits;
use serde_json::json;
use support::{start, store};

fn append_n(store: &Store, entity: &str, n: usize) {
    let coord = Coordinate::new(entity, "s").unwrap();
    for i in 0..n {
        store
            .append_raw(
                &coord,
                EventKind::custom(1, 1),
                RawPayload::json(format!("{{\"i\":{i}}}").as_bytes()),
                AppendOptions::default(),
            )
            .unwrap();
    }
}

#[test]
fn a_stream_catches_up_then_goes_live_with_no_gap_and_no_duplicate_while_appends_race() {
    let (_dir, store) = store();
    append_n(&store, "e", 200);
    let server = start(store, |b| b);
    let c = server.client();
    let writer = {
        let c = c.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                c.append("e", "s", "1:1", json!({"live": i}));
                if i % 50 == 0 {
                    c.append("other", "t", "1:1", json!({}));
                }
            }
        })
    };
    let mut sse = c.stream("/v1/subscribe?entity=e&from=1", None);
    let mut seen = Vec::new();
    while seen.len() < 500 {
        let (event, body) = sse.next_json().expect("the stream ended early");
        assert_eq!(event.event, "event");
        let seq: u64 = event.id.unwrap().parse().unwrap();
        assert_eq!(body["sequence"], seq);
        assert_eq!(body["entity"], "e");
        seen.push(body["version"].as_u64().unwrap());
    }
    writer.join().unwrap();
    assert_eq!(
        seen,
        (0..500).collect::<Vec<_>>(),
        "every version once, in order"
    );
}

#[test]
fn last_event_id_resumes_after_a_dropped_connection() {
    let (_dir, store) = store();
    append_n(&store, "e", 10);
    let server = start(store, |b| b);
    let c = server.client();
    let mut sse = c.stream("/v1/subscribe?from=1", None);
    let mut last = 0;
    for _ in 0..4 {
        let e = sse.next().unwrap();
        last = e.id.unwrap().parse().unwrap();
    }
    assert_eq!(last, 4);
    drop(sse);
    c.append("e", "s", "1:1", json!({"after": "drop"}));
    let mut sse = c.stream("/v1/subscribe?from=1", Some(last));
    let ids: Vec<u64> = (0..7)
        .map(|_| sse.next().unwrap().id.unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (5..=11).collect::<Vec<_>>());
    // A Last-Event-ID that is not a sequence is refused.
    let a = c.get_with_header("/v1/subscribe", "Last-Event-ID", "abc");
    assert_eq!((a.status, a.field()), (400, "Last-Event-ID"), "{}", a.body);
}

#[test]
fn without_from_a_stream_sends_only_new_events() {
    let (_dir, store) = store();
    append_n(&store, "e", 5);
    let server = start(store, |b| b);
    let c = server.client();
    let mut sse = c.stream("/v1/subscribe", None);
    c.append("e", "s", "1:1", json!({"new": true}));
    let (e, body) = sse.next_json().unwrap();
    assert_eq!(e.id.as_deref(), Some("6"));
    assert_eq!(body["payload"], json!({"new": true}));
}

#[test]
fn a_slow_client_is_sent_lagged_with_where_to_resume_and_is_closed() {
    let (_dir, store) = store();
    let mut limits = Limits::default();
    limits.stream_lag_limit = 100;
    let server = start(store, move |b| b.limits(limits));
    let c = server.client();
    let mut sse = c.stream("/v1/subscribe?from=1", None);
    // The client reads nothing while far more than the socket buffers hold arrives.
    let big = "x".repeat(16 << 10);
    let appender = support::Client::new(&c.base, None);
    for _ in 0..4 {
        let items: Vec<_> = (0..500)
            .map(|_| json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {"pad": big}}))
            .collect();
        let a = appender.post("/v1/batches", &json!({ "events": items }));
        assert_eq!(a.status, 201);
    }
    let mut last = 0u64;
    let lagged = loop {
        let e = sse.next().expect("the stream ended without `lagged`");
        match e.event.as_str() {
            "event" => {
                let seq: u64 = e.id.unwrap().parse().unwrap();
                assert_eq!(seq, last + 1, "no gap before the lag");
                last = seq;
            }
            "lagged" => break serde_json::from_str::<serde_json::Value>(&e.data).unwrap(),
            other => panic!("unexpected event {other}"),
        }
    };
    assert!(last < 2000, "the client did lag ({last} delivered)");
    assert_eq!(lagged["resume_from"], last + 1);
    assert!(sse.next().is_none(), "the stream is closed after `lagged`");
    let metrics = c.get("/metrics");
    assert!(metrics
        .body
        .as_str()
        .unwrap()
        .contains("batpak_streams_lagged_total 1"));
    // Resuming where it said continues with no gap.
    let mut sse = c.stream(&format!("/v1/subscribe?from={}", last + 1), None);
    assert_eq!(sse.next().unwrap().id.unwrap(), (last + 1).to_string());
}

#[test]
fn a_quiet_stream_carries_heartbeats() {
    let (_dir, store) = store();
    let mut limits = Limits::default();
    limits.heartbeat = Duration::from_millis(100);
    let server = start(store, move |b| b.limits(limits));
    let c = server.client();
    let mut sse = c.stream("/v1/subscribe", None);
    std::thread::sleep(Duration::from_millis(350));
    c.append("e", "s", "1:1", json!({}));
    let e = sse.next().unwrap();
    assert!(
        e.comments.iter().filter(|c| *c == "heartbeat").count() >= 2,
        "{:?}",
        e.comments
    );
}

#[test]
fn streams_over_the_limit_are_refused_with_503() {
    let (_dir, store) = store();
    let mut limits = Limits::default();
    limits.max_streams = 2;
    let server = start(store, move |b| b.limits(limits));
    let c = server.client();
    let one = c.stream("/v1/subscribe", None);
    let _two = c.stream("/v1/subscribe", None);
    let a = c.get("/v1/subscribe");
    assert_eq!(
        (a.status, a.code()),
        (503, "too_many_streams"),
        "{}",
        a.body
    );
    drop(one);
    // The slot is free once the server notices the closed connection.
    let mut opened = false;
    for _ in 0..100 {
        c.append("e", "s", "1:1", json!({}));
        let a = c.get_with_header("/v1/subscribe", "X-Probe", "1");
        if a.status == 200 {
            opened = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(opened, "a closed stream frees its slot");
}

#[test]
fn a_stream_ends_when_the_server_shuts_down() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let mut sse = c.stream("/v1/subscribe", None);
    let stopper = std::thread::spawn(move || server.stop());
    assert!(sse.next().is_none(), "the stream ends");
    stopper.join().unwrap().unwrap();
}

#[test]
fn cursors_over_the_limit_are_refused_with_503() {
    let (_dir, store) = store();
    let mut limits = Limits::default();
    limits.max_cursors = 2;
    let server = start(store, move |b| b.limits(limits));
    let c = server.client();
    for name in ["one", "two"] {
        assert_eq!(
            c.post_empty(&format!("/v1/cursors/{name}/next")).status,
            200
        );
    }
    let a = c.post_empty("/v1/cursors/three/next");
    assert_eq!(
        (a.status, a.code()),
        (503, "too_many_cursors"),
        "{}",
        a.body
    );
    assert_eq!(
        c.post_empty("/v1/cursors/one/next").status,
        200,
        "open ones still answer"
    );
}

#[test]
fn a_cursor_delivers_batches_and_resumes_after_its_commit_across_a_restart() {
    let (dir, store) = store();
    append_n(&store, "e", 10);
    let server = start(store, |b| b);
    let c = server.client();
    let next = |c: &support::Client, q: &str| {
        let a = c.post_empty(&format!("/v1/cursors/billing/next?entity=e&{q}"));
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    };
    let versions = |b: &serde_json::Value| -> Vec<u64> {
        b["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    let first = next(&c, "max=4");
    assert_eq!(versions(&first), [0, 1, 2, 3]);
    let second = next(&c, "max=4");
    assert_eq!(versions(&second), [4, 5, 6, 7]);
    let passed = first["passed"].as_u64().unwrap();
    let a = c.post(
        "/v1/cursors/billing/commit?entity=e",
        &json!({"sequence": passed}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["committed"], passed);
    // Committing past what was delivered is refused.
    let a = c.post(
        "/v1/cursors/billing/commit?entity=e",
        &json!({"sequence": 999}),
    );
    assert_eq!((a.status, a.code()), (409, "invalid_commit"), "{}", a.body);
    // The same name over another region is refused.
    let a = c.post_empty("/v1/cursors/billing/next?entity=f");
    assert_eq!((a.status, a.code()), (409, "cursor_region_mismatch"));
    // A wait returns when an event arrives.
    let waiter = {
        let c = c.clone();
        std::thread::spawn(move || {
            let a = c.post_empty("/v1/cursors/late/next?entity=g&wait_ms=5000");
            a.body
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    c.append("g", "s", "1:1", json!({}));
    assert_eq!(versions(&waiter.join().unwrap()), [0]);
    let a = c.post_empty("/v1/cursors/billing/next?entity=e&wait_ms=999999");
    assert_eq!((a.status, a.field()), (400, "wait_ms"));
    let a = c.post_empty("/v1/cursors/billing/next?entity=e&max=0");
    assert_eq!((a.status, a.field()), (400, "max"));
    server.stop().unwrap();

    // After a restart the cursor resumes after the commit: at least once.
    let server = start(Store::open(dir.path()).unwrap(), |b| b);
    let c = server.client();
    assert_eq!(versions(&next(&c, "max=100")), [4, 5, 6, 7, 8, 9]);
}
