//! Episode search at scale: `Store::search_episodes` (FTS5, bm25) over 100,000 episodes, against
//! a plain `LIKE '%word%'` scan of the same table for the same queries.
//!
//! Workload (fixed seed, SplitMix64): a vocabulary of 2,000 words, the 60 most frequent being
//! common task-name words (`add`, `the`, `fix`, `database`, ...) and the rest generated
//! pronounceable words; word frequencies follow Zipf's law (exponent 1, as in natural text).
//! 100,000 episodes with names of 3–8 words, six task types, 10% failed with a 4–10 word
//! error, recorded in batches of 1,000 in a SQLite file (WAL), before anything is timed.
//! 1,000 queries of 2–4 words drawn from the same distribution (so they look like task names,
//! common words included); each search asks for 5 hits, as the engine does.
//!
//! Measured:
//! - `fts`: `SqliteStore::search_episodes(query, 5)`, through the `Store` API;
//! - `like_scan` (**baseline**): `SELECT * FROM episodes WHERE name LIKE '%w1%' OR ... ORDER BY
//!   finished_at_ms DESC LIMIT 5` on a second connection to the same file: what search costs
//!   without an index (it does not rank, and matches substrings).
//!
//! Criterion reports the mean of each (cycling through the queries). Then a custom loop times
//! each of the 1,000 queries once per method and prints p50, p99 and max (and the slowest
//! queries); the target is p99 under 20 ms for `fts`.
//!
//! Run: `cargo bench -p axon-store --bench episodes`. Under `cargo test --benches` it runs once
//! on 2,000 episodes and 50 queries, as a smoke test.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use axon_core::model::{RunStatus, TaskStatus};
use axon_store::{Batch, EpisodeRecord, Lease, RunRecord, SqliteStore, Store};
use criterion::Criterion;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

const VOCABULARY: usize = 2_000;
const ZIPF_EXPONENT: f64 = 1.0;
const SEED: u64 = 0x00a7_0e91_50de_5eed;
const LIMIT: u32 = 5;
const TARGET_P99: Duration = Duration::from_millis(20);
/// How many of the slowest queries the bench names.
const SLOWEST: usize = 12;

