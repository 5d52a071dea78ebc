//! Opening the state database, and run ids as users type them.

use std::path::{Path, PathBuf};

use axon_store::SqliteStore;
use uuid::Uuid;

/// Where the database lives: `--db`, or `.axon/axon.db` under `workspace`.
pub fn db_path(db: Option<&Path>, workspace: &Path) -> PathBuf {
    db.map_or_else(
        || workspace.join(".axon").join("axon.db"),
        Path::to_path_buf,
    )
}

/// Opens (creating) the database. When it lives in a `.axon` directory, that directory gets a
/// `.gitignore` containing `*`, so nothing of Axon's shows in the user's `git status` (the
/// user's own `.gitignore` is never edited).
pub async fn open(path: &Path) -> anyhow::Result<SqliteStore> {
    if let Some(dir) = path.parent()
        && dir.file_name().is_some_and(|n| n == ".axon")
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "*\n")
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", ignore.display()))?;
        }
    }
    SqliteStore::open(path).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the state database {}: {}",
            path.display(),
            chain(&e)
        )
    })
}

/// Opens an existing database for reading commands (never creates one).
pub async fn open_existing(path: &Path) -> anyhow::Result<SqliteStore> {
    if !path.exists() {
        anyhow::bail!(
            "no state database at {} (runs are recorded there by `axon run`; use --db to point elsewhere)",
            path.display()
        );
    }
    open(path).await
}

/// Parses a run id.
pub fn parse_run_id(text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text.trim()).map_err(|_| {
        anyhow::anyhow!("`{text}` is not a run id (run ids look like 01938f2e-7c1a-7d2b-9a4e-3f1c2b5d6e7f; `axon runs` lists them)")
    })
}

/// A run id argument; on a malformed one, says so and returns `None` (a usage error).
pub fn run_id_arg(text: &str) -> Option<Uuid> {
    match parse_run_id(text) {
        Ok(id) => Some(id),
        Err(e) => {
            eprintln!("axon: error: {e}");
            None
        }
    }
}

/// An error and its causes on one line.
pub use axon_engine::error::chain;
