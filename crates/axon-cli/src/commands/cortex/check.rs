//! `axon cortex check`: probes a Cortex server, endpoint by endpoint, against the contract Axon
//! relies on (`cortex-api.md`), so a user sees at a glance whether their Cortex works with Axon.
//!
//! Five checks, in order: health, auth, tasks, sessions, memory. Each ends `ok`, `fail` (what
//! was wrong, in one line) or `skip` (why it was not tried: the server is unreachable, no API
//! key, a role left out of `--cortex-roles`). Text output is printed check by check as it
//! completes; `--json` prints one object at the end.
//!
//! What the checks create (a scratch task, a scratch session) is deleted whatever happens: a
//! failed step, a failed create whose answer was lost (found again by its unique name), Ctrl-C.
//! The contract has no route to delete a workspace, so the scratch workspace is found again by
//! name and reused.
//!
//! The API key never reaches the output: the client keeps it out of its errors, and every line
//! is scrubbed of it anyway before it is written, in case a server echoes it back.

use std::cell::RefCell;

use axon_engine::cortex::http::{
    CortexClient, CortexError, CortexTaskId, MemoryQuery, MergeRequest, MergeStatus, MergeStrategy,
    NewSession, NewTask, NewWorkspace, Session, SessionId, SessionStatus, Task, TaskFilter,
    TaskStatus, TaskUpdate, Workspace, WorkspaceId,
};
use serde::Serialize;
use uuid::Uuid;

use crate::Status;
use crate::cli::CortexCheckArgs;
use crate::commands::run::runtime;
use crate::output::{one_line, plural, print_stdout};

/// The tag of scratch tasks.
const SCRATCH_TAG: &str = "axon-check";
/// The name of the scratch workspace (reused: workspaces cannot be deleted).
const SCRATCH_WORKSPACE: &str = "axon-cortex-check";
/// A well-formed session id no server holds: the auth probe expects 404 for it.
const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";
/// The progress the scratch task is updated to.
const PROGRESS: f64 = 0.5;

/// `axon cortex check`.
pub fn check(args: &CortexCheckArgs) -> anyhow::Result<Status> {
    let cortex = &args.cortex;
    let Some(config) = crate::cortex::client_config(cortex) else {
        eprintln!(
            "axon: error: `axon cortex check` needs a server to probe: pass --cortex-url URL or set AXON_CORTEX_URL"
        );
        return Ok(Status::Usage);
    };
    let key = config.api_key.clone();
    let scrub = Scrub(key.as_deref());
    let client = match CortexClient::new(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("axon: error: {}", scrub.line(&e.to_string()));
            return Ok(Status::Usage);
        }
    };
    let roles = crate::cortex::roles(cortex);
    let plan = Plan {
        tracking: roles.tracking,
        sessions: roles.sessions,
        memory: roles.memory,
        has_key: key.is_some(),
        workspace: non_empty(cortex.cortex_workspace.as_deref()).map(WorkspaceId::from),
        run: Uuid::now_v7(),
    };
    let report = Report {
        json: args.json,
        scrub,
        checks: RefCell::new(Vec::new()),
    };
    let scratch = RefCell::new(Scratch::default());
    let rt = runtime()?;
    let finished = rt.block_on(async {
        let probe = probe(&client, &plan, &report, &scratch);
        tokio::select! {
            biased;
            () = interrupted() => false,
            () = probe => true,
        }
    });
    if !finished {
        let notes = rt.block_on(async {
            tokio::select! {
                biased;
                () = interrupted() => vec!["interrupted again: cleanup stopped".to_owned()],
                notes = clean_up(&client, &plan, &scratch) => notes,
            }
        });
        let mut text = "axon: cancelled".to_owned();
        for note in notes {
            text.push_str("; ");
            text.push_str(&note);
        }
        eprintln!("{}", report.scrub.line(&text));
        return Ok(Status::Cancelled);
    }
    report.finish(client.url())
}

/// `s` trimmed, unless that leaves nothing.
fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// What to check.
struct Plan {
    /// `tracking` is in `--cortex-roles`: check tasks.
    tracking: bool,
    /// `sessions` is in `--cortex-roles`: check sessions (and the key).
    sessions: bool,
    /// `memory` is in `--cortex-roles`: check memory search (and the key).
    memory: bool,
    /// Whether an API key was given.
    has_key: bool,
    /// `--cortex-workspace`, else a scratch workspace is used.
    workspace: Option<WorkspaceId>,
    /// Makes this check's scratch names unique (`axon cortex check <run>`, `axon/check/<run>`).
    run: Uuid,
}

