//! Cortex tracking over HTTP: what it costs a run, and how fast the outbox drains.
//!
//! Group `tracking_command_1000` (a W2-style run of command agents: 1,000 independent tasks
//! that run `true`, `CONCURRENCY` at a time, with the SQLite store in a temporary file):
//! - `tracking_off`: the embedded Cortex only (`LocalCortex`: local tracking records);
//! - `tracking_on`: `HttpCortex` with the tracking role (sessions and memory off) against the
//!   fake Cortex server of `axon-testkit` on loopback, served from the bench's own process on
//!   a runtime thread of its own: its CPU competes with the run's, so this measures Axon's
//!   share and the server's together;
//! - `tracking_on_own_process`: the same against the same fake server run as a process of its
//!   own (the `fake-cortex` binary, built by the bench with `cargo build`, or the one
//!   `$AXON_FAKE_CORTEX` names) at idle CPU priority (`chrt --idle 0`, SCHED_IDLE; `nice -n 19`
//!   where `chrt` is missing): it gets only the CPU the run leaves idle, as a server on another
//!   machine would, so this measures Axon's share.
//!
//! Every task's creation and status changes go through the durable outbox and the courier;
//! a run is timed until `run` returns, which includes the end-of-run drain. After each run
//! (untimed) the bench checks that every call was delivered: nothing is left in the outbox, and
//! the server, asked over its HTTP API, holds the workflow's task and exactly one `done` task
//! per Axon task.
//!
//! Group `outbox_drain_3001`: `deliver_backlog` (what `axon cortex sync` runs) delivering a
//! run's queued calls to the fake server (`deliver_backlog` in process,
//! `deliver_backlog_own_process` in its own): 1 workflow create, 1,000 task creates and 2,000
//! updates (enqueued before timing, in a fresh store per iteration).
//!
//! After criterion, a summary prints µs per task, the tracking overhead as a ratio of the
//! same-run `tracking_off`, and the outbox's delivered calls per second; then `ROUNDS` (24, or
//! `$AXON_BENCH_ROUNDS`) more rounds of the three runs, rotating which goes first, and the
//! medians of their ratios (on this noisy 2-core machine the interleaved figures are the ones
//! to trust), with the mean CPU time per run of Axon and of the server, and of the bench's
//! threads by name (the engine's runtime workers, SQLite's threads, the courier's thread, the
//! main thread, which runs the engine's dispatcher).
//!
//! Run: `cargo bench -p axon-engine --bench cortex_tracking`. To profile one function, add
//! `-- --profile-time 20 tracking_on_own_process` (no summary nor interleaved rounds then).
//! With `AXON_BENCH_SQL=1` it only runs tracking off and on (server in its own process), a
//! warm-up and four runs each, and prints SQLite's time per run by statement, from sqlx's
//! statement log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_core::model::RunStatus;
use axon_engine::command::CommandAgent;
use axon_engine::cortex::http::{ClientConfig, CortexClient, TaskFilter, TaskStatus};
use axon_engine::cortex::{CortexConfig, CortexRoles, HttpCortex, LocalCortex, deliver_backlog};
use axon_engine::pool::AgentPool;
use axon_engine::{Engine, RunOptions};
use axon_store::{Lease, NewOutboxItem, RunRecord, SqliteStore, Store, TaskRecord};
use axon_testkit::cortex::{FakeConfig, FakeCortex};
use criterion::{Criterion, SamplingMode};
use uuid::Uuid;

const N: usize = 1_000;
const CONCURRENCY: usize = 8;
const RUN_GROUP: &str = "tracking_command_1000";
const DRAIN_GROUP: &str = "outbox_drain_3001";
const DRAIN_CALLS: usize = 1 + 3 * N;

/// The fake Cortex server on a runtime (and thread) of the bench's own process.
struct InProcess {
    fake: FakeCortex,
    _rt: tokio::runtime::Runtime,
}

