//! Reads: events by id and by sequence, an entity's events, region queries with page
//! tokens, the causal walks and the catalogue. A caller sees only the events its
//! grants let it read; a page skips the others but still pages past them.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use batpak::{EventId, ExportLine, Region, StoredEvent};
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::App;
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ApiResult};
use crate::params::{page_token, read_page_token, Params};
use crate::wire::{event_json, parse_id};

fn readable(caller: &Caller, event: &StoredEvent) -> bool {
    caller.may(
        Permission::Read,
        event.coordinate.entity(),
        event.coordinate.scope(),
    )
}

fn id_param(text: &str) -> ApiResult<EventId> {
    parse_id(text).map_err(|m| ApiError::field("id", m))
}

fn one(app: &App, caller: &Caller, event: Option<StoredEvent>, what: String) -> ApiResult<Value> {
    let event = event.ok_or_else(|| ApiError::not_found(format!("no event has {what}")))?;
    caller.require(
        Permission::Read,
        event.coordinate.entity(),
        event.coordinate.scope(),
    )?;
    Ok(json!(event_json(app.store.store(), &event)))
}

/// `GET /v1/events/{id}`.
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = id_param(&id)?;
    let event = app.store.get(id).await?;
    Ok(Json(one(&app, &caller, event, format!("the id {id}"))?))
}

/// `GET /v1/sequences/{sequence}`.
pub(crate) async fn get_sequence(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(sequence): Path<String>,
) -> ApiResult<Json<Value>> {
    let sequence: u64 = sequence.parse().map_err(|_| {
        ApiError::field(
            "sequence",
            format!("{sequence:?} is not a whole number (0 to 2^64-1)"),
        )
    })?;
    let event = app.store.get_sequence(sequence).await?;
    Ok(Json(one(
        &app,
        &caller,
        event,
        format!("the sequence {sequence}"),
    )?))
}

