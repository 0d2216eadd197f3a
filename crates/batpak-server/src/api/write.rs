//! Appends: one event, or an atomic batch. Every check the server makes (fields,
//! permissions, limits) runs before the store is called, and the store's own checks
//! run before anything is written, so no error writes anything.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use batpak::{AppendReceipt, Batch, RawPayload};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::api::App;
use crate::auth::{Caller, Permission};
use crate::contract::{ErrorBody, ReceiptDoc};
use crate::error::{ApiError, ApiResult};
use crate::wire::{parse_body, AppendRequest, BatchRequest, Draft};

/// The answer to an append.
#[derive(Serialize, ToSchema)]
pub(crate) struct Appended {
    #[schema(value_type = ReceiptDoc)]
    pub receipt: AppendReceipt,
    /// The receipt's canonical bytes in hex, for offline verification.
    pub receipt_bytes: String,
}

/// The answer to a batch append.
#[derive(Serialize, ToSchema)]
pub(crate) struct Receipts {
    /// One per event, in the batch's order.
    receipts: Vec<Appended>,
}

pub(crate) fn appended(receipt: AppendReceipt) -> Appended {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = receipt.to_bytes();
    let mut receipt_bytes = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        receipt_bytes.push(char::from(HEX[usize::from(b >> 4)]));
        receipt_bytes.push(char::from(HEX[usize::from(b & 15)]));
    }
    Appended {
        receipt,
        receipt_bytes,
    }
}

pub(crate) fn check(app: &App, caller: &Caller, draft: &Draft) -> ApiResult<()> {
    caller.require(
        Permission::Append,
        draft.coordinate.entity(),
        draft.coordinate.scope(),
    )?;
    if app.read_only {
        return Err(batpak::Error::ReadOnly.into());
    }
    Ok(())
}

/// `POST /v1/events`: appends one event; 201 with its receipt.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    summary = "Append one event",
    request_body = AppendRequest,
    responses(
        (status = 201, description = "Appended; the receipt proves it.", body = Appended),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 405, description = "The server is read-only.", body = ErrorBody),
        (status = 409, description = "The expected version or idempotency key does not hold; `details` has expected and actual.", body = ErrorBody),
        (status = 413, description = "The body or batch is over the limit.", body = ErrorBody),
        (status = 503, description = "The store is poisoned (a write or fsync failed) or the request timed out.", body = ErrorBody),
    ),
)]
pub(crate) async fn append(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let request: AppendRequest = parse_body(&body)?;
    let draft = request.draft(app.store.store(), "", caller.principal(), false)?;
    check(&app, &caller, &draft)?;
    let bytes = draft.bytes.len() as u64;
    let started = Instant::now();
    let receipt = app
        .store
        .append_raw(
            draft.coordinate,
            draft.kind,
            draft.encoding,
            draft.bytes,
            draft.options,
        )
        .await?;
    app.metrics.append_latency.observe(started.elapsed());
    app.metrics.appends.fetch_add(1, Ordering::Relaxed);
    app.metrics.append_bytes.fetch_add(bytes, Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(appended(receipt))))
}

/// `POST /v1/batches`: appends every event or none; 201 with one receipt each.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "events",
    summary = "Append a batch atomically: every event or none",
    request_body = BatchRequest,
    responses(
        (status = 201, description = "Appended; one receipt per event, in order.", body = Receipts),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 405, description = "The server is read-only.", body = ErrorBody),
        (status = 409, description = "The expected version or idempotency key does not hold; `details` has expected and actual.", body = ErrorBody),
        (status = 413, description = "The body or batch is over the limit.", body = ErrorBody),
        (status = 503, description = "The store is poisoned (a write or fsync failed) or the request timed out.", body = ErrorBody),
    ),
)]
pub(crate) async fn append_batch(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let request: BatchRequest = parse_body(&body)?;
    if request.events.is_empty() {
        return Err(batpak::Error::EmptyBatch.into());
    }
    if request.events.len() > app.limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "the batch holds {} events, over this server's limit of {}",
                request.events.len(),
                app.limits.max_batch
            ),
        )
        .with_details(json!({
            "field": "events",
            "size": request.events.len(),
            "limit": app.limits.max_batch,
        })));
    }
    let mut batch = Batch::new();
    let mut bytes = 0u64;
    let count = request.events.len() as u64;
    for (i, item) in request.events.into_iter().enumerate() {
        let draft = item.draft(
            app.store.store(),
            &format!("events[{i}]."),
            caller.principal(),
            true,
        )?;
        check(&app, &caller, &draft)?;
        bytes += draft.bytes.len() as u64;
        let payload = match draft.encoding {
            batpak::Encoding::Json => RawPayload::json(&draft.bytes),
            batpak::Encoding::MessagePack => RawPayload::msgpack(&draft.bytes),
            _ => RawPayload::opaque(&draft.bytes),
        };
        batch.push_raw(&draft.coordinate, draft.kind, payload, draft.options);
    }
    let started = Instant::now();
    let receipts = app.store.append_batch(batch).await?;
    app.metrics.append_latency.observe(started.elapsed());
    app.metrics.appends.fetch_add(count, Ordering::Relaxed);
    app.metrics.append_bytes.fetch_add(bytes, Ordering::Relaxed);
    let receipts = receipts.into_iter().map(appended).collect();
    Ok((StatusCode::CREATED, Json(Receipts { receipts })))
}
