//! The JSON shapes of requests and answers, and their conversion to and from the
//! library's types. Events go out in the lossless export form (`ExportLine`): every
//! stored field, the exact payload bytes in base64 and a JSON view when decodable.

use std::collections::BTreeMap;

use base64::Engine as _;
use batpak::{
    AppendOptions, Cause, Coordinate, Encoding, EventId, EventKind, ExpectedVersion, ExportLine,
    Metadata, Store, StoredEvent,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;

/// Parses a JSON body, naming the field that is wrong (`events[2].kind`): a body
/// that is not JSON is `malformed_json`; JSON of the wrong shape is `invalid_field`.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |message: String| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON: {message}"),
        )
    };
    // serde would also take a struct as an array of its fields; the API does not.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(ApiError::field("body", "must be a JSON object"))
        }
        _ => return Err(malformed("it does not begin with a JSON value".into())),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if !inner.is_data() {
            return malformed(message);
        }
        // The path of an unknown field ends at it; that of a missing one ends at the
        // object that lacks it.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(name), "." | "") => name.to_string(),
            (Some(name), parent) => format!("{parent}.{name}"),
            (None, "." | "") => "body".to_string(),
            (None, path) => path.to_string(),
        };
        ApiError::field(&field, message)
    })?;
    de.end()
        .map_err(|e| malformed(format!("trailing characters after the JSON value: {e}")))?;
    Ok(value)
}

/// `"any"`, `"no_stream"`, `"stream_exists"` or the exact version the entity's newest
/// event must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ExpectedJson {
    /// The version the entity's newest event must have.
    Exact(u64),
    /// `"any"`, `"no_stream"` or `"stream_exists"`.
    Word(ExpectedWord),
}

/// The named expected versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedWord {
    /// No check.
    Any,
    /// The entity must have no events.
    NoStream,
    /// The entity must have at least one event, of any version.
    StreamExists,
}

impl From<ExpectedJson> for ExpectedVersion {
    fn from(e: ExpectedJson) -> Self {
        match e {
            ExpectedJson::Exact(v) => ExpectedVersion::Exact(v),
            ExpectedJson::Word(ExpectedWord::Any) => ExpectedVersion::Any,
            ExpectedJson::Word(ExpectedWord::NoStream) => ExpectedVersion::NoStream,
            ExpectedJson::Word(ExpectedWord::StreamExists) => ExpectedVersion::StreamExists,
        }
    }
}

pub(crate) fn expected_json(e: ExpectedVersion) -> Value {
    match e {
        ExpectedVersion::Exact(v) => json!(v),
        ExpectedVersion::NoStream => json!("no_stream"),
        ExpectedVersion::StreamExists => json!("stream_exists"),
        ExpectedVersion::Any => json!("any"),
    }
}

/// A cause: an event id, or `{"batch_item": n}` for an earlier item of the batch.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CauseJson {
    /// An event already in the store, by id.
    Event(String),
    /// An earlier item of the same batch (0-based).
    Item {
        /// Its position.
        batch_item: usize,
    },
}

/// One event to append.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// The entity (stream) appended to: 1 to 1,024 bytes, no control characters,
    /// not under `batpak:`.
    #[schema(min_length = 1, max_length = 1024)]
    pub entity: String,
    /// Its scope: 1 to 1,024 bytes, no control characters.
    #[schema(min_length = 1, max_length = 1024)]
    pub scope: String,
    /// `C:T` (`1:2`, `0xA:0x1`; category 1 to 15, type id 0 to 4095) or a kind name
    /// the store has recorded.
    #[schema(min_length = 1)]
    pub kind: String,
    /// The payload as JSON (stored as JSON). Exactly one of `payload` and `bytes`.
    #[serde(default)]
    pub payload: Option<Value>,
    /// The payload's exact bytes, base64 (standard alphabet, padded).
    #[serde(default)]
    pub bytes: Option<String>,
    /// How `bytes` are encoded: `opaque` (default), `message_pack` or `json`.
    #[serde(default)]
    #[schema(value_type = Option<crate::contract::EncodingDoc>)]
    pub encoding: Option<Encoding>,
    /// `"any"` (default), `"no_stream"`, `"stream_exists"` or a version.
    #[serde(default)]
    pub expected_version: Option<ExpectedJson>,
    /// Repeating an append with the same key and content returns the first receipt.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The event that caused this one.
    #[serde(default)]
    pub causation: Option<CauseJson>,
    /// The workflow the event belongs to (an event id).
    #[serde(default)]
    pub correlation: Option<String>,
    /// Text keys and values stored with the event.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// An atomic batch: every event is written, or none.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The events, in order.
    pub events: Vec<AppendRequest>,
}

/// An append that passed every check the server makes before the store's own.
#[derive(Debug)]
pub(crate) struct Draft {
    pub coordinate: Coordinate,
    pub kind: EventKind,
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
    pub options: AppendOptions,
}

/// The metadata key under which the server records who appended an event.
pub const PRINCIPAL_KEY: &str = "batpak.principal";

