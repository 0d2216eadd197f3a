//! Instruction-count probe for `valgrind --tool=callgrind` (stable where wall-clock
//! timings on a shared machine are not): `hotpath append N` appends N raw events
//! without metadata; `hotpath get N` fills 20,000 events, then reads N by random id;
//! `hotpath stream N` fills, then reads N entity streams of 100 events. Run each with
//! N and with 0 and divide the difference by N (`scripts/hotpath-instructions.sh`).

use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Store, SyncPolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(n)) = (args.get(1), args.get(2)) else {
        return Err("usage: hotpath append|get|stream N".into());
    };
    let n: usize = n.parse()?;
    let dir = std::env::temp_dir().join(format!("hotpath-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::builder(&dir).sync_policy(SyncPolicy::Never).open()?;
    let kind = EventKind::custom(1, 1);
    let payload = [7u8; 51];
    let coords = (0..200)
        .map(|i| Coordinate::new(format!("order:{i}"), "shop"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids = Vec::new();
    if mode != "append" {
        for first in (0..20_000).step_by(1000) {
            let mut batch = Batch::new();
            for i in first..first + 1000 {
                let raw = RawPayload::msgpack(&payload);
                batch.push_raw(&coords[i % 200], kind, raw, AppendOptions::default());
            }
            ids.extend(store.append_batch(&batch)?.iter().map(|r| r.event_id));
        }
    }
    let mut x = 12345u64;
    let mut sum = 0u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum += match mode.as_str() {
            "append" => {
                let raw = RawPayload::msgpack(&payload);
                let r = store.append_raw(&coords[i % 200], kind, raw, AppendOptions::default())?;
                r.sequence
            }
            "get" => {
                let id = ids[(x % ids.len() as u64) as usize];
                store.get(id)?.map_or(0, |e| e.payload.len() as u64)
            }
            _ => store.stream(coords[(x % 200) as usize].entity())?.len() as u64,
        };
    }
    store.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("{sum}");
    Ok(())
}
