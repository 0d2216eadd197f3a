//! Output: events as JSON values and as aligned tables, RFC 3339 times.

use std::time::{Duration, UNIX_EPOCH};

use std::collections::BTreeMap;

use batpak::{Encoding, EventKind, StoredEvent};
use serde_json::{json, Value};

/// Unix nanoseconds as RFC 3339 UTC with milliseconds: `2026-11-28T15:08:42.123Z`.
pub fn rfc3339(unix_ns: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_millis(at).to_string()
}

/// The payload decoded to JSON: MessagePack and JSON payloads as their value,
/// opaque bytes as `{"hex": ...}`, a redacted payload as `null`.
pub fn payload_json(e: &StoredEvent) -> Value {
    if e.is_redacted() {
        return Value::Null;
    }
    let decoded = match e.encoding {
        Encoding::MessagePack => rmp_serde::from_slice::<Value>(&e.payload).ok(),
        Encoding::Json => serde_json::from_slice::<Value>(&e.payload).ok(),
        _ => None,
    };
    decoded.unwrap_or_else(|| json!({ "hex": hex(&e.payload) }))
}

/// Lowercase hex: the tool's one copy (the library's is crate-private).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kind names a store recorded (`Store::kind_names`).
pub type Names = BTreeMap<EventKind, String>;

/// A kind for people: `1:2 OrderPaid`, or `1:2` when the store knows no name.
pub fn kind_label(kind: EventKind, names: &Names) -> String {
    match names.get(&kind) {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_string(),
    }
}

/// An event as one JSON object (the `--json` form).
pub fn event_json(e: &StoredEvent, names: &Names) -> Value {
    json!({
        "sequence": e.sequence,
        "id": e.id.to_string(),
        "entity": e.coordinate.entity(),
        "scope": e.coordinate.scope(),
        "kind": e.kind.to_string(),
        "kind_name": names.get(&e.kind),
        "version": e.version,
        "timestamp": rfc3339(e.timestamp_ns),
        "timestamp_ns": e.timestamp_ns,
        "causation": e.causation.map(|c| c.to_string()),
        "correlation": e.correlation.map(|c| c.to_string()),
        "metadata": e.metadata,
        "schema_version": e.schema_version,
        "redacted": e.is_redacted(),
        "payload": payload_json(e),
        "event_hash": e.event_hash().to_string(),
    })
}

/// The payload in one line for a table, cut to `width` characters.
fn payload_cell(e: &StoredEvent, width: usize) -> String {
    if e.is_redacted() {
        return "<redacted>".to_string();
    }
    let text = payload_json(e).to_string();
    if text.chars().count() <= width {
        text
    } else {
        let cut: String = text.chars().take(width.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

/// Whether tables are printed as CSV (`--format csv`), set once at start.
static CSV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints every table as CSV from now on.
pub fn use_csv() {
    CSV.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn csv() -> bool {
    CSV.load(std::sync::atomic::Ordering::Relaxed)
}

/// One CSV field: quoted (with quotes doubled) when it holds a comma, a quote or a
/// line break (RFC 4180).
fn csv_field(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// Rows of cells as a left-aligned table with a header, or as CSV under
/// `--format csv`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    if csv() {
        let mut out = String::new();
        let line = |cells: Vec<String>| cells.join(",") + "\n";
        out.push_str(&line(header.iter().map(|h| csv_field(h)).collect()));
        for row in rows {
            out.push_str(&line(row.iter().map(|c| csv_field(c)).collect()));
        }
        return out;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The width of the terminal standard output is, when it is one.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&w| w > 0)
}

/// Payload characters shown when standard output is not a terminal.
const PAYLOAD_WIDTH: usize = 60;

/// Events as a table, one row each. In a terminal the payload column takes the
/// width the other columns leave (at least 20 characters); elsewhere 60.
pub fn events_table(events: &[StoredEvent], names: &Names) -> String {
    const HEADER: [&str; 8] = [
        "SEQ", "ID", "ENTITY", "SCOPE", "KIND", "VER", "TIME", "PAYLOAD",
    ];
    let mut rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.sequence.to_string(),
                e.id.to_string(),
                e.coordinate.entity().to_string(),
                e.coordinate.scope().to_string(),
                kind_label(e.kind, names),
                e.version.to_string(),
                rfc3339(e.timestamp_ns),
            ]
        })
        .collect();
    let width = if csv() {
        usize::MAX
    } else {
        match terminal_width() {
            Some(columns) => {
                let used: usize = (0..7)
                    .map(|i| {
                        rows.iter()
                            .map(|r| r[i].chars().count())
                            .chain([HEADER[i].len()])
                            .max()
                            .unwrap_or(0)
                            + 2
                    })
                    .sum();
                columns.saturating_sub(used).max(20)
            }
            None => PAYLOAD_WIDTH,
        }
    };
    for (row, e) in rows.iter_mut().zip(events) {
        row.push(payload_cell(e, width));
    }
    table(&HEADER, &rows)
}

/// One event in detail, a field per line.
pub fn event_detail(e: &StoredEvent, names: &Names) -> String {
    let opt = |id: Option<batpak::EventId>| id.map_or_else(|| "-".to_string(), |i| i.to_string());
    let rows = vec![
        vec!["id".into(), e.id.to_string()],
        vec!["sequence".into(), e.sequence.to_string()],
        vec!["entity".into(), e.coordinate.entity().to_string()],
        vec!["scope".into(), e.coordinate.scope().to_string()],
        vec!["kind".into(), kind_label(e.kind, names)],
        vec!["version".into(), e.version.to_string()],
        vec!["time".into(), rfc3339(e.timestamp_ns)],
        vec!["causation".into(), opt(e.causation)],
        vec!["correlation".into(), opt(e.correlation)],
        vec![
            "metadata".into(),
            if e.metadata.is_empty() {
                "-".into()
            } else {
                e.metadata
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        ],
        vec!["event hash".into(), e.event_hash().to_string()],
        vec!["prev hash".into(), e.prev_hash.to_string()],
        vec![
            "payload".into(),
            if e.is_redacted() {
                "<redacted>".into()
            } else {
                payload_json(e).to_string()
            },
        ],
    ];
    let mut out = String::new();
    for row in rows {
        out.push_str(&format!("{:<12} {}\n", row[0], row[1]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_878_522_123_456_789),
            "2026-11-28T15:08:42.123Z"
        );
        assert_eq!(
            rfc3339(4_102_444_799_999_000_000),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }
}
