//! `axon run` and `axon resume`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axon_core::agents::{AgentSpec, parse_agents};
use axon_core::format::Format;
use axon_core::model::RunStatus;
use axon_engine::command::CommandAgent;
use axon_engine::pool::{AgentPool, PoolAgent};
use axon_engine::{Engine, EngineError, RunHandle, RunOptions, RunReport, RunSource};
use axon_store::Store;

use crate::Status;
use crate::cli::{CortexArgs, ResumeArgs, RunArgs};
use crate::input::{check_workflow, load_agents, load_agents_with_text};
use crate::output::{plural, print_report, print_stdout};
use crate::state::{chain, db_path, open, run_id_arg};
use crate::summary::{RunView, TaskView, WorkflowView, human, now_ms};

/// The engine of `run` and `resume`: durable state in `store`, and the Cortex of `cortex`
/// (the embedded one — git worktree sessions, episodes and tracking in the same database —
/// and, with `--cortex-url`, a Cortex server too). `Err` is the exit status when the Cortex
/// server is not usable (the problem is printed).
async fn engine(
    pool: AgentPool,
    store: &Arc<axon_store::SqliteStore>,
    cortex: &CortexArgs,
) -> Result<Engine, Status> {
    let store = Arc::clone(store) as Arc<dyn Store>;
    let bridge = crate::cortex::bridge(cortex, &store).await?;
    Ok(Engine::new(pool).with_store(store).with_cortex(bridge))
}

/// Builds the runtime the engine runs on (the dispatcher runs on its workers).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// `axon run`.
pub fn run(args: &RunArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let agents_path = match &args.agents {
        Some(p) => p.clone(),
        None => {
            let beside = args
                .file
                .parent()
                .unwrap_or(Path::new("."))
                .join("agents.yaml");
            if args.file.as_os_str() != "-" && beside.is_file() {
                beside
            } else {
                eprintln!(
                    "axon: error: `axon run` needs agents: pass --agents FILE (there is no agents.yaml beside the workflow)"
                );
                return Ok(Status::Usage);
            }
        }
    };
    let workspace = match &args.workspace {
        Some(w) => w.clone(),
        None => std::env::current_dir()?,
    };
    if !workspace.exists() {
        std::fs::create_dir_all(&workspace)
            .map_err(|e| anyhow::anyhow!("cannot create workspace {}: {e}", workspace.display()))?;
        eprintln!("created workspace {}", workspace.display());
    }
    let workspace = match std::fs::canonicalize(&workspace) {
        Ok(w) if w.is_dir() => w,
        _ => {
            eprintln!(
                "axon: error: workspace {} is not a directory",
                workspace.display()
            );
            return Ok(Status::Invalid);
        }
    };

    let (agents, report, agents_text) = load_agents_with_text(&agents_path);
    print_report(&report);
    let (Some(agents), Some((agents_text, agents_format))) =
        (agents.filter(|_| !report.has_errors()), agents_text)
    else {
        return Ok(Status::Invalid);
    };
    let checked = check_workflow(&args.file, Some(&agents));
    print_report(&checked.report);
    if checked.report.has_errors() {
        return Ok(Status::Invalid);
    }
    let (Some((parsed, _)), Some((workflow_text, workflow_format))) =
        (checked.checked, checked.text)
    else {
        return Ok(Status::Invalid);
    };
    let agents_dir = absolute_parent(&agents_path);
    let pool = match build_pool(agents, &agents_dir) {
        Ok(p) => p,
        Err(problems) => {
            for p in problems {
                eprintln!("{}: error: {p}", agents_path.display());
            }
            return Ok(Status::Invalid);
        }
    };
    // The texts exactly as validated (read once), so `resume` runs exactly this.
    let source = RunSource {
        workflow: workflow_text,
        workflow_format,
        agents: Some(agents_text),
        agents_format: Some(agents_format),
        agents_dir: Some(agents_dir),
    };
    let db = db_path(db, &workspace);
    let json = args.json;
    let metrics_addr = args.metrics_addr;
    let merge_into = args.merge_into.clone();
    let cortex = args.cortex.clone();
    runtime()?.block_on(async move {
        let store = Arc::new(open(&db).await?);
        if let Some(addr) = metrics_addr {
            serve_metrics(addr)?;
        }
        let engine = match engine(pool, &store, &cortex).await {
            Ok(e) => e,
            Err(status) => return Ok(status),
        };
        let events = engine.bus().subscribe();
        let total = parsed.workflow.tasks.len();
        let handle = match engine
            .start(
                parsed.workflow,
                RunOptions {
                    workspace,
                    source: Some(source),
                    merge_into,
                },
            )
            .await
        {
            Ok(h) => h,
            Err(e) => return Ok(engine_failure(&e)),
        };
        eprintln!("run {} started; state in {}", handle.run_id, db.display());
        finish(handle, events, total, json, store).await
    })
}

