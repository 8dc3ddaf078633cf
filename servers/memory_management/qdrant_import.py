"""Read a collection written by mcp-server-qdrant: payload ``{"document": text, "metadata": {...}}``.

Vectors are not copied: they were made by another model (a collection built with one model is
never queried with another), so the documents are re-embedded by the caller with this server's model.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import InvalidInput, NotFound
from common.safefiles import Roots, shown


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


def key_for(url: str, configured_url: str | None, configured_key: str | None) -> str | None:
    """The configured API key, only for the configured Qdrant: a key never goes to a URL the caller chose."""
    if configured_key is None or configured_url is None:
        return None
    return configured_key if url.rstrip("/") == configured_url.rstrip("/") else None


def storage_folder(path: str, roots: Roots) -> Path:
    """``path`` as a local Qdrant storage inside the import roots; refused before qdrant-client touches it.

    qdrant-client's local mode creates ``.lock`` and ``meta.json`` in any folder it opens, so the
    folder must already be one that mcp-server-qdrant wrote.
    """
    folder = roots.resolve(path, kind="dir")
    if not (folder / "meta.json").is_file() or not (folder / "collection").is_dir():
        raise InvalidInput(
            f"{shown(path)} is not a Qdrant local storage (no meta.json and collection/ folder); give the "
            "QDRANT_LOCAL_PATH mcp-server-qdrant used."
        )
    return folder


async def read_documents(
    *, path: Path | None, url: str | None, api_key: str | None, collection: str, page: int = 256, limit: int
) -> AsyncIterator[list[Document | None]]:
    """Pages of documents (None for points without one), at most ``limit`` points in all."""
    from qdrant_client import AsyncQdrantClient

    if (path is None) == (url is None):
        raise InvalidInput("Give exactly one of qdrant_path (local mcp-server-qdrant folder) or qdrant_url.")
    if url is not None and not url.lower().startswith(("http://", "https://")):
        raise InvalidInput("qdrant_url must be an http(s) URL, e.g. http://127.0.0.1:6333.")
    client = (
        AsyncQdrantClient(path=str(path))
        if path
        else AsyncQdrantClient(url=url, api_key=api_key, timeout=30, check_compatibility=False)
    )
    where = shown(url or str(path))
    try:
        try:
            exists = await client.collection_exists(collection)
        except Exception as exc:  # connection refused, TLS, DNS, a non-Qdrant answer: all "cannot reach"
            raise InvalidInput(
                f"Cannot reach Qdrant at {where} ({type(exc).__name__}); check the URL and that Qdrant runs."
            ) from None
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
