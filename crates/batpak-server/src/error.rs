//! The one error shape every endpoint answers with: a status, a stable `code`, a
//! message that names what was wrong, and details (the field, expected against
//! actual) where there are any.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

/// An answer that is not a success. Serialised as
/// `{"error": {"code": ..., "message": ..., "details": {...}}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable, machine-readable (`version_conflict`, `invalid_field`, ...).
    pub code: &'static str,
    /// For people: what was wrong, naming the field, entity or id.
    pub message: String,
    /// Structured facts: `field`, `expected`, `actual`, ...
    pub details: Value,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Value::is_null")]
    details: &'a Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Adds structured details.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400 for one request field that is wrong.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("`{field}`: {message}"),
        )
        .with_details(json!({ "field": field }))
    }

    /// 404 for something the request named that the store does not hold.
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 500 for a failure inside the server (a task that panicked).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                details: &self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        // The metrics layer counts errors by code.
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The code of an error response, for the request log and the metrics.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorCode(pub &'static str);

impl From<batpak::Error> for ApiError {
    fn from(error: batpak::Error) -> Self {
        use batpak::Error as E;
        let message = error.to_string();
        let code = error.code();
        let (status, details) = match &error {
            E::InvalidCoordinate { component, .. } => {
                (StatusCode::BAD_REQUEST, json!({ "field": component }))
            }
            E::InvalidMetadata { key, .. } => (
                StatusCode::BAD_REQUEST,
                json!({ "field": "metadata", "key": key }),
            ),
            E::InvalidKind { .. } | E::ReservedKind { .. } => {
                (StatusCode::BAD_REQUEST, json!({ "field": "kind" }))
            }
            E::InvalidEventId { .. } => (StatusCode::BAD_REQUEST, Value::Null),
            E::UnknownCausation { causation } => (
                StatusCode::BAD_REQUEST,
                json!({ "field": "causation", "causation": causation.to_string() }),
            ),
            E::InvalidBatchReference { item, cause } => (
                StatusCode::BAD_REQUEST,
                json!({ "field": "causation", "item": item, "cause": cause }),
            ),
            E::DuplicateIdempotencyKey { key } => (
                StatusCode::BAD_REQUEST,
                json!({ "field": "idempotency_key", "key": key }),
            ),
            E::EmptyBatch => (StatusCode::BAD_REQUEST, json!({ "field": "events" })),
            E::Malformed { .. } | E::InvalidConfig { .. } | E::NotPreserved { .. } => {
                (StatusCode::BAD_REQUEST, Value::Null)
            }
            E::VersionConflict {
                entity,
                expected,
                actual,
            } => (
                StatusCode::CONFLICT,
                json!({
                    "entity": entity,
                    "expected": crate::wire::expected_json(*expected),
                    "actual": actual,
                }),
            ),
            E::IdempotencyConflict { key, original } => (
                StatusCode::CONFLICT,
                json!({ "key": key, "original": original.to_string() }),
            ),
            E::CursorInUse { .. } | E::CursorRegionMismatch { .. } | E::InvalidCommit { .. } => {
                (StatusCode::CONFLICT, Value::Null)
            }
            E::TooLarge { what, size, limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "what": what, "size": size, "limit": limit }),
            ),
            E::NoSuchEvent { .. } | E::NoSuchEntity { .. } => (StatusCode::NOT_FOUND, Value::Null),
            E::EntityDeleted { .. } | E::Redacted { .. } => (StatusCode::GONE, Value::Null),
            E::ReadOnly => (StatusCode::METHOD_NOT_ALLOWED, Value::Null),
            E::Poisoned { .. } => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
            E::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, Value::Null),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, Value::Null),
        };
        ApiError {
            status,
            code,
            message,
            details,
        }
    }
}

/// What handlers return.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
