//! Gates decide before commit, without a check-then-act window.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::sync::Arc;

use batpak::EventPayload as _;
use batpak::{Coordinate, Error, EventSourced, Store};

use batpak::gate::{gate, DecideOptions, Decision, Denial, GateSet};
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
    let recording = DecideOptions {
        attempts: 1000,
        record_denials: true,
    };
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (store, gates, acct) = (Arc::clone(&store), Arc::clone(&gates), acct.clone());
            std::thread::spawn(move || {
                let (mut committed, mut denied) = (0, 0);
                for _ in 0..10 {
                    let decision = store
                        .decide::<Account, Moved, Withdrawal>(&acct, &gates, recording, |state| {
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
    // Every refusal is recorded, on the store's gate log, naming the account.
    let recorded = store
        .query(
            &batpak::Region::all()
                .entity("batpak:gate")
                .kind(batpak::gate::RecordedDenial::KIND),
            0,
            1000,
        )
        .unwrap();
    assert_eq!(recorded.len() as i64, denied);
    assert!(recorded.iter().all(|e| {
        e.decode::<batpak::gate::RecordedDenial>().unwrap().entity == "acct:1"
            && e.coordinate.scope() == "bank"
    }));
    // The account holds only its own events: its version counts the withdrawals.
    let own = store.stream("acct:1").unwrap();
    assert_eq!(own.len() as i64, 1 + committed);
    assert_eq!(own.last().unwrap().version, committed as u64);
}

#[test]
fn retries_are_bounded_and_the_conflict_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let acct = Coordinate::new("acct:2", "bank").unwrap();
    store.append(&acct, &Moved { cents: 100 }).unwrap();
    let mut calls = 0;
    // Every attempt, another writer slips in an event before the commit.
    let three = DecideOptions {
        attempts: 3,
        record_denials: false,
    };
    let result = store.decide::<Account, Moved, Withdrawal>(&acct, &policy(), three, |state| {
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

#[test]
fn a_recorded_denial_is_on_the_chain_and_verifies() {
    use batpak::gate::{Proposal, RecordedDenial};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let acct = Coordinate::new("acct:3", "bank").unwrap();
    store.append(&acct, &Moved { cents: 10 }).unwrap();
    let gates = policy().with(gate("never-reached", |_: &Withdrawal| Ok(())));
    let proposal = Proposal::new(acct.clone(), Moved { cents: -50 }).recording_denials();
    let decision = store
        .propose(
            proposal,
            &gates,
            &Withdrawal {
                balance: 10,
                amount: 50,
            },
        )
        .unwrap();
    assert!(matches!(decision, Decision::Denied(ref d) if d.code == "overdraft"));
    let events = store.stream("acct:3").unwrap();
    assert_eq!(events.len(), 1, "neither the withdrawal nor the denial");
    let denials = store
        .query(
            &batpak::Region::all()
                .entity("batpak:gate")
                .with_store_records(),
            0,
            10,
        )
        .unwrap();
    assert_eq!(denials.len(), 1);
    let record: RecordedDenial = denials[0].decode().unwrap();
    assert_eq!(denials[0].kind, RecordedDenial::KIND);
    assert_eq!(record.entity, "acct:3");
    assert_eq!(denials[0].coordinate.scope(), "bank");
    assert_eq!(
        record.proposed_kind,
        <Moved as batpak::EventPayload>::KIND.bits()
    );
    let bytes = batpak::EventPayload::encode(&Moved { cents: -50 }).unwrap();
    assert_eq!(
        record.payload_digest,
        blake3::hash(&bytes).to_hex().to_string()
    );
    let outcomes: Vec<_> = record
        .trace
        .iter()
        .map(|t| (t.gate.as_str(), t.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("overdraft", "denied"), ("never-reached", "skipped")]
    );
    assert_eq!(record.trace[0].code.as_deref(), Some("overdraft"));
    // Part of the tamper-evident history: the chain verifies through it.
    let walk = store.walk_ancestors(denials[0].id, 10).unwrap().unwrap();
    assert!(walk.broken.is_none() && walk.reached_first);
    assert!(store.verify().unwrap().body.is_clean());
    // The account did not move: a client holding version 0 appends without conflict.
    store
        .append_with(
            &acct,
            &Moved { cents: 1 },
            batpak::AppendOptions::expect(batpak::ExpectedVersion::Exact(0)),
        )
        .unwrap();
    // A passing proposal commits.
    let ok = store
        .propose(
            Proposal::new(acct, Moved { cents: -5 }),
            &gates,
            &Withdrawal {
                balance: 11,
                amount: 5,
            },
        )
        .unwrap();
    assert!(matches!(ok, Decision::Committed { .. }));
}

#[test]
fn a_bypass_is_audited_with_the_event() {
    use batpak::gate::{Proposal, RecordedBypass};
    use batpak::Region;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let acct = Coordinate::new("acct:4", "bank").unwrap();
    let r = store
        .bypass(
            Proposal::new(acct, Moved { cents: -500 }),
            "chargeback ordered by court",
            Some("ops:alice".into()),
        )
        .unwrap();
    let audits = store
        .query(&Region::all().kind(RecordedBypass::KIND), 0, 100)
        .unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(
        audits[0].causation,
        Some(r.event_id),
        "the audit names the bypassed event"
    );
    let audit: RecordedBypass = audits[0].decode().unwrap();
    assert_eq!(audit.reason, "chargeback ordered by court");
    assert_eq!(audit.approver.as_deref(), Some("ops:alice"));
    // User appends of the reserved kinds stay refused.
    let err = store
        .append_raw(
            &Coordinate::new("acct:4", "bank").unwrap(),
            RecordedBypass::KIND,
            batpak::RawPayload::opaque(b"forged"),
            batpak::AppendOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::ReservedKind { .. }));
    // The audit sits on the gate log, in the account's scope; the account holds one event.
    assert_eq!(audits[0].coordinate.entity(), "batpak:gate");
    assert_eq!(audits[0].coordinate.scope(), "bank");
    assert_eq!(store.stream("acct:4").unwrap().len(), 1);
    // And user appends to the store's own entities are refused, naming the rule.
    let err = store
        .append_raw(
            &Coordinate::new("batpak:gate", "bank").unwrap(),
            batpak::EventKind::custom(1, 1),
            batpak::RawPayload::opaque(b"forged"),
            batpak::AppendOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCoordinate {
                component: "entity",
                rule: batpak::CoordinateRule::Reserved
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[test]
fn a_raw_proposal_commits_when_permitted_and_records_a_denial_with_its_receipt() {
    use batpak::gate::{RawDecision, RecordedDenial};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let acct = Coordinate::new("acct:9", "bank").unwrap();
    let kind = batpak::EventKind::custom(3, 1);
    let gates = policy();
    let bytes = br#"{"cents":-50}"#;
    let denied = store
        .propose_raw(
            &acct,
            kind,
            batpak::RawPayload::json(bytes),
            batpak::AppendOptions::default(),
            &gates,
            &Withdrawal {
                balance: 10,
                amount: 50,
            },
        )
        .unwrap();
    let RawDecision::Denied { denial, recorded } = denied else {
        panic!("the overdraft gate denies: {denied:?}");
    };
    assert_eq!(denial.code, "overdraft");
    assert!(
        store.stream("acct:9").unwrap().is_empty(),
        "nothing appended"
    );
    let record_event = store.get(recorded.event_id).unwrap().unwrap();
    assert_eq!(record_event.coordinate.entity(), "batpak:gate");
    assert_eq!(record_event.coordinate.scope(), "bank");
    let record: RecordedDenial = record_event.decode().unwrap();
    assert_eq!(record.entity, "acct:9");
    assert_eq!(record.proposed_kind, kind.bits());
    assert_eq!(
        record.payload_digest,
        blake3::hash(bytes).to_hex().to_string()
    );
    assert!(matches!(
        store.verify_receipt(&recorded).unwrap(),
        batpak::proof::ReceiptCheck::Unsigned
    ));

    let committed = store
        .propose_raw(
            &acct,
            kind,
            batpak::RawPayload::json(br#"{"cents":-5}"#),
            batpak::AppendOptions::default(),
            &gates,
            &Withdrawal {
                balance: 10,
                amount: 5,
            },
        )
        .unwrap();
    let RawDecision::Committed { receipt, gates } = committed else {
        panic!("permitted: {committed:?}");
    };
    assert_eq!(gates.gates(), ["overdraft"]);
    assert_eq!(store.stream("acct:9").unwrap()[0].id, receipt.event_id);
}
