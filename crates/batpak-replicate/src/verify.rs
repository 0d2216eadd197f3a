//! Downstream verification: rechecks a copy on its own (no access to the store): every
//! row's hash recomputed from its fields, every entity's chain link, sequence
//! density, the JSON view against the bytes, and the sink's position; names the first
//! row that does not hold.

use std::collections::HashMap;

use base64::Engine as _;
use batpak::proof::{Anchor, CompactionProof, KeptHash, RunningHash, VerifyingKey};
use batpak::{Compacted, EventPayload, ExportLine, Hash};
use serde_json::{json, Value};

/// What `verify-replica` found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaReport {
    /// Rows checked.
    pub rows: u64,
    /// The sink's recorded position.
    pub position: u64,
    /// The store-wide running hash over the rows (equal to an anchor's at its
    /// sequence exactly when the copy holds the anchored history).
    pub running_hash: Hash,
    /// The anchors checked and found to hold.
    pub anchors_held: usize,
    /// Anchors inside a compacted range the copy lacks events of: their running hash
    /// cannot be recomputed (the compaction manifest accounts for the range).
    pub anchors_compacted: usize,
    /// The end of the compacted range, when the copy is of a compacted store.
    pub compacted_through: Option<u64>,
    /// The first row (or gap) that does not hold; `None` when the copy is clean.
    pub problem: Option<ReplicaProblem>,
}

/// A row or gap that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaProblem {
    /// The sequence of the row (or of the first missing one).
    pub sequence: u64,
    /// The row's event id, when there is a row.
    pub id: Option<String>,
    /// What does not hold, expected against actual.
    pub detail: String,
}

impl std::fmt::Display for ReplicaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(
                f,
                "sequence {} (event {id}): {}",
                self.sequence, self.detail
            ),
            None => write!(f, "sequence {}: {}", self.sequence, self.detail),
        }
    }
}

const PAGE: i64 = 5_000;

fn problem_of_anchor(anchor: &Anchor, detail: String) -> ReplicaProblem {
    ReplicaProblem {
        sequence: anchor.sequence,
        id: None,
        detail: format!(
            "the anchor at sequence {} does not hold: {detail}",
            anchor.sequence
        ),
    }
}

fn view_of(encoding: &str, bytes: &[u8]) -> Option<Value> {
    match encoding {
        "json" => serde_json::from_slice(bytes).ok(),
        "message_pack" => rmp_serde::from_slice(bytes).ok(),
        _ => None,
    }
}

/// The columns `row_of` reads, in its order.
pub(crate) const COLUMNS: &str =
    "sequence, id::text, timestamp_ns, entity, scope, version, kind, kind_name,
     schema_version, encoding, payload, payload_json, causation::text, correlation::text,
     metadata, redacted, salt, digest, idempotency, flags, prev_hash, event_hash";

/// A row of the events table, as the export line it copies and what it keeps beside.
pub(crate) struct Row {
    pub sequence: u64,
    pub line: ExportLine,
    pub encoding: String,
    pub payload: Option<Vec<u8>>,
    pub payload_json: Option<Value>,
}

/// A row (selected as `COLUMNS`) back to its export line.
pub(crate) fn row_of(row: &tokio_postgres::Row) -> Result<Row, String> {
    let sequence = row.get::<_, i64>(0).max(0) as u64;
    let encoding: String = row.get(9);
    let payload: Option<Vec<u8>> = row.get(10);
    let payload_json: Option<Value> = row.get(11);
    let line = json!({
        "sequence": sequence,
        "id": row.get::<_, String>(1),
        "timestamp_ns": row.get::<_, i64>(2),
        "entity": row.get::<_, String>(3),
        "scope": row.get::<_, String>(4),
        "version": row.get::<_, i64>(5),
        "kind": row.get::<_, String>(6),
        "kind_name": row.get::<_, Option<String>>(7),
        "schema_version": row.get::<_, i32>(8),
        "encoding": encoding,
        "bytes": payload.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        "causation": row.get::<_, Option<String>>(12),
        "correlation": row.get::<_, Option<String>>(13),
        "metadata": row.get::<_, Value>(14),
        "redacted": row.get::<_, bool>(15),
        "salt": row.get::<_, Option<String>>(16),
        "digest": row.get::<_, Option<String>>(17),
        "idempotency": row.get::<_, Option<String>>(18),
        "flags": row.get::<_, i32>(19),
        "prev_hash": row.get::<_, String>(20),
        "event_hash": row.get::<_, String>(21),
    });
    let line: ExportLine =
        serde_json::from_value(line).map_err(|e| format!("the row does not form an event: {e}"))?;
    Ok(Row {
        sequence,
        line,
        encoding,
        payload,
        payload_json,
    })
}