impl Plan {
    fn task_title(&self) -> String {
        format!("axon cortex check {}", self.run)
    }

    fn session_name(&self) -> String {
        format!("axon/check/{}", self.run)
    }
}

// ---- the report ----

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Fail,
    Skip,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One check's line.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Verdict,
    detail: String,
}

/// Removes the API key from whatever is about to be shown, and keeps it on one line.
struct Scrub<'a>(Option<&'a str>);

impl Scrub<'_> {
    fn line(&self, text: &str) -> String {
        let text = one_line(text);
        match self.0 {
            Some(key) => text.replace(key, "<redacted>"),
            None => text.into_owned(),
        }
    }
}

/// The checks done so far; prints each as it is added (text mode).
struct Report<'a> {
    json: bool,
    scrub: Scrub<'a>,
    checks: RefCell<Vec<Check>>,
}

impl Report<'_> {
    fn add(&self, name: &'static str, status: Verdict, detail: impl AsRef<str>) {
        let detail = self.scrub.line(detail.as_ref());
        if !self.json {
            // A closed stdout surfaces on the summary line, which is written the same way.
            let _ = print_stdout(&format!("{:<6}{name:<10}{detail}\n", status.label()));
        }
        self.checks.borrow_mut().push(Check {
            name,
            status,
            detail,
        });
    }

    fn ok(&self, name: &'static str, detail: impl AsRef<str>) {
        self.add(name, Verdict::Ok, detail);
    }

    fn fail(&self, name: &'static str, detail: impl AsRef<str>) {
        self.add(name, Verdict::Fail, detail);
    }

    fn skip(&self, name: &'static str, detail: impl AsRef<str>) {
        self.add(name, Verdict::Skip, detail);
    }

    /// Prints the summary (or the JSON object) and gives the exit status.
    fn finish(self, url: &str) -> anyhow::Result<Status> {
        #[derive(Serialize)]
        struct Json<'c> {
            url: String,
            ok: bool,
            checks: &'c [Check],
        }
        let checks = self.checks.into_inner();
        let url = self.scrub.line(url);
        let failed = checks.iter().filter(|c| c.status == Verdict::Fail).count();
        let skipped = checks.iter().filter(|c| c.status == Verdict::Skip).count();
        if self.json {
            let mut text = serde_json::to_string_pretty(&Json {
                url,
                ok: failed == 0,
                checks: &checks,
            })?;
            text.push('\n');
            print_stdout(&text)?;
        } else {
            let total = checks.len();
            let mut text = if failed == 0 {
                format!(
                    "cortex at {url}: {} passed",
                    plural(total - skipped, "check")
                )
            } else {
                format!(
                    "cortex at {url}: {failed} of {} failed",
                    plural(total, "check")
                )
            };
            if skipped > 0 {
                text.push_str(&format!(", {skipped} skipped"));
            }
            text.push('\n');
            print_stdout(&text)?;
        }
        Ok(if failed == 0 {
            Status::Success
        } else {
            Status::Invalid
        })
    }
}

// ---- what is left to delete ----

/// Where a scratch record is in its life.
#[derive(Debug, Default)]
enum Stage<Id> {
    /// Not created (or deleted).
    #[default]
    None,
    /// Its create call is in flight: the server may hold it without Axon knowing its id.
    Creating,
    /// Created, not deleted yet.
    Created(Id),
}

/// What the checks created and have not deleted yet, for the cleanup after Ctrl-C.
#[derive(Debug, Default)]
struct Scratch {
    task: Stage<CortexTaskId>,
    session: Stage<SessionId>,
}

