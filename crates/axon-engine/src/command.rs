//! The command agent: any program becomes an agent (DESIGN.md, "Command agent protocol").
//!
//! One process per attempt, in its own process group, working in the task's session
//! directory. Its stdin is the [`AttemptRequest`] as JSON; its environment has `AXON_RUN_ID`,
//! `AXON_TASK_ID`, `AXON_ATTEMPT`, `AXON_SESSION_DIR` and `AXON_IDEMPOTENCY_KEY` (and, in a run
//! with Cortex sessions, `AXON_CORTEX_URL`, `AXON_CORTEX_SESSION_ID`, `AXON_CORTEX_WORKSPACE_ID`;
//! `AXON_CORTEX_API_KEY` only for an agent whose agents file opts in). On stdout,
//! `::axon progress 0.42` reports progress and `::axon output {json}` sets the task's output
//! (last one wins); every other line of stdout and stderr is the task's log, whose tail is
//! kept. Exit 0 is success, 75 (EX_TEMPFAIL) a transient `service_unavailable` failure, any
//! other code an `agent_error`. On cancel (or timeout) the group gets SIGTERM, then SIGKILL
//! after the grace period; when the agent exits, anything left in its group is killed.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axon_core::agents::AgentSpec;
use axon_core::model::ErrorType;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AttemptError, AttemptOutput, AttemptRequest, BoxFuture, Progress};
use crate::os;

/// Exit code that means "temporary failure, try again" (sysexits' EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: i32 = 75;
/// Lines of log kept for error messages.
pub const LOG_TAIL_LINES: usize = 20;
/// Longest log line kept, in bytes; the rest of a longer line is dropped.
const MAX_LINE: usize = 16 * 1024;
/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// An agent that runs a program per attempt.
#[derive(Debug, Clone)]
pub struct CommandAgent {
    inner: Arc<Spec>,
}

#[derive(Debug)]
struct Spec {
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    grace: Duration,
}

impl CommandAgent {
    /// An agent running `command[0]` with the other elements as arguments. A program path
    /// with a `/` that is relative is taken relative to `base_dir` (the agents file's
    /// directory); a bare name is looked up in `PATH`.
    ///
    /// # Errors
    ///
    /// When `command` is empty.
    pub fn new(
        command: &[String],
        env: BTreeMap<String, String>,
        base_dir: &Path,
    ) -> Result<Self, String> {
        let Some((program, args)) = command.split_first() else {
            return Err("agent has no command".into());
        };
        let program = PathBuf::from(program);
        let program = if program.is_relative() && program.components().count() > 1 {
            base_dir.join(program)
        } else {
            program
        };
        Ok(Self {
            inner: Arc::new(Spec {
                program,
                args: args.to_vec(),
                env,
                grace: DEFAULT_GRACE,
            }),
        })
    }

    /// The agent of an agents-file entry.
    ///
    /// # Errors
    ///
    /// When the entry has no `command`.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<Self, String> {
        Self::new(&spec.command, spec.env.clone(), base_dir)
            .map_err(|e| format!("agent `{}`: {e}", spec.id))
    }

    /// Sets the time between SIGTERM and SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        if let Some(spec) = Arc::get_mut(&mut self.inner) {
            spec.grace = grace;
        } else {
            self.inner = Arc::new(Spec {
                program: self.inner.program.clone(),
                args: self.inner.args.clone(),
                env: self.inner.env.clone(),
                grace,
            });
        }
        self
    }
}

impl Agent for CommandAgent {
    fn execute(
        &self,
        request: AttemptRequest,
        progress: Progress,
        cancel: CancellationToken,
    ) -> BoxFuture<Result<AttemptOutput, AttemptError>> {
        let spec = Arc::clone(&self.inner);
        Box::pin(async move { run_command(&spec, request, progress, cancel).await })
    }
}

/// Kills every agent process group this process is running, at once (SIGKILL, no grace
/// period), for a process that is about to exit without waiting for its runs to stop (a
/// second Ctrl-C). Agents that ignore SIGTERM would otherwise outlive it.
pub fn kill_all_agents() {
    os::kill_all_groups();
}

