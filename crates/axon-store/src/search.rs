//! Episode search in SQLite: the best `limit` episodes by FTS5's bm25, exactly as one ranking
//! of every match orders them (same episodes, same scores, ties to the newest), while scoring
//! far fewer rows.
//!
//! bm25 costs FTS5 half a microsecond or more for every row it scores, and a query of a few
//! words matches tens of thousands of episodes when one of them is common (`add`, `fix`).
//! Walking those rows without scoring them costs a tenth of that or less. So:
//!
//! - **A bound per word.** bm25 adds one term per query word: `idf × f × (k1 + 1) / (f + k1 ×
//!   (1 − b + b × length / average length))`, where `f` is the word's weighted count in the
//!   row. Whatever `f` and the length, that is below `idf × (k1 + 1)`. Its idf comes from the
//!   word's document count (`episodes_vocab`) and the row count, bounded from above by the
//!   highest episode id; raised a little for rounding, the bound is never below what FTS5
//!   computes.
//! - **Narrower queries, same scores.** The term of a word missing from a row is exactly
//!   `+0.0`, so a row's score depends only on the words it holds, added in the order the query
//!   lists them. Any FTS5 query listing the words in the same order, as `(a) AND (b OR c)`
//!   (every group in order, each word once) with `NOT (d)` after it, scores each row it matches
//!   exactly as `a OR b OR c OR d` does. (Rows matched through `AND` and `OR` alone see every
//!   listed word they hold; `OR` inside `AND` is the only nesting used.) Rows can also be
//!   filtered outside FTS5 (`+rowid IN (...)`): that changes which rows are scored, not how.
//! - **Rare words first.** The words held by the fewest episodes (together at most a twentieth
//!   of them) make the rare side: every episode holding one of them is ranked with the whole
//!   query. The others hold frequent words only, so none scores above the sum of those words'
//!   bounds; when the rare side's k-th best beats that sum, it is the answer.
//! - **Otherwise, only the frequent-side rows that could compete.** With `θ` the k-th best
//!   score found so far, a row can only beat it if its words' bounds add up to `θ` or more. The
//!   frequent words are cut, in order, into groups such that a row missing a whole group
//!   cannot; only rows holding a word of every group (and no rare word: those are ranked
//!   already) are ranked. When the rare side gives no `θ`, rows holding every frequent word
//!   give one first.
//!
//! When no bound helps, the frequent side is ranked in full: the cost of the plain search.
//!
//! **Big rankings on several cores.** What no bound can prune (one frequent word left, such as
//! `add` in `The add`: every episode holding it is a candidate) is shared out instead. A
//! ranking that may score at least [`Parallel::min_rows`] rows (by the words' document counts;
//! the highest episode id when they were not read or the word is not a term as written) is
//! cut into disjoint rowid ranges, each ranked by its own statement on its own connection, at
//! the same time (the SQLite driver runs each connection on a thread of its own), and the best
//! `limit` of all ranges are kept in the same order. FTS5 takes `rowid >= ? AND rowid <= ?` as
//! the bounds of its walk of each word's rows (not a restart per row, as a rowid list would
//! be), and bm25 takes the row count, the average length and each word's row count from the
//! whole table, not the range: every row gets the score the single statement gives it, to the
//! bit. The last range ends at the highest episode id of the search's snapshot, so an episode
//! recorded meanwhile is in none of them. A store with one connection (in memory), or whose
//! other connections are all in use, ranks in one statement as before.
//!
//! **Off by default** ([`Parallel::NEVER`]; [`SqliteStore::with_parallel_search`] turns it
//! on). With the workspace's SQLite build (no memory statistics, no memory management: see
//! `.cargo/config.toml`) two statements at once no longer queue on a process-wide mutex, and
//! on an idle machine splitting cuts the heaviest searches by a third (p99 15-16 ms to
//! 10.5-11.6 ms over 100k episodes, BENCHMARKS.md). On a machine whose cores are busy (an
//! engine's agents at work) the second statement waits for a core and splitting made p99
//! worse (19-25 ms against 15-16 ms), so a store splits only when asked to. A SQLite built
//! with those features (sqlx's defaults, elsewhere) makes concurrent statements slower than
//! one after the other (51 against 29 ms for `the`).
//!
//! [`SqliteStore::with_parallel_search`]: crate::SqliteStore::with_parallel_search
//!
//! **Consistency.** A search answers as of one snapshot, its transaction's: every statement on
//! its connection reads it. A range ranked on another connection reads a snapshot of its own,
//! taken a little later, so it also reads FTS5's averages and structure records there, which
//! every write to the index changes (the structure record lists its segments, and counts the
//! pages ever written; a test pins it). When they
//! differ from the search's, a write came in between, and that range is ranked again on the
//! search's connection. So the answer is always the plain search's answer in the search's
//! snapshot, as when everything ran in one transaction.

