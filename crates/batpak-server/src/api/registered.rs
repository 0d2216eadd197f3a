//! The projections and gate sets the embedding application registered.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use batpak::gate::RawDecision;
use batpak::{RawPayload, Region};
use serde_json::{json, Value};

use crate::api::write::appended;
use crate::api::App;
use crate::auth::{Caller, Permission};
use crate::contract::ErrorBody;
use crate::error::{ApiError, ApiResult};
use crate::registry::{json_view, AppendContext};
use crate::wire::{parse_body, AppendRequest};

/// The registered names.
#[derive(utoipa::ToSchema)]
#[schema(as = Registered)]
#[allow(dead_code)]
pub(crate) struct RegisteredDoc {
    projections: Vec<String>,
    gates: Vec<String>,
}

/// A projection's state of an entity.
#[derive(utoipa::ToSchema)]
#[schema(as = ProjectionState)]
#[allow(dead_code)]
pub(crate) struct ProjectionDoc {
    projection: String,
    entity: String,
    /// The state, as the projection serialises it.
    state: Value,
}

/// An append a gate set permitted.
#[derive(utoipa::ToSchema)]
#[schema(as = GateAppended)]
#[allow(dead_code)]
pub(crate) struct GateAppendedDoc {
    #[schema(value_type = crate::contract::ReceiptDoc)]
    receipt: (),
    receipt_bytes: String,
    /// The gates that passed.
    gates: Vec<String>,
}

/// `GET /v1/projections`: the names registered.
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "registered",
    summary = "The projections and gate sets the application registered",
    responses(
        (status = 200, description = "Their names.", body = RegisteredDoc),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    Ok(Json(json!({
        "projections": app.registry.projections.keys().collect::<Vec<_>>(),
        "gates": app.registry.gates.keys().collect::<Vec<_>>(),
    })))
}

/// `GET /v1/projections/{name}/{entity}`: the projection's state of the entity,
/// reflecting every visible event.
#[utoipa::path(
    get,
    path = "/v1/projections/{name}/{entity}",
    tag = "registered",
    summary = "A registered projection's state of an entity",
    params(("name" = String, Path, description = "The projection."), ("entity" = String, Path, description = "The entity.")),
    responses(
        (status = 200, description = "The state, reflecting every visible event.", body = ProjectionDoc),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such projection, or the entity has no events.", body = ErrorBody),
    ),
)]
pub(crate) async fn project(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((name, entity)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let project = app
        .registry
        .projections
        .get(&name)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_projection",
                format!(
                    "no projection is registered as {name:?} (registered: {:?})",
                    app.registry.projections.keys().collect::<Vec<_>>()
                ),
            )
        })?;
    let target = entity.clone();
    let (state, scopes) = app
        .store
        .run(move |s| {
            // The entity's scopes: every one of them must be readable.
            let scopes = s
                .query(&Region::all().entity(target.as_str()), 0, usize::MAX)?
                .into_iter()
                .map(|e| e.coordinate.scope().to_string())
                .collect::<std::collections::BTreeSet<_>>();
            Ok((project(s, &target)?, scopes))
        })
        .await?;
    for scope in &scopes {
        caller.require(Permission::Read, &entity, scope)?;
    }
    let state = state.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_entity",
            format!("the entity {entity:?} has no events for projection {name:?}"),
        )
    })?;
    Ok(Json(
        json!({ "projection": name, "entity": entity, "state": state }),
    ))
}

/// `POST /v1/gates/{name}/events`: appends one event if every gate of the set
/// permits; a denial is a 422 with the denial and the receipt of its recorded
/// evidence.
#[utoipa::path(
    post,
    path = "/v1/gates/{name}/events",
    tag = "registered",
    summary = "Append one event through a registered gate set",
    request_body = AppendRequest,
    params(("name" = String, Path, description = "The gate set.")),
    responses(
        (status = 201, description = "Every gate permitted; appended.", body = GateAppendedDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such gate set.", body = ErrorBody),
        (status = 409, description = "A version or idempotency conflict.", body = ErrorBody),
        (status = 422, description = "A gate denied: `details.denial` says why, `details.recorded` is the receipt of the recorded denial.", body = ErrorBody),
    ),
)]
pub(crate) async fn append(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let gates = app.registry.gates.get(&name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_gate_set",
            format!(
                "no gate set is registered as {name:?} (registered: {:?})",
                app.registry.gates.keys().collect::<Vec<_>>()
            ),
        )
    })?;
    let request: AppendRequest = parse_body(&body)?;
    let store = app.store.store();
    let draft = request.draft(store, "", caller.principal(), false)?;
    crate::api::write::check(&app, &caller, &draft)?;
    let context = AppendContext {
        entity: draft.coordinate.entity().to_string(),
        scope: draft.coordinate.scope().to_string(),
        kind: draft.kind,
        kind_name: store.kind_name(draft.kind),
        encoding: draft.encoding,
        payload: json_view(draft.encoding, &draft.bytes),
        bytes: draft.bytes.clone(),
        metadata: draft
            .options
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        principal: caller.principal().map(str::to_string),
    };
    let decision = app
        .store
        .run(move |s| {
            let payload = match draft.encoding {
                batpak::Encoding::Json => RawPayload::json(&draft.bytes),
                batpak::Encoding::MessagePack => RawPayload::msgpack(&draft.bytes),
                _ => RawPayload::opaque(&draft.bytes),
            };
            s.propose_raw(
                &draft.coordinate,
                draft.kind,
                payload,
                draft.options,
                &gates,
                &context,
            )
        })
        .await?;
    match decision {
        RawDecision::Committed { receipt, gates } => {
            let mut body = json!(appended(receipt));
            body["gates"] = json!(gates.gates());
            Ok((StatusCode::CREATED, Json(body)))
        }
        RawDecision::Denied { denial, recorded } => {
            let context: serde_json::Map<String, Value> = denial
                .context
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "denied",
                format!(
                    "denied by gate {:?} of {name:?} ({}): {}",
                    denial.gate, denial.code, denial.message
                ),
            )
            .with_details(json!({
                "denial": {
                    "gate": denial.gate,
                    "code": denial.code,
                    "message": denial.message,
                    "context": context,
                },
                "recorded": appended(recorded),
            })))
        }
        _ => Err(ApiError::internal("an unknown gate decision")),
    }
}
