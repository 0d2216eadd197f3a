//! A bank account guarded by caller-defined gates: an overdraft gate and a daily
//! limit gate decide every withdrawal against the projected account, without a
//! check-then-act window; a refused withdrawal is recorded on the account's chain; an
//! administrator's bypass is committed with an audit record.
//!
//! `cargo run --example caller_defined_gates -p batpak`

use batpak::gate::{RecordedBypass, RecordedDenial};
use batpak::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload, Debug)]
#[batpak(category = 1, type_id = 1)]
struct Deposited {
    cents: i64,
}

#[derive(Serialize, Deserialize, EventPayload, Debug)]
#[batpak(category = 1, type_id = 2)]
struct Withdrawn {
    cents: i64,
    day: u32,
}

/// The account as the gates see it.
#[derive(Clone, Default, Debug, EventSourced)]
#[batpak(name = "account", events(Deposited => on_deposit, Withdrawn => on_withdraw))]
struct Account {
    balance: i64,
    withdrawn_by_day: Vec<(u32, i64)>,
}

impl Account {
    fn on_deposit(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }

    fn on_withdraw(&mut self, e: &Withdrawn) {
        self.balance -= e.cents;
        match self.withdrawn_by_day.iter_mut().find(|(d, _)| *d == e.day) {
            Some((_, total)) => *total += e.cents,
            None => self.withdrawn_by_day.push((e.day, e.cents)),
        }
    }

    fn withdrawn_on(&self, day: u32) -> i64 {
        self.withdrawn_by_day
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(0, |(_, t)| *t)
    }
}

/// What the gates decide on.
struct Withdrawal {
    balance: i64,
    withdrawn_today: i64,
    amount: i64,
}

const DAILY_LIMIT: i64 = 50_000;

fn gates() -> GateSet<Withdrawal> {
    GateSet::new()
        .with(gate("overdraft", |w: &Withdrawal| {
            if w.balance >= w.amount {
                Ok(())
            } else {
                Err(Denial::new("overdraft", "the account cannot go below zero")
                    .with("balance", w.balance)
                    .with("amount", w.amount))
            }
        }))
        .with(gate("daily-limit", |w: &Withdrawal| {
            if w.withdrawn_today + w.amount <= DAILY_LIMIT {
                Ok(())
            } else {
                Err(
                    Denial::new("daily_limit", "over the daily withdrawal limit")
                        .with("withdrawn_today", w.withdrawn_today)
                        .with("limit", DAILY_LIMIT),
                )
            }
        }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("batpak-gates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir)?;
    let account = Coordinate::new("account:alice", "bank:demo")?;
    let gates = gates();
    store.append(&account, &Deposited { cents: 100_000 })?;

    let day = 1;
    // Retry a few times on a version conflict; record every refusal on the chain.
    let recording = DecideOptions {
        attempts: 10,
        record_denials: true,
    };
    for amount in [30_000, 15_000, 20_000, 90_000] {
        // Decided against the projected account and committed with the version it was
        // built from: concurrent withdrawals cannot both spend the same money.
        let decision = store.decide::<Account, Withdrawn, Withdrawal>(
            &account,
            &gates,
            recording,
            |state| {
                let state = state.cloned().unwrap_or_default();
                let context = Withdrawal {
                    balance: state.balance,
                    withdrawn_today: state.withdrawn_on(day),
                    amount,
                };
                (context, Withdrawn { cents: amount, day })
            },
        )?;
        match decision {
            Decision::Committed { receipt, gates, .. } => {
                println!(
                    "withdrew {amount:>6}: seq {} (gates passed: {:?})",
                    receipt.sequence,
                    gates.gates()
                )
            }
            Decision::Denied(denial) => println!("refused   {amount:>6}: {denial}"),
        }
    }

    // An administrator overrides the gates; the bypass is recorded with the event.
    let r = store.bypass(
        Proposal::new(account.clone(), Withdrawn { cents: 40_000, day }),
        "court-ordered transfer",
        Some("admin:bob".into()),
    )?;
    println!("bypassed  {:>6}: seq {}", 40_000, r.sequence);

    println!("\nthe account's chain:");
    for e in store.stream("account:alice")? {
        let what = if let Some(d) = e.decode_if::<RecordedDenial>()? {
            let denied = d
                .trace
                .iter()
                .find(|t| t.outcome == "denied")
                .map(|t| t.gate.clone());
            format!(
                "denial recorded (gate {:?}, payload digest {}..)",
                denied.unwrap_or_default(),
                &d.payload_digest[..12]
            )
        } else if let Some(b) = e.decode_if::<RecordedBypass>()? {
            format!("bypass audit: {:?} approved by {:?}", b.reason, b.approver)
        } else {
            format!("{:?}", e.kind)
        };
        println!("  v{:<2} seq {:<2} {what}", e.version, e.sequence);
    }
    let audits = store.query(&Region::all().kind(RecordedBypass::KIND), 0, 100)?;
    println!("bypasses in the store: {}", audits.len());
    let walk = store.walk_ancestors(
        store
            .stream("account:alice")?
            .last()
            .map(|e| e.id)
            .unwrap_or(r.event_id),
        100,
    )?;
    println!(
        "chain verifies: {}",
        walk.is_some_and(|w| w.broken.is_none() && w.reached_first)
    );
    let balance = store
        .project::<Account>("account:alice", Freshness::Consistent)?
        .map_or(0, |a| a.balance);
    println!("balance: {balance}");
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