use std::cmp::Ordering;
use std::collections::HashMap;

use futures_util::future::{try_join, try_join_all};
use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, Sqlite, SqliteConnection, SqlitePool};

use crate::StoreError;
use crate::episode::{fts_query, fts_query_all};

/// bm25's `k1` in FTS5 (not configurable there).
const K1: f64 = 1.2;

/// FTS5's idf for a word held by half of all rows or more.
const MIN_IDF: f64 = 1e-6;

/// How much each bound is raised, relatively, to cover rounding. FTS5's score and our sum of
/// bounds are each a few parts in 10^16 from the exact values.
const ROUNDING: f64 = 1e-9;

/// The rare side holds at most this fraction of all episodes (1/20).
const RARE_SHARE: i64 = 20;

/// Every row of a MATCH, scored, the best `limit` first. Ranked inside the FTS table, with
/// the column weights name 10, error 1 (a name match outweighs an error match); ties go to the
/// newest (ids grow as episodes are recorded).
const RANK: &str = "SELECT rowid, bm25(episodes_fts, 10.0, 1.0) AS rank FROM episodes_fts
     WHERE episodes_fts MATCH ?1 ORDER BY rank, rowid DESC LIMIT ?2";

/// The rows of the first MATCH that also match the second, scored by the first. The `+` keeps
/// the rowid test out of FTS5: pushed into it, the rowid list would restart the FTS5 query,
/// and bm25's counting of every word's rows, once per listed row.
pub(crate) const RANK_WITHIN: &str =
    "SELECT rowid, bm25(episodes_fts, 10.0, 1.0) AS rank FROM episodes_fts
     WHERE episodes_fts MATCH ?1
       AND +rowid IN (SELECT rowid FROM episodes_fts WHERE episodes_fts MATCH ?2)
     ORDER BY rank, rowid DESC LIMIT ?3";

/// [`RANK`] over the rows whose id is in `?2..=?3`. FTS5 takes both bounds into its walk of
/// each word's rows (its index string shows `>` and `<`).
pub(crate) const RANK_RANGE: &str =
    "SELECT rowid, bm25(episodes_fts, 10.0, 1.0) AS rank FROM episodes_fts
     WHERE episodes_fts MATCH ?1 AND rowid >= ?2 AND rowid <= ?3
     ORDER BY rank, rowid DESC LIMIT ?4";

/// [`RANK_WITHIN`] over the rows whose id is in `?3..=?4`.
pub(crate) const RANK_WITHIN_RANGE: &str =
    "SELECT rowid, bm25(episodes_fts, 10.0, 1.0) AS rank FROM episodes_fts
     WHERE episodes_fts MATCH ?1 AND rowid >= ?3 AND rowid <= ?4
       AND +rowid IN (SELECT rowid FROM episodes_fts
                      WHERE episodes_fts MATCH ?2 AND rowid >= ?3 AND rowid <= ?4)
     ORDER BY rank, rowid DESC LIMIT ?5";

/// FTS5's averages record (id 1: rows and tokens) and structure record (id 10: the segments,
/// and a count of the pages ever written), as the index's version: every write to the index
/// changes it. (The ids are FTS5's file format, fixed since databases keep it.)
const INDEX_VERSION: &str =
    "SELECT id, block FROM episodes_fts_data WHERE id IN (1, 10) ORDER BY id";

/// How a search may split a big ranking across the pool's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parallel {
    /// At most this many rowid ranges, each on its own connection (1: never split).
    pub(crate) parts: usize,
    /// Only a ranking that may score at least this many episodes is split: below, the cost
    /// of a second connection's statement (and of bm25's count of each word's rows, which
    /// every statement makes over the whole table) is more than the half it saves.
    pub(crate) min_rows: i64,
}

