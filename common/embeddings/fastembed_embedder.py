"""The real embedder: fastembed (ONNX Runtime), loaded on first use, run in worker threads, cached.

The model loads only on the first call, because most tool calls never embed anything and a server
must start in well under a second. Inference runs in a worker thread so one large batch never
freezes the event loop (and with it every other tool call of the process).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import anyio.to_thread
import numpy as np

from common.embeddings.base import (
    DEFAULT_EMBEDDING_DIM,
    EmbeddingModelError,
    _normalize,
    decode_vector,
    encode_vector,
    length_batches,
    model_slug,
)
from common.embeddings.model import PREPARED_AS, default_model_dir, quiet_threads, register_default_model
from common.logging import get_logger
from common.settings import DEFAULT_EMBEDDING_MODEL, BaseServerSettings

log = get_logger(__name__)

#: Embeddings never change for a given model and text, so they may live long in the cache.
EMBEDDING_CACHE_TTL_S = 7 * 86_400
#: Single texts whose vectors an embedder keeps for repeats (1.5 KB each with the default model).
RECENT_MAX = 1_024
#: Most one-thread runs :meth:`FastEmbedEmbedder._infer_sync` starts side by side for many texts.
MAX_PARALLEL_RUNS = 4
#: Fewest batches (texts, for the default model) that go to the parallel runs.
PARALLEL_MIN_BATCHES = 8


class EmbeddingCache(Protocol):
    """What :class:`FastEmbedEmbedder` needs of a cache (``common.cache.Cache`` provides it)."""

    async def get_many(self, keys: Sequence[str]) -> Mapping[str, Any]: ...

    async def set_many(self, mapping: Mapping[str, Any], ttl_s: int) -> Any: ...


class FastEmbedEmbedder:
    """fastembed (ONNX Runtime) embedder: lazy, thread-offloaded, batched and optionally cached."""

    def __init__(self, settings: BaseServerSettings, cache: object | None = None, background: Any = None) -> None:
        self.settings = settings
        #: A common.background.Background: cache fills then run after the caller has its vectors.
        self.background = background
        self.model_name = settings.embedding_model
        # The default model quantizes activations per run (dynamic int8): a text batched with others
        # would get a vector that depends on its batch-mates. Alone it is deterministic and no slower
        # per text, so it runs one text at a time.
        self.batch_size = 1 if self.model_name == DEFAULT_EMBEDDING_MODEL else settings.embedding_batch_size
        self.cache = cache
        #: The latest single texts' vectors by cache key, oldest first (see :meth:`_embed_single`).
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._model: Any = None
        self._bulk: Any = None
        #: Parallel one-thread runs for many texts: small inputs parallelise poorly inside one run, so
        #: one-thread runs side by side embed a batch faster than one multi-threaded run. A single text
        #: keeps the multi-threaded session (it answers sooner alone), unless the caller keeps the other
        #: core busy meanwhile (``embed_one(beside_work=True)``).
        self.workers = min(os.cpu_count() or 1, MAX_PARALLEL_RUNS) if settings.embedding_threads is None else 1
        self._dim: int | None = DEFAULT_EMBEDDING_DIM if self.model_name == DEFAULT_EMBEDDING_MODEL else None
        # threading locks, not asyncio ones: the work happens in worker threads, and the same
        # embedder may serve several event loops (a session-wide test fixture).
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self.load_count = 0
        self.texts_embedded = 0
        self.cache_hits = 0

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        """Known without loading for the default model and for every model fastembed lists."""
        if self._dim is None:
            from fastembed import TextEmbedding

            for m in TextEmbedding.list_supported_models():
                if str(m.get("model", "")).lower() == self.model_name.lower():
                    self._dim = int(m["dim"])
                    break
            else:
                raise EmbeddingModelError(self._unknown_model_message())
        return self._dim

    def _unknown_model_message(self) -> str:
        return (
            f"EMBEDDING_MODEL={self.model_name!r} is not a model fastembed knows. Use a name from "
            "fastembed's TextEmbedding.list_supported_models(), or unset EMBEDDING_MODEL to use the "
            f"bundled offline model {DEFAULT_EMBEDDING_MODEL!r}."
        )

    def _load_sync(self) -> Any:
        with self._load_lock:
            if self._model is not None:
                return self._model
            started = time.perf_counter()
            model = self._build(self.settings.embedding_threads)
            self._model = model
            self.load_count += 1
            log.info(
                "embedding_model_loaded",
                model=self.model_name,
                seconds=round(time.perf_counter() - started, 3),
            )
            return model

    def _bulk_sync(self) -> Any:
        """A second session of the model on one thread, shared by :attr:`workers` parallel runs (lazy)."""
        self._load_sync()  # the same checks and preparation, once
        with self._load_lock:
            if self._bulk is None:
                self._bulk = self._build(1)
            return self._bulk

    def _build(self, threads: int | None) -> Any:
        try:
            from fastembed import TextEmbedding

            with quiet_threads():
                if self.model_name == DEFAULT_EMBEDDING_MODEL:
                    path = default_model_dir(self.settings)
                    register_default_model()
                    return TextEmbedding(
                        DEFAULT_EMBEDDING_MODEL,
                        specific_model_path=str(path),
                        threads=threads,
                        enable_cpu_mem_arena=True,
                    )
                known = {str(m.get("model", "")).lower() for m in TextEmbedding.list_supported_models()}
                if self.model_name.lower() not in known:
                    raise EmbeddingModelError(self._unknown_model_message())
                cache_dir = self.settings.embedding_cache_dir or self.settings.data_dir / "models"
                return TextEmbedding(
                    self.model_name, cache_dir=str(cache_dir), threads=threads, enable_cpu_mem_arena=True
                )
        except EmbeddingModelError:
            raise
        except Exception as exc:
            raise EmbeddingModelError(
                f"Cannot load EMBEDDING_MODEL={self.model_name!r}: {type(exc).__name__}: {exc}. "
                "Without internet only the bundled model works: unset EMBEDDING_MODEL (default "
                f"{DEFAULT_EMBEDDING_MODEL!r}); otherwise check the name and that the model can be downloaded."
            ) from exc

    async def load(self) -> None:
        """Load the model now (in a worker thread); later calls are no-ops."""
        if self._model is None:
            await anyio.to_thread.run_sync(self._load_sync)

    def _infer_sync(self, texts: list[str], one_thread: bool = False) -> list[np.ndarray]:
        model = self._load_sync()
        out: list[np.ndarray | None] = [None] * len(texts)
        batches = length_batches(texts, self.batch_size)
        with self._infer_lock:  # ONNX Runtime already uses every core; two calls at once only thrash
            if one_thread and self.workers > 1:
                for i, vec in self._run(self._bulk_sync(), texts, batches):
                    out[i] = vec
            elif self.workers > 1 and len(batches) >= PARALLEL_MIN_BATCHES:
                bulk = self._bulk_sync()
                shares = [batches[k :: self.workers] for k in range(self.workers)]
                with ThreadPoolExecutor(self.workers, thread_name_prefix="embed") as pool:
                    for done in pool.map(lambda share: self._run(bulk, texts, share), shares):
                        for i, vec in done:
                            out[i] = vec
            else:
                for i, vec in self._run(model, texts, batches):
                    out[i] = vec
        vectors = [v for v in out if v is not None]
        if vectors and self._dim is None:
            self._dim = int(vectors[0].shape[0])
        return vectors

    @staticmethod
    def _run(model: Any, texts: list[str], batches: list[list[int]]) -> list[tuple[int, np.ndarray]]:
        done: list[tuple[int, np.ndarray]] = []
        for batch in batches:
            chunk = [texts[i] for i in batch]
            done.extend(
                (i, _normalize(vec)) for i, vec in zip(batch, model.embed(chunk, batch_size=len(chunk)), strict=True)
            )
        return done

    def _key(self, text: str) -> str:
        # The default model's key names how it was prepared: vectors cached before a change of
        # preparation (e.g. the float32 fold) are not mixed with today's.
        version = f"{PREPARED_AS}:" if self.model_name == DEFAULT_EMBEDDING_MODEL else ""
        return f"emb:{model_slug(self.model_name)}:{version}{hashlib.sha256(text.encode('utf-8')).hexdigest()}"

    async def _cache_get(self, keys: list[str]) -> Mapping[str, Any]:
        if self.cache is None or not keys:
            return {}
        try:
            got: Mapping[str, Any] = await self.cache.get_many(keys)  # type: ignore[attr-defined]
            return got or {}
        except Exception as exc:  # a cache outage must never fail an embedding
            log.warning("embedding_cache_get_failed", error=str(exc) or type(exc).__name__)
            return {}

    async def _cache_set(self, mapping: dict[str, str]) -> None:
        if self.cache is None or not mapping:
            return
        try:
            await self.cache.set_many(mapping, EMBEDDING_CACHE_TTL_S)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("embedding_cache_set_failed", error=str(exc) or type(exc).__name__)

    async def _cache_fill(self, entries: list[tuple[str, str]]) -> None:
        await self._cache_set(dict(entries))

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embed ``texts`` in order; cached vectors are reused and duplicates embedded once."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_one() for a single text")
        if not texts:
            return []
        unique = list(dict.fromkeys(texts))
        if len(unique) == 1:
            alone = await self._embed_single(unique[0])
            return [alone] * len(texts)
        found: dict[str, np.ndarray] = {}
        keys = {t: self._key(t) for t in unique} if self.cache is not None else {}
        if keys:
            cached = await self._cache_get(list(keys.values()))
            try:
                dim: int | None = self.dim
            except EmbeddingModelError:
                dim = None  # an unknown model: the load below reports it properly
            for text, key in keys.items():
                value = cached.get(key)
                if value is not None and dim is not None:
                    vec = decode_vector(value, dim)
                    if vec is not None:
                        found[text] = vec
            self.cache_hits += len(found)
        misses = [t for t in unique if t not in found]
        if misses:
            computed = await anyio.to_thread.run_sync(self._infer_sync, misses)
            self.texts_embedded += len(misses)
            for text, vec in zip(misses, computed, strict=True):
                found[text] = vec
            if keys:
                entries = [(keys[t], encode_vector(found[t])) for t in misses]
                if self.background is not None:
                    self.background.batcher("embedding-cache-fill", self._cache_fill).add(entries)
                else:
                    await self._cache_fill(entries)
        return [found[t] for t in texts]

    async def embed_one(self, text: str, *, beside_work: bool = False) -> np.ndarray:
        """Embed one text; ``beside_work`` when the caller keeps the database busy meanwhile.

        Then the run takes one thread instead of every core, so it does not fight that statement's
        PostgreSQL backend for the CPU.
        """
        if beside_work and self.workers > 1:
            return await self._embed_single(text, one_thread=True)
        return (await self.embed([text]))[0]

    async def _embed_single(self, text: str, *, one_thread: bool = False) -> np.ndarray:
        """One text, as a search or a single store embeds it while its caller waits.

        This process's recent vectors answer a repeat at once; anything else goes straight to the
        model. Redis is not read here: its reply is handled on the event loop while the model should
        be starting, and in interleaved A/B runs (single stores at 100k memories, 300 calls each)
        reading it beside the run cost ~0.5 ms per call, more than a hit saves, while a query or a
        new memory's text rarely repeats in another process. The vector still goes to Redis after
        the answer, for the batch readers (imports, re-embedding, re-ingested documents).
        """
        key = self._key(text)
        vec = self._recent.get(key)
        if vec is not None:
            self._recent.move_to_end(key)
            self.cache_hits += 1
            return vec
        vec = (await anyio.to_thread.run_sync(self._infer_sync, [text], one_thread))[0]
        self.texts_embedded += 1
        vec.setflags(write=False)  # shared by every later repeat
        self._recent[key] = vec
        if len(self._recent) > RECENT_MAX:
            self._recent.popitem(last=False)
        if self.cache is not None:
            entries = [(key, encode_vector(vec))]
            if self.background is not None:
                self.background.batcher("embedding-cache-fill", self._cache_fill).add(entries)
            else:
                await self._cache_fill(entries)
        return vec
