//! Command-line arguments and help texts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Axon: an orchestration engine for agent workflows.
///
/// A workflow is a DAG of typed tasks (development, review, testing, documentation,
/// refactoring, custom) written in YAML or JSON. Axon validates it, plans it (order,
/// parallel levels, critical path), and runs it on your agents: each task as soon as its
/// prerequisites succeeded and a capable agent is free, with retries, timeouts, and durable
/// state that `axon resume` continues after a crash. In a git repository each task attempt
/// works in its own worktree, and its changes merge into the run's branch `axon/RUN_ID`;
/// episodes of similar past tasks are given to agents as context. With `--cortex-url`, a
/// Cortex server tracks the run, gives each attempt a session, and adds its memory to the
/// context.
#[derive(Debug, Parser)]
#[command(
    name = "axon",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  axon run examples/feature/workflow.yaml --agents examples/feature/agents.yaml
  axon runs
  axon status RUN_ID
  axon episodes search optimize database indexes
  axon cortex check --cortex-url http://127.0.0.1:8080
  axon validate examples/feature/workflow.yaml
  axon plan examples/feature/workflow.yaml --agents examples/feature/agents.yaml
  axon plan examples/refactoring.yaml --format mermaid
  axon schema > workflow.schema.json

Exit codes: 0 success, 1 invalid input or failed run, 2 usage error, 130 cancelled."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// State database (default: `.axon/axon.db` under the workspace). Accepted before or
    /// after the subcommand.
    #[arg(long, global = true, value_name = "PATH", env = "AXON_DB")]
    pub db: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files and report every problem with its file:line:col.
    #[command(after_help = "\
Prints one line per problem, `FILE:LINE:COL: error: MESSAGE` (or `FILE: error: MESSAGE` when no
position applies; warnings say `warning`), then a one-line summary, all on standard error.

Checks: syntax, unknown fields (with `did you mean`), duplicate task ids, dependency cycles
(the whole cycle), unknown and self dependencies, missing capabilities, zero or absurd
estimates and resources, out-of-range fields, and a critical path longer than the workflow
timeout. With --agents, also that every task has an agent able to run it.

Examples:
  axon validate workflow.yaml
  axon validate a.yaml b.json --agents agents.yaml
  cat workflow.yaml | axon validate -

Exit codes: 0 all files valid (warnings allowed), 1 any file invalid, 2 usage error.")]
    Validate(ValidateArgs),

    /// Show the execution plan: order, parallel levels, slack and the critical path.
    #[command(after_help = "\
The text table lists tasks in execution order with their level, type, estimate, earliest start
and slack; `*` marks the critical path. With --agents, Axon also simulates the run on those
agents (respecting capabilities, resources and max_concurrent_tasks) and shows the estimated
makespan and each agent's utilisation.

--format json prints one object (snake_case keys, durations in seconds under keys ending in
`_secs`); mermaid and dot print the graph with the critical path highlighted.

Examples:
  axon plan examples/feature/workflow.yaml
  axon plan examples/feature/workflow.yaml --agents examples/feature/agents.yaml --format json
  axon plan examples/refactoring.yaml --format dot | dot -Tsvg > plan.svg

Exit codes: 0 planned, 1 invalid workflow or no agent for some task, 2 usage error.")]
    Plan(PlanArgs),

    /// Run a workflow on command agents, with live progress and durable state.
    #[command(after_help = "\