impl Parallel {
    /// Never split (the default, and always with a pool of one connection: see the module
    /// docs).
    pub(crate) const NEVER: Self = Self {
        parts: 1,
        min_rows: i64::MAX,
    };
}

/// Runs a search's rankings: on its own connection (its snapshot), and, for the big ones, also
/// on spare connections of the pool at the same time.
pub(crate) struct Ranker<'c> {
    conn: &'c mut SqliteConnection,
    pool: &'c SqlitePool,
    parallel: Parallel,
    /// The index version of the search's snapshot, once read (`None` inside: not recognised,
    /// so no ranking is split).
    version: Option<Option<IndexVersion>>,
    /// How many rankings were split (for tests).
    pub(crate) splits: usize,
    /// How many ranges were ranked again because a write came in between (for tests).
    pub(crate) reranked: usize,
}

/// The FTS5 index's averages and structure records.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IndexVersion(Vec<(i64, Vec<u8>)>);

impl IndexVersion {
    /// Both records, or `None` when they are not where FTS5 keeps them.
    pub(crate) async fn read(conn: &mut SqliteConnection) -> Result<Option<Self>, StoreError> {
        let records: Vec<(i64, Vec<u8>)> =
            sqlx::query_as(INDEX_VERSION).fetch_all(&mut *conn).await?;
        let ids: Vec<i64> = records.iter().map(|(id, _)| *id).collect();
        Ok((ids == [1, 10]).then_some(Self(records)))
    }
}

/// What a ranking ranks: the rows of a MATCH, or those of them also matching a second one.
#[derive(Debug, Clone, Copy)]
struct Ranking<'q> {
    query: &'q str,
    within: Option<&'q str>,
}

impl<'q> Ranking<'q> {
    /// Every row of `query`.
    fn of(query: &'q str) -> Self {
        Self {
            query,
            within: None,
        }
    }
}

/// Episode ids from `.0` to `.1`, both included.
type IdRange = (i64, i64);

impl<'c> Ranker<'c> {
    /// A ranker on the search's connection `conn` (in its transaction), with `pool` to borrow
    /// more from.
    pub(crate) fn new(
        conn: &'c mut SqliteConnection,
        pool: &'c SqlitePool,
        parallel: Parallel,
    ) -> Self {
        Self {
            conn,
            pool,
            parallel,
            version: None,
            splits: 0,
            reranked: 0,
        }
    }

    /// The search's own connection.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
    }

    /// The best `limit` rows of `ranking`, exactly as one statement ranks them. `scored` is
    /// at least the number of rows it scores, and `last_id` the highest episode id of the
    /// snapshot.
    async fn rank(
        &mut self,
        ranking: Ranking<'_>,
        scored: i64,
        last_id: i64,
        limit: u32,
    ) -> Result<Vec<Ranked>, StoreError> {
        let parts = self.parallel.parts;
        if parts < 2 || scored < self.parallel.min_rows || last_id < parts as i64 {
            return run(self.conn, ranking, None, limit).await;
        }
        if self.version.is_none() {
            self.version = Some(IndexVersion::read(self.conn).await?);
        }
        let Some(Some(version)) = &self.version else {
            return run(self.conn, ranking, None, limit).await;
        };
        let spare = spare_connections(self.pool, parts - 1).await;
        if spare.is_empty() {
            return run(self.conn, ranking, None, limit).await;
        }
        let ranges = cut(last_id, spare.len() + 1);
        let others = spare
            .into_iter()
            .zip(&ranges[1..])
            .map(|(conn, &range)| run_apart(conn, ranking, range, limit));
        let (mut found, others) = try_join(
            run(self.conn, ranking, Some(ranges[0]), limit),
            try_join_all(others),
        )
        .await?;
        self.splits += 1;
        for ((ranked, seen), &range) in others.into_iter().zip(&ranges[1..]) {
            if seen.as_ref() == Some(version) {
                found.extend(ranked);
            } else {
                // A write came in between: this range again, in the search's snapshot.
                self.reranked += 1;
                found.extend(run(self.conn, ranking, Some(range), limit).await?);
            }
        }
        found.sort_by(order);
        found.truncate(limit as usize);
        Ok(found)
    }
}

