//! `batpak demo`: builds a small shop's store and walks a newcomer through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, AppendReceipt, Coordinate, EventPayload, EventSourced, Freshness, Region, Store,
    StoredEvent,
};

use batpak::gate::{gate, DecideOptions, Decision, Denial, GateSet};

use batpak::proof::SigningKey;

use batpak::reactor::{Reactions, ReactorHandle, ReactorOptions, ReactorStatus};
use serde::{Deserialize, Serialize};

use crate::commands::out;
use crate::render::table;
use crate::{Context, Failure, Outcome};

#[derive(Serialize, Deserialize, EventPayload, Debug, Clone)]
#[batpak(category = 1, type_id = 1)]
struct OrderPlaced {
    customer: String,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, Clone)]
#[batpak(category = 1, type_id = 2)]
struct ItemAdded {
    sku: String,
    cents: u64,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, Clone)]
#[batpak(category = 1, type_id = 3)]
struct OrderConfirmed {
    total_cents: u64,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, Clone)]
#[batpak(category = 2, type_id = 1)]
struct PaymentCaptured {
    order: String,
    cents: u64,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, Clone)]
#[batpak(category = 3, type_id = 1)]
struct ShipmentCreated {
    order: String,
    carrier: String,
}

#[derive(Serialize, Deserialize, EventPayload, Debug, Clone)]
#[batpak(category = 4, type_id = 1)]
struct NoteAdded {
    text: String,
}

/// One order, folded from its events.
#[derive(Clone, Default, Debug, EventSourced)]
#[batpak(
    name = "order-summary",
    events(OrderPlaced => placed, ItemAdded => item, OrderConfirmed => confirmed)
)]
struct OrderSummary {
    customer: String,
    items: Vec<String>,
    total_cents: u64,
    confirmed: bool,
}

impl OrderSummary {
    fn placed(&mut self, e: &OrderPlaced) {
        self.customer = e.customer.clone();
    }
    fn item(&mut self, e: &ItemAdded) {
        self.items.push(e.sku.clone());
        self.total_cents += e.cents;
    }
    fn confirmed(&mut self, _: &OrderConfirmed) {
        self.confirmed = true;
    }
}

/// What the credit-limit gate decides on.
struct Confirmation {
    total_cents: u64,
}

const CREDIT_LIMIT_CENTS: u64 = 50_000;

const SKUS: [(&str, u64); 5] = [
    ("tea-earl-grey", 1_250),
    ("kettle-steel", 4_900),
    ("mug-blue", 850),
    ("grinder-burr", 12_900),
    ("espresso-machine", 64_900),
];

fn coord(entity: String, tenant: &str) -> Result<Coordinate, Failure> {
    Ok(Coordinate::new(entity, format!("tenant:{tenant}"))?)
}

/// What taking the orders left to show.
struct Shop {
    /// The entity of the first paid order.
    sample_order: Option<String>,
    /// The receipt of its payment.
    sample_payment: Option<AppendReceipt>,
    /// The first order the credit-limit gate refused, and why.
    denied: Option<(String, String)>,
    /// The sequence of the last payment, for the reactor to reach.
    last_payment_seq: u64,
}

pub fn run(ctx: &Context) -> Outcome {
    let dir = demo_dir(ctx)?;
    let key = SigningKey::generate()?;
    let started = Instant::now();
    let store = Arc::new(Store::builder(&dir).signing_key(key.clone()).open()?);
    say(format!("Building a demo shop in {}", dir.display()))?;
    let shipping = start_shipping(&store)?;
    let shop = take_orders(&store)?;
    let note = paste_a_card_number(&store)?;
    let status = shipping.wait_for(shop.last_payment_seq, Duration::from_secs(10));
    drop(shipping);
    let redaction = store.redact(note.event_id, "card number in a free-text note (PCI)")?;
    let built = started.elapsed();

    // What a newcomer should see.
    show_counts(&store, built)?;
    show_projection(&store, &shop)?;
    show_denial(&shop)?;
    show_payment(&store, &shop, &status)?;
    show_redaction(&store, &note, &redaction)?;
    show_verification(&store)?;
    drop(store);
    show_next_steps(&dir, &shop, &key)
}

/// One line of the demo's output.
fn say(s: String) -> Outcome {
    out(&format!("{s}\n"))
}

/// `--dir`, else a new temporary directory; never a directory that holds a store.
fn demo_dir(ctx: &Context) -> Result<PathBuf, Failure> {
    let dir = if ctx.dir_given {
        ctx.dir.clone()
    } else {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        std::env::temp_dir().join(format!("batpak-demo-{}-{stamp}", std::process::id()))
    };
    if dir.join("segments").exists() {
        return Err(Failure::new(format!(
            "{} already holds a store; give `demo` an empty or new --dir",
            dir.display()
        )));
    }
    Ok(dir)
}

