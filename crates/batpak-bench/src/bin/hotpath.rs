//! Instruction-count probe for `valgrind --tool=callgrind` (stable where wall-clock
//! timings on a shared machine are not), on the benchmark payload (`OrderPlaced`):
//!
//! - `append N`: N single appends, round-robin over 1,000 entities;
//! - `batch N`: N batches of 1,000 (per item: divide by N x 1,000);
//! - `get N`: fills 20,000 events, then reads and decodes N by random id;
//! - `stream N`: fills, then visits and decodes N entity streams of 100 events;
//! - `project N`: fills one entity with 20,000 events, then N cold projections;
//! - `floor N`: decodes the same 20,000 payloads from memory N times (the floor a
//!   cold projection is measured against).
//!
//! Run each with N and with 0 and divide the difference by the operations
//! (`scripts/hotpath-instructions.sh`). Nothing is synced: the counts are CPU work.

use batpak::{
    AppendOptions, Batch, Coordinate, EventPayload, EventView, Freshness, Projection, Store,
    SyncPolicy,
};
use batpak_bench::{entity_name, OrderPlaced, ENTITIES, SCOPE};

/// Events a `project` or `floor` pass folds.
const FOLDED: usize = 20_000;

#[derive(Clone, Default)]
struct Total(u64);

impl Projection for Total {
    const NAME: &'static str = "hotpath-total";
    const KINDS: &'static [batpak::EventKind] = &[<OrderPlaced as EventPayload>::KIND];

    fn apply(&mut self, event: &EventView<'_>) -> batpak::Result<()> {
        let o: OrderPlaced = event.decode()?;
        self.0 += o.price_cents * u64::from(o.qty);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(n)) = (args.get(1), args.get(2)) else {
        return Err("usage: hotpath append|batch|get|stream|project|floor N".into());
    };
    let n: usize = n.parse()?;
    let dir = std::env::temp_dir().join(format!("hotpath-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::builder(&dir)
        .sync_policy(SyncPolicy::Never)
        .projection_cache(0)
        .open()?;
    let coords = (0..ENTITIES)
        .map(|i| Coordinate::new(entity_name(i), SCOPE))
        .collect::<Result<Vec<_>, _>>()?;
    let payloads: Vec<OrderPlaced> = (0..ENTITIES as u64).map(OrderPlaced::sample).collect();
    let fill = |entities: usize| -> batpak::Result<Vec<batpak::EventId>> {
        let mut ids = Vec::new();
        for first in (0..FOLDED).step_by(1000) {
            let mut batch = Batch::new();
            for i in first..first + 1000 {
                let e = i % entities;
                batch.push(
                    &coords[e],
                    &payloads[i % ENTITIES],
                    AppendOptions::default(),
                )?;
            }
            ids.extend(store.append_batch(&batch)?.iter().map(|r| r.event_id));
        }
        Ok(ids)
    };
    let ids = match mode.as_str() {
        "get" | "stream" => fill(200)?,
        "project" => fill(1)?,
        _ => Vec::new(),
    };
    let encoded: Vec<Vec<u8>> = if mode == "floor" {
        (0..FOLDED)
            .map(|i| payloads[i % ENTITIES].encode())
            .collect::<batpak::Result<_>>()?
    } else {
        Vec::new()
    };
    let mut x = 12345u64;
    let mut sum = 0u64;
    let mut batch = Batch::new();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum += match mode.as_str() {
            "append" => {
                let e = i % ENTITIES;
                store.append(&coords[e], &payloads[e])?.sequence
            }
            "batch" => {
                batch.clear();
                for k in 0..1000 {
                    let e = (i * 1000 + k) % ENTITIES;
                    batch.push(&coords[e], &payloads[e], AppendOptions::default())?;
                }
                store.append_batch(&batch)?.len() as u64
            }
            "get" => {
                let id = ids[(x % ids.len() as u64) as usize];
                store
                    .get(id)?
                    .map_or(Ok(0), |e| e.decode::<OrderPlaced>().map(|o| o.price_cents))?
            }
            "stream" => {
                let mut qty = 0u64;
                store.visit_stream(coords[(x % 200) as usize].entity(), |e| {
                    qty += u64::from(e.decode::<OrderPlaced>()?.qty);
                    Ok(())
                })?;
                qty
            }
            "project" => store
                .project::<Total>(coords[0].entity(), Freshness::Consistent)?
                .map_or(0, |t| t.0),
            "floor" => {
                let mut total = 0u64;
                for bytes in &encoded {
                    let o: OrderPlaced = rmp_serde::from_slice(bytes)?;
                    total += o.price_cents * u64::from(o.qty);
                }
                total
            }
            other => return Err(format!("unknown mode {other:?}").into()),
        };
    }
    store.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{sum}");
    Ok(())
}
