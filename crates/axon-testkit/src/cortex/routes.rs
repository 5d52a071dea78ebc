//! The routes, handlers and envelopes, as `cortex-api.md` describes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::faults::{self, BODY_LIMIT};
use super::model::{
    Episode, MergeRecord, MergeResult, MergeStatus, MergeStrategy, Priority, Session,
    SessionRecord, SessionStatus, SpecReference, Task, TaskStatus, Workspace,
};
use super::{Shared, now};

type Shd = State<Arc<Shared>>;

/// The whole app: public and protected routes, the 404 fallback, the body limit, and the
/// recording/fault middleware around everything.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let public = Router::new()
        .route("/health", get(health))
        .route("/api/v1/health", get(health))
        .route("/api/v1/tasks", get(list_tasks).post(create_task))
        .route(
            "/api/v1/tasks/{id}",
            get(get_task).put(update_task).delete(delete_task),
        )
        .route(
            "/api/v1/workspaces",
            get(list_workspaces).post(create_workspace),
        )
        .route("/api/v1/workspaces/{id}", get(get_workspace));
    let protected = Router::new()
        .route("/api/v1/sessions", get(list_sessions).post(create_session))
        .route(
            "/api/v1/sessions/{id}",
            get(get_session).delete(delete_session),
        )
        .route("/api/v1/sessions/{id}/merge", post(merge_session))
        .route("/api/v1/memory/search", post(search_memory))
        .route_layer(from_fn_with_state(shared.clone(), require_auth));
    public
        .merge(protected)
        // Unknown path: 404 with an empty body (axum's default, contract 2.3).
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(shared.clone(), faults::apply))
        .with_state(shared)
}

// ---- envelopes (contract 2) ----

fn metadata() -> Value {
    json!({
        "request_id": Uuid::new_v4().to_string(),
        "timestamp": now(),
        "version": "v1",
        "duration_ms": 0,
    })
}

/// 200 `{success: true, data, error: null, metadata}`.
fn ok(data: Value) -> Response {
    Json(json!({ "success": true, "data": data, "error": null, "metadata": metadata() }))
        .into_response()
}

/// A handler error (`ApiError`): an `error` object and **no `data` key**.
fn api_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = json!({
        "success": false,
        "error": { "code": code, "message": message, "details": null },
        "metadata": metadata(),
    });
    (status, Json(body)).into_response()
}

fn bad_request(what: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        format!("Bad request: {what}"),
    )
}

fn not_found(what: String) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("Not found: {what} not found"),
    )
}

/// The id as stored (lowercase hyphenated), or `None` if it is not a UUID.
fn parse_id(id: &str) -> Option<String> {
    Uuid::parse_str(id).ok().map(|u| u.to_string())
}

// ---- auth (contract 2.4, 3) ----

/// The auth middleware of the protected group: `ApiKey <key>` or `Bearer <token>`.
async fn require_auth(State(shared): Shd, req: Request, next: Next) -> Response {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let rejection = match value {
        None => "Authentication required",
        Some(v) => {
            if let Some(key) = v.strip_prefix("ApiKey ") {
                if key == shared.api_key {
                    return next.run(req).await;
                }
                "Invalid API key"
            } else if let Some(token) = v.strip_prefix("Bearer ") {
                // The fake issues no JWTs: the API key doubles as the one valid token.
                if token == shared.api_key {
                    return next.run(req).await;
                }
                "Invalid or expired token"
            } else {
                "Authentication required"
            }
        }
    };
    // No `metadata` in this body (contract 2.4).
    let body =
        json!({ "success": false, "error": { "code": "UNAUTHORIZED", "message": rejection } });
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"Cortex API\""),
    );
    resp
}

// ---- health (contract 7a) ----

async fn health(State(shared): Shd) -> Response {
    let unhealthy = shared.faults().unhealthy;
    ok(json!({
        "status": if unhealthy { "unhealthy" } else { "healthy" },
        "version": "0.1.0",
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "database": { "connected": !unhealthy, "response_time_ms": if unhealthy { 500 } else { 1 } },
        "memory": { "total_bytes": 25_769_803_776_u64, "used_bytes": 4_123_000_000_u64 },
    }))
}