impl InProcess {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-cortex")
            .enable_all()
            .build()
            .expect("a runtime for the fake server");
        let fake = rt.block_on(FakeCortex::start(FakeConfig::default()));
        Self { fake, _rt: rt }
    }
}

/// The fake Cortex server as a process of its own, at idle CPU priority. Killed when dropped
/// (a panicking bench unwinds through this too).
struct OwnProcess {
    child: Child,
    url: String,
    /// How its priority was lowered, for the report.
    priority: &'static str,
    /// Its stdout, kept open: it prints what it holds when interrupted.
    stdout: BufReader<ChildStdout>,
}

impl OwnProcess {
    /// Builds (or takes `$AXON_FAKE_CORTEX`) and starts `fake-cortex` on a free loopback port,
    /// and waits until `/api/v1/health` says healthy.
    fn start(rt: &tokio::runtime::Runtime) -> Self {
        let bin = fake_cortex_binary();
        let (mut command, priority) = if Command::new("chrt")
            .args(["--idle", "0", "true"])
            .status()
            .is_ok_and(|s| s.success())
        {
            let mut c = Command::new("chrt");
            c.args(["--idle", "0"]);
            (c, "chrt --idle 0 (SCHED_IDLE)")
        } else {
            let mut c = Command::new("nice");
            c.args(["-n", "19"]);
            (c, "nice -n 19")
        };
        // Port 0: the server binds a free port and prints its URL.
        let mut child = command
            .arg(&bin)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("a piped stdout");
        // From here on, a panic kills the child.
        let mut server = Self {
            child,
            url: String::new(),
            priority,
            stdout: BufReader::new(stdout),
        };
        let mut line = String::new();
        while server.url.is_empty() {
            line.clear();
            let read = server.stdout.read_line(&mut line).expect("its stdout");
            assert!(read > 0, "fake-cortex exited before printing its URL");
            if let Some(url) = line.trim().strip_prefix("fake Cortex server at ") {
                server.url = url.to_owned();
            }
        }
        let client = CortexClient::new(ClientConfig::new(server.url.clone())).expect("a client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while rt.block_on(client.check_health()).is_err() {
            assert!(
                Instant::now() < deadline,
                "fake-cortex never became healthy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for OwnProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `fake-cortex` binary: `$AXON_FAKE_CORTEX`, else built by cargo with the bench's own
/// profile (release under `cargo bench`, dev under `cargo test`).
fn fake_cortex_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("AXON_FAKE_CORTEX") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "axon-testkit", "--bin", "fake-cortex"])
        .args(["--message-format", "json-render-diagnostics"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let out = build
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo builds fake-cortex");
    assert!(out.status.success(), "cargo could not build fake-cortex");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "fake-cortex")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the fake-cortex executable")
}

/// Where the fake Cortex server of a tracked run runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// In the bench's process.
    InProcess,
    /// In a process of its own, at idle priority.
    OwnProcess,
}

/// Both servers.
struct Servers {
    in_process: InProcess,
    own_process: OwnProcess,
}

impl Servers {
    fn url(&self, server: Server) -> String {
        match server {
            Server::InProcess => self.in_process.fake.url(),
            Server::OwnProcess => self.own_process.url.clone(),
        }
    }
}

fn pool() -> AgentPool {
    let agent = CommandAgent::new(&["true".to_owned()], BTreeMap::new(), Path::new("."))
        .expect("a command");
    let yaml = format!(
        "agents:\n  - id: run-true\n    capabilities: [x]\n    max_concurrent_tasks: {CONCURRENCY}\n"
    );
    common::pool_of_yaml(&yaml, Arc::new(agent))
}

/// A fresh store file in `dir`.
async fn store(dir: &Path, i: u64) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(&dir.join(format!("axon-{i}.db")))
            .await
            .expect("the store opens"),
    )
}

/// Interleaved rounds after criterion.
const ROUNDS: usize = 24;

