//! Two payload types bound to one kind in the same program: open refuses, naming the
//! kind and both types, unless the builder downgrades it to a reported warning. (This
//! file is its own test binary, so the collision does not leak into other tests.)

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use batpak::{Error, EventKind, EventPayload, Store};
use serde::{Deserialize, Serialize};

mod billing {
    use super::*;

    #[derive(Serialize, Deserialize, EventPayload)]
    #[batpak(category = 6, type_id = 1)]
    pub struct Charged {
        pub cents: u64,
    }
}

mod shipping {
    use super::*;

    #[derive(Serialize, Deserialize, EventPayload)]
    #[batpak(category = 6, type_id = 1)]
    pub struct Dispatched {
        pub carrier: String,
    }
}

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 6, type_id = 2)]
struct Unrelated {
    x: u8,
}

#[test]
fn open_refuses_a_program_with_two_types_on_one_kind() {
    assert_eq!(billing::Charged::KIND, shipping::Dispatched::KIND);
    let _ = Unrelated::KIND;
    let dir = tempfile::tempdir().unwrap();
    match Store::open(dir.path()) {
        Err(Error::KindCollision { kind, types }) => {
            assert_eq!(kind, EventKind::custom(6, 1));
            assert_eq!(
                types,
                vec![
                    "kind_collision::billing::Charged",
                    "kind_collision::shipping::Dispatched"
                ]
            );
            let text = Error::KindCollision { kind, types }.to_string();
            assert!(
                text.contains("6:1") && text.contains("Charged") && text.contains("Dispatched")
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("open must refuse"),
    }
    assert!(!dir.path().join("segments").exists(), "nothing was created");
}

#[test]
fn the_builder_can_downgrade_it_to_a_reported_warning() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .allow_kind_collisions(true)
        .open()
        .unwrap();
    let report = store.open_report();
    assert_eq!(report.kind_collisions.len(), 1);
    assert_eq!(report.kind_collisions[0].kind, EventKind::custom(6, 1));
    assert_eq!(report.kind_collisions[0].types.len(), 2);
}

#[test]
fn collisions_round_trip_through_serde_by_registered_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .allow_kind_collisions(true)
        .open()
        .unwrap();
    let report = store.open_report();
    let json = serde_json::to_string(&report.kind_collisions).unwrap();
    assert_eq!(
        json,
        r#"[{"kind":"6:1","types":["kind_collision::billing::Charged","kind_collision::shipping::Dispatched"]}]"#
    );
    let back: Vec<batpak::KindCollision> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report.kind_collisions);
    let whole = serde_json::to_string(report).unwrap();
    assert_eq!(
        &serde_json::from_str::<batpak::OpenReport>(&whole).unwrap(),
        report
    );

    // The names are this program's own: one it never registered is refused.
    let err = serde_json::from_str::<batpak::KindCollision>(
        r#"{"kind":"6:1","types":["elsewhere::Charged"]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(r#""elsewhere::Charged" is not a payload type registered in this program"#),
        "{err}"
    );
}
