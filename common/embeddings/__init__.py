"""Text embeddings: one protocol, a real ONNX embedder and a deterministic fake.

``base`` holds the protocol, the vector codec and the fake; ``model`` prepares the offline default
model; ``fastembed_embedder`` is the real embedder; :func:`make_embedder` picks one from the settings.
"""

from __future__ import annotations

import re
from typing import Any

from common.embeddings.base import (
    DEFAULT_EMBEDDING_DIM,
    Embedder,
    EmbeddingModelError,
    HashEmbedder,
    decode_vector,
    encode_vector,
    length_batches,
    model_slug,
)
from common.embeddings.fastembed_embedder import FastEmbedEmbedder
from common.retrieval import check_dimension as require_dim
from common.settings import BaseServerSettings

_HASH_MODEL = re.compile(r"^hash-(\d{1,5})(?::([a-z0-9]{1,16}))?$")


def make_embedder(settings: BaseServerSettings, cache: object | None = None, background: Any = None) -> Embedder:
    """``EMBEDDING_MODEL=hash-<dim>`` (or ``hash-<dim>:<variant>``) gives the fake :class:`HashEmbedder`;
    anything else fastembed."""
    match = _HASH_MODEL.match(settings.embedding_model)
    if match:
        return HashEmbedder(int(match.group(1)), match.group(2) or "")
    return FastEmbedEmbedder(settings, cache, background)


__all__ = [
    "DEFAULT_EMBEDDING_DIM",
    "Embedder",
    "EmbeddingModelError",
    "FastEmbedEmbedder",
    "HashEmbedder",
    "decode_vector",
    "encode_vector",
    "length_batches",
    "make_embedder",
    "model_slug",
    "require_dim",
]