// ---- tasks (contract 4) ----

fn task_json(task: &Task, typo: bool) -> Value {
    let mut v = serde_json::to_value(task).unwrap_or(Value::Null);
    if typo && task.status == TaskStatus::InProgress {
        v["status"] = json!("in_progress");
    }
    v
}

#[derive(Deserialize)]
struct ListTasksQuery {
    status: Option<TaskStatus>,
    priority: Option<Priority>,
    assigned_to: Option<String>,
    tags: Option<String>,
}

async fn list_tasks(State(shared): Shd, Query(q): Query<ListTasksQuery>) -> Response {
    let typo = shared.faults().status_typo;
    let wanted: Option<Vec<&str>> = q.tags.as_deref().map(|t| t.split(',').collect());
    let state = shared.state();
    // Newest first (`created_at` descending); insertion order is creation order.
    let tasks: Vec<Value> = state
        .snapshot
        .tasks
        .iter()
        .rev()
        .filter(|t| q.status.is_none_or(|s| t.status == s))
        .filter(|t| q.priority.is_none_or(|p| t.priority == p))
        .filter(|t| {
            q.assigned_to
                .as_ref()
                .is_none_or(|a| t.assigned_to.contains(a))
        })
        .filter(|t| {
            wanted
                .as_ref()
                .is_none_or(|w| t.tags.iter().any(|tag| w.contains(&tag.as_str())))
        })
        .map(|t| task_json(t, typo))
        .collect();
    ok(Value::Array(tasks))
}

#[derive(Deserialize)]
struct CreateTaskRequest {
    title: String,
    description: String,
    priority: Option<Priority>,
    estimated_hours: Option<f64>,
    tags: Option<Vec<String>>,
    spec_reference: Option<SpecReference>,
}

async fn create_task(State(shared): Shd, Json(req): Json<CreateTaskRequest>) -> Response {
    let typo = shared.faults().status_typo;
    let at = now();
    let task = Task {
        id: Uuid::new_v4().to_string(),
        title: req.title,
        description: req.description,
        status: TaskStatus::Pending,
        priority: req.priority.unwrap_or(Priority::Medium),
        assigned_to: Vec::new(),
        estimated_hours: req.estimated_hours,
        actual_hours: None,
        progress: 0.0,
        tags: req.tags.unwrap_or_default(),
        dependencies: Vec::new(),
        spec_reference: req.spec_reference,
        completion_note: None,
        created_at: at.clone(),
        updated_at: at,
    };
    let body = task_json(&task, typo);
    shared.state().push_task(task);
    ok(body)
}

async fn get_task(State(shared): Shd, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid task ID");
    };
    let typo = shared.faults().status_typo;
    match shared.state().task(&id) {
        Some(t) => ok(task_json(t, typo)),
        None => not_found(format!("Task {id}")),
    }
}

/// Every field optional; `null` or absent means unchanged (contract 4.5).
#[derive(Deserialize)]
struct UpdateTaskRequest {
    title: Option<String>,
    description: Option<String>,
    status: Option<TaskStatus>,
    priority: Option<Priority>,
    assigned_to: Option<Vec<String>>,
    estimated_hours: Option<f64>,
    actual_hours: Option<f64>,
    progress: Option<f64>,
    tags: Option<Vec<String>>,
    completion_note: Option<String>,
}

async fn update_task(
    State(shared): Shd,
    Path(id): Path<String>,
    Json(req): Json<UpdateTaskRequest>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid task ID");
    };
    let typo = shared.faults().status_typo;
    let mut state = shared.state();
    let Some(task) = state.task_mut(&id) else {
        return not_found(format!("Task {id}"));
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = req.$field { task.$field = v; } )* };
    }
    set!(
        title,
        description,
        status,
        priority,
        assigned_to,
        progress,
        tags
    );
    if req.estimated_hours.is_some() {
        task.estimated_hours = req.estimated_hours;
    }
    if req.actual_hours.is_some() {
        task.actual_hours = req.actual_hours;
    }
    if req.completion_note.is_some() {
        task.completion_note = req.completion_note;
    }
    task.updated_at = now();
    ok(task_json(task, typo))
}

