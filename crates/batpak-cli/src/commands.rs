//! One function per subcommand (except `demo`), by group: reading, writing, proof
//! and moving events in and out of a store. Here: what they share, writing to
//! standard output, selecting events and reading input.

pub mod proof;
pub mod read;
pub mod replicate;
pub mod serve;
pub mod transfer;
pub mod write;

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use batpak::{EventId, EventKind, Region, Store, StoredEvent};
use serde_json::Value;

use crate::cli::Filters;
use crate::render::{event_json, events_table};
use crate::{Context, Failure, Outcome};

/// Writes to standard output. When the reader has closed it, the command stops
/// quietly (see [`Failure::stdout_closed`]).
pub fn out(text: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Failure::writing_stdout)
}

fn print_json(value: &Value) -> Outcome {
    out(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Events as JSON Lines or a table; "no events" for an empty table.
fn print_events(ctx: &Context, store: &Store, events: &[StoredEvent]) -> Outcome {
    print_event_stream(ctx, store, events.iter().cloned().map(Ok))
}

/// Rows per table printed at once by `print_event_stream`.
const TABLE_CHUNK: usize = 1000;

/// Events from an iterator as JSON Lines, or as a table printed a chunk of rows at a
/// time (the header once; columns sized per chunk), so memory stays bounded however
/// many events there are.
fn print_event_stream(
    ctx: &Context,
    store: &Store,
    events: impl Iterator<Item = batpak::Result<StoredEvent>>,
) -> Outcome {
    let names = store.kind_names();
    let mut chunk: Vec<StoredEvent> = Vec::with_capacity(TABLE_CHUNK.min(64));
    let mut printed_any = false;
    let flush = |chunk: &mut Vec<StoredEvent>, printed_any: &mut bool| -> Outcome {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        if ctx.json {
            for e in chunk.iter() {
                text.push_str(&event_json(e, &names).to_string());
                text.push('\n');
            }
        } else {
            let table = events_table(chunk, &names);
            match table.split_once('\n') {
                Some((_, rows)) if *printed_any => text.push_str(rows),
                _ => text.push_str(&table),
            }
        }
        *printed_any = true;
        chunk.clear();
        out(&text)
    };
    for event in events {
        chunk.push(event?);
        if chunk.len() >= TABLE_CHUNK || (ctx.json && chunk.len() >= 64) {
            flush(&mut chunk, &mut printed_any)?;
        }
    }
    flush(&mut chunk, &mut printed_any)?;
    if !printed_any && !ctx.json {
        out("no events\n")?;
    }
    Ok(())
}

fn region(filters: &Filters) -> Result<Region, Failure> {
    let mut r = Region::all();
    if let Some(e) = &filters.entity {
        r = r.entity(e.clone());
    }
    if let Some(p) = &filters.prefix {
        r = r.entity_prefix(p.clone());
    }
    if let Some(s) = &filters.scope {
        r = r.scope(s.clone());
    }
    if let Some(k) = filters.kind {
        r = r.kind(k);
    }
    if let Some(c) = filters.category {
        if c > EventKind::MAX_CATEGORY {
            return Err(Failure::new(format!(
                "--category: {c} is over the largest category, {}",
                EventKind::MAX_CATEGORY
            )));
        }
        r = r.category(c);
    }
    match (filters.since, filters.until) {
        (None, None) => {}
        (since, until) => {
            let (from, to) = (since.unwrap_or(0), until.unwrap_or(u64::MAX));
            if to < from {
                return Err(Failure::new(
                    "--until is before --since: the time range is empty".to_string(),
                ));
            }
            r = r.times(from..to);
        }
    }
    Ok(r)
}

/// The argument, or standard input when it is absent or `-`.
fn input(arg: Option<String>, what: &str) -> Result<String, Failure> {
    match arg {
        Some(text) if text != "-" => Ok(text),
        _ => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                Failure::new(format!("reading the {what} from standard input: {e}"))
            })?;
            Ok(text)
        }
    }
}

fn found(store: &Store, id: EventId) -> Result<StoredEvent, Failure> {
    store
        .get(id)?
        .ok_or_else(|| Failure::new(format!("no event has id {id}")))
}

/// A progress line on stderr for long runs in a terminal.
struct Progress {
    show: bool,
    last: std::time::Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            show: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }

    fn update(&mut self, what: &str, done: u64, total: u64) {
        if !self.show || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = std::time::Instant::now();
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let bar: String = (0..30)
            .map(|i| if i * 100 / 30 < pct { '#' } else { '.' })
            .collect();
        let _ = write!(std::io::stderr(), "\r{what} [{bar}] {pct:>3}%");
    }

    fn finish(&self) {
        if self.show {
            let _ = write!(std::io::stderr(), "\r{}\r", " ".repeat(50));
        }
    }
}
