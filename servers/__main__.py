"""``mcp-suite`` and ``python -m servers``: the command line of the suite."""

import sys

from servers.cli import main

if __name__ == "__main__":
    sys.exit(main())
