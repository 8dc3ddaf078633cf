"""The registry's start-up checks: a missing optional extra and an unsupported vector backend."""

from __future__ import annotations

from servers.registry import SERVERS, ServerSpec


def test_a_server_whose_extra_is_missing_names_the_install_command() -> None:
    spec = ServerSpec("web_access", "Web", "x", requires=("json", "no_such_module_for_this_test"))
    message = spec.missing_extra()
    assert message is not None
    assert "no_such_module_for_this_test missing" in message
    assert 'pip install "mcp-suite[web_access]"' in message


def test_every_registered_server_has_its_extra_installed_here() -> None:
    assert {s.name: s.missing_extra() for s in SERVERS} == {s.name: None for s in SERVERS}
