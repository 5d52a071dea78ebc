#!/usr/bin/env python3
"""Example QA agent: writes and runs unit tests, and reviews the code."""

import os
import subprocess
import sys

import common

TESTS = '''import sys
import unittest

sys.path.insert(0, "src/api")
from auth import Auth, AuthError  # noqa: E402


class AuthTest(unittest.TestCase):
    def setUp(self):
        self.auth = Auth()
        self.auth.register("ada", "s3cret")

    def test_login_gives_a_token_for_the_user(self):
        token = self.auth.login("ada", "s3cret")
        self.assertEqual(self.auth.user_of(token), "ada")

    def test_wrong_password_is_refused(self):
        with self.assertRaises(AuthError):
            self.auth.login("ada", "nope")

    def test_logout_forgets_the_token(self):
        token = self.auth.login("ada", "s3cret")
        self.auth.logout(token)
        self.assertIsNone(self.auth.user_of(token))
        with self.assertRaises(AuthError):
            self.auth.logout(token)


if __name__ == "__main__":
    unittest.main()
'''


def test(req):
    common.write("tests/test_auth.py", TESTS)
    common.progress(0.5)
    run = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", "tests/test_auth.py"],
        capture_output=True,
        text=True,
    )
    for line in run.stderr.splitlines():
        common.log(line)
    if run.returncode != 0:
        common.fail("unit tests failed")
    passed = sum(1 for line in run.stderr.splitlines() if line.endswith("... ok"))
    common.progress(1.0)
    common.output({"files": ["tests/test_auth.py"], "tests_passed": passed})


def review(req):
    findings = []
    lines = 0
    for root in ("src", "tests"):
        for dirpath, _, files in os.walk(root):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                lines += len(text.splitlines())
                if "TODO" in text:
                    findings.append(f"{path}: has a TODO")
                if "password" in text and "compare_digest" not in text and root == "src":
                    findings.append(f"{path}: compares secrets without compare_digest")
    tests = req["upstream"].get("test") or {}
    common.log(f"reviewed {lines} lines; {tests.get('tests_passed', 0)} tests passed upstream")
    common.progress(1.0)
    common.output({"lines_reviewed": lines, "findings": findings, "approved": not findings})


def main():
    req = common.request()
    task = req["task"]
    common.log(f"{task['name']} (attempt {req['attempt']})")
    if task["type"] == "testing":
        test(req)
    elif task["type"] == "review":
        review(req)
    else:
        common.fail(f"qa-1 does not know how to do a {task['type']} task")


if __name__ == "__main__":
    main()
