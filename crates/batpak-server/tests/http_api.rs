//! Every endpoint against a real server on a loopback port: status, body, and what the
//! store holds afterwards; bad input for each, with a clear error and nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use batpak::{Coordinate, EventKind, Store};
use batpak_server::Limits;
use serde_json::{json, Value};
use support::{start, store, Client};

fn events_in(c: &Client) -> u64 {
    c.get("/v1/stats").body["events"].as_u64().unwrap()
}

#[test]
fn an_append_returns_a_receipt_that_verifies_and_the_event_reads_back() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let a = c.post(
        "/v1/events",
        &json!({
            "entity": "order-1", "scope": "orders", "kind": "1:1",
            "payload": {"total": 12.5, "items": ["a", "b"]},
            "metadata": {"trace": "t-1"},
        }),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"));
    let receipt = a.body["receipt"].clone();
    assert_eq!(receipt["sequence"], 1);
    assert_eq!(receipt["version"], 0);
    assert_eq!(receipt["kind"], "1:1");
    assert_eq!(a.body["receipt_bytes"].as_str().unwrap().len() % 2, 0);

    let id = receipt["event_id"].as_str().unwrap();
    let got = c.get(&format!("/v1/events/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body["entity"], "order-1");
    assert_eq!(got.body["scope"], "orders");
    assert_eq!(
        got.body["payload"],
        json!({"total": 12.5, "items": ["a", "b"]})
    );
    assert_eq!(got.body["metadata"], json!({"trace": "t-1"}));
    assert_eq!(got.body["event_hash"], receipt["event_hash"]);
    assert_eq!(got.body["encoding"], "json");

    let by_seq = c.get("/v1/sequences/1");
    assert_eq!(by_seq.status, 200);
    assert_eq!(by_seq.body["id"], id);

    // The store issues the same receipt again on request.
    let again = c.get(&format!("/v1/events/{id}/receipt"));
    assert_eq!(again.status, 200);
    assert_eq!(again.body, receipt);
    assert_eq!(
        c.get("/v1/events/01a23be4-b66c-71a5-a41f-16de4834d2e0/receipt")
            .status,
        404
    );

    let verdict = c.post("/v1/receipts/verify", &receipt);
    assert_eq!(verdict.status, 200, "{}", verdict.body);
    assert_eq!(verdict.body["holds"], true);
    assert_eq!(verdict.body["verdict"], "unsigned");

    // A receipt with one field changed does not hold, and says which field.
    let mut forged = receipt.clone();
    forged["version"] = json!(7);
    let verdict = c.post("/v1/receipts/verify", &forged);
    assert_eq!(verdict.body["holds"], false);
    assert_eq!(verdict.body["verdict"], "mismatch");
    assert_eq!(verdict.body["field"], "version");

    let dir = server.dir.clone();
    server.stop().unwrap();
    // The server closed the store: it opens again and holds the event.
    let store = Store::open(&dir).unwrap();
    let held = store.stream("order-1").unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id.to_string(), id);
}

#[test]
fn payload_bytes_round_trip_exactly_in_every_encoding() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let b64 = base64::engine::general_purpose::STANDARD;
    let opaque = [0u8, 255, 1, 2, 3, 10, 13];
    let msgpack = rmp_serde::to_vec_named(&json!({"x": 1})).unwrap();
    for (encoding, bytes) in [("opaque", opaque.to_vec()), ("message_pack", msgpack)] {
        let a = c.post(
            "/v1/events",
            &json!({"entity": "blob", "scope": "s", "kind": "2:1",
                    "bytes": b64.encode(&bytes), "encoding": encoding}),
        );
        assert_eq!(a.status, 201, "{}", a.body);
        let id = a.body["receipt"]["event_id"].as_str().unwrap().to_string();
        let got = c.get(&format!("/v1/events/{id}"));
        assert_eq!(got.body["encoding"], encoding);
        assert_eq!(
            b64.decode(got.body["bytes"].as_str().unwrap()).unwrap(),
            bytes
        );
    }
    let got = c.get("/v1/sequences/2");
    assert_eq!(
        got.body["payload"],
        json!({"x": 1}),
        "a JSON view of MessagePack"
    );
}