async fn delete_task(State(shared): Shd, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid task ID");
    };
    let mut state = shared.state();
    state.remove_task(&id);
    state.snapshot.deleted_tasks.push(id);
    ok(Value::Null)
}

// ---- workspaces (contract 5, public) ----

#[derive(Deserialize)]
struct CreateWorkspaceRequest {
    name: String,
    source_path: Option<String>,
}

/// `POST /api/v1/workspaces`. The contract gives the response's fields but not the values of
/// `source_type` and `namespace` (unverified): the fake says `local` and `ws_<simple id>`.
async fn create_workspace(State(shared): Shd, Json(req): Json<CreateWorkspaceRequest>) -> Response {
    let id = Uuid::new_v4();
    let at = now();
    let ws = Workspace {
        id: id.to_string(),
        name: req.name,
        source_type: "local".to_owned(),
        namespace: format!("ws_{}", id.simple()),
        source_path: req.source_path,
        read_only: false,
        created_at: at.clone(),
        updated_at: at,
    };
    let body = serde_json::to_value(&ws).unwrap_or(Value::Null);
    shared.state().snapshot.workspaces.push(ws);
    ok(body)
}

/// `GET /api/v1/workspaces`: the contract lists the route as public but does not describe its
/// answer; best reading: `data` is an array of the workspace objects `POST` returns.
async fn list_workspaces(State(shared): Shd) -> Response {
    let state = shared.state();
    let all: Vec<Value> = state
        .snapshot
        .workspaces
        .iter()
        .map(|w| serde_json::to_value(w).unwrap_or(Value::Null))
        .collect();
    ok(Value::Array(all))
}

/// `GET /api/v1/workspaces/{id}`: best reading of the contract (route listed, answer not
/// described): the workspace object, 400 for a bad UUID, 404 when unknown.
async fn get_workspace(State(shared): Shd, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid workspace ID");
    };
    let state = shared.state();
    match state.snapshot.workspaces.iter().find(|w| w.id == id) {
        Some(w) => ok(serde_json::to_value(w).unwrap_or(Value::Null)),
        None => not_found(format!("Workspace {id}")),
    }
}

// ---- sessions (contract 5, auth) ----

#[derive(Deserialize)]
struct CreateSessionRequest {
    name: String,
    agent_type: String,
    /// Declared optional, but required by the handler.
    workspace_id: Option<String>,
}

fn session_json(s: &Session) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

async fn create_session(State(shared): Shd, Json(req): Json<CreateSessionRequest>) -> Response {
    let Some(workspace_id) = req.workspace_id else {
        return bad_request("workspace_id is required");
    };
    // The server does not check that the workspace exists (contract 5.1).
    let Some(workspace_id) = parse_id(&workspace_id) else {
        return bad_request("Invalid workspace ID");
    };
    let at = now();
    let session = Session {
        id: Uuid::new_v4().to_string(),
        name: req.name,
        agent_type: req.agent_type,
        status: SessionStatus::Active,
        created_at: at.clone(),
        updated_at: at,
    };
    let body = session_json(&session);
    shared.state().snapshot.sessions.push(SessionRecord {
        session,
        workspace_id,
    });
    ok(body)
}

async fn list_sessions(State(shared): Shd) -> Response {
    let state = shared.state();
    let all: Vec<Value> = state
        .snapshot
        .sessions
        .iter()
        .rev()
        .map(|s| session_json(&s.session))
        .collect();
    ok(Value::Array(all))
}

async fn get_session(State(shared): Shd, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid session ID");
    };
    match shared.state().snapshot.session(&id) {
        Some(s) => ok(session_json(&s.session)),
        None => not_found(format!("Session {id}")),
    }
}

async fn delete_session(State(shared): Shd, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid session ID");
    };
    let mut state = shared.state();
    state.snapshot.sessions.retain(|s| s.session.id != id);
    state.snapshot.deleted_sessions.push(id);
    ok(Value::Null)
}

