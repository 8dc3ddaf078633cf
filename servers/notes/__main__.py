"""``python -m servers.notes``: run the notes server over stdio."""

import sys

from common.runtime import serve

if __name__ == "__main__":
    sys.exit(serve("notes"))
