"""``python -m servers.inference_enhancement``: run the knowledge-graph server over stdio.

``python -m servers.inference_enhancement import memory.jsonl`` (or ``export FILE``) moves a graph in
or out of the reference memory server's format without an MCP client: the migration guide's one step.
"""

import asyncio
import json
import sys

from servers.serve import serve

USAGE = "usage: python -m servers.inference_enhancement [import FILE | export FILE]\n"


def transfer(command: str, path: str) -> int:
    """Run import_memory_jsonl or export_memory_jsonl in-process and print its result as JSON."""
    from mcp import Client

    from common.logging import configure_logging
    from common.settings import SettingsError
    from servers.inference_enhancement.server import build
    from servers.registry import get

    try:
        settings = get("inference_enhancement").load_settings(tools=None)
    except SettingsError as exc:
        sys.stderr.write(f"{exc.code}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format, server="inference_enhancement")
    tool = "import_memory_jsonl" if command == "import" else "export_memory_jsonl"

    async def run() -> int:
        async with Client(build(settings)) as client:
            result = await client.call_tool(tool, {"path": path})
        if result.is_error:
            sys.stderr.write(f"{result.content[0].text}\n")  # type: ignore[union-attr]
            return 1
        sys.stdout.write(json.dumps(result.structured_content, indent=2) + "\n")
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.exit(serve("inference_enhancement"))
    if len(sys.argv) == 3 and sys.argv[1] in ("import", "export"):
        sys.exit(transfer(sys.argv[1], sys.argv[2]))
    sys.stderr.write(USAGE)
    sys.exit(2)