/// A reactor ships every captured payment: the shipment and the reactor's position
/// are committed together, so no payment ships twice or never.
fn start_shipping(store: &Arc<Store>) -> Result<ReactorHandle, Failure> {
    Ok(store.react(
        "shipping",
        Region::all().kind(PaymentCaptured::KIND),
        ReactorOptions::default(),
        |event: &StoredEvent, out: &mut Reactions| {
            let paid: PaymentCaptured = event.decode()?;
            let tenant = event.coordinate.scope().trim_start_matches("tenant:");
            out.emit(
                &Coordinate::new(
                    format!("shipment:{}", paid.order),
                    format!("tenant:{tenant}"),
                )?,
                &ShipmentCreated {
                    order: paid.order.clone(),
                    carrier: "parcel-post".into(),
                },
            )
        },
    )?)
}

/// Orders for three tenants: placed, items added, confirmed through the credit-limit
/// gate, most of them paid.
fn take_orders(store: &Store) -> Result<Shop, Failure> {
    let gates = GateSet::new().with(gate("credit-limit", |c: &Confirmation| {
        if c.total_cents <= CREDIT_LIMIT_CENTS {
            Ok(())
        } else {
            Err(Denial::new(
                "credit_limit",
                "the order is over the customer's credit limit",
            )
            .with("total_cents", c.total_cents)
            .with("limit_cents", CREDIT_LIMIT_CENTS))
        }
    }));
    let recording = DecideOptions {
        attempts: 3,
        record_denials: true,
    };

    let mut sample_order = None;
    let mut sample_payment = None;
    let mut denied = None;
    let mut last_payment_seq = 0;
    for (t, tenant) in ["acme", "globex", "initech"].iter().enumerate() {
        for n in 0..8u64 {
            let id = format!("{tenant}-{}", 1000 + n);
            let order = coord(format!("order:{id}"), tenant)?;
            let placed = store.append(
                &order,
                &OrderPlaced {
                    customer: format!("customer:{tenant}-{}", n % 3),
                },
            )?;
            let correlated = AppendOptions::default().correlation(placed.event_id);
            let items = 1 + (n as usize + t) % 3;
            for i in 0..items {
                // One order per tenant reaches for the espresso machine.
                let (sku, cents) = if n == 5 && i == 0 {
                    SKUS[4]
                } else {
                    SKUS[(n as usize + i) % 4]
                };
                store.append_with(
                    &order,
                    &ItemAdded {
                        sku: sku.into(),
                        cents,
                    },
                    correlated.clone(),
                )?;
            }
            // Confirm through the credit-limit gate, decided on the projected order.
            let decision = store.decide::<OrderSummary, OrderConfirmed, Confirmation>(
                &order,
                &gates,
                recording,
                |state| {
                    let total = state.map_or(0, |s| s.total_cents);
                    (
                        Confirmation { total_cents: total },
                        OrderConfirmed { total_cents: total },
                    )
                },
            )?;
            let confirmed = match decision {
                Decision::Committed { receipt, .. } => receipt,
                Decision::Denied(denial) => {
                    denied.get_or_insert((id.clone(), denial.to_string()));
                    continue;
                }
            };
            if n % 4 == 3 {
                continue; // confirmed, not yet paid
            }
            let cents = store
                .project::<OrderSummary>(order.entity(), Freshness::Consistent)?
                .map_or(0, |s| s.total_cents);
            let paid = store.append_with(
                &coord(format!("payment:{id}"), tenant)?,
                &PaymentCaptured {
                    order: id.clone(),
                    cents,
                },
                AppendOptions::default()
                    .caused_by(confirmed.event_id)
                    .correlation(placed.event_id),
            )?;
            last_payment_seq = paid.sequence;
            if sample_order.is_none() {
                sample_order = Some(order.entity().to_string());
                sample_payment = Some(paid);
            }
        }
    }
    Ok(Shop {
        sample_order,
        sample_payment,
        denied,
        last_payment_seq,
    })
}

/// A support note with a card number pasted in by mistake (redacted later).
fn paste_a_card_number(store: &Store) -> Result<AppendReceipt, Failure> {
    let note_coord = coord("customer:acme-1".into(), "acme")?;
    Ok(store.append(
        &note_coord,
        &NoteAdded {
            text: "customer read out card 4111 1111 1111 1111 on the phone".into(),
        },
    )?)
}