Validates the workflow and checks that every task has an agent able to run it (nothing runs if
either fails), then runs every task whose prerequisites succeeded as soon as an agent is free.
Each agent is a program run once per task attempt (see the agents file's `command`); it reads the
task as JSON on stdin and may print `::axon progress 0.5` and `::axon output {...}` lines.

When the workspace is a git repository, the run creates branch `axon/RUN_ID` from HEAD and each
task attempt works in its own git worktree (under .axon/worktrees) cut from that branch's tip, so
it sees what its prerequisites merged. A successful task's changes are checked against its
`scope`/`read_only` paths, committed and merged into `axon/RUN_ID`; a conflict fails the task and
keeps its worktree for inspection. Your checkout, index and branches are never touched unless
--merge-into names a branch. Not a git repository: tasks run in the workspace directly.
Each agent gets, as `context`, the episodes of past tasks whose names share words with its task's.

State is committed to the database before anything acts on it: if this process dies, continue with
`axon resume RUN_ID`. Ctrl-C cancels gracefully (agents get SIGTERM, then SIGKILL); a second
Ctrl-C exits at once.

With --cortex-url (or AXON_CORTEX_URL), a Cortex server also plays its roles: tracking (the
workflow and each task as Cortex tasks, updated through a durable outbox: the run never waits
for Cortex; `axon cortex sync` delivers what could not be sent), sessions (a Cortex session per
attempt, merged on success, always deleted; agents get `cortex: {url, session_id,
workspace_id}` and AXON_CORTEX_* variables, the API key only with `cortex_api_key: true`), and
memory (Cortex memory search added to the agents' context). If the server is not healthy or
refuses the key, nothing runs, unless --cortex-optional.

Examples:
  axon run examples/feature/workflow.yaml --agents examples/feature/agents.yaml
  axon run wf.yaml --agents agents.yaml --workspace ../repo --merge-into main
  axon run wf.yaml --agents agents.yaml --workspace ../repo --json > summary.json
  axon run wf.yaml --agents agents.yaml --metrics-addr 127.0.0.1:9464
  AXON_CORTEX_API_KEY=... axon run wf.yaml --agents agents.yaml --cortex-url http://127.0.0.1:8080

Exit codes: 0 every task succeeded, 1 invalid input or some task failed or was skipped,
2 usage error, 130 cancelled.")]
    Run(RunArgs),

    /// List recent runs, newest first.
    #[command(after_help = "\
Examples:
  axon runs
  axon runs --limit 50 --json")]
    Runs(RunsArgs),

    /// Show one run: every task with its status, attempts, agent, times and error.
    #[command(after_help = "\
A run whose engine died shows as `interrupted`; continue it with `axon resume RUN_ID`. A run
tracked on a Cortex server also shows where, and how many tracking updates are not delivered yet
(`cortex` in --json: `server`, `workflow_task_id`, `undelivered`, `failing`, `last_error`,
`oldest_undelivered_at`, `open_sessions`).

Examples:
  axon status 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f
  axon status 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f --json")]
    Status(StatusArgs),

    /// Continue a run whose engine was killed.
    #[command(after_help = "\
Tasks that succeeded never run again; tasks that were running start over with the next attempt
number. The workflow and agents are those the run started with (stored in the database), unless
--agents gives other agents. A run held by a live engine is refused.

Examples:
  axon resume 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f
  axon resume 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f --agents agents.yaml --json

Exit codes: as `axon run`.")]
    Resume(ResumeArgs),

    /// Cancel a run that another `axon` process is executing.
    #[command(after_help = "\
Asks the engine running it (through the database) to cancel: its agents are stopped and that
process exits with 130. Waits until the run has stopped. An interrupted run (its engine died) is
marked cancelled directly.

Examples:
  axon cancel 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f

Exit codes: 130 cancelled, 0 the run had already succeeded, 1 it had failed or does not exist.")]
    Cancel(CancelArgs),

    /// Search the episodes of past tasks (what each finished task attempt did).
    #[command(
        subcommand,
        after_help = "\
Examples:
  axon episodes search optimize database indexes
  axon episodes search login --limit 3 --json"
    )]
    Episodes(EpisodesCommand),

    /// Work with a Cortex server: check it against the contract, deliver queued tracking.
    #[command(
        subcommand,
        after_help = "\
Examples:
  axon cortex check --cortex-url http://127.0.0.1:8080
  AXON_CORTEX_API_KEY=... axon cortex sync"
    )]
    Cortex(CortexCommand),

    /// Print the JSON Schema of workflow files (or of agents files).
    #[command(after_help = "\
Examples:
  axon schema > workflow.schema.json
  axon schema agents > agents.schema.json")]
    Schema(SchemaArgs),
}

/// The subcommands of `axon episodes`.
#[derive(Debug, Subcommand)]
pub enum EpisodesCommand {
    /// Full-text search of past task episodes, best match first.
    #[command(after_help = "\
Every finished task attempt is recorded as an episode: task name, type, status, agent, output,
error, log tail, duration. The query is split into words (letters and digits; case does not
matter) and an episode matches when any word is in its task name or error. Matches
are ranked by bm25, a task name match weighing most; ties go to the newest. Query syntax is not
interpreted: `AND`, `-`, `:`, quotes and `*` are ordinary text (put a query that starts with
`-` after `--`). This is the search the engine
runs with each task's name (limit 5) to give agents the `context` of similar past tasks.

Each hit shows its score (higher is better), task name, status, duration, agent, attempt, when
it finished, run and task ids, and the first line of its error or output. --json prints a list
of episode objects (snake_case keys, `duration_secs`, RFC 3339 `finished_at`) with a `score`.

Examples:
  axon episodes search \"optimize database indexes\"
  axon episodes search login page --limit 3 --json
  axon episodes search \"connection refused\" --db ../repo/.axon/axon.db

Exit codes: 0 (also with no match or no database yet), 1 unreadable database, 2 usage error.")]
    Search(EpisodesSearchArgs),
}

