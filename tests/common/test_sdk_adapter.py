"""The SDK reaches of common/sdk_adapter.py: this fails loudly when an SDK release moves them."""

from __future__ import annotations

import pytest
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer

from common.sdk_adapter import SdkChanged, lowlevel


def test_an_mcp_server_still_has_the_low_level_server_the_adapter_runs() -> None:
    server = MCPServer("adapter-check")
    low = lowlevel(server)
    assert isinstance(low, Server)
    assert callable(low.run)
    assert callable(low.create_initialization_options)


def test_a_missing_low_level_server_is_reported_as_an_sdk_change() -> None:
    with pytest.raises(SdkChanged, match=r"common/sdk_adapter\.py"):
        lowlevel(object())  # type: ignore[arg-type]
