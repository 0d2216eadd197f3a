//! Opens a store in a temporary directory with a signing key, appends events across
//! two entities, reopens it, prints what it reads back, then proves it: a receipt
//! check, an anchor, a redaction, and a full verification.

use batpak::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload, Debug)]
#[batpak(category = 1, type_id = 1)]
struct OrderPlaced {
    sku: String,
    quantity: u32,
}

#[derive(Serialize, Deserialize, EventPayload, Debug)]
#[batpak(category = 2, type_id = 1)]
struct PaymentCaptured {
    order: String,
    cents: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("batpak-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    println!("store directory: {}", dir.display());

    let order = Coordinate::new("order:507", "tenant:acme")?;
    let payment = Coordinate::new("payment:88", "tenant:acme")?;
    // Receipts and anchors are signed with this key; verifiers need only its public half.
    let key = SigningKey::generate()?;
    println!("signing key id: {}", key.key_id());
    let placed = {
        let store = Store::builder(&dir).signing_key(key.clone()).open()?;
        let placed = store.append_with(
            &order,
            &OrderPlaced {
                sku: "tea-earl-grey".into(),
                quantity: 2,
            },
            AppendOptions::expect(ExpectedVersion::NoStream),
        )?;
        println!(
            "appended order event: seq {} id {} signed by {:?}",
            placed.sequence,
            placed.event_id,
            placed.signature.map(|s| s.key_id)
        );

        // A payment and the order update it causes, committed atomically.
        let mut batch = Batch::new();
        let paid = batch.push(
            &payment,
            &PaymentCaptured {
                order: "order:507".into(),
                cents: 1250,
            },
            AppendOptions::default()
                .caused_by(placed.event_id)
                .correlation(placed.event_id),
        )?;
        batch.push(
            &order,
            &OrderPlaced {
                sku: "tea-earl-grey".into(),
                quantity: 3,
            },
            AppendOptions::expect(ExpectedVersion::Exact(0))
                .caused_by_item(paid)
                .correlation(placed.event_id),
        )?;
        for r in store.append_batch(&batch)? {
            println!(
                "appended in batch: seq {} version {} hash {}",
                r.sequence, r.version, r.event_hash
            );
        }
        store.close()?;
        placed
    };

    let store = Store::builder(&dir).signing_key(key).open()?;
    let report = store.open_report();
    println!(
        "reopened: {} events from {} segment(s) in {:?}",
        report.events, report.segments, report.duration
    );
    for e in store.stream("order:507")? {
        let body: OrderPlaced = e.decode()?;
        println!(
            "  {} v{} seq {} {:?} caused by {:?}",
            e.coordinate, e.version, e.sequence, body, e.causation
        );
    }
    for e in store.query(&Region::all().scope("tenant:acme").category(2), 0, 10)? {
        let body: PaymentCaptured = e.decode()?;
        println!("  payment {} seq {} {:?}", e.coordinate, e.sequence, body);
    }
    let stats = store.stats()?;
    println!(
        "stats: {} events, {} entities, {} bytes on disk",
        stats.events, stats.entities, stats.segment_bytes
    );

    // Proof. The receipt from before the restart, checked against what the store holds.
    println!("receipt check: {:?}", store.verify_receipt(&placed)?);
    let anchor = store.anchor()?; // keep this outside the store
    println!(
        "anchor: sequence {} running hash {}",
        anchor.sequence, anchor.running_hash
    );
    // A note with a secret pasted in by mistake, then erased. The chain still verifies.
    let note = store.append_raw(
        &Coordinate::new("order:507-notes", "tenant:acme")?,
        EventKind::custom(3, 1),
        RawPayload::json(br#"{"text":"card 4111-1111-1111-1111"}"#),
        AppendOptions::default(),
    )?;
    store.redact(note.event_id, "card number in a free-text note")?;
    let erased = store.get(note.event_id)?.map(|e| e.is_redacted());
    println!("redacted note {}: {:?}", note.event_id, erased);
    println!("anchor still holds: {:?}", store.verify_against(&anchor)?);
    let report = store.verify()?;
    println!(
        "verify: {} events in {} segment(s), {} redacted, {} findings",
        report.body.events,
        report.body.segments,
        report.body.redacted,
        report.body.findings.len()
    );
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
