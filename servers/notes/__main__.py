"""``python -m servers.notes``: run the notes server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("notes"))
