//! Live delivery: Server-Sent Events for a region (catch-up, then live; the SSE `id`
//! is the sequence, so `Last-Event-ID` resumes), and durable named cursors (next
//! batch with a wait, commit), at least once across restarts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use batpak::{Region, Store, StoredEvent};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::App;
use crate::auth::{Caller, Permission};
use crate::contract::ErrorBody;
use crate::error::{ApiError, ApiResult};
use crate::facade::{Follow, FollowError};
use crate::params::Params;
use crate::params::RegionQuery;
use crate::wire::{event_json, parse_body};

/// Counts a stream as open for as long as it lives.
struct Open {
    app: Arc<App>,
    number: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.app
            .metrics
            .streams_open
            .fetch_sub(1, Ordering::Relaxed);
        self.app
            .metrics
            .stream_lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.number);
    }
}

struct Live {
    open: Open,
    follow: Follow,
    caller: Caller,
    shutdown: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

/// `GET /v1/subscribe`: the region parameters of `/v1/events`, and `from` (the first
/// sequence to send; default: only events appended from now on). A `Last-Event-ID`
/// header resumes after that sequence.
#[utoipa::path(
    get,
    path = "/v1/subscribe",
    tag = "live",
    summary = "A region's events as Server-Sent Events: catch-up from `from`, then live",
    params(RegionQuery, ("from" = Option<u64>, Query, description = "The first sequence to send (default: only events appended from now on)."), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this sequence (the `id` of the last event received).")),
    responses(
        (status = 200, description = "`event: event` with `id` the sequence and `data` the event; `event: lagged` with `data.resume_from` when the client fell behind its bound (then the stream closes); `:heartbeat` comments on a quiet stream.", content_type = "text/event-stream", body = String),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 503, description = "Too many streams are open.", body = ErrorBody),
    ),
)]
pub(crate) async fn subscribe(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    caller.require_some(Permission::Read)?;
    let mut params = Params::parse(raw.as_deref())?;
    let region = params.region(app.store.store())?;
    let from = params.number("from")?;
    params.finish()?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            let text = v.to_str().unwrap_or("");
            Some(text.trim().parse::<u64>().map_err(|_| {
                ApiError::field(
                    "Last-Event-ID",
                    format!("{text:?} is not a sequence this server sent"),
                )
            })?)
        }
    };
    let from = match (resume, from) {
        (Some(last), _) => last.saturating_add(1),
        (None, Some(from)) => from.max(1),
        (None, None) => app.store.store().frontier().visible + 1,
    };
    let permit = Arc::clone(&app.streams).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "this server already has {} live streams open, its limit",
                app.limits.max_streams
            ),
        )
    })?;
    let number = app.metrics.next_stream.fetch_add(1, Ordering::Relaxed);
    app.metrics.streams_open.fetch_add(1, Ordering::Relaxed);
    let live = Live {
        follow: app.store.follow(region, from, app.limits.stream_lag_limit),
        shutdown: app.shutdown.clone(),
        caller,
        done: false,
        open: Open {
            app: Arc::clone(&app),
            number,
            _permit: permit,
        },
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let event = next_event(&mut live).await?;
        Some((Ok::<Event, Infallible>(event), live))
    });
    let keep_alive = KeepAlive::new()
        .interval(app.limits.heartbeat)
        .text("heartbeat");
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// The next SSE event of a stream, or `None` when it has ended.
async fn next_event(live: &mut Live) -> Option<Event> {
    if live.done || *live.shutdown.borrow() {
        return None;
    }
    loop {
        let next = tokio::select! {
            next = live.follow.next() => next,
            _ = live.shutdown.changed() => return None,
        };
        let metrics = &live.open.app.metrics;
        metrics
            .stream_lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(live.open.number, live.follow.lag());
        match next {
            None => return None,
            Some(Ok(event)) => {
                if !readable(&live.caller, &event) {
                    continue;
                }
                metrics.stream_events.fetch_add(1, Ordering::Relaxed);
                let line = event_json(live.open.app.store.store(), &event);
                return Some(sse(
                    Event::default()
                        .event("event")
                        .id(event.sequence.to_string()),
                    &json!(line),
                ));
            }
            Some(Err(FollowError::Lagged { resume_from })) => {
                metrics.lagged.fetch_add(1, Ordering::Relaxed);
                live.done = true;
                return Some(sse(
                    Event::default().event("lagged"),
                    &json!({
                        "resume_from": resume_from,
                        "message": format!(
                            "this stream fell more than {} sequences behind the store; reconnect with from={resume_from}",
                            live.open.app.limits.stream_lag_limit
                        ),
                    }),
                ));
            }
            Some(Err(FollowError::Failed(e))) => {
                live.done = true;
                let e = ApiError::from(e);
                return Some(sse(
                    Event::default().event("error"),
                    &json!({ "code": e.code, "message": e.message }),
                ));
            }
        }
    }
}

