"""The calls ``mcp-suite demo`` and the stdio end-to-end tests make on this server, in order.

The server analyses the template server's own code (``servers/notes``, shipped in the package, so it
is there wherever the suite is installed): ``ENV`` allows that folder and nothing else. The last call
checks a snippet sent as text.
"""

import json
from pathlib import Path

SAMPLE = str(Path(__file__).resolve().parents[1] / "notes")
#: Settings the demo's server is started with (over the MCP client's default environment).
ENV = {"CODE_QUALITY_ALLOWED_ROOTS": json.dumps([SAMPLE])}

CALLS: list[tuple[str, dict[str, object]]] = [
    ("analyze_code", {"action": "start", "path": SAMPLE, "wait_s": 120}),
    ("code_metrics", {"path": SAMPLE, "limit": 3, "hints": 3}),
    ("list_findings", {"path": SAMPLE, "limit": 5}),
    ("list_findings", {"query": "assert statements left in production code", "limit": 5}),
    ("analyze_code", {"action": "check", "files": {"app.py": "import os\n\ndef run(cmd):\n    exec(cmd)\n"}}),
]