/// Up to `n` more connections of the pool, without waiting for one in use: idle ones, then
/// new ones while the pool is below its size. Fewer (none) when the pool is busy, or a new
/// connection cannot be opened: the ranking then runs on the search's connection alone.
async fn spare_connections(pool: &SqlitePool, n: usize) -> Vec<PoolConnection<Sqlite>> {
    let mut spare = Vec::with_capacity(n);
    while spare.len() < n {
        if let Some(conn) = pool.try_acquire() {
            spare.push(conn);
        } else if pool.size() < pool.options().get_max_connections() {
            // Opens one (it can only wait if others took the last free places meanwhile,
            // for as long as their statements run: none of them waits while holding one).
            match pool.acquire().await {
                Ok(conn) => spare.push(conn),
                Err(_) => break,
            }
        } else {
            break;
        }
    }
    spare
}

/// `parts` disjoint ranges covering every id up to `last_id` (`parts` at least 1): the first
/// from the lowest id there can be, the last up to `last_id`.
fn cut(last_id: i64, parts: usize) -> Vec<IdRange> {
    let n = parts.max(1) as i128;
    let end = |i: i128| (i128::from(last_id) * i / n) as i64;
    (0..n)
        .map(|i| {
            let start = if i == 0 { i64::MIN } else { end(i) + 1 };
            (start, end(i + 1))
        })
        .collect()
}

/// One ranking's statement, over the ids of `range` (every row when `None`).
async fn run(
    conn: &mut SqliteConnection,
    ranking: Ranking<'_>,
    range: Option<IdRange>,
    limit: u32,
) -> Result<Vec<Ranked>, StoreError> {
    let limit = i64::from(limit);
    let query = match (ranking.within, range) {
        (None, None) => sqlx::query_as(RANK).bind(ranking.query).bind(limit),
        (None, Some((lo, hi))) => sqlx::query_as(RANK_RANGE)
            .bind(ranking.query)
            .bind(lo)
            .bind(hi)
            .bind(limit),
        (Some(within), None) => sqlx::query_as(RANK_WITHIN)
            .bind(ranking.query)
            .bind(within)
            .bind(limit),
        (Some(within), Some((lo, hi))) => sqlx::query_as(RANK_WITHIN_RANGE)
            .bind(ranking.query)
            .bind(within)
            .bind(lo)
            .bind(hi)
            .bind(limit),
    };
    let rows: Vec<(i64, f64)> = query.fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|(id, rank)| Ranked { id, rank })
        .collect())
}

/// One range of a ranking on a connection of its own, in a snapshot of its own, and that
/// snapshot's index version.
async fn run_apart(
    mut conn: PoolConnection<Sqlite>,
    ranking: Ranking<'_>,
    range: IdRange,
    limit: u32,
) -> Result<(Vec<Ranked>, Option<IndexVersion>), StoreError> {
    // Deferred: the snapshot starts with the first read, and no lock is taken (WAL).
    let mut tx = conn.begin().await?;
    let version = IndexVersion::read(&mut tx).await?;
    let ranked = run(&mut tx, ranking, Some(range), limit).await?;
    tx.commit().await?;
    Ok((ranked, version))
}

/// A ranked episode: its id and its bm25 rank (lower is better; the score is its negation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ranked {
    pub(crate) id: i64,
    pub(crate) rank: f64,
}

/// How a ranking was found (for tests: every way must give the plain search's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Plan {
    /// One word: every episode holding it ranked.
    OneWord,
    /// Rare words only: every match ranked (there are few).
    RareOnly,
    /// The rare side, and the bound proved that no other episode comes close.
    RareSide,
    /// Plus the frequent-side episodes holding every frequent word; the bound proved the rest
    /// cannot compete.
    EveryFrequentWord,
    /// Plus the frequent-side episodes holding a word of every group.
    Groups,
    /// The bound proved nothing: the frequent side ranked in full.
    Fallback,
}

