//! The NATS JetStream sink: one stream per store (`BATPAK_<name>`), one message per
//! event on the subject `batpak.<name>.<scope>.<entity>`, its body the event's
//! lossless export line (JSON), in sequence order with nothing between.
//!
//! Every message says what it must follow: `Nats-Expected-Last-Sequence` names the
//! stream sequence before it (so a message lost in flight makes every later one fail,
//! never a gap) and `Nats-Expected-Last-Subject-Sequence` the last message of its
//! entity (per-entity order, checked by the server). `Nats-Msg-Id` is the event id,
//! so the server drops a message it already holds. The sink's position is the
//! `Batpak-Sequence` header of the copy's last event message: there is nothing to
//! commit beside the messages, and a replicator killed mid-batch resumes after the
//! last message the server took.
//!
//! Several stores' copies may share one stream (`nats://HOST:PORT/STREAM`, each copy
//! adding its subjects `batpak.<name>.>`): the stream sequence is then not one sink's
//! to predict, so there each message is published once the one before it is
//! acknowledged, which keeps every copy's messages gap-free and in order.
//!
//! A redaction cannot rewrite a message: before the batch holding the redaction, the
//! sink publishes the erased copy of the target (payload gone; hash, chain and digest
//! kept) on `batpak.<name>.erased`, then deletes the original, which the server
//! overwrites on disk. A verifier fills the original's place from the erased copy.
//!
//! Beside the events, a copy keeps the store's anchors on `batpak.<name>.anchor` and
//! its compaction manifests on `batpak.<name>.compaction` (three-token subjects, so
//! `batpak.<name>.*.*` is exactly the events).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use batpak::proof::Anchor;
use batpak::{ExportLine, Hash};

use crate::sink::{Sink, SinkError};

/// The header holding a message's store sequence.
pub(crate) const H_SEQUENCE: &str = "Batpak-Sequence";
/// On an erased copy: the stream sequence of the original it replaces.
pub(crate) const H_ERASED: &str = "Batpak-Erased";

/// How long a request to the server may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A name the sink accepts for a store's copy: ASCII letters, digits, `_` and `-`, at
/// most 48 bytes (one subject token, and part of the stream's name).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the name {name:?} must be ASCII letters, digits, _ and -, at most 48 bytes"
        ))
    }
}

/// The stream holding the copy named `name`.
pub fn stream_name(name: &str) -> String {
    format!("BATPAK_{name}")
}

/// A scope or entity as one subject token: ASCII letters, digits and `-_:=@` stay as
/// they are; every other byte (`.`, `*`, `>`, `%`, `$`, space, non-ASCII) becomes `%`
/// and two upper-case hex digits; the empty string becomes a lone `%`. Distinct
/// names give distinct tokens, and no token is a wildcard.
pub fn subject_token(name: &str) -> String {
    if name.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_:=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The subject of an event of `scope` and `entity` in the copy named `name`.
pub fn event_subject(name: &str, scope: &str, entity: &str) -> String {
    format!(
        "batpak.{name}.{}.{}",
        subject_token(scope),
        subject_token(entity)
    )
}

/// The subject erased copies are published on.
pub(crate) fn erased_subject(name: &str) -> String {
    format!("batpak.{name}.erased")
}

/// The subject anchors of the store are published on.
pub(crate) fn anchor_subject(name: &str) -> String {
    format!("batpak.{name}.anchor")
}

/// The subject the store's compaction manifests are published on.
pub(crate) fn compaction_subject(name: &str) -> String {
    format!("batpak.{name}.compaction")
}

/// The subjects of the stream: everything under `batpak.<name>`.
fn stream_subjects(name: &str) -> String {
    format!("batpak.{name}.>")
}

fn unavailable(e: impl std::fmt::Display) -> SinkError {
    SinkError::Unavailable(e.to_string())
}

/// A connection to the server and the store's stream.
pub(crate) struct Conn {
    pub stream: stream::Stream,
    pub js: jetstream::Context,
    /// Whether other stores' copies share the stream.
    pub shared: bool,
}

/// `nats://HOST:PORT` (the copy's own stream) or `nats://HOST:PORT/STREAM` (a stream
/// several copies share), split into the server's address and the shared stream.
pub fn split_nats_url(url: &str) -> Result<(String, Option<String>), String> {
    let Some(rest) = url.strip_prefix("nats://") else {
        return Err(format!(
            "{url:?} is not a nats://HOST:PORT[/STREAM] address"
        ));
    };
    match rest.split_once('/') {
        None | Some((_, "")) => Ok((format!("nats://{}", rest.trim_end_matches('/')), None)),
        Some((server, stream)) => {
            let ok = stream.len() <= 64
                && stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(format!(
                    "{url:?}: the stream name {stream:?} must be ASCII letters, digits, _ and -, at most 64 bytes"
                ));
            }
            Ok((format!("nats://{server}"), Some(stream.to_string())))
        }
    }
}

