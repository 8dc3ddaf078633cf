"""``python -m servers.inference_enhancement``: run the knowledge-graph server over stdio."""

import sys

from common.runtime import serve

if __name__ == "__main__":
    sys.exit(serve("inference_enhancement"))
