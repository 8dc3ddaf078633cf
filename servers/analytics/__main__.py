"""``python -m servers.analytics``: run the analytics server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("analytics"))
