//! The kind registry sees derived types of every crate linked into the program: this
//! test crate's type collides with `batpak_bench::OrderPlaced` (kind 1:1).

use batpak::{Error, EventKind, EventPayload, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 1, type_id = 1)]
struct Impostor {
    sku: String,
}

#[test]
fn a_collision_across_crates_is_found() {
    assert_eq!(Impostor::KIND, batpak_bench::OrderPlaced::KIND);
    let dir = tempfile::tempdir().expect("tempdir");
    match Store::open(dir.path()) {
        Err(Error::KindCollision { kind, types }) => {
            assert_eq!(kind, EventKind::custom(1, 1));
            assert_eq!(
                types,
                vec!["batpak_bench::OrderPlaced", "cross_crate_kinds::Impostor"]
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("open must refuse"),
    }
}
