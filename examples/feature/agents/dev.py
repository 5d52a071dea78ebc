#!/usr/bin/env python3
"""Example development agent: designs and implements a tiny authentication module."""

import common

DESIGN = """# Authentication API

| method | path    | body                      | answer                  |
|--------|---------|---------------------------|-------------------------|
| POST   | /login  | {"user": .., "password": ..} | 200 {"token": ..} / 401 |
| POST   | /logout | {"token": ..}             | 204                     |

Tokens are opaque, random, and valid until logout.
"""

MODULE = '''"""A tiny in-memory authentication service (written by the dev-1 example agent)."""

import hashlib
import hmac
import secrets


class AuthError(Exception):
    """Wrong user or password, or an unknown token."""


class Auth:
    def __init__(self):
        self._users = {}
        self._tokens = {}

    def register(self, user, password):
        salt = secrets.token_bytes(16)
        self._users[user] = (salt, self._hash(salt, password))

    def login(self, user, password):
        if user not in self._users:
            raise AuthError("unknown user")
        salt, digest = self._users[user]
        if not hmac.compare_digest(digest, self._hash(salt, password)):
            raise AuthError("wrong password")
        token = secrets.token_hex(16)
        self._tokens[token] = user
        return token

    def logout(self, token):
        if self._tokens.pop(token, None) is None:
            raise AuthError("unknown token")

    def user_of(self, token):
        return self._tokens.get(token)

    @staticmethod
    def _hash(salt, password):
        return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 10_000)
'''


def main():
    req = common.request()
    task = req["task"]
    common.log(f"{task['name']} (attempt {req['attempt']})")
    common.progress(0.2)
    if task["id"] == "design":
        common.write("src/api/DESIGN.md", DESIGN)
        common.progress(1.0)
        common.output({"files": ["src/api/DESIGN.md"], "endpoints": ["POST /login", "POST /logout"]})
    elif task["id"] == "implement":
        design = req["upstream"].get("design") or {}
        common.log(f"implementing {', '.join(design.get('endpoints', []))}")
        common.write("src/api/auth.py", MODULE)
        common.progress(1.0)
        common.output({"files": ["src/api/auth.py"], "module": "auth"})
    else:
        common.fail(f"dev-1 does not know how to do task {task['id']!r}")


if __name__ == "__main__":
    main()
