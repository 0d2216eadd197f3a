//! Salvage: copy every readable event of a damaged store into a new one, and say
//! exactly what was lost.
//!
//! The source is read file by file without opening it (as `proof::verify_dir`
//! does): each frame is decoded and checksummed; after one that is not, the read
//! resumes at the next frame whose checksum holds. Events go over a whole source
//! batch at a time. Until the first loss each batch keeps its identity
//! (`Store::import_preserved`: ids, sequences, timestamps, hashes, idempotency
//! digests), so everything before the damage is an exact replica. After a loss the
//! sequence has a gap the store cannot hold, so later batches are re-appended as new
//! events (same coordinate, kind, schema version, payload bytes and metadata, plus
//! `batpak.salvaged_from` naming the original id), with causes and correlations
//! renamed to their new ids; a cause that was lost is dropped and reported. Store
//! records and redacted events after a loss are not carried over (they describe, or
//! no longer hold, what the source had), and are reported too.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::coordinate::{Coordinate, STORE_ENTITY_PREFIX};
use crate::error::{Error, Result};
use crate::event::{Batch, RawPayload, StoredEvent};
use crate::format::record;
use crate::format::segment::HEADER_LEN;
use crate::id::EventId;
use crate::options::AppendOptions;
use crate::store::Store;

/// Metadata key a re-appended event carries: its id in the damaged store.
pub const SALVAGED_FROM_KEY: &str = "batpak.salvaged_from";
/// The report salvage writes into the new store's directory.
pub const SALVAGE_REPORT_FILE: &str = "salvage-report.json";

/// What `Store::salvage` did.
///
/// Serde: an object of the fields, `losses` in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SalvageReport {
    /// Events copied with their identity (ids, sequences, hashes).
    pub preserved: u64,
    /// Events re-appended as new events after the first loss.
    pub reappended: u64,
    /// Everything that did not come over, each naming where and why.
    pub losses: Vec<SalvageLoss>,
}

/// One thing salvage could not carry over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SalvageLoss {
    /// The segment file (name only).
    pub file: String,
    /// Byte offset in it.
    pub offset: u64,
    /// The sequence, when the record could be read.
    pub sequence: Option<u64>,
    /// The entity, when the record could be read.
    pub entity: Option<String>,
    /// Why, with the byte range when bytes could not be read.
    pub why: String,
}

impl SalvageReport {
    /// Whether everything came over.
    pub fn is_complete(&self) -> bool {
        self.losses.is_empty()
    }
}

/// A readable record and where it was.
struct Found {
    event: StoredEvent,
    file: String,
    offset: u64,
}

impl Store {
    /// Copies every readable event of the store in `src` (which need not open) into a
    /// new store at `dst` (absent or an empty directory), and returns, and writes to
    /// `dst/salvage-report.json`, what was lost. See the module documentation of
    /// `salvage.rs` for what keeps its identity. `src` is only read.
    pub fn salvage(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<SalvageReport> {
        let (src, dst) = (src.as_ref(), dst.as_ref());
        if std::fs::read_dir(dst).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::InvalidConfig {
                reason: format!("salvage destination {} is not empty", dst.display()),
            });
        }
        let store = Store::open(dst)?;
        let mut run = Run {
            store: &store,
            report: SalvageReport::default(),
            preserving: true,
            renamed: HashMap::new(),
            batch: Vec::new(),
        };
        crate::segment::walk_offline(src, |f| {
            if let Some((from, to)) = f.missing_before {
                run.lose_batch("a record of its batch was in a missing segment");
                run.lose(&f.name, 0, format!("segments {from} to {to} are missing"));
                run.preserving = false;
            }
            if let Some(e) = &f.bad_header {
                // Nothing is lost with a header alone: its records are read all the same.
                run.lose(
                    &f.name,
                    0,
                    format!(
                        "the segment header does not decode ({e}); its records were read anyway"
                    ),
                );
            }
            run.segment(&f)
        })?;
        run.lose_batch("the history ends inside its batch");
        let report = run.report;
        store.close()?;
        let text = serde_json::to_vec_pretty(&report).map_err(|e| Error::InvalidConfig {
            reason: format!("salvage report: {e}"),
        })?;
        crate::dir::replace_file(dst, SALVAGE_REPORT_FILE, &text)?;
        Ok(report)
    }
}

struct Run<'s> {
    store: &'s Store,
    report: SalvageReport,
    /// No loss yet: batches keep their identity.
    preserving: bool,
    /// Source id to the id it has in the new store.
    renamed: HashMap<EventId, EventId>,
    /// The source batch being gathered.
    batch: Vec<Found>,
}