/// The interleaved rounds to run: `$AXON_BENCH_ROUNDS`, else [`ROUNDS`].
fn rounds() -> usize {
    std::env::var("AXON_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(ROUNDS)
}

/// Tracking off, or on against one of the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracking {
    Off,
    On(Server),
}

impl Tracking {
    const ALL: [Tracking; 3] = [
        Tracking::Off,
        Tracking::On(Server::InProcess),
        Tracking::On(Server::OwnProcess),
    ];

    /// The criterion function's name.
    fn name(self) -> &'static str {
        match self {
            Tracking::Off => "tracking_off",
            Tracking::On(Server::InProcess) => "tracking_on",
            Tracking::On(Server::OwnProcess) => "tracking_on_own_process",
        }
    }
}

fn tracking_config(url: String) -> CortexConfig {
    let mut config = CortexConfig::new(ClientConfig::new(url));
    config.roles = CortexRoles {
        tracking: true,
        memory: false,
        sessions: false,
    };
    config
}

/// CPU time (user and system) used so far: by the bench's process (all its threads, the
/// in-process server's included), by the in-process server's threads, and by the server in its
/// own process. Read from `/proc` in ticks of 10 ms (`USER_HZ`); zero where unreadable.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    process: Duration,
    in_process_server: Duration,
    own_process_server: Duration,
}

impl Cpu {
    fn now(servers: &Servers) -> Self {
        let in_process_server = std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "fake-cortex")
            })
            .map(|t| cpu_of(&t.path().join("stat")))
            .sum();
        let own = format!("/proc/{}/stat", servers.own_process.child.id());
        Self {
            process: cpu_of(Path::new("/proc/self/stat")),
            in_process_server,
            own_process_server: cpu_of(Path::new(&own)),
        }
    }

    /// What was used since `before`: (Axon's, the server's) for a run with `tracking`.
    fn since(self, before: Cpu, tracking: Tracking) -> (Duration, Duration) {
        let axon = self.process.saturating_sub(before.process);
        let in_server = self
            .in_process_server
            .saturating_sub(before.in_process_server);
        let own_server = self
            .own_process_server
            .saturating_sub(before.own_process_server);
        match tracking {
            Tracking::Off => (axon, Duration::ZERO),
            Tracking::On(Server::InProcess) => (axon.saturating_sub(in_server), in_server),
            Tracking::On(Server::OwnProcess) => (axon, own_server),
        }
    }
}

/// CPU time used so far by each thread of the bench's process still alive, by thread id,
/// with the thread's name.
fn threads_cpu() -> BTreeMap<String, (String, Duration)> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let tid = t.file_name().to_string_lossy().into_owned();
            (
                tid,
                (name.trim().to_owned(), cpu_of(&t.path().join("stat"))),
            )
        })
        .collect()
}

/// CPU time used by the threads of each name between `before` and `after`.
fn threads_since(
    before: &BTreeMap<String, (String, Duration)>,
    after: &BTreeMap<String, (String, Duration)>,
) -> BTreeMap<String, Duration> {
    let mut by_name = BTreeMap::new();
    for (tid, (name, cpu)) in after {
        let was = before.get(tid).map_or(Duration::ZERO, |(_, c)| *c);
        *by_name.entry(name.clone()).or_insert(Duration::ZERO) += cpu.saturating_sub(was);
    }
    by_name
}

/// User plus system time of a `/proc/.../stat` file (fields 14 and 15, in 10 ms ticks).
fn cpu_of(stat: &Path) -> Duration {
    let ticks = std::fs::read_to_string(stat).ok().and_then(|s| {
        let (_, fields) = s.rsplit_once(')')?;
        let f: Vec<&str> = fields.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    });
    Duration::from_millis(ticks.unwrap_or(0) * 10)
}

/// What one run took.
#[derive(Debug, Clone, Default)]
struct Took {
    /// Wall-clock time until `run` returned.
    wall: Duration,
    /// CPU time Axon used meanwhile (the bench's process, less an in-process server's).
    axon_cpu: Duration,
    /// CPU time the server used meanwhile.
    server_cpu: Duration,
    /// CPU time the bench's threads used meanwhile, by thread name.
    threads: BTreeMap<String, Duration>,
}

