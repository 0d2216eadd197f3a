//! One function per subcommand (except `demo`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, EventId, EventKind, RawPayload, Region, Store,
    StoredEvent,
};

use batpak::graph::EdgeKind;

use batpak::proof::{AnchorCheck, ReceiptCheck};
use serde_json::{json, Value};

use crate::cli::{AppendArgs, Filters, GraphFormat};
use crate::render::{event_detail, event_json, events_table, rfc3339, table};
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
fn print_events(ctx: &Context, events: &[StoredEvent]) -> Outcome {
    if ctx.json {
        let mut text = String::new();
        for e in events {
            text.push_str(&event_json(e).to_string());
            text.push('\n');
        }
        out(&text)
    } else if events.is_empty() {
        out("no events\n")
    } else {
        out(&events_table(events))
    }
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

pub fn get(ctx: &Context, id: EventId) -> Outcome {
    let store = ctx.open_read()?;
    let e = found(&store, id)?;
    if ctx.json {
        print_json(&event_json(&e))
    } else {
        out(&event_detail(&e))
    }
}

pub fn stream(ctx: &Context, entity: &str) -> Outcome {
    let store = ctx.open_read()?;
    print_events(ctx, &store.stream(entity)?)
}

pub fn query(ctx: &Context, filters: &Filters) -> Outcome {
    let store = ctx.open_read()?;
    let events = store.query(
        &region(filters)?,
        filters.after,
        filters.limit.unwrap_or(usize::MAX),
    )?;
    print_events(ctx, &events)
}

pub fn tail(ctx: &Context, filters: &Filters, follow: bool) -> Outcome {
    let region = region(filters)?;
    let limit = filters.limit.unwrap_or(10);
    let store = if follow {
        ctx.open_view()?
    } else {
        ctx.open_read()?
    };
    let all = store.query(&region, filters.after, usize::MAX)?;
    let newest = &all[all.len().saturating_sub(limit)..];
    print_events(ctx, newest)?;
    if !follow {
        return Ok(());
    }
    let mut last = store.frontier().visible.max(filters.after);
    drop(store);
    // Other processes append: when the segment files change, reopen a view (no lock)
    // and print what is new.
    let mut seen = segments_fingerprint(&ctx.dir);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = segments_fingerprint(&ctx.dir);
        if now == seen {
            continue;
        }
        seen = now;
        let store = ctx.open_view()?;
        let new = store.query(&region, last, usize::MAX)?;
        last = store.frontier().visible.max(last);
        if new.is_empty() {
            continue;
        }
        if ctx.json {
            print_events(ctx, &new)?;
        } else {
            // Rows without repeating the header.
            let table = events_table(&new);
            out(table.split_once('\n').map_or("", |(_, rows)| rows))?;
        }
    }
}

/// The number of segment files and the total of their lengths: changes with every
/// append, and costs one directory listing.
fn segments_fingerprint(dir: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir.join("segments"))
        .into_iter()
        .flatten()
        .flatten()
    {
        files += 1;
        bytes += entry.metadata().map_or(0, |m| m.len());
    }
    (files, bytes)
}

pub fn walk(ctx: &Context, id: EventId, limit: usize) -> Outcome {
    let store = ctx.open_read()?;
    let walk = store
        .walk_ancestors(id, limit)?
        .ok_or_else(|| Failure::new(format!("no event has id {id}")))?;
    let report = walk.report();
    if ctx.json {
        print_json(&json!({
            "events": walk.events.iter().map(event_json).collect::<Vec<_>>(),
            "report": serde_json::to_value(&report.body)?,
            "body_hash": report.body_hash.to_string(),
        }))?;
    } else {
        out(&events_table(&walk.events))?;
        let verdict = match &walk.broken {
            Some(b) => format!(
                "BROKEN: event {} does not link to its predecessor (stored prev_hash {}, expected {})",
                b.event, b.stored, b.expected
            ),
            None if walk.reached_first => "intact back to the entity's first event".to_string(),
            None => format!("intact for {} events (stopped at the limit)", walk.events.len()),
        };
        out(&format!(
            "{} links checked: {verdict}\nwalk digest {}\n",
            report.body.checked, report.body.digest
        ))?;
    }
    if walk.broken.is_some() {
        return Err(Failure::new("the chain is broken"));
    }
    Ok(())
}

