"""Read a collection written by mcp-server-qdrant: payload ``{"document": text, "metadata": {...}}``.

Vectors are not copied: they were made by another model (a collection built with one model is
never queried with another), so the documents are re-embedded by the caller with this server's model.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from common.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class Document:
    text: str
    metadata: dict[str, Any]


def parse_payload(payload: dict[str, Any] | None) -> Document | None:
    """The document in a point's payload, or None when the point holds none."""
    if not payload:
        return None
    text = payload.get("document")
    if not isinstance(text, str) or not text.strip():
        return None
    meta = payload.get("metadata")
    return Document(text=text, metadata=meta if isinstance(meta, dict) else {})


async def read_documents(
    *, path: str | None, url: str | None, api_key: str | None, collection: str, page: int = 256, limit: int
) -> AsyncIterator[list[Document | None]]:
    """Pages of documents (None for points without one), at most ``limit`` points in all."""
    from qdrant_client import AsyncQdrantClient
    from qdrant_client.http.exceptions import UnexpectedResponse

    if bool(path) == bool(url):
        raise InvalidInput("Give exactly one of qdrant_path (local mcp-server-qdrant folder) or qdrant_url.")
    if path is not None and not await anyio.Path(path).is_dir():
        raise NotFound(f"qdrant_path {path!r} is not a folder; give the QDRANT_LOCAL_PATH mcp-server-qdrant used.")
    client = AsyncQdrantClient(path=path) if path else AsyncQdrantClient(url=url, api_key=api_key, timeout=30)
    try:
        try:
            exists = await client.collection_exists(collection)
        except (UnexpectedResponse, OSError, ConnectionError) as exc:
            raise InvalidInput(f"Cannot reach Qdrant at {url or path}: {exc}") from exc
        if not exists:
            names = [c.name for c in (await client.get_collections()).collections][:20]
            raise NotFound(f"No collection {collection!r} there; collections: {', '.join(names) or 'none'}.")
        offset: Any = None
        read = 0
        while read < limit:
            points, offset = await client.scroll(
                collection, limit=min(page, limit - read), offset=offset, with_payload=True, with_vectors=False
            )
            if not points:
                break
            read += len(points)
            yield [parse_payload(p.payload) for p in points]
            if offset is None:
                break
    finally:
        with contextlib.suppress(Exception):
            await client.close()