/// The most frequent words of task names, most frequent first.
const COMMON: &[&str] = &[
    "the",
    "add",
    "fix",
    "update",
    "for",
    "test",
    "to",
    "api",
    "and",
    "refactor",
    "review",
    "database",
    "user",
    "service",
    "docs",
    "login",
    "page",
    "error",
    "handling",
    "config",
    "endpoint",
    "cache",
    "support",
    "remove",
    "migrate",
    "new",
    "build",
    "deploy",
    "auth",
    "query",
    "schema",
    "index",
    "indexes",
    "optimize",
    "write",
    "tests",
    "unit",
    "integration",
    "flow",
    "client",
    "server",
    "model",
    "data",
    "pipeline",
    "job",
    "worker",
    "queue",
    "payment",
    "search",
    "report",
    "dashboard",
    "settings",
    "profile",
    "upload",
    "file",
    "storage",
    "email",
    "notification",
    "release",
    "notes",
];

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The vocabulary and its Zipf distribution (a cumulative table).
struct Words {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Words {
    fn new(rng: &mut Rng) -> Self {
        const ONSETS: &[&str] = &[
            "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
            "z", "br", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "st", "tr", "th", "ch",
        ];
        const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"];
        const CODAS: &[&str] = &["", "", "n", "r", "s", "t", "l", "x", "nd", "st"];
        let mut words: Vec<String> = COMMON.iter().map(|w| (*w).to_owned()).collect();
        let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
        while words.len() < VOCABULARY {
            let syllables = 2 + rng.below(2);
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(ONSETS[rng.below(ONSETS.len())]);
                w.push_str(VOWELS[rng.below(VOWELS.len())]);
            }
            w.push_str(CODAS[rng.below(CODAS.len())]);
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut cdf = Vec::with_capacity(VOCABULARY);
        let mut total = 0.0;
        for rank in 1..=VOCABULARY {
            total += 1.0 / (rank as f64).powf(ZIPF_EXPONENT);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { words, cdf }
    }

    fn pick(&self, rng: &mut Rng) -> &str {
        let u = rng.unit();
        let i = self.cdf.partition_point(|&c| c < u).min(VOCABULARY - 1);
        &self.words[i]
    }

    /// `min..=max` words; the first one capitalised, like a task name.
    fn phrase(&self, rng: &mut Rng, min: usize, max: usize) -> String {
        let n = min + rng.below(max - min + 1);
        let mut out = String::new();
        for i in 0..n {
            let w = self.pick(rng);
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(w);
            }
        }
        out
    }
}

struct Workload {
    episodes: usize,
    queries: Vec<String>,
}

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Creates the database at `path` with `n` episodes; returns the queries to run.
async fn populate(path: &Path, n: usize, queries: usize) -> (SqliteStore, Workload) {
    let store = SqliteStore::open(path).await.expect("the store opens");
    let mut rng = Rng(SEED);
    let words = Words::new(&mut rng);
    let run_id = Uuid::now_v7();
    let run = RunRecord {
        run_id,
        workflow_id: "bench".into(),
        workflow_name: "Bench".into(),
        status: RunStatus::Succeeded,
        created_at_ms: 0,
        finished_at_ms: Some(0),
        workspace: "/tmp".into(),
        workflow_source: String::new(),
        workflow_format: "yaml".into(),
        agents_source: None,
        agents_format: None,
        agents_dir: None,
        cancel_requested: false,
    };
    let holder = Lease {
        host: "bench".into(),
        pid: 1,
        expires_at_ms: 0,
    };
    store
        .create_run(&run, &[], &holder)
        .await
        .expect("the run is recorded");
    const TYPES: &[&str] = &[
        "development",
        "review",
        "testing",
        "documentation",
        "refactoring",
        "custom",
    ];
    let mut batch = Batch::default();
    for i in 0..n {
        let failed = rng.below(10) == 0;
        batch.episodes.push(EpisodeRecord {
            id: 0,
            run_id,
            task_id: format!("t{i}"),
            attempt: 1,
            name: words.phrase(&mut rng, 3, 8),
            task_type: TYPES[rng.below(TYPES.len())].to_owned(),
            status: if failed {
                TaskStatus::Failed
            } else {
                TaskStatus::Succeeded
            },
            agent: Some(format!("agent{}", rng.below(8))),
            output: (!failed).then(|| serde_json::json!({"files": rng.below(20)})),
            log_tail: failed.then(|| "exit status 1".to_owned()),
            error: failed.then(|| words.phrase(&mut rng, 4, 10)),
            duration_ms: (1_000 + rng.below(600_000)) as i64,
            finished_at_ms: 1_790_000_000_000 + i as i64 * 1_000,
        });
        if batch.episodes.len() == 1_000 {
            store.commit(run_id, &batch).await.expect("a commit");
            batch.episodes.clear();
        }
    }
    store.commit(run_id, &batch).await.expect("a commit");
    let queries = (0..queries).map(|_| words.phrase(&mut rng, 2, 4)).collect();
    (
        store,
        Workload {
            episodes: n,
            queries,
        },
    )
}

/// The baseline: every name scanned with `LIKE '%word%'`, the newest matches first.
async fn like_scan(pool: &SqlitePool, query: &str) -> usize {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return 0;
    }
    let filter = vec!["name LIKE ?"; words.len()].join(" OR ");
    let sql =
        format!("SELECT * FROM episodes WHERE {filter} ORDER BY finished_at_ms DESC LIMIT {LIMIT}");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for w in &words {
        q = q.bind(format!("%{w}%"));
    }
    q.fetch_all(pool).await.expect("the scan runs").len()
}

#[derive(Clone, Copy)]
enum Method {
    Fts,
    Like,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::Fts => "fts",
            Self::Like => "like_scan",
        }
    }
}

