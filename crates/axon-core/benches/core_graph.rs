//! Validation and planning of large workflows, against a plain CSR baseline of the same run.
//!
//! Workloads (see `common/mod.rs`): layered random DAGs of 10k, 100k and 1M tasks (about 3
//! edges per task) and a chain of 1M tasks. For each, one criterion group of the same name:
//!
//! - `validate`: `axon_core::validate(&workflow, None)`: every check, the DAG index and the
//!   plan (what `axon validate` does after reading the file);
//! - `index_plan`: `DagIndex::build` + `Plan::new` alone;
//! - `csr_int`: the baseline, a plain Vec/CSR index built from integer edge lists + Kahn +
//!   longest path, written here;
//! - `csr_fx`, `csr_sip`: the same baseline on the workflow's string ids, interned through a
//!   `HashMap<&str, u32>` with rustc-hash's Fx hasher and with std's SipHash.
//!
//! After criterion, a summary prints each mean per task and as a ratio to `csr_int`.
//! Run: `cargo bench -p axon-core --bench core_graph` (add `-- layered_1m` to filter).

mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use axon_core::{DagIndex, Plan, validate};
use criterion::{Criterion, SamplingMode, Throughput};
use rustc_hash::FxBuildHasher;

const FUNCTIONS: &[&str] = &["validate", "index_plan", "csr_int", "csr_fx", "csr_sip"];

fn workloads() -> &'static [&'static str] {
    if common::full_run() {
        &["layered_10k", "layered_100k", "layered_1m", "chain_1m"]
    } else {
        &["layered_10k"]
    }
}

fn graph_benches(c: &mut Criterion) {
    for &label in workloads() {
        let graph = common::by_label(label).expect("a known workload");
        let n = graph.len();
        let workflow = graph.to_workflow();
        let deps = graph.dep_lists();
        let weights = graph.weights_ms();

        // The planner and the baseline must agree before their times are compared.
        let baseline = common::csr_plan_int(&deps, &weights).expect("generated graphs are DAGs");
        let checked = validate(&workflow, None);
        assert!(checked.is_valid(), "{:?}", checked.diagnostics.first());
        let plan = checked.plan.expect("a valid workflow has a plan");
        assert_eq!(plan.makespan.as_millis() as u64, baseline.makespan_ms);
        assert_eq!(checked.index.edge_count(), graph.edge_count());
        for (t, &es) in plan.tasks.iter().zip(&baseline.earliest_ms) {
            assert_eq!(t.earliest_start_ms, es);
        }
        drop((graph, baseline, plan, checked.index));

        let mut g = c.benchmark_group(label);
        g.throughput(Throughput::Elements(n as u64));
        // Flat sampling (the same number of iterations in every sample) keeps the slow
        // functions from needing hundreds of iterations; 1M tasks get criterion's minimum.
        let (samples, seconds) = match n {
            1_000_000.. => (10, 5),
            100_000.. => (20, 4),
            _ => (50, 3),
        };
        g.sample_size(samples)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(seconds));
        g.bench_function("validate", |b| {
            b.iter(|| validate(black_box(&workflow), None));
        });
        g.bench_function("index_plan", |b| {
            b.iter(|| {
                let (index, _problems) = DagIndex::build(black_box(&workflow));
                Plan::new(&workflow, &index)
            });
        });
        g.bench_function("csr_int", |b| {
            b.iter(|| common::csr_plan_int(black_box(&deps), &weights));
        });
        g.bench_function("csr_fx", |b| {
            b.iter(|| common::csr_plan_interned::<FxBuildHasher>(black_box(&workflow)));
        });
        g.bench_function("csr_sip", |b| {
            b.iter(|| common::csr_plan_interned::<std::hash::RandomState>(black_box(&workflow)));
        });
        g.finish();
    }
}

/// Prints the means of this run per task and as ratios to the plain integer CSR.
fn summary(dir: &std::path::Path, since: SystemTime) {
    let mut header = false;
    for &label in workloads() {
        let Some(graph_n) = common::label_size(label) else {
            continue;
        };
        let means: Vec<Option<f64>> = FUNCTIONS
            .iter()
            .map(|f| common::criterion_mean_ns(dir, label, f, since))
            .collect();
        if means.iter().all(Option::is_none) {
            continue;
        }
        if !header {
            println!(
                "\nSummary (criterion means of this run; ratio = time / csr_int; load average now {}):",
                common::load_average()
            );
            println!(
                "{:<14} {:<11} {:>12} {:>9} {:>8}",
                "workload", "function", "mean ms", "ns/task", "ratio"
            );
            header = true;
        }
        let base = means[2];
        for (f, m) in FUNCTIONS.iter().zip(&means) {
            let Some(m) = m else { continue };
            let ratio = base.map_or_else(|| "-".to_owned(), |b| format!("{:.2}x", m / b));
            println!(
                "{:<14} {:<11} {:>12.2} {:>9.1} {:>8}",
                label,
                f,
                m / 1e6,
                m / graph_n as f64,
                ratio
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
    graph_benches(&mut c);
    c.final_summary();
    summary(&dir, since);
}