/// After an interrupt: deletes what the interrupted check left, and says what happened.
async fn clean_up(c: &CortexClient, plan: &Plan, scratch: &RefCell<Scratch>) -> Vec<String> {
    let (task, session) = {
        let mut s = scratch.borrow_mut();
        (std::mem::take(&mut s.task), std::mem::take(&mut s.session))
    };
    let mut notes = Vec::new();
    match task {
        Stage::None => {}
        Stage::Creating => notes.push(sweep_task(c, &plan.task_title()).await),
        Stage::Created(id) => notes.push(match c.delete_task(&id).await {
            Ok(()) => "scratch task deleted".to_owned(),
            Err(e) => format!("scratch task {id} is left ({})", describe(&e)),
        }),
    }
    match session {
        Stage::None => {}
        Stage::Creating => notes.push(sweep_session(c, &plan.session_name()).await),
        Stage::Created(id) => notes.push(match c.delete_session(&id).await {
            Ok(()) => "scratch session deleted".to_owned(),
            Err(e) => format!("scratch session {id} is left ({})", describe(&e)),
        }),
    }
    notes.retain(|n| !n.is_empty());
    notes
}

/// After a create whose answer did not come back: deletes the task titled `title` if the
/// server made it anyway. Says what it did (empty when there was nothing to delete).
async fn sweep_task(c: &CortexClient, title: &str) -> String {
    let filter = TaskFilter {
        tags: vec![SCRATCH_TAG.to_owned()],
        ..TaskFilter::default()
    };
    let found = match c.list_tasks(&filter).await {
        Ok(tasks) => tasks.into_iter().filter(|t| t.title == title),
        Err(e) => {
            return format!(
                "a scratch task titled `{title}` may be left ({})",
                describe(&e)
            );
        }
    };
    let mut notes = Vec::new();
    for task in found {
        notes.push(match c.delete_task(&task.id).await {
            Ok(()) => format!("scratch task {} deleted", task.id),
            Err(e) => format!("scratch task {} is left ({})", task.id, describe(&e)),
        });
    }
    notes.join("; ")
}

/// As [`sweep_task`], for the session named `name`.
async fn sweep_session(c: &CortexClient, name: &str) -> String {
    let found = match c.list_sessions().await {
        Ok(sessions) => sessions.into_iter().filter(|s| s.name == name),
        Err(e) => {
            return format!(
                "a scratch session named `{name}` may be left ({})",
                describe(&e)
            );
        }
    };
    let mut notes = Vec::new();
    for session in found {
        notes.push(match c.delete_session(&session.id).await {
            Ok(()) => format!("scratch session {} deleted", session.id),
            Err(e) => format!("scratch session {} is left ({})", session.id, describe(&e)),
        });
    }
    notes.join("; ")
}

/// Resolves on the first Ctrl-C or SIGTERM (never, if neither can be listened for).
async fn interrupted() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match terminate.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
        () = term => {}
    }
}

// ---- the checks ----

/// Runs every check, in order, adding each to `report`.
async fn probe(c: &CortexClient, plan: &Plan, report: &Report<'_>, scratch: &RefCell<Scratch>) {
    let unreachable = match c.check_health().await {
        Ok(h) => {
            let version = if h.version.is_empty() {
                "unknown"
            } else {
                h.version.as_str()
            };
            report.ok(
                "health",
                format!(
                    "healthy (version {version}, up {})",
                    uptime(h.uptime_seconds)
                ),
            );
            false
        }
        Err(e) => {
            report.fail("health", describe(&e));
            is_unreachable(&e)
        }
    };
    if unreachable {
        for name in ["auth", "tasks", "sessions", "memory"] {
            report.skip(name, "not tried: the server is unreachable (see health)");
        }
        return;
    }

    let needs_key = plan.sessions || plan.memory;
    if !needs_key {
        report.skip(
            "auth",
            "not needed: --cortex-roles has neither sessions nor memory",
        );
    } else if !plan.has_key {
        report.fail(
            "auth",
            "no API key given (--cortex-api-key or AXON_CORTEX_API_KEY): the sessions and memory routes need one",
        );
    } else {
        match check_auth(c).await {
            Ok(detail) => report.ok("auth", detail),
            Err(detail) => report.fail("auth", detail),
        }
    }

    if plan.tracking {
        match check_tasks(c, plan, scratch).await {
            Ok(detail) => report.ok("tasks", detail),
            Err(detail) => report.fail("tasks", detail),
        }
    } else {
        report.skip("tasks", "not checked: tracking is not in --cortex-roles");
    }

    if !plan.sessions {
        report.skip("sessions", "not checked: sessions is not in --cortex-roles");
    } else if !plan.has_key {
        report.skip("sessions", "not tried: no API key (see auth)");
    } else {
        match check_sessions(c, plan, scratch).await {
            Ok(detail) => report.ok("sessions", detail),
            Err(detail) => report.fail("sessions", detail),
        }
    }

    if !plan.memory {
        report.skip("memory", "not checked: memory is not in --cortex-roles");
    } else if !plan.has_key {
        report.skip("memory", "not tried: no API key (see auth)");
    } else {
        match check_memory(c).await {
            Ok(detail) => report.ok("memory", detail),
            Err(detail) => report.fail("memory", detail),
        }
    }
}

