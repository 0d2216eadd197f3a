//! Events between the two models: a proposed message becomes a batpak append (its
//! type names the kind; type, content type, client id and custom metadata go in
//! the metadata), and a stored event becomes a recorded event.
//!
//! Metadata keys, all under `kurrentdb.`: `type`, `content-type`, `id` (the
//! client's event id, canonical UUID text), and `metadata` (custom metadata that is
//! text without control characters) or `metadata.base64` (any other bytes). The
//! payload is the client's data, byte for byte: stored as JSON when the content
//! type is `application/json` and the bytes are JSON, opaque otherwise.
//!
//! Kinds: a type that names a kind already (recorded by a typed append, an import
//! or an earlier KurrentDB append) is that kind; a new type gets the next free kind
//! of category 15 with the type recorded as its name. When category 15 is full
//! (4,095 types), further types share kind `15:0` (`kurrentdb.event`): the type in
//! the metadata is what clients see either way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use batpak::{AppendOptions, Coordinate, Encoding, EventKind, Metadata, Store, StoredEvent};
use tonic::Status;

use super::names;
use super::proto::event_store::client as shared;
use super::proto::event_store::client::streams::read_resp::read_event::RecordedEvent;

pub(crate) const TYPE_KEY: &str = "kurrentdb.type";
pub(crate) const CONTENT_TYPE_KEY: &str = "kurrentdb.content-type";
pub(crate) const ID_KEY: &str = "kurrentdb.id";
pub(crate) const CUSTOM_KEY: &str = "kurrentdb.metadata";
pub(crate) const CUSTOM_B64_KEY: &str = "kurrentdb.metadata.base64";

/// The category KurrentDB event types get kinds in.
const CATEGORY: u8 = 15;
/// The kind types share once the category is full.
const SHARED_KIND: EventKind = EventKind::custom(CATEGORY, 0);
const SHARED_KIND_NAME: &str = "kurrentdb.event";

/// Event type names and their kinds.
pub(crate) struct Kinds {
    by_name: Mutex<HashMap<String, EventKind>>,
}

impl Kinds {
    pub(crate) fn load(store: &Store) -> Kinds {
        let by_name = store
            .kind_names()
            .into_iter()
            .filter(|(kind, _)| !kind.is_reserved())
            .map(|(kind, name)| (name, kind))
            .collect();
        Kinds {
            by_name: Mutex::new(by_name),
        }
    }

    /// The kind of events of type `name`, recording a new one when needed (an
    /// append of a store record: call on the blocking pool).
    pub(crate) fn kind_of(&self, store: &Store, name: &str) -> batpak::Result<EventKind> {
        let mut by_name = self
            .by_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kind) = by_name.get(name) {
            return Ok(*kind);
        }
        loop {
            // Named since this listener started (a typed append, an import)?
            let names = store.kind_names();
            if let Some(kind) = names
                .iter()
                .find_map(|(k, n)| (n == name && !k.is_reserved()).then_some(*k))
            {
                by_name.insert(name.to_string(), kind);
                return Ok(kind);
            }
            let free = (1..=EventKind::MAX_TYPE_ID)
                .map(|t| EventKind::custom(CATEGORY, t))
                .find(|k| !names.contains_key(k));
            let Some(kind) = free else {
                store.name_kind(SHARED_KIND, SHARED_KIND_NAME)?;
                return Ok(SHARED_KIND);
            };
            store.name_kind(kind, name)?;
            // Another writer may have named that kind first; then take the next.
            if store.kind_name(kind).as_deref() == Some(name) {
                by_name.insert(name.to_string(), kind);
                return Ok(kind);
            }
        }
    }

    /// The kind of `name` if it has one already (no allocation).
    pub(crate) fn known(&self, name: &str) -> Option<EventKind> {
        self.by_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
    }
}

/// A proposed message, from either append RPC.
pub(crate) struct Proposed {
    pub id: Option<shared::Uuid>,
    pub metadata: HashMap<String, String>,
    pub custom_metadata: Vec<u8>,
    pub data: Vec<u8>,
}

/// A proposed message checked and converted; the kind is found later (it may
/// need a store record).
pub(crate) struct Draft {
    pub event_type: String,
    pub encoding: Encoding,
    pub data: Vec<u8>,
    pub id: uuid::Uuid,
    pub metadata: Metadata,
}

/// Checks a proposed message (`at`: its place in the append, for errors).
pub(crate) fn draft(
    message: Proposed,
    at: usize,
    principal: Option<&str>,
) -> Result<Draft, Status> {
    let bad = |what: String| super::streams::invalid(format!("event {at}: {what}"));
    let id = match &message.id {
        Some(id) => uuid_of(id).map_err(bad)?,
        None => random_uuid(),
    };
    let event_type = message
        .metadata
        .get("type")
        .filter(|t| !t.is_empty())
        .cloned()
        .ok_or_else(|| bad("the metadata has no `type` (the event type)".into()))?;
    let content_type = message
        .metadata
        .get("content-type")
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".into());
    let encoding = if content_type == "application/json"
        && serde_json::from_slice::<serde::de::IgnoredAny>(&message.data).is_ok()
    {
        Encoding::Json
    } else {
        Encoding::Opaque
    };
    let mut metadata = Metadata::new();
    metadata.insert(TYPE_KEY, event_type.as_str());
    metadata.insert(CONTENT_TYPE_KEY, content_type);
    metadata.insert(ID_KEY, id.hyphenated().to_string());
    if !message.custom_metadata.is_empty() {
        match std::str::from_utf8(&message.custom_metadata) {
            Ok(text) if !text.chars().any(char::is_control) => {
                metadata.insert(CUSTOM_KEY, text);
            }
            _ => {
                metadata.insert(
                    CUSTOM_B64_KEY,
                    base64::engine::general_purpose::STANDARD.encode(&message.custom_metadata),
                );
            }
        }
    }
    if let Some(principal) = principal {
        metadata.insert(crate::wire::PRINCIPAL_KEY, principal);
    }
    metadata
        .validate()
        .map_err(|e| bad(format!("its type, content type or custom metadata: {e}")))?;
    Ok(Draft {
        event_type,
        encoding,
        data: message.data,
        id,
        metadata,
    })
}

