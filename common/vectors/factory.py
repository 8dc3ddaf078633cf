"""The vector index ``VECTOR_BACKEND`` names."""

from __future__ import annotations

from common.db import Database
from common.settings import BaseServerSettings
from common.vectors.base import VectorIndex


def make_vector_index(settings: BaseServerSettings, db: Database | None, schema: str) -> VectorIndex:
    """The backend ``VECTOR_BACKEND`` names; ``schema`` is the server's schema (and Qdrant prefix)."""
    if settings.vector_backend == "qdrant":
        # qdrant-client is only imported by servers configured to use it.
        from common.vectors.qdrant import QdrantIndex

        return QdrantIndex(
            schema,
            url=settings.qdrant_url,
            path=settings.qdrant_path,
            api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        )
    if db is None:
        raise ValueError("VECTOR_BACKEND=pgvector needs a Database")
    from common.vectors.pg import PgVectorIndex

    return PgVectorIndex(db, schema)
