//! Reads: events by id and by sequence, an entity's events, region queries with page
//! tokens, the causal walks and the catalogue. A caller sees only the events its
//! grants let it read; a page skips the others but still pages past them.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use batpak::{EventId, ExportLine, Region, StoredEvent};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::App;
use crate::auth::{Caller, Permission};
use crate::contract::{
    ChainBreakDoc, EntityInfoDoc, ErrorBody, EventDoc, FrontierDoc, GraphEdgeDoc, KindInfoDoc,
    ReceiptDoc, ScopeInfoDoc, StatsDoc,
};
use crate::error::{ApiError, ApiResult};
use crate::params::{page_token, read_page_token, PageQuery, Params, RegionQuery};
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

fn one(
    app: &App,
    caller: &Caller,
    event: Option<StoredEvent>,
    what: String,
) -> ApiResult<ExportLine> {
    let event = event.ok_or_else(|| ApiError::not_found(format!("no event has {what}")))?;
    caller.require(
        Permission::Read,
        event.coordinate.entity(),
        event.coordinate.scope(),
    )?;
    Ok(event_json(app.store.store(), &event))
}

/// `GET /v1/events/{id}`.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    summary = "One event by id",
    params(("id" = String, Path, description = "An event id.")),
    responses(
        (status = 200, description = "The event.", body = EventDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportLine>> {
    let id = id_param(&id)?;
    let event = app.store.get(id).await?;
    Ok(Json(one(&app, &caller, event, format!("the id {id}"))?))
}

/// `GET /v1/sequences/{sequence}`.
#[utoipa::path(
    get,
    path = "/v1/sequences/{sequence}",
    tag = "events",
    summary = "One event by sequence",
    params(("sequence" = u64, Path, description = "A global sequence.")),
    responses(
        (status = 200, description = "The event.", body = EventDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn get_sequence(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(sequence): Path<String>,
) -> ApiResult<Json<ExportLine>> {
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

/// `GET /v1/events/{id}/receipt`: the event's receipt, as its append returned it.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/receipt",
    tag = "proof",
    summary = "The receipt the store issues for an event (signed when the store signs)",
    params(("id" = String, Path, description = "An event id.")),
    responses(
        (status = 200, description = "The receipt.", body = ReceiptDoc),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn receipt(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<batpak::AppendReceipt>> {
    let id = id_param(&id)?;
    root(&app, &caller, id).await?;
    let receipt = app
        .store
        .run(move |s| s.receipt(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event has the id {id}")))?;
    Ok(Json(receipt))
}

/// A page of events.
#[derive(Serialize, ToSchema)]
pub(crate) struct Page {
    /// The events the caller may read, in the page's order.
    #[schema(value_type = Vec<EventDoc>)]
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
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "A region of events, a page at a time",
    params(RegionQuery, PageQuery),
    responses(
        (status = 200, description = "A page; `next` is absent on the last one.", body = Page),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/entities/{entity}/events",
    tag = "events",
    summary = "An entity's events, forwards or backwards",
    params(("entity" = String, Path, description = "The entity (percent-encode `/`)."), ("from_version" = Option<u64>, Query, description = "Forward: from this version on; backward: from this version down."), PageQuery),
    responses(
        (status = 200, description = "A page.", body = Page),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/v1/count",
    tag = "events",
    summary = "How many events a region holds",
    params(RegionQuery),
    responses(
        (status = 200, description = "The count.", body = Count),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn count(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Count>> {
    let mut params = Params::parse(raw.as_deref())?;
    let region = params.region(app.store.store())?;
    params.finish()?;
    caller.require_everywhere(Permission::Read)?;
    let count = app.store.run(move |s| s.count(&region)).await?;
    Ok(Json(Count { count }))
}

/// Events, in the order the walk or query gave them.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventList {
    #[schema(value_type = Vec<EventDoc>)]
    events: Vec<ExportLine>,
}

/// How many events a region holds.
#[derive(Serialize, ToSchema)]
pub(crate) struct Count {
    count: u64,
}

/// A walk back along an entity's chain.
#[derive(Serialize, ToSchema)]
pub(crate) struct Walk {
    /// Newest first, up to the first broken link.
    #[schema(value_type = Vec<EventDoc>)]
    events: Vec<ExportLine>,
    /// The first link that does not verify.
    #[schema(value_type = Option<ChainBreakDoc>)]
    broken: Option<batpak::graph::ChainBreak>,
    /// Whether the walk reached the entity's first (kept) event.
    reached_first: bool,
}

/// A node of the causal graph.
#[derive(Serialize, ToSchema)]
pub(crate) struct GraphNode {
    id: String,
    sequence: u64,
    entity: String,
    scope: String,
    kind: String,
    kind_name: Option<String>,
    version: u64,
}

/// An event's causal neighbourhood.
#[derive(Serialize, ToSchema)]
pub(crate) struct Graph {
    root: String,
    /// In sequence order.
    nodes: Vec<GraphNode>,
    #[schema(value_type = Vec<GraphEdgeDoc>)]
    edges: Vec<batpak::graph::GraphEdge>,
}

/// A page of the catalogue's entities.
#[derive(Serialize, ToSchema)]
pub(crate) struct EntityList {
    #[schema(value_type = Vec<EntityInfoDoc>)]
    entities: Vec<batpak::EntityInfo>,
    /// Pass as `after` for the next page; absent on the last one.
    next_after: Option<String>,
}

/// The scopes.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScopeList {
    #[schema(value_type = Vec<ScopeInfoDoc>)]
    scopes: Vec<batpak::ScopeInfo>,
}

/// The kinds.
#[derive(Serialize, ToSchema)]
pub(crate) struct KindList {
    #[schema(value_type = Vec<KindInfoDoc>)]
    kinds: Vec<batpak::KindInfo>,
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
#[utoipa::path(
    get,
    path = "/v1/events/{id}/ancestors",
    tag = "graph",
    summary = "The entity's chain back from an event, each link checked",
    params(("id" = String, Path, description = "An event id."), ("limit" = Option<u64>, Query, description = "Most events (default 100).")),
    responses(
        (status = 200, description = "The walk, newest first.", body = Walk),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn ancestors(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Walk>> {
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
    Ok(Json(Walk {
        events: events_json(&app, &caller, &walk.events),
        broken: walk.broken,
        reached_first: walk.reached_first,
    }))
}

/// `GET /v1/events/{id}/causes?limit=`: the causation chain, nearest cause first.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/causes",
    tag = "graph",
    summary = "The causation chain, nearest cause first",
    params(("id" = String, Path, description = "An event id."), ("limit" = Option<u64>, Query, description = "Most events (default 100).")),
    responses(
        (status = 200, description = "The causes.", body = EventList),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn causes(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<EventList>> {
    let id = id_param(&id)?;
    let mut params = Params::parse(raw.as_deref())?;
    let limit = walk_limit(&mut params, "limit", app.limits.max_page)?;
    params.finish()?;
    root(&app, &caller, id).await?;
    let events = app.store.run(move |s| s.causes(id, limit)).await?;
    Ok(Json(EventList {
        events: events_json(&app, &caller, &events),
    }))
}

/// `GET /v1/events/{id}/effects`: the events this one caused directly.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/effects",
    tag = "graph",
    summary = "The events an event caused directly",
    params(("id" = String, Path, description = "An event id.")),
    responses(
        (status = 200, description = "The effects.", body = EventList),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn effects(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<EventList>> {
    let id = id_param(&id)?;
    root(&app, &caller, id).await?;
    let events = app.store.run(move |s| s.effects(id)).await?;
    Ok(Json(EventList {
        events: events_json(&app, &caller, &events),
    }))
}

/// `GET /v1/correlations/{id}`: every event of the workflow `id` names.
#[utoipa::path(
    get,
    path = "/v1/correlations/{id}",
    tag = "graph",
    summary = "Every event of a workflow",
    params(("id" = String, Path, description = "The correlation id.")),
    responses(
        (status = 200, description = "The events.", body = EventList),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn correlated(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<EventList>> {
    let id = id_param(&id)?;
    caller.require_some(Permission::Read)?;
    let events = app.store.run(move |s| s.correlated(id)).await?;
    Ok(Json(EventList {
        events: events_json(&app, &caller, &events),
    }))
}

/// `GET /v1/events/{id}/graph?depth=`: the causal neighbourhood (chain and causation
/// edges) up to `depth` links away. Nodes the caller may not read are left out, with
/// their edges.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/graph",
    tag = "graph",
    summary = "An event's causal neighbourhood",
    params(("id" = String, Path, description = "An event id."), ("depth" = Option<u64>, Query, description = "Links away (default 16, at most 16).")),
    responses(
        (status = 200, description = "Nodes and edges.", body = Graph),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
        (status = 404, description = "No such event.", body = ErrorBody),
    ),
)]
pub(crate) async fn graph(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Graph>> {
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
    let nodes = graph
        .nodes
        .iter()
        .map(|n| GraphNode {
            id: n.id.to_string(),
            sequence: n.sequence,
            entity: n.coordinate.entity().to_string(),
            scope: n.coordinate.scope().to_string(),
            kind: n.kind.to_string(),
            kind_name: names.get(&n.kind).cloned(),
            version: n.version,
        })
        .collect();
    Ok(Json(Graph {
        root: graph.root.to_string(),
        nodes,
        edges: graph.edges,
    }))
}

/// `GET /v1/entities?prefix=&after=&limit=`: entities in name order, those the
/// caller may read in every one of their scopes (a catalogue entry's counts cover all
/// of them).
#[utoipa::path(
    get,
    path = "/v1/entities",
    tag = "catalogue",
    summary = "Entities in name order",
    params(("prefix" = Option<String>, Query, description = "Only entities under this prefix."), ("after" = Option<String>, Query, description = "Start after this name (`next_after`)."), ("limit" = Option<u64>, Query, description = "Most entities.")),
    responses(
        (status = 200, description = "Entities.", body = EntityList),
        (status = 400, description = "A parameter or field is wrong; `details.field` names it.", body = ErrorBody),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn entities(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<EntityList>> {
    caller.require_some(Permission::Read)?;
    let mut params = Params::parse(raw.as_deref())?;
    let prefix = params.text("prefix").unwrap_or_default();
    let after = params.text("after");
    let limit = params.limit(app.limits.default_page, app.limits.max_page)?;
    params.finish()?;
    // Entities the caller may not read are skipped without a trace: the page goes on
    // until it holds `limit` readable ones, and the cursor is the last one shown.
    let reader = caller.clone();
    let (mut entities, more) = app
        .store
        .run(move |s| {
            let step = (limit + 1).max(256);
            let mut shown = Vec::new();
            let mut cursor = after;
            loop {
                let batch = s.entities(&prefix, cursor.as_deref(), step);
                let exhausted = batch.len() < step;
                cursor = batch.last().map(|e| e.entity.clone());
                for e in batch {
                    let readable = e
                        .scopes
                        .iter()
                        .all(|scope| reader.may(Permission::Read, &e.entity, scope));
                    if readable {
                        shown.push(e);
                        if shown.len() > limit {
                            return Ok((shown, true));
                        }
                    }
                }
                if exhausted {
                    return Ok((shown, false));
                }
            }
        })
        .await?;
    entities.truncate(limit);
    let next = if more {
        entities.last().map(|e| e.entity.clone())
    } else {
        None
    };
    Ok(Json(EntityList {
        entities,
        next_after: next,
    }))
}

/// `GET /v1/scopes`.
#[utoipa::path(
    get,
    path = "/v1/scopes",
    tag = "catalogue",
    summary = "Scopes with their counts",
    responses(
        (status = 200, description = "Scopes.", body = ScopeList),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn scopes(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ScopeList>> {
    caller.require_some(Permission::Read)?;
    let scopes = app.store.run(|s| Ok(s.scopes())).await?;
    Ok(Json(ScopeList { scopes }))
}

/// `GET /v1/kinds`.
#[utoipa::path(
    get,
    path = "/v1/kinds",
    tag = "catalogue",
    summary = "Kinds with their names and counts",
    responses(
        (status = 200, description = "Kinds.", body = KindList),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn kinds(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<KindList>> {
    caller.require_some(Permission::Read)?;
    let kinds = app.store.run(|s| Ok(s.kinds())).await?;
    Ok(Json(KindList { kinds }))
}

/// `GET /v1/stats`.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "catalogue",
    summary = "Counts and watermarks",
    responses(
        (status = 200, description = "Stats.", body = StatsDoc),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn stats(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<batpak::Stats>> {
    caller.require_some(Permission::Read)?;
    let stats = app.store.run(|s| s.stats()).await?;
    Ok(Json(stats))
}

/// `GET /v1/frontier`.
#[utoipa::path(
    get,
    path = "/v1/frontier",
    tag = "catalogue",
    summary = "The written, durable and visible watermarks",
    responses(
        (status = 200, description = "The frontier.", body = FrontierDoc),
        (status = 401, description = "No known bearer token.", body = ErrorBody),
        (status = 403, description = "The token does not cover it.", body = ErrorBody),
    ),
)]
pub(crate) async fn frontier(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<batpak::Frontier>> {
    caller.require_some(Permission::Read)?;
    Ok(Json(app.store.store().frontier()))
}