/// Connects to `url` and opens the stream of the copy named `name` (its own, or the
/// shared one the URL names); creates it when `create` (the replicator) and it is
/// missing, and adds the copy's subjects to a shared stream that lacks them.
pub(crate) async fn connect(url: &str, name: &str, create: bool) -> Result<Conn, String> {
    check_name(name)?;
    let (server, shared) = split_nats_url(url)?;
    let stream_name = shared.clone().unwrap_or_else(|| stream_name(name));
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(TIMEOUT)
        .request_timeout(Some(TIMEOUT))
        .connect(&server)
        .await
        .map_err(|e| format!("cannot connect to {server}: {e}"))?;
    let mut js = jetstream::new(client);
    js.set_timeout(TIMEOUT);
    let subjects = stream_subjects(name);
    let stream = if create {
        let mut stream = js
            .get_or_create_stream(stream::Config {
                name: stream_name.clone(),
                subjects: vec![subjects.clone()],
                storage: stream::StorageType::File,
                allow_direct: true,
                ..stream::Config::default()
            })
            .await
            .map_err(|e| format!("{server}: the stream {stream_name}: {e}"))?;
        let mut config = stream
            .info()
            .await
            .map_err(|e| format!("{server}: the stream {stream_name}: {e}"))?
            .config
            .clone();
        if !config.subjects.contains(&subjects) {
            config.subjects.push(subjects.clone());
            js.update_stream(config).await.map_err(|e| {
                format!("{server}: adding {subjects} to the stream {stream_name}: {e}")
            })?;
        }
        stream
    } else {
        js.get_stream(&stream_name).await.map_err(|e| {
            format!("{server}: no stream {stream_name} (has anything been replicated there?): {e}")
        })?
    };
    Ok(Conn {
        stream,
        js,
        shared: shared.is_some(),
    })
}

/// A message of the stream, as the copy holds it.
pub(crate) struct Message {
    /// Its stream sequence.
    pub stream_seq: u64,
    pub subject: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Message {
    fn of(m: async_nats::jetstream::message::StreamMessage) -> Message {
        Message {
            stream_seq: m.sequence,
            subject: m.subject.to_string(),
            headers: m.headers,
            body: m.payload.to_vec(),
        }
    }

    /// The store sequence its header names.
    pub fn sequence(&self) -> Option<u64> {
        header(&self.headers, H_SEQUENCE).and_then(|v| v.parse().ok())
    }

    /// The export line its body holds.
    pub fn line(&self) -> Result<ExportLine, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("the body is not an event's export line: {e}"))
    }
}

pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(async_nats::HeaderValue::as_str)
}

/// The first event message (not an erased copy) at stream sequence `from` or after.
pub(crate) async fn event_at_or_after(
    stream: &stream::Stream,
    name: &str,
    from: u64,
) -> Result<Option<Message>, String> {
    let filter = format!("batpak.{name}.*.*");
    match stream
        .raw_message_builder()
        .sequence(from)
        .next_by_subject(filter)
        .send()
        .await
    {
        Ok(m) => Ok(Some(Message::of(m))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(format!("the event message after {from}: {e}")),
    }
}

fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("not found") || text.contains("no message found") || text.contains("10037")
}

