"""A small git repository with known problems, built fresh for each test that asks for it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# Line numbers below are asserted by the tests; keep them in step when editing.
APP = """import subprocess


def run(cmd):
    assert cmd
    return subprocess.call(cmd, shell=True)


def connect():
    password = "hunter2-correct-horse"
    return password


def never_called_helper():
    return 42


def tangled(a, b, c, d, e):
    total = 0
    for i in range(a):
        if i % 2 and b:
            total += 1
        elif i % 3 or c:
            total -= 1
        elif d and e:
            total *= 2
        while total > 10 and (b or c):
            total -= 3
            if e:
                break
        try:
            total += int(d)
        except ValueError:
            total += 1
        if a > 5 and b < 3 or c == 2:
            total += 7
        elif a > 6:
            total += 8
        elif a > 7:
            total += 9
        elif a > 8:
            total += 10
    return total
"""

CONFIG = """import os

AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
REGION = os.environ.get("REGION", "eu-west-1")
"""

UTIL = """import os


def used():
    return 1


print(used())
"""


def git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def init_repo(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.invalid")
    git(root, "config", "user.name", "Test")
    git(root, "config", "commit.gpgsign", "false")


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    root = (tmp_path / "repo").resolve()
    init_repo(root)
    (root / "pkg").mkdir()
    (root / "pkg" / "app.py").write_text(APP)
    (root / "pkg" / "config.py").write_text(CONFIG)
    (root / "pkg" / "util.py").write_text(UTIL)
    commit_all(root, "first")
    return root
