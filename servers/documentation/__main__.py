"""``python -m servers.documentation``: run the documentation server over stdio."""

import sys

from common.runtime import serve

if __name__ == "__main__":
    sys.exit(serve("documentation"))
