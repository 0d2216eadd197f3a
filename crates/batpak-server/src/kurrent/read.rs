//! Reads: a stream or `$all`, forwards or backwards, with a count, or as a
//! subscription (confirmation, the events already stored, "caught up", then live
//! events, and on filtered `$all` subscriptions checkpoints).
//!
//! Every read runs as one task that pages through the store and sends into a
//! bounded channel: a slow client slows its task, and nothing piles up in memory.
//! A subscription follows the store's visible frontier the way the HTTP API's
//! live streams do: it reads the next page after the last sequence it looked at,
//! and when none is visible it waits for the frontier to move, so catch-up and
//! live delivery are one path, with no gap and no duplicate.

use std::sync::Arc;
use std::time::Duration;

use batpak::{Region, StoredEvent};
use tonic::Status;

use super::proto::event_store::client as shared;
use super::proto::event_store::client::streams::read_req::options::{
    self as opts, all_options, filter_options, stream_options, CountOption, FilterOption,
    ReadDirection, StreamOption,
};
use super::proto::event_store::client::streams::read_resp::{self, Content};
use super::proto::event_store::client::streams::{ReadReq, ReadResp};
use super::streams::{entity_from, invalid, ReadStream};
use super::{events, names, store_status, stream_deleted, Kurrent};
use crate::auth::{Caller, Permission};

/// Events read from the store at a time.
const PAGE: usize = 256;

/// The default search window of a filtered subscription, in events.
const DEFAULT_WINDOW: u64 = 32;

/// What a filter looks at.
struct Filter {
    on_stream: bool,
    prefixes: Vec<String>,
    regex: Option<fancy_regex::Regex>,
    /// Sequences scanned between checkpoints (window times multiplier).
    interval: u64,
}

impl Filter {
    fn parse(f: opts::FilterOptions) -> Result<Filter, Status> {
        let (on_stream, expression) = match f.filter {
            Some(filter_options::Filter::StreamIdentifier(e)) => (true, e),
            Some(filter_options::Filter::EventType(e)) => (false, e),
            None => return Err(invalid("the filter names neither stream nor event type")),
        };
        let regex = if expression.regex.is_empty() {
            None
        } else {
            Some(fancy_regex::Regex::new(&expression.regex).map_err(|e| {
                invalid(format!(
                    "the filter's regex {:?} does not compile: {e}",
                    expression.regex
                ))
            })?)
        };
        let window = match f.window {
            Some(filter_options::Window::Max(max)) if max > 0 => u64::from(max),
            _ => DEFAULT_WINDOW,
        };
        Ok(Filter {
            on_stream,
            prefixes: expression.prefix,
            regex,
            interval: window * u64::from(f.checkpoint_interval_multiplier.max(1)),
        })
    }

    fn admits(&self, store: &batpak::Store, event: &StoredEvent) -> bool {
        let stream;
        let kind;
        let target: &str = if self.on_stream {
            stream =
                String::from_utf8_lossy(&names::name_of(event.coordinate.entity())).into_owned();
            &stream
        } else {
            kind = events::type_of(store, event);
            &kind
        };
        let by_prefix = self.prefixes.iter().any(|p| target.starts_with(p.as_str()));
        let by_regex = self
            .regex
            .as_ref()
            .is_some_and(|r| r.is_match(target).unwrap_or(false));
        (self.prefixes.is_empty() && self.regex.is_none()) || by_prefix || by_regex
    }
}

/// What to read.
enum Source {
    Stream { entity: String },
    All,
}

/// One read, parsed.
struct Plan {
    source: Source,
    region: Region,
    backwards: bool,
    /// Forwards: the sequence after which to start; backwards: the one before
    /// which to start.
    from: u64,
    count: Option<u64>,
    subscribe: bool,
    filter: Option<Filter>,
    structured: bool,
    positions: bool,
}