pub fn causes(ctx: &Context, id: EventId, limit: usize) -> Outcome {
    let store = ctx.open_read()?;
    found(&store, id)?;
    print_events(ctx, &store.causes(id, limit)?)
}

pub fn effects(ctx: &Context, id: EventId) -> Outcome {
    let store = ctx.open_read()?;
    found(&store, id)?;
    print_events(ctx, &store.effects(id)?)
}

pub fn correlated(ctx: &Context, id: EventId) -> Outcome {
    let store = ctx.open_read()?;
    print_events(ctx, &store.correlated(id)?)
}

pub fn graph(ctx: &Context, id: EventId, depth: usize, format: GraphFormat) -> Outcome {
    let store = ctx.open_read()?;
    let graph = store
        .causal_graph(id, depth)?
        .ok_or_else(|| Failure::new(format!("no event has id {id}")))?;
    let label = node_label;
    let name = |id: EventId| {
        graph
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| id.to_string(), |n| format!("n{}", n.sequence))
    };
    let edge_name = |k: EdgeKind| match k {
        EdgeKind::Chain => "chain",
        EdgeKind::Causation => "caused",
    };
    let format = if ctx.json { GraphFormat::Json } else { format };
    let text = match format {
        GraphFormat::Json => {
            let nodes: Vec<Value> = graph
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "id": n.id.to_string(),
                        "sequence": n.sequence,
                        "entity": n.coordinate.entity(),
                        "scope": n.coordinate.scope(),
                        "kind": n.kind.to_string(),
                        "version": n.version,
                    })
                })
                .collect();
            let edges: Vec<Value> = graph
                .edges
                .iter()
                .map(|e| json!({ "from": e.from.to_string(), "to": e.to.to_string(), "kind": edge_name(e.kind) }))
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &json!({ "root": graph.root.to_string(), "nodes": nodes, "edges": edges })
                )?
            )
        }
        GraphFormat::Dot => {
            let mut s = String::from("digraph causal {\n  rankdir=LR;\n");
            for n in &graph.nodes {
                let style = if n.id == graph.root {
                    ", style=bold"
                } else {
                    ""
                };
                s.push_str(&format!(
                    "  {} [label=\"{}\"{style}];\n",
                    name(n.id),
                    label(n).replace('"', "\\\"")
                ));
            }
            for e in &graph.edges {
                s.push_str(&format!(
                    "  {} -> {} [label=\"{}\"];\n",
                    name(e.from),
                    name(e.to),
                    edge_name(e.kind)
                ));
            }
            s.push_str("}\n");
            s
        }
        GraphFormat::Mermaid => {
            let mut s = String::from("flowchart LR\n");
            for n in &graph.nodes {
                s.push_str(&format!(
                    "  {}[\"{}\"]\n",
                    name(n.id),
                    label(n).replace('"', "'")
                ));
            }
            for e in &graph.edges {
                s.push_str(&format!(
                    "  {} -->|{}| {}\n",
                    name(e.from),
                    edge_name(e.kind),
                    name(e.to)
                ));
            }
            s
        }
        GraphFormat::Text => graph_tree(&graph),
    };
    out(&text)
}

fn node_label(n: &batpak::graph::GraphNode) -> String {
    format!(
        "{} v{} ({}) seq {}",
        n.coordinate.entity(),
        n.version,
        n.kind,
        n.sequence
    )
}

