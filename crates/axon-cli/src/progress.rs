//! Live progress of a run on standard error: indicatif bars on a terminal (one line per
//! running task with its agent, progress and elapsed time, and an overall bar), plain log
//! lines otherwise. It is a subscriber of the engine's event bus.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use axon_engine::bus::{Event, EventKind};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::summary::secs_text;

/// Shows events until the run finishes (or the bus closes).
pub async fn show(mut events: UnboundedReceiver<Event>, total: usize) {
    let mut display = if std::io::stderr().is_terminal() {
        Display::bars(total)
    } else {
        Display::Plain {
            started: Instant::now(),
        }
    };
    while let Some(e) = events.recv().await {
        let done = matches!(e.kind, EventKind::RunFinished { .. });
        display.event(&e);
        if done {
            break;
        }
    }
    display.finish();
}

enum Display {
    Plain {
        started: Instant,
    },
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        tasks: HashMap<String, ProgressBar>,
    },
}

fn task_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {prefix:<24!} {bar:20} {percent:>3}% {elapsed:>4} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Display {
    fn bars(total: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:<26} [{bar:30}] {pos}/{len} tasks done {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.set_prefix("run");
        overall.enable_steady_tick(Duration::from_millis(200));
        Self::Bars {
            multi,
            overall,
            tasks: HashMap::new(),
        }
    }

    fn line(&self, text: String) {
        match self {
            Self::Plain { started } => {
                eprintln!("[{:>7}] {text}", secs_text(started.elapsed().as_secs_f64()));
            }
            Self::Bars { multi, .. } => {
                // Printing above the bars; a closed stderr is nothing to act on.
                let _ = multi.println(text);
            }
        }
    }

    fn event(&mut self, e: &Event) {
        let task = e.task_id.as_deref().unwrap_or("");
        let agent = e.agent.as_deref().unwrap_or("?");
        let attempt = e.attempt.unwrap_or(0);
        match &e.kind {
            EventKind::RunSubmitted { tasks, resumed, .. } => {
                let verb = if *resumed { "resuming" } else { "starting" };
                self.line(format!("{verb} run {} ({tasks} tasks)", e.run_id));
            }
            EventKind::TaskStarted => {
                if let Self::Bars { multi, tasks, .. } = self {
                    let bar = multi.add(ProgressBar::new(100));
                    bar.set_style(task_style());
                    bar.set_prefix(task.to_owned());
                    bar.set_message(format!("on {agent} (attempt {attempt})"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    tasks.insert(task.to_owned(), bar);
                } else {
                    self.line(format!("{task}: started on {agent} (attempt {attempt})"));
                }
            }
            EventKind::TaskProgress { progress } => match self {
                Self::Bars { tasks, .. } => {
                    if let Some(bar) = tasks.get(task) {
                        bar.set_position((progress * 100.0).round() as u64);
                    }
                }
                Self::Plain { .. } => {
                    self.line(format!("{task}: {:.0}%", progress * 100.0));
                }
            },
            EventKind::TaskSucceeded { duration_secs } => {
                self.end_task(task, true);
                self.line(format!(
                    "{task}: succeeded in {} on {agent}",
                    secs_text(*duration_secs)
                ));
            }
            EventKind::TaskFailed { error, .. } => {
                self.end_task(task, true);
                self.line(format!("{task}: failed: {error}"));
            }
            EventKind::TaskRetrying {
                error, delay_secs, ..
            } => {
                self.end_task(task, false);
                self.line(format!(
                    "{task}: attempt {attempt} failed ({error}); retrying in {}",
                    secs_text(*delay_secs)
                ));
            }
            EventKind::TaskSkipped { because } => {
                self.end_task(task, true);
                self.line(format!("{task}: skipped (`{because}` did not succeed)"));
            }
            EventKind::TaskCancelled { reason } => {
                self.end_task(task, true);
                self.line(format!("{task}: cancelled ({reason})"));
            }
            EventKind::RunNotice { message } => self.line(format!("note: {message}")),
            EventKind::TaskDispatched { .. } | EventKind::RunFinished { .. } => {}
        }
    }

    /// Removes the task's bar; `terminal` counts it as done on the overall bar.
    fn end_task(&mut self, task: &str, terminal: bool) {
        if let Self::Bars { tasks, overall, .. } = self {
            if let Some(bar) = tasks.remove(task) {
                bar.finish_and_clear();
            }
            if terminal {
                overall.inc(1);
            }
        }
    }

    fn finish(self) {
        if let Self::Bars { overall, tasks, .. } = self {
            for bar in tasks.values() {
                bar.finish_and_clear();
            }
            overall.finish_and_clear();
        }
    }
}