pub(crate) fn read(
    k: Arc<Kurrent>,
    caller: Caller,
    request: ReadReq,
) -> Result<ReadStream, Status> {
    let options = request
        .options
        .ok_or_else(|| invalid("the read has no options"))?;
    let structured = !matches!(
        options
            .uuid_option
            .as_ref()
            .and_then(|u| u.content.as_ref()),
        Some(opts::uuid_option::Content::String(_))
    );
    let backwards = options.read_direction == ReadDirection::Backwards as i32;
    let positions = options
        .control_option
        .as_ref()
        .is_some_and(|c| c.compatibility >= 1);
    let (count, subscribe) = match options.count_option {
        Some(CountOption::Count(n)) => (Some(n), false),
        Some(CountOption::Subscription(_)) => (None, true),
        None => return Err(invalid("the read gives neither a count nor a subscription")),
    };
    if subscribe && backwards {
        return Err(invalid("a subscription reads forwards"));
    }
    let filter = match options.filter_option {
        Some(FilterOption::Filter(f)) => Some(Filter::parse(f)?),
        _ => None,
    };
    let store = k.app.store.store();
    let visible = store.frontier().visible;
    let (source, region, from) = match options.stream_option {
        Some(StreamOption::Stream(s)) => {
            if filter.is_some() {
                return Err(invalid(
                    "a filter applies to reads of $all, not of a stream",
                ));
            }
            let entity = entity_from(s.stream_identifier)?;
            // Each event is checked against its own scope as it is read; a caller
            // with no read grant at all is refused before anything is looked up.
            caller.require_some(Permission::Read)?;
            if k.tombstoned(&entity) {
                return Err(stream_deleted(&entity));
            }
            use stream_options::RevisionOption as R;
            let base = Region::all().entity(entity.as_str());
            let (region, from) = match (s.revision_option, backwards, subscribe) {
                (Some(R::Start(_)) | None, false, _) => (base, 0),
                (Some(R::Revision(r)), false, false) => (base.versions(r..), 0),
                // A subscription from a revision starts after it.
                (Some(R::Revision(r)), false, true) => (base.versions(r.saturating_add(1)..), 0),
                (Some(R::End(_)), false, _) => (base, visible),
                (Some(R::End(_)) | None, true, _) => (base, u64::MAX),
                (Some(R::Revision(r)), true, _) => (base.versions(..=r), u64::MAX),
                (Some(R::Start(_)), true, _) => (base.versions(..1), u64::MAX),
            };
            (Source::Stream { entity }, region, from)
        }
        Some(StreamOption::All(a)) => {
            caller.require_everywhere(Permission::Read)?;
            use all_options::AllOption as A;
            let from = match (a.all_option, backwards, subscribe) {
                (Some(A::Start(_)) | None, false, _) => 0,
                (Some(A::End(_)), false, _) => visible,
                // A read from a position includes it; a subscription starts after it.
                (Some(A::Position(p)), false, false) => p.commit_position.saturating_sub(1),
                (Some(A::Position(p)), false, true) => p.commit_position,
                (Some(A::End(_)) | None, true, _) => u64::MAX,
                (Some(A::Position(p)), true, _) => p.commit_position,
                (Some(A::Start(_)), true, _) => 0,
            };
            (Source::All, Region::all(), from)
        }
        None => return Err(invalid("the read names neither a stream nor $all")),
    };
    let plan = Plan {
        source,
        region,
        backwards,
        from,
        count,
        subscribe,
        filter,
        structured,
        positions,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<ReadResp, Status>>(32);
    tokio::spawn(async move {
        let result = if plan.subscribe {
            follow(&k, &caller, plan, &tx).await
        } else {
            read_once(&k, &caller, plan, &tx).await
        };
        if let Err(status) = result {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )))
}

type Tx = tokio::sync::mpsc::Sender<Result<ReadResp, Status>>;

/// The client went away: stop quietly.
struct Gone;

impl From<Gone> for Status {
    fn from(_: Gone) -> Status {
        Status::cancelled("the client went away")
    }
}

async fn send(tx: &Tx, content: Content) -> Result<(), Status> {
    tx.send(Ok(ReadResp {
        content: Some(content),
    }))
    .await
    .map_err(|_| Status::from(Gone))
}

fn event_message(k: &Kurrent, event: &StoredEvent, structured: bool) -> Content {
    Content::Event(read_resp::ReadEvent {
        event: Some(events::recorded(k.app.store.store(), event, structured)),
        link: None,
        position: Some(read_resp::read_event::Position::CommitPosition(
            event.sequence,
        )),
    })
}

fn check_read(caller: &Caller, event: &StoredEvent) -> Result<(), Status> {
    caller
        .require(
            Permission::Read,
            event.coordinate.entity(),
            event.coordinate.scope(),
        )
        .map_err(Status::from)
}

async fn read_once(k: &Kurrent, caller: &Caller, plan: Plan, tx: &Tx) -> Result<(), Status> {
    let store = &k.app.store;
    if let Source::Stream { entity } = &plan.source {
        let stream_region = Region::all().entity(entity.as_str());
        if store.store().count(&stream_region).map_err(store_status)? == 0 {
            return send(
                tx,
                Content::StreamNotFound(read_resp::StreamNotFound {
                    stream_identifier: Some(shared::StreamIdentifier {
                        stream_name: names::name_of(entity),
                    }),
                }),
            )
            .await;
        }
        if plan.positions {
            let first = store
                .query(stream_region, 0, 1)
                .await
                .map_err(store_status)?
                .first()
                .map_or(0, |e| e.version);
            send(tx, Content::FirstStreamPosition(first)).await?;
        }
    }
    let mut remaining = plan.count.unwrap_or(u64::MAX);
    let mut cursor = plan.from;
    while remaining > 0 {
        let page = if plan.backwards {
            store.query_reverse(plan.region.clone(), cursor, PAGE).await
        } else {
            store.query(plan.region.clone(), cursor, PAGE).await
        }
        .map_err(store_status)?;
        let full = page.len() == PAGE;
        for event in &page {
            cursor = event.sequence;
            if let Some(f) = &plan.filter {
                if !f.admits(store.store(), event) {
                    continue;
                }
            }
            check_read(caller, event)?;
            send(tx, event_message(k, event, plan.structured)).await?;
            remaining -= 1;
            if remaining == 0 {
                break;
            }
        }
        if !full {
            break;
        }
    }
    if plan.positions {
        match &plan.source {
            Source::Stream { entity } => {
                if let Some(last) = store.store().entity_version(entity) {
                    send(tx, Content::LastStreamPosition(last)).await?;
                }
            }
            Source::All => {
                let last = store.store().frontier().visible;
                send(
                    tx,
                    Content::LastAllStreamPosition(super::streams::position_of(last)),
                )
                .await?;
            }
        }
    }
    Ok(())
}

fn now() -> prost_types::Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

async fn follow(k: &Kurrent, caller: &Caller, plan: Plan, tx: &Tx) -> Result<(), Status> {
    let store = &k.app.store;
    let mut shutdown = k.app.shutdown.clone();
    send(
        tx,
        Content::Confirmation(read_resp::SubscriptionConfirmation {
            subscription_id: events::random_uuid().hyphenated().to_string(),
        }),
    )
    .await?;
    let mut scanned = plan.from;
    let mut caught_up = false;
    let mut last_revision: Option<u64> = None;
    let mut checkpointed = scanned;
    loop {
        if *shutdown.borrow() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        let visible = store.store().frontier().visible;
        // A tombstone ends a subscription to its stream, as it ends reads.
        if let Source::Stream { entity } = &plan.source {
            if visible > scanned && k.tombstoned(entity) {
                return Err(stream_deleted(entity));
            }
        }
        if visible > scanned {
            let page = store
                .query(plan.region.clone(), scanned, PAGE)
                .await
                .map_err(store_status)?;
            let full = page.len() == PAGE;
            for event in &page {
                if let Some(f) = &plan.filter {
                    if !f.admits(store.store(), event) {
                        continue;
                    }
                }
                check_read(caller, event)?;
                send(tx, event_message(k, event, plan.structured)).await?;
                last_revision = Some(event.version);
            }
            let last = page.last().map_or(0, |e| e.sequence);
            // A short page holds every match up to the frontier it started from.
            scanned = if full { last } else { last.max(visible) };
            if let Some(f) = &plan.filter {
                if scanned.saturating_sub(checkpointed) >= f.interval {
                    checkpoint(tx, scanned).await?;
                    checkpointed = scanned;
                }
            }
            if full {
                continue;
            }
        }
        if !caught_up {
            caught_up = true;
            let (stream_revision, position) = match plan.source {
                Source::Stream { .. } => (last_revision.map(|v| v as i64), None),
                Source::All => (None, Some(super::streams::position_of(scanned))),
            };
            send(
                tx,
                Content::CaughtUp(read_resp::CaughtUp {
                    timestamp: Some(now()),
                    stream_revision,
                    position,
                }),
            )
            .await?;
        }
        if plan.filter.is_some() && scanned > checkpointed {
            checkpoint(tx, scanned).await?;
            checkpointed = scanned;
        }
        tokio::select! {
            _ = store.wait_visible(scanned + 1, Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
            () = tx.closed() => return Ok(()),
        }
    }
}

async fn checkpoint(tx: &Tx, at: u64) -> Result<(), Status> {
    send(
        tx,
        Content::Checkpoint(read_resp::Checkpoint {
            commit_position: at,
            prepare_position: at,
            timestamp: Some(now()),
        }),
    )
    .await
}
