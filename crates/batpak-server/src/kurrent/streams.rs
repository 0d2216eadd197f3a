//! The Streams service: appends (one stream at a time, or many over one batch
//! session), deletes and tombstones; reads are in [`super::read`].
//!
//! An append is one atomic batpak batch: the expected revision is checked on its
//! first event, so either every event lands or none. A retry follows the
//! protocol's rule, not batpak's idempotency keys: when the events at the expected
//! place already carry the same client ids in the same order, the original result
//! is returned and nothing is written again. For `any` and `stream exists`, which
//! name no place, the listener remembers where the client ids of its recent events
//! are (the last 65,536), as the protocol's servers keep a cache; it fills that
//! from the store's newest events when it starts, so a retry after a restart finds
//! its original too.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use batpak::{Coordinate, ExpectedVersion, Region};
use futures_util::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::events::{self, Draft, Proposed};
use super::proto::event_store::client as shared;
use super::proto::event_store::client::streams::{
    append_req, append_resp, batch_append_req, batch_append_resp, delete_resp, streams_server,
    AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq,
    ReadResp,
};
use super::proto::google::rpc;
use super::{metadata, names, status_with, store_status, stream_deleted, Kurrent};
use crate::auth::{Caller, Permission};

/// How many events' client ids the listener remembers for retries without a
/// named place.
const RECENT: usize = 1 << 16;

/// Where recent events are, by their client id: the entity and the version.
#[derive(Default)]
pub(crate) struct RecentAppends {
    by_id: HashMap<u128, (Arc<str>, u64)>,
    order: VecDeque<u128>,
}

impl RecentAppends {
    /// The client ids of the newest events written through this protocol (those
    /// that carry one), up to the cache's size.
    pub(crate) fn load(store: &batpak::Store) -> batpak::Result<RecentAppends> {
        let mut found = Vec::new();
        let mut before = u64::MAX;
        let mut scanned = 0;
        while scanned < RECENT {
            let page = store.query_reverse(&Region::all(), before, 1024)?;
            let Some(last) = page.last() else { break };
            before = last.sequence;
            scanned += page.len();
            found.extend(page.iter().filter_map(|e| {
                let id = e.metadata.get(events::ID_KEY)?;
                let id = uuid::Uuid::parse_str(id).ok()?;
                Some((
                    id.as_u128(),
                    Arc::<str>::from(e.coordinate.entity()),
                    e.version,
                ))
            }));
        }
        let mut recent = RecentAppends::default();
        for (id, entity, version) in found.into_iter().rev() {
            recent.remember_one(id, entity, version);
        }
        Ok(recent)
    }

    /// Remembers the `ids` of events appended to `entity` from `first_version` on.
    fn remember(&mut self, ids: &[uuid::Uuid], entity: &str, first_version: u64) {
        let entity: Arc<str> = Arc::from(entity);
        for (version, id) in (first_version..).zip(ids) {
            self.remember_one(id.as_u128(), Arc::clone(&entity), version);
        }
    }