/// The subcommands of `axon cortex`.
#[derive(Debug, Subcommand)]
pub enum CortexCommand {
    /// Probe a Cortex server, endpoint by endpoint, against the contract Axon relies on.
    #[command(
        after_help = "\
Prints one line per check as it completes, `ok`, `FAIL` with what was wrong, or `skip` with why
it was not tried, then a summary line `cortex at URL: ...`. The checks, in order:
  health    `GET /api/v1/health` answers the envelope and says healthy (version, uptime)
  auth      the API key is accepted on the protected routes (an unknown session is 404, not 401)
  tasks     create, read, update to `inprogress`, list by tag and delete a scratch task
  sessions  create, read, merge (`auto`) and delete a scratch session, on --cortex-workspace
            or else on a scratch workspace named `axon-cortex-check`
  memory    a memory search answers a list
When the server cannot be reached (refused, timeout, TLS), the checks after health are skipped;
without an API key, auth fails and sessions and memory are skipped; a role left out of
--cortex-roles is not checked. Each request gives up after --cortex-timeout.

Everything the checks create is deleted, even when a step fails or on Ctrl-C. The contract has
no route to delete a workspace: the scratch workspace is kept, and reused by later checks.
The API key is never printed. --json prints one object instead: `url`, `ok`, and `checks`, a
list of `name`, `status` (`ok`, `fail` or `skip`) and `detail`.

Examples:
  axon cortex check --cortex-url http://127.0.0.1:8080
  AXON_CORTEX_URL=https://cortex.example AXON_CORTEX_API_KEY=... axon cortex check --json

Exit codes: 0 every check passed, 1 some check failed, 2 usage error (no --cortex-url, a URL
that is not http(s)://HOST[:PORT], a zero --cortex-timeout), 130 cancelled.",
        mut_arg("cortex_url", |a| a.help(
            "Base URL of the Cortex server to probe, e.g. http://127.0.0.1:8080"
        )),
        mut_arg("cortex_workspace", |a| a.help(
            "Cortex workspace id for the sessions check (default: the scratch workspace \
             `axon-cortex-check`, created once)"
        )),
        mut_arg("cortex_roles", |a| a.help(
            "The parts to check, comma-separated (default: all three; tracking is the tasks \
             check)"
        )),
        mut_arg("cortex_optional", |a| a.hide(true))
    )]
    Check(CortexCheckArgs),

    /// Deliver the tracking updates still queued for a Cortex server.
    #[command(after_help = "\
Tracking updates (the workflow and task records a run keeps in Cortex) are queued in the state
database and delivered in the background; a run never waits for Cortex. What could not be
delivered (Cortex was down) stays queued: `axon status RUN` shows how much. This delivers it, in
order per task, and deletes Cortex sessions a crashed engine left behind. Without RUN, every run
with queued updates for this server. The server is --cortex-url, or else the one the run was
tracked on.

Examples:
  axon cortex sync
  axon cortex sync 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f --cortex-url http://127.0.0.1:8080

Exit codes: 0 everything delivered, 1 something is still undelivered, 2 usage error.")]
    Sync(CortexSyncArgs),
}

/// Which parts Cortex plays in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum CortexRole {
    /// The workflow and each task are tracked as Cortex tasks.
    Tracking,
    /// Cortex memory search adds to the agents' context.
    Memory,
    /// Each task attempt gets a Cortex session, merged when it succeeds.
    Sessions,
}

/// How to reach a Cortex server (for `run`, `resume` and `axon cortex ...`).
#[derive(Debug, Clone, Args)]
pub struct CortexArgs {
    /// Base URL of a Cortex server, e.g. http://127.0.0.1:8080. With it, runs are tracked there,
    /// each task attempt gets a Cortex session, and Cortex memory adds to agents' context.
    #[arg(long, value_name = "URL", env = "AXON_CORTEX_URL")]
    pub cortex_url: Option<String>,

