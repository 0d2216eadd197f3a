//! Gates decide before commit, without a check-then-act window.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::sync::Arc;

use batpak::{gate, Coordinate, Decision, Denial, Error, EventSourced, GateSet, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, batpak::EventPayload, Debug, Clone, PartialEq)]
#[batpak(category = 7, type_id = 1)]
struct Moved {
    cents: i64,
}

#[derive(Clone, Default, Debug, EventSourced)]
#[batpak(name = "account", events(Moved => on_moved))]
struct Account {
    balance: i64,
}

impl Account {
    fn on_moved(&mut self, e: &Moved) {
        self.balance += e.cents;
    }
}

struct Withdrawal {
    balance: i64,
    amount: i64,
}

fn policy() -> GateSet<Withdrawal> {
    GateSet::new().with(gate("overdraft", |w: &Withdrawal| {
        if w.balance >= w.amount {
            Ok(())
        } else {
            Err(Denial::new("overdraft", "not enough money").with("balance", w.balance))
        }
    }))
}

#[test]
fn sixteen_threads_withdrawing_never_overdraw() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let acct = Coordinate::new("acct:1", "bank").unwrap();
    store.append(&acct, &Moved { cents: 1000 }).unwrap();
    let gates = Arc::new(policy());
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (store, gates, acct) = (Arc::clone(&store), Arc::clone(&gates), acct.clone());
            std::thread::spawn(move || {
                let (mut committed, mut denied) = (0, 0);
                for _ in 0..10 {
                    let decision = store
                        .decide::<Account, Moved, Withdrawal>(&acct, &gates, 1000, |state| {
                            let balance = state.map_or(0, |a| a.balance);
                            (
                                Withdrawal {
                                    balance,
                                    amount: 30,
                                },
                                Moved { cents: -30 },
                            )
                        })
                        .unwrap();
                    match decision {
                        Decision::Committed { gates, .. } => {
                            assert_eq!(gates.gates(), ["overdraft"]);
                            committed += 1;
                        }
                        Decision::Denied(d) => {
                            assert_eq!(d.code, "overdraft");
                            denied += 1;
                        }
                    }
                }
                (committed, denied)
            })
        })
        .collect();
    let (committed, denied) = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |(c, d), (c2, d2)| (c + c2, d + d2));
    assert_eq!(committed + denied, 160);
    assert_eq!(
        committed,
        1000 / 30,
        "exactly as many withdrawals as the money allows"
    );
    let balance = store
        .project::<Account>("acct:1", batpak::Freshness::Consistent)
        .unwrap()
        .unwrap()
        .balance;
    assert_eq!(balance, 1000 - 30 * committed);
    assert!(balance >= 0);
}

#[test]
fn retries_are_bounded_and_the_conflict_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let acct = Coordinate::new("acct:2", "bank").unwrap();
    store.append(&acct, &Moved { cents: 100 }).unwrap();
    let mut calls = 0;
    // Every attempt, another writer slips in an event before the commit.
    let result = store.decide::<Account, Moved, Withdrawal>(&acct, &policy(), 3, |state| {
        calls += 1;
        store.append(&acct, &Moved { cents: 1 }).unwrap();
        (
            Withdrawal {
                balance: state.unwrap().balance,
                amount: 10,
            },
            Moved { cents: -10 },
        )
    });
    assert!(
        matches!(result, Err(Error::VersionConflict { .. })),
        "{result:?}"
    );
    assert_eq!(calls, 3);
}