/// The key is accepted: an unknown session is a 404 `NOT_FOUND` from the handler, not the
/// auth middleware's 401.
async fn check_auth(c: &CortexClient) -> Result<String, String> {
    match c.get_session(&SessionId::from(NIL_ID)).await {
        Err(e) if e.status() == Some(404) && e.error_code() == Some("NOT_FOUND") => {
            Ok("the API key is accepted (an unknown session is 404 NOT_FOUND, not 401)".to_owned())
        }
        Err(e) if e.status() == Some(401) => {
            Err(format!("the API key is missing or wrong: {}", describe(&e)))
        }
        Err(e) if e.status() == Some(403) => Err(format!(
            "the API key is not allowed on the protected routes: {}",
            describe(&e)
        )),
        Err(e) => Err(format!(
            "expected 404 NOT_FOUND for an unknown session: {}",
            describe(&e)
        )),
        Ok(_) => Err(format!(
            "expected 404 NOT_FOUND for the unknown session {NIL_ID}, got a session"
        )),
    }
}

/// Create, get, update, list by tag, delete, get-after-delete of a scratch task; the task is
/// deleted whatever fails.
async fn check_tasks(
    c: &CortexClient,
    plan: &Plan,
    scratch: &RefCell<Scratch>,
) -> Result<String, String> {
    let title = plan.task_title();
    let mut new = NewTask::new(
        title.clone(),
        "scratch task of `axon cortex check`; safe to delete",
    );
    new.tags = vec![SCRATCH_TAG.to_owned()];
    scratch.borrow_mut().task = Stage::Creating;
    let task = match c.create_task(&new).await {
        Ok(t) => t,
        Err(e) => {
            // A refusal (4xx/5xx) made nothing; a lost or garbled answer may have.
            let swept = if matches!(e, CortexError::Status { .. }) {
                String::new()
            } else {
                sweep_task(c, &title).await
            };
            scratch.borrow_mut().task = Stage::None;
            return Err(with_note(format!("create: {}", describe(&e)), &swept));
        }
    };
    scratch.borrow_mut().task = Stage::Created(task.id.clone());
    let steps = task_steps(c, &task, &title, scratch).await;
    // Still there: a step before the delete failed, or the delete did.
    let left = match std::mem::take(&mut scratch.borrow_mut().task) {
        Stage::Created(id) => Some(id),
        Stage::None | Stage::Creating => None,
    };
    let note = match left {
        None => String::new(),
        Some(id) => match c.delete_task(&id).await {
            Ok(()) => "scratch task deleted".to_owned(),
            Err(e) => format!("scratch task {id} is left ({})", describe(&e)),
        },
    };
    steps.map_err(|failure| with_note(failure, &note))
}