/// The stream sequence of the first event message whose store sequence is at least
/// `sequence` (binary search: event messages are in store order), `None` when every
/// event message is before it.
pub(crate) async fn locate(
    stream: &stream::Stream,
    name: &str,
    first: u64,
    last: u64,
    sequence: u64,
) -> Result<Option<Message>, String> {
    let (mut lo, mut hi) = (first.max(1), last.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match event_at_or_after(stream, name, mid).await? {
            Some(m) if m.stream_seq < hi => {
                if m.sequence().unwrap_or(0) < sequence {
                    lo = m.stream_seq + 1;
                } else {
                    hi = mid;
                }
            }
            _ => hi = mid,
        }
    }
    event_at_or_after(stream, name, lo).await
}

pub(crate) enum TailError {
    /// The server failed.
    Server(String),
    /// A message of the stream is not part of a batpak copy.
    Foreign(String),
}

/// The copy's position: the higher store sequence of the copy's last event message
/// and its last erased copy (which may stand for the last event, its original
/// deleted; erasures go out in sequence order); 0 for none. Other stores' messages in
/// a shared stream are on other subjects and not looked at.
pub(crate) async fn tail_position(stream: &stream::Stream, name: &str) -> Result<u64, TailError> {
    let mut position = 0;
    for subject in [format!("batpak.{name}.*.*"), erased_subject(name)] {
        let m = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Message::of(m),
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(TailError::Server(format!(
                    "the last message of {subject}: {e}"
                )))
            }
        };
        let sequence = m.sequence().ok_or_else(|| {
            TailError::Foreign(format!(
                "message {} ({}) has no {H_SEQUENCE} header: the stream holds something other than a batpak copy there",
                m.stream_seq, m.subject
            ))
        })?;
        position = position.max(sequence);
    }
    Ok(position)
}

/// An ephemeral consumer of the stream's messages on `filter` from stream sequence
/// `start`, taking no acknowledgements.
pub(crate) async fn reader(
    stream: &stream::Stream,
    filter: String,
    start: u64,
) -> Result<jetstream::consumer::Consumer<jetstream::consumer::pull::Config>, String> {
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ack_policy: jetstream::consumer::AckPolicy::None,
            filter_subject: filter,
            inactive_threshold: Duration::from_secs(60),
            ..jetstream::consumer::pull::Config::default()
        })
        .await
        .map_err(|e| format!("a consumer of the stream: {e}"))
}

/// How long one pull request waits for messages at most: the server ends it then
/// (a request that asks for none to wait can go unanswered on some servers when it
/// finds nothing).
const PULL_WAIT: Duration = Duration::from_millis(250);

/// The messages available now, up to `max` (empty when none come within
/// `PULL_WAIT`).
pub(crate) async fn next_batch(
    consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
    max: usize,
) -> Result<Vec<Message>, String> {
    use futures_util::StreamExt as _;
    let mut batch = consumer
        .batch()
        .max_messages(max)
        .expires(PULL_WAIT)
        .messages()
        .await
        .map_err(|e| format!("reading the stream: {e}"))?;
    let mut out = Vec::new();
    loop {
        // The server ends the request at its expiry; a request it never ends is an
        // error, not an empty answer (messages still in flight to it would be lost).
        let next = tokio::time::timeout(TIMEOUT, batch.next())
            .await
            .map_err(|_| "reading the stream: the server did not end a pull request".to_string())?;
        let Some(m) = next else { break };
        let m = m.map_err(|e| format!("reading the stream: {e}"))?;
        let stream_seq = m
            .info()
            .map_err(|e| format!("a message without its stream sequence: {e}"))?
            .stream_sequence;
        out.push(Message {
            stream_seq,
            subject: m.message.subject.to_string(),
            headers: m.message.headers.clone().unwrap_or_default(),
            body: m.message.payload.to_vec(),
        });
    }
    Ok(out)
}

