//! `batpak replicate`, `verify-replica`, `follow` and `promote`: the store into
//! PostgreSQL (`postgres://`) or NATS JetStream (`nats://`), the copy rechecked on
//! its own, a replica built from it, and the replica promoted.

use std::sync::Arc;
use std::time::Duration;

use batpak_replicate::{JetStreamSink, PostgresSink, Replicator, Sink};

use crate::cli::ReplicateArgs;
use crate::commands::{out, print_json};
use crate::{Context, Failure, Outcome};

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Which engine a URL names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    JetStream,
}

fn engine(url: &str, flag: &str) -> Result<Engine, Failure> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Engine::Postgres)
    } else if url.starts_with("nats://") {
        Ok(Engine::JetStream)
    } else {
        Err(Failure::new(format!(
            "{flag}{url:?}: a sink is postgres://USER@HOST:PORT/DB or nats://HOST:PORT"
        )))
    }
}

pub fn replicate(ctx: &Context, a: ReplicateArgs) -> Outcome {
    match engine(&a.to, "--to ")? {
        Engine::Postgres => {
            let sink = PostgresSink::new(&a.to, &a.schema).map_err(Failure::new)?;
            ship(ctx, a, sink)
        }
        Engine::JetStream => {
            let sink = JetStreamSink::new(&a.to, &a.schema).map_err(Failure::new)?;
            ship(ctx, a, sink)
        }
    }
}

fn ship<S: Sink>(ctx: &Context, a: ReplicateArgs, sink: S) -> Outcome {
    let store = Arc::new(ctx.open_read()?);
    let mut replicator = Replicator::new(Arc::clone(&store), sink)
        .batch(a.batch)
        .anchor_every(a.anchor_every);
    let control = replicator.control();
    let rt = runtime()?;
    let position = rt.block_on(async {
        let status = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let s = control.status();
                let failing = s
                    .last_error
                    .as_deref()
                    .map_or_else(String::new, |e| format!("; retrying ({}): {e}", s.retrying));
                eprintln!(
                    "replicate: position {} of {}, lag {} events / {:.1} s, {} shipped, anchored at {}{failing}",
                    s.position,
                    s.visible,
                    s.lag_events,
                    s.lag.as_secs_f64(),
                    s.shipped,
                    s.anchored
                );
            }
        });
        let done = if a.until_caught_up {
            tokio::select! {
                p = replicator.catch_up() => p,
                () = termination() => Ok(replicator.control().status().position),
            }
        } else {
            replicator.run(termination()).await
        };
        status.abort();
        done
    });
    let position = position.map_err(|e| Failure::new(e.to_string()))?;
    if ctx.json {
        return print_json(&serde_json::json!({ "position": position }));
    }
    out(&format!("replicated through sequence {position}\n"))
}

pub fn follow(ctx: &Context, from: &str, schema: &str, until_caught_up: bool) -> Outcome {
    let engine = engine(from, "--from ")?;
    let replica = Arc::new(ctx.open_write(true)?);
    let mut last_print = std::time::Instant::now();
    let on_status = |s: &batpak_replicate::FollowStatus| {
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = std::time::Instant::now();
            eprintln!(
                "follow: replica at {} of the sink's {}, {} imported",
                s.position, s.source, s.imported
            );
        }
    };
    let rt = runtime()?;
    let position = match engine {
        Engine::Postgres => rt.block_on(batpak_replicate::follow_postgres(
            Arc::clone(&replica),
            from,
            schema,
            until_caught_up,
            termination(),
            on_status,
        )),
        Engine::JetStream => rt.block_on(batpak_replicate::follow_jetstream(
            Arc::clone(&replica),
            from,
            schema,
            until_caught_up,
            termination(),
            on_status,
        )),
    }
    .map_err(Failure::new)?;
    match Arc::try_unwrap(replica) {
        Ok(store) => store.close()?,
        Err(_) => {
            return Err(Failure::new(
                "the replica is still in use; it was not closed",
            ))
        }
    }
    if ctx.json {
        return print_json(&serde_json::json!({ "position": position }));
    }
    out(&format!("the replica holds through sequence {position}\n"))
}

