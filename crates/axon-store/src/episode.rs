//! Episodes: what every finished task attempt leaves behind, so later tasks (and people, through
//! `axon episodes search`) can find what similar tasks did before. This module holds the
//! records and the one piece of search logic that is not SQL: turning any user text into a
//! full-text query that cannot be a syntax error.

use std::collections::HashSet;

use axon_core::model::TaskStatus;
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// At most this many words of a query are searched; the rest are ignored (a task name is a
/// handful of words, and every word costs an index lookup).
pub const MAX_QUERY_WORDS: usize = 64;

/// One finished task attempt, as recorded for search.
///
/// As JSON (what agents receive as `context` and `axon episodes search --json` prints), with
/// snake_case keys, a duration in seconds and an RFC 3339 time:
///
/// ```json
/// {
///   "id": 42,
///   "run_id": "01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f",
///   "task_id": "index",
///   "attempt": 1,
///   "name": "Optimize database indexes",
///   "task_type": "refactoring",
///   "status": "succeeded",
///   "agent": "dev",
///   "duration_secs": 12.5,
///   "finished_at": "2026-11-25T14:50:00.123Z",
///   "output": {"files": 3},
///   "error": null,
///   "log_tail": null
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRecord {
    /// Assigned by the store; ignored on write.
    pub id: i64,
    /// The run it belongs to.
    pub run_id: Uuid,
    /// The task's id in its workflow.
    pub task_id: String,
    /// The attempt number (1 for the first).
    pub attempt: u32,
    /// The task's name: what searches match first.
    pub name: String,
    /// The task's type (`development`, `review`, ...).
    pub task_type: String,
    /// How the attempt ended: `succeeded`, `failed` or `cancelled`.
    pub status: TaskStatus,
    /// The agent that ran it.
    pub agent: Option<String>,
    /// The task's output, when it produced one.
    pub output: Option<serde_json::Value>,
    /// The last lines of the agent's log.
    pub log_tail: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long the attempt ran, in milliseconds.
    pub duration_ms: i64,
    /// When it finished, ms since the Unix epoch.
    pub finished_at_ms: i64,
}

/// An episode found by [`Store::search_episodes`](crate::Store::search_episodes).
///
/// As JSON: the episode's object with a `score` key added.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeHit {
    /// The episode.
    pub episode: EpisodeRecord,
    /// Relevance: the negated bm25 score, so higher is better. Only comparable between hits
    /// of the same search.
    pub score: f64,
}

/// The JSON shape of both types.
#[derive(Serialize)]
struct EpisodeJson<'a> {
    id: i64,
    run_id: Uuid,
    task_id: &'a str,
    attempt: u32,
    name: &'a str,
    task_type: &'a str,
    status: TaskStatus,
    agent: Option<&'a str>,
    duration_secs: f64,
    finished_at: String,
    output: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
    log_tail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
}

impl EpisodeRecord {
    fn json(&self, score: Option<f64>) -> EpisodeJson<'_> {
        EpisodeJson {
            id: self.id,
            run_id: self.run_id,
            task_id: &self.task_id,
            attempt: self.attempt,
            name: &self.name,
            task_type: &self.task_type,
            status: self.status,
            agent: self.agent.as_deref(),
            duration_secs: self.duration_ms as f64 / 1000.0,
            finished_at: rfc3339(self.finished_at_ms),
            output: self.output.as_ref(),
            error: self.error.as_deref(),
            log_tail: self.log_tail.as_deref(),
            score,
        }
    }
}

impl Serialize for EpisodeRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json(None).serialize(serializer)
    }
}

impl Serialize for EpisodeHit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.episode.json(Some(self.score)).serialize(serializer)
    }
}

/// Formats ms since the Unix epoch as RFC 3339 (UTC), e.g. `2026-11-25T14:50:00.123Z`.
fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| format!("@{ms}ms"), |t| t.to_string())
}

/// The words of a query: runs of letters and digits, lowercased, each once, at most
/// [`MAX_QUERY_WORDS`], in order of first appearance.
pub(crate) fn query_words(query: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| seen.insert(w.clone()))
        .take(MAX_QUERY_WORDS)
        .collect()
}