/// Every message on `subject` at stream sequence `from` or after (one request each:
/// erased copies and anchors are few), and the stream sequence to go on from.
pub(crate) async fn messages_on(
    stream: &stream::Stream,
    subject: &str,
    from: u64,
) -> Result<(Vec<Message>, u64), String> {
    let mut next = from.max(1);
    let mut out = Vec::new();
    loop {
        match stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(subject)
            .send()
            .await
        {
            Ok(m) => {
                let m = Message::of(m);
                next = m.stream_seq + 1;
                out.push(m);
            }
            Err(e) if is_not_found(&e) => return Ok((out, next)),
            Err(e) => return Err(format!("the messages on {subject}: {e}")),
        }
    }
}

/// Every erased copy at stream sequence `from` or after, by the store sequence it
/// stands for; returns the stream sequence to go on from.
pub(crate) async fn erased_copies(
    stream: &stream::Stream,
    name: &str,
    from: u64,
    into: &mut std::collections::BTreeMap<u64, (u64, ExportLine)>,
) -> Result<u64, String> {
    let (messages, next) = messages_on(stream, &erased_subject(name), from).await?;
    for m in messages {
        let line = m
            .line()
            .map_err(|why| format!("the erased copy at stream sequence {}: {why}", m.stream_seq))?;
        if let Some(sequence) = m.sequence() {
            into.insert(sequence, (m.stream_seq, line));
        }
    }
    Ok(next)
}

/// The newest compaction manifest the copy named `name` keeps in the stream,
/// decoded.
pub(crate) async fn copy_compaction(
    stream: &stream::Stream,
    name: &str,
) -> Result<Option<batpak::proof::CompactionProof>, String> {
    let subject = compaction_subject(name);
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => {
            let m = Message::of(m);
            batpak::proof::CompactionProof::from_manifest(&m.body)
                .map(Some)
                .map_err(|e| {
                    format!(
                        "the message at stream sequence {} on {subject}: {e}",
                        m.stream_seq
                    )
                })
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(format!("the last message on {subject}: {e}")),
    }
}

/// The anchors the copy named `name` keeps in the stream.
pub(crate) async fn copy_anchors(
    stream: &stream::Stream,
    name: &str,
) -> Result<Vec<Anchor>, String> {
    let (messages, _) = messages_on(stream, &anchor_subject(name), 1).await?;
    messages
        .iter()
        .map(|m| {
            serde_json::from_slice(&m.body).map_err(|e| {
                format!(
                    "the message at stream sequence {} on {}: not an anchor: {e}",
                    m.stream_seq, m.subject
                )
            })
        })
        .collect()
}

/// What the sink knows of the stream's end, read at `position` and kept up as it
/// publishes; dropped on any failure, so the next attempt reads it again.
struct Tail {
    /// The stream's last sequence (erased copies included).
    last: u64,
    /// The store sequence of the last event message.
    position: u64,
    /// The stream sequence of each entity subject's last message, as far as known.
    subjects: HashMap<String, u64>,
}

/// Replicates into a JetStream stream.
pub struct JetStreamSink {
    url: String,
    name: String,
    conn: Option<Conn>,
    tail: Option<Tail>,
}

impl std::fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl JetStreamSink {
    /// A sink of the copy named `name` on the server at `url` (`nats://host:port`).
    /// Connects on first use, and again after a failure.
    pub fn new(url: &str, name: &str) -> Result<JetStreamSink, String> {
        check_name(name)?;
        split_nats_url(url)?;
        Ok(JetStreamSink {
            url: url.to_string(),
            name: name.to_string(),
            conn: None,
            tail: None,
        })
    }

    async fn conn(&mut self) -> Result<&Conn, SinkError> {
        if self.conn.is_none() {
            self.conn = Some(
                connect(&self.url, &self.name, true)
                    .await
                    .map_err(SinkError::Unavailable)?,
            );
        }
        self.conn
            .as_ref()
            .ok_or_else(|| unavailable("no connection"))
    }

    /// Forgets what it knew of the stream after a failure, and the connection: the
    /// next attempt connects again and checks the stream (a shared stream whose
    /// subjects another copy's sink rewrote at the same moment gets this copy's
    /// subjects back).
    fn failed(&mut self, why: impl std::fmt::Display) -> SinkError {
        self.tail = None;
        self.conn = None;
        unavailable(why)
    }

