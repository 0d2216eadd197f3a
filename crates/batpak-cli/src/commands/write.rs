//! Writing commands: append and redact.

use batpak::{
    AppendOptions, AppendReceipt, Coordinate, DeleteMode, EventId, RawPayload, RetentionLimits,
    RetentionRule, RetentionSelector, Store,
};
use serde_json::{json, Value};

use super::{input, out, print_json, Progress};
use crate::cli::{AppendArgs, RetentionAction, RuleArgs, SelectorArgs};
use crate::render::rfc3339;
use crate::{Context, Failure, Outcome};

fn print_receipt(ctx: &Context, r: &AppendReceipt) -> Outcome {
    if ctx.json {
        return print_json(&serde_json::to_value(r)?);
    }
    let signed = r.signature.map_or_else(
        || "unsigned".to_string(),
        |s| format!("signed by key {}", s.key_id),
    );
    out(&format!(
        "appended seq {} id {} version {} at {}\nevent hash {} ({signed})\nreceipt {}\n",
        r.sequence,
        r.event_id,
        r.version,
        rfc3339(r.timestamp_ns),
        r.event_hash,
        serde_json::to_string(r)?
    ))
}

pub fn append(ctx: &Context, a: AppendArgs) -> Outcome {
    let coordinate = Coordinate::new(&a.entity, &a.scope)
        .map_err(|e| Failure::new(format!("--entity/--scope: {e}")))?;
    let mut options = AppendOptions::expect(a.expect);
    if let Some(c) = a.causation {
        options = options.caused_by(c);
    }
    if let Some(c) = a.correlation {
        options = options.correlation(c);
    }
    if let Some(k) = a.idempotency_key {
        options = options.idempotency_key(k);
    }
    for (key, value) in a.meta {
        options = options.meta(key, value);
    }
    let text = input(a.payload, "payload")?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("the payload is not JSON: {e}")))?;
    let bytes = serde_json::to_vec(&value)?;
    let store = ctx.open_write(true)?;
    let receipt = store.append_raw(&coordinate, a.kind, RawPayload::json(&bytes), options)?;
    store.close()?;
    print_receipt(ctx, &receipt)
}

pub fn redact(ctx: &Context, id: EventId, reason: &str) -> Outcome {
    let store = ctx.open_write(false)?;
    let receipt = store.redact(id, reason)?;
    store.close()?;
    if ctx.json {
        print_json(&json!({
            "redacted": id.to_string(),
            "record": serde_json::to_value(receipt)?,
        }))
    } else {
        out(&format!(
            "redacted {id}: its payload is erased from disk; recorded as seq {} ({})\n",
            receipt.sequence, receipt.event_id
        ))
    }
}

/// `repair --cut S:O --reason R` or `repair --reindex` (`cut` is `None`).
pub fn repair(ctx: &Context, cut: Option<(u64, u64)>, reason: Option<&str>) -> Outcome {
    ctx.require_store()?;
    let Some((segment, offset)) = cut else {
        let report = Store::reindex(&ctx.dir)?;
        return if ctx.json {
            print_json(&json!({ "reindexed": serde_json::to_value(&report)? }))
        } else {
            out(&format!(
                "index rebuilt from {} events; the old checkpoint is kept under {}\n",
                report.events,
                ctx.dir.join(batpak::repair::REPAIRS_DIR).display()
            ))
        };
    };
    let report = Store::repair_cut(&ctx.dir, segment, offset, reason.unwrap_or_default())?;
    let r = &report.record;
    if ctx.json {
        return print_json(&json!({
            "repaired": serde_json::to_value(r)?,
            "record": serde_json::to_value(report.receipt)?,
        }));
    }
    out(&format!(
        "cut segment {} at offset {}: {} bytes ({} complete records{}) and {} later segments kept in {}; recorded as seq {} ({})\n",
        r.segment,
        r.offset,
        r.bytes_cut,
        r.records_cut,
        r.first_sequence_cut
            .map_or_else(String::new, |s| format!(", from sequence {s}")),
        r.segments_removed.len(),
        report.kept_in.display(),
        report.receipt.sequence,
        report.receipt.event_id
    ))
}

fn selector(args: SelectorArgs) -> RetentionSelector {
    match (args.prefix, args.entity, args.scope) {
        (Some(prefix), _, _) => RetentionSelector::EntityPrefix(prefix),
        (None, Some(entity), _) => RetentionSelector::Entity(entity),
        (None, None, scope) => RetentionSelector::Scope(scope.unwrap_or_default()),
    }
}

