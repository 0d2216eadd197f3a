//! The HTTP API under `/v1`: the router, the state every handler shares, and the
//! layers every request passes (authentication, timeout, JSON errors, the request
//! log and the metrics).

pub(crate) mod live;
pub(crate) mod proof;
pub(crate) mod read;
pub(crate) mod registered;
pub(crate) mod write;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::auth::{Caller, Tokens};
use crate::contract::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::facade::AsyncStore;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// What every handler shares.
pub(crate) struct App {
    pub store: AsyncStore,
    pub limits: Limits,
    pub tokens: Option<Tokens>,
    pub read_only: bool,
    pub streams: Arc<tokio::sync::Semaphore>,
    pub metrics: Metrics,
    pub jobs: Mutex<proof::Jobs>,
    pub cursors: live::Cursors,
    pub registry: crate::registry::Registry,
    /// Turns true when the server starts shutting down: live streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where the request log goes (`None`: nowhere).
    pub log: Option<crate::server::LogFn>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .field("limits", &self.limits)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// The requests the timeout does not cut off: live streams and cursor waits (they
/// are meant to last), and appends, whose time the store bounds and which must never
/// be answered with an error after they may have been written.
fn untimed(method: &axum::http::Method, path: &str) -> bool {
    path == "/v1/subscribe"
        || path.ends_with("/next")
        || (method == axum::http::Method::POST
            && (path == "/v1/events" || path == "/v1/batches" || path.starts_with("/v1/gates/")))
}

pub(crate) fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/events", post(write::append).get(read::query))
        .route("/batches", post(write::append_batch))
        .route("/events/{id}", get(read::get))
        .route("/events/{id}/ancestors", get(read::ancestors))
        .route("/events/{id}/causes", get(read::causes))
        .route("/events/{id}/effects", get(read::effects))
        .route("/events/{id}/graph", get(read::graph))
        .route("/events/{id}/receipt", get(read::receipt))
        .route("/correlations/{id}", get(read::correlated))
        .route("/sequences/{sequence}", get(read::get_sequence))
        .route("/entities", get(read::entities))
        .route("/entities/{entity}/events", get(read::entity_events))
        .route("/count", get(read::count))
        .route("/scopes", get(read::scopes))
        .route("/kinds", get(read::kinds))
        .route("/stats", get(read::stats))
        .route("/frontier", get(read::frontier))
        .route("/receipts/verify", post(proof::verify_receipt))
        .route("/anchors", post(proof::take_anchor))
        .route("/anchors/verify", post(proof::verify_anchor))
        .route("/verify", post(proof::start_verify))
        .route("/verify/{job}", get(proof::verify_job))
        .route("/openapi.json", get(openapi))
        .route("/projections", get(registered::list))
        .route("/projections/{name}/{entity}", get(registered::project))
        .route("/gates/{name}/events", post(registered::append))
        .route("/subscribe", get(live::subscribe))
        .route("/cursors/{name}/next", post(live::cursor_next))
        .route("/cursors/{name}/commit", post(live::cursor_commit))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            authenticate,
        ));
    let metrics = Router::new().route("/metrics", get(metrics)).route_layer(
        axum::middleware::from_fn_with_state(Arc::clone(&app), authenticate_admin),
    );
    Router::new()
        .nest("/v1", v1)
        .merge(metrics)
        .merge(crate::console::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            observe,
        ))
        .layer(DefaultBodyLimit::max(app.limits.max_body_bytes))
        .with_state(app)
}