    /// Reads the stream's end: its last sequence and the position.
    async fn read_tail(&mut self) -> Result<(), SinkError> {
        let name = self.name.clone();
        let conn = self.conn().await?;
        let info = conn.stream.get_info().await.map_err(unavailable)?;
        let last = info.state.last_sequence;
        let position = tail_position(&conn.stream, &name)
            .await
            .map_err(|e| match e {
                TailError::Server(why) => unavailable(why),
                TailError::Foreign(why) => SinkError::Diverged(why),
            })?;
        self.tail = Some(Tail {
            last,
            position,
            subjects: HashMap::new(),
        });
        Ok(())
    }

    /// The stream sequence of the last message of `subject`, for `line` (which must
    /// continue it): from what this sink published, or asked of the server, where the
    /// message's hash is checked against the line's link.
    async fn subject_last(&mut self, subject: &str, line: &ExportLine) -> Result<u64, SinkError> {
        if let Some(seq) = self.tail.as_ref().and_then(|t| t.subjects.get(subject)) {
            return Ok(*seq);
        }
        if line.version.unwrap_or(0) == 0 {
            // The entity's first event: the server refuses it if the subject has any.
            return Ok(0);
        }
        let conn = self.conn().await?;
        let last = match conn.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Message::of(m),
            // Every earlier event of the entity was erased (its originals deleted).
            Err(e) if is_not_found(&e) => return Ok(0),
            Err(e) => return Err(unavailable(e)),
        };
        let held = last.line().map_err(|why| {
            SinkError::Diverged(format!(
                "{subject}: message {} of the stream: {why}",
                last.stream_seq
            ))
        })?;
        let version = line.version.unwrap_or(0);
        let held_version = held.version.unwrap_or(0);
        let diverged = if held_version + 1 == version {
            held.event_hash != line.prev_hash
        } else {
            // An older message: the newer ones were erased, their originals deleted.
            held_version >= version
        };
        if diverged {
            return Err(SinkError::Diverged(format!(
                "{subject}: the stream's last message of the entity (stream sequence {}) is version {held_version} with hash {}, but the store's event {} is version {version} after {}",
                last.stream_seq,
                held.event_hash.unwrap_or(Hash::ZERO),
                line.sequence.unwrap_or(0),
                line.prev_hash.unwrap_or(Hash::ZERO)
            )));
        }
        Ok(last.stream_seq)
    }

    /// Publishes the erased copy of each already shipped event in `erased`, then
    /// deletes its original.
    async fn erase(&mut self, erased: &[ExportLine]) -> Result<(), SinkError> {
        let name = self.name.clone();
        let mut erased: Vec<&ExportLine> = erased.iter().collect();
        erased.sort_by_key(|l| l.sequence);
        for line in erased {
            let Some(sequence) = line.sequence else {
                continue;
            };
            let Some(tail) = self.tail.as_ref() else {
                return Err(unavailable("the stream's end is not known"));
            };
            if sequence > tail.position {
                // In this batch: it ships erased.
                continue;
            }
            let conn = self.conn().await?;
            let info = conn.stream.get_info().await.map_err(unavailable)?;
            let original = locate(
                &conn.stream,
                &name,
                info.state.first_sequence,
                info.state.last_sequence,
                sequence,
            )
            .await
            .map_err(unavailable)?;
            let Some(original) = original.filter(|m| m.sequence() == Some(sequence)) else {
                // Deleted already: its erased copy went out before a failure.
                continue;
            };
            if original.line().is_ok_and(|l| l.redacted) {
                continue;
            }
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("erased:{}", original_id(line)));
            headers.insert(H_SEQUENCE, sequence.to_string());
            headers.insert(H_ERASED, original.stream_seq.to_string());
            let body = serde_json::to_vec(line).map_err(unavailable)?;
            // The copy first: a failure between the two leaves both, and the retry
            // (the server drops the copy's duplicate) deletes the original.
            conn.js
                .publish_with_headers(erased_subject(&name), headers, body.into())
                .await
                .map_err(unavailable)?
                .await
                .map_err(unavailable)?;
            conn.stream
                .delete_message(original.stream_seq)
                .await
                .map_err(unavailable)?;
        }
        // The copies moved the stream's end, and a deleted original may have been its
        // entity's last message.
        self.read_tail().await
    }
}