/// One run of the workload with `tracking`, in a fresh store `i` in `dir`.
async fn one_run(dir: &Path, i: u64, tracking: Tracking, servers: &Servers) -> Took {
    let workflow = common::independent(N).to_workflow(RUN_GROUP, |_| serde_json::Value::Null);
    let opts = RunOptions {
        workspace: dir.to_path_buf(),
        ..RunOptions::default()
    };
    let store = store(dir, i).await;
    let bridge: Arc<dyn axon_engine::cortex::CortexBridge> = match tracking {
        Tracking::Off => Arc::new(LocalCortex::new(Arc::clone(&store))),
        Tracking::On(server) => Arc::new(
            HttpCortex::connect(tracking_config(servers.url(server)), Arc::clone(&store))
                .await
                .expect("the fake Cortex is healthy"),
        ),
    };
    let engine = Engine::new(pool())
        .with_store(Arc::clone(&store))
        .with_cortex(bridge);
    let cpu = Cpu::now(servers);
    let threads = threads_cpu();
    let start = Instant::now();
    let report = engine.run(workflow, opts).await.expect("the run ends");
    let wall = start.elapsed();
    let (axon_cpu, server_cpu) = Cpu::now(servers).since(cpu, tracking);
    let threads = threads_since(&threads, &threads_cpu());
    assert_eq!(report.totals.succeeded as usize, N);
    if let Tracking::On(server) = tracking {
        let owed = store.outbox_counts(report.run_id).await.expect("counts");
        assert!(owed.is_empty(), "every tracking call delivered: {owed:?}");
        check_server(&servers.url(server), report.run_id).await;
    }
    Took {
        wall,
        axon_cpu,
        server_cpu,
        threads,
    }
}

/// Asks the server, over its HTTP API, whether it holds `run`: its workflow's task, `done`, and
/// exactly one `done` task per Axon task, each under the workflow's.
async fn check_server(url: &str, run: Uuid) {
    let client = CortexClient::new(ClientConfig::new(url)).expect("a client");
    let filter = |tag: String| TaskFilter {
        tags: vec![tag],
        ..TaskFilter::default()
    };
    let workflow = client
        .list_tasks(&filter(format!("axon-run:{run}")))
        .await
        .expect("the server lists the workflow's task");
    assert_eq!(workflow.len(), 1, "one Cortex task for the workflow");
    assert_eq!(
        workflow[0].status,
        TaskStatus::Done,
        "the workflow's task is done"
    );
    let tasks = client
        .list_tasks(&filter(format!("axon-parent:{}", workflow[0].id)))
        .await
        .expect("the server lists the tasks");
    let ids: BTreeSet<&str> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Done)
        .filter_map(|t| t.tags.iter().find_map(|tag| tag.strip_prefix("axon-task:")))
        .collect();
    assert_eq!(
        (tasks.len(), ids.len()),
        (N, N),
        "one done Cortex task per Axon task"
    );
}

/// The median of `xs` (sorted here).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    (xs[(n - 1) / 2] + xs[n / 2]) / 2.0
}