    fn remember_one(&mut self, id: u128, entity: Arc<str>, version: u64) {
        if self.by_id.insert(id, (entity, version)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

/// The outcome of an append, as both append RPCs answer it.
pub(crate) enum Outcome {
    Success {
        current: Option<u64>,
        position: Option<u64>,
    },
    Wrong {
        current: Option<u64>,
        expected: ExpectedVersion,
    },
}

/// The service (tonic hands `&self`; the state is shared with spawned tasks).
#[derive(Debug)]
pub(crate) struct Service(pub(crate) Arc<Kurrent>);

pub(crate) fn invalid(what: impl Into<String>) -> Status {
    status_with(
        Code::InvalidArgument,
        what.into(),
        &[("exception", "invalid-argument".to_string())],
    )
}

/// The entity of a stream identifier, or why it has none.
pub(crate) fn entity_from(id: Option<shared::StreamIdentifier>) -> Result<String, Status> {
    let id = id.ok_or_else(|| invalid("no stream identifier"))?;
    names::entity_of(&id.stream_name).map_err(|e| {
        invalid(format!(
            "stream {:?}: {e}",
            String::from_utf8_lossy(&id.stream_name)
        ))
    })
}

fn expected_of(revision: Option<u64>, no_stream: bool, exists: bool) -> ExpectedVersion {
    match (revision, no_stream, exists) {
        (Some(v), _, _) => ExpectedVersion::Exact(v),
        (None, true, _) => ExpectedVersion::NoStream,
        (None, false, true) => ExpectedVersion::StreamExists,
        _ => ExpectedVersion::Any,
    }
}

fn expected_text(expected: ExpectedVersion) -> String {
    match expected {
        ExpectedVersion::Exact(v) => v.to_string(),
        ExpectedVersion::NoStream => "-1".into(),
        ExpectedVersion::StreamExists => "-4".into(),
        _ => "-2".into(),
    }
}

fn current_text(current: Option<u64>) -> String {
    current.map_or_else(|| "-1".into(), |v| v.to_string())
}

impl Kurrent {
    fn may_append(&self, caller: &Caller, entity: &str) -> Result<(), Status> {
        caller.require(Permission::Append, entity, &self.scope)?;
        // Metadata can expire the described stream's events: it takes the right to
        // write that stream too, as deleting it does.
        if let Some(described) = metadata::described(entity) {
            caller.require(Permission::Append, &described, &self.scope)?;
        }
        if self.app.read_only {
            return Err(store_status(batpak::Error::ReadOnly));
        }
        Ok(())
    }

    /// Whether `entity` was deleted hard (a tombstone).
    pub(crate) fn tombstoned(&self, entity: &str) -> bool {
        self.app
            .store
            .store()
            .deletion(entity)
            .is_some_and(|d| d.mode == batpak::DeleteMode::Hard)
    }

    /// The original result, when the events from version `first` on carry `ids`.
    async fn retried(&self, entity: &str, first: u64, ids: &[uuid::Uuid]) -> Option<Outcome> {
        let n = ids.len() as u64;
        let region = Region::all().entity(entity).versions(first..first + n);
        let stored = self.app.store.query(region, 0, ids.len()).await.ok()?;
        let same = stored.len() == ids.len()
            && stored
                .iter()
                .zip(ids)
                .all(|(e, id)| events::client_id(e) == *id);
        let last = stored.last()?;
        same.then_some(Outcome::Success {
            current: Some(last.version),
            position: Some(last.sequence),
        })
    }

    /// Appends `drafts` to `entity` atomically, the first event checked against
    /// `expected`. The `$metadata` events of an append to a `$$` stream must be
    /// metadata batpak reads, and the described stream's retention follows them once
    /// they landed (or were found there, on a retry).
    pub(crate) async fn append_drafts(
        &self,
        entity: &str,
        expected: ExpectedVersion,
        drafts: Vec<Draft>,
    ) -> Result<Outcome, Status> {
        let describes = metadata::check(entity, &drafts).map_err(invalid)?;
        let outcome = self.append_checked(entity, expected, drafts).await?;
        if describes && matches!(outcome, Outcome::Success { .. }) {
            let meta = entity.to_string();
            self.app
                .store
                .run(move |store| metadata::reconcile(store, &meta))
                .await
                .map_err(store_status)?;
        }
        Ok(outcome)
    }

    async fn append_checked(
        &self,
        entity: &str,
        expected: ExpectedVersion,
        drafts: Vec<Draft>,
    ) -> Result<Outcome, Status> {
        let store = self.app.store.store();
        if drafts.is_empty() {
            if self.tombstoned(entity) {
                return Err(stream_deleted(entity));
            }
            let current = store.entity_version(entity);
            return Ok(if expected.admits(current) {
                Outcome::Success {
                    current,
                    position: None,
                }
            } else {
                Outcome::Wrong { current, expected }
            });
        }
        let ids: Vec<uuid::Uuid> = drafts.iter().map(|d| d.id).collect();
        if matches!(
            expected,
            ExpectedVersion::Any | ExpectedVersion::StreamExists
        ) {
            let known = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .by_id
                .get(&ids[0].as_u128())
                .cloned();
            if let Some((e, first)) = known {
                if &*e == entity {
                    if let Some(original) = self.retried(entity, first, &ids).await {
                        return Ok(original);
                    }
                }
            }
        }
        let coordinate = Coordinate::new(entity, self.scope.as_str()).map_err(store_status)?;
        let mut kinds = Vec::with_capacity(drafts.len());
        let mut unknown = Vec::new();
        for d in &drafts {
            match self.kinds.known(&d.event_type) {
                Some(kind) => kinds.push(Some(kind)),
                None => {
                    kinds.push(None);
                    unknown.push(d.event_type.clone());
                }
            }
        }
        if !unknown.is_empty() {
            let state = Arc::clone(&self.app);
            let kinds_of = Arc::clone(&self.kinds);
            let found = state
                .store
                .run(move |store| {
                    unknown
                        .iter()
                        .map(|t| kinds_of.kind_of(store, t))
                        .collect::<batpak::Result<Vec<_>>>()
                })
                .await
                .map_err(store_status)?;
            let mut found = found.into_iter();
            for k in kinds.iter_mut().filter(|k| k.is_none()) {
                *k = found.next();
            }
        }
        let mut batch = batpak::Batch::new();
        for (i, (draft, kind)) in drafts.into_iter().zip(kinds).enumerate() {
            let check = if i == 0 {
                expected
            } else {
                ExpectedVersion::Any
            };
            let kind = kind.unwrap_or(batpak::EventKind::custom(15, 0));
            events::push(&mut batch, &coordinate, kind, draft, check);
        }
        match self.app.store.append_batch(batch).await {
            Ok(receipts) => {
                let (Some(first), Some(last)) = (receipts.first(), receipts.last()) else {
                    return Err(Status::internal("the store returned no receipts"));
                };
                self.recent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remember(&ids, entity, first.version);
                Ok(Outcome::Success {
                    current: Some(last.version),
                    position: Some(last.sequence),
                })
            }
            Err(batpak::Error::VersionConflict { actual, .. }) => {
                let first = match expected {
                    ExpectedVersion::Exact(v) => Some(v + 1),
                    ExpectedVersion::NoStream => Some(0),
                    _ => None,
                };
                if let Some(first) = first {
                    if let Some(original) = self.retried(entity, first, &ids).await {
                        return Ok(original);
                    }
                }
                Ok(Outcome::Wrong {
                    current: actual,
                    expected,
                })
            }
            Err(e) => Err(store_status(e)),
        }
    }

    /// Delete (soft) or tombstone (hard) `entity`; the position of the record.
    async fn delete(
        &self,
        caller: &Caller,
        entity: String,
        expected: ExpectedVersion,
        mode: batpak::DeleteMode,
    ) -> Result<Option<u64>, Status> {
        self.may_append(caller, &entity)?;
        if self.tombstoned(&entity) {
            return Err(stream_deleted(&entity));
        }
        if mode == batpak::DeleteMode::Soft
            && expected.admits(None)
            && self.app.store.store().entity_version(&entity).is_none()
        {
            // Nothing to hide (an append racing this comes after the deletion).
            return Ok(None);
        }
        // The store checks the expected version in the same turn as it deletes, so
        // no append lands between the check and the deletion. A tombstone of a
        // stream that never had an event reserves its name.
        let deleted = self
            .app
            .store
            .run(move |store| store.delete_entity_expecting(&entity, mode, expected))
            .await;
        match deleted {
            Ok(receipt) => Ok(Some(receipt.sequence)),
            Err(batpak::Error::VersionConflict {
                entity,
                expected,
                actual,
            }) => {
                let name = String::from_utf8_lossy(&names::name_of(&entity)).into_owned();
                Err(status_with(
                    Code::FailedPrecondition,
                    format!(
                        "Wrong expected version for stream '{name}': expected {}, actual {}.",
                        expected_text(expected),
                        current_text(actual)
                    ),
                    &[
                        ("exception", "wrong-expected-version".to_string()),
                        ("stream-name", name),
                        ("expected-version", expected_text(expected)),
                        ("actual-version", current_text(actual)),
                    ],
                ))
            }
            Err(e) => Err(store_status(e)),
        }
    }
}

/// A position: commit and prepare are both the sequence.
pub(crate) fn position_of(sequence: u64) -> shared::AllStreamPosition {
    shared::AllStreamPosition {
        commit_position: sequence,
        prepare_position: sequence,
    }
}

fn proposed_of(m: append_req::ProposedMessage) -> Proposed {
    Proposed {
        id: m.id,
        metadata: m.metadata,
        custom_metadata: m.custom_metadata,
        data: m.data,
    }
}

fn message_size(p: &Proposed) -> usize {
    p.data.len()
        + p.custom_metadata.len()
        + p.metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn too_large(kurrent: &Kurrent, count: usize, bytes: usize) -> Option<Status> {
    let limits = &kurrent.app.limits;
    if count > limits.max_batch {
        return Some(status_with(
            Code::InvalidArgument,
            format!(
                "the append holds {count} events, over this server's limit of {}",
                limits.max_batch
            ),
            &[("exception", "maximum-append-size-exceeded".to_string())],
        ));
    }
    if bytes > limits.max_body_bytes {
        return Some(status_with(
            Code::InvalidArgument,
            format!(
                "the append holds {bytes} bytes, over this server's limit of {}",
                limits.max_body_bytes
            ),
            &[
                ("exception", "maximum-append-size-exceeded".to_string()),
                ("maximum-append-size", limits.max_body_bytes.to_string()),
            ],
        ));
    }
    None
}

fn append_answer(outcome: Outcome) -> AppendResp {
    use append_resp::{success, wrong_expected_version as wrong, Result as R};
    let empty = shared::Empty {};
    let result = match outcome {
        Outcome::Success { current, position } => R::Success(append_resp::Success {
            current_revision_option: Some(match current {
                Some(v) => success::CurrentRevisionOption::CurrentRevision(v),
                None => success::CurrentRevisionOption::NoStream(empty),
            }),
            position_option: Some(match position {
                Some(p) => success::PositionOption::Position(position_of(p)),
                None => success::PositionOption::NoPosition(empty),
            }),
        }),
        Outcome::Wrong { current, expected } => {
            R::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: Some(match current {
                    Some(v) => wrong::CurrentRevisionOption2060::CurrentRevision2060(v),
                    None => wrong::CurrentRevisionOption2060::NoStream2060(empty),
                }),
                expected_revision_option_20_6_0: Some(match expected {
                    ExpectedVersion::Exact(v) => {
                        wrong::ExpectedRevisionOption2060::ExpectedRevision2060(v)
                    }
                    ExpectedVersion::StreamExists => {
                        wrong::ExpectedRevisionOption2060::StreamExists2060(empty)
                    }
                    _ => wrong::ExpectedRevisionOption2060::Any2060(empty),
                }),
                current_revision_option: Some(match current {
                    Some(v) => wrong::CurrentRevisionOption::CurrentRevision(v),
                    None => wrong::CurrentRevisionOption::CurrentNoStream(empty),
                }),
                expected_revision_option: Some(match expected {
                    ExpectedVersion::Exact(v) => wrong::ExpectedRevisionOption::ExpectedRevision(v),
                    ExpectedVersion::NoStream => {
                        wrong::ExpectedRevisionOption::ExpectedNoStream(empty)
                    }
                    ExpectedVersion::StreamExists => {
                        wrong::ExpectedRevisionOption::ExpectedStreamExists(empty)
                    }
                    _ => wrong::ExpectedRevisionOption::ExpectedAny(empty),
                }),
            })
        }
    };
    AppendResp {
        result: Some(result),
    }
}

pub(crate) type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;
pub(crate) type BatchStream = Pin<Box<dyn Stream<Item = Result<BatchAppendResp, Status>> + Send>>;

#[tonic::async_trait]
impl streams_server::Streams for Service {
    type ReadStream = ReadStream;
    type BatchAppendStream = BatchStream;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadStream>, Status> {
        let caller = self.0.caller(request.metadata())?;
        super::read::read(Arc::clone(&self.0), caller, request.into_inner()).map(Response::new)
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let k = &self.0;
        let caller = k.caller(request.metadata())?;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| invalid("the append sent no options"))?;
        let Some(append_req::Content::Options(options)) = first.content else {
            return Err(invalid(
                "the first message of an append must be its options",
            ));
        };
        use append_req::options::ExpectedStreamRevision as E;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(v)) => expected_of(Some(v), false, false),
            Some(E::NoStream(_)) => expected_of(None, true, false),
            Some(E::StreamExists(_)) => expected_of(None, false, true),
            Some(E::Any(_)) | None => ExpectedVersion::Any,
        };
        let entity = entity_from(options.stream_identifier)?;
        k.may_append(&caller, &entity)?;
        let mut proposed = Vec::new();
        let mut bytes = 0;
        while let Some(message) = inbound.message().await? {
            match message.content {
                Some(append_req::Content::ProposedMessage(m)) => {
                    let m = proposed_of(m);
                    bytes += message_size(&m);
                    proposed.push(m);
                    if let Some(refused) = too_large(k, proposed.len(), bytes) {
                        return Err(refused);
                    }
                }
                Some(append_req::Content::Options(_)) => {
                    return Err(invalid(format!(
                        "message {} of the append repeats the options",
                        proposed.len() + 1
                    )))
                }
                None => {
                    return Err(invalid(format!(
                        "message {} of the append is empty",
                        proposed.len() + 1
                    )))
                }
            }
        }
        let drafts = proposed
            .into_iter()
            .enumerate()
            .map(|(i, m)| events::draft(m, i, caller.principal()))
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = k.append_drafts(&entity, expected, drafts).await?;
        Ok(Response::new(append_answer(outcome)))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.deletion(request, batpak::DeleteMode::Soft).await
    }

    async fn tombstone(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.deletion(request, batpak::DeleteMode::Hard).await
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BatchStream>, Status> {
        let caller = self.0.caller(request.metadata())?;
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BatchAppendResp, Status>>(64);
        let k = Arc::clone(&self.0);
        tokio::spawn(async move {
            // Requests in progress, by correlation id: their options and messages.
            let mut open: HashMap<u128, (Option<batch_append_req::Options>, Vec<Proposed>, usize)> =
                HashMap::new();
            let mut shutdown = k.app.shutdown.clone();
            loop {
                // A session stays open as long as its client likes; shutting down
                // ends it (an append in progress finishes first).
                let next = tokio::select! {
                    next = inbound.message() => Some(next),
                    _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => None,
                };
                let Some(next) = next else {
                    let _ = tx
                        .send(Err(Status::unavailable("the server is shutting down")))
                        .await;
                    break;
                };
                let message = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                };
                let Some(correlation) = message.correlation_id.clone() else {
                    let _ = tx
                        .send(Err(invalid("a batch append message has no correlation id")))
                        .await;
                    break;
                };
                let key = match events::uuid_of(&correlation) {
                    Ok(id) => id.as_u128(),
                    Err(e) => {
                        let _ = tx.send(Err(invalid(format!("correlation id: {e}")))).await;
                        break;
                    }
                };
                let entry = open.entry(key).or_insert_with(|| (None, Vec::new(), 0));
                if message.options.is_some() {
                    entry.0 = message.options;
                }
                for m in message.proposed_messages {
                    let m = proposed_of(m);
                    entry.2 += message_size(&m);
                    entry.1.push(m);
                }
                let refused = too_large(&k, entry.1.len(), entry.2);
                if !message.is_final && refused.is_none() {
                    continue;
                }
                let Some((options, proposed, _)) = open.remove(&key) else {
                    continue;
                };
                let answer = batch_one(&k, &caller, correlation, options, proposed, refused).await;
                if tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl Service {
    /// Delete (soft) or Tombstone (hard): the same request, the same answer.
    async fn deletion(
        &self,
        request: Request<DeleteReq>,
        mode: batpak::DeleteMode,
    ) -> Result<Response<DeleteResp>, Status> {
        let caller = self.0.caller(request.metadata())?;
        let what = match mode {
            batpak::DeleteMode::Soft => "delete",
            _ => "tombstone",
        };
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid(format!("the {what} has no options")))?;
        use append_req::options::ExpectedStreamRevision as E;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(v)) => ExpectedVersion::Exact(v),
            Some(E::NoStream(_)) => ExpectedVersion::NoStream,
            Some(E::StreamExists(_)) => ExpectedVersion::StreamExists,
            Some(E::Any(_)) | None => ExpectedVersion::Any,
        };
        let entity = entity_from(options.stream_identifier)?;
        let position = self.0.delete(&caller, entity, expected, mode).await?;
        use delete_resp::PositionOption as P;
        Ok(Response::new(DeleteResp {
            position_option: Some(match position {
                Some(p) => P::Position(position_of(p)),
                None => P::NoPosition(shared::Empty {}),
            }),
        }))
    }
}

/// One request of a batch session, answered (an error travels in the answer).
async fn batch_one(
    k: &Kurrent,
    caller: &Caller,
    correlation: shared::Uuid,
    options: Option<batch_append_req::Options>,
    proposed: Vec<Proposed>,
    refused: Option<Status>,
) -> BatchAppendResp {
    use batch_append_req::options::{DeadlineOption, ExpectedStreamPosition as E};
    use batch_append_resp::{success, ExpectedStreamPosition as Out, Result as R};
    let error = |status: Status| {
        R::Error(rpc::Status {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: None,
        })
    };
    let Some(options) = options else {
        return BatchAppendResp {
            correlation_id: Some(correlation),
            result: Some(error(invalid("the batch request never sent its options"))),
            stream_identifier: None,
            expected_stream_position: None,
        };
    };
    let (expected, echo) = match options.expected_stream_position {
        Some(E::StreamPosition(v)) => (ExpectedVersion::Exact(v), Out::StreamPosition(v)),
        Some(E::NoStream(())) => (ExpectedVersion::NoStream, Out::NoStream(())),
        Some(E::StreamExists(())) => (ExpectedVersion::StreamExists, Out::StreamExists(())),
        Some(E::Any(())) | None => (ExpectedVersion::Any, Out::Any(())),
    };
    let identifier = options.stream_identifier.clone();
    let past_deadline = match &options.deadline_option {
        Some(DeadlineOption::Deadline(d)) => d.seconds < 0 || (d.seconds == 0 && d.nanos <= 0),
        Some(DeadlineOption::Deadline21100(t)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            t.seconds < now
        }
        None => false,
    };
    let result = async {
        if let Some(refused) = refused {
            return Err(refused);
        }
        if past_deadline {
            return Err(Status::deadline_exceeded(
                "the batch request's deadline has passed",
            ));
        }
        let entity = entity_from(options.stream_identifier)?;
        k.may_append(caller, &entity)?;
        let drafts = proposed
            .into_iter()
            .enumerate()
            .map(|(i, m)| events::draft(m, i, caller.principal()))
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = k.append_drafts(&entity, expected, drafts).await?;
        Ok((entity, outcome))
    }
    .await;
    let result = match result {
        Err(status) => error(status),
        Ok((_, Outcome::Success { current, position })) => R::Success(batch_append_resp::Success {
            current_revision_option: Some(match current {
                Some(v) => success::CurrentRevisionOption::CurrentRevision(v),
                None => success::CurrentRevisionOption::NoStream(()),
            }),
            position_option: Some(match position {
                Some(p) => success::PositionOption::Position(position_of(p)),
                None => success::PositionOption::NoPosition(()),
            }),
        }),
        Ok((entity, Outcome::Wrong { current, expected })) => {
            let name = String::from_utf8_lossy(&names::name_of(&entity)).into_owned();
            error(Status::failed_precondition(format!(
                "Append failed due to WrongExpectedVersion. Stream: {name}, Expected version: {}, Actual version: {}",
                expected_text(expected),
                current_text(current)
            )))
        }
    };
    BatchAppendResp {
        correlation_id: Some(correlation),
        result: Some(result),
        stream_identifier: identifier,
        expected_stream_position: Some(echo),
    }
}