fn original_id(line: &ExportLine) -> String {
    line.id.map_or_else(String::new, |id| id.to_string())
}

impl JetStreamSink {
    /// Publishes a message that is not an event (an anchor, a manifest) on `subject`,
    /// chained to the stream's end in a stream of its own.
    async fn publish_other(
        &mut self,
        subject: String,
        msg_id: String,
        body: Vec<u8>,
    ) -> Result<(), SinkError> {
        if self.tail.is_none() {
            self.read_tail().await?;
        }
        let shared = self.conn.as_ref().is_some_and(|c| c.shared);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let expected = self.tail.as_ref().map_or(0, |t| t.last);
        if !shared {
            headers.insert("Nats-Expected-Last-Sequence", expected.to_string());
        }
        let Some(conn) = self.conn.as_ref() else {
            return Err(self.failed("no connection"));
        };
        let sent = conn
            .js
            .publish_with_headers(subject.clone(), headers, body.into())
            .await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(e) => return Err(self.failed(e)),
        };
        match ack {
            Ok(ack) => {
                if let Some(tail) = self.tail.as_mut() {
                    // A duplicate (the same message again) did not move the stream.
                    if !ack.duplicate {
                        tail.last = ack.sequence;
                    }
                }
                Ok(())
            }
            Err(e) => Err(self.failed(format!("{subject}: {e}"))),
        }
    }
}

impl Sink for JetStreamSink {
    async fn compaction(&mut self, generation: u64, manifest: &[u8]) -> Result<(), SinkError> {
        self.publish_other(
            compaction_subject(&self.name),
            format!("compaction:{generation}"),
            manifest.to_vec(),
        )
        .await
    }

    async fn anchor(&mut self, anchor: &Anchor) -> Result<(), SinkError> {
        let body = serde_json::to_vec(anchor).map_err(unavailable)?;
        self.publish_other(
            anchor_subject(&self.name),
            format!("anchor:{}", anchor.sequence),
            body,
        )
        .await
    }

    fn describe(&self) -> String {
        match split_nats_url(&self.url) {
            Ok((server, Some(stream))) => {
                format!("{server} stream {stream} (shared), copy {}", self.name)
            }
            _ => format!("{} stream {}", self.url, stream_name(&self.name)),
        }
    }

    async fn position(&mut self) -> Result<u64, SinkError> {
        match self.read_tail().await {
            Ok(()) => Ok(self.tail.as_ref().map_or(0, |t| t.position)),
            Err(SinkError::Unavailable(why)) => Err(self.failed(why)),
            Err(e) => Err(e),
        }
    }