/// `axon resume`.
pub fn resume(args: &ResumeArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let Some(run_id) = run_id_arg(&args.run) else {
        return Ok(Status::Usage);
    };
    let db = db_path(db, &std::env::current_dir()?);
    let agents_arg = args.agents.clone();
    let json = args.json;
    let merge_into = args.merge_into.clone();
    let cortex = args.cortex.clone();
    runtime()?.block_on(async move {
        let store = Arc::new(crate::state::open_existing(&db).await?);
        let Some(run) = store
            .run(run_id)
            .await
            .map_err(|e| anyhow::anyhow!(chain(&e)))?
        else {
            eprintln!("axon: error: no run with id {run_id} in {}", db.display());
            return Ok(Status::Invalid);
        };
        // The agents the run started with, unless others are given.
        let (agents, agents_dir): (Vec<AgentSpec>, PathBuf) = match &agents_arg {
            Some(path) => {
                let (agents, report) = load_agents(path);
                print_report(&report);
                match agents.filter(|_| !report.has_errors()) {
                    Some(a) => (a, absolute_parent(path)),
                    None => return Ok(Status::Invalid),
                }
            }
            None => {
                let (Some(text), Some(format)) = (&run.agents_source, &run.agents_format) else {
                    eprintln!(
                        "axon: error: run {run_id} has no recorded agents; pass --agents FILE"
                    );
                    return Ok(Status::Usage);
                };
                let format = if format == "json" {
                    Format::Json
                } else {
                    Format::Yaml
                };
                match parse_agents(text, format) {
                    Ok(p) => (
                        p.agents,
                        run.agents_dir
                            .as_ref()
                            .map_or_else(|| PathBuf::from(&run.workspace), PathBuf::from),
                    ),
                    Err(d) => {
                        eprintln!(
                            "axon: error: the recorded agents of run {run_id} are unreadable: {d}"
                        );
                        return Ok(Status::Invalid);
                    }
                }
            }
        };
        let pool = match build_pool(agents, &agents_dir) {
            Ok(p) => p,
            Err(problems) => {
                for p in problems {
                    eprintln!("axon: error: {p}");
                }
                return Ok(Status::Invalid);
            }
        };
        if crate::cortex::client_config(&cortex).is_none()
            && let Ok(Some(server)) = store.cortex_server(run_id).await
        {
            eprintln!(
                "note: run {run_id} was tracked on the Cortex server at {server}; without --cortex-url it resumes on the embedded implementation only (its queued Cortex updates wait for `axon cortex sync`)"
            );
        }
        let engine = match engine(pool, &store, &cortex).await {
            Ok(e) => e,
            Err(status) => return Ok(status),
        };
        let events = engine.bus().subscribe();
        let total = axon_engine::engine::read_stored_workflow(&run).map_or(0, |w| w.tasks.len());
        let handle = match engine.resume(run_id, None, None, merge_into).await {
            Ok(h) => h,
            Err(e) => return Ok(engine_failure(&e)),
        };
        finish(handle, events, total, json, store).await
    })
}

