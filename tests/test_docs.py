"""The configuration docs, .env.example and the architecture page stay in step with the code.

Settings and servers are added in code first; these tests fail until the documentation names
them, so a user never meets a variable or a server the docs do not mention.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, SecretStr

from common.settings import BaseServerSettings, env_name, load_settings
from servers.registry import SERVERS

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = ROOT / "docs" / "configuration.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
OPERATIONS = ROOT / "docs" / "operations.md"
ENV_EXAMPLE = ROOT / ".env.example"
_ASSIGNMENT = re.compile(r"^#?\s*(?P<name>(<NAME>_)?[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
#: The seven servers the suite is built around; the registry gains them one by one.
PLANNED_SERVERS = (
    "memory_management",
    "inference_enhancement",
    "documentation",
    "web_access",
    "code_quality",
    "analytics",
    "ui_testing",
)


def _is_shared(field: str) -> bool:
    return isinstance(BaseServerSettings.model_fields[field].validation_alias, AliasChoices)


def _documented_name(field: str) -> str:
    """Shared settings by their variable; server-specific ones by the ``<NAME>_`` pattern."""
    if _is_shared(field):
        return env_name(BaseServerSettings, field)
    return f"<NAME>_{field.upper()}"


ALL_FIELDS = sorted(BaseServerSettings.model_fields)
SHARED_FIELDS = [f for f in ALL_FIELDS if _is_shared(f)]


def _config_table() -> dict[str, list[str]]:
    """Rows of the variable tables in configuration.md: name -> [default, meaning]."""
    rows: dict[str, list[str]] = {}
    for line in CONFIGURATION.read_text().splitlines():
        m = re.match(r"^\|\s*`(?P<name>[^`]+)`\s*\|(?P<rest>.*)\|\s*$", line)
        if m:
            rows[m["name"]] = [c.strip() for c in m["rest"].split("|")]
    return rows


def _env_example_assignments() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = _ASSIGNMENT.match(line.strip())
        if m:
            found[m["name"]] = m["value"].strip()
    return found


def _plain_default(field: str) -> Any:
    info = BaseServerSettings.model_fields[field]
    if info.default_factory is not None:
        return None
    value = info.default
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_every_setting_has_a_row_in_the_configuration_table(field: str) -> None:
    rows = _config_table()
    name = _documented_name(field)
    assert name in rows, f"{name} is missing from the tables in docs/configuration.md"
    default, meaning = rows[name][0], rows[name][1]
    assert meaning, f"{name}: say what it means"
    assert default, f"{name}: give its default (or 'unset')"


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_the_documented_default_matches_the_code(field: str) -> None:
    default_cell = _config_table()[_documented_name(field)][0]
    value = _plain_default(field)
    if value is None:
        return  # computed or unset defaults are described in words
    expected = str(value).lower() if isinstance(value, bool) else str(value)
    assert f"`{expected}`" in default_cell, f"{_documented_name(field)}: code default is {expected!r}"


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_every_setting_appears_in_env_example(field: str) -> None:
    assert _documented_name(field) in _env_example_assignments(), f"{_documented_name(field)} missing in .env.example"


def test_env_example_assigns_only_known_variables_outside_the_compose_section() -> None:
    known = {env_name(BaseServerSettings, f) for f in SHARED_FIELDS}
    compose_only = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} | {
        f"{s}_PORT" for s in ("POSTGRES", "REDIS", "QDRANT", "QDRANT_GRPC")
    }
    prefixed = ("<NAME>_", *(spec.env_prefix for spec in SERVERS), *(f"{n.upper()}_" for n in PLANNED_SERVERS))
    unknown = {
        name
        for name in _env_example_assignments()
        if name not in known and name not in compose_only and not name.startswith(prefixed)
    }
    assert not unknown, f".env.example sets variables no code reads: {sorted(unknown)}"


def test_env_example_values_are_all_valid_when_uncommented(tmp_path: Path) -> None:
    names = {env_name(BaseServerSettings, f) for f in SHARED_FIELDS}
    lines = [f"{k}={v}" for k, v in _env_example_assignments().items() if k in names and v]
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    settings = load_settings(BaseServerSettings, _env_file=str(env_file))
    assert settings.redis_prefix == _env_example_assignments()["REDIS_PREFIX"]


def test_every_registered_server_is_described_in_the_architecture_page() -> None:
    text = ARCHITECTURE.read_text()
    missing = [
        s.name for s in SERVERS if not re.search(rf"^\|\s*`{re.escape(s.name)}`\s*\|", text, re.M) and not s.example
    ]
    assert not missing, f"no row in the architecture table for: {missing}"


def test_the_architecture_page_has_both_diagrams() -> None:
    text = ARCHITECTURE.read_text()
    assert "```mermaid" in text
    assert re.search(r"```\n.*\+-{5,}", text, re.S), "the ASCII diagram is missing"


def test_the_architecture_table_lists_the_seven_servers_and_nothing_unknown() -> None:
    text = ARCHITECTURE.read_text()
    listed = set(re.findall(r"^\|\s*`([a-z_]+)`\s*\|", text, re.M))
    assert set(PLANNED_SERVERS) <= listed
    assert listed <= set(PLANNED_SERVERS) | {s.name for s in SERVERS}


def test_the_operations_page_covers_backup_restore_upgrade_redis_and_logs() -> None:
    headings = set(re.findall(r"^## (.+)$", OPERATIONS.read_text(), re.M))
    for needed in ("Backup", "Restore", "Upgrade", "Redis is disposable", "Logs"):
        assert needed in headings


def test_internal_links_between_docs_point_at_existing_headings() -> None:
    docs = {p.name: p.read_text() for p in CONFIGURATION.parent.glob("*.md")}

    def anchors(text: str) -> set[str]:
        return {
            re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, re.M)
        }

    for name, text in docs.items():
        for target, anchor in re.findall(r"\]\(([a-z_]+\.md)(?:#([a-z0-9_-]+))?\)", text):
            assert target in docs, f"{name}: link to missing {target}"
            if anchor:
                assert anchor in anchors(docs[target]), f"{name}: {target}#{anchor} has no such heading"