    async fn ship(
        &mut self,
        events: &[ExportLine],
        erased: &[ExportLine],
        _through: u64,
    ) -> Result<(), SinkError> {
        if self.tail.is_none() {
            self.read_tail().await?;
        }
        // Erasures first: once the redaction's own message is in, the replicator is
        // past it and would not come back to them.
        if !erased.is_empty() {
            if let Err(e) = self.erase(erased).await {
                return Err(match e {
                    SinkError::Unavailable(why) => self.failed(why),
                    e => e,
                });
            }
        }
        // In a stream of its own, publish every message of the batch, then wait for
        // the acknowledgements: each names the stream sequence before it, so they land
        // in order or not at all. In a shared stream the sequence is not the sink's to
        // predict, so each message waits for the one before it to be acknowledged.
        let shared = self.conn.as_ref().is_some_and(|c| c.shared);
        let mut pending = Vec::with_capacity(events.len());
        for line in events {
            let subject = event_subject(&self.name, &line.scope, &line.entity);
            let subject_last = match self.subject_last(&subject, line).await {
                Ok(s) => s,
                Err(SinkError::Unavailable(why)) => return Err(self.failed(why)),
                Err(e) => return Err(e),
            };
            let Some(tail) = self.tail.as_mut() else {
                return Err(unavailable("the stream's end is not known"));
            };
            let stream_seq = tail.last + 1;
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", original_id(line));
            if !shared {
                headers.insert("Nats-Expected-Last-Sequence", tail.last.to_string());
                tail.last = stream_seq;
                tail.subjects.insert(subject.clone(), stream_seq);
            }
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                subject_last.to_string(),
            );
            let sequence = line.sequence.unwrap_or(0);
            headers.insert(H_SEQUENCE, sequence.to_string());
            let body = serde_json::to_vec(line).map_err(unavailable)?;
            let Some(conn) = self.conn.as_ref() else {
                return Err(self.failed("no connection"));
            };
            let ack = match conn
                .js
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
            {
                Ok(ack) => ack,
                Err(e) => return Err(self.failed(e)),
            };
            if !shared {
                pending.push((stream_seq, sequence, ack));
                continue;
            }
            match ack.await {
                Ok(ack) if !ack.duplicate => {
                    if let Some(tail) = self.tail.as_mut() {
                        tail.subjects.insert(subject, ack.sequence);
                        tail.position = sequence;
                    }
                }
                Ok(ack) => {
                    return Err(self.failed(format!(
                        "event {sequence} was taken as a duplicate of stream sequence {}",
                        ack.sequence
                    )))
                }
                Err(e) => return Err(self.failed(format!("event {sequence}: {e}"))),
            }
        }
        for (stream_seq, sequence, ack) in pending {
            match ack.await {
                Ok(ack) if ack.sequence == stream_seq && !ack.duplicate => {}
                Ok(ack) => {
                    return Err(self.failed(format!(
                        "event {sequence} landed at stream sequence {}{} where {stream_seq} was expected",
                        ack.sequence,
                        if ack.duplicate { " as a duplicate" } else { "" }
                    )))
                }
                Err(e) => return Err(self.failed(format!("event {sequence}: {e}"))),
            }
        }
        if let Some(tail) = self.tail.as_mut() {
            tail.position = events
                .last()
                .and_then(|l| l.sequence)
                .unwrap_or(tail.position);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{check_name, event_subject, stream_name, subject_token};

    #[test]
    fn names_become_subject_tokens_that_are_never_wildcards_or_separators() {
        assert_eq!(subject_token("order:1"), "order:1");
        assert_eq!(subject_token("a-b_c=d@e"), "a-b_c=d@e");
        assert_eq!(subject_token("a.b c*"), "a%2Eb%20c%2A");
        assert_eq!(subject_token(">"), "%3E");
        assert_eq!(subject_token("100%"), "100%25");
        assert_eq!(subject_token("$sys"), "%24sys");
        assert_eq!(subject_token("é"), "%C3%A9");
        assert_eq!(subject_token(""), "%");
        assert_eq!(
            event_subject("shop", "batpak:kinds", "x.y"),
            "batpak.shop.batpak:kinds.x%2Ey"
        );
        assert_eq!(stream_name("shop"), "BATPAK_shop");
        assert_eq!(
            super::split_nats_url("nats://h:4222").unwrap(),
            ("nats://h:4222".to_string(), None)
        );
        assert_eq!(
            super::split_nats_url("nats://h:4222/").unwrap(),
            ("nats://h:4222".to_string(), None)
        );
        assert_eq!(
            super::split_nats_url("nats://h:4222/SHOP_1").unwrap(),
            ("nats://h:4222".to_string(), Some("SHOP_1".to_string()))
        );
        for bad in ["http://h", "nats://h/a.b", "nats://h/a/b", "nats://h/a b"] {
            assert!(super::split_nats_url(bad).is_err(), "{bad}");
        }
        // Distinct names, distinct tokens: escaping is injective.
        assert_ne!(subject_token("%2E"), subject_token("."));
        assert!(check_name("shop-1_a").is_ok());
        for bad in ["", "a.b", "a b", "a*", "é", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
