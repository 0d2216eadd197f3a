//! Reading commands: events by id, entity, filters or links; graphs; stats.

use batpak::graph::EdgeKind;
use batpak::EventId;
use serde_json::{json, Value};

use super::{found, out, print_event_stream, print_events, print_json, region};
use crate::cli::{Filters, GraphFormat, OutputFormat};
use crate::render::{event_detail, event_json, events_table, table};
use crate::{Context, Failure, Outcome};

pub fn get(ctx: &Context, id: Option<EventId>, seq: Option<u64>) -> Outcome {
    let store = ctx.open_read()?;
    let e = match (id, seq) {
        (Some(id), _) => found(&store, id)?,
        (None, Some(seq)) => store.get_sequence(seq)?.ok_or_else(|| {
            Failure::new(format!(
                "no event has sequence {seq} (the store's last is {})",
                store.frontier().visible
            ))
        })?,
        (None, None) => return Err(Failure::new("give an event id or --seq N".to_string())),
    };
    if ctx.json {
        print_json(&event_json(&e, &store.kind_names()))
    } else {
        out(&event_detail(&e, &store.kind_names()))
    }
}

pub fn stream(ctx: &Context, entity: &str) -> Outcome {
    let store = ctx.open_read()?;
    print_events(ctx, &store, &store.stream(entity)?)
}

pub fn query(ctx: &Context, filters: &Filters, reverse_before: Option<u64>) -> Outcome {
    let store = ctx.open_read()?;
    let limit = filters.limit.unwrap_or(usize::MAX);
    match reverse_before {
        Some(before) => {
            let region = region(filters)?.sequences(filters.after.saturating_add(1)..);
            print_event_stream(
                ctx,
                &store,
                store.events_reverse(&region, before).take(limit),
            )
        }
        None => {
            let region = region(filters)?;
            print_event_stream(
                ctx,
                &store,
                store.events(&region, filters.after).take(limit),
            )
        }
    }
}

pub fn entities(
    ctx: &Context,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: Option<usize>,
) -> Outcome {
    let store = ctx.open_read()?;
    let list = store.entities(prefix.unwrap_or(""), after, limit.unwrap_or(usize::MAX));
    if ctx.json {
        let mut text = String::new();
        for e in &list {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        return out(&text);
    }
    if list.is_empty() {
        return out("no entities\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.entity.clone(),
                e.version.to_string(),
                e.events.to_string(),
                e.first_sequence.to_string(),
                e.last_sequence.to_string(),
                e.scopes.join(","),
            ]
        })
        .collect();
    out(&table(
        &["ENTITY", "VERSION", "EVENTS", "FIRST", "LAST", "SCOPES"],
        &rows,
    ))
}

pub fn scopes(ctx: &Context) -> Outcome {
    let store = ctx.open_read()?;
    let list = store.scopes();
    if ctx.json {
        return print_json(&serde_json::to_value(&list)?);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| vec![s.scope.clone(), s.events.to_string()])
        .collect();
    out(&table(&["SCOPE", "EVENTS"], &rows))
}

pub fn kinds(ctx: &Context) -> Outcome {
    let store = ctx.open_read()?;
    let list = store.kinds();
    if ctx.json {
        return print_json(&serde_json::to_value(&list)?);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|k| {
            vec![
                k.kind.to_string(),
                k.name.clone().unwrap_or_else(|| "-".into()),
                k.events.to_string(),
            ]
        })
        .collect();
    out(&table(&["KIND", "NAME", "EVENTS"], &rows))
}

pub fn count(ctx: &Context, filters: &Filters) -> Outcome {
    let store = ctx.open_read()?;
    let region = region(filters)?.sequences(filters.after.saturating_add(1)..);
    let n = store.count(&region)?;
    let n = filters.limit.map_or(n, |limit| n.min(limit as u64));
    if ctx.json {
        print_json(&json!({ "count": n }))
    } else {
        out(&format!("{n}\n"))
    }
}