/// A page of events.
#[derive(Serialize)]
pub(crate) struct Page {
    pub events: Vec<ExportLine>,
    /// The token for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

async fn page(
    app: &App,
    caller: &Caller,
    region: Region,
    backward: bool,
    mut params: Params,
) -> ApiResult<Page> {
    caller.require_some(Permission::Read)?;
    let limit = params.limit(app.limits.default_page, app.limits.max_page)?;
    let token = params.text("page");
    let after = params.number("after")?;
    let before = params.number("before")?;
    params.finish()?;
    let start = match (&token, backward) {
        (Some(t), _) => read_page_token(t, &region, backward)?,
        (None, false) => after.unwrap_or(0),
        (None, true) => before.unwrap_or(u64::MAX),
    };
    if token.is_some() && (after.is_some() || before.is_some()) {
        return Err(ApiError::field(
            "page",
            "a page token already says where the page starts: leave `after` and `before` out",
        ));
    }
    if after.is_some() && backward || before.is_some() && !backward {
        let field = if backward { "after" } else { "before" };
        return Err(ApiError::field(
            field,
            "`after` pages forward and `before` pages backward (`direction`)",
        ));
    }
    let fetched = if backward {
        app.store
            .query_reverse(region.clone(), start, limit + 1)
            .await?
    } else {
        app.store.query(region.clone(), start, limit + 1).await?
    };
    let more = fetched.len() > limit;
    let scanned: Vec<StoredEvent> = fetched.into_iter().take(limit).collect();
    let next = match (more, scanned.last()) {
        (true, Some(last)) => Some(page_token(&region, backward, last.sequence)),
        _ => None,
    };
    let store = app.store.store();
    let events = scanned
        .iter()
        .filter(|e| readable(caller, e))
        .map(|e| event_json(store, e))
        .collect();
    Ok(Page { events, next })
}

/// `GET /v1/events`: a region's events, a page at a time.
pub(crate) async fn query(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page>> {
    let mut params = Params::parse(raw.as_deref())?;
    let region = params.region(app.store.store())?;
    let backward = params.backward()?;
    Ok(Json(page(&app, &caller, region, backward, params).await?))
}

/// `GET /v1/entities/{entity}/events`: one entity's events, forwards or backwards,
/// from a version (`from_version`) when given.
pub(crate) async fn entity_events(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(entity): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page>> {
    let mut params = Params::parse(raw.as_deref())?;
    let backward = params.backward()?;
    let mut region = Region::all().entity(entity);
    if let Some(v) = params.number("from_version")? {
        region = if backward {
            region.versions(..=v)
        } else {
            region.versions(v..)
        };
    }
    Ok(Json(page(&app, &caller, region, backward, params).await?))
}

/// `GET /v1/count`: how many events a region holds (all of them, whatever the
/// caller's grants: the count needs read permission over every scope).
pub(crate) async fn count(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let mut params = Params::parse(raw.as_deref())?;
    let region = params.region(app.store.store())?;
    params.finish()?;
    caller.require_everywhere(Permission::Read)?;
    let count = app.store.run(move |s| s.count(&region)).await?;
    Ok(Json(json!({ "count": count })))
}

fn events_json(app: &App, caller: &Caller, events: &[StoredEvent]) -> Vec<ExportLine> {
    let store = app.store.store();
    events
        .iter()
        .filter(|e| readable(caller, e))
        .map(|e| event_json(store, e))
        .collect()
}

fn walk_limit(params: &mut Params, name: &'static str, max: usize) -> ApiResult<usize> {
    match params.number(name)? {
        None => Ok(max.min(100)),
        Some(0) => Err(ApiError::field(name, "must be at least 1")),
        Some(n) if n > max as u64 => Err(ApiError::field(
            name,
            format!("{n} is over this server's limit of {max}"),
        )),
        Some(n) => Ok(n as usize),
    }
}

/// The event must exist and be readable before its neighbourhood is shown.
async fn root(app: &App, caller: &Caller, id: EventId) -> ApiResult<StoredEvent> {
    let event = app
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event has the id {id}")))?;
    caller.require(
        Permission::Read,
        event.coordinate.entity(),
        event.coordinate.scope(),
    )?;
    Ok(event)
}

/// `GET /v1/events/{id}/ancestors?limit=`: the entity's chain back from the event,
/// each link checked.
pub(crate) async fn ancestors(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let id = id_param(&id)?;
    let mut params = Params::parse(raw.as_deref())?;
    let limit = walk_limit(&mut params, "limit", app.limits.max_page)?;
    params.finish()?;
    root(&app, &caller, id).await?;
    let walk = app
        .store
        .run(move |s| s.walk_ancestors(id, limit))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event has the id {id}")))?;
    Ok(Json(json!({
        "events": events_json(&app, &caller, &walk.events),
        "broken": walk.broken,
        "reached_first": walk.reached_first,
    })))
}

/// `GET /v1/events/{id}/causes?limit=`: the causation chain, nearest cause first.
pub(crate) async fn causes(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let id = id_param(&id)?;
    let mut params = Params::parse(raw.as_deref())?;
    let limit = walk_limit(&mut params, "limit", app.limits.max_page)?;
    params.finish()?;
    root(&app, &caller, id).await?;
    let events = app.store.run(move |s| s.causes(id, limit)).await?;
    Ok(Json(
        json!({ "events": events_json(&app, &caller, &events) }),
    ))
}

/// `GET /v1/events/{id}/effects`: the events this one caused directly.
pub(crate) async fn effects(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = id_param(&id)?;
    root(&app, &caller, id).await?;
    let events = app.store.run(move |s| s.effects(id)).await?;
    Ok(Json(
        json!({ "events": events_json(&app, &caller, &events) }),
    ))
}

/// `GET /v1/correlations/{id}`: every event of the workflow `id` names.
pub(crate) async fn correlated(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = id_param(&id)?;
    caller.require_some(Permission::Read)?;
    let events = app.store.run(move |s| s.correlated(id)).await?;
    Ok(Json(
        json!({ "events": events_json(&app, &caller, &events) }),
    ))
}

/// `GET /v1/events/{id}/graph?depth=`: the causal neighbourhood (chain and causation
/// edges) up to `depth` links away. Nodes the caller may not read are left out, with
/// their edges.
pub(crate) async fn graph(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let id = id_param(&id)?;
    let mut params = Params::parse(raw.as_deref())?;
    let depth = walk_limit(&mut params, "depth", 16)?;
    params.finish()?;
    root(&app, &caller, id).await?;
    let mut graph = app
        .store
        .run(move |s| s.causal_graph(id, depth))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event has the id {id}")))?;
    graph.nodes.retain(|n| {
        caller.may(
            Permission::Read,
            n.coordinate.entity(),
            n.coordinate.scope(),
        )
    });
    let kept: std::collections::HashSet<EventId> = graph.nodes.iter().map(|n| n.id).collect();
    graph
        .edges
        .retain(|e| kept.contains(&e.from) && kept.contains(&e.to));
    let names = app.store.store().kind_names();
    let nodes: Vec<Value> = graph
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "sequence": n.sequence,
                "entity": n.coordinate.entity(),
                "scope": n.coordinate.scope(),
                "kind": n.kind,
                "kind_name": names.get(&n.kind),
                "version": n.version,
            })
        })
        .collect();
    Ok(Json(json!({
        "root": graph.root,
        "nodes": nodes,
        "edges": graph.edges,
    })))
}

/// `GET /v1/entities?prefix=&after=&limit=`: entities in name order.
pub(crate) async fn entities(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let mut params = Params::parse(raw.as_deref())?;
    let prefix = params.text("prefix").unwrap_or_default();
    let after = params.text("after");
    let limit = params.limit(app.limits.default_page, app.limits.max_page)?;
    params.finish()?;
    let listed = app
        .store
        .run(move |s| Ok(s.entities(&prefix, after.as_deref(), limit + 1)))
        .await?;
    let more = listed.len() > limit;
    let listed: Vec<_> = listed.into_iter().take(limit).collect();
    let next = if more {
        listed.last().map(|e| e.entity.clone())
    } else {
        None
    };
    let entities: Vec<_> = listed
        .into_iter()
        .filter(|e| {
            e.scopes
                .iter()
                .any(|scope| caller.may(Permission::Read, &e.entity, scope))
        })
        .collect();
    Ok(Json(json!({ "entities": entities, "next_after": next })))
}

/// `GET /v1/scopes`.
pub(crate) async fn scopes(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let scopes = app.store.run(|s| Ok(s.scopes())).await?;
    Ok(Json(json!({ "scopes": scopes })))
}

/// `GET /v1/kinds`.
pub(crate) async fn kinds(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let kinds = app.store.run(|s| Ok(s.kinds())).await?;
    Ok(Json(json!({ "kinds": kinds })))
}

/// `GET /v1/stats`.
pub(crate) async fn stats(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    let stats = app.store.run(|s| s.stats()).await?;
    Ok(Json(json!(stats)))
}

/// `GET /v1/frontier`.
pub(crate) async fn frontier(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    caller.require_some(Permission::Read)?;
    Ok(Json(json!(app.store.store().frontier())))
}
