"""The one place that reaches past the MCP SDK's public API, each reach checked when it is used.

The SDK (2.x) has no public way to serve an ``MCPServer`` on streams of one's own: ``run_stdio_async``
always reads ``sys.stdin`` itself. :mod:`common.stdio` needs its own streams to answer malformed
JSON-RPC lines (the SDK drops them silently), so it runs the server's low-level ``Server`` here.
It also adds ``resources/subscribe`` for handshake-era clients, which needs the client's
``Connection`` behind a request's ``ServerSession``.
``tests/common/test_sdk_adapter.py`` fails loudly when an SDK release moves what this module uses.
"""

from __future__ import annotations

from typing import Any

import mcp.types as types
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer


class SdkChanged(RuntimeError):
    """The installed MCP SDK no longer has what common/sdk_adapter.py relies on."""


def lowlevel(server: MCPServer[Any]) -> Server[Any]:
    """The low-level ``Server`` behind an ``MCPServer`` (what ``run_stdio_async`` runs)."""
    low = getattr(server, "_lowlevel_server", None)
    if not isinstance(low, Server):
        raise SdkChanged("MCPServer no longer exposes its low-level Server; update common/sdk_adapter.py.")
    return low


def serve_resource_subscriptions(server: MCPServer[Any], subscribe: Any, unsubscribe: Any) -> None:
    """Serve ``resources/subscribe`` and ``resources/unsubscribe`` (clients on the initialize handshake).

    ``MCPServer`` registers neither; the low-level server then also advertises ``resources.subscribe``.
    """
    low = lowlevel(server)
    for method in ("resources/subscribe", "resources/unsubscribe"):
        if low.get_request_handler(method) is not None:
            raise SdkChanged(f"MCPServer now serves {method} itself; drop common/subscriptions.HandshakeSubscriptions.")
    low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)


def connection_of(ctx: Any) -> Connection:
    """The client connection a low-level request came on (its ``ServerSession`` is per request)."""
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise SdkChanged("ServerSession no longer keeps its Connection; update common/sdk_adapter.py.")
    return connection


async def run_on_streams(server: MCPServer[Any], read_stream: Any, write_stream: Any) -> None:
    """Serve ``server`` on an SDK stream pair, as ``MCPServer.run_stdio_async`` does on stdio."""
    low = lowlevel(server)
    await low.run(read_stream, write_stream, low.create_initialization_options())
