"""``python -m servers.code_quality``: run the code_quality server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("code_quality"))
