-- Episodes (every finished task attempt, searchable by full text) and task tracking (the
-- embedded stand-in for Cortex's: one workflow record per run, one linked record per task).

CREATE TABLE episodes (
    id              INTEGER PRIMARY KEY,            -- the FTS rowid
    run_id          TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task_id         TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    name            TEXT NOT NULL,                  -- the task's name: what searches match first
    task_type       TEXT NOT NULL,
    status          TEXT NOT NULL,                  -- succeeded | failed | cancelled
    agent           TEXT,
    output          TEXT,                           -- JSON
    log_tail        TEXT,
    error           TEXT,
    duration_ms     INTEGER NOT NULL,
    finished_at_ms  INTEGER NOT NULL
);

CREATE INDEX episodes_by_run ON episodes (run_id, task_id, attempt);

-- External content: the text lives once, in `episodes`; the triggers below keep the index in
-- step with every insert, update and delete (including deletes cascading from `runs`).
-- Columns: name, task_type, error. Searches weigh them 10 : 2 : 1 (bm25). Log tails and
-- outputs are not indexed: they are long, and bm25 normalises by the length of the whole row,
-- so they would push a name match down.
CREATE VIRTUAL TABLE episodes_fts USING fts5(
    name,
    task_type,
    error,
    content = 'episodes',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- How many episodes hold each indexed word: searches skip words found in at least half of all
-- episodes (bm25 gives them no weight, and they would make every search rank most episodes).
CREATE VIRTUAL TABLE episodes_vocab USING fts5vocab(episodes_fts, row);

CREATE TRIGGER episodes_fts_insert AFTER INSERT ON episodes BEGIN
    INSERT INTO episodes_fts (rowid, name, task_type, error)
    VALUES (new.id, new.name, new.task_type, new.error);
END;

CREATE TRIGGER episodes_fts_delete AFTER DELETE ON episodes BEGIN
    INSERT INTO episodes_fts (episodes_fts, rowid, name, task_type, error)
    VALUES ('delete', old.id, old.name, old.task_type, old.error);
END;

CREATE TRIGGER episodes_fts_update AFTER UPDATE OF name, task_type, error ON episodes BEGIN
    INSERT INTO episodes_fts (episodes_fts, rowid, name, task_type, error)
    VALUES ('delete', old.id, old.name, old.task_type, old.error);
    INSERT INTO episodes_fts (rowid, name, task_type, error)
    VALUES (new.id, new.name, new.task_type, new.error);
END;

CREATE TABLE tracking (
    id             INTEGER PRIMARY KEY,
    run_id         TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    parent_id      INTEGER REFERENCES tracking(id) ON DELETE CASCADE,  -- the workflow record
    task_id        TEXT,                            -- NULL: the run's workflow record
    title          TEXT NOT NULL,
    status         TEXT NOT NULL,
    progress       REAL,                            -- 0..=1
    assigned_to    TEXT,
    note           TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    UNIQUE (run_id, task_id)
);

-- UNIQUE treats NULLs as distinct: this makes the workflow record unique per run.
CREATE UNIQUE INDEX tracking_one_workflow_per_run ON tracking (run_id) WHERE task_id IS NULL;
CREATE INDEX tracking_by_parent ON tracking (parent_id);
