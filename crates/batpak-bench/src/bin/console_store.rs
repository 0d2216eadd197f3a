//! Makes a store for measuring the web console at scale: N events (default
//! 1,000,000) over 10,000 order entities in three scopes, in batches of 1,000, each
//! payment caused by its order's first event, with kind names.
//!
//! `cargo run --release -p batpak-bench --bin console_store -- DIR [N]`

use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Store, SyncPolicy};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: console_store DIR [N]")?;
    let n: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let store = Store::builder(&dir).sync_policy(SyncPolicy::Never).open()?;
    let placed = EventKind::custom(1, 1);
    let paid = EventKind::custom(1, 2);
    store.name_kind(placed, "OrderPlaced")?;
    store.name_kind(paid, "OrderPaid")?;
    let mut first = std::collections::HashMap::new();
    let mut written = 0u64;
    while written < n {
        let mut batch = Batch::new();
        let mut causes = Vec::new();
        for i in 0..1_000.min(n - written) {
            let order = (written + i) % 10_000;
            let scope = ["tenant:acme", "tenant:globex", "tenant:initech"][(order % 3) as usize];
            let coord = Coordinate::new(format!("order:{order}"), scope)?;
            let payload = format!("{{\"order\":{order},\"n\":{}}}", written + i);
            let mut options = AppendOptions::default();
            let kind = match first.get(&order) {
                None => placed,
                Some(cause) => {
                    options = options.caused_by(*cause);
                    paid
                }
            };
            batch.push_raw(&coord, kind, RawPayload::json(payload.as_bytes()), options);
            causes.push(order);
        }
        let receipts = store.append_batch(&batch)?;
        for (order, r) in causes.into_iter().zip(receipts) {
            first.entry(order).or_insert(r.event_id);
        }
        written += batch.len() as u64;
    }
    store.sync()?;
    store.close()?;
    println!("{n} events in {dir}");
    Ok(())
}
