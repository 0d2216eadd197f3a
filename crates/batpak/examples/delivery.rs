//! Events that something reacts to: a transaction, a live subscription, a durable
//! cursor that survives a restart, and a reactor that ships every paid order exactly
//! once.
//!
//! `cargo run --example delivery -p batpak`

use std::sync::Arc;
use std::time::Duration;

use batpak::prelude::*;
use batpak::reactor::{Reactions, ReactorOptions};
use batpak::Watermark;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload, Debug)]
#[batpak(category = 1, type_id = 1)]
struct OrderPaid {
    order: u32,
    cents: u64,
}

#[derive(Serialize, Deserialize, EventPayload, Debug)]
#[batpak(category = 1, type_id = 2)]
struct Shipped {
    order: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let store = Arc::new(Store::open(&dir)?);
    let paid = Region::all().kind(<OrderPaid as EventPayload>::KIND);

    // A live subscription from now on.
    let mut live = store.subscribe(paid.clone());

    // Two orders paid in one transaction: both visible at once, or neither.
    let mut tx = store.transaction();
    for order in [1, 2] {
        tx.append(
            &Coordinate::new(format!("order:{order}"), "shop")?,
            &OrderPaid { order, cents: 1250 },
        )?;
    }
    let receipts = tx.commit()?;
    let last = receipts.last().map_or(0, |r| r.sequence);
    store.wait_for(Watermark::Visible, last, Duration::from_secs(1))?;
    for _ in 0..2 {
        let e = live.recv_timeout(Duration::from_secs(1))?;
        println!("live: seq {} {:?}", e.sequence, e.decode::<OrderPaid>()?);
    }

    // A durable cursor: process one event, commit, "restart", resume after it.
    {
        let mut cursor = store.cursor("invoices", paid.clone())?;
        let batch = cursor.next_batch(1, Duration::from_secs(1))?;
        cursor.commit(batch[0].sequence)?;
        println!("cursor committed seq {}", cursor.committed());
    }
    let mut cursor = store.cursor("invoices", paid.clone())?;
    let rest = cursor.next_batch(10, Duration::from_millis(100))?;
    println!(
        "cursor resumed with seqs {:?}",
        rest.iter().map(|e| e.sequence).collect::<Vec<_>>()
    );

    // A reactor: each paid order gets a Shipped event, committed together with the
    // reactor's position, so a crash never ships twice or forgets one.
    let reactor = store.react(
        "shipping",
        paid,
        ReactorOptions::default(),
        |event: &StoredEvent, out: &mut Reactions| {
            let order: OrderPaid = event.decode()?;
            out.emit(
                &Coordinate::new(format!("shipment:{}", order.order), "shop")?,
                &Shipped { order: order.order },
            )
        },
    )?;
    let status = reactor.wait_for(last, Duration::from_secs(5));
    println!(
        "reactor: position {} reactions {}",
        status.position, status.reactions
    );
    drop(reactor);
    for e in store.query(&Region::all().kind(<Shipped as EventPayload>::KIND), 0, 10)? {
        println!(
            "  {:?} caused by {:?}",
            e.decode::<Shipped>()?,
            e.causation.map(|c| c.to_string())
        );
    }
    drop(cursor);
    drop(live);
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("batpak-delivery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(dir)
}