impl AppendRequest {
    /// Checks and converts; `field` prefixes the field names in errors
    /// (`events[3].`). `principal` is recorded in the metadata.
    pub(crate) fn draft(
        self,
        store: &Store,
        field: &str,
        principal: Option<&str>,
        in_batch: bool,
    ) -> Result<Draft, ApiError> {
        let name = |f: &str| format!("{field}{f}");
        let coordinate =
            Coordinate::new(self.entity.as_str(), self.scope.as_str()).map_err(|e| {
                let field = name(component_of(&e));
                ApiError::from(e).with_field(&field)
            })?;
        let kind = parse_kind(store, &self.kind).map_err(|m| ApiError::field(&name("kind"), m))?;
        let (encoding, bytes) = match (self.payload, self.bytes) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    &name("bytes"),
                    "give `payload` (JSON) or `bytes` (base64), not both",
                ))
            }
            (None, None) => {
                return Err(ApiError::field(
                    &name("payload"),
                    "missing: give `payload` (JSON) or `bytes` (base64)",
                ))
            }
            (Some(value), None) => {
                if self.encoding.is_some_and(|e| e != Encoding::Json) {
                    return Err(ApiError::field(
                        &name("encoding"),
                        "a JSON `payload` is stored as JSON: leave `encoding` out or make it \"json\"",
                    ));
                }
                let bytes = serde_json::to_vec(&value)
                    .map_err(|e| ApiError::field(&name("payload"), e.to_string()))?;
                (Encoding::Json, bytes)
            }
            (None, Some(text)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| ApiError::field(&name("bytes"), format!("not base64: {e}")))?;
                let encoding = self.encoding.unwrap_or(Encoding::Opaque);
                if encoding == Encoding::Json && serde_json::from_slice::<Value>(&bytes).is_err() {
                    return Err(ApiError::field(
                        &name("bytes"),
                        "`encoding` is \"json\" but the bytes are not JSON",
                    ));
                }
                (encoding, bytes)
            }
        };
        let mut options = AppendOptions::default();
        if let Some(expected) = self.expected_version {
            options.expected_version = expected.into();
        }
        options.idempotency_key = self.idempotency_key;
        options.causation = match self.causation {
            None => None,
            Some(CauseJson::Event(text)) => Some(Cause::Event(
                parse_id(&text).map_err(|m| ApiError::field(&name("causation"), m))?,
            )),
            Some(CauseJson::Item { batch_item }) if in_batch => Some(Cause::BatchItem(batch_item)),
            Some(CauseJson::Item { .. }) => {
                return Err(ApiError::field(
                    &name("causation"),
                    "`batch_item` names an item of a batch; this is a single append",
                ))
            }
        };
        options.correlation = match self.correlation {
            None => None,
            Some(text) => {
                Some(parse_id(&text).map_err(|m| ApiError::field(&name("correlation"), m))?)
            }
        };
        let mut metadata = Metadata::new();
        for (key, value) in self.metadata {
            if key == PRINCIPAL_KEY {
                return Err(ApiError::field(
                    &name("metadata"),
                    format!("`{PRINCIPAL_KEY}` is recorded by the server, not given"),
                ));
            }
            metadata.insert(key, value);
        }
        if let Some(principal) = principal {
            metadata.insert(PRINCIPAL_KEY, principal);
        }
        metadata
            .validate()
            .map_err(|e| ApiError::from(e).with_field(&name("metadata")))?;
        options.metadata = metadata;
        Ok(Draft {
            coordinate,
            kind,
            encoding,
            bytes,
            options,
        })
    }
}

fn component_of(error: &batpak::Error) -> &'static str {
    match error {
        batpak::Error::InvalidCoordinate { component, .. } => component,
        _ => "entity",
    }
}

/// `C:T` or a recorded kind name.
pub(crate) fn parse_kind(store: &Store, text: &str) -> Result<EventKind, String> {
    if text.contains(':') {
        return text.parse::<EventKind>().map_err(|e| e.to_string());
    }
    store
        .kind_names()
        .into_iter()
        .find_map(|(kind, name)| (name == text).then_some(kind))
        .ok_or_else(|| {
            format!("{text:?} is neither a kind C:T nor a kind name this store has recorded")
        })
}

/// An event id in its text form.
pub(crate) fn parse_id(text: &str) -> Result<EventId, String> {
    text.parse::<EventId>().map_err(|e| e.to_string())
}

/// An event as the API shows it: the export form with its kind's name.
pub(crate) fn event_json(store: &Store, event: &StoredEvent) -> ExportLine {
    ExportLine::from_event(event, store.kind_name(event.kind))
}

impl ApiError {
    /// Names the request field the error is about.
    #[must_use]
    pub(crate) fn with_field(mut self, field: &str) -> Self {
        match &mut self.details {
            Value::Object(map) => {
                map.insert("field".into(), json!(field));
            }
            _ => self.details = json!({ "field": field }),
        }
        self.message = format!("`{field}`: {}", self.message);
        self
    }
}