impl Run<'_> {
    /// Reads one segment file's records, resuming after damage.
    fn segment(&mut self, file: &crate::segment::OfflineFile) -> Result<()> {
        let (bytes, name) = (&file.bytes, file.name.as_str());
        for frame in record::frames(bytes, HEADER_LEN) {
            match frame {
                record::Frame::Record { offset, view, .. } => {
                    let coordinate = Coordinate::new(view.entity, view.scope)?;
                    let event = StoredEvent::from_record(&view, view.header.sequence, &coordinate)
                        .map_err(|detail| Error::Corrupt {
                            path: file.path.clone(),
                            offset: offset as u64,
                            detail,
                        })?;
                    let continues = event.continues_batch();
                    self.batch.push(Found {
                        event,
                        file: name.to_string(),
                        offset: offset as u64,
                    });
                    if !continues {
                        self.carry_batch()?;
                    }
                }
                record::Frame::Damaged { offset, end, error } => {
                    self.lose_batch("a record of its batch is in damaged bytes");
                    self.lose(
                        name,
                        offset as u64,
                        format!(
                            "{} bytes to offset {end} cannot be read: {error}",
                            end - offset
                        ),
                    );
                    self.preserving = false;
                }
            }
        }
        Ok(())
    }

    /// Records a loss of bytes no event could be read from.
    fn lose(&mut self, file: &str, offset: u64, why: String) {
        self.report.losses.push(SalvageLoss {
            file: file.to_string(),
            offset,
            sequence: None,
            entity: None,
            why,
        });
    }

    /// Reports the gathered batch as lost: part of it is missing, and a batch is
    /// all or nothing.
    fn lose_batch(&mut self, why: &str) {
        for found in self.batch.drain(..) {
            self.report.losses.push(SalvageLoss {
                file: found.file,
                offset: found.offset,
                sequence: Some(found.event.sequence),
                entity: Some(found.event.coordinate.entity().to_string()),
                why: why.to_string(),
            });
        }
    }

    /// Writes the gathered batch to the new store.
    fn carry_batch(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        if self.preserving {
            let events: Vec<StoredEvent> = batch.iter().map(|f| f.event.clone()).collect();
            match self.store.import_preserved(&events) {
                Ok(receipts) => {
                    for e in &events {
                        self.renamed.insert(e.id, e.id);
                    }
                    self.report.preserved += receipts.len() as u64;
                    return Ok(());
                }
                // A gap, a broken link: from here on, events are re-appended.
                Err(Error::NotPreserved { .. }) => self.preserving = false,
                Err(e) => return Err(e),
            }
        }
        self.reappend(batch)
    }

    fn reappend(&mut self, batch: Vec<Found>) -> Result<()> {
        let mut out = Batch::new();
        let mut carried: Vec<EventId> = Vec::new();
        for found in batch {
            let e = &found.event;
            let skip = if e.kind.is_reserved()
                || e.coordinate.entity().starts_with(STORE_ENTITY_PREFIX)
            {
                Some("a store record after a loss is not carried over")
            } else if e.is_redacted() {
                Some("a redacted event after a loss cannot be re-appended (its payload is erased)")
            } else {
                None
            };
            if let Some(why) = skip {
                self.report.losses.push(SalvageLoss {
                    file: found.file.clone(),
                    offset: found.offset,
                    sequence: Some(e.sequence),
                    entity: Some(e.coordinate.entity().to_string()),
                    why: why.to_string(),
                });
                continue;
            }
            let mut metadata = e.metadata.clone();
            metadata.insert(SALVAGED_FROM_KEY, e.id.to_string());
            let mut options = AppendOptions::default().metadata(metadata);
            if let Some(cause) = e.causation {
                match carried.iter().position(|c| *c == cause) {
                    Some(i) => options = options.caused_by_item(i),
                    None => match self.renamed.get(&cause) {
                        Some(new) => options = options.caused_by(*new),
                        None => self.report.losses.push(SalvageLoss {
                            file: found.file.clone(),
                            offset: found.offset,
                            sequence: Some(e.sequence),
                            entity: Some(e.coordinate.entity().to_string()),
                            why: format!("its cause {cause} was lost; re-appended without it"),
                        }),
                    },
                }
            }
            if let Some(correlation) = e.correlation {
                options =
                    options.correlation(*self.renamed.get(&correlation).unwrap_or(&correlation));
            }
            let raw = RawPayload {
                bytes: &e.payload,
                encoding: e.encoding,
                schema_version: e.schema_version,
            };
            out.push_raw(&e.coordinate, e.kind, raw, options);
            carried.push(e.id);
        }
        if out.is_empty() {
            return Ok(());
        }
        let receipts = self.store.append_batch(&out)?;
        for (old, r) in carried.iter().zip(&receipts) {
            self.renamed.insert(*old, r.event_id);
        }
        self.report.reappended += receipts.len() as u64;
        Ok(())
    }
}