/// What the output readers collect.
#[derive(Default)]
struct Collected {
    log: VecDeque<String>,
    output: Option<serde_json::Value>,
    bad_output: Option<String>,
}

impl Collected {
    fn push_log(&mut self, line: String) {
        if self.log.len() == LOG_TAIL_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }
}

async fn run_command(
    spec: &Spec,
    request: AttemptRequest,
    progress: Progress,
    cancel: CancellationToken,
) -> Result<AttemptOutput, AttemptError> {
    let stdin_doc = serde_json::to_vec(&request).map_err(|e| {
        AttemptError::failed(
            ErrorType::SystemError,
            format!("cannot encode the task: {e}"),
        )
    })?;
    // No workspace (`RunOptions::default()`) means the engine's current directory; an empty
    // path would make the spawn itself fail.
    let session_dir = if request.session_dir.as_os_str().is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        request.session_dir.clone()
    };
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&session_dir)
        // The engine's own Cortex settings are never inherited: an attempt with a Cortex
        // session gets its own below, and the key only if its agent opts in (or its agents
        // file sets it in `env`).
        .env_remove("AXON_CORTEX_API_KEY")
        .env_remove("AXON_CORTEX_URL")
        .env_remove("AXON_CORTEX_SESSION_ID")
        .env_remove("AXON_CORTEX_WORKSPACE_ID")
        .envs(&spec.env)
        .env("AXON_RUN_ID", request.run_id.to_string())
        .env("AXON_TASK_ID", request.task.id.as_str())
        .env("AXON_ATTEMPT", request.attempt.to_string())
        .env("AXON_SESSION_DIR", &session_dir)
        .env("AXON_IDEMPOTENCY_KEY", &request.idempotency_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cortex) = &request.cortex {
        cmd.env("AXON_CORTEX_URL", &cortex.url)
            .env("AXON_CORTEX_SESSION_ID", &cortex.session_id)
            .env("AXON_CORTEX_WORKSPACE_ID", &cortex.workspace_id);
        if let Some(key) = &cortex.api_key {
            cmd.env("AXON_CORTEX_API_KEY", key);
        }
    }
    os::own_process_group(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        AttemptError::failed(
            ErrorType::SystemError,
            format!("cannot start `{}`: {e}", spec.program.display()),
        )
    })?;
    let Some(pgid) = child.id() else {
        return Err(AttemptError::failed(
            ErrorType::SystemError,
            "agent process exited before it could be tracked",
        ));
    };

    // Until the group is dead (every path below kills it before returning).
    let _tracked = os::track_group(pgid);
    progress.started_process(pgid);
    // The agent may not read its stdin; a closed pipe is not an error.
    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&stdin_doc).await;
            let _ = stdin.shutdown().await;
        }
    });
    let collected = Arc::new(Mutex::new(Collected::default()));
    let out_reader = child.stdout.take().map(|out| {
        tokio::spawn(read_lines(
            out,
            Arc::clone(&collected),
            Some(progress.clone()),
        ))
    });
    let err_reader = child
        .stderr
        .take()
        .map(|err| tokio::spawn(read_lines(err, Arc::clone(&collected), None)));

    let status = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        status = child.wait() => Some(status),
    };
    let status = match status {
        None => {
            os::stop_group(&mut child, pgid, spec.grace).await;
            writer.abort();
            for r in [out_reader, err_reader].into_iter().flatten() {
                r.abort();
            }
            return Err(AttemptError::Cancelled);
        }
        Some(status) => status,
    };
    // Whatever the agent left running in its group dies with it; that also closes any pipe
    // a grandchild kept open, so the readers reach the end.
    os::kill_group(pgid);
    let _ = writer.await;
    for r in [out_reader, err_reader].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
    }
    let collected = std::mem::take(
        &mut *collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let log_tail: Vec<String> = collected.log.into_iter().collect();

    let status = status.map_err(|e| {
        AttemptError::failed(
            ErrorType::SystemError,
            format!("cannot wait for the agent: {e}"),
        )
    })?;
    let fail = |kind, message: String| AttemptError::Failed {
        kind,
        message,
        log_tail: log_tail.clone(),
    };
    match status.code() {
        Some(0) => match collected.bad_output {
            Some(bad) => Err(fail(
                ErrorType::AgentError,
                format!("agent printed an invalid `::axon output` line: {bad}"),
            )),
            None => Ok(AttemptOutput {
                output: collected.output,
                log_tail,
            }),
        },
        Some(EXIT_TEMPFAIL) => Err(fail(
            ErrorType::ServiceUnavailable,
            format!("agent exited with code {EXIT_TEMPFAIL} (temporary failure)"),
        )),
        Some(code) => Err(fail(
            ErrorType::AgentError,
            format!("agent exited with code {code}"),
        )),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let signal = status.signal().unwrap_or(0);
            Err(fail(
                ErrorType::AgentError,
                format!("agent was killed by signal {signal}"),
            ))
        }
    }
}

