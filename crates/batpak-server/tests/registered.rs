//! Projections and gate sets the embedding application registers, served by name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use batpak::gate::{gate, Denial, GateSet};
use batpak::Projection;
use batpak_server::{AppendContext, Permission};
use serde_json::json;
use support::{start, store};

#[derive(Clone, Default, serde::Serialize)]
struct Total {
    events: u64,
    cents: i64,
}

impl Projection for Total {
    const NAME: &'static str = "total";
    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        let v: serde_json::Value = serde_json::from_slice(event.payload()).unwrap_or_default();
        self.events += 1;
        self.cents += v["cents"].as_i64().unwrap_or(0);
        Ok(())
    }
}

fn limits() -> GateSet<AppendContext> {
    GateSet::new().with(gate("at-most-100", |c: &AppendContext| {
        let cents = c
            .payload
            .as_ref()
            .and_then(|p| p["cents"].as_i64())
            .unwrap_or(0);
        if cents <= 100 {
            Ok(())
        } else {
            Err(Denial::new("too_much", "at most 100 cents a time").with("cents", cents))
        }
    }))
}

#[test]
fn a_registered_projection_is_served_by_name() {
    let (_dir, store) = store();
    let server = start(store, |b| {
        b.projection::<Total>("total").gates("limits", limits())
    });
    let c = server.client();
    for cents in [10, 20, 30] {
        c.append("acct:1", "bank", "1:1", json!({ "cents": cents }));
    }
    let a = c.get("/v1/projections/total/acct:1");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], json!({"events": 3, "cents": 60}));
    c.append("acct:1", "bank", "1:1", json!({ "cents": 5 }));
    assert_eq!(
        c.get("/v1/projections/total/acct:1").body["state"]["cents"],
        65
    );
    let a = c.get("/v1/projections/nope/acct:1");
    assert_eq!((a.status, a.code()), (404, "no_such_projection"));
    let a = c.get("/v1/projections/total/acct:2");
    assert_eq!((a.status, a.code()), (404, "no_such_entity"));
    let listed = c.get("/v1/projections");
    assert_eq!(
        listed.body,
        json!({"projections": ["total"], "gates": ["limits"]})
    );
}

#[test]
fn an_append_through_a_gate_set_commits_or_is_a_422_with_the_recorded_denial() {
    let (_dir, store) = store();
    let server = start(store, |b| b.gates("limits", limits()));
    let c = server.client();
    let event = |cents: i64| json!({"entity": "acct:1", "scope": "bank", "kind": "1:1", "payload": {"cents": cents}});
    let a = c.post("/v1/gates/limits/events", &event(50));
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["gates"], json!(["at-most-100"]));

    let a = c.post("/v1/gates/limits/events", &event(500));
    assert_eq!((a.status, a.code()), (422, "denied"), "{}", a.body);
    let details = &a.body["error"]["details"];
    assert_eq!(details["denial"]["gate"], "at-most-100");
    assert_eq!(details["denial"]["code"], "too_much");
    assert_eq!(details["denial"]["context"]["cents"], "500");
    let recorded = details["recorded"]["receipt"].clone();
    // The denial is evidence in the store: its receipt verifies, and the entity has
    // only the permitted event.
    assert_eq!(c.post("/v1/receipts/verify", &recorded).body["holds"], true);
    let events = c.get("/v1/entities/acct:1/events").body["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1);

    let a = c.post("/v1/gates/other/events", &event(1));
    assert_eq!((a.status, a.code()), (404, "no_such_gate_set"));
    let a = c.post("/v1/gates/limits/events", &json!({"entity": "acct:1"}));
    assert_eq!(a.status, 400);
}

#[test]
fn a_gate_append_still_needs_the_append_permission() {
    let (_dir, store) = store();
    let mut file = batpak_server::TokensFile::default();
    let reader = file
        .add(
            "reader",
            vec![batpak_server::Grant {
                scope: "bank".into(),
                prefix: String::new(),
                permissions: vec![Permission::Read],
            }],
        )
        .unwrap();
    let server = start(store, move |b| b.gates("limits", limits()).tokens(file));
    let c = server.client_with(&reader);
    let a = c.post(
        "/v1/gates/limits/events",
        &json!({"entity": "acct:1", "scope": "bank", "kind": "1:1", "payload": {"cents": 1}}),
    );
    assert_eq!((a.status, a.code()), (403, "forbidden"));
}
