"""Vector search behind one protocol: pgvector in the server's own schema (default) or Qdrant.

``base`` holds the protocol, record types and filter language; ``pg`` and ``qdrant`` the backends;
``factory`` picks one from the settings. Backends import ``base``, never each other or this package.
"""

from common.vectors.base import (
    CollectionInfo,
    SearchHit,
    VectorIndex,
    VectorRecord,
    parse_filter,
)
from common.vectors.factory import make_vector_index

__all__ = ["CollectionInfo", "SearchHit", "VectorIndex", "VectorRecord", "make_vector_index", "parse_filter"]