/// `{strategy?, conflict_resolution?}`: both default; `null` for either is a 422, as serde's
/// `#[serde(default)]` on a non-`Option` field does in the real server.
#[derive(Deserialize)]
struct MergeRequest {
    #[serde(default)]
    strategy: MergeStrategy,
    #[serde(default)]
    conflict_resolution: BTreeMap<String, String>,
}

/// `POST /api/v1/sessions/{id}/merge` (contract 5.5). The fake has no files: what the session
/// changed comes from [`FakeCortex::set_session_changes`](super::FakeCortex::set_session_changes).
///
/// Best reading of the contract where it is silent: files resolved through
/// `conflict_resolution` count as merged changes; `theirs` resolves a conflict without writing;
/// `partial` is reported whenever a conflict was detected, even if every one was resolved.
async fn merge_session(
    State(shared): Shd,
    Path(id): Path<String>,
    Json(req): Json<MergeRequest>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_request("Invalid session ID");
    };
    let mut state = shared.state();
    let Some(name) = state.snapshot.session(&id).map(|s| s.session.name.clone()) else {
        return not_found(format!("Session {id}"));
    };
    let changes = state
        .changes_by_name
        .iter()
        .find(|(part, _)| name.contains(part.as_str()))
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let mut resolved = 0u64;
    let mut written_resolutions = 0u64;
    for path in &changes.conflicts {
        if req.conflict_resolution.contains_key(path) {
            resolved += 1;
            written_resolutions += 1;
            continue;
        }
        match req.strategy {
            MergeStrategy::Theirs => resolved += 1,
            MergeStrategy::Auto | MergeStrategy::Mine => {}
            MergeStrategy::Manual => {
                let message = format!("Conflict: Manual conflict resolution required for: {path}");
                state.snapshot.merges.push(MergeRecord {
                    session_id: id,
                    strategy: req.strategy,
                    conflict_resolution: req.conflict_resolution,
                    outcome: Err(message.clone()),
                });
                return api_error(StatusCode::CONFLICT, "CONFLICT", message);
            }
        }
    }
    let status = if changes.modified == 0 && changes.conflicts.is_empty() {
        MergeStatus::NoChanges
    } else if changes.conflicts.is_empty() {
        MergeStatus::Success
    } else {
        MergeStatus::Partial
    };
    let result = MergeResult {
        merge_id: Uuid::new_v4().to_string(),
        status,
        changes_merged: changes.modified + written_resolutions,
        conflicts_resolved: resolved,
        new_version: u64::from(status != MergeStatus::NoChanges),
    };
    if status != MergeStatus::NoChanges
        && let Some(s) = state
            .snapshot
            .sessions
            .iter_mut()
            .find(|s| s.session.id == id)
    {
        s.session.status = SessionStatus::Completed;
        s.session.updated_at = now();
    }
    state.snapshot.merges.push(MergeRecord {
        session_id: id,
        strategy: req.strategy,
        conflict_resolution: req.conflict_resolution,
        outcome: Ok(result.clone()),
    });
    ok(serde_json::to_value(&result).unwrap_or(Value::Null))
}

// ---- memory (contract 6, auth) ----

#[derive(Deserialize)]
struct SearchRequest {
    query: String,
    episode_type: Option<String>,
    min_importance: Option<f64>,
    limit: Option<usize>,
}

/// `POST /api/v1/memory/search`: a case-sensitive substring test on the content, the type
/// filter, then `LIMIT`, then `min_importance` (so fewer than `limit` can come back); `data`
/// is a bare array. The contract does not say how results are ordered: the fake keeps the
/// order they were seeded in.
async fn search_memory(State(shared): Shd, Json(req): Json<SearchRequest>) -> Response {
    let state = shared.state();
    let min = req.min_importance.unwrap_or(0.0);
    let found: Vec<&Episode> = state
        .episodes
        .iter()
        .filter(|e| e.content.contains(&req.query))
        .filter(|e| {
            req.episode_type
                .as_deref()
                .is_none_or(|t| e.episode_type == t)
        })
        .take(req.limit.unwrap_or(20))
        .filter(|e| e.importance >= min)
        .collect();
    ok(serde_json::to_value(found).unwrap_or(Value::Null))
}
