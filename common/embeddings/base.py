"""The embedder protocol, its vector codec and the deterministic fake embedder."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.errors import SuiteError

#: Dimension of the bundled offline model (all-MiniLM-L6-v2).
DEFAULT_EMBEDDING_DIM = 384
#: all-MiniLM-L6-v2's trained sequence length (sentence-transformers' max_seq_length).
MAX_SEQ_LENGTH = 256
#: Most padded tokens in one inference batch (see :func:`length_batches`).
BATCH_TOKENS = 512
_TOKEN = re.compile(r"\w+", re.UNICODE)


class EmbeddingModelError(SuiteError):
    """The embedding model cannot be loaded; the message names EMBEDDING_MODEL and the fix."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into float32, L2-normalised vectors of a fixed dimension."""

    model_name: str

    @property
    def dim(self) -> int: ...

    @property
    def loaded(self) -> bool: ...

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]: ...

    async def embed_one(self, text: str, *, beside_work: bool = False) -> np.ndarray: ...


def _normalize(vec: np.ndarray) -> np.ndarray:
    out = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(out))
    if norm > 0 and np.isfinite(norm):
        out = out / np.float32(norm)
    return out.astype(np.float32, copy=False)


def model_slug(model_name: str) -> str:
    """A filesystem- and key-safe form of a model name (``local/all-MiniLM`` -> ``local__all-minilm``)."""
    return re.sub(r"[^a-z0-9_.-]+", "_", model_name.lower().replace("/", "__"))


def encode_vector(vec: np.ndarray) -> str:
    """Compact cache form: base64 of the raw float32 bytes (about a third of the size of JSON)."""
    return base64.b64encode(np.asarray(vec, dtype=np.float32).tobytes()).decode("ascii")


def decode_vector(value: Any, dim: int) -> np.ndarray | None:
    """Inverse of :func:`encode_vector`; ``None`` for anything malformed (treated as a cache miss)."""
    try:
        raw = base64.b64decode(value.encode("ascii") if isinstance(value, str) else value, validate=True)
    except Exception:
        return None
    if len(raw) != dim * 4:
        return None
    return np.frombuffer(raw, dtype=np.float32).copy()


class HashEmbedder:
    """Deterministic fake for tests where meaning does not matter.

    Each word is hashed to a few signed positions, so identical texts get identical vectors and
    texts sharing words are more similar than texts that share none. No model, no threads.
    """

    def __init__(self, dim: int = DEFAULT_EMBEDDING_DIM, variant: str = "") -> None:
        if dim < 8:
            raise ValueError("HashEmbedder needs dim >= 8")
        self._dim = dim
        #: A variant hashes every word differently: a second "model" of the same dimension for tests
        #: of what happens when two models meet in one store (``hash-384:b``).
        self.variant = variant
        self.model_name = f"hash-{dim}:{variant}" if variant else f"hash-{dim}"
        self.calls = 0
        self.texts_embedded = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def loaded(self) -> bool:
        return True

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self._dim, dtype=np.float32)
        tokens = _TOKEN.findall(text.lower()) or [""]
        for token in tokens:
            digest = hashlib.sha256((self.variant + "\0" + token if self.variant else token).encode("utf-8")).digest()
            for k in range(2):
                index = int.from_bytes(digest[4 * k : 4 * k + 4], "little") % self._dim
                sign = 1.0 if digest[8 + k] & 1 else -1.0
                vec[index] += sign
        if not vec.any():  # opposite signs cancelled out: fall back to the whole text's hash
            vec[int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") % self._dim] = 1.0
        return _normalize(vec)

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Hash each text (no I/O, no thread)."""
        self.calls += 1
        self.texts_embedded += len(texts)
        return [self._vector(t) for t in texts]

    async def embed_one(self, text: str, *, beside_work: bool = False) -> np.ndarray:
        """Hash one text."""
        return (await self.embed([text]))[0]


def length_batches(texts: Sequence[str], max_items: int, max_tokens: int = BATCH_TOKENS) -> list[list[int]]:
    """Indices of ``texts`` grouped into batches of similar length, shortest first.

    On a CPU a transformer's throughput in tokens per second hardly depends on the batch size, but
    its memory grows with batch x length (activations) and batch x length^2 (attention), and every text of a batch is
    padded to the longest. Sorting by length removes the padding; capping a batch's padded tokens
    at ``max_tokens`` keeps one batch of long passages from taking hundreds of megabytes.
    Lengths are estimated from characters (about 3 per token, erring towards more tokens).
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        tokens = min(len(texts[i]) // 3 + 2, MAX_SEQ_LENGTH)
        if current and ((len(current) + 1) * tokens > max_tokens or len(current) >= max_items):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