fn rule(args: &RuleArgs) -> RetentionRule {
    let mut limits = RetentionLimits::new();
    limits.max_count = args.max_count;
    limits.max_age = args.max_age;
    limits.before_version = args.before_version;
    // clap requires one of the three; with none, the library names what is missing.
    limits.rule().unwrap_or(RetentionRule::Combined(limits))
}

/// `retention set | list | clear`.
pub fn retention(ctx: &Context, action: RetentionAction) -> Outcome {
    match action {
        RetentionAction::List => {
            let store = ctx.open_read()?;
            let policies = store.retention();
            if ctx.json {
                return print_json(&serde_json::to_value(&policies)?);
            }
            if policies.is_empty() {
                return out("no retention policies\n");
            }
            let rows: Vec<Vec<String>> = policies
                .iter()
                .map(|p| {
                    vec![
                        p.selector.to_string(),
                        p.rule.to_string(),
                        p.set_by.to_string(),
                    ]
                })
                .collect();
            out(&crate::render::table(&["COVERS", "KEEPS", "SET BY"], &rows))
        }
        RetentionAction::Set {
            selector: s,
            rule: r,
        } => {
            let store = ctx.open_write(false)?;
            let (selector, rule) = (selector(s), rule(&r));
            let receipt = store.set_retention(selector.clone(), rule)?;
            store.close()?;
            if ctx.json {
                print_json(&json!({
                    "selector": serde_json::to_value(&selector)?,
                    "rule": serde_json::to_value(rule)?,
                    "record": serde_json::to_value(receipt)?,
                }))
            } else {
                out(&format!(
                    "retention of {selector}: {rule}; recorded as seq {}\n",
                    receipt.sequence
                ))
            }
        }
        RetentionAction::Clear { selector: s } => {
            let store = ctx.open_write(false)?;
            let selector = selector(s);
            let receipt = store.clear_retention(&selector)?;
            store.close()?;
            match receipt {
                None => Err(Failure::new(format!("{selector} has no retention policy"))),
                Some(r) if ctx.json => print_json(&json!({
                    "cleared": serde_json::to_value(&selector)?,
                    "record": serde_json::to_value(r)?,
                })),
                Some(r) => out(&format!(
                    "retention of {selector} cleared; recorded as seq {}\n",
                    r.sequence
                )),
            }
        }
    }
}

/// `delete ENTITY [--hard]`.
pub fn delete(ctx: &Context, entity: &str, hard: bool) -> Outcome {
    let store = ctx.open_write(false)?;
    let mode = if hard {
        DeleteMode::Hard
    } else {
        DeleteMode::Soft
    };
    let receipt = store.delete_entity(entity, mode)?;
    let through = store.deletion(entity).and_then(|d| d.through_version);
    store.close()?;
    if ctx.json {
        print_json(&json!({
            "deleted": entity,
            "mode": serde_json::to_value(mode)?,
            "through_version": through,
            "record": serde_json::to_value(receipt)?,
        }))
    } else if through.is_none() {
        out(&format!(
            "reserved {entity} (hard): it had no events and takes none; recorded as seq {}\n",
            receipt.sequence
        ))
    } else {
        out(&format!(
            "deleted {entity} ({}): its events are hidden{}; recorded as seq {}\n",
            if hard { "hard" } else { "soft" },
            if hard {
                " and it takes no more events"
            } else {
                ""
            },
            receipt.sequence
        ))
    }
}

/// `compact`: a progress bar on a terminal, then the bytes before and after.
pub fn compact(ctx: &Context) -> Outcome {
    let store = ctx.open_write(false)?;
    let mut progress = Progress::new();
    let report =
        store.compact_with_progress(|done, total| progress.update("compacting", done, total))?;
    progress.finish();
    store.close()?;
    if ctx.json {
        return print_json(&serde_json::to_value(&report)?);
    }
    if report.segments_rewritten == 0 {
        return out(
            "nothing to compact: no hidden events or redacted payload bytes in sealed segments\n",
        );
    }
    out(&format!(
        "compacted through seq {} (compaction {}): {} events removed, {} redacted payloads dropped, {} segments rewritten; {} bytes before, {} after ({} reclaimed) in {:.1} s, appends held at most {} us\n",
        report.through,
        report.generation,
        report.events_removed,
        report.payloads_dropped,
        report.segments_rewritten,
        report.bytes_before,
        report.bytes_after,
        report.reclaimed(),
        report.duration.as_secs_f64(),
        report.longest_stall.as_micros()
    ))
}