/// `ROUNDS` rounds of the three runs, rotating which goes first; prints each, the median
/// ratios, and the mean CPU time per run of Axon and of the server.
fn interleaved(rt: &tokio::runtime::Runtime, servers: &Servers) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut ratios = [Vec::new(), Vec::new()];
    let mut cpu = [(Duration::ZERO, Duration::ZERO); 3];
    let mut threads: [BTreeMap<String, Duration>; 3] = Default::default();
    println!(
        "\nInterleaved rounds ({N} tasks each; ms; the own process at {}):",
        servers.own_process.priority
    );
    println!(
        "{:>5} {:>9} {:>11} {:>8} {:>11} {:>8}",
        "round", "off", "in-process", "on/off", "own proc.", "on/off"
    );
    let rounds = rounds();
    for r in 0..rounds {
        let mut took: [Took; 3] = Default::default();
        for k in 0..3 {
            let which = (r + k) % 3;
            let i = 2_000_000 + (r * 3 + k) as u64;
            took[which] = rt.block_on(one_run(dir.path(), i, Tracking::ALL[which], servers));
            cpu[which].0 += took[which].axon_cpu;
            cpu[which].1 += took[which].server_cpu;
            for (name, used) in &took[which].threads {
                *threads[which].entry(name.clone()).or_default() += *used;
            }
        }
        let ms = |t: &Took| t.wall.as_secs_f64() * 1e3;
        let ratio = |t: &Took| t.wall.as_secs_f64() / took[0].wall.as_secs_f64();
        ratios[0].push(ratio(&took[1]));
        ratios[1].push(ratio(&took[2]));
        println!(
            "{r:>5} {:>9.1} {:>11.1} {:>8.3} {:>11.1} {:>8.3}",
            ms(&took[0]),
            ms(&took[1]),
            ratio(&took[1]),
            ms(&took[2]),
            ratio(&took[2])
        );
    }
    for (label, ratios) in [
        "server in process",
        "server in its own idle-priority process",
    ]
    .into_iter()
    .zip(&mut ratios)
    {
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let m = median(ratios);
        println!(
            "median on/off over {rounds} rounds, {label}: {m:.3} ({:+.1}% per task; range {lo:.2}-{hi:.2})",
            (m - 1.0) * 100.0
        );
    }
    let per_run = |d: Duration| d.as_secs_f64() * 1e3 / rounds as f64;
    println!("CPU time per run (mean, ms; the agents' processes not included):");
    for (tracking, (axon, server)) in Tracking::ALL.into_iter().zip(cpu) {
        println!(
            "  {:<24} Axon {:>7.0}   server {:>6.0}",
            tracking.name(),
            per_run(axon),
            per_run(server)
        );
    }
    println!(
        "CPU time per run by thread name (mean, ms; threads that ended during a run not included):"
    );
    let names: BTreeSet<&String> = threads.iter().flat_map(|t| t.keys()).collect();
    for name in names {
        let used =
            |t: &BTreeMap<String, Duration>| per_run(t.get(name).copied().unwrap_or_default());
        println!(
            "  {name:<20} {:>7.0} {:>7.0} {:>7.0}   ({}, {}, {})",
            used(&threads[0]),
            used(&threads[1]),
            used(&threads[2]),
            Tracking::ALL[0].name(),
            Tracking::ALL[1].name(),
            Tracking::ALL[2].name()
        );
    }
    println!("load average now {}", common::load_average());
}

fn run_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, servers: &Servers) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group(RUN_GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(15));
    let mut i = 0u64;
    for tracking in Tracking::ALL {
        g.bench_function(tracking.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    total += rt.block_on(one_run(dir.path(), i, tracking, servers)).wall;
                }
                total
            });
        });
    }
    g.finish();
}