#[test]
fn a_batch_is_atomic_and_links_causes_by_item() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let a = c.post(
        "/v1/batches",
        &json!({"events": [
            {"entity": "order-1", "scope": "orders", "kind": "1:1", "payload": {"n": 1}},
            {"entity": "payment-1", "scope": "payments", "kind": "1:2", "payload": {"n": 2},
             "causation": {"batch_item": 0}},
            {"entity": "order-1", "scope": "orders", "kind": "1:3", "payload": {"n": 3},
             "expected_version": 0},
        ]}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let receipts = a.body["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3);
    let first = receipts[0]["receipt"]["event_id"].as_str().unwrap();
    let second = receipts[1]["receipt"]["event_id"].as_str().unwrap();
    assert_eq!(
        c.get(&format!("/v1/events/{second}")).body["causation"],
        first
    );

    // One item that cannot be written: none is.
    let before = events_in(&c);
    let a = c.post(
        "/v1/batches",
        &json!({"events": [
            {"entity": "order-2", "scope": "orders", "kind": "1:1", "payload": {}},
            {"entity": "order-1", "scope": "orders", "kind": "1:3", "payload": {},
             "expected_version": 0},
        ]}),
    );
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.code(), "version_conflict");
    assert_eq!(a.body["error"]["details"]["expected"], 0);
    assert_eq!(a.body["error"]["details"]["actual"], 1);
    assert_eq!(events_in(&c), before);
    assert_eq!(
        c.get("/v1/entities/order-2/events").body["events"],
        json!([])
    );

    // A field error names the item.
    let a = c.post(
        "/v1/batches",
        &json!({"events": [
            {"entity": "order-2", "scope": "orders", "kind": "1:1", "payload": {}},
            {"entity": "", "scope": "orders", "kind": "1:1", "payload": {}},
        ]}),
    );
    assert_eq!(a.status, 400);
    assert_eq!(a.field(), "events[1].entity", "{}", a.body);
    let a = c.post("/v1/batches", &json!({"events": []}));
    assert_eq!((a.status, a.code()), (400, "empty_batch"));
    assert_eq!(events_in(&c), before);
}

#[test]
fn every_bad_append_is_a_clear_error_that_writes_nothing() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let seed = c.append("order-1", "orders", "1:1", json!({}));
    let seed_id = seed["event_id"].as_str().unwrap();
    let ok = json!({"entity": "order-1", "scope": "orders", "kind": "1:1", "payload": {}});
    let with = |key: &str, value: Value| {
        let mut v = ok.clone();
        v[key] = value;
        v
    };
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("malformed JSON", "{\"entity\": ".into(), 400, "malformed_json", ""),
        ("trailing bytes", format!("{ok} x"), 400, "malformed_json", ""),
        ("wrong type", with("entity", json!(5)).to_string(), 400, "invalid_field", "entity"),
        ("unknown field", with("colour", json!("red")).to_string(), 400, "invalid_field", "colour"),
        ("missing field", json!({"entity": "e", "kind": "1:1", "payload": {}}).to_string(), 400, "invalid_field", "scope"),
        ("not an object", "[1, 2]".into(), 400, "invalid_field", "body"),
        ("bad kind", with("kind", json!("one")).to_string(), 400, "invalid_field", "kind"),
        ("kind out of range", with("kind", json!("1:99999")).to_string(), 400, "invalid_field", "kind"),
        ("reserved kind", with("kind", json!("0:5")).to_string(), 400, "reserved_kind", "kind"),
        ("empty entity", with("entity", json!("")).to_string(), 400, "invalid_coordinate", "entity"),
        ("reserved entity", with("entity", json!("batpak:x")).to_string(), 400, "invalid_coordinate", "entity"),
        ("control character in scope", with("scope", json!("a\u{1}b")).to_string(), 400, "invalid_coordinate", "scope"),
        ("no payload", json!({"entity": "e", "scope": "s", "kind": "1:1"}).to_string(), 400, "invalid_field", "payload"),
        ("payload and bytes", with("bytes", json!("AA==")).to_string(), 400, "invalid_field", "bytes"),
        ("bad base64", json!({"entity": "e", "scope": "s", "kind": "1:1", "bytes": "***"}).to_string(), 400, "invalid_field", "bytes"),
        ("JSON encoding of bytes that are not JSON", json!({"entity": "e", "scope": "s", "kind": "1:1", "bytes": "/w==", "encoding": "json"}).to_string(), 400, "invalid_field", "bytes"),
        ("payload with another encoding", with("encoding", json!("opaque")).to_string(), 400, "invalid_field", "encoding"),
        ("unknown encoding", with("encoding", json!("yaml")).to_string(), 400, "invalid_field", "encoding"),
        ("bad expected version", with("expected_version", json!("some")).to_string(), 400, "invalid_field", "expected_version"),
        ("negative expected version", with("expected_version", json!(-1)).to_string(), 400, "invalid_field", "expected_version"),
        ("malformed causation", with("causation", json!("nope")).to_string(), 400, "invalid_field", "causation"),
        ("unknown causation", with("causation", json!("01a23be4-b66c-71a5-a41f-16de4834d2e0")).to_string(), 400, "unknown_causation", "causation"),
        ("batch item in a single append", with("causation", json!({"batch_item": 0})).to_string(), 400, "invalid_field", "causation"),
        ("malformed correlation", with("correlation", json!(seed_id.replace('-', "x"))).to_string(), 400, "invalid_field", "correlation"),
        ("principal in metadata", with("metadata", json!({"batpak.principal": "root"})).to_string(), 400, "invalid_field", "metadata"),
        ("control character in metadata", with("metadata", json!({"k": "a\u{7}"})).to_string(), 400, "invalid_metadata", "metadata"),
        ("metadata value not text", with("metadata", json!({"k": 1})).to_string(), 400, "invalid_field", "metadata.k"),
        ("version conflict", with("expected_version", json!("no_stream")).to_string(), 409, "version_conflict", ""),
        ("no stream to exist", json!({"entity": "order-2", "scope": "orders", "kind": "1:1", "payload": {}, "expected_version": "stream_exists"}).to_string(), 409, "version_conflict", ""),
    ];
    for (what, body, status, code, field) in cases {
        let a = c.post_text("/v1/events", &body);
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert_eq!(a.code(), code, "{what}: {}", a.body);
        if !field.is_empty() {
            assert_eq!(a.field(), field, "{what}: {}", a.body);
        }
        assert!(
            a.body["error"]["message"].as_str().unwrap().len() > 10,
            "{what}: a message that says what was wrong"
        );
        assert_eq!(events_in(&c), 1, "{what} wrote something");
    }
}

