//! Moving events in and out of a store: export, import, snapshot.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use batpak::{
    AppendOptions, Batch, Coordinate, EventId, ExportLine, Metadata, RawPayload, Store, StoredEvent,
};
use serde_json::json;

use super::{out, print_json, region, Progress};
use crate::cli::{Filters, ImportArgs};
use crate::{Context, Failure, Outcome};

/// Events per atomic import batch (a preserved batch also ends only where the
/// source's batches end).
const IMPORT_BATCH: usize = 1000;

/// Writes every event the filters select, store records and events hidden by
/// retention or deletion included (the journal as it is), as export lines
/// (`batpak::ExportLine`), paging through the store in bounded memory.
pub fn export(ctx: &Context, filters: &Filters, output: Option<&Path>) -> Outcome {
    let store = ctx.open_read()?;
    let region = region(filters)?.with_store_records().with_hidden();
    let limit = filters.limit.unwrap_or(usize::MAX);
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::new(format!("cannot create {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let failed = |e: std::io::Error| match output {
        Some(_) => Failure::from(e),
        None => Failure::writing_stdout(e),
    };
    let total = store.frontier().visible;
    let mut progress = Progress::new();
    let mut written = 0usize;
    let mut text = String::new();
    for event in store.events(&region, filters.after).take(limit) {
        let e = event?;
        text.clear();
        text.push_str(&serde_json::to_string(&store.export_line(&e))?);
        text.push('\n');
        sink.write_all(text.as_bytes()).map_err(failed)?;
        written += 1;
        if written.is_multiple_of(4096) {
            progress.update("exporting", e.sequence, total);
        }
    }
    sink.flush().map_err(failed)?;
    progress.finish();
    if output.is_some() {
        let _ = writeln!(std::io::stderr(), "exported {written} events");
    }
    Ok(())
}

pub fn salvage(ctx: &Context, dest: &Path) -> Outcome {
    ctx.require_store()?;
    let report = Store::salvage(&ctx.dir, dest)?;
    if ctx.json {
        return print_json(&serde_json::to_value(&report)?);
    }
    let mut text = format!(
        "salvaged into {}: {} events with their ids and hashes, {} re-appended after the first loss; {}\n",
        dest.display(),
        report.preserved,
        report.reappended,
        match report.losses.len() {
            0 => "nothing lost".to_string(),
            n => format!("{n} loss(es):"),
        }
    );
    if !report.losses.is_empty() {
        let rows: Vec<Vec<String>> = report
            .losses
            .iter()
            .map(|l| {
                vec![
                    l.file.clone(),
                    l.offset.to_string(),
                    l.sequence.map_or("-".into(), |s| s.to_string()),
                    l.entity.clone().unwrap_or_else(|| "-".into()),
                    l.why.clone(),
                ]
            })
            .collect();
        text.push_str(&crate::render::table(
            &["FILE", "OFFSET", "SEQ", "ENTITY", "WHY"],
            &rows,
        ));
    }
    out(&text)
}

pub fn snapshot(ctx: &Context, dest: &Path) -> Outcome {
    let store = ctx.open_read()?;
    let backup = store.backup(dest)?;
    if ctx.json {
        print_json(&json!({
            "dir": backup.dir.display().to_string(),
            "events": backup.events,
            "segments": backup.segments,
            "bytes": backup.bytes,
        }))
    } else {
        out(&format!(
            "copied {} events ({} segment(s), {} bytes) to {}\n",
            backup.events,
            backup.segments,
            backup.bytes,
            backup.dir.display()
        ))
    }
}

/// `fork DST --at SEQ`: the history up to SEQ as a store of its own.
pub fn fork(ctx: &Context, dest: &Path, at: u64) -> Outcome {
    let store = ctx.open_read()?;
    let fork = store.fork(dest, at)?;
    if ctx.json {
        print_json(&json!({
            "dir": fork.dir.display().to_string(),
            "events": fork.events,
            "segments": fork.segments,
            "linked": fork.linked,
            "bytes": fork.bytes,
        }))
    } else {
        out(&format!(
            "forked {} events to {}: {} segment(s), {} linked, {} bytes copied\n",
            fork.events,
            fork.dir.display(),
            fork.segments,
            fork.linked,
            fork.bytes
        ))
    }
}

/// Reads export lines (or hand-written ones) and appends them: as a replica with
/// `--preserve`, re-appended as new events otherwise. Atomic batches; on a bad line
/// nothing of its batch is written and the error says which lines were.
pub fn import(ctx: &Context, args: &ImportArgs) -> Outcome {
    let file = args.file.as_path();
    let (reader, size): (Box<dyn BufRead>, u64) = if file == Path::new("-") {
        (Box::new(BufReader::new(std::io::stdin())), 0)
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
        let size = f.metadata().map_or(0, |m| m.len());
        (Box::new(BufReader::with_capacity(1 << 16, f)), size)
    };
    let store = ctx.open_write(true)?;
    let name = if file == Path::new("-") {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    let mut mode = if args.preserve {
        let held = store.frontier().written;
        if held != 0 {
            return Err(Failure::new(format!(
                "--preserve imports into an empty store only; {} holds events up to sequence {held}",
                ctx.dir.display()
            )));
        }
        Mode::Preserve(Vec::new())
    } else {
        Mode::Reappend(Reappend {
            source: args.source.clone().unwrap_or_else(|| name.clone()),
            drop_outside_causes: args.drop_outside_causes,
            renamed: HashMap::new(),
            batch: Batch::new(),
            old_ids: Vec::new(),
            names: Vec::new(),
            present: 0,
            skipped_store_records: 0,
            skipped_redacted: 0,
            dropped_causes: 0,
        })
    };
    let mut run = Run {
        store: &store,
        lines: Vec::new(),
        committed_to: 0,
        imported: 0,
    };
    let mut progress = Progress::new();
    let mut read_bytes = 0u64;
    let mut last_line = 0usize;
    for (n, line) in reader.lines().enumerate() {
        let number = n + 1;
        let line = line.map_err(|e| run.fail(&name, number, format!("cannot read it: {e}")))?;
        read_bytes += line.len() as u64 + 1;
        last_line = number;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine = serde_json::from_str(&line)
            .map_err(|e| run.fail(&name, number, format!("not an export line: {e}")))?;
        match &mut mode {
            Mode::Preserve(pending) => {
                let event = parsed
                    .to_preserved()
                    .map_err(|why| run.fail(&name, number, why))?;
                let ends_batch = !event.continues_batch();
                pending.push(event);
                run.lines.push(number);
                if ends_batch && pending.len() >= IMPORT_BATCH {
                    run.commit_preserved(&name, pending)?;
                }
            }
            Mode::Reappend(re) => {
                if re.correlates_pending(&parsed) {
                    run.commit_reappend(&name, re)?;
                }
                re.line(&parsed)
                    .map_err(|why| run.fail(&name, number, why))?;
                if re.old_ids.len() > run.lines.len() {
                    run.lines.push(number);
                }
                if re.batch.len() >= IMPORT_BATCH {
                    run.commit_reappend(&name, re)?;
                }
            }
        }
        progress.update("importing", read_bytes, size);
    }
    match &mut mode {
        Mode::Preserve(pending) => {
            if pending.last().is_some_and(StoredEvent::continues_batch) {
                return Err(run.fail(
                    &name,
                    last_line,
                    "the input ends inside a batch of the source store (is it truncated?)".into(),
                ));
            }
            if !pending.is_empty() {
                run.commit_preserved(&name, pending)?;
            }
        }
        Mode::Reappend(re) => run.commit_reappend(&name, re)?,
    }
    progress.finish();
    let imported = run.imported;
    store.close()?;
    let (present, store_records, redacted, dropped) = match &mode {
        Mode::Preserve(_) => (0, 0, 0, 0),
        Mode::Reappend(re) => (
            re.present,
            re.skipped_store_records,
            re.skipped_redacted,
            re.dropped_causes,
        ),
    };
    if ctx.json {
        print_json(&json!({
            "imported": imported,
            "preserved": args.preserve,
            "already_present": present,
            "skipped_store_records": store_records,
            "skipped_redacted": redacted,
            "dropped_causes": dropped,
        }))
    } else {
        let mut text = format!("imported {imported} events");
        if args.preserve {
            text.push_str(" with their ids, sequences and hashes");
        }
        for (n, what) in [
            (present, "already present (imported before)"),
            (
                store_records,
                "store records skipped (they describe the source store)",
            ),
            (
                redacted,
                "redacted events skipped (their payload is erased)",
            ),
            (dropped, "causes outside the import dropped"),
        ] {
            if n > 0 {
                text.push_str(&format!("; {n} {what}"));
            }
        }
        out(&format!("{text}\n"))
    }
}

enum Mode {
    Preserve(Vec<StoredEvent>),
    Reappend(Reappend),
}

/// What an import has committed, for its messages.
struct Run<'s> {
    store: &'s Store,
    /// The input line of each pending item.
    lines: Vec<usize>,
    /// The last input line whose event is committed (0: none).
    committed_to: usize,
    imported: u64,
}

impl Run<'_> {
    /// The failure for input line `number`, saying what was committed before it.
    fn fail(&self, name: &str, number: usize, why: String) -> Failure {
        let committed = match self.committed_to {
            0 => "nothing was imported".to_string(),
            n => format!("lines 1 to {n} were imported, nothing after them"),
        };
        Failure::new(format!("{name} line {number}: {why} ({committed})"))
    }

    fn commit_preserved(&mut self, name: &str, pending: &mut Vec<StoredEvent>) -> Outcome {
        match self.store.import_preserved(pending) {
            Ok(receipts) => {
                self.imported += receipts.len() as u64;
                self.committed_to = self.lines.last().copied().unwrap_or(self.committed_to);
                self.lines.clear();
                pending.clear();
                Ok(())
            }
            Err(e) => {
                let at = match &e {
                    batpak::Error::NotPreserved { sequence, .. } => pending
                        .iter()
                        .position(|p| p.sequence == *sequence)
                        .map_or(self.lines[0], |i| self.lines[i]),
                    _ => self.lines[0],
                };
                Err(self.fail(name, at, e.to_string()))
            }
        }
    }

    fn commit_reappend(&mut self, name: &str, re: &mut Reappend) -> Outcome {
        if re.batch.is_empty() {
            return Ok(());
        }
        match re.flush(self.store) {
            Ok(n) => {
                self.imported += n;
                self.committed_to = self.lines.last().copied().unwrap_or(self.committed_to);
                self.lines.clear();
                Ok(())
            }
            Err(why) => {
                let first = self.lines.first().copied().unwrap_or(0);
                Err(self.fail(name, first, format!("in the batch starting here: {why}")))
            }
        }
    }
}

