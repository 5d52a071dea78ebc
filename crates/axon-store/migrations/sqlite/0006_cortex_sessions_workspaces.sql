-- What a run keeps of a remote Cortex server beyond its tracking outbox (0005): which server
-- the run is tracked on, the Cortex sessions its attempts opened (until they are deleted on
-- the server, so a resumed run or `axon cortex sync` deletes what a crashed engine left), and
-- the Cortex workspace created for each workspace directory (created once, then reused).

CREATE TABLE cortex_runs (
    run_id   TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
    server   TEXT NOT NULL                                -- the Cortex base URL
);

CREATE TABLE cortex_sessions (
    run_id         TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task_id        TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    session_id     TEXT NOT NULL,                         -- the Cortex session id
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (run_id, session_id)
);

CREATE TABLE cortex_workspaces (
    server         TEXT NOT NULL,                         -- the Cortex base URL
    path           TEXT NOT NULL,                         -- the workspace directory, absolute
    workspace_id   TEXT NOT NULL,                         -- the Cortex workspace id
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (server, path)
);
