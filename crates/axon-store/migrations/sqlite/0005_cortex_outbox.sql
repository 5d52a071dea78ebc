-- The durable outbox of tracking calls to a Cortex server, and the ids Cortex gave the tasks
-- Axon created there. The engine enqueues calls in the same transaction as the task state they
-- report; a delivery worker sends them in order per (run, task), retrying with backoff, so a
-- run never waits for (or fails because of) Cortex, and a later sync delivers the backlog.

CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order calls are delivered in
    run_id              TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task_id             TEXT,                               -- NULL: the run's workflow record
    kind                TEXT NOT NULL,                      -- create_workflow | create_task | ...
    payload             TEXT NOT NULL,                      -- JSON
    created_at_ms       INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,         -- failed deliveries so far
    next_attempt_at_ms  INTEGER NOT NULL,
    last_error          TEXT,
    delivered_at_ms     INTEGER,
    -- 1 on the oldest undelivered item of its (run_id, task_id), 0 on every other item: only
    -- heads may be delivered, which keeps each task's calls in order. Kept by the store on
    -- every insert and delivery, so finding due items reads heads only, however long the
    -- queue behind a failing head (a scan with NOT EXISTS took 50-100 ms at 100k rows).
    is_head             INTEGER NOT NULL DEFAULT 0
);

-- The queue of each (run, task): is there an older undelivered item, which one is next.
CREATE INDEX outbox_queue ON outbox (run_id, task_id, id) WHERE delivered_at_ms IS NULL;
-- Due heads, oldest first (covering: the due time is read from the index).
CREATE INDEX outbox_heads ON outbox (id, next_attempt_at_ms) WHERE is_head = 1;
-- The same, for one run.
CREATE INDEX outbox_heads_by_run ON outbox (run_id, id) WHERE is_head = 1;

CREATE TABLE cortex_ids (
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task_id    TEXT,                                        -- NULL: the run's workflow record
    remote_id  TEXT NOT NULL,                               -- the Cortex task id
    UNIQUE (run_id, task_id)
);

-- UNIQUE treats NULLs as distinct: this makes the workflow record's id unique per run.
CREATE UNIQUE INDEX cortex_ids_one_workflow_per_run ON cortex_ids (run_id) WHERE task_id IS NULL;