/// Shows progress, handles Ctrl-C, and reports the end of a run.
async fn finish(
    handle: RunHandle,
    events: tokio::sync::mpsc::UnboundedReceiver<axon_engine::bus::Event>,
    total: usize,
    json: bool,
    store: Arc<dyn Store>,
) -> anyhow::Result<Status> {
    let display = tokio::spawn(crate::progress::show(events, total));
    let cancel = handle.cancellation();
    let run_id = handle.run_id;
    let signals = tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut interrupts = 0;
        loop {
            let term = async {
                match terminate.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = term => {}
            }
            interrupts += 1;
            if interrupts == 1 {
                eprintln!(
                    "\ncancelling: agents get SIGTERM, then SIGKILL; press Ctrl-C again to exit now"
                );
                cancel.cancel();
            } else {
                // Stop the agents ourselves (the engine will not get to), then leave. First
                // every group this process spawned (known in memory the moment it starts, so
                // none is missed); then those the store knows of.
                axon_engine::command::kill_all_agents();
                let mut killed = 0;
                if let Ok(tasks) = store.tasks(run_id).await {
                    for t in tasks {
                        if let Some(pid) = t.agent_pid
                            && axon_engine::kill_agent(pid, run_id, &t.task_id)
                        {
                            killed += 1;
                        }
                    }
                }
                eprintln!(
                    "exiting now ({killed} agent process groups killed); `axon cancel {run_id}` or `axon resume {run_id}` settles the run"
                );
                std::process::exit(130);
            }
        }
    });
    let result = handle.wait().await;
    signals.abort();
    let _ = display.await;
    match result {
        Ok(report) => report_run(&report, json),
        Err(e) => Ok(engine_failure(&e)),
    }
}

fn report_run(report: &RunReport, json: bool) -> anyhow::Result<Status> {
    let view = view_of_report(report);
    eprint!("\n{}", human(&view));
    if json {
        let mut text = serde_json::to_string(&view)?;
        text.push('\n');
        print_stdout(&text)?;
    }
    if let Some(e) = &report.finish_error {
        eprintln!("axon: error: {e}");
        if report.status == RunStatus::Succeeded {
            return Ok(Status::Failed);
        }
    }
    Ok(Status::of_run(report.status))
}

/// The user-facing view of a finished run.
pub fn view_of_report(report: &RunReport) -> RunView {
    let finished = report.finished_at_ms.unwrap_or_else(now_ms);
    RunView {
        run_id: report.run_id,
        workflow: WorkflowView {
            id: report.workflow_id.clone(),
            name: report.workflow_name.clone(),
        },
        status: report.status,
        started_at: axon_engine::time::rfc3339(report.created_at_ms),
        finished_at: report.finished_at_ms.map(axon_engine::time::rfc3339),
        duration_secs: (finished - report.created_at_ms).max(0) as f64 / 1000.0,
        tasks: report.tasks.iter().map(TaskView::from_report).collect(),
        metrics: Some(report.totals),
        tracking: None,
        cortex: None,
        finish_error: report.finish_error.clone(),
    }
}

fn engine_failure(e: &EngineError) -> Status {
    eprintln!("axon: error: {}", chain(e));
    match e {
        EngineError::Invalid(invalid) => {
            for d in &invalid.diagnostics {
                eprintln!("  {d}");
            }
            Status::Invalid
        }
        _ => Status::Invalid,
    }
}

/// A command agent per declared agent.
fn build_pool(agents: Vec<AgentSpec>, base_dir: &Path) -> Result<AgentPool, Vec<String>> {
    let mut problems = Vec::new();
    let mut pool = Vec::with_capacity(agents.len());
    for spec in agents {
        if spec.command.is_empty() {
            problems.push(format!(
                "agent `{}` has no command; `axon run` runs each agent's `command: [program, args...]` once per task attempt",
                spec.id
            ));
            continue;
        }
        match CommandAgent::from_spec(&spec, base_dir) {
            Ok(agent) => pool.push(PoolAgent {
                spec,
                agent: Arc::new(agent),
            }),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(AgentPool::new(pool))
    } else {
        Err(problems)
    }
}

fn absolute_parent(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf())
}

fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    eprintln!("metrics at http://{addr}/metrics");
    Ok(())
}

/// The exit status of a run that ended with `status`.
impl Status {
    /// 0 succeeded, 130 cancelled, 1 otherwise.
    pub fn of_run(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => Status::Success,
            RunStatus::Cancelled => Status::Cancelled,
            _ => Status::Failed,
        }
    }
}

/// Counts for a listing: `3 succeeded, 1 failed`.
pub fn counts_text(counts: &[(axon_core::model::TaskStatus, u32)]) -> String {
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    if parts.is_empty() {
        plural(0, "task")
    } else {
        parts.join(", ")
    }
}
