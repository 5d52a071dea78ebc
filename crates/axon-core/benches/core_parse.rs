//! Reading large workflow files: `axon_core::format::parse_workflow` on YAML and JSON text of
//! the layered workloads of `core_graph`, and the whole check (parse + validate with the
//! source map) on YAML.
//!
//! One criterion group per workload, `parse_<workload>`, with `yaml`, `json` and
//! `yaml_validate`, for 10k and 100k tasks. One parse of 1M tasks takes about 20 s here, so
//! criterion's minimum of 10 samples would take over 10 minutes: the 1M files are measured
//! once each by `core_memory` (time and peak memory), and here only with
//! `AXON_BENCH_PARSE_1M=1`. Run: `cargo bench -p axon-core --bench core_parse`.

mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use axon_core::format::{Format, parse_workflow};
use axon_core::validate;
use criterion::{Criterion, SamplingMode, Throughput};

const FUNCTIONS: &[&str] = &["yaml", "json", "yaml_validate"];

fn workloads() -> &'static [&'static str] {
    if !common::full_run() {
        &["layered_10k"]
    } else if std::env::var_os("AXON_BENCH_PARSE_1M").is_some_and(|v| v == "1") {
        &["layered_10k", "layered_100k", "layered_1m"]
    } else {
        &["layered_10k", "layered_100k"]
    }
}

fn parse_benches(c: &mut Criterion) {
    for &label in workloads() {
        let graph = common::by_label(label).expect("a known workload");
        let n = graph.len();
        let yaml = graph.to_yaml();
        let json = graph.to_json();

        // The files must say exactly what the builder says.
        let built = graph.to_workflow();
        for (text, format) in [(&yaml, Format::Yaml), (&json, Format::Json)] {
            let parsed = parse_workflow(text, format).expect("generated files parse");
            assert!(parsed.diagnostics.is_empty());
            assert!(
                parsed.workflow == built,
                "{format:?} differs from the builder"
            );
        }
        drop((graph, built));
        println!(
            "{label}: YAML {:.1} MiB, JSON {:.1} MiB",
            yaml.len() as f64 / (1 << 20) as f64,
            json.len() as f64 / (1 << 20) as f64
        );

        let mut g = c.benchmark_group(format!("parse_{label}"));
        g.throughput(Throughput::Elements(n as u64));
        // One parse of 10k tasks already takes over 100 ms: flat sampling, 10 samples.
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(match n {
                1_000_000.. => 10,
                100_000.. => 5,
                _ => 3,
            }));
        g.bench_function("yaml", |b| {
            b.iter(|| parse_workflow(black_box(&yaml), Format::Yaml));
        });
        g.bench_function("json", |b| {
            b.iter(|| parse_workflow(black_box(&json), Format::Json));
        });
        g.bench_function("yaml_validate", |b| {
            b.iter(|| {
                let parsed = parse_workflow(black_box(&yaml), Format::Yaml).expect("parses");
                validate(&parsed.workflow, Some(&parsed.source_map)).is_valid()
            });
        });
        g.finish();
    }
}

/// Prints the means of this run per task.
fn summary(dir: &std::path::Path, since: SystemTime) {
    let mut header = false;
    for &label in workloads() {
        let Some(n) = common::label_size(label) else {
            continue;
        };
        let group = format!("parse_{label}");
        for f in FUNCTIONS {
            let Some(m) = common::criterion_mean_ns(dir, &group, f, since) else {
                continue;
            };
            if !header {
                println!(
                    "\nSummary (criterion means of this run; load average now {}):",
                    common::load_average()
                );
                println!(
                    "{:<20} {:<14} {:>12} {:>9}",
                    "group", "function", "mean ms", "ns/task"
                );
                header = true;
            }
            println!(
                "{:<20} {:<14} {:>12.1} {:>9.0}",
                group,
                f,
                m / 1e6,
                m / n as f64
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
    parse_benches(&mut c);
    c.final_summary();
    summary(&dir, since);
}