/// The steps after a task was created; marks it deleted in `scratch` once it is.
async fn task_steps(
    c: &CortexClient,
    created: &Task,
    title: &str,
    scratch: &RefCell<Scratch>,
) -> Result<String, String> {
    let id = &created.id;
    if created.title != title {
        return Err(format!(
            "create: the answer's title is `{}`, not the one sent",
            created.title
        ));
    }
    if created.status != TaskStatus::Pending {
        return Err(format!(
            "create: a new task must be `pending`, the answer says `{}`",
            created.status.as_str()
        ));
    }
    let got = c
        .get_task(id)
        .await
        .map_err(|e| format!("get: {}", describe(&e)))?;
    if got.id != *id || got.title != title {
        return Err(format!("get: answered task {} `{}`", got.id, got.title));
    }
    let update = TaskUpdate {
        status: Some(TaskStatus::InProgress),
        progress: Some(PROGRESS),
        ..TaskUpdate::default()
    };
    let updated = c
        .update_task(id, &update)
        .await
        .map_err(|e| format!("update to `inprogress`: {}", describe(&e)))?;
    if updated.status != TaskStatus::InProgress {
        return Err(format!(
            "update to `inprogress`: the answer says `{}`",
            updated.status.as_str()
        ));
    }
    if (updated.progress - PROGRESS).abs() > 1e-9 {
        return Err(format!(
            "update to `inprogress`: progress {PROGRESS} was sent, the answer says {}",
            updated.progress
        ));
    }
    let filter = TaskFilter {
        tags: vec![SCRATCH_TAG.to_owned()],
        ..TaskFilter::default()
    };
    let listed = c
        .list_tasks(&filter)
        .await
        .map_err(|e| format!("list by tag `{SCRATCH_TAG}`: {}", describe(&e)))?;
    if !listed.iter().any(|t| t.id == *id) {
        return Err(format!(
            "list by tag `{SCRATCH_TAG}`: the scratch task is not in the answer ({})",
            plural(listed.len(), "task")
        ));
    }
    c.delete_task(id)
        .await
        .map_err(|e| format!("delete: {}", describe(&e)))?;
    scratch.borrow_mut().task = Stage::None;
    match c.get_task(id).await {
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(format!("get after delete: expected 404: {}", describe(&e))),
        Ok(_) => return Err("get after delete: the task is still there".to_owned()),
    }
    Ok("create, get, update to `inprogress`, list by tag, delete, 404 after delete".to_owned())
}

/// Create, get, merge, delete, get-after-delete of a scratch session on `--cortex-workspace`
/// or the scratch workspace; the session is deleted whatever fails.
async fn check_sessions(
    c: &CortexClient,
    plan: &Plan,
    scratch: &RefCell<Scratch>,
) -> Result<String, String> {
    let (workspace, where_) = match &plan.workspace {
        Some(id) => {
            let ws = c
                .get_workspace(id)
                .await
                .map_err(|e| format!("--cortex-workspace {id}: {}", describe(&e)))?;
            let text = format!("on workspace {} `{}`", ws.id, ws.name);
            (ws.id, text)
        }
        None => {
            let (ws, reused) = scratch_workspace(c)
                .await
                .map_err(|e| format!("create the scratch workspace: {}", describe(&e)))?;
            let how = if reused { "reused" } else { "created" };
            let text = format!(
                "on scratch workspace `{SCRATCH_WORKSPACE}` {} ({how}; no route deletes a workspace)",
                ws.id
            );
            (ws.id, text)
        }
    };
    let name = plan.session_name();
    let new = NewSession {
        name: name.clone(),
        agent_type: "custom".to_owned(),
        workspace_id: workspace,
    };
    scratch.borrow_mut().session = Stage::Creating;
    let session = match c.create_session(&new).await {
        Ok(s) => s,
        Err(e) => {
            let swept = if matches!(e, CortexError::Status { .. }) {
                String::new()
            } else {
                sweep_session(c, &name).await
            };
            scratch.borrow_mut().session = Stage::None;
            return Err(with_note(format!("create: {}", describe(&e)), &swept));
        }
    };
    scratch.borrow_mut().session = Stage::Created(session.id.clone());
    let steps = session_steps(c, &session, &name, scratch).await;
    let left = match std::mem::take(&mut scratch.borrow_mut().session) {
        Stage::Created(id) => Some(id),
        Stage::None | Stage::Creating => None,
    };
    let note = match left {
        None => String::new(),
        Some(id) => match c.delete_session(&id).await {
            Ok(()) => "scratch session deleted".to_owned(),
            Err(e) => format!("scratch session {id} is left ({})", describe(&e)),
        },
    };
    match steps {
        Ok(done) => Ok(format!("{done}; {where_}")),
        Err(failure) => Err(with_note(failure, &note)),
    }
}

/// The scratch workspace: found again by name when the server lists workspaces, else
/// created. `true` when it was found.
async fn scratch_workspace(c: &CortexClient) -> Result<(Workspace, bool), CortexError> {
    // The contract lists `GET /api/v1/workspaces` without describing its answer: a server that
    // answers otherwise just gets a new scratch workspace.
    if let Ok(all) = c.list_workspaces().await
        && let Some(ws) = all.into_iter().find(|w| w.name == SCRATCH_WORKSPACE)
    {
        return Ok((ws, true));
    }
    let new = NewWorkspace {
        name: SCRATCH_WORKSPACE.to_owned(),
        source_path: None,
    };
    c.create_workspace(&new).await.map(|ws| (ws, false))
}