/// An FTS5 query matching any of `words`, or `None` when there are none. Each word is an
/// FTS5 string (`"word"`, with `"` doubled), so nothing in it is query syntax: not `AND`,
/// `NEAR`, `*`, `:` nor a parenthesis.
pub(crate) fn fts_query(words: &[String]) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let quoted: Vec<String> = words.iter().map(|w| fts_string(w)).collect();
    Some(quoted.join(" OR "))
}

/// An FTS5 query matching the rows that hold at least one word of every group and none of
/// `excluded`, or `None` when there are no groups (or an empty one). Words are quoted as in
/// [`fts_query`]. The words appear in the query in the order given (groups in order, then
/// `excluded`), which is the order bm25 adds up their weights in.
pub(crate) fn fts_query_all(groups: &[Vec<String>], excluded: &[String]) -> Option<String> {
    if groups.is_empty() || groups.iter().any(Vec::is_empty) {
        return None;
    }
    let all: Vec<String> = groups
        .iter()
        .filter_map(|g| fts_query(g).map(|q| format!("({q})")))
        .collect();
    let all = all.join(" AND ");
    Some(match fts_query(excluded) {
        Some(none) => format!("({all}) NOT ({none})"),
        None => all,
    })
}

/// `word` as an FTS5 string: in double quotes, with `"` doubled.
fn fts_string(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\"\""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn words_are_alphanumeric_runs_lowercased_once() {
        assert_eq!(
            query_words("Fix: the AND-gate's \"NEAR\" fix (x*2)"),
            ["fix", "the", "and", "gate", "s", "near", "x", "2"]
        );
        assert_eq!(query_words("Größe ändern 🎉"), ["größe", "ändern"]);
        assert!(query_words("  -- :: 🎉 \"\" ").is_empty());
        let many = (0..5_000).map(|i| format!("w{i} ")).collect::<String>();
        assert_eq!(query_words(&many).len(), MAX_QUERY_WORDS);
    }

    #[test]
    fn every_word_is_a_quoted_string() {
        let words = query_words("Review database-indexes AND");
        assert_eq!(
            fts_query(&words).unwrap(),
            r#""review" OR "database" OR "indexes" OR "and""#
        );
        assert_eq!(fts_query(&["a\"b".to_owned()]).unwrap(), r#""a""b""#);
        assert_eq!(fts_query(&[]), None);
    }

    #[test]
    fn all_of_groups_keeps_the_word_order_and_excludes_last() {
        let w = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            fts_query_all(&[w("add"), w("fix up")], &w("or\"x")).unwrap(),
            r#"(("add") AND ("fix" OR "up")) NOT ("or""x")"#
        );
        assert_eq!(fts_query_all(&[w("a b")], &[]).unwrap(), r#"("a" OR "b")"#);
        assert_eq!(fts_query_all(&[], &w("a")), None);
        assert_eq!(fts_query_all(&[w("a"), vec![]], &[]), None);
    }

    #[test]
    fn json_has_seconds_an_rfc3339_time_and_a_score_only_on_hits() {
        let ep = EpisodeRecord {
            id: 7,
            run_id: Uuid::nil(),
            task_id: "t".into(),
            attempt: 2,
            name: "Optimize database indexes".into(),
            task_type: "refactoring".into(),
            status: TaskStatus::Failed,
            agent: Some("dev".into()),
            output: None,
            log_tail: Some("line 1\nline 2".into()),
            error: Some("boom".into()),
            duration_ms: 12_500,
            finished_at_ms: 1_795_000_000_123,
        };
        let json = serde_json::to_value(&ep).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 7,
                "run_id": "00000000-0000-0000-0000-000000000000",
                "task_id": "t",
                "attempt": 2,
                "name": "Optimize database indexes",
                "task_type": "refactoring",
                "status": "failed",
                "agent": "dev",
                "duration_secs": 12.5,
                "finished_at": "2026-11-18T11:06:40.123Z",
                "output": null,
                "error": "boom",
                "log_tail": "line 1\nline 2",
            })
        );
        let hit = serde_json::to_value(EpisodeHit {
            episode: ep,
            score: 1.5,
        })
        .unwrap();
        assert_eq!(hit["score"], 1.5);
        assert_eq!(hit["name"], "Optimize database indexes");
    }
}