/// A store holding one finished run (its lease lapsed) with `DRAIN_CALLS` queued calls.
async fn backlog(dir: &Path, i: u64) -> Arc<dyn Store> {
    let store = store(dir, 1_000_000 + i).await;
    let run_id = uuid::Uuid::now_v7();
    let run = RunRecord {
        run_id,
        workflow_id: "w".into(),
        workflow_name: "W".into(),
        status: RunStatus::Succeeded,
        created_at_ms: 1,
        finished_at_ms: Some(2),
        workspace: "/tmp".into(),
        workflow_source: String::new(),
        workflow_format: "yaml".into(),
        agents_source: None,
        agents_format: None,
        agents_dir: None,
        cancel_requested: false,
    };
    let tasks: Vec<TaskRecord> = (0..N)
        .map(|t| TaskRecord::pending(format!("t{t}"), t as u32, format!("Task {t}")))
        .collect();
    let lapsed = Lease {
        host: "elsewhere".into(),
        pid: 1,
        expires_at_ms: 0,
    };
    store
        .create_run(&run, &tasks, &lapsed)
        .await
        .expect("the run is recorded");
    let mut items = vec![NewOutboxItem::workflow(
        "create_workflow",
        serde_json::json!({ "title": "W", "description": "", "tags": ["axon"] }),
    )];
    for t in 0..N {
        let id = format!("t{t}");
        items.push(NewOutboxItem::task(
            &id,
            "create_task",
            serde_json::json!({ "title": id, "description": "" }),
        ));
        items.push(NewOutboxItem::task(
            &id,
            "update_task",
            serde_json::json!({ "status": "inprogress", "assigned_to": ["a"], "progress": 0.0 }),
        ));
        items.push(NewOutboxItem::task(
            &id,
            "update_task",
            serde_json::json!({ "status": "done", "progress": 1.0, "actual_hours": 0.1 }),
        ));
    }
    store
        .outbox_push(run_id, &items, 0)
        .await
        .expect("the calls are queued");
    store
}

fn drain_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, servers: &Servers) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut g = c.benchmark_group(DRAIN_GROUP);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    let mut i = 0u64;
    for (name, server) in [
        ("deliver_backlog", Server::InProcess),
        ("deliver_backlog_own_process", Server::OwnProcess),
    ] {
        let url = servers.url(server);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    total += rt.block_on(async {
                        let store = backlog(dir.path(), i).await;
                        let start = Instant::now();
                        let report = deliver_backlog(
                            ClientConfig::new(url.clone()),
                            store,
                            None,
                            Duration::from_secs(30),
                        )
                        .await
                        .expect("the backlog is delivered");
                        let took = start.elapsed();
                        assert!(report.is_complete(), "{report:?}");
                        assert_eq!(report.runs[0].delivered as usize, DRAIN_CALLS);
                        took
                    });
                }
                total
            });
        });
    }
    g.finish();
}

fn summary(dir: &Path, since: SystemTime, servers: &Servers) {
    let mean = |g: &str, f: &str| common::criterion_mean_ns(dir, g, f, since);
    println!(
        "\nSummary (criterion means of this run; load average now {}):",
        common::load_average()
    );
    if let Some(off) = mean(RUN_GROUP, Tracking::Off.name()) {
        println!(
            "{N} tasks of `true`, {CONCURRENCY} at a time: tracking off {:.1} us/task",
            off / 1e3 / N as f64
        );
        for (tracking, label) in [
            (Tracking::On(Server::InProcess), "server in process"),
            (
                Tracking::On(Server::OwnProcess),
                "server in its own idle-priority process",
            ),
        ] {
            if let Some(on) = mean(RUN_GROUP, tracking.name()) {
                println!(
                    "  tracking on, {label}: {:.1} us/task; on / off = {:.3} ({:+.1}% per task)",
                    on / 1e3 / N as f64,
                    on / off,
                    (on / off - 1.0) * 100.0
                );
            }
        }
    }
    println!(
        "  (the own process runs at {})",
        servers.own_process.priority
    );
    for f in ["deliver_backlog", "deliver_backlog_own_process"] {
        if let Some(drain) = mean(DRAIN_GROUP, f) {
            println!(
                "outbox ({f}): {DRAIN_CALLS} calls delivered in {:.1} ms = {:.0} calls/s",
                drain / 1e6,
                DRAIN_CALLS as f64 / (drain / 1e9)
            );
        }
    }
}