/// The graph as a tree of causation from its roots, chain links listed after.
pub fn graph_tree(graph: &batpak::graph::CausalGraph) -> String {
    let label: &dyn Fn(&batpak::graph::GraphNode) -> String = &node_label;
    let node = |id: EventId| graph.nodes.iter().find(|n| n.id == id);
    let caused: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Causation)
        .collect();
    let roots: Vec<_> = graph
        .nodes
        .iter()
        .filter(|n| !caused.iter().any(|e| e.to == n.id))
        .collect();
    let mut s = String::new();
    fn walk(
        s: &mut String,
        id: EventId,
        depth: usize,
        graph: &batpak::graph::CausalGraph,
        caused: &[&batpak::graph::GraphEdge],
        label: &dyn Fn(&batpak::graph::GraphNode) -> String,
        root: EventId,
    ) {
        if depth > 64 {
            return;
        }
        if let Some(n) = graph.nodes.iter().find(|n| n.id == id) {
            let mark = if id == root { "  <- this event" } else { "" };
            s.push_str(&format!(
                "{}{} {}{mark}\n",
                "  ".repeat(depth),
                if depth == 0 { "*" } else { "└─" },
                label(n)
            ));
        }
        for e in caused.iter().filter(|e| e.from == id) {
            walk(s, e.to, depth + 1, graph, caused, label, root);
        }
    }
    s.push_str("causation:\n");
    for r in roots {
        walk(&mut s, r.id, 0, graph, &caused, label, graph.root);
    }
    let chain: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Chain)
        .collect();
    if !chain.is_empty() {
        s.push_str("chain links (previous -> next of one entity):\n");
        for e in chain {
            if let (Some(a), Some(b)) = (node(e.from), node(e.to)) {
                s.push_str(&format!("  {} -> {}\n", label(a), label(b)));
            }
        }
    }
    s
}

pub fn stats(ctx: &Context) -> Outcome {
    let store = ctx.open_read()?;
    let stats = store.stats()?;
    let report = store.open_report();
    let index = match &report.index {
        batpak::IndexSource::Checkpoint { events } => format!("checkpoint ({events} events)"),
        batpak::IndexSource::Rebuilt { reason } => format!("rebuilt ({reason})"),
        other => format!("{other:?}"),
    };
    if ctx.json {
        return print_json(&json!({
            "dir": ctx.dir.display().to_string(),
            "events": stats.events,
            "entities": stats.entities,
            "scopes": stats.scopes,
            "segments": stats.segments,
            "segment_bytes": stats.segment_bytes,
            "visible_sequence": stats.visible_sequence,
            "index": index,
            "open_ms": report.duration.as_secs_f64() * 1000.0,
        }));
    }
    let rows = vec![
        vec!["store".into(), ctx.dir.display().to_string()],
        vec!["events".into(), stats.events.to_string()],
        vec!["entities".into(), stats.entities.to_string()],
        vec!["scopes".into(), stats.scopes.to_string()],
        vec!["segments".into(), stats.segments.to_string()],
        vec!["bytes".into(), stats.segment_bytes.to_string()],
        vec!["last sequence".into(), stats.visible_sequence.to_string()],
        vec!["index from".into(), index],
        vec!["opened in".into(), format!("{:?}", report.duration)],
    ];
    out(&table(&["", ""], &rows)
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect::<String>())
}

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
    let text = input(a.payload, "payload")?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("the payload is not JSON: {e}")))?;
    let bytes = serde_json::to_vec(&value)?;
    let store = ctx.open_write(true)?;
    let receipt = store.append_raw(&coordinate, a.kind, RawPayload::json(&bytes), options)?;
    store.close()?;
    print_receipt(ctx, &receipt)
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

pub fn verify(ctx: &Context, filters: &Filters) -> Outcome {
    let store = ctx.open_read()?;
    let filtered = filters.entity.is_some()
        || filters.prefix.is_some()
        || filters.scope.is_some()
        || filters.kind.is_some()
        || filters.category.is_some()
        || filters.after > 0
        || filters.limit.is_some();
    let report = if filtered {
        let mut region = region(filters)?;
        if filters.after > 0 || filters.limit.is_some() {
            let end = filters.limit.map_or(u64::MAX, |n| {
                filters.after.saturating_add(n as u64).saturating_add(1)
            });
            region = region.sequences(filters.after + 1..end);
        }
        store.verify_region(&region)?
    } else {
        let mut progress = Progress::new();
        let report =
            store.verify_with_progress(|done, total| progress.update("verifying", done, total))?;
        progress.finish();
        report
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
        if body.is_clean() {
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
        print_json(&json!({ "holds": check.holds(), "outcome": verdict }))?;
    } else {
        out(&format!("{verdict}\n"))?;
    }
    if check.holds() {
        Ok(())
    } else {
        Err(Failure::new(verdict))
    }
}

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