fn sse(event: Event, data: &Value) -> Event {
    event.data(data.to_string())
}

fn readable(caller: &Caller, event: &StoredEvent) -> bool {
    caller.may(
        Permission::Read,
        event.coordinate.entity(),
        event.coordinate.scope(),
    )
}

/// What a cursor's thread is asked to do.
enum Ask {
    Next {
        max: usize,
        wait: Duration,
        reply: tokio::sync::oneshot::Sender<batpak::Result<(Vec<StoredEvent>, u64, u64)>>,
    },
    Commit {
        sequence: u64,
        reply: tokio::sync::oneshot::Sender<batpak::Result<u64>>,
    },
}

/// An open cursor: a thread that owns its handle (a cursor borrows the store, so
/// it lives on a thread that holds the store), asked over a channel.
struct Held {
    region: String,
    asks: mpsc::Sender<Ask>,
    thread: std::thread::JoinHandle<()>,
}

/// The cursors the server holds open, by name.
#[derive(Default)]
pub(crate) struct Cursors {
    held: Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_struct("Cursors")
            .field("open", &held.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Cursors {
    /// Ends every cursor thread (their handles drop, their commits are on disk).
    pub(crate) fn close_all(&self) {
        let held: Vec<Held> = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in held {
            drop(h.asks);
            let _ = h.thread.join();
        }
    }

    fn ask(&self, app: &App, name: &str, region: Region, ask: Ask) -> ApiResult<()> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let canonical = region.canonical();
        if let Some(h) = held.get(name) {
            if h.region != canonical {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "cursor_region_mismatch",
                    format!(
                        "the cursor {name:?} is open over the region {}, not {canonical}",
                        h.region
                    ),
                ));
            }
            if h.thread.is_finished() {
                held.remove(name);
            }
        }
        if !held.contains_key(name) {
            if held.len() >= app.limits.max_cursors {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_cursors",
                    format!(
                        "this server already holds {} cursors open, its limit",
                        app.limits.max_cursors
                    ),
                ));
            }
            let store = app.store.clone();
            let (tx, rx) = mpsc::channel();
            let (ready_tx, ready_rx) = mpsc::channel();
            let thread_name = name.to_string();
            let thread_region = region.clone();
            let thread = std::thread::Builder::new()
                .name("batpak-cursor".into())
                .spawn(move || {
                    hold(store.store(), &thread_name, thread_region, &rx, &ready_tx);
                })
                .map_err(|e| ApiError::internal(format!("cannot start a cursor thread: {e}")))?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e.into());
                }
                Err(_) => {
                    let _ = thread.join();
                    return Err(ApiError::internal("the cursor thread ended at once"));
                }
            }
            held.insert(
                name.to_string(),
                Held {
                    region: canonical,
                    asks: tx,
                    thread,
                },
            );
        }
        let h = held
            .get(name)
            .ok_or_else(|| ApiError::internal("the cursor vanished"))?;
        h.asks
            .send(ask)
            .map_err(|_| ApiError::internal("the cursor thread ended"))
    }
}