#[test]
fn stream_exists_appends_to_an_entity_with_events() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    c.append("order-1", "orders", "1:1", json!({}));
    let body = json!({"entity": "order-1", "scope": "orders", "kind": "1:1", "payload": {},
                      "expected_version": "stream_exists"});
    let a = c.post("/v1/events", &body);
    assert!(a.status == 200 || a.status == 201, "{}", a.body);
    assert_eq!(a.body["receipt"]["version"], 1, "{}", a.body);
}

#[test]
fn idempotency_keys_return_the_first_receipt_and_refuse_other_content() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let body = json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {"n": 1},
                      "idempotency_key": "k-1"});
    let first = c.post("/v1/events", &body);
    let again = c.post("/v1/events", &body);
    assert_eq!(first.status, 201);
    assert_eq!(again.status, 201);
    assert_eq!(first.body["receipt"], again.body["receipt"]);
    let mut other = body.clone();
    other["payload"] = json!({"n": 2});
    let refused = c.post("/v1/events", &other);
    assert_eq!(refused.status, 409);
    assert_eq!(refused.code(), "idempotency_conflict");
    assert_eq!(
        refused.body["error"]["details"]["original"],
        first.body["receipt"]["event_id"]
    );
    assert_eq!(events_in(&c), 1);
}