/// Finds the caller from the bearer token (or lets everyone in when the server has
/// no tokens).
async fn authenticate(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let caller = match &app.tokens {
        None => Caller::Open,
        Some(tokens) => {
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match tokens.authenticate(header) {
                Ok(caller) => caller,
                Err(e) => return e.into_response(),
            }
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn authenticate_admin(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(tokens) = &app.tokens else {
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match tokens.authenticate(header).and_then(|c| c.require_admin()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The outer layer: the request timeout, JSON bodies for the errors axum makes
/// itself (405, 413, ...), the request log line and the request metrics.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_string(),
        |m| m.as_str().to_string(),
    );
    let principal = principal_of(&app, &request);
    let response = answer(&app, request, next, started).await;
    let response = jsonify(response);
    let status = response.status().as_u16();
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    app.metrics.request(status, code);
    if let Some(log) = &app.log {
        log(&format!(
            "{method} {path} {status} {:.3}ms principal={}{}",
            started.elapsed().as_secs_f64() * 1e3,
            principal.as_deref().unwrap_or("-"),
            code.map_or_else(String::new, |c| format!(" code={c}")),
        ));
    }
    response
}

/// The answer within one deadline, the request timeout from `started`: the body
/// must arrive by it on every route (408), and the answer too except where it is
/// meant to take longer (`untimed`: 503).
async fn answer(app: &App, request: Request, next: Next, started: Instant) -> Response {
    let limit = app.limits.request_timeout;
    let deadline = tokio::time::Instant::from_std(started + limit);
    let timed = !untimed(request.method(), request.uri().path());
    let over = |status, what: &str| {
        ApiError::new(
            status,
            "timeout",
            format!("{what} this server's limit of {} ms", limit.as_millis()),
        )
        .into_response()
    };
    let read = tokio::time::timeout_at(deadline, read_body(request, app.limits.max_body_bytes));
    let request = match read.await {
        Ok(Ok(request)) => request,
        Ok(Err(refused)) => return refused.into_response(),
        Err(_) => {
            return over(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within",
            )
        }
    };
    if !timed {
        return next.run(request).await;
    }
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => over(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took longer than",
        ),
    }
}

/// Reads the whole request body before anything answers, so that every answer
/// (a handler that takes no body, a refusal before the body is looked at) leaves the
/// connection reusable: hyper closes a keep-alive connection whose unread body had
/// not arrived when the answer went out, and a client's next request on it fails.
/// Bodies are bounded by the server's limit and every handler buffers its body
/// anyway, so this costs no copy worth counting.
async fn read_body(request: Request, limit: usize) -> Result<Request, ApiError> {
    use futures_util::StreamExt as _;
    let (parts, body) = request.into_parts();
    let mut frames = body.into_data_stream();
    let mut whole = Vec::new();
    while let Some(frame) = frames.next().await {
        let bytes = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if whole.len() + bytes.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than this server's limit of {limit} bytes"),
            ));
        }
        whole.extend_from_slice(&bytes);
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(whole)))
}

/// The principal a request's token names, for the log (authentication itself runs
/// inside, per route).
fn principal_of(app: &App, request: &Request) -> Option<String> {
    let tokens = app.tokens.as_ref()?;
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    tokens
        .authenticate(header)
        .ok()
        .and_then(|c| c.principal().map(str::to_string))
}

/// An error response axum made itself (no JSON body) gets the API's error shape.
fn jsonify(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<ErrorCode>().is_some()
    {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this path does not take that method".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "the request body is larger than this server's limit".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json".to_string(),
        ),
        StatusCode::NOT_FOUND => ("not_found", "no such path".to_string()),
        s if s.is_client_error() => ("bad_request", format!("the request was refused ({s})")),
        s => ("internal", format!("the server failed ({s})")),
    };
    ApiError::new(status, code, message).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such path: {}", request.uri().path()),
    )
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process answers",
    security(()),
    responses(
        (status = 200, description = "Alive.", body = Object),
    ),
)]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::contract::openapi_json(),
    )
        .into_response()
}

/// Ready while the store accepts appends (or is read-only by choice); 503 once it
/// is poisoned or the server is shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "The store accepts work",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Object),
        (status = 503, description = "Poisoned or shutting down.", body = ErrorBody),
    ),
)]
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Response {
    if *app.shutdown.borrow() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
        .into_response();
    }
    if let Some(poison) = app.store.store().poisoned() {
        return ApiError::from(poison).into_response();
    }
    Json(json!({ "status": "ready", "read_only": app.read_only })).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text format 0.0.4)",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain", body = String),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn metrics(State(app): State<Arc<App>>, _: Option<Extension<Caller>>) -> Response {
    let body = app.metrics.render(app.store.store());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