/// Pushes a draft onto `batch`, checked against `expected`.
pub(crate) fn push(
    batch: &mut batpak::Batch,
    coordinate: &Coordinate,
    kind: EventKind,
    draft: Draft,
    expected: batpak::ExpectedVersion,
) {
    let payload = match draft.encoding {
        Encoding::Json => batpak::RawPayload::json(&draft.data),
        _ => batpak::RawPayload::opaque(&draft.data),
    };
    let options = AppendOptions::expect(expected).metadata(draft.metadata);
    batch.push_raw(coordinate, kind, payload, options);
}

/// A random (version 4) id, for events a client sent without one.
pub(crate) fn random_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    // Without the OS's randomness, the time still makes the id unique enough for a
    // subscription name; an event's id comes from the client in practice.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = t.to_le_bytes();
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A client's event id.
pub(crate) fn uuid_of(id: &shared::Uuid) -> Result<uuid::Uuid, String> {
    use shared::uuid::Value;
    match &id.value {
        Some(Value::String(text)) => uuid::Uuid::parse_str(text)
            .map_err(|e| format!("the event id {text:?} is not a UUID: {e}")),
        Some(Value::Structured(s)) => {
            let high = u128::from(s.most_significant_bits as u64) << 64;
            Ok(uuid::Uuid::from_u128(
                high | u128::from(s.least_significant_bits as u64),
            ))
        }
        None => Err("the event id is empty".into()),
    }
}

/// An id in the form the reader asked for.
pub(crate) fn uuid_out(id: uuid::Uuid, structured: bool) -> shared::Uuid {
    use shared::uuid::{Structured, Value};
    let value = if structured {
        let bits = id.as_u128();
        Value::Structured(Structured {
            most_significant_bits: (bits >> 64) as u64 as i64,
            least_significant_bits: bits as u64 as i64,
        })
    } else {
        Value::String(id.hyphenated().to_string())
    };
    shared::Uuid { value: Some(value) }
}

/// The event's id as a client sees it: the one it gave, or the batpak id (both are
/// 128 bits).
pub(crate) fn client_id(event: &StoredEvent) -> uuid::Uuid {
    event
        .metadata
        .get(ID_KEY)
        .and_then(|t| uuid::Uuid::parse_str(t).ok())
        .unwrap_or_else(|| uuid::Uuid::from_u128(event.id.as_u128()))
}

/// The event's type as a client sees it: the one it gave, or the kind's name, or
/// the kind as `C:T`.
pub(crate) fn type_of<'e>(store: &Store, event: &'e StoredEvent) -> Cow<'e, str> {
    match event.metadata.get(TYPE_KEY) {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(
            store
                .kind_name(event.kind)
                .unwrap_or_else(|| event.kind.to_string()),
        ),
    }
}

/// The stored event as a recorded event.
pub(crate) fn recorded(store: &Store, event: &StoredEvent, structured: bool) -> RecordedEvent {
    let mut metadata = HashMap::with_capacity(3);
    metadata.insert("type".to_string(), type_of(store, event).into_owned());
    let content_type = match event.metadata.get(CONTENT_TYPE_KEY) {
        Some(t) => t.to_string(),
        None if event.encoding == Encoding::Json => "application/json".into(),
        None => "application/octet-stream".into(),
    };
    metadata.insert("content-type".to_string(), content_type);
    // Ticks of 100 ns since the Unix epoch.
    metadata.insert(
        "created".to_string(),
        (event.timestamp_ns / 100).to_string(),
    );
    let custom_metadata = if let Some(text) = event.metadata.get(CUSTOM_KEY) {
        text.as_bytes().to_vec()
    } else if let Some(b64) = event.metadata.get(CUSTOM_B64_KEY) {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default()
    } else if event.metadata.get(TYPE_KEY).is_none() && event.metadata.iter().len() > 0 {
        // Written by other means: its metadata as a JSON object.
        let map: serde_json::Map<String, serde_json::Value> = event
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        serde_json::to_vec(&map).unwrap_or_default()
    } else {
        Vec::new()
    };
    RecordedEvent {
        id: Some(uuid_out(client_id(event), structured)),
        stream_identifier: Some(shared::StreamIdentifier {
            stream_name: names::name_of(event.coordinate.entity()),
        }),
        stream_revision: event.version,
        prepare_position: event.sequence,
        commit_position: event.sequence,
        metadata,
        custom_metadata,
        data: event.payload.clone(),
    }
}
