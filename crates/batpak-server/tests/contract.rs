//! The OpenAPI contract: generated from the code, checked into `docs/openapi.json`,
//! served at `/v1/openapi.json`, and describing the library's types exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::{start, store};

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn contract() -> Value {
    serde_json::from_str(&batpak_server::openapi_json()).unwrap()
}

#[test]
fn the_checked_in_contract_is_the_generated_one() {
    let generated = batpak_server::openapi_json();
    if std::env::var_os("BATPAK_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, format!("{generated}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "docs/openapi.json is not what the code generates: run `BATPAK_UPDATE_OPENAPI=1 cargo test -p batpak-server --test contract` and commit it"
    );
    let doc = contract();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn the_server_serves_the_contract_and_every_route_is_in_it() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let served = server.client().get("/v1/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(served.body, contract());
    let paths: BTreeSet<String> = contract()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // Every route the router has (but the contract itself) is documented.
    let routes = include_str!("../src/api.rs");
    for line in routes.lines() {
        let Some(rest) = line.trim().strip_prefix(".route(\"") else {
            continue;
        };
        let route = rest.split('"').next().unwrap();
        let full = if route.starts_with("/metrics")
            || route.starts_with("/healthz")
            || route.starts_with("/readyz")
        {
            route.to_string()
        } else {
            format!("/v1{route}")
        };
        if full == "/v1/openapi.json" {
            continue;
        }
        assert!(
            paths.contains(&full),
            "{full} is routed but not in the contract"
        );
    }
}

/// The property names a component schema declares.
fn properties(name: &str) -> BTreeSet<String> {
    let doc = contract();
    let schema = &doc["components"]["schemas"][name];
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name}: {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_mirrors_of_the_library_types_have_exactly_their_fields() {
    let (_dir, store) = store();
    let server = start(store, |b| b);
    let c = server.client();
    let first = c.append("order:1", "orders", "1:1", json!({"n": 1}));
    let second = c.post(
        "/v1/events",
        &json!({"entity": "order:1", "scope": "orders", "kind": "1:2", "payload": {},
                "causation": first["event_id"]}),
    );
    assert_eq!(second.status, 201);
    let appended = second.body.clone();
    let id = first["event_id"].as_str().unwrap();
    let cases: Vec<(&str, Value)> = vec![
        ("Event", c.get(&format!("/v1/events/{id}")).body),
        ("Receipt", appended["receipt"].clone()),
        ("Appended", appended.clone()),
        ("Anchor", c.post_empty("/v1/anchors").body),
        ("Stats", c.get("/v1/stats").body),
        ("Frontier", c.get("/v1/frontier").body),
        (
            "EntityInfo",
            c.get("/v1/entities").body["entities"][0].clone(),
        ),
        ("ScopeInfo", c.get("/v1/scopes").body["scopes"][0].clone()),
        ("KindInfo", c.get("/v1/kinds").body["kinds"][0].clone()),
        (
            "GraphEdge",
            c.get(&format!("/v1/events/{id}/graph")).body["edges"][0].clone(),
        ),
        (
            "GraphNode",
            c.get(&format!("/v1/events/{id}/graph")).body["nodes"][0].clone(),
        ),
        ("Page", c.get("/v1/events?limit=1").body),
        ("Walk", c.get(&format!("/v1/events/{id}/ancestors")).body),
        ("ErrorBody", c.get("/v1/events/nope").body),
    ];
    for (name, value) in cases {
        assert_eq!(keys(&value), properties(name), "{name}: {value}");
    }
}
