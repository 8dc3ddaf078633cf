"""``python -m servers.ui_testing``: run the ui_testing server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("ui_testing"))
