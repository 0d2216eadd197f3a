//! The OpenAPI 3.1 contract, generated from the handlers' `#[utoipa::path]`
//! annotations and the answer types. The library's own types (events, receipts,
//! stats, ...) have no schema derive (the library does not depend on utoipa), so
//! their schemas are described here by mirror types; a test serialises a real value
//! of each and checks that it has exactly the properties its mirror declares.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api::{live, proof, read, registered, write};
use crate::wire::{AppendRequest, BatchRequest, CauseJson, ExpectedJson, ExpectedWord};

/// An event in the lossless export form.
#[derive(ToSchema)]
#[schema(as = Event)]
#[allow(dead_code)]
pub(crate) struct EventDoc {
    /// The global sequence (1, 2, ...).
    sequence: u64,
    /// The event id (UUID v7 text).
    id: String,
    /// When it was appended, Unix nanoseconds.
    timestamp_ns: u64,
    /// The same, RFC 3339.
    timestamp: String,
    /// The entity (stream).
    entity: String,
    /// Its scope.
    scope: String,
    /// The version within the entity (from 0).
    version: u64,
    /// The kind, `C:T`.
    kind: String,
    /// The kind's recorded name.
    kind_name: Option<String>,
    /// The payload schema version.
    schema_version: u16,
    /// `opaque`, `message_pack` or `json`.
    encoding: String,
    /// The payload's exact bytes, base64 (absent once redacted).
    bytes: Option<String>,
    /// The payload as JSON, when its encoding has a JSON view.
    payload: Option<Value>,
    /// The event that caused it.
    causation: Option<String>,
    /// Its workflow.
    correlation: Option<String>,
    /// Text metadata (`batpak.principal` names who appended it through the server).
    metadata: std::collections::BTreeMap<String, String>,
    /// Whether the payload was erased.
    redacted: bool,
    /// The payload's salt, hex (absent once redacted).
    salt: Option<String>,
    /// The salted payload digest a redaction kept, hex.
    digest: Option<String>,
    /// The idempotency key digest, hex.
    idempotency: Option<String>,
    /// Record flags.
    flags: u16,
    /// The hash of the entity's previous event (zero for version 0), hex.
    prev_hash: String,
    /// This event's hash, hex.
    event_hash: String,
}

/// How a payload's bytes are encoded.
#[derive(ToSchema)]
#[schema(as = Encoding, rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum EncodingDoc {
    /// Bytes the store does not interpret.
    Opaque,
    /// MessagePack with named fields.
    MessagePack,
    /// UTF-8 JSON.
    Json,
}

/// A receipt: proof that the store accepted an event, signed when the store signs.
#[derive(ToSchema)]
#[schema(as = Receipt)]
#[allow(dead_code)]
pub(crate) struct ReceiptDoc {
    event_id: String,
    sequence: u64,
    version: u64,
    timestamp_ns: u64,
    kind: String,
    coordinate_digest: String,
    event_hash: String,
    prev_hash: String,
    /// The signing key's id, when signed.
    key_id: Option<String>,
    /// The Ed25519 signature, hex, when signed.
    signature: Option<String>,
}

/// An anchor: the running hash of the whole history up to a sequence.
#[derive(ToSchema)]
#[schema(as = Anchor)]
#[allow(dead_code)]
pub(crate) struct AnchorDoc {
    sequence: u64,
    running_hash: String,
    unix_ms: u64,
    key_id: Option<String>,
    signature: Option<String>,
}

/// Counts and watermarks.
#[derive(ToSchema)]
#[schema(as = Stats)]
#[allow(dead_code)]
pub(crate) struct StatsDoc {
    events: u64,
    entities: u64,
    scopes: u64,
    segments: u64,
    segment_bytes: u64,
    written_sequence: u64,
    durable_sequence: u64,
    visible_sequence: u64,
    /// The retention policies in force.
    retention: Vec<Value>,
    deleted_entities: u64,
    idempotency_keys: u64,
}

/// The written, durable and visible watermarks.
#[derive(ToSchema)]
#[schema(as = Frontier)]
#[allow(dead_code)]
pub(crate) struct FrontierDoc {
    written: u64,
    durable: u64,
    visible: u64,
}

/// An entity in the catalogue.
#[derive(ToSchema)]
#[schema(as = EntityInfo)]
#[allow(dead_code)]
pub(crate) struct EntityInfoDoc {
    entity: String,
    scopes: Vec<String>,
    version: u64,
    events: u64,
    first_sequence: u64,
    last_sequence: u64,
}

/// A scope in the catalogue.
#[derive(ToSchema)]
#[schema(as = ScopeInfo)]
#[allow(dead_code)]
pub(crate) struct ScopeInfoDoc {
    scope: String,
    events: u64,
}

/// A kind in the catalogue.
#[derive(ToSchema)]
#[schema(as = KindInfo)]
#[allow(dead_code)]
pub(crate) struct KindInfoDoc {
    kind: String,
    name: Option<String>,
    events: u64,
}

/// A chain link that does not verify.
#[derive(ToSchema)]
#[schema(as = ChainBreak)]
#[allow(dead_code)]
pub(crate) struct ChainBreakDoc {
    event: String,
    predecessor: Option<String>,
    stored: String,
    expected: String,
}

/// A link of the causal graph, from the earlier event to the later one.
#[derive(ToSchema)]
#[schema(as = GraphEdge)]
#[allow(dead_code)]
pub(crate) struct GraphEdgeDoc {
    from: String,
    to: String,
    /// `chain` (consecutive events of an entity) or `causation`.
    kind: String,
}

/// An error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable and machine-readable: `invalid_field`, `version_conflict`, ...
    pub code: String,
    /// For people: what was wrong, naming the field, entity or id.
    pub message: String,
    /// Facts: `field`, `expected`, `actual`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "batpak",
        description = "A batpak event store over HTTP: appends with receipts, reads, causal walks, proof, live streams (Server-Sent Events) and durable cursors. Every error is JSON with a stable `code`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        write::append,
        write::append_batch,
        read::get,
        read::get_sequence,
        read::query,
        read::entity_events,
        read::count,
        read::ancestors,
        read::causes,
        read::effects,
        read::correlated,
        read::graph,
        read::receipt,
        read::entities,
        read::scopes,
        read::kinds,
        read::stats,
        read::frontier,
        proof::verify_receipt,
        proof::take_anchor,
        proof::verify_anchor,
        proof::start_verify,
        proof::verify_job,
        registered::list,
        registered::project,
        registered::append,
        live::subscribe,
        live::cursor_next,
        live::cursor_commit,
        crate::api::healthz,
        crate::api::readyz,
        crate::api::metrics,
    ),
    components(schemas(
        AppendRequest, BatchRequest, CauseJson, ExpectedJson, ExpectedWord, EncodingDoc,
        EventDoc, ReceiptDoc, AnchorDoc, StatsDoc, FrontierDoc, EntityInfoDoc, ScopeInfoDoc,
        KindInfoDoc, ChainBreakDoc, GraphEdgeDoc, ErrorBody, ErrorDetail,
        crate::params::Direction,
    )),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub(crate) struct ApiDoc;

/// The contract as JSON, as `/v1/openapi.json` serves it and `docs/openapi.json`
/// holds it.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
