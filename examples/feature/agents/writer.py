#!/usr/bin/env python3
"""Example documentation agent: documents the module from what its prerequisites produced."""

import common


def main():
    req = common.request()
    task = req["task"]
    common.log(f"{task['name']} (attempt {req['attempt']})")
    implement = req["upstream"].get("implement") or {}
    files = ", ".join(implement.get("files", [])) or "(nothing)"
    text = f"""# Authentication

Written by the writer-1 example agent for run {req['run_id']}.

The `{implement.get('module', 'auth')}` module ({files}) keeps users and session tokens in memory:

```python
from auth import Auth
auth = Auth()
auth.register("ada", "s3cret")
token = auth.login("ada", "s3cret")
auth.logout(token)
```

See `src/api/DESIGN.md` for the HTTP API.
"""
    common.write("docs/auth.md", text)
    common.progress(1.0)
    common.output({"files": ["docs/auth.md"]})


if __name__ == "__main__":
    main()