pub fn promote(ctx: &Context, from: &str, schema: &str, force: bool) -> Outcome {
    let engine = engine(from, "--from ")?;
    let replica = ctx.open_write(false)?;
    let rt = runtime()?;
    let behind = match engine {
        Engine::Postgres => rt.block_on(batpak_replicate::behind_postgres(&replica, from, schema)),
        Engine::JetStream => {
            rt.block_on(batpak_replicate::behind_jetstream(&replica, from, schema))
        }
    }
    .map_err(Failure::new)?;
    if behind.missing() > 0 && !force {
        return Err(Failure::new(format!(
            "refusing to promote: the sink holds through sequence {}, the replica only through {} ({} events would be lost); run `batpak follow --until-caught-up` first, or pass --force to give them up",
            behind.source,
            behind.replica,
            behind.missing()
        )));
    }
    replica.close()?;
    if ctx.json {
        return print_json(&serde_json::json!({
            "replica": behind.replica,
            "source": behind.source,
            "lost": behind.missing(),
        }));
    }
    out(&format!(
        "promoted: the replica holds through sequence {}{}; it takes appends now (once it has, a follow into it is refused: its history goes on from here)\n",
        behind.replica,
        if behind.missing() > 0 {
            format!(", giving up the sink's {} newer events", behind.missing())
        } else {
            String::new()
        }
    ))
}

pub fn verify_replica(
    ctx: &Context,
    url: &str,
    schema: &str,
    anchor_files: &[std::path::PathBuf],
) -> Outcome {
    let mut anchors = Vec::new();
    for file in anchor_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
        anchors.push(
            serde_json::from_str::<batpak::proof::Anchor>(&text).map_err(|e| {
                Failure::new(format!("{} is not an anchor's JSON: {e}", file.display()))
            })?,
        );
    }
    let keys = ctx.trusted_keys();
    let rt = runtime()?;
    let report = match engine(url, "")? {
        Engine::Postgres => rt.block_on(batpak_replicate::verify_postgres(
            url, schema, &anchors, &keys,
        )),
        Engine::JetStream => rt.block_on(batpak_replicate::verify_jetstream(
            url, schema, &anchors, &keys,
        )),
    }
    .map_err(Failure::new)?;
    if ctx.json {
        print_json(&serde_json::json!({
            "rows": report.rows,
            "position": report.position,
            "running_hash": report.running_hash.to_string(),
            "anchors_held": report.anchors_held,
            "problem": report.problem.as_ref().map(|p| serde_json::json!({
                "sequence": p.sequence, "id": p.id, "detail": p.detail,
            })),
        }))?;
    }
    match report.problem {
        None => {
            if !ctx.json {
                out(&format!(
                    "the replica holds: {} rows, position {}, every hash, link and sequence checked, anchors held: {}; running hash {}\n",
                    report.rows, report.position, report.anchors_held, report.running_hash
                ))?;
            }
            Ok(())
        }
        Some(p) => Err(Failure::new(format!("the replica does not hold at {p}"))),
    }
}

/// Where a replica of the store stands, for `batpak stats --sink`.
pub struct SinkState {
    pub url: String,
    pub position: Option<u64>,
    /// Events visible in the store and not in the sink.
    pub behind: u64,
    /// How long ago the oldest of them was appended (0 when none).
    pub behind_seconds: f64,
    /// Why the sink could not be asked.
    pub error: Option<String>,
}

pub fn sink_states(
    store: &batpak::Store,
    sinks: &[String],
    name: &str,
) -> Result<Vec<SinkState>, Failure> {
    if sinks.is_empty() {
        return Ok(Vec::new());
    }
    let rt = runtime()?;
    let mut states = Vec::new();
    for url in sinks {
        let behind = match engine(url, "--sink ")? {
            Engine::Postgres => rt.block_on(batpak_replicate::behind_postgres(store, url, name)),
            Engine::JetStream => rt.block_on(batpak_replicate::behind_jetstream(store, url, name)),
        };
        // Shown without credentials.
        let shown = match url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or(rest))
            }
            None => url.clone(),
        };
        states.push(match behind {
            Ok(b) => {
                // `replica` is the store's own frontier here, `source` the sink's.
                let (position, visible) = (b.source, b.replica);
                let behind = visible.saturating_sub(position);
                let behind_seconds = if behind == 0 {
                    0.0
                } else {
                    store.get_sequence(position + 1)?.map_or(0.0, |e| {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos() as u64);
                        now.saturating_sub(e.timestamp_ns) as f64 / 1e9
                    })
                };
                SinkState {
                    url: shown,
                    position: Some(position),
                    behind,
                    behind_seconds,
                    error: None,
                }
            }
            Err(e) => SinkState {
                url: shown,
                position: None,
                behind: 0,
                behind_seconds: 0.0,
                error: Some(e),
            },
        });
    }
    Ok(states)
}