async fn search(method: Method, store: &SqliteStore, pool: &SqlitePool, query: &str) -> usize {
    match method {
        Method::Fts => store
            .search_episodes(query, LIMIT)
            .await
            .expect("the search runs")
            .len(),
        Method::Like => like_scan(pool, query).await,
    }
}

struct Latencies {
    method: Method,
    sorted: Vec<Duration>,
    hits: usize,
    /// The slowest queries, slowest first.
    slowest: Vec<(Duration, String)>,
}

impl Latencies {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.sorted.len() as f64 * q).ceil() as usize).clamp(1, self.sorted.len());
        self.sorted[i - 1]
    }

    fn mean(&self) -> Duration {
        self.sorted.iter().sum::<Duration>() / self.sorted.len().max(1) as u32
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn main() {
    let full = full_run();
    let (n, nq) = if full { (100_000, 1_000) } else { (2_000, 50) };
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("axon.db");
    let started = Instant::now();
    let (store, workload) = rt.block_on(populate(&path, n, nq));
    eprintln!(
        "recorded {} episodes in {:.1} s",
        workload.episodes,
        started.elapsed().as_secs_f64()
    );
    let pool = rt.block_on(async {
        let options = SqliteConnectOptions::new().filename(&path);
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("a second connection")
    });

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group(format!("episodes_{}k", n / 1_000));
        for method in [Method::Fts, Method::Like] {
            if matches!(method, Method::Like) {
                group.sample_size(20);
            }
            let mut next = 0;
            group.bench_function(method.name(), |b| {
                b.iter(|| {
                    let q = &workload.queries[next % workload.queries.len()];
                    next += 1;
                    black_box(rt.block_on(search(method, &store, &pool, q)))
                });
            });
        }
        group.finish();
    }
    c.final_summary();

    // Each query once per method, timed one by one.
    let results: Vec<Latencies> = [Method::Fts, Method::Like]
        .into_iter()
        .map(|method| {
            let mut timed = Vec::with_capacity(workload.queries.len());
            let mut hits = 0;
            for q in &workload.queries {
                let start = Instant::now();
                hits += black_box(rt.block_on(search(method, &store, &pool, q)));
                timed.push((start.elapsed(), q.clone()));
            }
            timed.sort_by_key(|t| std::cmp::Reverse(t.0));
            let mut sorted: Vec<Duration> = timed.iter().map(|(d, _)| *d).collect();
            sorted.reverse();
            timed.truncate(SLOWEST);
            Latencies {
                method,
                sorted,
                hits,
                slowest: timed,
            }
        })
        .collect();

    println!();
    println!(
        "episode search: {} episodes, {} queries of 2-4 words, limit {LIMIT}",
        workload.episodes,
        workload.queries.len()
    );
    println!("| method | p50 ms | p99 ms | max ms | mean ms | hits/query |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &results {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} |",
            r.method.name(),
            ms(r.quantile(0.50)),
            ms(r.quantile(0.99)),
            ms(r.quantile(1.0)),
            ms(r.mean()),
            r.hits as f64 / workload.queries.len().max(1) as f64
        );
    }
    for r in &results {
        let slowest: Vec<String> = r
            .slowest
            .iter()
            .map(|(d, q)| format!("{} ms {q:?}", ms(*d)))
            .collect();
        println!("slowest {}: {}", r.method.name(), slowest.join(", "));
    }
    if let [fts, like] = &results[..] {
        println!(
            "like_scan / fts: p50 {:.1}x, p99 {:.1}x",
            like.quantile(0.5).as_secs_f64() / fts.quantile(0.5).as_secs_f64(),
            like.quantile(0.99).as_secs_f64() / fts.quantile(0.99).as_secs_f64()
        );
        println!(
            "target p99 < {} ms: {}",
            TARGET_P99.as_millis(),
            if fts.quantile(0.99) < TARGET_P99 {
                "met"
            } else {
                "missed"
            }
        );
    }
}
