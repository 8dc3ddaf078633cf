"""``python -m servers.inference_enhancement``: run the knowledge-graph server over stdio.

``python -m servers.inference_enhancement import memory.jsonl`` (or ``export FILE``) moves a graph in
or out of the reference memory server's format without an MCP client: the migration guide's one step.
"""

import asyncio
import json
import os
import sys

from servers.serve import serve

USAGE = "usage: python -m servers.inference_enhancement [import FILE | export FILE]\n"


def transfer(command: str, path: str) -> int:
    """Import or export ``path`` on the graph service directly and print its result as JSON."""
    # The service's modules (database, embedder) load only for this command, not for serving.
    from common.errors import SuiteError
    from common.logging import configure_logging
    from common.runtime import open_deps
    from common.settings import SettingsError
    from servers.inference_enhancement.service import NAME, GraphService
    from servers.registry import get

    # The local user may name any file: its own folder is the one allowed root, and the file is still
    # opened through the safe-files kit (no link, FIFO or device at that path; atomic export).
    target = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        sys.stderr.write(f"Folder {folder[:80]!r} does not exist; create it or choose another path.\n")
        return 1
    try:
        settings = get(NAME).load_settings(tools=None, file_roots=[folder])
    except SettingsError as exc:
        sys.stderr.write(f"{exc.code}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format, server=NAME)

    async def run() -> int:
        try:
            async with open_deps(NAME, settings) as deps, GraphService.open(deps, settings) as svc:
                result = await (svc.import_jsonl(path=target) if command == "import" else svc.export_jsonl(path=target))
        except SuiteError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.exit(serve("inference_enhancement"))
    if len(sys.argv) == 3 and sys.argv[1] in ("import", "export"):
        sys.exit(transfer(sys.argv[1], sys.argv[2]))
    sys.stderr.write(USAGE)
    sys.exit(2)
