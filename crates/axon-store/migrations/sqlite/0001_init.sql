-- Axon's durable state. Current-state tables (runs, tasks) are what resume reads; the event
-- log is the audit trail. Both are written in the same transaction.

CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY NOT NULL,   -- UUIDv7, sorts by creation time
    workflow_id       TEXT NOT NULL,
    workflow_name     TEXT NOT NULL,
    status            TEXT NOT NULL,               -- running | succeeded | failed | cancelled
    created_at_ms     INTEGER NOT NULL,
    finished_at_ms    INTEGER,
    workspace         TEXT NOT NULL,
    workflow_source   TEXT NOT NULL,               -- the workflow file as read, for resume
    workflow_format   TEXT NOT NULL,               -- yaml | json
    agents_source     TEXT,                        -- the agents file as read, for resume
    agents_format     TEXT,
    agents_dir        TEXT,                        -- relative agent commands resolve here
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    lease_host        TEXT,
    lease_pid         INTEGER,
    lease_expires_ms  INTEGER
);

CREATE TABLE tasks (
    run_id         TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task_id        TEXT NOT NULL,
    position       INTEGER NOT NULL,               -- index in the workflow's task list
    name           TEXT NOT NULL,
    status         TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    agent          TEXT,
    agent_pid      INTEGER,                        -- process (group) of a running command agent
    progress       REAL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    error          TEXT,
    error_kind     TEXT,
    output         TEXT,                           -- JSON
    PRIMARY KEY (run_id, task_id)
);

CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task_id  TEXT,
    kind     TEXT NOT NULL,
    attempt  INTEGER,
    agent    TEXT,
    at_ms    INTEGER NOT NULL,
    data     TEXT                                  -- JSON
);

CREATE INDEX events_by_run ON events (run_id, seq);
CREATE INDEX runs_by_creation ON runs (created_at_ms DESC);
