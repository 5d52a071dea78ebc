//! The fake Cortex server against `cortex-api.md`, through plain HTTP calls: every route's
//! shapes, statuses and quirks, the auth rejections, the framework's plain-text errors, and
//! each fault. If the fake drifts from the contract, these fail.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axon_testkit::cortex::{
    Episode, FakeConfig, FakeCortex, MergeStatus, SessionChanges, SessionStatus, TaskStatus,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const KEY: &str = "test-key-123";

struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not json ({e}): {:?}", self.text))
    }
    fn data(&self) -> Value {
        let v = self.json();
        assert_eq!(v["success"], json!(true), "{v}");
        assert_eq!(v["error"], Value::Null, "{v}");
        assert_eq!(v["metadata"]["version"], json!("v1"), "{v}");
        assert!(v["metadata"]["request_id"].is_string(), "{v}");
        assert!(
            v["metadata"]["timestamp"].as_str().unwrap().ends_with('Z'),
            "{v}"
        );
        v.get("data")
            .cloned()
            .expect("success envelopes have a data key")
    }
    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn start() -> FakeCortex {
    FakeCortex::start(FakeConfig::with_api_key(KEY)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A request with a JSON body (if any) and an `Authorization` header (if any).
async fn call(
    cortex: &FakeCortex,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: Option<&str>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, format!("{}{path}", cortex.url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

async fn raw(
    cortex: &FakeCortex,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &str,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client()
        .request(method, format!("{}{path}", cortex.url()))
        .header("authorization", format!("ApiKey {KEY}"))
        .body(body.to_owned());
    if let Some(ctype) = ctype {
        req = req.header("content-type", ctype);
    }
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

fn auth() -> Option<&'static str> {
    Some("ApiKey test-key-123")
}

/// An `ApiError` body: an error object, no `data` key, metadata present.
fn assert_api_error(a: &Answer, status: u16, code: &str, message: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    let v = a.json();
    assert_eq!(v["success"], json!(false));
    assert!(
        v.get("data").is_none(),
        "error bodies have no data key: {v}"
    );
    assert_eq!(v["error"]["code"], json!(code));
    assert_eq!(v["error"]["message"], json!(message));
    assert_eq!(v["error"]["details"], Value::Null);
    assert!(v.get("error").unwrap().get("details").is_some());
    assert_eq!(v["metadata"]["version"], json!("v1"));
}

async fn create_task(cortex: &FakeCortex, body: Value) -> Value {
    let a = call(cortex, "POST", "/api/v1/tasks", Some(body), None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.data()
}

async fn create_session(cortex: &FakeCortex, name: &str) -> String {
    let ws = "a8d0c5b2-5d2e-4d8a-9f0e-3a7b2c1d4e5f";
    let a = call(
        cortex,
        "POST",
        "/api/v1/sessions",
        Some(json!({"name": name, "agent_type": "developer", "workspace_id": ws})),
        auth(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.data()["id"].as_str().unwrap().to_owned()
}

// ---- health ----

#[tokio::test]
async fn health_is_enveloped_on_both_paths_and_stays_200_when_unhealthy() {
    let cortex = start().await;
    for path in ["/health", "/api/v1/health"] {
        let a = call(&cortex, "GET", path, None, None).await;
        assert_eq!(a.status, 200);
        let d = a.data();
        assert_eq!(d["status"], json!("healthy"));
        assert_eq!(d["database"]["connected"], json!(true));
        assert!(d["uptime_seconds"].is_u64());
        assert!(d["version"].is_string());
    }
    cortex.faults().set_unhealthy(true);
    let a = call(&cortex, "GET", "/api/v1/health", None, None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.data()["status"], json!("unhealthy"));
    assert_eq!(a.data()["database"]["connected"], json!(false));
}

// ---- tasks ----

#[tokio::test]
async fn task_create_answers_200_with_server_defaults_and_ignores_unknown_fields() {
    let cortex = start().await;
    let t = create_task(
        &cortex,
        json!({"title": "Write parser tests", "description": "Cover edge cases",
               "workspace_id": "ignored", "status": "done"}),
    )
    .await;
    uuid_like(&t["id"]);
    assert_eq!(t["status"], json!("pending"));
    assert_eq!(t["priority"], json!("medium"));
    assert_eq!(t["progress"], json!(0.0));
    assert_eq!(t["assigned_to"], json!([]));
    assert_eq!(t["dependencies"], json!([]));
    assert_eq!(t["tags"], json!([]));
    for key in [
        "estimated_hours",
        "actual_hours",
        "spec_reference",
        "completion_note",
    ] {
        assert_eq!(t[key], Value::Null, "{key}");
        assert!(t.get(key).is_some(), "{key} is present as null");
    }
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));
    let full = create_task(
        &cortex,
        json!({"title": "t", "description": "d", "priority": "high", "estimated_hours": 1.5,
               "tags": ["tests"], "spec_reference": {"spec_name": "parser", "section": "3.2"}}),
    )
    .await;
    assert_eq!(full["priority"], json!("high"));
    assert_eq!(full["estimated_hours"], json!(1.5));
    assert_eq!(full["spec_reference"]["section"], json!("3.2"));
    assert_eq!(cortex.state().tasks.len(), 2);
}

fn uuid_like(v: &Value) {
    let s = v.as_str().unwrap();
    assert_eq!(s.len(), 36, "{s}");
    assert_eq!(s, s.to_lowercase());
    assert_eq!(s.matches('-').count(), 4);
}

#[tokio::test]
async fn task_get_update_delete_follow_the_contract() {
    let cortex = start().await;
    let id = create_task(&cortex, json!({"title": "a", "description": "b"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/tasks/{id}");

    let got = call(&cortex, "GET", &path, None, None).await.data();
    assert_eq!(got["title"], json!("a"));

    let a = call(
        &cortex,
        "PUT",
        &path,
        Some(
            json!({"status": "inprogress", "assigned_to": ["agent-1"], "progress": 0.4,
                    "completion_note": null}),
        ),
        None,
    )
    .await;
    let upd = a.data();
    assert_eq!(upd["status"], json!("inprogress"));
    assert_eq!(upd["assigned_to"], json!(["agent-1"]));
    assert_eq!(upd["title"], json!("a"), "the whole task comes back");
    assert_eq!(upd["completion_note"], Value::Null);

    let done = call(
        &cortex,
        "PUT",
        &path,
        Some(json!({"status": "done", "actual_hours": 1.2, "completion_note": "merged"})),
        None,
    )
    .await
    .data();
    assert_eq!(done["status"], json!("done"));
    assert_eq!(done["progress"], json!(0.4), "absent means unchanged");

    for bad in ["in_progress", "failed"] {
        let a = call(&cortex, "PUT", &path, Some(json!({"status": bad})), None).await;
        assert_eq!(a.status, 422, "{bad}");
        assert!(
            a.content_type().starts_with("text/plain"),
            "{}",
            a.content_type()
        );
    }

    let a = call(&cortex, "DELETE", &path, None, None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["data"], Value::Null);
    assert!(a.json().get("data").is_some(), "data: null, not absent");
    let again = call(&cortex, "DELETE", &path, None, None).await;
    assert_eq!(again.status, 200, "deletes are idempotent");

    let missing = call(&cortex, "GET", &path, None, None).await;
    assert_api_error(
        &missing,
        404,
        "NOT_FOUND",
        &format!("Not found: Task {id} not found"),
    );
    let a = call(&cortex, "PUT", &path, Some(json!({"title": "x"})), None).await;
    assert_api_error(
        &a,
        404,
        "NOT_FOUND",
        &format!("Not found: Task {id} not found"),
    );

    for method in ["GET", "DELETE"] {
        let a = call(&cortex, method, "/api/v1/tasks/nope", None, None).await;
        assert_api_error(&a, 400, "BAD_REQUEST", "Bad request: Invalid task ID");
    }
    assert_eq!(cortex.state().deleted_tasks, vec![id.clone(), id]);
}

#[tokio::test]
async fn task_list_filters_by_status_priority_assignee_and_any_tag_newest_first() {
    let cortex = start().await;
    let a = create_task(
        &cortex,
        json!({"title": "a", "description": "", "tags": ["axon", "x"]}),
    )
    .await;
    let b = create_task(
        &cortex,
        json!({"title": "b", "description": "", "tags": ["y"], "priority": "low"}),
    )
    .await;
    let c = create_task(
        &cortex,
        json!({"title": "c", "description": "", "tags": [" y"]}),
    )
    .await;
    call(
        &cortex,
        "PUT",
        &format!("/api/v1/tasks/{}", b["id"].as_str().unwrap()),
        Some(json!({"status": "inprogress", "assigned_to": ["agent-dev-1"]})),
        None,
    )
    .await;

    let titles = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = call(&cortex, "GET", "/api/v1/tasks", None, None)
        .await
        .data();
    assert_eq!(titles(all), ["c", "b", "a"]);
    let q = |query: &'static str| call(&cortex, "GET", query, None, None);
    assert_eq!(
        titles(q("/api/v1/tasks?status=inprogress").await.data()),
        ["b"]
    );
    assert_eq!(titles(q("/api/v1/tasks?priority=low").await.data()), ["b"]);
    assert_eq!(
        titles(q("/api/v1/tasks?assigned_to=agent-dev-1").await.data()),
        ["b"]
    );
    assert_eq!(titles(q("/api/v1/tasks?tags=x,y").await.data()), ["b", "a"]);
    // Tags are not trimmed: `x, y` looks for " y".
    assert_eq!(
        titles(q("/api/v1/tasks?tags=x,%20y").await.data()),
        ["c", "a"]
    );
    let _ = (a, c);

    let bad = q("/api/v1/tasks?status=in_progress").await;
    assert_eq!(bad.status, 400);
    assert!(bad.content_type().starts_with("text/plain"));
}

#[tokio::test]
async fn status_typo_fault_writes_in_progress_in_task_objects() {
    let cortex = start().await;
    let id = create_task(&cortex, json!({"title": "a", "description": ""})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/tasks/{id}");
    call(
        &cortex,
        "PUT",
        &path,
        Some(json!({"status": "inprogress"})),
        None,
    )
    .await;
    cortex.faults().set_status_typo(true);
    assert_eq!(
        call(&cortex, "GET", &path, None, None).await.data()["status"],
        json!("in_progress")
    );
    let list = call(&cortex, "GET", "/api/v1/tasks", None, None)
        .await
        .data();
    assert_eq!(list[0]["status"], json!("in_progress"));
    // The server still validates requests as the contract says.
    let a = call(
        &cortex,
        "PUT",
        &path,
        Some(json!({"status": "in_progress"})),
        None,
    )
    .await;
    assert_eq!(a.status, 422);
    cortex.faults().set_status_typo(false);
    assert_eq!(
        call(&cortex, "GET", &path, None, None).await.data()["status"],
        json!("inprogress")
    );
    assert_eq!(cortex.state().tasks[0].status, TaskStatus::InProgress);
}

// ---- framework errors ----

#[tokio::test]
async fn framework_rejections_are_plain_text_415_400_422_and_an_empty_404() {
    let cortex = start().await;
    let cases = [
        (
            "POST",
            "/api/v1/tasks",
            None,
            r#"{"title":"a","description":"b"}"#,
            415,
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("text/plain"),
            r#"{"title":"a","description":"b"}"#,
            415,
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("application/json"),
            r#"{"title":"a","#,
            400,
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("application/json"),
            r#"{"title":"a"}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("application/json"),
            r#"{"title":1,"description":"b"}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/tasks",
            Some("application/json"),
            r#"{"title":"a","description":"b","priority":"urgent"}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/sessions",
            Some("application/json"),
            r#"{"agent_type":"x","workspace_id":"a8d0c5b2-5d2e-4d8a-9f0e-3a7b2c1d4e5f"}"#,
            422,
        ),
        (
            "POST",
            "/api/v1/memory/search",
            Some("application/json"),
            r#"{"limit":5}"#,
            422,
        ),
    ];
    for (method, path, ctype, body, status) in cases {
        let a = raw(&cortex, method, path, ctype, body).await;
        assert_eq!(
            a.status, status,
            "{method} {path} {ctype:?} {body}: {}",
            a.text
        );
        assert!(
            a.content_type().starts_with("text/plain"),
            "{}",
            a.content_type()
        );
        assert!(
            serde_json::from_str::<Value>(&a.text).is_err(),
            "plain text: {}",
            a.text
        );
        assert!(!a.text.is_empty());
    }
    assert!(cortex.state().tasks.is_empty());

    let a = call(&cortex, "GET", "/api/v1/nope", None, None).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.text, "", "unknown path: empty body");
    let a = call(&cortex, "GET", "/v3/health", None, None).await;
    assert_eq!(a.status, 404);
    let a = call(
        &cortex,
        "POST",
        "/api/v1/memory/episodes",
        Some(json!({})),
        auth(),
    )
    .await;
    assert_eq!(a.status, 404, "no route to record an episode");
    let a = call(&cortex, "PATCH", "/api/v1/tasks", Some(json!({})), None).await;
    assert_eq!(a.status, 405);
}

// ---- auth ----

#[tokio::test]
async fn protected_routes_reject_without_a_valid_apikey_or_bearer() {
    let cortex = start().await;
    let cases = [
        (None, "Authentication required"),
        (Some("ApiKey wrong"), "Invalid API key"),
        (Some("Bearer wrong"), "Invalid or expired token"),
        (Some("Basic dGVzdDp0ZXN0"), "Authentication required"),
        (Some(KEY), "Authentication required"),
    ];
    for (method, path) in [
        ("GET", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions"),
        (
            "GET",
            "/api/v1/sessions/3f2b0000-0000-4000-8000-000000000000",
        ),
        (
            "DELETE",
            "/api/v1/sessions/3f2b0000-0000-4000-8000-000000000000",
        ),
        (
            "POST",
            "/api/v1/sessions/3f2b0000-0000-4000-8000-000000000000/merge",
        ),
        ("POST", "/api/v1/memory/search"),
    ] {
        for (header, message) in cases {
            let a = call(&cortex, method, path, Some(json!({})), header).await;
            assert_eq!(a.status, 401, "{method} {path} {header:?}");
            assert_eq!(
                a.headers.get("www-authenticate").unwrap(),
                "Bearer realm=\"Cortex API\""
            );
            let v = a.json();
            assert_eq!(
                v,
                json!({"success": false, "error": {"code": "UNAUTHORIZED", "message": message}}),
                "no metadata, no details"
            );
        }
    }
    let ok = call(&cortex, "GET", "/api/v1/sessions", None, auth()).await;
    assert_eq!(ok.status, 200);
    let bearer = format!("Bearer {KEY}");
    let ok = call(&cortex, "GET", "/api/v1/sessions", None, Some(&bearer)).await;
    assert_eq!(ok.status, 200);
    // Tasks, workspaces and health are public.
    assert_eq!(
        call(&cortex, "GET", "/api/v1/tasks", None, None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&cortex, "GET", "/api/v1/workspaces", None, None)
            .await
            .status,
        200
    );
}

// ---- workspaces and sessions ----

#[tokio::test]
async fn workspaces_are_created_and_found() {
    let cortex = start().await;
    let ws = call(
        &cortex,
        "POST",
        "/api/v1/workspaces",
        Some(json!({"name": "repo", "source_path": "/src/repo"})),
        None,
    )
    .await
    .data();
    for key in [
        "id",
        "name",
        "source_type",
        "namespace",
        "source_path",
        "read_only",
        "created_at",
        "updated_at",
    ] {
        assert!(ws.get(key).is_some(), "{key}: {ws}");
    }
    let id = ws["id"].as_str().unwrap();
    let got = call(
        &cortex,
        "GET",
        &format!("/api/v1/workspaces/{id}"),
        None,
        None,
    )
    .await
    .data();
    assert_eq!(got, ws);
    let list = call(&cortex, "GET", "/api/v1/workspaces", None, None)
        .await
        .data();
    assert_eq!(list, json!([ws]));
    let a = call(
        &cortex,
        "GET",
        "/api/v1/workspaces/3f2b0000-0000-4000-8000-000000000000",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn sessions_need_a_workspace_id_never_return_it_and_delete_idempotently() {
    let cortex = start().await;
    let a = call(
        &cortex,
        "POST",
        "/api/v1/sessions",
        Some(json!({"name": "n", "agent_type": "developer"})),
        auth(),
    )
    .await;
    assert_api_error(
        &a,
        400,
        "BAD_REQUEST",
        "Bad request: workspace_id is required",
    );
    let a = call(
        &cortex,
        "POST",
        "/api/v1/sessions",
        Some(json!({"name": "n", "agent_type": "developer", "workspace_id": "nope"})),
        auth(),
    )
    .await;
    assert_api_error(&a, 400, "BAD_REQUEST", "Bad request: Invalid workspace ID");

    let first = create_session(&cortex, "first").await;
    let second = create_session(&cortex, "second").await;
    let got = call(
        &cortex,
        "GET",
        &format!("/api/v1/sessions/{first}"),
        None,
        auth(),
    )
    .await
    .data();
    let mut keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent_type",
            "created_at",
            "id",
            "name",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(got["status"], json!("active"));
    let list = call(&cortex, "GET", "/api/v1/sessions", None, auth())
        .await
        .data();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    assert_eq!(
        cortex.state().session(&first).unwrap().workspace_id,
        "a8d0c5b2-5d2e-4d8a-9f0e-3a7b2c1d4e5f"
    );

    let path = format!("/api/v1/sessions/{first}");
    let a = call(&cortex, "DELETE", &path, None, auth()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["data"], Value::Null);
    assert_eq!(
        call(&cortex, "DELETE", &path, None, auth()).await.status,
        200
    );
    let a = call(&cortex, "GET", &path, None, auth()).await;
    assert_api_error(
        &a,
        404,
        "NOT_FOUND",
        &format!("Not found: Session {first} not found"),
    );
    let a = call(&cortex, "GET", "/api/v1/sessions/xyz", None, auth()).await;
    assert_api_error(&a, 400, "BAD_REQUEST", "Bad request: Invalid session ID");
    let state = cortex.state();
    assert_eq!(state.deleted_sessions, vec![first.clone(), first]);
    assert_eq!(state.sessions.len(), 1);
}

#[tokio::test]
async fn merge_follows_strategies_with_409_for_manual_and_no_conflict_list() {
    let cortex = start().await;
    cortex.set_session_changes(
        "clean",
        SessionChanges {
            modified: 2,
            conflicts: vec![],
        },
    );
    cortex.set_session_changes(
        "conflicted",
        SessionChanges {
            modified: 1,
            conflicts: vec!["src/lib.rs".into()],
        },
    );
    let merge = |id: String, body: Value| {
        let cortex = &cortex;
        async move {
            call(
                cortex,
                "POST",
                &format!("/api/v1/sessions/{id}/merge"),
                Some(body),
                auth(),
            )
            .await
        }
    };

    let plain = create_session(&cortex, "plain").await;
    let d = merge(plain.clone(), json!({})).await.data();
    let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "changes_merged",
            "conflicts_resolved",
            "merge_id",
            "new_version",
            "status"
        ]
    );
    assert_eq!(d["status"], json!("no_changes"));
    assert_eq!(d["new_version"], json!(0));
    assert_eq!(
        cortex.state().session(&plain).unwrap().session.status,
        SessionStatus::Active
    );

    let clean = create_session(&cortex, "axon/run/clean/1").await;
    let d = merge(clean.clone(), json!({"strategy": "auto"}))
        .await
        .data();
    assert_eq!(
        (
            d["status"].clone(),
            d["changes_merged"].clone(),
            d["new_version"].clone()
        ),
        (json!("success"), json!(2), json!(1))
    );
    assert_eq!(
        cortex.state().session(&clean).unwrap().session.status,
        SessionStatus::Completed
    );

    let c = create_session(&cortex, "conflicted").await;
    let auto = merge(c.clone(), json!({"strategy": "auto"})).await.data();
    assert_eq!(
        (auto["status"].clone(), auto["conflicts_resolved"].clone()),
        (json!("partial"), json!(0))
    );
    let mine = merge(c.clone(), json!({"strategy": "mine"})).await.data();
    assert_eq!(mine["status"], json!("partial"));
    let theirs = merge(c.clone(), json!({"strategy": "theirs"})).await.data();
    assert_eq!(theirs["conflicts_resolved"], json!(1));
    let manual = merge(c.clone(), json!({"strategy": "manual"})).await;
    assert_api_error(
        &manual,
        409,
        "CONFLICT",
        "Conflict: Manual conflict resolution required for: src/lib.rs",
    );
    let resolved = merge(
        c.clone(),
        json!({"strategy": "manual", "conflict_resolution": {"src/lib.rs": "keep mine"}}),
    )
    .await
    .data();
    assert_eq!(resolved["conflicts_resolved"], json!(1));

    let a = merge(c.clone(), json!({"conflict_resolution": null})).await;
    assert_eq!(a.status, 422, "null map is rejected: {}", a.text);
    let a = merge(c.clone(), json!({"strategy": "ours"})).await;
    assert_eq!(a.status, 422);
    let a = raw(
        &cortex,
        "POST",
        &format!("/api/v1/sessions/{c}/merge"),
        None,
        "",
    )
    .await;
    assert_eq!(a.status, 415, "a JSON body is required");
    let a = merge("3f2b0000-0000-4000-8000-000000000000".into(), json!({})).await;
    assert_eq!(a.status, 404);

    let merges = cortex.state().merges;
    assert_eq!(merges.len(), 7);
    assert!(merges[5].outcome.is_err());
    assert_eq!(
        merges[1].outcome.as_ref().unwrap().status,
        MergeStatus::Success
    );
}

// ---- memory ----

#[tokio::test]
async fn memory_search_is_a_bare_array_of_case_sensitive_substring_matches() {
    let cortex = start().await;
    let mut important = Episode::new("ep-3", "retry once more", "task");
    important.importance = 0.9;
    cortex.seed_memory([
        Episode::new("ep-1", "Fix retry loop in fetcher", "bugfix"),
        Episode::new("ep-2", "Add Retry header", "feature"),
        important,
    ]);
    let search = |body: Value| call(&cortex, "POST", "/api/v1/memory/search", Some(body), auth());
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let d = search(json!({"query": "retry"})).await.data();
    assert_eq!(ids(d.clone()), ["ep-1", "ep-3"]);
    let mut keys: Vec<&str> = d[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["content", "created_at", "episode_type", "id", "importance"]
    );
    assert_eq!(d[0]["importance"], json!(0.5));
    assert_eq!(
        ids(search(json!({"query": "retry", "episode_type": "bugfix"}))
            .await
            .data()),
        ["ep-1"]
    );
    assert_eq!(
        ids(search(json!({"query": "etry", "limit": 2})).await.data()),
        ["ep-1", "ep-2"]
    );
    // min_importance applies after the limit: fewer than `limit` come back.
    assert_eq!(
        ids(
            search(json!({"query": "etry", "limit": 2, "min_importance": 0.6}))
                .await
                .data()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(search(json!({"query": "etry", "min_importance": 0.6}))
            .await
            .data()),
        ["ep-3"]
    );
}

// ---- faults ----

#[tokio::test]
async fn fail_next_answers_plain_status_without_running_the_handler_then_recovers() {
    let cortex = start().await;
    cortex.faults().fail_next(2, 503);
    for _ in 0..2 {
        let a = call(
            &cortex,
            "POST",
            "/api/v1/tasks",
            Some(json!({"title": "a", "description": ""})),
            None,
        )
        .await;
        assert_eq!(a.status, 503);
        assert_eq!(a.text, "Service Unavailable");
    }
    assert!(cortex.state().tasks.is_empty(), "the handler did not run");
    assert_eq!(cortex.faults().pending(), 0);
    create_task(&cortex, json!({"title": "a", "description": ""})).await;
    cortex.faults().fail_next(1, 408);
    let a = call(&cortex, "GET", "/api/v1/health", None, None).await;
    assert_eq!((a.status, a.text.as_str()), (408, ""));
    assert_eq!(
        cortex.state().requests.len(),
        4,
        "faulted requests are recorded too"
    );
}

#[tokio::test]
async fn scoped_faults_only_hit_their_prefix_and_queue_in_order() {
    let cortex = start().await;
    cortex
        .faults()
        .on("/api/v1/sessions")
        .fail_next(1, 502)
        .throttle_next(1, Duration::from_millis(2500));
    assert_eq!(
        call(&cortex, "GET", "/api/v1/tasks", None, None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&cortex, "GET", "/api/v1/sessions", None, auth())
            .await
            .status,
        502
    );
    let a = call(&cortex, "GET", "/api/v1/sessions", None, auth()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers.get("retry-after").unwrap(), "3");
    assert_eq!(
        call(&cortex, "GET", "/api/v1/sessions", None, auth())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn delay_makes_answers_slower_than_a_client_timeout() {
    let cortex = start().await;
    cortex
        .faults()
        .on("/api/v1/tasks")
        .set_delay(Duration::from_millis(400));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = quick
        .get(format!("{}/api/v1/tasks", cortex.url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // Other paths are not delayed.
    let ok = quick
        .get(format!("{}/api/v1/health", cortex.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    cortex
        .faults()
        .on("/api/v1/tasks")
        .set_delay(Duration::ZERO);
    let ok = quick
        .get(format!("{}/api/v1/tasks", cortex.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn drop_mid_body_sends_headers_then_cuts_the_body_after_the_handler_ran() {
    let cortex = start().await;
    cortex.faults().drop_mid_body_next(1);
    let resp = client()
        .post(format!("{}/api/v1/tasks", cortex.url()))
        .json(&json!({"title": "a", "description": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the headers arrive");
    let err = resp.bytes().await.unwrap_err();
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    assert_eq!(cortex.state().tasks.len(), 1, "the change was made");
    create_task(&cortex, json!({"title": "b", "description": ""})).await;
}

#[tokio::test]
async fn malformed_json_is_a_200_whose_body_does_not_parse() {
    let cortex = start().await;
    cortex.faults().malformed_json_next(1);
    let a = call(
        &cortex,
        "POST",
        "/api/v1/tasks",
        Some(json!({"title": "a", "description": ""})),
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(
        serde_json::from_str::<Value>(&a.text).is_err(),
        "{}",
        a.text
    );
    assert_eq!(cortex.state().tasks.len(), 1);
}

#[tokio::test]
async fn down_refuses_connections_and_up_serves_the_same_port_again() {
    let cortex = start().await;
    let id = create_task(&cortex, json!({"title": "kept", "description": ""})).await["id"].clone();
    let pooled = client();
    assert_eq!(
        pooled
            .get(format!("{}/api/v1/health", cortex.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    cortex.faults().set_down(true).await;
    let err = client()
        .get(format!("{}/api/v1/health", cortex.url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // A pooled connection was closed too: its next request fails as well.
    assert!(
        pooled
            .get(format!("{}/api/v1/health", cortex.url()))
            .send()
            .await
            .is_err()
    );
    cortex.faults().set_down(false).await;
    let list = call(&cortex, "GET", "/api/v1/tasks", None, None)
        .await
        .data();
    assert_eq!(list[0]["id"], id, "state survives an outage");
    assert_eq!(
        pooled
            .get(format!("{}/api/v1/health", cortex.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn every_request_is_recorded_with_its_headers_and_body() {
    let cortex = start().await;
    call(
        &cortex,
        "POST",
        "/api/v1/tasks?x=1",
        Some(json!({"title": "a", "description": ""})),
        None,
    )
    .await;
    call(&cortex, "GET", "/api/v1/sessions", None, auth()).await;
    let reqs = cortex.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (
            reqs[0].method.as_str(),
            reqs[0].path.as_str(),
            reqs[0].query.as_deref()
        ),
        ("POST", "/api/v1/tasks", Some("x=1"))
    );
    assert_eq!(reqs[0].body_json().unwrap()["title"], json!("a"));
    assert_eq!(reqs[0].header("Content-Type"), Some("application/json"));
    assert_eq!(reqs[0].header("authorization"), None);
    assert_eq!(reqs[1].header("authorization"), Some("ApiKey test-key-123"));
    cortex.clear_requests();
    assert!(cortex.requests().is_empty());
    assert!(!format!("{:?} {:?}", FakeConfig::with_api_key(KEY), cortex).contains(KEY));
}
