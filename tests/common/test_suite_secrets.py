"""The suite's own secrets file: one value per name whoever asks first, readable by its user only."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.suite_secrets import SecretsUnreadable, get_secret, get_secrets, secrets_path

ROOT = Path(__file__).resolve().parents[2]


def test_a_secret_is_made_once_kept_0600_and_read_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    first = get_secret(data_dir, "events_hmac_key")
    assert len(first) >= 40
    assert get_secret(data_dir, "events_hmac_key") == first
    both = get_secrets(data_dir, ["events_hmac_key", "pg_role:notes"])
    assert both["events_hmac_key"] == first
    assert both["pg_role:notes"] != first
    assert stat.S_IMODE(secrets_path(data_dir).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert not list(data_dir.glob(".*.tmp"))


def test_a_widened_file_is_made_0600_again(tmp_path: Path) -> None:
    key = get_secret(tmp_path, "k")
    secrets_path(tmp_path).chmod(0o644)
    assert get_secret(tmp_path, "k") == key
    assert stat.S_IMODE(secrets_path(tmp_path).stat().st_mode) == 0o600


def test_processes_asking_at_once_all_get_the_same_value(tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from common.suite_secrets import get_secret; print(get_secret(Path(sys.argv[1]), 'shared'))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env, cwd=ROOT)
        for _ in range(6)
    ]
    values = {p.communicate(timeout=60)[0].decode().strip().splitlines()[-1] for p in procs}
    assert len(values) == 1
    assert json.loads(secrets_path(tmp_path).read_text()) == {"shared": values.pop()}


def test_a_corrupt_file_is_reported_not_replaced(tmp_path: Path) -> None:
    secrets_path(tmp_path).write_text("{not json")
    with pytest.raises(SecretsUnreadable, match="restore it from a backup"):
        get_secret(tmp_path, "k")
    assert secrets_path(tmp_path).read_text() == "{not json"
