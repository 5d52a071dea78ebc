//! Peak memory (and single-run time) of each axon-core workload; criterion measures time only.
//!
//! Every (workload, step) pair runs once in a child process of its own (this binary again,
//! with `--child WORKLOAD STEP`). The child builds the step's input, notes its resident set
//! (`VmRSS`), resets the kernel's high-water mark (`echo 5 > /proc/self/clear_refs`), runs the
//! step, and reads the high-water mark back (`VmHWM`). So "peak" is the whole process's peak
//! resident memory while the step ran, input included, and "peak - input" is what the step
//! itself added. Linux only.
//!
//! `cargo bench -p axon-core --bench core_memory` runs every workload;
//! `cargo bench -p axon-core --bench core_memory -- layered_1m` only those whose
//! `workload/step` contains the filter. Without `--bench` (as under `cargo test --benches`)
//! only the 10k workload runs, as a smoke test.

mod common;

use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use axon_core::format::{Format, parse_workflow};
use axon_core::{DagIndex, Plan, validate};
use common::Graph;
use rustc_hash::FxBuildHasher;

const GRAPH_STEPS: &[&str] = &[
    "workflow",
    "validate",
    "index_plan",
    "csr_int",
    "csr_fx",
    "csr_sip",
];
const PARSE_STEPS: &[&str] = &["parse_yaml", "parse_json", "parse_validate_yaml"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let (Some(workload), Some(step)) = (args.get(pos + 1), args.get(pos + 2)) else {
            eprintln!("usage: core_memory --child WORKLOAD STEP");
            return ExitCode::FAILURE;
        };
        return child(workload, step);
    }
    let full = args.iter().any(|a| a == "--bench");
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let workloads: &[&str] = if full {
        &["layered_10k", "layered_100k", "layered_1m", "chain_1m"]
    } else {
        &["layered_10k"]
    };
    let mut runs: Vec<(&str, &str)> = Vec::new();
    for &w in workloads {
        for &s in GRAPH_STEPS {
            runs.push((w, s));
        }
        if w.starts_with("layered") {
            for &s in PARSE_STEPS {
                runs.push((w, s));
            }
        }
    }
    runs.retain(|(w, s)| {
        let name = format!("{w}/{s}");
        filters.is_empty() || filters.iter().any(|f| name.contains(f))
    });

    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("core_memory: cannot find own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("load average before: {}", common::load_average());
    println!(
        "{:<14} {:<20} {:>9} {:>9} {:>10} {:>8} {:>11} {:>10} {:>12}",
        "workload",
        "step",
        "tasks",
        "edges",
        "time ms",
        "ns/task",
        "input MiB",
        "peak MiB",
        "peak-input"
    );
    let mut failed = false;
    for (w, s) in runs {
        let out = Command::new(&exe).args(["--child", w, s]).output();
        let line = match &out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned)),
            _ => None,
        };
        let Some(line) = line else {
            failed = true;
            let why = match out {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            eprintln!("{w}/{s} failed: {why}");
            continue;
        };
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [tasks, edges, nanos, input_kb, peak_kb] = f[..] else {
            failed = true;
            eprintln!("{w}/{s}: unreadable result `{line}`");
            continue;
        };
        let mib = |kb: u64| kb as f64 / 1024.0;
        println!(
            "{:<14} {:<20} {:>9} {:>9} {:>10.1} {:>8.0} {:>11.1} {:>10.1} {:>12.1}",
            w,
            s,
            tasks,
            edges,
            nanos as f64 / 1e6,
            nanos as f64 / tasks.max(1) as f64,
            mib(input_kb),
            mib(peak_kb),
            mib(peak_kb.saturating_sub(input_kb)),
        );
    }
    println!("load average after: {}", common::load_average());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `f` once; returns its result, the time it took, the resident set before it and the
/// peak resident set while it ran (both in KiB).
fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration, u64, u64) {
    let (input_kb, _) = rss_kb();
    // Resets VmHWM to the current VmRSS (Linux 4.0+).
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({e}); the peak includes building the input");
    }
    let start = Instant::now();
    let out = black_box(f());
    let elapsed = start.elapsed();
    let (_, peak_kb) = rss_kb();
    (out, elapsed, input_kb, peak_kb)
}

fn child(workload: &str, step: &str) -> ExitCode {
    let Some(graph) = common::by_label(workload) else {
        eprintln!("unknown workload `{workload}`");
        return ExitCode::FAILURE;
    };
    let (tasks, edges) = (graph.len(), graph.edge_count());
    let (elapsed, input_kb, peak_kb) = match step {
        "workflow" => {
            let (wf, t, a, b) = measure(|| graph.to_workflow());
            assert_eq!(wf.tasks.len(), tasks);
            (t, a, b)
        }
        "validate" => {
            let wf = graph.to_workflow();
            let makespan = baseline_makespan(&graph);
            drop(graph);
            let (v, t, a, b) = measure(|| validate(&wf, None));
            assert!(v.is_valid(), "{:?}", v.diagnostics.first());
            let plan = v.plan.expect("a valid workflow has a plan");
            assert_eq!(plan.makespan.as_millis() as u64, makespan);
            (t, a, b)
        }
        "index_plan" => {
            let wf = graph.to_workflow();
            let makespan = baseline_makespan(&graph);
            drop(graph);
            let (plan, t, a, b) = measure(|| {
                let (index, problems) = DagIndex::build(&wf);
                assert!(problems.is_empty());
                Plan::new(&wf, &index).expect("acyclic")
            });
            assert_eq!(plan.makespan.as_millis() as u64, makespan);
            (t, a, b)
        }
        "csr_int" => {
            let deps = graph.dep_lists();
            let weights = graph.weights_ms();
            drop(graph);
            let (p, t, a, b) = measure(|| common::csr_plan_int(&deps, &weights));
            assert!(p.is_some());
            (t, a, b)
        }
        "csr_fx" => {
            let wf = graph.to_workflow();
            drop(graph);
            let (p, t, a, b) = measure(|| common::csr_plan_interned::<FxBuildHasher>(&wf));
            assert!(p.is_some());
            (t, a, b)
        }
        "csr_sip" => {
            let wf = graph.to_workflow();
            drop(graph);
            let (p, t, a, b) = measure(|| common::csr_plan_interned::<std::hash::RandomState>(&wf));
            assert!(p.is_some());
            (t, a, b)
        }
        "parse_yaml" | "parse_json" | "parse_validate_yaml" => {
            let format = if step == "parse_json" {
                Format::Json
            } else {
                Format::Yaml
            };
            let text = match format {
                Format::Yaml => graph.to_yaml(),
                Format::Json => graph.to_json(),
            };
            drop(graph);
            let with_validate = step == "parse_validate_yaml";
            let (ok, t, a, b) = measure(|| {
                let parsed = parse_workflow(&text, format).expect("generated files parse");
                let valid = !with_validate
                    || validate(&parsed.workflow, Some(&parsed.source_map)).is_valid();
                parsed.workflow.tasks.len() == tasks && valid
            });
            assert!(ok);
            (t, a, b)
        }
        _ => {
            eprintln!("unknown step `{step}`");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "RESULT {tasks} {edges} {} {input_kb} {peak_kb}",
        elapsed.as_nanos()
    );
    ExitCode::SUCCESS
}

fn baseline_makespan(graph: &Graph) -> u64 {
    common::csr_plan_int(&graph.dep_lists(), &graph.weights_ms())
        .expect("generated graphs are acyclic")
        .makespan_ms
}