/// What a search knows about its words before ranking (nothing, by default: enough for one
/// word).
#[derive(Debug, Default)]
pub(crate) struct WordStats {
    /// Episodes holding each word, for the words that are terms of the index as they are.
    docs: HashMap<String, i64>,
    /// The highest episode id: never below the number of rows in the index (ids are distinct
    /// and positive), and one index lookup instead of a count over the table (2 ms at 100k).
    rows: i64,
}

impl WordStats {
    /// Reads the document counts of `words` and the highest episode id.
    pub(crate) async fn read(
        conn: &mut SqliteConnection,
        words: &[String],
    ) -> Result<Self, StoreError> {
        let docs: Vec<(String, i64)> = sqlx::query_as(
            "SELECT term, doc FROM episodes_vocab WHERE term IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::Value::from(words.to_vec()).to_string())
        .fetch_all(&mut *conn)
        .await?;
        let rows: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM episodes")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Self {
            docs: docs.into_iter().collect(),
            rows,
        })
    }

    /// Only the highest episode id (enough for one word: there is nothing to bound or to
    /// leave out, and its document count costs a walk of its rows in `episodes_vocab`).
    pub(crate) async fn read_last_id(conn: &mut SqliteConnection) -> Result<Self, StoreError> {
        let rows: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM episodes")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Self {
            docs: HashMap::new(),
            rows,
        })
    }

    /// At least the number of episodes holding `word`: its document count, or when it is not
    /// a term of the index as written (or was not read), the highest episode id.
    fn held(&self, word: &str) -> i64 {
        self.docs.get(word).copied().unwrap_or(self.rows)
    }

    /// At least the number of episodes holding any of `words`.
    fn any(&self, words: &[String]) -> i64 {
        words
            .iter()
            .fold(0_i64, |n, w| n.saturating_add(self.held(w)))
            .min(self.rows)
    }

    /// At least the number of episodes holding a word of every group.
    fn all(&self, groups: &[Vec<String>]) -> i64 {
        groups.iter().map(|g| self.any(g)).min().unwrap_or(0)
    }

    /// Those of `words` found in at least half of all episodes (by the highest id, which is
    /// never below the count), when there are two words or more. bm25 gives such a word no
    /// weight worth the name (FTS5 clamps its idf to 10^-6), so searches leave them out first.
    pub(crate) fn common(&self, words: &[String]) -> Vec<String> {
        if words.len() < 2 {
            return Vec::new();
        }
        words
            .iter()
            .filter(|w| {
                self.docs
                    .get(*w)
                    .is_some_and(|&d| d.saturating_mul(2) >= self.rows)
            })
            .cloned()
            .collect()
    }

    /// The most `word` can add to any episode's score. A word that is not a term of the
    /// index as written (FTS5 may still fold it into one) counts as held by one episode: the
    /// highest idf it could have.
    fn bound(&self, word: &str) -> f64 {
        let docs = self.docs.get(word).copied().unwrap_or(1).max(1) as f64;
        let rows = self.rows as f64;
        let idf = (((rows - docs).max(0.0) + 0.5) / (docs + 0.5)).ln();
        (K1 + 1.0) * idf.max(MIN_IDF) * (1.0 + ROUNDING)
    }

    /// Splits `words` (in their order) into the rare side and the frequent side: the words
    /// held by the fewest episodes, until those add up to more than the rare share, or until
    /// the remaining words' bounds are well below the last rare word's. Words that are not
    /// terms as written are rare.
    fn split(&self, words: &[String], limit: usize) -> (Vec<String>, Vec<String>) {
        let mut by_docs: Vec<usize> = (0..words.len()).collect();
        by_docs.sort_by_key(|&i| (self.docs.get(&words[i]).copied().unwrap_or(0), i));
        let budget = self.rows / RARE_SHARE;
        let mut rare = vec![false; words.len()];
        let mut held: i64 = 0;
        let mut last_bound = None;
        for i in by_docs {
            let Some(&docs) = self.docs.get(&words[i]) else {
                rare[i] = true;
                continue;
            };
            if held.saturating_add(docs) > budget {
                break;
            }
            let rest: f64 = (0..words.len())
                .filter(|&j| !rare[j])
                .map(|j| self.bound(&words[j]))
                .sum();
            // Enough rare episodes, and the rest add up to well below what the last rare word
            // alone gives a short name (about 0.9 of its bound): the rare side will likely
            // prove its answer, and every word more costs its episodes' scoring.
            if held >= limit as i64 && last_bound.is_some_and(|b| rest < 0.8 * b) {
                break;
            }
            rare[i] = true;
            held += docs;
            last_bound = Some(self.bound(&words[i]));
        }
        let side = |want: bool| {
            words
                .iter()
                .zip(&rare)
                .filter(|(_, r)| **r == want)
                .map(|(w, _)| w.clone())
                .collect()
        };
        (side(true), side(false))
    }
}

