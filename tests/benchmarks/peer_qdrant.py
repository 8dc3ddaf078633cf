"""The official Qdrant MCP server (``mcp-server-qdrant``) measured the way bench_memory measures ours.

Optional: the peer lives in its own virtual environment, never in this project's dependencies
(see docs/benchmarks.md, "Peer: mcp-server-qdrant"). Its interpreter is ``/tmp/peer-qdrant/bin/python``
unless ``PEER_QDRANT_PYTHON`` names another one (or the venv directory holding it).

The peer runs in local mode (``QDRANT_LOCAL_PATH``, embedded storage, no Qdrant server) with the
same all-MiniLM-L6-v2 int8 model our suite uses, read from the directory our suite assembles. The
peer cannot be told where a model lives, so a small launcher (``LAUNCHER`` below, written to a
temporary directory at run time) registers that directory's model with fastembed under our model
name, makes the peer's fastembed provider build its ``TextEmbedding`` with ``specific_model_path``
pointing there, and then runs the peer's own ``main()``. The peer's installed files are untouched.

The peer has no batch tool, so its store is loaded with one ``qdrant-store`` call per memory: keep
the sizes small. Store texts and queries come from the same seeded generator as ours, in the same
order, so both servers see identical data.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.benchmarks._util import WORDS, children_peak_rss_mb, median, pct
from tests.servers.memory_management import corpus

DEFAULT_PYTHON = "/tmp/peer-qdrant/bin/python"
#: fastembed name under which the launcher registers our model (the same name our suite uses).
MODEL_NAME = "local/all-MiniLM-L6-v2-int8"
#: Marks the peer's processes among this benchmark's children (it is the launcher's file name).
LAUNCHER_NAME = "peer_qdrant_launcher.py"
#: How many results ``qdrant-find`` returns; recall@5 reads the first five.
SEARCH_LIMIT = 10
#: Largest store measured: loading is one call per memory (about 40/s here), and qdrant-client's
#: local mode, a brute-force scan, itself recommends a Qdrant server beyond 20,000 points.
MAX_SIZE = 10_000

LAUNCHER = '''\
"""Run mcp-server-qdrant with a fastembed model read from a local directory (no download)."""
import os
import sys

from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType

model_name = os.environ["EMBEDDING_MODEL"]
model_dir = os.environ["PEER_MODEL_DIR"]
TextEmbedding.add_custom_model(
    model=model_name,
    pooling=PoolingType.MEAN,
    normalization=True,
    sources=ModelSource(hf=model_name),
    dim=384,
    model_file="model.onnx",
)

import mcp_server_qdrant.embeddings.fastembed as provider_module  # noqa: E402


def local_text_embedding(name, **kwargs):
    kwargs.setdefault("specific_model_path", model_dir)
    return TextEmbedding(name, **kwargs)


# FastEmbedProvider calls TextEmbedding(model_name) through this module global; nothing else changes.
provider_module.TextEmbedding = local_text_embedding

from mcp_server_qdrant.main import main  # noqa: E402

sys.argv = [sys.argv[0], "--transport", "stdio"]
main()
'''

_ENTRY = re.compile(r"<entry><content>(.*?)</content>", re.DOTALL)


def peer_python() -> Path:
    """The peer's interpreter: ``PEER_QDRANT_PYTHON`` (an interpreter or a venv directory) or the default."""
    path = Path(os.environ.get("PEER_QDRANT_PYTHON") or DEFAULT_PYTHON)
    return path / "bin" / "python" if path.is_dir() else path


def unavailable() -> str | None:
    """Why the peer cannot be measured here, or ``None`` if it can."""
    python = peer_python()
    if not python.is_file():
        return f"{python} not found (install mcp-server-qdrant there, or set PEER_QDRANT_PYTHON)"
    lib = python.parent.parent / "lib"
    if not any(lib.glob("python3*/site-packages/mcp_server_qdrant/main.py")):
        return f"mcp-server-qdrant is not installed in {python.parent.parent}"
    return None


def model_dir(data_dir: Path) -> Path:
    """The directory our suite assembles the offline model in (model.onnx plus tokenizer files)."""
    from common.embeddings.model import default_model_dir
    from common.settings import BaseServerSettings

    return default_model_dir(BaseServerSettings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]


def peer_env(work: Path, models: Path) -> dict[str, str]:
    """This process's environment without Qdrant/embedding settings, plus the peer's local-mode ones."""
    drop = ("QDRANT_", "EMBEDDING_", "COLLECTION_NAME", "TOOL_", "FASTEMBED_", "FASTMCP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        QDRANT_LOCAL_PATH=str(work / "qdrant"),
        QDRANT_SEARCH_LIMIT=str(SEARCH_LIMIT),
        EMBEDDING_PROVIDER="fastembed",
        EMBEDDING_MODEL=MODEL_NAME,
        PEER_MODEL_DIR=str(models),
        FASTEMBED_CACHE_PATH=str(work / "fastembed-cache"),
        HF_HUB_OFFLINE="1",
        FASTMCP_LOG_LEVEL="WARNING",  # as ours runs with LOG_LEVEL=WARNING
    )
    return env


async def call(client: Client, tool: str, args: dict[str, Any]) -> list[str]:
    """Call a peer tool that must succeed; the texts of its result."""
    result = await client.call_tool(tool, args)
    texts = [getattr(part, "text", "") for part in result.content]
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {' '.join(texts)[:500]}")
    return texts


