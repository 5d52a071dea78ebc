"""The Axon command-agent protocol, for the example agents.

An agent is run once per task attempt, in the task's working directory, with:
  * stdin: one JSON document: task (id, name, type and its fields, input), workflow (id, name),
    run_id, attempt, context, upstream (outputs of prerequisite tasks by id), idempotency_key;
  * env: AXON_RUN_ID, AXON_TASK_ID, AXON_ATTEMPT, AXON_SESSION_DIR, AXON_IDEMPOTENCY_KEY.
It reports with stdout lines `::axon progress 0.42` and `::axon output {json}` (the task's
output, passed to dependents); any other line is its log. Exit 0 = success, 75 = temporary
failure (retried), anything else = failure.
"""

import json
import os
import sys

EX_TEMPFAIL = 75


def request():
    """The attempt's request (stdin)."""
    return json.load(sys.stdin)


def progress(fraction):
    print(f"::axon progress {fraction:.2f}", flush=True)


def output(value):
    print("::axon output " + json.dumps(value), flush=True)


def log(message):
    print(message, flush=True)


def write(path, text):
    """Writes a file in the workspace, creating its directory."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    log(f"wrote {path} ({len(text.splitlines())} lines)")


def fail(message, code=1):
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)