/// The size of the store and its events by kind.
fn show_counts(store: &Store, built: Duration) -> Outcome {
    let stats = store.stats()?;
    say(format!(
        "\n{} events, {} entities, {} scopes, {} bytes, built in {:?} (every append durable)",
        stats.events, stats.entities, stats.scopes, stats.segment_bytes, built
    ))?;
    let kinds = [
        ("1:1 order placed", OrderPlaced::KIND),
        ("1:2 item added", ItemAdded::KIND),
        ("1:3 order confirmed", OrderConfirmed::KIND),
        ("2:1 payment captured", PaymentCaptured::KIND),
        (
            "3:1 shipment created (by the reactor)",
            ShipmentCreated::KIND,
        ),
        ("4:1 note added", NoteAdded::KIND),
        (
            "0:1 gate denial (recorded)",
            batpak::gate::RecordedDenial::KIND,
        ),
        ("0:3 redaction record", batpak::Redaction::KIND),
        (
            "0:4 reactor position",
            batpak::reactor::ReactorPosition::KIND,
        ),
    ];
    let mut rows = Vec::new();
    for (label, kind) in kinds {
        let n = store.query(&Region::all().kind(kind), 0, usize::MAX)?.len();
        rows.push(vec![label.to_string(), n.to_string()]);
    }
    out(&table(&["KIND", "EVENTS"], &rows))
}

/// The sample order folded from its events.
fn show_projection(store: &Store, shop: &Shop) -> Outcome {
    if let Some(entity) = &shop.sample_order {
        if let Some(s) = store.project::<OrderSummary>(entity, Freshness::Consistent)? {
            say(format!(
                "\nProjection of {entity}: customer {}, items {:?}, total {} cents, confirmed {}",
                s.customer, s.items, s.total_cents, s.confirmed
            ))?;
        }
    }
    Ok(())
}

/// The order the credit-limit gate refused.
fn show_denial(shop: &Shop) -> Outcome {
    if let Some((id, denial)) = &shop.denied {
        say(format!(
            "\nThe credit-limit gate refused to confirm order {id}: {denial}\n(the refusal is recorded on the order's own chain as a 0:1 event)"
        ))?;
    }
    Ok(())
}

/// The sample payment: its causal graph, and its receipt checked.
fn show_payment(store: &Store, shop: &Shop, status: &ReactorStatus) -> Outcome {
    if let Some(payment) = &shop.sample_payment {
        say(format!(
            "\nCausal graph around payment {} (reactor: position {}, {} shipments):",
            payment.event_id, status.position, status.reactions
        ))?;
        if let Some(graph) = store.causal_graph(payment.event_id, 2)? {
            out(&demo_graph_text(&graph))?;
        }
        let check = store.verify_receipt(payment)?;
        say(format!(
            "\nReceipt of that payment checked against the store: {check:?}\n  {}",
            serde_json::to_string(payment)?
        ))?;
    }
    Ok(())
}

/// The redacted note: payload gone, redaction recorded.
fn show_redaction(store: &Store, note: &AppendReceipt, redaction: &AppendReceipt) -> Outcome {
    let erased = store.get(note.event_id)?.is_some_and(|e| e.is_redacted());
    say(format!(
        "\nRedacted note {}: payload erased from disk: {erased}; recorded as seq {}",
        note.event_id, redaction.sequence
    ))
}

/// A full verification of the store.
fn show_verification(store: &Store) -> Outcome {
    let report = store.verify()?;
    say(format!(
        "\nFull verification: {} events in {} segment(s), {} redacted, {} findings; running hash {}",
        report.body.events,
        report.body.segments,
        report.body.redacted,
        report.body.findings.len(),
        report.body.running_hash.as_deref().unwrap_or("-")
    ))
}

/// Where the store is and what to try on it.
fn show_next_steps(dir: &Path, shop: &Shop, key: &SigningKey) -> Outcome {
    let d = dir.display();
    say(format!(
        "\nThe store stays in {d}. Try:\n  batpak --dir {d} stats\n  batpak --dir {d} query --prefix order:acme-1001\n  batpak --dir {d} graph {} --format dot\n  batpak --dir {d} verify\n  batpak --dir {d} anchor --signing-key {}   # the demo's signing key",
        shop.sample_payment
            .as_ref()
            .map_or_else(String::new, |p| p.event_id.to_string()),
        crate::render::hex(&key.to_bytes())
    ))
}

/// The graph as a causation tree with the entities' chain neighbours listed after.
fn demo_graph_text(graph: &batpak::graph::CausalGraph) -> String {
    crate::commands::read::graph_tree(graph)
}
