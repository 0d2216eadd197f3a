//! Proof commands: verify the store, receipts and anchors; make an anchor.

use std::io::Write;

use batpak::proof::{AnchorCheck, ReceiptCheck};
use batpak::AppendReceipt;
use serde_json::json;

use super::{input, out, print_json, region, Progress};
use crate::cli::Filters;
use crate::render::table;
use crate::{Context, Failure, Outcome};

pub fn verify(ctx: &Context, filters: &Filters, offline: bool) -> Outcome {
    let filtered = filters.entity.is_some()
        || filters.prefix.is_some()
        || filters.scope.is_some()
        || filters.kind.is_some()
        || filters.category.is_some()
        || filters.after > 0
        || filters.limit.is_some();
    if offline && filtered {
        return Err(Failure::new(
            "--offline checks every segment file; it takes no filters".to_string(),
        ));
    }
    let store = if offline {
        ctx.require_store()?;
        None
    } else {
        match ctx.open_read() {
            Ok(store) => Some(store),
            Err(e) if !filtered && ctx.dir.join("segments").is_dir() => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: {}\nchecking the segment files offline instead (no index checks)",
                    e.message()
                );
                None
            }
            Err(e) => return Err(e),
        }
    };
    let report = if let Some(store) = store.as_ref().filter(|_| filtered) {
        let mut region = region(filters)?;
        if filters.after > 0 || filters.limit.is_some() {
            let end = filters.limit.map_or(u64::MAX, |n| {
                filters.after.saturating_add(n as u64).saturating_add(1)
            });
            region = region.sequences(filters.after + 1..end);
        }
        store.verify_region(&region)?
    } else if let Some(store) = &store {
        let mut progress = Progress::new();
        let report =
            store.verify_with_progress(|done, total| progress.update("verifying", done, total))?;
        progress.finish();
        report
    } else {
        batpak::proof::verify_dir(&ctx.dir)?
    };
    let body = &report.body;
    if ctx.json {
        print_json(&json!({
            "clean": body.is_clean(),
            "report": serde_json::to_value(body)?,
            "body_hash": report.body_hash.to_string(),
        }))?;
    } else {
        out(&format!(
            "verified {} events in {} segment(s), {} bytes; {} redacted\nrunning hash {} at sequence {}\n",
            body.events,
            body.segments,
            body.bytes,
            body.redacted,
            body.running_hash.as_deref().unwrap_or("-"),
            body.last_sequence
        ))?;
        if body.is_clean() && store.is_none() {
            out("clean: every checksum, hash and chain link checks (offline: no index)\n")?;
        } else if body.is_clean() {
            out("clean: every checksum, hash, chain link and index entry checks\n")?;
        } else {
            let rows: Vec<Vec<String>> = body
                .findings
                .iter()
                .map(|f| {
                    vec![
                        format!("{:?}", f.check),
                        f.file.clone(),
                        f.offset.to_string(),
                        f.sequence.map_or("-".into(), |s| s.to_string()),
                        f.event.clone().unwrap_or_else(|| "-".into()),
                        f.detail.clone(),
                    ]
                })
                .collect();
            out(&table(
                &["CHECK", "FILE", "OFFSET", "SEQ", "EVENT", "DETAIL"],
                &rows,
            ))?;
        }
    }
    if body.is_clean() {
        Ok(())
    } else {
        Err(Failure::new(format!("{} finding(s)", body.findings.len())))
    }
}

pub fn verify_receipt(ctx: &Context, receipt: Option<String>) -> Outcome {
    let text = input(receipt, "receipt")?;
    let receipt: AppendReceipt = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("the receipt is not a receipt's JSON: {e}")))?;
    let store = ctx.open_read()?;
    let check = store.verify_receipt(&receipt)?;
    let verdict = match &check {
        ReceiptCheck::Signed { key_id } => format!("valid, signed by key {key_id}"),
        ReceiptCheck::Unsigned => "valid (unsigned)".to_string(),
        ReceiptCheck::UnknownKey { key_id } => {
            format!("signed by key {key_id}, which is not trusted (pass --trust-key)")
        }
        ReceiptCheck::BadSignature { key_id } => {
            format!("the signature does not verify under key {key_id}: the receipt was changed")
        }
        ReceiptCheck::NoSuchEvent { event_id } => format!("the store has no event {event_id}"),
        ReceiptCheck::Mismatch {
            field,
            receipt,
            stored,
        } => format!("{field:?} differs: the receipt says {receipt}, the store holds {stored}"),
        other => format!("{other:?}"),
    };
    if ctx.json {
        print_json(&json!({ "valid": check.is_valid(), "outcome": verdict }))?;
    } else {
        out(&format!("receipt {}: {verdict}\n", receipt.event_id))?;
    }
    if check.is_valid() {
        Ok(())
    } else {
        Err(Failure::new(verdict))
    }
}

