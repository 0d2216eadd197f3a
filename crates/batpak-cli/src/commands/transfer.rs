//! Moving events in and out of a store: export, import, snapshot.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use batpak::{AppendOptions, Batch, Coordinate, EventId, EventKind, RawPayload, Store};
use serde_json::{json, Value};

use super::{out, print_json, region, Progress};
use crate::cli::Filters;
use crate::render::event_json;
use crate::{Context, Failure, Outcome};

pub fn export(ctx: &Context, filters: &Filters, output: Option<&Path>) -> Outcome {
    let store = ctx.open_read()?;
    let region = region(filters)?;
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
    let (mut after, mut written) = (filters.after, 0usize);
    while written < limit {
        let page = store.query(&region, after, (limit - written).min(4096))?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for e in &page {
            writeln!(sink, "{}", event_json(e)).map_err(failed)?;
        }
        written += page.len();
        progress.update("exporting", after, total);
    }
    sink.flush().map_err(failed)?;
    progress.finish();
    if output.is_some() {
        let _ = writeln!(std::io::stderr(), "exported {written} events");
    }
    Ok(())
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

/// One line of an import file.
#[derive(serde::Deserialize)]
struct ImportLine {
    entity: String,
    scope: String,
    kind: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    causation: Option<String>,
    #[serde(default)]
    correlation: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

pub fn import(ctx: &Context, file: &Path) -> Outcome {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(file).map_err(|e| {
            Failure::new(format!("cannot read {}: {e}", file.display()))
        })?))
    };
    let store = ctx.open_write(true)?;
    let mut import = Importer {
        store: &store,
        renamed: HashMap::new(),
        batch: Batch::new(),
        old_ids: Vec::new(),
        total: 0,
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        import
            .line(&line)
            .map_err(|why| Failure::new(format!("{} line {}: {why}", file.display(), n + 1)))?;
    }
    import
        .flush()
        .map_err(|why| Failure::new(format!("{}: {why}", file.display())))?;
    let total = import.total;
    store.close()?;
    if ctx.json {
        print_json(&json!({ "imported": total }))
    } else {
        out(&format!("imported {total} events\n"))
    }
}

/// Appends imported lines in batches of 1,000. Exported ids are not kept (the store
/// assigns new ones); causation and correlation between imported events follow them.
struct Importer<'s> {
    store: &'s Store,
    renamed: HashMap<EventId, EventId>,
    batch: Batch,
    /// The exported id of each item of `batch`.
    old_ids: Vec<Option<EventId>>,
    total: u64,
}

impl Importer<'_> {
    fn line(&mut self, line: &str) -> Result<(), String> {
        let item: ImportLine =
            serde_json::from_str(line).map_err(|e| format!("not an event: {e}"))?;
        let kind = item.kind.parse::<EventKind>().map_err(|e| e.to_string())?;
        let coordinate = Coordinate::new(&item.entity, &item.scope).map_err(|e| e.to_string())?;
        let id_of = |text: &str, what: &str| -> Result<EventId, String> {
            text.parse()
                .map_err(|_| format!("{what} {text:?} is not an event id"))
        };
        let mut options = AppendOptions::default();
        if let Some(c) = &item.causation {
            let old = id_of(c, "causation")?;
            options = match self.old_ids.iter().position(|p| *p == Some(old)) {
                Some(i) => options.caused_by_item(i),
                None => options.caused_by(*self.renamed.get(&old).unwrap_or(&old)),
            };
        }
        if let Some(c) = &item.correlation {
            let old = id_of(c, "correlation")?;
            let pending = self.old_ids.contains(&Some(old));
            if pending {
                // Its new id is known only after this batch: write the batch first.
                self.flush()?;
            }
            options = options.correlation(*self.renamed.get(&old).unwrap_or(&old));
        }
        if let Some(k) = item.idempotency_key {
            options = options.idempotency_key(k);
        }
        if item.payload.is_null() {
            return Err("no payload (a redacted event cannot be imported)".into());
        }
        let bytes = serde_json::to_vec(&item.payload).map_err(|e| e.to_string())?;
        let old = item.id.as_deref().map(|t| id_of(t, "id")).transpose()?;
        self.batch
            .push_raw(&coordinate, kind, RawPayload::json(&bytes), options);
        self.old_ids.push(old);
        self.total += 1;
        if self.batch.len() >= 1000 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let receipts = self
            .store
            .append_batch(&self.batch)
            .map_err(|e| e.to_string())?;
        for (old, r) in self.old_ids.iter().zip(&receipts) {
            if let Some(old) = old {
                self.renamed.insert(*old, r.event_id);
            }
        }
        self.batch = Batch::new();
        self.old_ids.clear();
        Ok(())
    }
}
