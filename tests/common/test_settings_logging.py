"""Settings read the environment and .env and name the variable that is wrong; logs go to stderr, redacted."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from common.logging import configure_logging, get_logger, redact
from common.settings import BaseServerSettings, SettingsError, env_name, load_settings
from servers.documentation.settings import Settings as DocumentationSettings
from servers.notes.settings import Settings as NotesSettings


def test_shared_variables_are_unprefixed_and_server_ones_take_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("DB_POOL_MAX", "9")
    monkeypatch.setenv("NOTES_TOOLS", "save_note, get_note")
    monkeypatch.setenv("NOTES_MIGRATE_ON_START", "false")
    s = load_settings(NotesSettings, _env_file=None)
    assert s.database_url is not None
    assert s.database_url.get_secret_value() == "postgresql://u:p@h/db"
    assert s.db_pool_max == 9
    assert s.tools == ["save_note", "get_note"]
    assert s.migrate_on_start is False
    assert env_name(NotesSettings, "tools") == "NOTES_TOOLS"
    assert env_name(NotesSettings, "redis_url") == "REDIS_URL"


def test_a_bad_value_stops_with_a_message_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_MAX", "lots")
    monkeypatch.setenv("NOTES_MAX_BODY_CHARS", "5")
    with pytest.raises(SettingsError) as info:
        load_settings(NotesSettings, _env_file=None)
    message = str(info.value.code)
    assert "DB_POOL_MAX" in message
    assert "NOTES_MAX_BODY_CHARS" in message


def test_inconsistent_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTOR_BACKEND", "qdrant")
    with pytest.raises(SettingsError, match="QDRANT_URL or QDRANT_PATH"):
        load_settings(BaseServerSettings, _env_file=None)


def test_a_job_that_could_be_taken_for_dead_between_two_heartbeats_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMENTATION_HEARTBEAT_S", "5")
    monkeypatch.setenv("DOCUMENTATION_JOB_STALE_S", "10")
    with pytest.raises(
        SettingsError, match="DOCUMENTATION_JOB_STALE_S must be more than twice DOCUMENTATION_HEARTBEAT_S"
    ):
        load_settings(DocumentationSettings, _env_file=None)
    monkeypatch.setenv("DOCUMENTATION_JOB_STALE_S", "11")
    assert load_settings(DocumentationSettings, _env_file=None).job_stale_s == 11


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=DEBUG\nREDIS_PREFIX=fromfile\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(BaseServerSettings)
    assert s.log_level == "DEBUG"
    assert s.redis_prefix == "fromfile"


def test_redact_hides_passwords_in_urls() -> None:
    assert redact("connect postgresql://admin:hunter2@db:5432/x failed") == (
        "connect postgresql://admin:***@db:5432/x failed"
    )
    assert "hunter2" not in redact("redis://:hunter2@localhost:6379/0")
    assert redact("see http://user@host/ and ftp://x") == "see http://user@host/ and ftp://x"


@pytest.mark.parametrize(
    "value",
    [
        "a" * 1_000_000,
        "://" * 300_000,
        "x://" + "a" * 1_000_000,
        "://a:" * 200_000,
        "postgresql://" + "u" * 500_000 + ":",
    ],
)
def test_redaction_of_a_megabyte_value_takes_linear_time(value: str) -> None:
    started = time.perf_counter()
    redact(value)
    # A safety bound, not a benchmark: the old regex took tens of seconds on such values.
    assert time.perf_counter() - started < 2.0


def test_a_huge_logged_value_is_cut_short(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", server="notes")
    try:
        get_logger("t").info("recall", tag="t" * 1_000_000)
    finally:
        import structlog

        structlog.contextvars.clear_contextvars()
    err = capsys.readouterr().err
    assert len(err) < 5_000
    assert "(1000000 chars)" in err


def test_logs_are_json_on_stderr_with_credentials_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", server="notes")
    try:
        get_logger("t").info("connecting", url="postgresql://a:topsecret@h/db", password="pw")
        logging.getLogger("stdlib").warning("plain stdlib line with redis://:pw2@h:1/0")
    finally:
        import structlog

        structlog.contextvars.clear_contextvars()
        logging.getLogger().handlers.clear()  # the handler holds capsys's stream
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [json.loads(line) for line in captured.err.strip().splitlines()]
    assert lines[0]["event"] == "connecting"
    assert lines[0]["server"] == "notes"
    assert "topsecret" not in captured.err
    assert lines[0]["password"] == "***"
    assert "pw2" not in captured.err


def test_tools_all_lifts_a_servers_default_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    from servers.memory_management.settings import Settings as MemorySettings

    assert load_settings(MemorySettings, _env_file=None).tools is not None  # a core subset by default
    monkeypatch.setenv("MEMORY_MANAGEMENT_TOOLS", "ALL")
    assert load_settings(MemorySettings, _env_file=None).tools is None  # None: every tool