#[test]
fn bodies_and_batches_over_the_limits_are_413_and_write_nothing() {
    let (_dir, store) = store();
    let mut limits = Limits::default();
    limits.max_body_bytes = 4096;
    limits.max_batch = 3;
    let server = start(store, move |b| b.limits(limits));
    let c = server.client();
    let big = json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": "x".repeat(8000)});
    let a = c.post("/v1/events", &big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.code(), "body_too_large");
    let item = json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {}});
    let a = c.post("/v1/batches", &json!({"events": [item, item, item, item]}));
    assert_eq!(a.status, 413);
    assert_eq!(a.code(), "batch_too_large");
    assert_eq!(a.body["error"]["details"]["limit"], 3);
    assert_eq!(events_in(&c), 0);
}

#[test]
fn an_entity_pages_forwards_and_backwards_with_tokens() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    for i in 0..25 {
        c.append("order-1", "orders", "1:1", json!({"i": i}));
        c.append("other", "orders", "1:1", json!({"i": i}));
    }
    let versions = |page: &Value| -> Vec<u64> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    let mut seen = Vec::new();
    let mut path = "/v1/entities/order-1/events?limit=10".to_string();
    loop {
        let page = c.get(&path);
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(versions(&page.body));
        match page.body["next"].as_str() {
            Some(t) => path = format!("/v1/entities/order-1/events?limit=10&page={t}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..25).collect::<Vec<_>>());

    let back = c.get("/v1/entities/order-1/events?direction=backward&limit=4");
    assert_eq!(versions(&back.body), [24, 23, 22, 21]);
    let token = back.body["next"].as_str().unwrap();
    let more = c.get(&format!(
        "/v1/entities/order-1/events?direction=backward&limit=4&page={token}"
    ));
    assert_eq!(versions(&more.body), [20, 19, 18, 17]);

    let from = c.get("/v1/entities/order-1/events?from_version=20");
    assert_eq!(versions(&from.body), [20, 21, 22, 23, 24]);
    assert!(from.body.get("next").is_none());
    let from = c.get("/v1/entities/order-1/events?from_version=2&direction=backward");
    assert_eq!(versions(&from.body), [2, 1, 0]);

    // A token is bound to its region and direction, and checked.
    let a = c.get(&format!("/v1/entities/other/events?page={token}"));
    assert_eq!((a.status, a.field()), (400, "page"), "{}", a.body);
    let a = c.get(&format!(
        "/v1/entities/order-1/events?direction=backward&limit=5&page={token}x"
    ));
    assert_eq!((a.status, a.field()), (400, "page"));
    let a = c.get(&format!("/v1/entities/order-1/events?limit=4&page={token}"));
    assert_eq!((a.status, a.field()), (400, "page"), "the other direction");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=ten", "limit"),
        ("direction=sideways", "direction"),
        ("from_version=-1", "from_version"),
        ("limit=1&limit=2", "limit"),
        ("before=3", "before"),
    ] {
        let a = c.get(&format!("/v1/entities/order-1/events?{query}"));
        assert_eq!((a.status, a.field()), (400, field), "{query}: {}", a.body);
    }
    // An entity name with a slash, percent-encoded in the path.
    c.append("a/b", "orders", "1:1", json!({}));
    let a = c.get("/v1/entities/a%2Fb/events");
    assert_eq!(a.body["events"][0]["entity"], "a/b");
}

#[test]
fn a_region_query_selects_by_scope_prefix_kind_and_time() {
    let (_dir, store) = store();
    store.name_kind(EventKind::custom(1, 2), "Paid").unwrap();
    let server = start(store, |b| b);
    let c = server.client();
    let first = c.append("order:1", "orders", "1:1", json!({}));
    let paid = c.append("payment:1", "payments", "1:2", json!({}));
    c.append("order:2", "orders", "1:2", json!({}));
    let entities = |q: &str| -> Vec<String> {
        let a = c.get(&format!("/v1/events?{q}"));
        assert_eq!(a.status, 200, "{q}: {}", a.body);
        a.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["entity"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(entities("scope=orders"), ["order:1", "order:2"]);
    assert_eq!(entities("prefix=order"), ["order:1", "order:2"]);
    assert_eq!(entities("kind=1:2"), ["payment:1", "order:2"]);
    assert_eq!(entities("kind=Paid"), ["payment:1", "order:2"]);
    assert_eq!(entities("category=1&scope=payments"), ["payment:1"]);
    // The kind name is the store's own record at sequence 1.
    assert_eq!(first["sequence"], 2);
    assert_eq!(entities("after=2&limit=1"), ["payment:1"]);
    assert_eq!(
        entities("direction=backward&limit=2"),
        ["order:2", "payment:1"]
    );
    let paid_ns = paid["timestamp_ns"].as_u64().unwrap();
    assert_eq!(
        entities(&format!("since={paid_ns}&until={}", paid_ns + 1)),
        ["payment:1"]
    );
    assert_eq!(entities("since=2000-01-01T00:00:00Z").len(), 3);
    assert_eq!(entities("until=2000-01-01T00:00:00Z").len(), 0);
    assert_eq!(
        c.get("/v1/events?kind=Paid").body["events"][0]["kind_name"],
        "Paid"
    );
    for (query, field) in [
        ("kind=Nope", "kind"),
        ("kind=1:x", "kind"),
        ("category=300", "category"),
        ("since=yesterday", "since"),
        ("since=5&until=4", "until"),
        ("colour=red", "colour"),
    ] {
        let a = c.get(&format!("/v1/events?{query}"));
        assert_eq!((a.status, a.field()), (400, field), "{query}: {}", a.body);
    }
    let count = c.get("/v1/count?scope=orders");
    assert_eq!(count.body["count"], 2);
}

#[test]
fn unknown_ids_are_404_and_malformed_ones_400() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    c.append("e", "s", "1:1", json!({}));
    let unknown = "01a23be4-b66c-71a5-a41f-16de4834d2e0";
    for path in [
        format!("/v1/events/{unknown}"),
        format!("/v1/events/{unknown}/ancestors"),
        format!("/v1/events/{unknown}/causes"),
        format!("/v1/events/{unknown}/effects"),
        format!("/v1/events/{unknown}/graph"),
        "/v1/sequences/99".to_string(),
        "/v1/verify/5".to_string(),
    ] {
        let a = c.get(&path);
        assert_eq!(
            (a.status, a.code()),
            (404, "not_found"),
            "{path}: {}",
            a.body
        );
    }
    for path in [
        "/v1/events/xyz",
        "/v1/events/xyz/graph",
        "/v1/correlations/12",
        "/v1/sequences/-1",
        "/v1/verify/first",
    ] {
        let a = c.get(path);
        assert_eq!(a.status, 400, "{path}: {}", a.body);
    }
    let a = c.get("/v2/events");
    assert_eq!((a.status, a.code()), (404, "not_found"));
    let a = c.method("DELETE", "/v1/events");
    assert_eq!((a.status, a.code()), (405, "method_not_allowed"));
    let a = c.method("PUT", "/v1/stats");
    assert_eq!(a.status, 405);
}

#[test]
fn walks_causes_effects_correlation_and_the_causal_graph() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let placed = c.append("order-1", "orders", "1:1", json!({}));
    let placed_id = placed["event_id"].as_str().unwrap().to_string();
    let a = c.post(
        "/v1/events",
        &json!({"entity": "payment-1", "scope": "payments", "kind": "1:2", "payload": {},
                "causation": placed_id, "correlation": placed_id}),
    );
    let paid_id = a.body["receipt"]["event_id"].as_str().unwrap().to_string();
    let a = c.post(
        "/v1/events",
        &json!({"entity": "order-1", "scope": "orders", "kind": "1:3", "payload": {},
                "causation": paid_id, "correlation": placed_id}),
    );
    let shipped_id = a.body["receipt"]["event_id"].as_str().unwrap().to_string();

    let walk = c.get(&format!("/v1/events/{shipped_id}/ancestors"));
    assert_eq!(walk.status, 200, "{}", walk.body);
    assert_eq!(walk.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(walk.body["reached_first"], true);
    assert_eq!(walk.body["broken"], Value::Null);

    let causes = c.get(&format!("/v1/events/{shipped_id}/causes"));
    let ids: Vec<&str> = causes.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [paid_id.as_str(), placed_id.as_str()]);

    let effects = c.get(&format!("/v1/events/{placed_id}/effects"));
    assert_eq!(effects.body["events"][0]["id"], paid_id);

    let group = c.get(&format!("/v1/correlations/{placed_id}"));
    assert_eq!(group.body["events"].as_array().unwrap().len(), 2);

    let graph = c.get(&format!("/v1/events/{placed_id}/graph?depth=3"));
    assert_eq!(graph.status, 200, "{}", graph.body);
    assert_eq!(graph.body["root"], placed_id);
    assert_eq!(graph.body["nodes"].as_array().unwrap().len(), 3);
    let edges = graph.body["edges"].as_array().unwrap();
    assert_eq!(
        edges.len(),
        3,
        "{edges:?}: placed->paid, paid->shipped (causation), placed->shipped (chain)"
    );
    let a = c.get(&format!("/v1/events/{placed_id}/graph?depth=100"));
    assert_eq!((a.status, a.field()), (400, "depth"));
}

#[test]
fn the_catalogue_lists_entities_scopes_kinds_stats_and_the_frontier() {
    let (_dir, store) = store();
    store.name_kind(EventKind::custom(1, 1), "Placed").unwrap();
    let server = start(store, |b| b);
    let c = server.client();
    for i in 0..5 {
        c.append(&format!("order:{i}"), "orders", "1:1", json!({}));
    }
    c.append("payment-1", "payments", "1:2", json!({}));
    let a = c.get("/v1/entities?prefix=order&limit=3");
    let names: Vec<&str> = a.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order:0", "order:1", "order:2"]);
    assert_eq!(a.body["next_after"], "order:2");
    let a = c.get("/v1/entities?prefix=order&after=order:2");
    assert_eq!(a.body["entities"].as_array().unwrap().len(), 2);
    assert_eq!(a.body["next_after"], Value::Null);
    let scopes = c.get("/v1/scopes");
    assert_eq!(scopes.body["scopes"].as_array().unwrap().len(), 2);
    let kinds = c.get("/v1/kinds");
    let placed = kinds.body["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "1:1")
        .unwrap()
        .clone();
    assert_eq!(placed["name"], "Placed", "{placed}");
    // The counts include the store's own record of the kind name.
    let stats = c.get("/v1/stats");
    assert_eq!(stats.body["events"], 7);
    assert_eq!(stats.body["entities"], 7);
    let frontier = c.get("/v1/frontier");
    assert_eq!(frontier.body["visible"], 7);
    assert_eq!(frontier.body["durable"], 7);
}

#[test]
fn anchors_verify_and_a_verify_job_reports_progress_and_findings() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    for i in 0..50 {
        c.append("e", "s", "1:1", json!({"i": i}));
    }
    let anchor = c.post_empty("/v1/anchors");
    assert_eq!(anchor.status, 201, "{}", anchor.body);
    assert_eq!(anchor.body["sequence"], 50);
    c.append("e", "s", "1:1", json!({"later": true}));
    let verdict = c.post("/v1/anchors/verify", &anchor.body);
    assert_eq!(verdict.body["holds"], true, "{}", verdict.body);
    let mut forged = anchor.body.clone();
    forged["sequence"] = json!(49);
    let verdict = c.post("/v1/anchors/verify", &forged);
    assert_eq!(verdict.body["holds"], false);
    assert_eq!(verdict.body["verdict"], "rewritten");
    let a = c.post("/v1/anchors/verify", &json!({"sequence": "x"}));
    assert_eq!(a.status, 400);

    let job = c.post_empty("/v1/verify");
    assert_eq!(job.status, 202, "{}", job.body);
    let href = job.body["href"].as_str().unwrap().to_string();
    let report = loop {
        let a = c.get(&href);
        assert_eq!(a.status, 200);
        if a.body["state"] == "done" {
            break a.body;
        }
        assert_eq!(a.body["state"], "running");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(report["bytes_total"].as_u64().unwrap() > 0);
    assert_eq!(report["bytes_done"], report["bytes_total"]);
    assert_eq!(report["report"]["body"]["findings"], json!([]));
    assert_eq!(report["report"]["body"]["events"], 51);
}

#[test]
fn health_readiness_metrics_and_the_request_log() {
    let (_dir, store) = store();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&lines);
    let server = start(store, move |b| {
        b.request_log(move |line| sink.lock().unwrap().push(line.to_string()))
    });
    let c = server.client();
    assert_eq!(c.get("/healthz").body["status"], "ok");
    assert_eq!(c.get("/readyz").body["status"], "ready");
    c.append("e", "s", "1:1", json!({"n": 1}));
    c.post("/v1/events", &json!({"entity": ""}));
    let m = c.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.content_type.starts_with("text/plain"));
    let text = m.body.as_str().unwrap();
    for needle in [
        "batpak_appends_total 1",
        "batpak_append_duration_seconds_count 1",
        "batpak_fsync_duration_seconds_count",
        "batpak_streams_open 0",
        "batpak_visible_sequence 1",
        "batpak_http_requests_total{status=\"201\"} 1",
        "batpak_http_errors_total{code=\"invalid_field\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let fsyncs: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("batpak_fsync_duration_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fsyncs >= 1, "the durable append synced");
    let lines = lines.lock().unwrap();
    let append = lines
        .iter()
        .find(|l| l.starts_with("POST /v1/events 201"))
        .unwrap();
    assert!(append.contains("ms principal=-"), "{append}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("POST /v1/events 400") && l.contains("code=invalid_field")));
}

#[test]
fn a_read_only_server_refuses_appends_and_serves_reads() {
    let (dir, store) = store();
    store
        .append_raw(
            &Coordinate::new("e", "s").unwrap(),
            EventKind::custom(1, 1),
            batpak::RawPayload::json(b"{}"),
            batpak::AppendOptions::default(),
        )
        .unwrap();
    store.close().unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let server = start(store, |b| b.read_only(true));
    let c = server.client();
    let a = c.post(
        "/v1/events",
        &json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {}}),
    );
    assert_eq!((a.status, a.code()), (405, "read_only"), "{}", a.body);
    assert_eq!(c.get("/v1/sequences/1").status, 200);
    assert_eq!(c.get("/readyz").body["read_only"], true);
    server.stop().unwrap();
}