    /// API key for the Cortex routes that need one (sent as `Authorization: ApiKey KEY`;
    /// never printed, logged or stored). Prefer the environment variable.
    #[arg(
        long,
        value_name = "KEY",
        env = "AXON_CORTEX_API_KEY",
        hide_env_values = true
    )]
    pub cortex_api_key: Option<String>,

    /// Timeout of each request to Cortex (connect, send and read the answer).
    #[arg(
        long,
        value_name = "DURATION",
        env = "AXON_CORTEX_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub cortex_timeout: Duration,

    /// The parts Cortex plays, comma-separated (default: all three).
    #[arg(
        long,
        value_enum,
        value_name = "ROLES",
        value_delimiter = ',',
        env = "AXON_CORTEX_ROLES",
        default_value = "tracking,memory,sessions"
    )]
    pub cortex_roles: Vec<CortexRole>,

    /// Cortex workspace id for sessions (default: one is created per workspace directory and
    /// remembered in the state database).
    #[arg(long, value_name = "ID", env = "AXON_CORTEX_WORKSPACE")]
    pub cortex_workspace: Option<String>,

    /// When Cortex is unreachable or unhealthy at start, run on the embedded implementation
    /// (and say so) instead of stopping.
    #[arg(long, env = "AXON_CORTEX_OPTIONAL")]
    pub cortex_optional: bool,
}

/// Arguments of `axon cortex check`.
#[derive(Debug, Args)]
pub struct CortexCheckArgs {
    /// The server to probe.
    #[command(flatten)]
    pub cortex: CortexArgs,

    /// Print one JSON object (`url`, `ok`, and `checks`: `name`, `status`, `detail`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `axon cortex sync`.
#[derive(Debug, Args)]
pub struct CortexSyncArgs {
    /// Only this run (default: every run with queued updates).
    #[arg(value_name = "RUN")]
    pub run: Option<String>,

    /// The server to deliver to.
    #[command(flatten)]
    pub cortex: CortexArgs,
}

/// A humantime duration (`10s`, `1m30s`) or whole seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    axon_core::duration::parse(text)
}

/// Arguments of `axon episodes search`.
#[derive(Debug, Args)]
pub struct EpisodesSearchArgs {
    /// What to look for: any of its words may match (several arguments are one query).
    #[arg(value_name = "QUERY", required = true, num_args = 1..)]
    pub query: Vec<String>,

    /// How many episodes to show at most.
    #[arg(long, default_value_t = 10)]
    pub limit: u32,

    /// Print a JSON list.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `axon validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Workflow files (`.json` is read as JSON, anything else as YAML; `-` reads YAML from
    /// standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Agents file: also check that every task has an agent able to run it.
    #[arg(long, value_name = "FILE")]
    pub agents: Option<PathBuf>,
}

/// Arguments of `axon plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Workflow file (`-` reads YAML from standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Agents file: check feasibility and simulate the schedule on these agents.
    #[arg(long, value_name = "FILE")]
    pub agents: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

/// How `axon plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A readable table and a summary.
    Text,
    /// One JSON object.
    Json,
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

/// Arguments of `axon schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's schema.
    #[arg(value_enum, default_value_t = SchemaKind::Workflow)]
    pub kind: SchemaKind,
}

/// Which schema `axon schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// Workflow files.
    Workflow,
    /// Agents files.
    Agents,
}

/// Arguments of `axon run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workflow file (`-` reads YAML from standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Agents file (default: `agents.yaml` beside the workflow file, if there is one).
    #[arg(long, value_name = "FILE")]
    pub agents: Option<PathBuf>,

    /// Directory the tasks work in (default: the current directory; created if missing).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Print one JSON summary object on standard output when the run ends.
    #[arg(long)]
    pub json: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics while the run lives.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// When every task succeeded, bring BRANCH up to the run's `axon/RUN_ID` branch
    /// (fast-forward or merge; refused if BRANCH is checked out with local changes).
    #[arg(long, value_name = "BRANCH")]
    pub merge_into: Option<String>,

    /// A Cortex server for tracking, sessions and memory.
    #[command(flatten, next_help_heading = "Cortex")]
    pub cortex: CortexArgs,
}

/// Arguments of `axon runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,

    /// Print a JSON list.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `axon status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run id (as printed by `axon run` and `axon runs`).
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `axon resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run id.
    #[arg(value_name = "RUN")]
    pub run: String,

    /// Agents file to use instead of the one the run started with.
    #[arg(long, value_name = "FILE")]
    pub agents: Option<PathBuf>,

    /// Print one JSON summary object on standard output when the run ends.
    #[arg(long)]
    pub json: bool,

    /// As `axon run --merge-into` (it is not remembered from the original command).
    #[arg(long, value_name = "BRANCH")]
    pub merge_into: Option<String>,

    /// A Cortex server for tracking, sessions and memory (not remembered from the original
    /// command: pass it again).
    #[command(flatten, next_help_heading = "Cortex")]
    pub cortex: CortexArgs,
}

/// Arguments of `axon cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run id.
    #[arg(value_name = "RUN")]
    pub run: String,
}
