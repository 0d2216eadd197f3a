//! Reading a JetStream copy on its own: `verify-replica nats://…` rechecks every
//! message (its body's hash, its subject and `Nats-Msg-Id` against the body, store
//! order, density, each chain, the anchors), and the follower imports the messages
//! into a replica. A deleted original is stood for by its erased copy; a hole with
//! none is a missing message, and an event message after a later one is out of order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use batpak::proof::{Anchor, VerifyingKey};
use batpak::{ExportLine, Store, StoredEvent};

use crate::follow::{Behind, FollowStatus};
use crate::jetstream::{
    connect, copy_anchors, erased_copies, event_subject, header, locate, next_batch, reader,
    tail_position, Conn, Message, TailError,
};
use crate::verify::{Checker, ReplicaProblem, ReplicaReport};

/// Messages read per fetch.
const FETCH: usize = 1_000;
/// How often a caught-up follower looks for more.
const POLL: Duration = Duration::from_millis(50);

fn tail_text(e: TailError) -> String {
    match e {
        TailError::Server(why) | TailError::Foreign(why) => why,
    }
}

/// The stream's first and last sequence and the copy's position.
async fn ends(conn: &Conn, name: &str) -> Result<(u64, u64, u64), String> {
    let info = conn
        .stream
        .get_info()
        .await
        .map_err(|e| format!("the stream {}: {e}", conn.stream.cached_info().config.name))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let position = tail_position(&conn.stream, name).await.map_err(tail_text)?;
    Ok((first, last, position))
}

/// An event message as the line it carries, checked against its headers and
/// subject; `Err` names what does not hold.
fn event_of(name: &str, m: &Message) -> Result<(u64, ExportLine), ReplicaProblem> {
    let at = m.stream_seq;
    let Some(sequence) = m.sequence() else {
        return Err(ReplicaProblem {
            sequence: 0,
            id: None,
            detail: format!("the message at stream sequence {at} has no Batpak-Sequence header"),
        });
    };
    let bad = |id: Option<String>, detail: String| ReplicaProblem {
        sequence,
        id,
        detail: format!("the message at stream sequence {at}: {detail}"),
    };
    let line = m.line().map_err(|why| bad(None, why))?;
    let id = line.id.map(|id| id.to_string());
    if line.sequence != Some(sequence) {
        return Err(bad(
            id,
            format!(
                "its body is of sequence {:?}, its header says {sequence}",
                line.sequence
            ),
        ));
    }
    let msg_id = header(&m.headers, "Nats-Msg-Id").map(str::to_string);
    if msg_id != id {
        return Err(bad(
            id,
            format!("its Nats-Msg-Id is {msg_id:?}, not the event's id"),
        ));
    }
    let subject = event_subject(name, &line.scope, &line.entity);
    if m.subject != subject {
        return Err(bad(
            id,
            format!("it is on {}, not its event's subject {subject}", m.subject),
        ));
    }
    Ok((sequence, line))
}

/// Feeds `line` at `sequence` to the checker.
fn check(
    checker: &mut Checker<'_>,
    sequence: u64,
    line: &ExportLine,
) -> Result<(), ReplicaProblem> {
    let id = line.id.map_or_else(String::new, |id| id.to_string());
    checker.next_is(sequence, String::new)?;
    checker.event(sequence, &id, line)
}

/// Rechecks the copy named `name` on the server at `url`, and each of `anchors`
/// against it, their signatures under `keys`.
pub async fn verify_jetstream(
    url: &str,
    name: &str,
    anchors: &[Anchor],
    keys: &[VerifyingKey],
) -> Result<ReplicaReport, String> {
    let conn = connect(url, name, false).await?;
    let (first, last, position) = ends(&conn, name).await?;
    // The anchors given, and the ones the replicator kept in the stream.
    let mut all = anchors.to_vec();
    all.extend(copy_anchors(&conn.stream, name).await?);
    let compaction = crate::jetstream::copy_compaction(&conn.stream, name).await?;
    let mut checker = match Checker::new(position, &all, keys, compaction) {
        Ok(c) => c,
        Err(report) => return Ok(*report),
    };
    let mut erased = BTreeMap::new();
    erased_copies(&conn.stream, name, first, &mut erased).await?;
    // Holes up to `before` filled from erased copies; a hole with none is missing.
    let fill = |checker: &mut Checker<'_>,
                erased: &BTreeMap<u64, (u64, ExportLine)>,
                before: u64,
                next: &dyn Fn() -> String|
     -> Result<(), ReplicaProblem> {
        while checker.expected < before {
            let Some((_, line)) = erased.get(&checker.expected) else {
                if checker.explains_gap(before) {
                    // Removed by a compaction the copy's manifest accounts for.
                    return Ok(());
                }
                return Err(ReplicaProblem {
                    sequence: checker.expected,
                    id: None,
                    detail: format!("missing: no message holds it; {}", next()),
                });
            };
            if !line.redacted {
                return Err(ReplicaProblem {
                    sequence: checker.expected,
                    id: line.id.map(|id| id.to_string()),
                    detail: "its erased copy is not redacted".into(),
                });
            }
            check(checker, checker.expected, line)?;
        }
        Ok(())
    };
    if last > 0 {
        let consumer = reader(&conn.stream, format!("batpak.{name}.*.*"), first).await?;
        let mut at = 0;
        while at < last {
            let batch = next_batch(&consumer, FETCH).await?;
            if batch.is_empty() {
                break;
            }
            for m in &batch {
                at = m.stream_seq;
                if let Some(sequence) = m.sequence().filter(|s| *s < checker.expected) {
                    let after = checker.expected - 1;
                    return Ok(checker.fail(ReplicaProblem {
                        sequence,
                        id: header(&m.headers, "Nats-Msg-Id").map(str::to_string),
                        detail: format!(
                            "out of order: the message at stream sequence {} holds it after sequence {} (a message moved or published again)",
                            m.stream_seq, after
                        ),
                    }));
                }
                let (sequence, line) = match event_of(name, m) {
                    Ok(e) => e,
                    Err(p) => return Ok(checker.fail(p)),
                };
                let next = || {
                    format!(
                        "the next message (stream sequence {}) holds sequence {sequence}",
                        m.stream_seq
                    )
                };
                if let Err(p) = fill(&mut checker, &erased, sequence, &next) {
                    return Ok(checker.fail(p));
                }
                if let Err(p) = check(&mut checker, sequence, &line) {
                    return Ok(checker.fail(p));
                }
            }
        }
    }
    let end = position + 1;
    let next = || format!("the copy's position is {position}");
    if let Err(p) = fill(&mut checker, &erased, end, &next) {
        return Ok(checker.fail(p));
    }
    Ok(checker.finish())
}

