"""``python -m servers.memory_management``: run the memory server over stdio."""

import sys

from servers.serve import serve

if __name__ == "__main__":
    sys.exit(serve("memory_management"))