/// Re-appends lines as new events: new ids and sequences, payload bytes and schema
/// version verbatim, causes and correlations among imported events renamed to their
/// new ids, provenance in metadata, and an idempotency key from the source id so a
/// rerun appends nothing.
struct Reappend {
    source: String,
    drop_outside_causes: bool,
    /// Source id to new id, for every imported event with an id.
    renamed: HashMap<EventId, EventId>,
    batch: Batch,
    /// The source id of each item of `batch`.
    old_ids: Vec<Option<EventId>>,
    /// Kind names the lines carry, recorded before the batch.
    names: Vec<(batpak::EventKind, String)>,
    /// Events a rerun found present already (idempotent replays).
    present: u64,
    skipped_store_records: u64,
    skipped_redacted: u64,
    dropped_causes: u64,
}

/// Metadata key: where a re-appended event came from (`--source`, else the file).
const SOURCE_STORE_KEY: &str = "batpak.source_store";
/// Metadata key: the re-appended event's id in its source store.
const SOURCE_ID_KEY: &str = "batpak.source_id";

impl Reappend {
    fn line(&mut self, line: &ExportLine) -> Result<(), String> {
        if line.kind.is_reserved() {
            self.skipped_store_records += 1;
            return Ok(());
        }
        if line.redacted {
            self.skipped_redacted += 1;
            return Ok(());
        }
        let coordinate = Coordinate::new(line.entity.as_str(), line.scope.as_str())
            .map_err(|e| e.to_string())?;
        let (encoding, bytes) = line.payload_bytes()?;
        let mut metadata: Metadata = line.metadata.clone();
        let mut options = AppendOptions::default();
        if let Some(id) = line.id {
            metadata.insert(SOURCE_STORE_KEY, self.source.clone());
            metadata.insert(SOURCE_ID_KEY, id.to_string());
            options = options.idempotency_key(format!("batpak.import:{id}"));
        }
        metadata.validate().map_err(|e| e.to_string())?;
        options = options.metadata(metadata);
        if let Some(old) = line.causation {
            if let Some(i) = self.old_ids.iter().position(|p| *p == Some(old)) {
                options = options.caused_by_item(i);
            } else if let Some(new) = self.renamed.get(&old) {
                options = options.caused_by(*new);
            } else if self.drop_outside_causes {
                self.dropped_causes += 1;
            } else {
                return Err(format!(
                    "its cause {old} is not among the imported events (import it too, or pass --drop-outside-causes)"
                ));
            }
        }
        if let Some(old) = line.correlation {
            options = options.correlation(*self.renamed.get(&old).unwrap_or(&old));
        }
        let payload = RawPayload {
            bytes: &bytes,
            encoding,
            schema_version: line.schema_version.unwrap_or(1),
        };
        if let Some(name) = &line.kind_name {
            if !self.names.iter().any(|(k, _)| *k == line.kind) {
                self.names.push((line.kind, name.clone()));
            }
        }
        self.batch
            .push_raw(&coordinate, line.kind, payload, options);
        self.old_ids.push(line.id);
        Ok(())
    }

    /// Whether `line` correlates with an event of the pending batch, whose new id is
    /// known only once the batch is committed.
    fn correlates_pending(&self, line: &ExportLine) -> bool {
        line.correlation
            .is_some_and(|old| self.old_ids.contains(&Some(old)))
    }

    /// Appends the batch; returns how many events it held.
    fn flush(&mut self, store: &Store) -> Result<u64, String> {
        for (kind, name) in self.names.drain(..) {
            store.name_kind(kind, &name).map_err(|e| e.to_string())?;
        }
        let before = store.frontier().written;
        let receipts = store.append_batch(&self.batch).map_err(|e| e.to_string())?;
        let present = receipts.iter().filter(|r| r.sequence <= before).count() as u64;
        self.present += present;
        for (old, r) in self.old_ids.iter().zip(&receipts) {
            if let Some(old) = old {
                self.renamed.insert(*old, r.event_id);
            }
        }
        self.batch = Batch::new();
        self.old_ids.clear();
        Ok(receipts.len() as u64 - present)
    }
}