def found_contents(texts: list[str]) -> list[str]:
    """The stored contents in a ``qdrant-find`` answer, best first.

    The peer returns a list of strings (a header, then one ``<entry>`` per hit), which the MCP
    layer sends as one JSON-encoded text; decode it before reading the entries.
    """
    parts: list[str] = []
    for text in texts:
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text
        if isinstance(decoded, list):
            parts.extend(str(d) for d in decoded)
        else:
            parts.append(str(decoded))
    return [m.group(1) for part in parts for m in _ENTRY.finditer(part)]


async def timed(client: Client, tool: str, args: dict[str, Any]) -> float:
    started = time.perf_counter()
    await call(client, tool, args)
    return (time.perf_counter() - started) * 1000


async def recall_at_5(client: Client) -> float:
    """Store the 300 facts one call each, ask the 60 paraphrases; a hit is the target fact's exact text."""
    facts, questions = corpus.facts(), corpus.queries()
    key_of = {f.text: f.key for f in facts}
    for fact in facts:
        await call(client, "qdrant-store", {"information": fact.text, "collection_name": "q"})
    found = 0
    for q in questions:
        texts = await call(client, "qdrant-find", {"query": q.text, "collection_name": "q"})
        found += any(key_of.get(c) == q.target for c in found_contents(texts)[:5])
    return found / len(questions)


async def measure_peer(
    sizes: list[int],
    samples: int,
    synthetic: Callable[[int, random.Random], str],
    data_dir: Path,
    seed: int = 7,
) -> list[list[object]] | None:
    """Table rows (measure and four cells) for the peer, or ``None`` if it is not installed.

    ``synthetic(i, rng)`` is bench_memory's text generator; with the same seed and call order the
    peer stores and searches exactly the texts ours did. ``data_dir`` is where our suite assembles
    (or already has) the model directory. The peer's stderr goes to a log file, whose tail is
    printed if the measurement fails.
    """
    if unavailable() is not None:
        return None
    models = model_dir(data_dir)
    with tempfile.TemporaryDirectory(prefix="mcp-bench-peer-qdrant-") as tmp:
        work = Path(tmp)
        launcher = work / LAUNCHER_NAME
        launcher.write_text(LAUNCHER)
        params = StdioServerParameters(
            command=str(peer_python()), args=[str(launcher)], env=peer_env(work, models), cwd=str(work)
        )
        log_path = work / "peer-stderr.log"
        with log_path.open("a") as errlog:

            def connect(timeout: float) -> Client:
                # The peer (MCP SDK 1.x under FastMCP 2) only knows the initialize handshake: "legacy"
                # goes straight to it instead of probing server/discover first and falling back.
                return Client(stdio_client(params, errlog=errlog), read_timeout_seconds=timeout, mode="legacy")

            try:
                return await _measure(connect, sizes, samples, synthetic, random.Random(seed))
            except BaseException:
                tail = log_path.read_text(errors="replace").splitlines()[-30:]
                print("mcp-server-qdrant stderr (last lines):", *tail, sep="\n", file=sys.stderr)
                raise


async def _measure(
    connect: Callable[[float], Client],
    sizes: list[int],
    samples: int,
    synthetic: Callable[[int, random.Random], str],
    rng: random.Random,
) -> list[list[object]]:
    rows: list[list[object]] = []

    async def spawn_ms() -> float:
        started = time.perf_counter()
        async with connect(120):
            return (time.perf_counter() - started) * 1000

    await spawn_ms()  # first start creates the local storage and warms the file cache; not counted
    starts = [await spawn_ms() for _ in range(5)]
    rows.append(["peer: spawn to initialize", f"p50 {median(starts):.0f} ms", f"max {max(starts):.0f} ms", "", ""])
    async with connect(600) as client:
        r5 = await recall_at_5(client)
        rows.append(["peer: recall@5, 300 facts / 60 paraphrases", f"{r5:.3f}", "", "", ""])
        loaded = 0
        for size in sizes:
            if size > MAX_SIZE:
                rows.append([f"peer: at {size:,}", f"not measured (above {MAX_SIZE:,})", "", "", ""])
                continue
            started = time.perf_counter()
            before = loaded
            while loaded < size:
                await call(client, "qdrant-store", {"information": synthetic(loaded, rng), "collection_name": "bench"})
                loaded += 1
            rate = (loaded - before) / max(time.perf_counter() - started, 1e-9)
            store_ms = [
                await timed(
                    client,
                    "qdrant-store",
                    {"information": synthetic(10**7 + size + k, rng), "collection_name": "bench"},
                )
                for k in range(samples)
            ]
            loaded += samples
            queries = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(samples)]
            find_ms = [await timed(client, "qdrant-find", {"query": q, "collection_name": "bench"}) for q in queries]
            rows.append(
                [
                    f"peer: qdrant-store at {size:,}",
                    f"p50 {pct(store_ms, 50):.1f} ms",
                    f"p95 {pct(store_ms, 95):.1f} ms",
                    f"p99 {pct(store_ms, 99):.1f} ms",
                    f"load {rate:.0f}/s, one call each",
                ]
            )
            rows.append(
                [
                    f"peer: qdrant-find (vector) at {size:,}",
                    f"p50 {pct(find_ms, 50):.1f} ms",
                    f"p95 {pct(find_ms, 95):.1f} ms",
                    f"p99 {pct(find_ms, 99):.1f} ms",
                    "",
                ]
            )
        rows.append(["peer: server peak RSS", f"{children_peak_rss_mb(LAUNCHER_NAME):.0f} MB", "", "", ""])
    return rows
