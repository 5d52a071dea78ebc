#!/usr/bin/env python3
"""Example agent for the Cortex tour.

It writes a short file for its task into its working directory, reports what Cortex gave it
(its session, and which of its context episodes came from Cortex memory), and, when its agents
file entry opts in to the API key, asks Cortex for its own session to show it is live.
Standard library only; no AI service.
"""

import json
import os
import sys
import urllib.error
import urllib.request

request = json.load(sys.stdin)
task = request["task"]
cortex = request.get("cortex")  # {url, session_id, workspace_id} when the run uses Cortex
context = request.get("context", [])

print(f"working on {task['id']}: {task['name']}")
print("::axon progress 0.3")

with open(f"{task['id']}.md", "w", encoding="utf-8") as f:
    f.write(f"# {task['name']}\n\nWritten by the Cortex tour agent.\n")

report = {
    "task": task["id"],
    "cortex_session": cortex["session_id"] if cortex else None,
    "context_from_cortex": [e.get("content") for e in context if e.get("source") == "cortex"],
    "context_from_axon": [e.get("name") for e in context if e.get("source") != "cortex"],
}

key = os.environ.get("AXON_CORTEX_API_KEY")
if cortex and key:
    url = f"{cortex['url']}/api/v1/sessions/{cortex['session_id']}"
    req = urllib.request.Request(url, headers={"Authorization": f"ApiKey {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            session = json.load(resp)["data"]
        report["session_status"] = session["status"]
        print(f"my Cortex session {session['name']} is {session['status']}")
    except (urllib.error.URLError, KeyError, ValueError) as e:
        # Not fatal: the task's own work is done; say what happened.
        print(f"could not ask Cortex about my session: {e}", file=sys.stderr)

print("::axon progress 1.0")
print("::axon output " + json.dumps(report))