/// The checks every copy gets, fed its events in sequence order: density, each
/// event's hash recomputed from its fields, each entity's chain, the running hash and
/// the anchors at their sequences; and, for a copy of a compacted store, the
/// compaction proof's gaps, horizons, kept hash and `Compacted` record.
pub(crate) struct Checker<'a> {
    pub report: ReplicaReport,
    pending: std::iter::Peekable<std::vec::IntoIter<&'a Anchor>>,
    running: RunningHash,
    heads: HashMap<String, (u64, Hash)>,
    /// The next sequence the copy must hold.
    pub expected: u64,
    compaction: Option<CompactionProof>,
    kept: KeptHash,
    kept_count: u64,
    /// No compacted gap skipped so far: the running hash is the copy's own.
    dense: bool,
    /// Past the compacted range (its kept hash checked).
    crossed: bool,
    /// A `Compacted` record naming the proof's manifest was seen.
    named: bool,
}

impl<'a> Checker<'a> {
    /// A checker of a copy whose position is `position`, which must hold `anchors`
    /// (their signatures under `keys` are checked first), compacted as `compaction`
    /// says when the copy keeps a compaction manifest.
    pub fn new(
        position: u64,
        anchors: &'a [Anchor],
        keys: &[VerifyingKey],
        compaction: Option<CompactionProof>,
    ) -> Result<Checker<'a>, Box<ReplicaReport>> {
        let mut report = ReplicaReport {
            rows: 0,
            position,
            running_hash: Hash::ZERO,
            anchors_held: 0,
            anchors_compacted: 0,
            compacted_through: compaction.as_ref().map(|c| c.through),
            problem: None,
        };
        for anchor in anchors {
            let check = anchor.check_signature(keys);
            if !check.holds() {
                report.problem = Some(problem_of_anchor(
                    anchor,
                    format!("its signature does not hold: {check:?}"),
                ));
                return Err(Box::new(report));
            }
        }
        let mut sorted: Vec<&Anchor> = anchors.iter().collect();
        sorted.sort_by_key(|a| a.sequence);
        Ok(Checker {
            report,
            pending: sorted.into_iter().peekable(),
            running: RunningHash::default(),
            heads: HashMap::new(),
            expected: 1,
            compaction,
            kept: KeptHash::default(),
            kept_count: 0,
            dense: true,
            crossed: false,
            named: false,
        })
    }

    /// Whether the copy's next event, at `sequence`, is the one it must hold next
    /// (after a gap only where a compaction removed what is missing).
    pub fn next_is(
        &mut self,
        sequence: u64,
        next: impl FnOnce() -> String,
    ) -> Result<(), ReplicaProblem> {
        self.report.rows += 1;
        if sequence != self.expected {
            let removed = self
                .compaction
                .as_ref()
                .is_some_and(|c| c.explains_gap(self.expected, sequence));
            if !removed {
                return Err(ReplicaProblem {
                    sequence: self.expected,
                    id: None,
                    detail: format!("missing: {}", next()),
                });
            }
            self.dense = false;
        }
        self.expected = sequence + 1;
        Ok(())
    }

    /// Whether a gap from the next expected sequence to `found` is one the copy's
    /// compaction explains.
    pub fn explains_gap(&self, found: u64) -> bool {
        self.compaction
            .as_ref()
            .is_some_and(|c| c.explains_gap(self.expected, found))
    }

    /// Past the compacted range: the kept events must hash and count to what the
    /// proof says, and the running hash goes on from the proof's.
    fn cross(&mut self) -> Result<(), ReplicaProblem> {
        let Some(c) = &self.compaction else {
            return Ok(());
        };
        self.crossed = true;
        if (self.kept.value(), self.kept_count) != (c.kept_hash, c.kept) {
            return Err(ReplicaProblem {
                sequence: c.through,
                id: None,
                detail: format!(
                    "the kept events up to sequence {} (the compacted range) hash to {} and count {}, the compaction manifest says {} and {}: a kept event was changed, removed or added",
                    c.through,
                    self.kept.value(),
                    self.kept_count,
                    c.kept_hash,
                    c.kept
                ),
            });
        }
        if self.dense && self.running.value() != c.running_hash {
            return Err(ReplicaProblem {
                sequence: c.through,
                id: None,
                detail: format!(
                    "the copy holds every event up to sequence {} but its running hash there is {}, the compaction manifest's {}",
                    c.through,
                    self.running.value(),
                    c.running_hash
                ),
            });
        }
        self.running = RunningHash::starting_at(c.running_hash);
        Ok(())
    }

    /// Checks the event at `sequence` (already passed by `next_is`), as `line`.
    pub fn event(
        &mut self,
        sequence: u64,
        id: &str,
        line: &ExportLine,
    ) -> Result<(), ReplicaProblem> {
        let bad = |detail: String| ReplicaProblem {
            sequence,
            id: Some(id.to_string()),
            detail,
        };
        // The hash recomputed from every field the copy holds.
        let event = line.to_preserved().map_err(bad)?;
        if !self.crossed
            && self
                .compaction
                .as_ref()
                .is_some_and(|c| sequence > c.through)
        {
            self.cross()?;
        }
        let entity = event.coordinate.entity().to_string();
        let hash = event.event_hash();
        let horizon = self
            .compaction
            .as_ref()
            .and_then(|c| c.horizon(&entity))
            .map(|h| (h.first_kept, h.hash));
        let (want_version, want_prev) = match (self.heads.get(&entity), horizon) {
            (Some((version, hash)), _) => (version + 1, *hash),
            // A compacted entity's copy may start at its horizon, or hold it all.
            (None, Some((first_kept, at))) if event.version == first_kept => (first_kept, at),
            (None, _) => (0, Hash::ZERO),
        };
        if event.version != want_version || event.prev_hash != want_prev {
            return Err(bad(format!(
                "the chain of {entity:?} breaks: expected version {want_version} after hash {want_prev}, the copy has version {} after {}",
                event.version, event.prev_hash
            )));
        }
        if let Some((first_kept, at)) = horizon {
            if event.version + 1 == first_kept && hash != at {
                return Err(bad(format!(
                    "version {} of {entity:?} (the last the compaction removed) has hash {hash}, the compaction manifest's horizon says {at}",
                    event.version
                )));
            }
        }
        self.heads.insert(entity, (event.version, hash));
        if let Some(c) = &self.compaction {
            let removed = horizon.is_some_and(|(first_kept, _)| event.version < first_kept);
            if sequence <= c.through && !removed {
                self.kept.push(sequence, &hash);
                self.kept_count += 1;
            }
            if event.kind == <Compacted as EventPayload>::KIND {
                let record: Compacted = event.decode().map_err(|e| bad(e.to_string()))?;
                if record.generation == c.generation {
                    if record.manifest != c.digest {
                        return Err(bad(format!(
                            "the Compacted record of generation {} names manifest {}, the copy keeps one whose blake3 is {}",
                            record.generation, record.manifest, c.digest
                        )));
                    }
                    self.named = true;
                }
            }
        }
        self.running.push(sequence, &hash);
        let inside = self
            .compaction
            .as_ref()
            .is_some_and(|c| sequence < c.through)
            && !self.dense;
        while let Some(anchor) = self.pending.next_if(|a| a.sequence == sequence) {
            if inside {
                // The running hash over removed events cannot be recomputed; what was
                // removed is accounted for by the manifest checked at `through`.
                self.report.anchors_compacted += 1;
                continue;
            }
            if anchor.running_hash != self.running.value() {
                return Err(problem_of_anchor(
                    anchor,
                    format!(
                        "the copy's running hash there is {}, not the anchored {}: an event up to it was changed, removed or added",
                        self.running.value(),
                        anchor.running_hash
                    ),
                ));
            }
            self.report.anchors_held += 1;
        }
        Ok(())
    }

    /// The report once every event was checked: anchors past the end, the compacted
    /// range, and the position against the events.
    pub fn finish(mut self) -> ReplicaReport {
        let end = self.expected - 1;
        let covers_range = self.compaction.as_ref().is_some_and(|c| end >= c.through);
        if !self.crossed && covers_range {
            if let Err(p) = self.cross() {
                return self.fail(p);
            }
        }
        let unnamed = self
            .compaction
            .as_ref()
            .filter(|_| self.crossed && !self.named)
            .map(|c| ReplicaProblem {
                sequence: c.through,
                id: None,
                detail: format!(
                    "no Compacted record of generation {} in the copy names the compaction manifest it keeps (blake3 {})",
                    c.generation, c.digest
                ),
            });
        if let Some(p) = unnamed {
            return self.fail(p);
        }
        self.report.running_hash = self.running.value();
        if let Some(anchor) = self.pending.next() {
            self.report.problem = Some(problem_of_anchor(
                anchor,
                format!("the copy ends at sequence {end}, before the anchor"),
            ));
        } else if self.report.position != end {
            self.report.problem = Some(ReplicaProblem {
                sequence: self.report.position.min(self.expected),
                id: None,
                detail: format!(
                    "the position says {} but the events end at {end}",
                    self.report.position
                ),
            });
        }
        self.report
    }

    /// The report with `problem`.
    pub fn fail(mut self, problem: ReplicaProblem) -> ReplicaReport {
        self.report.running_hash = self.running.value();
        self.report.problem = Some(problem);
        self.report
    }
}