/// Reads lines (lossily decoded, each capped at [`MAX_LINE`] bytes); on stdout, protocol lines
/// are interpreted.
async fn read_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    collected: Arc<Mutex<Collected>>,
    protocol: Option<Progress>,
) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            append_capped(&mut line, &rest[..nl], &mut truncated);
            handle_line(&line, truncated, &collected, protocol.as_ref());
            line.clear();
            truncated = false;
            rest = &rest[nl + 1..];
        }
        append_capped(&mut line, rest, &mut truncated);
    }
    if !line.is_empty() {
        handle_line(&line, truncated, &collected, protocol.as_ref());
    }
}

fn append_capped(line: &mut Vec<u8>, bytes: &[u8], truncated: &mut bool) {
    let room = MAX_LINE.saturating_sub(line.len());
    if bytes.len() > room {
        *truncated = true;
    }
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn handle_line(
    raw: &[u8],
    truncated: bool,
    collected: &Mutex<Collected>,
    protocol: Option<&Progress>,
) {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches('\r');
    let mut c = collected
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(progress) = protocol {
        if let Some(value) = text.strip_prefix("::axon progress ") {
            match value.trim().parse::<f64>() {
                Ok(v) => progress.report(v),
                Err(_) => c.push_log(format!("(ignored bad progress line) {text}")),
            }
            return;
        }
        if let Some(json) = text.strip_prefix("::axon output ") {
            if truncated {
                c.bad_output = Some(format!("longer than {MAX_LINE} bytes"));
                return;
            }
            match serde_json::from_str(json) {
                Ok(v) => {
                    c.output = Some(v);
                    c.bad_output = None;
                }
                Err(e) => c.bad_output = Some(e.to_string()),
            }
            return;
        }
    }
    let mut text = text.to_owned();
    if truncated {
        text.push_str(" [line truncated]");
    }
    c.push_log(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Upstream, WorkflowRef};
    use axon_core::builder::TaskBuilder;

    fn request(session_dir: PathBuf) -> AttemptRequest {
        let task = TaskBuilder::custom("t", "T", "h").capability("x").build();
        AttemptRequest {
            task: task.into(),
            workflow: Arc::new(WorkflowRef {
                id: "w".into(),
                name: "W".into(),
            }),
            run_id: uuid::Uuid::nil(),
            attempt: 1,
            context: Vec::new(),
            upstream: Upstream::default(),
            idempotency_key: "k".into(),
            cortex: None,
            session_dir,
        }
    }

    #[tokio::test]
    async fn an_empty_session_dir_means_the_current_directory() {
        let agent = CommandAgent::new(
            &[
                "sh".into(),
                "-c".into(),
                r#"echo "::axon output [\"$(pwd)\", \"$AXON_SESSION_DIR\"]""#.into(),
            ],
            BTreeMap::new(),
            Path::new("."),
        )
        .unwrap();
        let out = agent
            .execute(
                request(PathBuf::new()),
                Progress::discard(),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        let seen = out.output.unwrap();
        for dir in [&seen[0], &seen[1]] {
            let dir = PathBuf::from(dir.as_str().unwrap()).canonicalize().unwrap();
            assert_eq!(dir, cwd);
        }
    }
}
