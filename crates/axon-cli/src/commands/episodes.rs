//! `axon episodes search QUERY`: full-text search of past task episodes in the state database.

use std::fmt::Write as _;
use std::path::Path;

use axon_engine::time::rfc3339;
use axon_store::{EpisodeHit, Store};

use crate::Status;
use crate::cli::EpisodesSearchArgs;
use crate::commands::run::runtime;
use crate::output::{one_line, print_stdout};
use crate::state::{chain, db_path, open_existing};
use crate::summary::secs_text;

/// At most this many characters of an error or output line are shown per hit.
const DETAIL_CHARS: usize = 120;

/// `axon episodes search QUERY`.
pub fn search(args: &EpisodesSearchArgs, db: Option<&Path>) -> anyhow::Result<Status> {
    let db = db_path(db, &std::env::current_dir()?);
    let query = args.query.join(" ");
    // No database yet means no episodes yet: nothing to find, and nothing to create.
    if !db.exists() {
        let text = if args.json {
            "[]\n".to_owned()
        } else {
            format!(
                "no episodes yet (no state database at {}; `axon run` records them)\n",
                one_line(&db.display().to_string())
            )
        };
        print_stdout(&text)?;
        return Ok(Status::Success);
    }
    runtime()?.block_on(async {
        let store = open_existing(&db).await?;
        let hits = store
            .search_episodes(&query, args.limit)
            .await
            .map_err(|e| anyhow::anyhow!(chain(&e)))?;
        let text = if args.json {
            let mut t = serde_json::to_string_pretty(&hits)?;
            t.push('\n');
            t
        } else if hits.is_empty() {
            format!("no episode matches `{}`\n", one_line(&query))
        } else {
            human(&hits)
        };
        print_stdout(&text)?;
        Ok(Status::Success)
    })
}

/// One block per hit, separated by blank lines:
///
/// ```text
/// 4.21  Optimize database indexes
///       succeeded in 12.5s by dev, attempt 1, finished 2026-11-25T14:50:00.123Z
///       run 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f, task index
///       output: {"files":3}
/// ```
fn human(hits: &[EpisodeHit]) -> String {
    let scores: Vec<String> = hits.iter().map(|h| format!("{:.2}", h.score)).collect();
    let width = scores.iter().map(String::len).max().unwrap_or(0);
    let pad = " ".repeat(width + 2);
    let mut out = String::new();
    for (i, (hit, score)) in hits.iter().zip(&scores).enumerate() {
        let e = &hit.episode;
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{score:>width$}  {}", one_line(&e.name));
        let mut how = format!(
            "{} in {}",
            e.status,
            secs_text(e.duration_ms.max(0) as f64 / 1000.0)
        );
        if let Some(agent) = &e.agent {
            let _ = write!(how, " by {}", one_line(agent));
        }
        let _ = writeln!(
            out,
            "{pad}{how}, attempt {}, finished {}",
            e.attempt,
            rfc3339(e.finished_at_ms)
        );
        let _ = writeln!(out, "{pad}run {}, task {}", e.run_id, one_line(&e.task_id));
        let detail = match (&e.error, &e.output) {
            (Some(error), _) => Some(("error", first_line(error))),
            (None, Some(output)) if !output.is_null() => {
                Some(("output", first_line(&output.to_string())))
            }
            _ => None,
        };
        if let Some((label, line)) = detail {
            let _ = writeln!(out, "{pad}{label}: {line}");
        }
    }
    out
}

/// The first non-blank line of `text`, without control characters, cut to [`DETAIL_CHARS`].
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let line = one_line(line);
    if line.chars().count() > DETAIL_CHARS {
        let mut cut: String = line.chars().take(DETAIL_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        line.into_owned()
    }
}