/// Rechecks the copy in `schema` of the database at `url`, and each of `anchors`
/// (taken of the store with `batpak anchor`) against it, their signatures under
/// `keys`.
pub async fn verify_postgres(
    url: &str,
    schema: &str,
    anchors: &[Anchor],
    keys: &[VerifyingKey],
) -> Result<ReplicaReport, String> {
    let client = crate::postgres::connect(url, schema).await?;
    let position = crate::postgres::sink_position(&client, schema).await?;
    // The anchors given, and the ones the replicator kept in the copy.
    let mut all = anchors.to_vec();
    all.extend(crate::postgres::copy_anchors(&client, schema).await?);
    let compaction = crate::postgres::copy_compaction(&client, schema).await?;
    let mut checker = match Checker::new(position, &all, keys, compaction) {
        Ok(c) => c,
        Err(report) => return Ok(*report),
    };
    let mut after = 0i64;
    loop {
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {schema}.events WHERE sequence > $1 ORDER BY sequence LIMIT $2"
                ),
                &[&after, &PAGE],
            )
            .await
            .map_err(|e| format!("{schema}.events: {e}"))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let sequence = row.get::<_, i64>(0).max(0) as u64;
            after = row.get(0);
            let id: String = row.get(1);
            if let Err(p) = checker.next_is(sequence, || {
                format!("the next row is at sequence {sequence}")
            }) {
                return Ok(checker.fail(p));
            }
            let bad = |detail: String| ReplicaProblem {
                sequence,
                id: Some(id.clone()),
                detail,
            };
            let Row {
                line,
                encoding,
                payload,
                payload_json,
                ..
            } = match row_of(row) {
                Ok(r) => r,
                Err(why) => return Ok(checker.fail(bad(why))),
            };
            if let Some(bytes) = &payload {
                if payload_json != view_of(&encoding, bytes) {
                    return Ok(checker.fail(bad(format!(
                        "payload_json {} is not the JSON view of the payload bytes",
                        payload_json.map_or_else(|| "NULL".into(), |v| v.to_string())
                    ))));
                }
            }
            if let Err(p) = checker.event(sequence, &id, &line) {
                return Ok(checker.fail(p));
            }
        }
    }
    Ok(checker.finish())
}
