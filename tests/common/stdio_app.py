"""A tiny server on :func:`common.stdio.run_stdio`, for tests/common/test_stdio.py.

``python -m tests.common.stdio_app [MAX_LINE]``. Its ``noisy`` tool writes junk to fd 1 and to
``sys.stdout`` (which must not reach the protocol channel); after the client hangs up it prints
``after-serve`` to stdout, which must reach the pipe again (the descriptors are restored).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

from common.logging import configure_logging
from common.stdio import MAX_LINE, run_stdio

server = MCPServer("stdio-app")


@server.tool()
def echo(text: str) -> str:
    """Answer the text back."""
    return text


@server.tool()
def noisy() -> str:
    """Write junk to stdout behind the transport's back, then answer."""
    os.write(1, b"junk from a C library\n")
    sys.stdout.write("junk from sys.stdout\n")
    sys.stdout.flush()
    return "quiet"


if __name__ == "__main__":
    configure_logging("INFO", "json", server="stdio-app")
    asyncio.run(run_stdio(server, max_line=int(sys.argv[1]) if len(sys.argv) > 1 else MAX_LINE))
    sys.stdout.write("after-serve\n")
    sys.stdout.flush()
