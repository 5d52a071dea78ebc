//! The Cortex HTTP client against the contract-faithful fake server of `axon-testkit`: every
//! method, every fault mapped to its classification (kind, transient, `Retry-After`), error
//! messages naming the URL and what went wrong, and the API key kept out of every message,
//! every `Debug` output, and every request that does not need it.

#![allow(clippy::unwrap_used)]

use std::error::Error as _;
use std::time::Duration;

use axon_core::model::ErrorType;
use axon_engine::cortex::BridgeError;
use axon_engine::cortex::http::{
    ClientConfig, CortexClient, CortexError, CortexTaskId, HealthStatus, MemoryQuery, MergeRequest,
    MergeStatus, MergeStrategy, NewSession, NewTask, NewWorkspace, Priority, SessionId,
    SessionStatus, TaskFilter, TaskStatus, TaskUpdate, WorkspaceId,
};
use axon_testkit::cortex::{Episode, FakeConfig, FakeCortex, SessionChanges};

const KEY: &str = "ctx-secret-0123456789abcdef";

async fn fake() -> FakeCortex {
    FakeCortex::start(FakeConfig::with_api_key(KEY)).await
}

fn client_for(cortex: &FakeCortex, key: Option<&str>, timeout: Duration) -> CortexClient {
    CortexClient::new(ClientConfig {
        url: cortex.url(),
        api_key: key.map(str::to_owned),
        timeout,
    })
    .unwrap()
}

fn client(cortex: &FakeCortex) -> CortexClient {
    client_for(cortex, Some(KEY), Duration::from_secs(5))
}

/// Everything a person could see of an error: its text, its `Debug`, its source chain, and the
/// bridge error it becomes.
fn all_text(e: &CortexError) -> String {
    let mut text = format!("{e}\n{e:?}\n");
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(&format!("{s}\n{s:?}\n"));
        next = s.source();
    }
    let kind = e.kind();
    text.push_str(&format!("{kind:?}"));
    text
}

fn assert_no_key(e: &CortexError) {
    let text = all_text(e);
    assert!(!text.contains(KEY), "the api key leaked: {text}");
}