pub fn tail(ctx: &Context, filters: &Filters, follow: bool) -> Outcome {
    let region = region(filters)?;
    let limit = filters.limit.unwrap_or(10);
    let store = if follow {
        ctx.open_view()?
    } else {
        ctx.open_read()?
    };
    // The newest `limit`, read newest first from the index and printed oldest first.
    let region_after = region.clone().sequences(filters.after.saturating_add(1)..);
    let mut newest = store.query_reverse(&region_after, u64::MAX, limit)?;
    newest.reverse();
    print_events(ctx, &store, &newest)?;
    if !follow {
        return Ok(());
    }
    // Follow: a subscription on the view, which reads what the writer process makes
    // visible (its live mark) within a few milliseconds, through rotations.
    let from = store.frontier().visible.max(filters.after);
    let mut live = store.subscribe_from(region, from + 1).lag_limit(u64::MAX);
    loop {
        let first = match live.recv() {
            Ok(e) => e,
            Err(batpak::RecvError::Failed(e)) => return Err(e.into()),
            Err(other) => return Err(Failure::new(format!("following stopped: {other}"))),
        };
        let mut new = vec![first];
        while new.len() < 1000 {
            match live.try_recv() {
                Ok(e) => new.push(e),
                Err(batpak::RecvError::Failed(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        if ctx.json {
            print_events(ctx, &store, &new)?;
        } else {
            // Rows without repeating the header.
            let table = events_table(&new, &store.kind_names());
            out(table.split_once('\n').map_or("", |(_, rows)| rows))?;
        }
    }
}

pub fn walk(ctx: &Context, id: EventId, limit: usize) -> Outcome {
    let store = ctx.open_read()?;
    let walk = store
        .walk_ancestors(id, limit)?
        .ok_or_else(|| Failure::new(format!("no event has id {id}")))?;
    let report = walk.report();
    if ctx.json {
        print_json(&json!({
            "events": walk.events.iter().map(|e| event_json(e, &store.kind_names())).collect::<Vec<_>>(),
            "report": serde_json::to_value(&report.body)?,
            "body_hash": report.body_hash.to_string(),
        }))?;
    } else {
        out(&events_table(&walk.events, &store.kind_names()))?;
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
    print_events(ctx, &store, &store.causes(id, limit)?)
}

pub fn effects(ctx: &Context, id: EventId) -> Outcome {
    let store = ctx.open_read()?;
    found(&store, id)?;
    print_events(ctx, &store, &store.effects(id)?)
}

pub fn correlated(ctx: &Context, id: EventId) -> Outcome {
    let store = ctx.open_read()?;
    print_events(ctx, &store, &store.correlated(id)?)
}

pub fn graph(ctx: &Context, id: EventId, depth: usize) -> Outcome {
    let format = match ctx.format {
        OutputFormat::Table | OutputFormat::Text => GraphFormat::Text,
        OutputFormat::Dot => GraphFormat::Dot,
        OutputFormat::Mermaid => GraphFormat::Mermaid,
        OutputFormat::Json => GraphFormat::Json,
        OutputFormat::Csv => {
            return Err(Failure::new(
                "graph has no CSV form: --format text, dot, mermaid or json".to_string(),
            ))
        }
    };
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
        _ => "link",
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

pub fn stats(ctx: &Context, sinks: &[String], name: &str) -> Outcome {
    let store = ctx.open_read()?;
    let stats = store.stats()?;
    let sinks = crate::commands::replicate::sink_states(&store, sinks, name)?;
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
            "retention": serde_json::to_value(&stats.retention)?,
            "deleted_entities": stats.deleted_entities,
            "sinks": sinks.iter().map(|s| json!({
                "url": s.url,
                "name": name,
                "position": s.position,
                "behind_events": s.behind,
                "behind_seconds": s.behind_seconds,
                "error": s.error,
            })).collect::<Vec<_>>(),
        }));
    }
    let mut rows = vec![
        vec!["store".into(), ctx.dir.display().to_string()],
        vec!["events".into(), stats.events.to_string()],
        vec!["entities".into(), stats.entities.to_string()],
        vec!["scopes".into(), stats.scopes.to_string()],
        vec!["segments".into(), stats.segments.to_string()],
        vec!["bytes".into(), stats.segment_bytes.to_string()],
        vec!["last sequence".into(), stats.visible_sequence.to_string()],
        vec!["index from".into(), index],
        vec!["opened in".into(), format!("{:?}", report.duration)],
        vec![
            "deleted entities".into(),
            stats.deleted_entities.to_string(),
        ],
    ];
    for p in &stats.retention {
        rows.push(vec![
            "retention".into(),
            format!("{}: {}", p.selector, p.rule),
        ]);
    }
    for s in &sinks {
        let state = match (&s.error, s.position) {
            (Some(e), _) => format!("unreachable: {e}"),
            (None, Some(p)) if s.behind == 0 => format!("position {p}, caught up"),
            (None, Some(p)) => format!(
                "position {p}, {} events behind, the oldest appended {:.1} s ago",
                s.behind, s.behind_seconds
            ),
            (None, None) => "no position".into(),
        };
        rows.push(vec![format!("sink {}", s.url), state]);
    }
    out(&table(&["", ""], &rows)
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect::<String>())
}
