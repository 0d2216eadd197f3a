//! Proof: receipt and anchor verification, taking an anchor, and `verify` as a job
//! with progress (it reads every segment, so it runs in the background).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use batpak::proof::{Anchor, AnchorCheck, ReceiptCheck};
use batpak::AppendReceipt;
use serde_json::{json, Value};

use crate::api::App;
use crate::auth::{Caller, Permission};
use crate::contract::{AnchorDoc, ErrorBody, ReceiptDoc};
use crate::error::{ApiError, ApiResult};
use crate::wire::parse_body;

/// A verdict on a receipt or an anchor.
#[derive(utoipa::ToSchema)]
#[schema(as = Verdict)]
#[allow(dead_code)]
pub(crate) struct VerdictDoc {
    /// Whether it holds.
    holds: bool,
    /// `signed`, `unsigned`, `holds`, `unknown_key`, `bad_signature`,
    /// `no_such_event`, `mismatch`, `truncated`, `compacted` or `rewritten`.
    verdict: String,
    /// The key that signed it.
    key_id: Option<String>,
    /// The key that signed an anchor that holds.
    signed_by: Option<String>,
    /// The receipt's event, when the store has none.
    event_id: Option<String>,
    /// The receipt field that differs, with both values.
    field: Option<String>,
    receipt: Option<String>,
    stored: Option<String>,
    /// The anchored sequence, and what the store holds.
    anchored: Option<u64>,
    present: Option<u64>,
    compacted_through: Option<u64>,
    running_hash: Option<String>,
}

/// A verification job, as it starts.
#[derive(utoipa::ToSchema)]
#[schema(as = JobStarted)]
#[allow(dead_code)]
pub(crate) struct JobStartedDoc {
    job: String,
    /// Where to poll it.
    href: String,
}

/// A verification job.
#[derive(utoipa::ToSchema)]
#[schema(as = Job)]
#[allow(dead_code)]
pub(crate) struct JobDoc {
    job: String,
    /// `running`, `done` or `failed`.
    state: String,
    bytes_done: u64,
    bytes_total: u64,
    /// The evidence report once done (`body.findings` lists what does not hold).
    report: Option<Value>,
    /// Why it failed.
    error: Option<Value>,
}

fn receipt_verdict(check: &ReceiptCheck) -> Value {
    match check {
        ReceiptCheck::Signed { key_id } => {
            json!({ "holds": true, "verdict": "signed", "key_id": key_id.to_string() })
        }
        ReceiptCheck::Unsigned => json!({ "holds": true, "verdict": "unsigned" }),
        ReceiptCheck::UnknownKey { key_id } => {
            json!({ "holds": false, "verdict": "unknown_key", "key_id": key_id.to_string() })
        }
        ReceiptCheck::BadSignature { key_id } => {
            json!({ "holds": false, "verdict": "bad_signature", "key_id": key_id.to_string() })
        }
        ReceiptCheck::NoSuchEvent { event_id } => {
            json!({ "holds": false, "verdict": "no_such_event", "event_id": event_id.to_string() })
        }
        ReceiptCheck::Mismatch {
            field,
            receipt,
            stored,
        } => json!({
            "holds": false,
            "verdict": "mismatch",
            "field": format!("{field:?}").to_lowercase(),
            "receipt": receipt,
            "stored": stored,
        }),
        other => json!({ "holds": false, "verdict": format!("{other:?}") }),
    }
}

fn anchor_verdict(check: &AnchorCheck) -> Value {
    match check {
        AnchorCheck::Holds { signed_by } => json!({
            "holds": true,
            "verdict": "holds",
            "signed_by": signed_by.map(|k| k.to_string()),
        }),
        AnchorCheck::UnknownKey { key_id } => {
            json!({ "holds": false, "verdict": "unknown_key", "key_id": key_id.to_string() })
        }
        AnchorCheck::BadSignature { key_id } => {
            json!({ "holds": false, "verdict": "bad_signature", "key_id": key_id.to_string() })
        }
        AnchorCheck::Truncated { anchored, present } => json!({
            "holds": false,
            "verdict": "truncated",
            "anchored": anchored,
            "present": present,
        }),
        AnchorCheck::Compacted {
            anchored,
            compacted_through,
        } => json!({
            "holds": false,
            "verdict": "compacted",
            "anchored": anchored,
            "compacted_through": compacted_through,
        }),
        AnchorCheck::Rewritten {
            anchored,
            running_hash,
        } => json!({
            "holds": false,
            "verdict": "rewritten",
            "anchored": anchored,
            "running_hash": running_hash.to_string(),
        }),
        other => json!({ "holds": false, "verdict": format!("{other:?}") }),
    }
}

