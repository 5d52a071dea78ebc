#!/usr/bin/env python3
"""Adapter: runs an AI coding CLI as an Axon command agent.

NEEDS THE TOOL: the CLI you name must be installed, on PATH and logged in. Axon does not ship,
install or configure any of them; without the tool, the task fails with "not installed".

In an agents file (paths relative to the agents file):

    agents:
      - id: claude
        capabilities: [code_generation, refactoring, code_review]
        command: ["./adapters/agent_cli.py", "claude", "-p", "{prompt}"]            # Claude Code
      - id: codex
        capabilities: [code_generation, testing]
        command: ["./adapters/agent_cli.py", "codex", "exec", "{prompt}"]           # OpenAI Codex CLI
      - id: aider
        capabilities: [code_generation]
        command: ["./adapters/agent_cli.py", "aider", "--yes-always", "--message", "{prompt}"]
      - id: gemini
        capabilities: [documentation]
        command: ["./adapters/agent_cli.py", "gemini", "-p", "{prompt}"]            # Gemini CLI

Every argument after the script is the tool's command line; `{prompt}` in any of them is
replaced by a prompt built from the task (name, description, type and its fields, `input.prompt`
or the whole `input`, scope, the outputs of its prerequisites, and past episodes). The tool runs
in the task's working directory; its output becomes the task's log. Exit codes: the tool's 0 is
success, 75 is passed through (a temporary failure Axon retries), anything else is a failure.
The task's output is `{"tool": NAME, "exit_code": N}` plus the last lines of what it printed.
"""

import json
import os
import shutil
import subprocess
import sys

EX_TEMPFAIL = 75
TAIL = 20


def build_prompt(req):
    task = req["task"]
    lines = [f"You are working on the task \"{task['name']}\" ({task['type']}) of the workflow "
             f"\"{req['workflow']['name']}\"."]
    if task.get("description"):
        lines.append(task["description"])
    skip = {"id", "name", "description", "type", "input", "requirements", "scope", "depends_on",
            "timeout", "retry", "priority"}
    fields = {k: v for k, v in task.items() if k not in skip and v is not None}
    if fields:
        lines.append("Task settings: " + json.dumps(fields, sort_keys=True))
    task_input = task.get("input")
    if isinstance(task_input, dict) and isinstance(task_input.get("prompt"), str):
        lines.append(task_input["prompt"])
    elif task_input not in (None, {}, []):
        lines.append("Input: " + json.dumps(task_input, sort_keys=True))
    scope = task.get("scope") or {}
    if scope.get("scope"):
        lines.append("Only change files under: " + ", ".join(scope["scope"]))
    if scope.get("read_only"):
        lines.append("Do not change: " + ", ".join(scope["read_only"]))
    if req.get("upstream"):
        lines.append("Results of the tasks this one depends on: "
                     + json.dumps(req["upstream"], sort_keys=True))
    if req.get("context"):
        lines.append("Notes from similar past tasks: " + json.dumps(req["context"])[:4000])
    return "\n\n".join(lines)


def main():
    argv = sys.argv[1:]
    if not argv:
        print("usage: agent_cli.py TOOL [ARGS...] (use {prompt} where the prompt goes)",
              file=sys.stderr)
        return 2
    req = json.load(sys.stdin)
    prompt = build_prompt(req)
    tool = argv[0]
    if shutil.which(tool) is None:
        print(f"`{tool}` is not installed or not on PATH; this adapter needs it", file=sys.stderr)
        return 2
    command = [arg.replace("{prompt}", prompt) for arg in argv]
    print("::axon progress 0.05", flush=True)
    tail = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace",
                            cwd=os.environ.get("AXON_SESSION_DIR") or None)
    for line in proc.stdout:
        line = line.rstrip("\n")
        # The tool's own lines must not be taken for protocol lines.
        print(("| " + line) if line.startswith("::axon") else line, flush=True)
        tail = (tail + [line])[-TAIL:]
    code = proc.wait()
    if code == 0:
        print("::axon progress 1.0", flush=True)
        print("::axon output " + json.dumps({"tool": tool, "exit_code": 0, "tail": tail}),
              flush=True)
        return 0
    if code == EX_TEMPFAIL:
        return EX_TEMPFAIL
    print(f"`{tool}` exited with {code}", file=sys.stderr)
    return 1 if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
