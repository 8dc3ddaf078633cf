"""``python -m servers.web_access``: run the web_access server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("web_access"))