/// `POST /v1/receipts/verify`: body a receipt as appends return it.
#[utoipa::path(
    post,
    path = "/v1/receipts/verify",
    tag = "proof",
    summary = "Check a receipt against the store",
    request_body = ReceiptDoc,
    responses(
        (status = 200, description = "The verdict; `holds` is false for a receipt the store does not bear out.", body = VerdictDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn verify_receipt(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let receipt: AppendReceipt = parse_body(&body)?;
    if let Some(event) = app.store.get(receipt.event_id).await? {
        caller.require(
            Permission::Read,
            event.coordinate.entity(),
            event.coordinate.scope(),
        )?;
    }
    let check = app.store.run(move |s| s.verify_receipt(&receipt)).await?;
    Ok(Json(receipt_verdict(&check)))
}

/// `POST /v1/anchors`: takes an anchor of the history so far (signed when the store
/// signs).
#[utoipa::path(
    post,
    path = "/v1/anchors",
    tag = "proof",
    summary = "Take an anchor of the history so far (signed when the store signs)",
    responses(
        (status = 201, description = "The anchor.", body = AnchorDoc),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn take_anchor(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let anchor = app.store.run(|s| s.anchor()).await?;
    Ok((StatusCode::CREATED, Json(json!(anchor))))
}

/// `POST /v1/anchors/verify`: body an anchor as `POST /v1/anchors` returned it.
#[utoipa::path(
    post,
    path = "/v1/anchors/verify",
    tag = "proof",
    summary = "Check an anchor against the history",
    request_body = AnchorDoc,
    responses(
        (status = 200, description = "The verdict.", body = VerdictDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn verify_anchor(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require_everywhere(Permission::Read)?;
    let anchor: Anchor = parse_body(&body)?;
    let check = app.store.run(move |s| s.verify_against(&anchor)).await?;
    Ok(Json(anchor_verdict(&check)))
}

/// One verification run.
#[derive(Debug)]
pub(crate) struct Job {
    id: u64,
    done: AtomicU64,
    total: AtomicU64,
    outcome: Mutex<Option<Result<Value, ApiError>>>,
}

impl Job {
    fn json(&self) -> Value {
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (state, report, error) = match &*outcome {
            None => ("running", Value::Null, Value::Null),
            Some(Ok(report)) => ("done", report.clone(), Value::Null),
            Some(Err(e)) => (
                "failed",
                Value::Null,
                json!({ "code": e.code, "message": e.message }),
            ),
        };
        json!({
            "job": self.id.to_string(),
            "state": state,
            "bytes_done": self.done.load(Ordering::Relaxed),
            "bytes_total": self.total.load(Ordering::Relaxed),
            "report": report,
            "error": error,
        })
    }

    fn finished(&self) -> bool {
        self.outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

/// The verification jobs the server remembers, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    next: u64,
    jobs: VecDeque<Arc<Job>>,
}

/// `POST /v1/verify`: starts a full verification; 202 with the job to poll.
#[utoipa::path(
    post,
    path = "/v1/verify",
    tag = "proof",
    summary = "Start a full verification (every segment, record, hash and link)",
    responses(
        (status = 202, description = "Started; poll `href`.", body = JobStartedDoc),
        (status = 409, description = "A verification is already running.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn start_verify(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let job = {
        let mut jobs = app
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(running) = jobs.jobs.iter().find(|j| !j.finished()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "verify_running",
                format!(
                    "verification job {} is still running; poll /v1/verify/{}",
                    running.id, running.id
                ),
            )
            .with_details(json!({ "job": running.id.to_string() })));
        }
        while jobs.jobs.len() >= app.limits.max_jobs.max(1) {
            jobs.jobs.pop_front();
        }
        jobs.next += 1;
        let job = Arc::new(Job {
            id: jobs.next,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            outcome: Mutex::new(None),
        });
        jobs.jobs.push_back(Arc::clone(&job));
        job
    };
    let running = Arc::clone(&job);
    let store = app.store.clone();
    tokio::spawn(async move {
        let progress = Arc::clone(&running);
        let result = store
            .run(move |s| {
                s.verify_with_progress(|done, total| {
                    progress.done.store(done, Ordering::Relaxed);
                    progress.total.store(total, Ordering::Relaxed);
                })
            })
            .await
            .map(|report| json!(report))
            .map_err(ApiError::from);
        *running
            .outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
    });
    let id = job.id;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": id.to_string(), "href": format!("/v1/verify/{id}") })),
    ))
}

/// `GET /v1/verify/{job}`: the job's progress, and its report once done.
#[utoipa::path(
    get,
    path = "/v1/verify/{job}",
    tag = "proof",
    summary = "A verification's progress, and its report once done",
    params(("job" = String, Path, description = "The job number.")),
    responses(
        (status = 200, description = "The job.", body = JobDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such job.", body = ErrorBody),
    ),
)]
pub(crate) async fn verify_job(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(job): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let id: u64 = job
        .parse()
        .map_err(|_| ApiError::field("job", format!("{job:?} is not a job number")))?;
    let jobs = app
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let job = jobs.jobs.iter().find(|j| j.id == id).ok_or_else(|| {
        ApiError::not_found(format!("no verification job {id} (or it was forgotten)"))
    })?;
    Ok(Json(job.json()))
}