#[test]
fn graceful_shutdown_closes_the_store_with_a_checkpoint_and_releases_the_lock() {
    let (dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    for i in 0..10 {
        c.append("e", "s", "1:1", json!({"i": i}));
    }
    server.stop().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        matches!(
            store.open_report().index,
            batpak::IndexSource::Checkpoint { events: 10 }
        ),
        "a clean close writes the checkpoint: {:?}",
        store.open_report().index
    );
    assert_eq!(store.stream("e").unwrap().len(), 10);
}

/// Sends `head` then, after a pause that lets the server answer first, `body`, on one
/// connection; returns the answer's head (status line and headers), its body read.
fn slow_body_request(stream: &mut std::net::TcpStream, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    stream.write_all(body).unwrap_or_else(|e| {
        panic!("the server answered and closed the connection before reading the body: {e}")
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // One answer: the head, then a body of the content-length it gives.
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection without answering");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return text[..end].to_string();
            }
        }
    }
}

#[test]
fn a_body_the_handler_does_not_need_is_read_so_the_connection_stays_open() {
    // A POST whose handler takes no body (a cursor's next), or which is refused before
    // its body is looked at, must still have its body read: otherwise the server closes
    // a keep-alive connection whose body arrived after the answer, and the client's next
    // request on it fails.
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let a = c.post(
        "/v1/events",
        &json!({"entity": "e", "scope": "s", "kind": "1:1", "payload": {}}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let post = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n")
    };
    for (path, status) in [
        ("/v1/cursors/c/next?entity=e&max=5", "200"),
        ("/v1/cursors/c/next?entity=e&max=0", "400"),
        ("/v1/nowhere", "404"),
        ("/v1/cursors/c/next?entity=e&max=5", "200"),
    ] {
        let head = slow_body_request(&mut stream, &post(path), b"{}");
        assert!(head.contains(&format!(" {status} ")), "{path}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{path}: the server closed the connection: {head}"
        );
    }
}