pub fn anchor(ctx: &Context) -> Outcome {
    let store = ctx.open_read()?;
    let anchor = store.anchor()?;
    let json = serde_json::to_value(anchor)?;
    if ctx.json {
        return print_json(&json);
    }
    out(&format!(
        "anchor at sequence {} ({}), running hash {}\n{}\nkeep this line outside the store; `batpak verify-anchor` checks it\n",
        anchor.sequence,
        if anchor.signature.is_some() { "signed" } else { "unsigned: pass --signing-key to sign" },
        anchor.running_hash,
        json
    ))
}

pub fn verify_anchor(ctx: &Context, anchor: Option<String>) -> Outcome {
    let text = input(anchor, "anchor")?;
    let anchor: batpak::proof::Anchor = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("the anchor is not an anchor's JSON: {e}")))?;
    let store = ctx.open_read()?;
    let check = store.verify_against(&anchor)?;
    let verdict = match &check {
        AnchorCheck::Holds { signed_by: Some(k) } => {
            format!(
                "holds: the history up to sequence {} is the anchored one (signed by {k})",
                anchor.sequence
            )
        }
        AnchorCheck::Holds { signed_by: None } => {
            format!(
                "holds: the history up to sequence {} is the anchored one",
                anchor.sequence
            )
        }
        AnchorCheck::Truncated { anchored, present } => {
            format!("truncated: the anchor covers sequence {anchored}, the store ends at {present}")
        }
        AnchorCheck::Compacted {
            anchored,
            compacted_through,
        } => format!(
            "compacted: sequence {anchored} lies in the range compaction rewrote (through {compacted_through}); what it removed was hidden by recorded policies and deletions (run verify), and the kept history cannot be rehashed to this anchor"
        ),
        AnchorCheck::Rewritten { anchored, .. } => {
            format!("rewritten: the history up to sequence {anchored} is not the anchored one")
        }
        AnchorCheck::UnknownKey { key_id } => {
            format!("signed by key {key_id}, which is not trusted (pass --trust-key)")
        }
        AnchorCheck::BadSignature { key_id } => {
            format!("the signature does not verify under key {key_id}: the anchor was changed")
        }
        other => format!("{other:?}"),
    };
    if ctx.json {
        let compacted = matches!(check, AnchorCheck::Compacted { .. });
        print_json(&json!({ "holds": check.holds(), "compacted": compacted, "outcome": verdict }))?;
    } else {
        out(&format!("{verdict}\n"))?;
    }
    // A compacted verdict is not a failure: the removal is recorded and verified.
    if check.holds() || matches!(check, AnchorCheck::Compacted { .. }) {
        Ok(())
    } else {
        Err(Failure::new(verdict))
    }
}

pub fn keygen(ctx: &Context, file: &std::path::Path) -> Outcome {
    use std::io::Write;
    let key = batpak::proof::SigningKey::generate()?;
    let secret: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(file).map_err(|e| {
        Failure::new(format!(
            "cannot create {} for the secret key: {e}{}",
            file.display(),
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (keygen never overwrites a key)"
            } else {
                ""
            }
        ))
    })?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", file.display())))?;
    print_key(ctx, &key, Some(file))
}

pub fn pubkey(ctx: &Context, file: Option<&std::path::Path>) -> Outcome {
    let key = match (file, &ctx.signing_key) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
            text.trim()
                .parse::<batpak::proof::SigningKey>()
                .map_err(|e| {
                    Failure::new(format!(
                        "{} holds no secret key (not shown): {e}",
                        path.display()
                    ))
                })?
        }
        (None, Some(key)) => key.clone(),
        (None, None) => {
            return Err(Failure::new(
                "no key: give a FILE, --signing-key HEX or $BATPAK_SIGNING_KEY".to_string(),
            ))
        }
    };
    print_key(ctx, &key, None)
}

fn print_key(
    ctx: &Context,
    key: &batpak::proof::SigningKey,
    file: Option<&std::path::Path>,
) -> Outcome {
    let public = key.verifying_key();
    if ctx.json {
        print_json(&json!({
            "public_key": public.to_string(),
            "key_id": key.key_id().to_string(),
            "secret_file": file.map(|f| f.display().to_string()),
        }))
    } else {
        let mut text = String::new();
        if let Some(f) = file {
            text.push_str(&format!(
                "secret key written to {} (mode 0600)\n",
                f.display()
            ));
        }
        text.push_str(&format!(
            "public key {public}\nkey id     {}\n",
            key.key_id()
        ));
        out(&text)
    }
}