fn hold(
    store: &Store,
    name: &str,
    region: Region,
    asks: &mpsc::Receiver<Ask>,
    ready: &mpsc::Sender<batpak::Result<()>>,
) {
    let mut cursor = match store.cursor(name, region) {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Ok(ask) = asks.recv() {
        match ask {
            Ask::Next { max, wait, reply } => {
                let batch = cursor
                    .next_batch(max, wait)
                    .map(|events| (events, cursor.passed(), cursor.committed()));
                let _ = reply.send(batch);
            }
            Ask::Commit { sequence, reply } => {
                let _ = reply.send(cursor.commit(sequence).map(|()| cursor.committed()));
            }
        }
    }
}

fn cursor_region(app: &App, params: &mut Params) -> ApiResult<Region> {
    params.region(app.store.store())
}

/// `POST /v1/cursors/{name}/next?<region>&max=&wait_ms=`: the next events after what
/// this cursor delivered, waiting up to `wait_ms` for the first. `passed` is the
/// sequence to commit once they are handled.
#[utoipa::path(
    post,
    path = "/v1/cursors/{name}/next",
    tag = "live",
    summary = "A durable cursor's next events",
    params(("name" = String, Path, description = "The cursor."), RegionQuery, ("max" = Option<u64>, Query, description = "Most events (default 100)."), ("wait_ms" = Option<u64>, Query, description = "Wait this long for the first event (at most 30,000).")),
    responses(
        (status = 200, description = "The next events after what this cursor delivered; commit `passed` once they are handled.", body = CursorBatchDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 409, description = "The cursor is open over another region, or the commit is not allowed.", body = ErrorBody),
        (status = 503, description = "Too many cursors are open.", body = ErrorBody),
    ),
)]
pub(crate) async fn cursor_next(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let mut params = Params::parse(raw.as_deref())?;
    let region = cursor_region(&app, &mut params)?;
    let max = params
        .number("max")?
        .unwrap_or(app.limits.default_page as u64);
    if max == 0 || max > app.limits.max_page as u64 {
        return Err(ApiError::field(
            "max",
            format!("must be 1 to {}", app.limits.max_page),
        ));
    }
    let wait = params.number("wait_ms")?.unwrap_or(0);
    let max_wait = app.limits.max_cursor_wait;
    if Duration::from_millis(wait) > max_wait {
        return Err(ApiError::field(
            "wait_ms",
            format!(
                "{wait} is over this server's limit of {}",
                max_wait.as_millis()
            ),
        ));
    }
    params.finish()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.cursors.ask(
        &app,
        &name,
        region,
        Ask::Next {
            max: max as usize,
            wait: Duration::from_millis(wait),
            reply: tx,
        },
    )?;
    let (events, passed, committed) = rx
        .await
        .map_err(|_| ApiError::internal("the cursor thread ended"))??;
    let store = app.store.store();
    let events: Vec<_> = events
        .iter()
        .filter(|e| readable(&caller, e))
        .map(|e| event_json(store, e))
        .collect();
    Ok(Json(json!({
        "events": events,
        "passed": passed,
        "committed": committed,
    })))
}

/// What a cursor commit records.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommitBody {
    /// Everything up to this sequence is handled.
    sequence: u64,
}

/// A cursor's next batch.
#[derive(utoipa::ToSchema)]
#[schema(as = CursorBatch)]
#[allow(dead_code)]
pub(crate) struct CursorBatchDoc {
    #[schema(value_type = Vec<crate::contract::EventDoc>)]
    events: Vec<()>,
    /// Commit this once the events are handled.
    passed: u64,
    /// The last commit.
    committed: u64,
}

/// A cursor's commit.
#[derive(utoipa::ToSchema)]
#[schema(as = Committed)]
#[allow(dead_code)]
pub(crate) struct CommittedDoc {
    committed: u64,
}

/// `POST /v1/cursors/{name}/commit?<region>` with `{"sequence": n}`: records that
/// everything up to `n` is handled; after a restart the cursor resumes after it.
#[utoipa::path(
    post,
    path = "/v1/cursors/{name}/commit",
    tag = "live",
    summary = "Record a durable cursor's progress",
    request_body = CommitBody,
    params(("name" = String, Path, description = "The cursor."), RegionQuery),
    responses(
        (status = 200, description = "Committed: after a restart the cursor resumes after it.", body = CommittedDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 409, description = "The cursor is open over another region, or the commit is not allowed.", body = ErrorBody),
    ),
)]
pub(crate) async fn cursor_commit(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let mut params = Params::parse(raw.as_deref())?;
    let region = cursor_region(&app, &mut params)?;
    params.finish()?;
    let CommitBody { sequence } = parse_body(&body)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.cursors.ask(
        &app,
        &name,
        region,
        Ask::Commit {
            sequence,
            reply: tx,
        },
    )?;
    let committed = rx
        .await
        .map_err(|_| ApiError::internal("the cursor thread ended"))??;
    Ok(Json(json!({ "committed": committed })))
}