/// Follows the copy named `name` at `url` into `replica` (a writable store that holds
/// nothing else), verifying each message's hash as it is imported: until `stop`
/// completes, or, with `until_caught_up`, until it holds what the copy held when it
/// started. Returns the replica's position.
pub async fn follow_jetstream(
    replica: Arc<Store>,
    url: &str,
    name: &str,
    until_caught_up: bool,
    stop: impl std::future::Future<Output = ()>,
    mut on_status: impl FnMut(&FollowStatus),
) -> Result<u64, String> {
    let conn = connect(url, name, false).await?;
    tokio::pin!(stop);
    let mut status = FollowStatus {
        position: replica.frontier().visible,
        ..FollowStatus::default()
    };
    let (first, last, goal) = ends(&conn, name).await?;
    status.source = goal;
    let start = match locate(&conn.stream, name, first, last, status.position + 1).await? {
        Some(m) => m.stream_seq,
        None => last + 1,
    };
    let consumer = reader(&conn.stream, format!("batpak.{name}.>"), start).await?;
    let mut erased = BTreeMap::new();
    let mut erased_from = erased_copies(&conn.stream, name, first, &mut erased).await?;
    // Events read but not imported: the rest of a batch not yet complete.
    let mut pending: Vec<StoredEvent> = Vec::new();
    let mut expected = status.position + 1;
    loop {
        let batch = next_batch(&consumer, FETCH).await?;
        if batch.is_empty() {
            on_status(&status);
            if until_caught_up && status.position >= goal {
                return Ok(status.position);
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = &mut stop => return Ok(status.position),
            }
            if let Ok((_, _, source)) = ends(&conn, name).await {
                status.source = source;
            }
            continue;
        }
        for m in &batch {
            if m.subject == crate::jetstream::erased_subject(name)
                || m.subject == crate::jetstream::anchor_subject(name)
                || m.subject == crate::jetstream::compaction_subject(name)
            {
                // An erased copy stands for an original the follower has (the replica
                // keeps its own copy) or will find deleted ahead; anchors are for
                // verify-replica.
                continue;
            }
            let (sequence, line) =
                event_of(name, m).map_err(|p| format!("the replica stops at {p}"))?;
            if sequence < expected {
                return Err(format!(
                    "the replica stops at sequence {sequence}: the message at stream sequence {} is out of order (after {})",
                    m.stream_seq,
                    expected - 1
                ));
            }
            if sequence > expected && !erased.contains_key(&expected) {
                erased_from = erased_copies(&conn.stream, name, erased_from, &mut erased).await?;
            }
            while expected < sequence {
                let Some((_, filler)) = erased.remove(&expected) else {
                    return Err(format!(
                        "the replica stops at sequence {expected}: no message holds it (the next, at stream sequence {}, holds {sequence})",
                        m.stream_seq
                    ));
                };
                pending.push(preserved(expected, &filler)?);
                expected += 1;
            }
            pending.push(preserved(sequence, &line)?);
            expected = sequence + 1;
        }
        let whole = crate::replicator::complete_batches(&pending);
        if whole == 0 {
            continue;
        }
        let events: Vec<StoredEvent> = pending.drain(..whole).collect();
        let count = events.len() as u64;
        let store = Arc::clone(&replica);
        tokio::task::spawn_blocking(move || store.import_preserved(&events))
            .await
            .map_err(|e| format!("the import did not finish: {e}"))?
            .map_err(|e| format!("the replica refused the copy: {e}"))?;
        status.position = replica.frontier().visible;
        status.imported += count;
        status.source = status.source.max(status.position);
        on_status(&status);
    }
}

fn preserved(sequence: u64, line: &ExportLine) -> Result<StoredEvent, String> {
    line.to_preserved().map_err(|why| {
        format!("the replica stops before sequence {sequence}: the message does not hold: {why}")
    })
}

/// Compares `replica` with the copy named `name` at `url` (for promotion).
pub async fn behind_jetstream(replica: &Store, url: &str, name: &str) -> Result<Behind, String> {
    let conn = connect(url, name, false).await?;
    let (_, _, source) = ends(&conn, name).await?;
    Ok(Behind {
        replica: replica.frontier().visible,
        source,
    })
}
