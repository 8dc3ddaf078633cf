"""``python -m servers.documentation``: run the documentation server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("documentation"))