/// `AXON_BENCH_SQL=1`: SQLite's time per statement, from sqlx's statement log (`sqlx::query`
/// events), summed per statement text.
mod sql_time {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer};

    /// Per statement (its first 110 characters): how many ran, seconds, rows.
    type Totals = HashMap<String, (u64, f64, u64)>;

    static TOTALS: Mutex<Option<Totals>> = Mutex::new(None);

    /// The fields of one `sqlx::query` event.
    #[derive(Default)]
    struct Statement {
        summary: String,
        text: String,
        secs: f64,
        rows: u64,
    }

    impl Visit for Statement {
        fn record_str(&mut self, f: &Field, v: &str) {
            match f.name() {
                "summary" => self.summary = v.to_owned(),
                "db.statement" => self.text = v.to_owned(),
                _ => {}
            }
        }
        fn record_f64(&mut self, f: &Field, v: f64) {
            if f.name() == "elapsed_secs" {
                self.secs = v;
            }
        }
        fn record_u64(&mut self, f: &Field, v: u64) {
            if matches!(f.name(), "rows_affected" | "rows_returned") {
                self.rows += v;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }

    /// Sums the statements sqlx logs.
    pub struct Summing;

    impl<S: tracing::Subscriber> Layer<S> for Summing {
        fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut st = Statement::default();
            e.record(&mut st);
            let text = if st.text.trim().is_empty() {
                &st.summary
            } else {
                &st.text
            };
            let key: String = text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(110)
                .collect();
            let mut totals = TOTALS.lock().unwrap_or_else(PoisonError::into_inner);
            let t = totals
                .get_or_insert_with(HashMap::new)
                .entry(key)
                .or_insert((0, 0.0, 0));
            t.0 += 1;
            t.1 += st.secs;
            t.2 += st.rows;
        }
    }

    /// What was summed since the last call, most time first.
    pub fn take() -> Vec<(String, (u64, f64, u64))> {
        let totals = TOTALS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        let mut v: Vec<_> = totals.into_iter().collect();
        v.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        v
    }
}

/// `AXON_BENCH_SQL=1`: runs tracking off and on (server in its own process), a warm-up and
/// `RUNS` runs each, and prints SQLite's time per run by statement.
fn sql_time(rt: &tokio::runtime::Runtime, servers: &Servers) {
    use tracing_subscriber::prelude::*;
    const RUNS: u64 = 4;
    let only_statements = tracing_subscriber::filter::Targets::new()
        .with_target("sqlx::query", tracing::Level::TRACE);
    tracing_subscriber::registry()
        .with(sql_time::Summing.with_filter(only_statements))
        .init();
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (k, tracking) in [Tracking::Off, Tracking::On(Server::OwnProcess)]
        .into_iter()
        .enumerate()
    {
        let first = 3_000_000 + k as u64 * 100;
        rt.block_on(one_run(dir.path(), first, tracking, servers));
        sql_time::take();
        for i in 1..=RUNS {
            rt.block_on(one_run(dir.path(), first + i, tracking, servers));
        }
        let statements = sql_time::take();
        let total: f64 = statements.iter().map(|s| s.1.1).sum();
        println!(
            "\n{}: SQLite's time per run {:.1} ms; by statement (ms, runs, rows, per run):",
            tracking.name(),
            total * 1e3 / RUNS as f64
        );
        for (text, (count, secs, rows)) in statements.iter().take(25) {
            println!(
                "{:>8.2} {:>6} {:>7}  {text}",
                secs * 1e3 / RUNS as f64,
                count / RUNS,
                rows / RUNS
            );
        }
    }
}

fn main() {
    let since = SystemTime::now();
    let dir = common::criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let rt = common::runtime();
    let servers = Servers {
        in_process: InProcess::start(),
        own_process: OwnProcess::start(&rt),
    };
    if std::env::var_os("AXON_BENCH_SQL").is_some() {
        sql_time(&rt, &servers);
        return;
    }
    run_bench(&mut c, &rt, &servers);
    drain_bench(&mut c, &rt, &servers);
    c.final_summary();
    // `--profile-time` (under a profiler) runs the chosen functions only.
    if common::full_run() && !std::env::args().any(|a| a == "--profile-time") {
        summary(&dir, since, &servers);
        interleaved(&rt, &servers);
    }
}