/// The steps after a session was created; marks it deleted in `scratch` once it is.
async fn session_steps(
    c: &CortexClient,
    created: &Session,
    name: &str,
    scratch: &RefCell<Scratch>,
) -> Result<String, String> {
    let id = &created.id;
    if created.name != name {
        return Err(format!(
            "create: the answer's name is `{}`, not the one sent",
            created.name
        ));
    }
    if created.status != SessionStatus::Active {
        return Err(format!(
            "create: a new session must be `active`, the answer says `{}`",
            session_status(created.status)
        ));
    }
    let got = c
        .get_session(id)
        .await
        .map_err(|e| format!("get: {}", describe(&e)))?;
    if got.id != *id || got.name != name {
        return Err(format!("get: answered session {} `{}`", got.id, got.name));
    }
    let merged = c
        .merge_session(id, &MergeRequest::new(MergeStrategy::Auto))
        .await
        .map_err(|e| format!("merge (auto): {}", describe(&e)))?;
    let merge_status = match merged.status {
        MergeStatus::Success => "success",
        MergeStatus::Partial => "partial",
        MergeStatus::NoChanges => "no_changes",
    };
    c.delete_session(id)
        .await
        .map_err(|e| format!("delete: {}", describe(&e)))?;
    scratch.borrow_mut().session = Stage::None;
    match c.get_session(id).await {
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(format!("get after delete: expected 404: {}", describe(&e))),
        Ok(_) => return Err("get after delete: the session is still there".to_owned()),
    }
    Ok(format!(
        "create, get, merge (`{merge_status}`), delete, 404 after delete"
    ))
}

/// A search with limit 1 answers a bare array of at most one episode.
async fn check_memory(c: &CortexClient) -> Result<String, String> {
    let found = c
        .search_memory(&MemoryQuery::new("axon cortex check", 1))
        .await
        .map_err(|e| format!("search: {}", describe(&e)))?;
    if found.len() > 1 {
        return Err(format!(
            "search: limit 1 was sent, the answer has {}",
            plural(found.len(), "episode")
        ));
    }
    Ok(format!(
        "search answers a list ({} with limit 1)",
        plural(found.len(), "episode")
    ))
}

// ---- wording ----

/// Whether nothing more can be learnt from this server now (no answer at all).
fn is_unreachable(e: &CortexError) -> bool {
    matches!(
        e,
        CortexError::Refused { .. }
            | CortexError::Connect { .. }
            | CortexError::Tls { .. }
            | CortexError::Timeout { .. }
    )
}

/// The error's text (it names the call, the URL and the cause), plus the detail that makes it
/// actionable: the decoding error of a contract mismatch (which names the offending value), the
/// innermost cause of a connect or TLS failure (name resolution, certificate).
fn describe(e: &CortexError) -> String {
    let mut text = e.to_string();
    match e {
        CortexError::Contract {
            source: Some(source),
            ..
        } => {
            text.push_str(": ");
            text.push_str(&source.to_string());
        }
        CortexError::Connect { source, .. } | CortexError::Tls { source, .. } => {
            let mut root: &dyn std::error::Error = source;
            while let Some(next) = root.source() {
                root = next;
            }
            text.push_str(": ");
            text.push_str(&root.to_string());
        }
        _ => {}
    }
    text
}

/// A session status as the wire spells it.
fn session_status(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Active => "active",
        SessionStatus::Paused => "paused",
        SessionStatus::Completed => "completed",
        SessionStatus::Failed => "failed",
    }
}

/// `failure`, then `; note` when there is one.
fn with_note(failure: String, note: &str) -> String {
    if note.is_empty() {
        failure
    } else {
        format!("{failure}; {note}")
    }
}

/// `12s`, `3m 4s`, `2h 5m`, `3d 4h`.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_shows_the_two_largest_units() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(12), "12s");
        assert_eq!(uptime(184), "3m 4s");
        assert_eq!(uptime(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 1), "3d 4h");
    }

    #[test]
    fn the_key_is_scrubbed_and_lines_stay_single() {
        let scrub = Scrub(Some("ctx-secret-1"));
        assert_eq!(
            scrub.line("401: Invalid API key ctx-secret-1\nagain ctx-secret-1"),
            "401: Invalid API key <redacted>\\nagain <redacted>"
        );
        assert_eq!(Scrub(None).line("plain"), "plain");
    }
}
