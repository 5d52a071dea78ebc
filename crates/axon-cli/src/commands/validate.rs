//! `axon validate FILE... [--agents FILE]`.

use axon_core::duration;

use crate::Status;
use crate::cli::ValidateArgs;
use crate::input::{FileReport, check_workflow, load_agents};
use crate::output::{one_line, plural, print_report};

#[derive(Default)]
struct Tally {
    errors: usize,
    warnings: usize,
}

impl Tally {
    fn add(&mut self, report: &FileReport) {
        for d in &report.diagnostics {
            if d.is_error() {
                self.errors += 1;
            } else {
                self.warnings += 1;
            }
        }
    }

    fn counts(&self) -> String {
        format!(
            "{}, {}",
            plural(self.errors, "error"),
            plural(self.warnings, "warning")
        )
    }
}

/// Validates every file, prints every problem and a summary line; all on standard error.
pub fn run(args: &ValidateArgs) -> anyhow::Result<Status> {
    let mut tally = Tally::default();
    let mut agents_ok = true;
    let agents = match &args.agents {
        Some(path) => {
            let (agents, report) = load_agents(path);
            print_report(&report);
            tally.add(&report);
            agents_ok = !report.has_errors();
            agents
        }
        None => None,
    };

    let mut valid = 0usize;
    let mut last_summary = String::new();
    for path in &args.files {
        let checked = check_workflow(path, agents.as_deref());
        print_report(&checked.report);
        tally.add(&checked.report);
        if checked.report.has_errors() {
            continue;
        }
        valid += 1;
        if let Some((parsed, validation)) = &checked.checked {
            let w = &parsed.workflow;
            let path_len = validation.plan.as_ref().map_or_else(
                || "no plan".to_owned(),
                |p| {
                    format!(
                        "critical path {} within timeout {}",
                        duration::format(p.makespan),
                        duration::format(w.timeout)
                    )
                },
            );
            last_summary = format!(
                "{}: valid ({}, {}{})",
                checked.report.name,
                plural(w.tasks.len(), "task"),
                path_len,
                if agents.is_some() && agents_ok {
                    ", every task has a suitable agent"
                } else {
                    ""
                }
            );
        }
    }

    let invalid = args.files.len() - valid;
    let all_ok = invalid == 0 && agents_ok;
    let summary = if args.files.len() == 1 && all_ok {
        if tally.warnings > 0 {
            format!("{last_summary}; {}", plural(tally.warnings, "warning"))
        } else {
            last_summary
        }
    } else if args.files.len() == 1 && agents_ok {
        format!(
            "{}: invalid ({})",
            display_name(&args.files[0]),
            tally.counts()
        )
    } else {
        format!(
            "{}: {} valid, {} invalid{} ({})",
            plural(args.files.len(), "file"),
            valid,
            invalid,
            if agents_ok {
                ""
            } else {
                ", agents file invalid"
            },
            tally.counts()
        )
    };
    eprintln!("{}", one_line(&summary));
    Ok(if all_ok {
        Status::Success
    } else {
        Status::Invalid
    })
}

fn display_name(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}