/// The best `limit` episodes holding any of `words` (searched in this order), by bm25, and
/// how they were found. `limit` is at least 1.
pub(crate) async fn best(
    ranker: &mut Ranker<'_>,
    words: &[String],
    stats: &WordStats,
    limit: u32,
) -> Result<(Vec<Ranked>, Plan), StoreError> {
    let Some(any) = fts_query(words) else {
        return Ok((Vec::new(), Plan::OneWord));
    };
    let last_id = stats.rows;
    if words.len() < 2 {
        let found = ranker
            .rank(Ranking::of(&any), stats.any(words), last_id, limit)
            .await?;
        return Ok((found, Plan::OneWord));
    }
    let k = limit as usize;
    let (rare, frequent) = stats.split(words, k);
    if frequent.is_empty() {
        let found = ranker
            .rank(Ranking::of(&any), stats.any(words), last_id, limit)
            .await?;
        return Ok((found, Plan::RareOnly));
    }
    let bounds: Vec<f64> = frequent.iter().map(|w| stats.bound(w)).collect();

    // The rare side: episodes holding a rare word, ranked with every word.
    let mut found = Vec::new();
    if let Some(rare_any) = fts_query(&rare) {
        let within = Ranking {
            query: &any,
            within: Some(&rare_any),
        };
        found = ranker
            .rank(within, stats.any(&rare), last_id, limit)
            .await?;
        if kth_score(&found, k).is_some_and(|t| bounds.iter().sum::<f64>() < t) {
            return Ok((found, Plan::RareSide));
        }
    }

    // The frequent side: episodes holding frequent words only.
    let mut theta = kth_score(&found, k);
    if theta.is_none_or(|t| groups(&bounds, t).len() == 1) {
        // No k-th score yet, or one too low to cut with: the frequent-side episodes holding
        // every frequent word give a (higher) one, and often the answer.
        let every: Vec<Vec<String>> = frequent.iter().map(|w| vec![w.clone()]).collect();
        if let Some(query) = fts_query_all(&every, &rare) {
            let scored = stats.all(&every);
            let ranked = ranker
                .rank(Ranking::of(&query), scored, last_id, limit)
                .await?;
            found = merge(found, ranked, k);
            theta = kth_score(&found, k);
            let proved = theta.is_some_and(|t| groups(&bounds, t).len() == frequent.len());
            if proved || frequent.len() == 1 {
                return Ok((found, Plan::EveryFrequentWord));
            }
        }
    }
    let ends = theta.map_or_else(|| vec![frequent.len()], |t| groups(&bounds, t));
    let plan = if ends.len() > 1 {
        Plan::Groups
    } else {
        Plan::Fallback
    };
    let groups = grouped(&frequent, &ends);
    if let Some(query) = fts_query_all(&groups, &rare) {
        let scored = stats.all(&groups);
        let ranked = ranker
            .rank(Ranking::of(&query), scored, last_id, limit)
            .await?;
        found = merge(found, ranked, k);
    }
    Ok((found, plan))
}

/// Cuts the frequent words (their bounds, in order) into consecutive groups such that a row
/// holding no word of a group cannot score `theta` or more: the bounds of the words outside
/// the group add up to less. Returns where each group ends (one group of all the words when no
/// cut is possible).
fn groups(bounds: &[f64], theta: f64) -> Vec<usize> {
    let mut ends: Vec<usize> = Vec::new();
    let mut start = 0;
    for end in 1..=bounds.len() {
        let outside: f64 = bounds[..start].iter().chain(&bounds[end..]).sum();
        if outside < theta {
            ends.push(end);
            start = end;
        }
    }
    if start < bounds.len() {
        // The words left over cannot make a group of their own: they join the last one.
        ends.pop();
        ends.push(bounds.len());
    }
    ends
}