async fn new_session(c: &CortexClient, name: &str) -> SessionId {
    let ws = c
        .create_workspace(&NewWorkspace {
            name: "repo".into(),
            source_path: Some("/work/repo".into()),
        })
        .await
        .unwrap();
    c.create_session(&NewSession {
        name: name.into(),
        agent_type: "developer".into(),
        workspace_id: ws.id,
    })
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn health_must_say_healthy() {
    let cortex = fake().await;
    let c = client(&cortex);
    let h = c.check_health().await.unwrap();
    assert_eq!(h.status, HealthStatus::Healthy);
    assert!(h.database.unwrap().connected);

    cortex.faults().set_unhealthy(true);
    assert_eq!(c.health().await.unwrap().status, HealthStatus::Unhealthy);
    let e = c.check_health().await.unwrap_err();
    assert!(matches!(e, CortexError::Unhealthy { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::ServiceUnavailable);
    assert!(e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains(&cortex.url()) && msg.contains("unhealthy"),
        "{msg}"
    );
    assert!(msg.contains("database connected: no"), "{msg}");
}

#[tokio::test]
async fn tasks_round_trip_create_get_update_list_delete() {
    let cortex = fake().await;
    let c = client(&cortex);
    let mut new = NewTask::new("wf", "the workflow");
    new.priority = Some(Priority::High);
    new.estimated_hours = Some(1.5);
    new.tags = vec!["axon".into(), "axon-run:r1".into()];
    let t = c.create_task(&new).await.unwrap();
    assert_eq!(t.status, TaskStatus::Pending);
    assert_eq!(t.priority, Priority::High);
    assert_eq!(t.estimated_hours, Some(1.5));
    assert_eq!(t.tags, ["axon", "axon-run:r1"]);
    let other = c.create_task(&NewTask::new("other", "")).await.unwrap();
    assert_eq!(other.priority, Priority::Medium);

    assert_eq!(c.get_task(&t.id).await.unwrap(), t);
    let upd = c
        .update_task(
            &t.id,
            &TaskUpdate {
                status: Some(TaskStatus::InProgress),
                assigned_to: Some(vec!["agent-1".into()]),
                progress: Some(0.5),
                ..TaskUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(upd.status, TaskStatus::InProgress);
    assert_eq!(upd.assigned_to, ["agent-1"]);
    assert_eq!(upd.title, "wf");
    // The wire says `inprogress`; absent fields are left out of the PUT body.
    let put = cortex
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(
        put.body_json().unwrap(),
        serde_json::json!({"status": "inprogress", "assigned_to": ["agent-1"], "progress": 0.5})
    );

    let by_tag = c
        .list_tasks(&TaskFilter {
            tags: vec!["axon-run:r1".into(), "nope".into()],
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_tag.iter().map(|t| &t.id).collect::<Vec<_>>(), [&t.id]);
    let by_status = c
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Pending),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_status.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&other.id]
    );
    assert_eq!(c.list_tasks(&TaskFilter::default()).await.unwrap().len(), 2);
    let e = c
        .list_tasks(&TaskFilter {
            tags: vec!["a,b".into()],
            ..TaskFilter::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorType::InvalidInput);

    c.delete_task(&t.id).await.unwrap();
    c.delete_task(&t.id).await.unwrap();
    let e = c.get_task(&t.id).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.error_code(), Some("NOT_FOUND"));
    assert_eq!(e.kind(), ErrorType::InvalidInput);
    assert!(!e.is_transient());
    assert!(e.to_string().contains("not found"), "{e}");
}

#[tokio::test]
async fn path_parameters_are_one_percent_encoded_segment() {
    let cortex = fake().await;
    let c = client(&cortex);
    let e = c
        .get_task(&CortexTaskId::from("a/b c?d"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.error_code(), Some("BAD_REQUEST"));
    assert_eq!(e.kind(), ErrorType::InvalidInput);
    let req = cortex.requests().pop().unwrap();
    assert_eq!(req.path, "/api/v1/tasks/a%2Fb%20c%3Fd");
    assert_eq!(req.query, None);
    let e = c
        .delete_session(&SessionId::from("../x"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert_eq!(
        cortex.requests().pop().unwrap().path,
        "/api/v1/sessions/..%2Fx"
    );
}

#[tokio::test]
async fn sessions_create_get_list_merge_delete() {
    let cortex = fake().await;
    cortex.set_session_changes(
        "/changed/",
        SessionChanges {
            modified: 2,
            conflicts: vec![],
        },
    );
    cortex.set_session_changes(
        "/conflict/",
        SessionChanges {
            modified: 1,
            conflicts: vec!["src/lib.rs".into()],
        },
    );
    let c = client(&cortex);
    let ws = c
        .create_workspace(&NewWorkspace {
            name: "repo".into(),
            source_path: None,
        })
        .await
        .unwrap();
    assert_eq!(c.get_workspace(&ws.id).await.unwrap(), ws);
    assert_eq!(
        c.list_workspaces().await.unwrap(),
        std::slice::from_ref(&ws)
    );
    let s = c
        .create_session(&NewSession {
            name: "axon/r1/plain/1".into(),
            agent_type: "developer".into(),
            workspace_id: ws.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(c.get_session(&s.id).await.unwrap(), s);
    assert_eq!(c.list_sessions().await.unwrap(), std::slice::from_ref(&s));
    assert_eq!(
        cortex.state().session(s.id.as_str()).unwrap().workspace_id,
        ws.id.as_str()
    );

    let m = c
        .merge_session(&s.id, &MergeRequest::default())
        .await
        .unwrap();
    assert_eq!(m.status, MergeStatus::NoChanges);
    assert_eq!(m.new_version, 0);
    // `{"strategy":"auto"}`: an empty resolution map is left out, never `null`.
    let sent = cortex.requests().pop().unwrap().body_json().unwrap();
    assert_eq!(sent, serde_json::json!({"strategy": "auto"}));

    let changed = new_session(&c, "axon/r1/changed/1").await;
    let m = c
        .merge_session(&changed, &MergeRequest::new(MergeStrategy::Auto))
        .await
        .unwrap();
    assert_eq!((m.status, m.changes_merged), (MergeStatus::Success, 2));
    assert_eq!(
        c.get_session(&changed).await.unwrap().status,
        SessionStatus::Completed
    );

    let conflicted = new_session(&c, "axon/r1/conflict/1").await;
    let partial = c
        .merge_session(&conflicted, &MergeRequest::default())
        .await
        .unwrap();
    assert_eq!(partial.status, MergeStatus::Partial);
    let e = c
        .merge_session(&conflicted, &MergeRequest::new(MergeStrategy::Manual))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
    assert_eq!(e.error_code(), Some("CONFLICT"));
    assert_eq!(e.kind(), ErrorType::MergeConflict);
    assert!(!e.is_transient());
    assert!(e.to_string().contains("src/lib.rs"), "{e}");
    let mut resolve = MergeRequest::new(MergeStrategy::Manual);
    resolve
        .conflict_resolution
        .insert("src/lib.rs".into(), "keep".into());
    assert_eq!(
        c.merge_session(&conflicted, &resolve)
            .await
            .unwrap()
            .conflicts_resolved,
        1
    );

    for id in [&s.id, &changed, &conflicted] {
        c.delete_session(id).await.unwrap();
    }
    c.delete_session(&s.id).await.unwrap();
    let state = cortex.state();
    assert!(state.sessions.is_empty());
    assert_eq!(state.deleted_sessions.len(), 4);
    let e = c.get_session(&s.id).await.unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(404), ErrorType::InvalidInput));
    let e = c
        .merge_session(&s.id, &MergeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorType::InvalidInput,
        "a 404 on merge is not a conflict"
    );

    let e = c
        .create_session(&NewSession {
            name: "x".into(),
            agent_type: "developer".into(),
            workspace_id: WorkspaceId::from("not-a-uuid"),
        })
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(400), ErrorType::InvalidInput));
    assert!(e.to_string().contains("Invalid workspace ID"), "{e}");
}

#[tokio::test]
async fn memory_search_returns_the_bare_array() {
    let cortex = fake().await;
    cortex.seed_memory([
        Episode::new("ep-1", "Fix retry loop in fetcher", "bugfix"),
        Episode::new("ep-2", "Unrelated", "task"),
        Episode::new("ep-3", "retry again", "feature"),
    ]);
    let c = client(&cortex);
    let found = c
        .search_memory(&MemoryQuery::new("retry", 20))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["ep-1", "ep-3"]
    );
    assert_eq!(found[0].episode_type, "bugfix");
    assert_eq!(found[0].importance, 0.5);
    let one = c
        .search_memory(&MemoryQuery::new("retry", 1))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(
        c.search_memory(&MemoryQuery::new("Retry", 5))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_api_key_is_sent_only_to_protected_routes() {
    let cortex = fake().await;
    let c = client(&cortex);
    c.check_health().await.unwrap();
    let t = c.create_task(&NewTask::new("t", "")).await.unwrap();
    c.update_task(&t.id, &TaskUpdate::default()).await.unwrap();
    c.list_tasks(&TaskFilter::default()).await.unwrap();
    let s = new_session(&c, "n").await;
    c.merge_session(&s, &MergeRequest::default()).await.unwrap();
    c.delete_session(&s).await.unwrap();
    c.search_memory(&MemoryQuery::new("x", 1)).await.unwrap();
    c.delete_task(&t.id).await.unwrap();
    let reqs = cortex.requests();
    assert_eq!(reqs.len(), 10);
    for r in &reqs {
        let protected =
            r.path.starts_with("/api/v1/sessions") || r.path.starts_with("/api/v1/memory");
        let expected = format!("ApiKey {KEY}");
        assert_eq!(
            r.header("authorization"),
            protected.then_some(expected.as_str()),
            "{} {}",
            r.method,
            r.path
        );
        if r.method == "POST" || r.method == "PUT" {
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        let rest: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n != "authorization")
            .collect();
        assert!(!format!("{rest:?} {}", r.body_text()).contains(KEY));
    }
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_a_401_that_is_not_retried_and_not_shown() {
    let cortex = fake().await;
    let wrong = client_for(&cortex, Some("ctx-wrong-key"), Duration::from_secs(5));
    let e = wrong.list_sessions().await.unwrap_err();
    assert_eq!(
        (e.status(), e.error_code()),
        (Some(401), Some("UNAUTHORIZED"))
    );
    assert_eq!(e.kind(), ErrorType::SystemError);
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains("401") && msg.contains("Invalid API key"),
        "{msg}"
    );
    assert!(msg.contains(&cortex.url()), "{msg}");
    assert!(!all_text(&e).contains("ctx-wrong-key"));

    let none = client_for(&cortex, None, Duration::from_secs(5));
    let e = none
        .search_memory(&MemoryQuery::new("x", 1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Authentication required"), "{e}");
    assert_eq!(
        cortex.requests().last().unwrap().header("authorization"),
        None
    );
    // Public routes still work without a key.
    none.check_health().await.unwrap();
}

#[tokio::test]
async fn refused_connections_are_transient_network_errors_naming_the_url() {
    let cortex = fake().await;
    let c = client(&cortex);
    c.check_health().await.unwrap();
    cortex.faults().set_down(true).await;
    let fresh = client(&cortex);
    let e = fresh.check_health().await.unwrap_err();
    assert!(matches!(e, CortexError::Refused { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::Network);
    assert!(e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains("connection refused") && msg.contains(&cortex.url()),
        "{msg}"
    );
    assert_no_key(&e);
    // The pooled client's open connection was closed too: also a transient network error.
    let e = c.create_task(&NewTask::new("t", "")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorType::Network, "{e:?}");
    assert!(e.is_transient());

    cortex.faults().set_down(false).await;
    c.check_health().await.unwrap();
    fresh.create_task(&NewTask::new("t", "")).await.unwrap();
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_tls_error_not_retried() {
    let cortex = fake().await;
    let url = cortex.url().replace("http://", "https://");
    let c = CortexClient::new(ClientConfig::new(&url)).unwrap();
    let e = c.check_health().await.unwrap_err();
    assert!(matches!(e, CortexError::Tls { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::SystemError);
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.contains("tls handshake failed") && msg.contains(&url),
        "{msg}"
    );
}

#[tokio::test]
async fn gateway_statuses_are_transient_and_client_statuses_are_not() {
    let cortex = fake().await;
    let c = client(&cortex);
    let cases = [
        (502, ErrorType::ServiceUnavailable, true),
        (503, ErrorType::ServiceUnavailable, true),
        (504, ErrorType::ServiceUnavailable, true),
        (408, ErrorType::Network, true),
        (500, ErrorType::SystemError, false),
        (400, ErrorType::InvalidInput, false),
        (403, ErrorType::SystemError, false),
        (422, ErrorType::InvalidInput, false),
    ];
    for (status, kind, transient) in cases {
        cortex.faults().fail_next(1, status);
        let e = c.create_task(&NewTask::new("t", "")).await.unwrap_err();
        assert_eq!(e.status(), Some(status));
        assert_eq!(
            (e.kind(), e.is_transient()),
            (kind, transient),
            "{status}: {e}"
        );
        assert_eq!(e.retry_after(), None);
        assert!(e.to_string().contains(&status.to_string()), "{e}");
        assert_no_key(&e);
    }
    assert!(cortex.state().tasks.is_empty());
    // Then the burst is over.
    c.create_task(&NewTask::new("t", "")).await.unwrap();
}

#[tokio::test]
async fn a_429_exposes_retry_after() {
    let cortex = fake().await;
    let c = client(&cortex);
    cortex
        .faults()
        .on("/api/v1/memory")
        .throttle_next(1, Duration::from_secs(3));
    let e = c
        .search_memory(&MemoryQuery::new("x", 1))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(429));
    assert_eq!(e.kind(), ErrorType::ServiceUnavailable);
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert!(e.to_string().contains("retry after 3s"), "{e}");
    c.search_memory(&MemoryQuery::new("x", 1)).await.unwrap();
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_a_transient_timeout() {
    let cortex = fake().await;
    let c = client_for(&cortex, Some(KEY), Duration::from_millis(200));
    cortex.faults().set_delay(Duration::from_secs(2));
    let e = c.list_sessions().await.unwrap_err();
    assert!(matches!(e, CortexError::Timeout { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::Network);
    assert!(e.is_transient());
    assert!(
        e.to_string().contains("timeout") && e.to_string().contains(&cortex.url()),
        "{e}"
    );
    assert_no_key(&e);
    cortex.faults().set_delay(Duration::ZERO);
    c.list_sessions().await.unwrap();
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_a_transient_network_error() {
    let cortex = fake().await;
    let c = client(&cortex);
    cortex.faults().drop_mid_body_next(1);
    let e = c.create_task(&NewTask::new("t", "")).await.unwrap_err();
    assert!(matches!(e, CortexError::ConnectionLost { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::Network);
    assert!(e.is_transient());
    assert_no_key(&e);
    // The server made the change although the client saw a failure.
    assert_eq!(cortex.state().tasks.len(), 1);
    c.list_tasks(&TaskFilter::default()).await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_a_contract_error_not_retried() {
    let cortex = fake().await;
    let c = client(&cortex);
    cortex.faults().malformed_json_next(1);
    let e = c.check_health().await.unwrap_err();
    assert!(matches!(e, CortexError::Contract { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::SystemError);
    assert!(!e.is_transient());
    assert!(e.to_string().contains("not json"), "{e}");
}

#[tokio::test]
async fn an_unknown_status_value_is_an_error_naming_it_not_a_panic() {
    let cortex = fake().await;
    let c = client(&cortex);
    let t = c.create_task(&NewTask::new("t", "")).await.unwrap();
    c.update_task(
        &t.id,
        &TaskUpdate {
            status: Some(TaskStatus::InProgress),
            ..TaskUpdate::default()
        },
    )
    .await
    .unwrap();
    cortex.faults().set_status_typo(true);
    let e = c.get_task(&t.id).await.unwrap_err();
    assert!(matches!(e, CortexError::Contract { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorType::SystemError);
    assert!(!e.is_transient());
    let bridge = BridgeError::from(e);
    assert_eq!(bridge.kind, ErrorType::SystemError);
    assert!(bridge.message.contains("in_progress"), "{}", bridge.message);
    assert!(c.list_tasks(&TaskFilter::default()).await.is_err());
    cortex.faults().set_status_typo(false);
    assert_eq!(
        c.get_task(&t.id).await.unwrap().status,
        TaskStatus::InProgress
    );
}

#[tokio::test]
async fn plain_text_and_empty_error_bodies_are_reported() {
    let cortex = fake().await;
    // A base URL that is not Cortex's: every route is an empty 404.
    let wrong = CortexClient::new(ClientConfig::new(format!("{}/v3", cortex.url()))).unwrap();
    let e = wrong.check_health().await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.error_code(), None);
    assert!(e.to_string().contains("empty body"), "{e}");
    assert!(e.to_string().contains("/v3/api/v1/health"), "{e}");
    // A plain-text status from a proxy.
    cortex.faults().fail_next(1, 503);
    let e = client(&cortex).list_sessions().await.unwrap_err();
    assert!(e.to_string().contains("Service Unavailable"), "{e}");
}

#[tokio::test]
async fn config_is_validated_and_secrets_never_shown() {
    let cortex = fake().await;
    let config = ClientConfig {
        url: cortex.url(),
        api_key: Some(KEY.into()),
        timeout: Duration::from_secs(1),
    };
    let client = CortexClient::new(config.clone()).unwrap();
    for text in [
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{client:#?}"),
    ] {
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
    assert_eq!(client.url(), cortex.url());

    let bad = |url: &str, key: Option<&str>| {
        CortexClient::new(ClientConfig {
            url: url.into(),
            api_key: key.map(str::to_owned),
            timeout: Duration::from_secs(1),
        })
        .unwrap_err()
    };
    let e = bad("http://user:hunter2@127.0.0.1:1", None);
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    assert!(matches!(e, CortexError::Config { .. }));
    assert!(matches!(
        bad("127.0.0.1:8080", None),
        CortexError::Config { .. }
    ));
    assert!(matches!(
        bad("ftp://127.0.0.1", None),
        CortexError::Config { .. }
    ));
    let e = bad("http://127.0.0.1:8080", Some("ctx-secret-with\nnewline"));
    assert!(!format!("{e} {e:?}").contains("ctx-secret"), "{e:?}");
}