/// The words of each group, from where the groups end.
fn grouped(words: &[String], ends: &[usize]) -> Vec<Vec<String>> {
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let group = words[start..end].to_vec();
            start = end;
            group
        })
        .collect()
}

/// The score (higher is better) of the `k`-th best, when there are `k`.
fn kth_score(ranked: &[Ranked], k: usize) -> Option<f64> {
    k.checked_sub(1)
        .and_then(|i| ranked.get(i))
        .map(|r| 0.0 - r.rank)
}

/// Best first, ties to the newest: the order of `ORDER BY rank, rowid DESC`.
fn order(a: &Ranked, b: &Ranked) -> Ordering {
    a.rank
        .partial_cmp(&b.rank)
        .unwrap_or(Ordering::Equal)
        .then(b.id.cmp(&a.id))
}

/// The best `k` of both lists (an episode in both has the same rank in each).
fn merge(mut a: Vec<Ranked>, b: Vec<Ranked>, k: usize) -> Vec<Ranked> {
    for r in b {
        if !a.iter().any(|x| x.id == r.id) {
            a.push(r);
        }
    }
    a.sort_by(order);
    a.truncate(k);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_cut_where_the_rest_cannot_reach_theta() {
        // Rows missing the first word reach at most 2 + 3 = 5, missing both the first and
        // the second at most 3, and so on.
        let b = [1.0, 2.0, 3.0];
        assert_eq!(groups(&b, 5.5), [1, 2, 3]);
        assert_eq!(groups(&b, 4.5), [2, 3]);
        assert_eq!(groups(&b, 3.0), [3]);
        assert_eq!(groups(&b, 0.5), [3]);
        // Words left over join the last group.
        assert_eq!(groups(&[3.0, 1.0, 1.0], 2.5), [3]);
        assert_eq!(groups(&[3.0, 3.0, 0.1], 3.5), [1, 3]);
        assert_eq!(groups(&[4.0], 1.0), [1]);
        let w: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(grouped(&w, &[1, 3]), [vec!["a"], vec!["b", "c"]]);
    }

    #[test]
    fn merging_keeps_the_best_once_ties_to_the_newest() {
        let r = |id, rank| Ranked { id, rank };
        let merged = merge(
            vec![r(1, -3.0), r(2, -1.0)],
            vec![r(2, -1.0), r(5, -1.0), r(4, -2.0)],
            3,
        );
        assert_eq!(merged, [r(1, -3.0), r(4, -2.0), r(5, -1.0)]);
        assert_eq!(kth_score(&merged, 3), Some(1.0));
        assert_eq!(kth_score(&merged, 4), None);
        assert_eq!(kth_score(&merged, 0), None);
    }

    #[test]
    fn ranges_are_disjoint_and_cover_every_id_up_to_the_last() {
        assert_eq!(cut(100, 1), [(i64::MIN, 100)]);
        assert_eq!(cut(100, 2), [(i64::MIN, 50), (51, 100)]);
        assert_eq!(cut(100, 3), [(i64::MIN, 33), (34, 66), (67, 100)]);
        assert_eq!(cut(3, 3), [(i64::MIN, 1), (2, 2), (3, 3)]);
        let huge = cut(i64::MAX, 2);
        assert_eq!(huge[1], (i64::MAX / 2 + 1, i64::MAX));
    }

    #[test]
    fn a_bound_is_never_below_fts5s_weight() {
        let stats = WordStats {
            docs: HashMap::from([("the".to_owned(), 60), ("x".to_owned(), 3)]),
            rows: 100,
        };
        // FTS5: idf = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6; a term is below 2.2 idf.
        let idf_x = (97.5f64 / 3.5).ln();
        assert!(stats.bound("x") > 2.2 * idf_x);
        assert!(stats.bound("x") < 2.2 * idf_x * 1.000_001);
        assert!(stats.bound("the") > 2.2e-6);
        // Unknown as written: as rare as a word can be.
        assert!(stats.bound("größe") > 2.2 * (99.5f64 / 1.5).ln());
    }
}
